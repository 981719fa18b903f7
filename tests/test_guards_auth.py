"""Issue 3, the auth resolver against an attacker: the security matrix over every route of
tests/security_routes.py, through nginx over HTTPS, asserting what the client sees (status,
envelope, request id) and that no row changed anywhere."""

import base64
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization

from harness.api import jwt, jwt_asymmetric, make_profile, table_fingerprint, token
from harness.assertions import assert_envelope, request_id
from security_routes import (OWNER_ROUTES, ROLE_RESTRICTED_ROUTES, ROUTES, TOKEN_ROUTES, audit_rows, prepare,
                             registered_routes, send)


pytestmark = pytest.mark.usefixtures("fresh_ip_windows")


def claims(user_id, **overrides):
    now = int(time.time())
    return {"sub": user_id, "iat": now, "exp": now + 3600, **overrides}


def bearer(value):
    return {"Authorization": f"Bearer {value}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _public_pem(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


# Each builds the headers of an attacker's request for the real profile `user_id`, so the only
# thing wrong with it is the credential.
REJECTED_CREDENTIALS = {
    "no_token": lambda stack, user_id: {},
    "garbage": lambda stack, user_id: bearer("garbage"),
    "empty_bearer": lambda stack, user_id: {"Authorization": "Bearer"},
    "two_parts": lambda stack, user_id: bearer(".".join(token(user_id).split(".")[:2])),
    "four_parts": lambda stack, user_id: bearer(token(user_id) + ".extra"),
    "bad_base64_header": lambda stack, user_id: bearer("!!!." + ".".join(token(user_id).split(".")[1:])),
    "standard_base64_signature": lambda stack, user_id: bearer(
        token(user_id).rsplit(".", 1)[0] + "." + base64.b64encode(b"\xfb\xff" * 16).decode()),
    "header_not_json": lambda stack, user_id: bearer(_b64(b"not json") + "." + token(user_id).split(".", 1)[1]),
    "basic_scheme": lambda stack, user_id: {"Authorization": "Basic " + base64.b64encode(f"{user_id}:pw".encode()).decode()},
    "token_without_scheme": lambda stack, user_id: {"Authorization": token(user_id)},
    "expired_beyond_leeway": lambda stack, user_id: bearer(jwt(claims(user_id, iat=int(time.time()) - 3600,
                                                                        exp=int(time.time()) - 120))),
    "not_yet_valid": lambda stack, user_id: bearer(jwt(claims(user_id, nbf=int(time.time()) + 300))),
    "no_exp": lambda stack, user_id: bearer(jwt({"sub": user_id, "iat": int(time.time())})),
    "exp_not_a_number": lambda stack, user_id: bearer(jwt(claims(user_id, exp="never"))),
    "no_sub": lambda stack, user_id: bearer(jwt({k: v for k, v in claims(user_id).items() if k != "sub"})),
    "bad_signature": lambda stack, user_id: bearer(jwt(claims(user_id), secret=b"another-secret-0123456789abcdefgh")),
    "tampered_payload": lambda stack, user_id: bearer(
        token("someone-else").split(".")[0] + "." + _b64(f'{{"sub":"{user_id}","exp":{int(time.time()) + 3600}}}'.encode())
        + "." + token("someone-else").split(".")[2]),
    "alg_none": lambda stack, user_id: bearer(jwt(claims(user_id), header={"alg": "none", "typ": "JWT"})),
    "alg_None_signed": lambda stack, user_id: bearer(jwt(claims(user_id), header={"alg": "None", "typ": "JWT"})),
    "alg_HS512": lambda stack, user_id: bearer(jwt(claims(user_id), header={"alg": "HS512", "typ": "JWT"})),
    "hs256_with_rsa_public_key_as_secret": lambda stack, user_id: bearer(
        jwt(claims(user_id), secret=_public_pem(stack.jwks.rsa), header={"alg": "HS256", "typ": "JWT", "kid": "test-rsa"})),
    "hs256_with_ec_public_key_as_secret": lambda stack, user_id: bearer(
        jwt(claims(user_id), secret=_public_pem(stack.jwks.ec), header={"alg": "HS256", "typ": "JWT", "kid": "test-ec"})),
    "rs256_unknown_kid": lambda stack, user_id: bearer(jwt_asymmetric(claims(user_id), stack.jwks, alg="RS256", kid="unknown-kid")),
    "es256_unknown_kid": lambda stack, user_id: bearer(jwt_asymmetric(claims(user_id), stack.jwks, alg="ES256", kid="unknown-kid")),
    "rs256_claiming_ec_kid": lambda stack, user_id: bearer(jwt_asymmetric(claims(user_id), stack.jwks, alg="RS256", kid="test-ec")),
    "es256_claiming_rsa_kid": lambda stack, user_id: bearer(jwt_asymmetric(claims(user_id), stack.jwks, alg="ES256", kid="test-rsa")),
    "rs256_expired": lambda stack, user_id: bearer(jwt_asymmetric(claims(user_id, exp=int(time.time()) - 300), stack.jwks)),
    "unknown_subject": lambda stack, user_id: bearer(token(f"nobody-{uuid.uuid4().hex}")),
    "unknown_subject_rs256": lambda stack, user_id: bearer(
        jwt_asymmetric(claims(f"nobody-{uuid.uuid4().hex}"), stack.jwks, alg="RS256")),
}

ACCEPTED_CREDENTIALS = {
    "hs256": lambda stack, user_id: bearer(token(user_id)),
    "rs256_from_jwks": lambda stack, user_id: bearer(jwt_asymmetric(claims(user_id), stack.jwks, alg="RS256")),
    "es256_from_jwks": lambda stack, user_id: bearer(jwt_asymmetric(claims(user_id), stack.jwks, alg="ES256")),
    "expired_within_leeway": lambda stack, user_id: bearer(jwt(claims(user_id, exp=int(time.time()) - 20))),
    "nbf_within_leeway": lambda stack, user_id: bearer(jwt(claims(user_id, nbf=int(time.time()) + 20))),
    "lowercase_scheme": lambda stack, user_id: {"Authorization": f"bearer {token(user_id)}"},
}


def assert_refused(response, db, before, route, status, code, actor=None):
    """The envelope, nothing changed in any domain table, and (audited routes) one failure row."""
    error = assert_envelope(response, status, code)
    assert table_fingerprint(db) == before, f"{route.id}: a refused request changed rows"
    rows = audit_rows(db, request_id(response))
    if route.audit and actor is None and not rows:
        # Anonymous refusals are sampled (docs/security.md): this one is counted, and the row of
        # the first like it from this address in this minute stands for it.
        rows = db.execute("""SELECT operation, success, error_code, actor_profile_id::text AS actor_profile_id, ip
                             FROM payment_audit_logs
                             WHERE operation = %s AND error_code = %s AND ip = '127.0.0.1' AND actor_profile_id IS NULL
                               AND metadata->>'sampled' IS NOT NULL AND occurred_at > now() - interval '2 minutes'
                             ORDER BY id DESC LIMIT 1""", (route.audit, code)).fetchall()
        rows = [dict(zip(("operation", "success", "error_code", "actor_profile_id", "ip"), row)) for row in rows]
    if route.audit:
        assert len(rows) == 1, rows
        row = rows[0]
        assert (row["operation"], row["success"], row["error_code"]) == (route.audit, False, code), row
        assert row["actor_profile_id"] == actor, row
        assert row["ip"] == "127.0.0.1", row
    else:
        assert rows == [], rows
    return error


def test_every_registered_route_is_in_the_table():
    table = {(r.method, r.path) for r in ROUTES}
    registered = registered_routes()
    assert registered, "no router.add found in Sources/PaymentsCore"
    assert registered - table == set(), "routes missing from tests/security_routes.py"
    assert table - registered == set(), "tests/security_routes.py lists routes the app does not register"


@pytest.mark.parametrize("case", REJECTED_CREDENTIALS)
@pytest.mark.parametrize("route", TOKEN_ROUTES, ids=lambda r: r.id)
def test_bad_credentials_are_401_and_change_nothing(stack, db, route, case):
    prepared = prepare(route, stack, db)
    headers = REJECTED_CREDENTIALS[case](stack, prepared.caller["user_id"])
    before = table_fingerprint(db)
    response = send(stack, prepared, headers)
    assert_refused(response, db, before, route, 401, "unauthenticated")
    assert response.headers.get("WWW-Authenticate") == "Bearer", response.headers


@pytest.mark.parametrize("case", ACCEPTED_CREDENTIALS)
@pytest.mark.parametrize("route", TOKEN_ROUTES, ids=lambda r: r.id)
def test_valid_credentials_reach_the_handler(stack, db, route, case):
    """The control of the matrix: the same request with a good credential gets through."""
    prepared = prepare(route, stack, db)
    response = send(stack, prepared, ACCEPTED_CREDENTIALS[case](stack, prepared.caller["user_id"]))
    if route.ok_code:
        assert_envelope(response, route.ok_status, route.ok_code)
    else:
        assert response.status_code == route.ok_status, (route.id, response.status_code, response.text)
        request_id(response)
    assert stack.app.request_log(request_id(response)).get("profile_id") == prepared.caller["id"]


@pytest.mark.parametrize("case", ["rs256_from_jwks", "es256_from_jwks"])
def test_jwks_tokens_resolve_to_the_profile_of_their_subject(stack, db, case):
    profile = make_profile(db, "seller")
    response = stack.get("/api/me", headers=ACCEPTED_CREDENTIALS[case](stack, profile["user_id"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["user_id"], body["roles"]) == (profile["id"], profile["user_id"], ["seller"])


ROLE_CASES = [(route, role) for route in ROLE_RESTRICTED_ROUTES for role in route.denied_roles]


@pytest.mark.parametrize("route,role", ROLE_CASES, ids=[f"{r.id} as {role}" for r, role in ROLE_CASES])
def test_wrong_role_is_403_and_changes_nothing(stack, db, route, role):
    prepared = prepare(route, stack, db)
    intruder = make_profile(db, role)
    before = table_fingerprint(db)
    response = send(stack, prepared, intruder["headers"])
    assert_envelope(response, 403, "forbidden")
    assert table_fingerprint(db) == before, f"{route.id}: a refused request changed rows"
    rows = audit_rows(db, request_id(response))
    if route.audit:  # who tried is asserted in test_guards_audit.py
        assert [(r["operation"], r["success"], r["error_code"]) for r in rows] == [(route.audit, False, "forbidden")], rows
    else:
        assert rows == [], rows
    assert "WWW-Authenticate" not in response.headers


@pytest.mark.parametrize("route", ROLE_RESTRICTED_ROUTES, ids=lambda r: r.id)
def test_role_claims_in_the_token_grant_nothing(stack, db, route):
    """The role comes from profiles.role: a token claiming every role is still refused."""
    prepared = prepare(route, stack, db)
    intruder = make_profile(db, route.denied_roles[0])
    forged = token(intruder["user_id"], role="admin", roles=["admin", "buyer", "seller"], is_admin=True)
    body = dict(prepared.body or {}, role="admin") if prepared.body is not None else None
    before = table_fingerprint(db)
    response = stack.request(route.method, prepared.path, headers=bearer(forged),
                             **({"json": body} if body is not None else {}))
    assert_envelope(response, 403, "forbidden")
    assert table_fingerprint(db) == before


@pytest.mark.parametrize("route", OWNER_ROUTES, ids=lambda r: r.id)
def test_another_users_resource_is_404_like_a_missing_one(stack, db, route):
    victim = prepare(route, stack, db)
    attacker = make_profile(db, route.role)
    before = table_fingerprint(db)
    response = send(stack, victim, attacker["headers"])
    error = assert_envelope(response, 404, "not_found")
    assert table_fingerprint(db) == before
    rows = audit_rows(db, request_id(response))
    if route.audit:
        assert len(rows) == 1, rows
        assert (rows[0]["operation"], rows[0]["success"], rows[0]["error_code"]) == (route.audit, False, "not_found")
        assert rows[0]["actor_profile_id"] == attacker["id"], rows
        assert rows[0]["actor_role"] == attacker["role"], rows
    else:
        assert rows == []

    # Existence does not leak: a resource that does not exist gets the same answer.
    missing = prepare(route, stack, db)
    missing.values = {**missing.values, "id": str(uuid.uuid4())}
    absent = send(stack, missing, attacker["headers"])
    assert assert_envelope(absent, 404, "not_found")["message"] == error["message"]


def test_payment_is_visible_to_its_buyer_seller_and_admins_only(stack, db):
    route = next(r for r in ROUTES if r.id == "GET /api/payments/{id}")
    prepared = prepare(route, stack, db)
    payment_id = prepared.values["id"]
    seller = prepared.values["seller"]
    for viewer in (prepared.caller, seller, make_profile(db, "admin")):
        response = stack.get(f"/api/payments/{payment_id}", headers=viewer["headers"])
        assert response.status_code == 200, (viewer["role"], response.text)
        assert response.json()["id"] == payment_id
    for stranger_role in ("buyer", "seller"):
        stranger = make_profile(db, stranger_role)
        assert_envelope(stack.get(f"/api/payments/{payment_id}", headers=stranger["headers"]), 404, "not_found")
        listed = stack.get(f"/api/payments?as={stranger_role}", headers=stranger["headers"])
        assert listed.status_code == 200 and listed.json()["data"] == [], listed.text


def test_the_seller_of_a_payment_cannot_capture_or_cancel_it(stack, db):
    route = next(r for r in ROUTES if r.id == "GET /api/payments/{id}")
    prepared = prepare(route, stack, db)
    seller = prepared.values["seller"]
    before = table_fingerprint(db)
    for method_path, body in (("/api/payments/capture", {"payment_id": prepared.values["id"]}),
                              (f"/api/payments/{prepared.values['id']}/cancel", {})):
        assert_envelope(stack.post(method_path, headers=seller["headers"], json=body), 403, "forbidden")
    assert table_fingerprint(db) == before


def test_a_malformed_authorization_header_never_falls_back_to_the_cookie(stack, db):
    profile = make_profile(db, "buyer")
    response = stack.get("/api/me", headers={"Authorization": "Basic abc", "Cookie": f"access_token={token(profile['user_id'])}"})
    assert_envelope(response, 401, "unauthenticated")


def test_tokens_never_reach_the_log(stack, db):
    profile = make_profile(db, "buyer")
    good = token(profile["user_id"], marker=uuid.uuid4().hex)
    bad = jwt(claims(profile["user_id"], marker=uuid.uuid4().hex), secret=b"not-the-secret-0123456789abcdefgh")
    assert stack.get("/api/me", headers=bearer(good)).status_code == 200
    refused = stack.get("/api/me", headers=bearer(bad))
    assert_envelope(refused, 401, "unauthenticated")
    stack.app.request_log(request_id(refused))
    text = stack.app.log_text()
    for secret in (good, bad, good.split(".")[2], bad.split(".")[2], "test-only-jwt-secret"):
        assert secret not in text


@pytest.mark.parametrize("route", [r for r in ROUTES if r.auth in ("public", "loopback")], ids=lambda r: r.id)
def test_public_routes_ignore_credentials(stack, db, route):
    for headers in ({}, bearer("garbage"), {"Cookie": "access_token=garbage"}):
        response = stack.request(route.method, route.path, headers=headers)
        assert response.status_code == 200, (route.id, headers, response.text)


OWN_CREDENTIAL_ROUTES = [r for r in ROUTES if r.refusal]


@pytest.mark.parametrize("route", OWN_CREDENTIAL_ROUTES, ids=lambda r: r.id)
def test_routes_with_their_own_credential_do_not_take_a_token_instead(stack, db, route):
    """Webhooks need a Stripe-Signature, onboarding redirects a signed state: a valid admin token
    (or a cookie session) is no substitute, and the refusal changes nothing."""
    admin = make_profile(db, "admin")
    status, code = route.refusal
    path = f"{route.path}?{route.query}" if route.query else route.path
    extra = {"Stripe-Signature": "t=1,v1=00"} if route.auth == "stripe-signature" else {}
    for headers in ({}, admin["headers"], {"Cookie": f"access_token={token(admin['user_id'])}"},
                    {**admin["headers"], **extra}):
        before = table_fingerprint(db)
        kwargs = {"json": route.body} if route.body is not None else {}
        response = stack.request(route.method, path, headers=headers, **kwargs)
        if route.refusal_page:
            assert response.status_code == status, (headers, response.status_code, response.text[:200])
            assert response.headers["Content-Type"].startswith("text/html"), response.headers
            assert "Location" not in response.headers
            assert stack.app.request_log(request_id(response)).get("error_code") == code
        else:
            assert_envelope(response, status, code)
        assert table_fingerprint(db) == before
