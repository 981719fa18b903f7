"""Helpers for API-level tests: profiles, tokens, listings and an onboarded seller.

Tokens are minted here with the stack's HS256 secret (the same scheme as `payments token`),
so tests can also forge bad ones (expired, wrong key, alg none, …)."""

import base64
import hashlib
import hmac
import json
import time
import uuid

from requests.adapters import HTTPAdapter

JWT_SECRET = "test-only-jwt-secret-0123456789abcdef"  # the stack's AUTH_JWT_SECRET


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict, *, secret: bytes = JWT_SECRET.encode(), header: dict | None = None) -> str:
    """A compact JWS signed with HS256 (or unsigned when header alg is 'none')."""
    header = header or {"alg": "HS256", "typ": "JWT"}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    if header.get("alg") == "none":
        return signing_input + "."
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def jwt_asymmetric(claims: dict, keys, *, alg: str = "RS256", kid: str | None = None) -> str:
    """A token signed with the stack's test RSA (RS256) or P-256 (ES256) key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    header = {"alg": alg, "kid": kid or ("test-rsa" if alg == "RS256" else "test-ec")}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}".encode()
    if alg == "RS256":
        signature = keys.rsa.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(keys.ec.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input.decode()}.{b64url(signature)}"


def token(user_id: str, ttl: int = 3600, **extra) -> str:
    now = int(time.time())
    return jwt({"sub": user_id, "iat": now, "exp": now + ttl, **extra})


def bearer(user_id: str) -> dict:
    return {"Authorization": f"Bearer {token(user_id)}"}


def make_profile(db, role: str, *, stripe_account: str | None = None, charges_enabled: bool = False) -> dict:
    """A new profile with a unique user id; returns {id, user_id, role, headers}. `role` is one
    role, or "buyer,seller" for a profile that does both."""
    user_id = f"{role.replace(',', '-')}-{uuid.uuid4().hex[:12]}"
    row = db.execute(
        "INSERT INTO profiles (user_id, roles, email, stripe_account_id, charges_enabled, payouts_enabled, details_submitted)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id::text",
        (user_id, role.split(","), f"{user_id}@example.test", stripe_account, charges_enabled, charges_enabled,
         charges_enabled),
    ).fetchone()
    return {"id": row[0], "user_id": user_id, "role": role, "headers": bearer(user_id)}


def onboarded_seller(stack, db) -> dict:
    """A seller whose Express account exists at the fake Stripe and can take charges."""
    created = stack.stripe_api("POST", "/v1/accounts", {
        "type": "express", "country": "US",
        "capabilities[card_payments][requested]": "true", "capabilities[transfers][requested]": "true"})
    account = created["id"]
    stack.stripe_control("POST", f"/_control/accounts/{account}/complete_onboarding")
    profile = make_profile(db, "seller", stripe_account=account, charges_enabled=True)
    # As the app mirrors them (account.updated, onboarding return): a direct charge needs
    # `card_payments` known to be active (seller_readiness_gaps, sql/0020).
    capabilities = stack.stripe_api("GET", f"/v1/accounts/{account}")["capabilities"]
    db.execute("UPDATE profiles SET capabilities = %s::jsonb WHERE id = %s", (json.dumps(capabilities), profile["id"]))
    return profile


def make_listing(db, seller: dict, *, price: int = 5000, currency: str = "usd", kind: str = "item") -> str:
    return db.execute(
        "INSERT INTO listings (seller_id, title, kind, price_cents, currency) VALUES (%s, %s, %s, %s, %s) RETURNING id::text",
        (seller["id"], "Test listing", kind, price, currency),
    ).fetchone()[0]


def make_milestones(db, listing_id: str, amounts: list[int]) -> list[str]:
    return [db.execute(
        "INSERT INTO milestones (listing_id, position, title, amount_cents) VALUES (%s, %s, %s, %s) RETURNING id::text",
        (listing_id, position, f"Milestone {position}", amount),
    ).fetchone()[0] for position, amount in enumerate(amounts, start=1)]


def table_counts(db, tables=("profiles", "listings", "milestones", "payments", "refunds", "transfers", "disputes",
                             "webhook_events", "notifications", "idempotency_keys", "payouts")) -> dict:
    """Row counts of the domain tables (not audit logs or rate limits), to prove a rejected
    request changed nothing."""
    return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def table_fingerprint(db, tables=("profiles", "listings", "milestones", "payments", "refunds", "transfers", "disputes",
                                  "webhook_events", "notifications", "idempotency_keys", "payouts")) -> dict:
    """An md5 of every row of each domain table: equal fingerprints mean nothing changed."""
    return {t: db.execute(f"SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM {t} x").fetchone()[0]
            for t in tables}


def wait_for(predicate, timeout=10.0, what="condition"):
    """Polls `predicate` until it returns something truthy (webhooks arrive asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class SourceAddressAdapter(HTTPAdapter):
    """Connects from another loopback address, so nginx (and the app) see another REMOTE_ADDR."""

    def __init__(self, source_ip, **kwargs):
        self.source_ip = source_ip
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source_ip, 0)
        super().init_poolmanager(*args, **kwargs)


IP_KEYED_POLICY_PREFIXES = ("intent", "capture", "admin:refund", "admin:resolve", "admin:evidence", "onboarding")


def reset_ip_limits(db, ip: str = "127.0.0.1"):
    """Every test request comes from 127.0.0.1, so IP-keyed windows are shared by the whole
    session: a test that is not about the limiter starts from an empty window, and one that
    fills a window empties it again afterwards, so the next file is not refused."""
    db.execute("DELETE FROM rate_limits WHERE key = ANY(%s)", ([f"{p}:{ip}" for p in IP_KEYED_POLICY_PREFIXES],))


def wait_until_ready(stack, streak: int, timeout: float = 30.0):
    """Waits until `/api/ready` answers 200 `streak` times in a row: after a database outage,
    every pooled connection must have been replaced, not just the first one."""
    run = {"n": 0}

    def ready():
        run["n"] = run["n"] + 1 if stack.get("/api/ready").status_code == 200 else 0
        return run["n"] >= streak
    wait_for(ready, timeout, what=f"{streak} ready answers in a row")


def stripe_calls(stack, key, path_prefix=None, method="POST", family=False):
    """What the fake received under this Idempotency-Key; with `family`, also under the keys
    that extend it with `:…` (`payment:{id}:capture` then finds `payment:{id}:capture:{amount}`)."""
    def matches(request):
        sent = request["headers"].get("Idempotency-Key", "")
        return sent == key or (family and sent.startswith(key + ":"))
    return [r for r in stack.stripe.received(method=method, path_prefix=path_prefix) if matches(r)]
