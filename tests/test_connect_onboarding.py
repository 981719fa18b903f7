"""Issue 7, Connect onboarding through the API: nginx, the real app, PostgreSQL and the fake
Stripe (its hosted onboarding page is walked with plain HTTP here; the real-browser walk is
tests/test_connect_browser.py).

What it shows: one Express account per seller however often (and however concurrently)
`POST /api/connect/accounts` is called, each call a fresh link; the return endpoint asks
Stripe instead of trusting the redirect; a missing, forged or expired `state` gets nginx's
static error page and changes nothing; link URLs never reach a log; account webhooks keep the
profile in sync and gate new purchases without touching payments already made; only sellers
reach the seller routes."""

import base64
import hashlib
import hmac
import html
import re
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import requests

from harness.api import make_listing, make_profile, table_fingerprint
from harness.assertions import assert_envelope
from harness.api import wait_for

ERROR_PAGE = Path(__file__).resolve().parents[1] / "nginx" / "static" / "connect" / "onboarding-error.html"
def payout_delay_days(stack) -> int:
    return int(stack.app.env.get("PAYOUT_DELAY_DAYS", "7"))  # 7: the app's default (SPEC)


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------

def create_account(stack, seller, **kwargs):
    return stack.post("/api/connect/accounts", json={}, headers=seller["headers"], **kwargs)




def settle(stack):
    assert stack.stripe.wait_for_webhooks(15), "the fake Stripe still has webhooks in flight"


def profile_row(db, profile_id):
    cursor = db.execute("SELECT stripe_account_id, charges_enabled, payouts_enabled, details_submitted,"
                        " requirements_due, disabled_reason, account_synced_at FROM profiles WHERE id = %s",
                        (profile_id,))
    names = [c.name for c in cursor.description]
    return dict(zip(names, cursor.fetchone()))


def fake_account(stack, account_id):
    with stack.stripe.core.lock:
        return dict(stack.stripe.core.objects[account_id])


def fake_accounts_of(stack, profile_id):
    """Every account the fake holds whose metadata names this profile."""
    with stack.stripe.core.lock:
        return sorted(o["id"] for o in stack.stripe.core.objects.values()
                      if o.get("object") == "account" and (o.get("metadata") or {}).get("profile_id") == profile_id)


def link_record(stack, url):
    """The fake's record of an account link (account, refresh_url, return_url, …)."""
    links = [link for link in stack.stripe_control("GET", "/_control/account_links")["data"] if link["url"] == url]
    assert len(links) == 1, f"the fake holds {len(links)} links with the returned URL"
    return links[0]


def links_of(stack, account_id):
    return [link for link in stack.stripe_control("GET", "/_control/account_links")["data"]
            if link["account"] == account_id]


def state_param(url):
    values = parse_qs(urlsplit(url).query).get("state", [])
    assert len(values) == 1, url
    return values[0]


def local(url):
    """An absolute URL at our nginx as the path + query `stack.get` takes."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def open_hosted_page(url):
    """GET of an account link at the fake (what the seller's browser does): the response."""
    return requests.get(url, verify=False, timeout=30, allow_redirects=False)


def submit_hosted_page(url, action):
    """Open the hosted page and press `complete` or `later`: the fake's redirect target."""
    page = open_hosted_page(url)
    assert page.status_code == 200, (page.status_code, page.headers)
    session = re.search(r'name="session" value="([^"]*)"', page.text)
    form_action = re.search(r'<form[^>]*action="([^"]*)"', page.text)
    assert session and form_action, page.text
    target = urlsplit(url)._replace(path=html.unescape(form_action.group(1))).geturl()
    submitted = requests.post(target, data={"session": html.unescape(session.group(1)), "action": action},
                              verify=False, timeout=30, allow_redirects=False)
    assert submitted.status_code == 303, (submitted.status_code, submitted.text)
    return submitted.headers["Location"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def state_key(stack) -> bytes:
    """The documented derivation of the state's signing key (OnboardingState.key):
    HMAC-SHA256(STRIPE_SECRET_KEY, "connect-onboarding-state-v1"). Only the test knows the
    stack's secret key; an attacker does not."""
    return hmac.new(stack.app.env["STRIPE_SECRET_KEY"].encode(), b"connect-onboarding-state-v1", hashlib.sha256).digest()


def sign_state(key: bytes, payload: str) -> str:
    raw = payload.encode()
    return b64url(raw) + "." + b64url(hmac.new(key, raw, hashlib.sha256).digest())


STATUS_FIELDS = ("account_id", "charges_enabled", "payouts_enabled", "details_submitted", "requirements_due",
                 "disabled_reason", "ready_to_sell", "missing")


def connect_status(stack, seller):
    """GET /api/connect/status as {field: value} (an absent field reads as None here; that every
    field is present is test_status_fields_are_always_present's job)."""
    response = stack.get("/api/connect/status", headers=seller["headers"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) <= set(STATUS_FIELDS), body
    return {field: body.get(field) for field in STATUS_FIELDS}


def app_return(stack, outcome):
    return stack.app.env["APP_RETURN_URL"] + f"?onboarding={outcome}"


@pytest.fixture
def fresh_intent_windows(db):
    """create-intent is also limited per IP (`intent:127.0.0.1`), a window the whole session
    shares: start this test with an empty one (the limiter is tested elsewhere)."""
    db.execute("DELETE FROM rate_limits WHERE key IN ('intent:127.0.0.1', 'capture:127.0.0.1')")
    yield


def onboard_through_api(stack, db):
    """A seller onboarded the way a real one is: our API creates the account, the hosted page
    completes it, the return endpoint syncs it. Returns (seller, account_id)."""
    seller = make_profile(db, "seller")
    created = create_account(stack, seller)
    assert created.status_code == 201, created.text
    account = created.json()["account_id"]
    back = submit_hosted_page(created.json()["onboarding_url"], "complete")
    landed = stack.get(local(back))
    assert landed.status_code == 302 and landed.headers["Location"] == app_return(stack, "complete"), landed.headers
    settle(stack)
    assert profile_row(db, seller["id"])["charges_enabled"] is True
    return seller, account


# ------------------------------------------------------------------------------------------
# One account per seller, a fresh link per call
# ------------------------------------------------------------------------------------------

def test_create_account_twice_gives_one_account_and_two_links(stack, db):
    seller = make_profile(db, "seller")
    key = f"profile:{seller['id']}:account"

    first = create_account(stack, seller)
    assert first.status_code == 201, first.text
    body = first.json()
    assert set(body) == {"account_id", "onboarding_url", "expires_at"}, body
    account = body["account_id"]
    assert account.startswith("acct_"), body
    assert body["expires_at"] > time.time(), body
    assert profile_row(db, seller["id"])["stripe_account_id"] == account

    second = create_account(stack, seller)
    assert second.status_code == 200, second.text
    assert second.json()["account_id"] == account
    assert second.json()["onboarding_url"] != body["onboarding_url"], "the second call must mint a new link"

    # One Stripe account, created once, with the documented parameters.
    creations = stack.stripe.received("POST", "/v1/accounts", idempotency_key=key)
    assert len(creations) == 1, creations
    params = creations[0]["params"]
    assert params["type"] == "express", params
    assert params["capabilities"]["card_payments"]["requested"] == "true", params
    assert params["capabilities"]["transfers"]["requested"] == "true", params
    assert params["settings"]["payouts"]["schedule"]["delay_days"] == str(payout_delay_days(stack)), params
    assert params["metadata"]["profile_id"] == seller["id"], params
    assert fake_accounts_of(stack, seller["id"]) == [account]
    stored = fake_account(stack, account)
    assert stored["type"] == "express"
    assert set(stored["capabilities"]) == {"card_payments", "transfers"}, stored["capabilities"]
    assert stored["settings"]["payouts"]["schedule"]["delay_days"] == payout_delay_days(stack)
    assert stored["metadata"]["profile_id"] == seller["id"]

    # Each link: onboarding type, refresh/return at our public base with one signed state.
    base = stack.app.env["PUBLIC_BASE_URL"] + "/api/connect/onboarding/"
    for url in (body["onboarding_url"], second.json()["onboarding_url"]):
        assert url.startswith(f"{stack.stripe.url}/setup/e/{account}/"), url
        link = link_record(stack, url)
        assert link["account"] == account and link["type"] == "account_onboarding", link
        assert link["refresh_url"].startswith(base + "refresh?state="), link
        assert link["return_url"].startswith(base + "return?state="), link
        assert state_param(link["refresh_url"]) == state_param(link["return_url"])
    assert len(links_of(stack, account)) == 2


def test_concurrent_create_account_gives_one_account(stack, db):
    seller = make_profile(db, "seller")
    key = f"profile:{seller['id']}:account"
    barrier = threading.Barrier(5)
    responses = [None] * 5

    def call(i):
        barrier.wait()
        responses[i] = create_account(stack, seller)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    statuses = [r.status_code for r in responses]
    assert all(s in (200, 201) for s in statuses), [(r.status_code, r.text) for r in responses]
    accounts = {r.json()["account_id"] for r in responses}
    assert len(accounts) == 1, accounts
    account = accounts.pop()
    urls = [r.json()["onboarding_url"] for r in responses]
    assert len(set(urls)) == 5, "every call must mint its own link"

    assert fake_accounts_of(stack, seller["id"]) == [account], "more than one Stripe account for one seller"
    creations = stack.stripe.received("POST", "/v1/accounts", idempotency_key=key)
    assert creations, "the account was not created with the key profile:{id}:account"
    executed = [r for r in creations if r["status"] == 200 and not r["idempotent_replayed"]]
    assert len(executed) == 1, creations
    assert profile_row(db, seller["id"])["stripe_account_id"] == account
    assert len(links_of(stack, account)) == 5


def test_create_account_with_idempotency_key_replays(stack, db):
    """Same Idempotency-Key, same body: the stored answer (the same link), nothing minted."""
    seller = make_profile(db, "seller")
    headers = {**seller["headers"], "Idempotency-Key": f"connect-{seller['id']}"}
    first = stack.post("/api/connect/accounts", json={}, headers=headers)
    assert first.status_code == 201, first.text
    links = len(links_of(stack, first.json()["account_id"]))
    replay = stack.post("/api/connect/accounts", json={}, headers=headers)
    assert (replay.status_code, replay.json()) == (201, first.json())
    assert len(links_of(stack, first.json()["account_id"])) == links == 1
    assert fake_accounts_of(stack, seller["id"]) == [first.json()["account_id"]]


# ------------------------------------------------------------------------------------------
# The return endpoint asks Stripe; refresh mints a new link
# ------------------------------------------------------------------------------------------

def test_return_before_onboarding_is_incomplete_and_refresh_resumes(stack, db):
    seller = make_profile(db, "seller")
    created = create_account(stack, seller).json()
    account = created["account_id"]

    # "Save for later" at the hosted page still sends the browser to return_url.
    back = submit_hosted_page(created["onboarding_url"], "later")
    assert back.startswith(stack.app.env["PUBLIC_BASE_URL"] + "/api/connect/onboarding/return?state="), back
    landed = stack.get(local(back))
    assert landed.status_code == 302, (landed.status_code, landed.text)
    assert landed.headers["Location"] == app_return(stack, "incomplete")
    stripe_side = fake_account(stack, account)
    row = profile_row(db, seller["id"])
    assert row["charges_enabled"] is False and row["payouts_enabled"] is False and row["details_submitted"] is False
    assert row["requirements_due"] == stripe_side["requirements"]["currently_due"] != [], row
    assert row["disabled_reason"] == stripe_side["requirements"]["disabled_reason"], row
    assert row["account_synced_at"] is not None, "the return endpoint did not sync the profile"
    assert stack.stripe.received("GET", f"/v1/accounts/{account}"), "the return endpoint did not ask Stripe"

    assert connect_status(stack, seller) == {"account_id": account, "charges_enabled": False, "payouts_enabled": False,
                             "details_submitted": False, "requirements_due": stripe_side["requirements"]["currently_due"],
                             "disabled_reason": stripe_side["requirements"]["disabled_reason"],
                             "ready_to_sell": False, "missing": ["charges_enabled", "payouts_enabled",
                                                                 "requirements.past_due", "capabilities.transfers"]}

    # The used link sends the browser to refresh_url; refresh answers with a new link.
    reopened = open_hosted_page(created["onboarding_url"])
    assert reopened.status_code == 302, reopened.status_code
    refresh = reopened.headers["Location"]
    assert refresh.startswith(stack.app.env["PUBLIC_BASE_URL"] + "/api/connect/onboarding/refresh?state="), refresh
    minted = stack.get(local(refresh))
    assert minted.status_code == 302, (minted.status_code, minted.text)
    new_url = minted.headers["Location"]
    assert new_url.startswith(f"{stack.stripe.url}/setup/e/{account}/") and new_url != created["onboarding_url"]
    assert link_record(stack, new_url)["account"] == account

    # Completing it, with the Connect webhooks held back: the return endpoint alone syncs.
    stack.stripe_control("POST", "/_control/webhooks/pause", {"endpoint": "connect"})
    try:
        back = submit_hosted_page(new_url, "complete")
        landed = stack.get(local(back))
        assert landed.status_code == 302 and landed.headers["Location"] == app_return(stack, "complete"), landed.headers
        row = profile_row(db, seller["id"])
        assert (row["charges_enabled"], row["payouts_enabled"], row["details_submitted"]) == (True, True, True), row
        assert row["requirements_due"] == [] and row["disabled_reason"] is None, row
    finally:
        stack.stripe_control("POST", "/_control/webhooks/resume", {"endpoint": "connect"})
    settle(stack)
    assert connect_status(stack, seller) == {"account_id": account, "charges_enabled": True, "payouts_enabled": True,
                             "details_submitted": True, "requirements_due": [], "disabled_reason": None,
                             "ready_to_sell": True, "missing": []}


def test_status_before_any_account(stack, db):
    seller = make_profile(db, "seller")
    assert connect_status(stack, seller) == {"account_id": None, "charges_enabled": False, "payouts_enabled": False,
                                             "details_submitted": False, "requirements_due": [],
                                             "disabled_reason": None, "ready_to_sell": False,
                                             "missing": ["stripe_account"]}


def test_status_fields_are_always_present(stack, db):
    """docs/openapi.yaml declares account_id and disabled_reason `nullable`: a client reads
    them as null, so they are sent as null, not left out (before onboarding and after it)."""
    fresh = make_profile(db, "seller")
    onboarded, _ = onboard_through_api(stack, db)
    for seller in (fresh, onboarded):
        body = stack.get("/api/connect/status", headers=seller["headers"]).json()
        assert set(body) == set(STATUS_FIELDS), body


def test_dashboard_link_only_after_onboarding(stack, db):
    seller = make_profile(db, "seller")
    assert_envelope(stack.post("/api/connect/dashboard-link", json={}, headers=seller["headers"]), 409, "not_onboarded")
    created = create_account(stack, seller).json()
    assert_envelope(stack.post("/api/connect/dashboard-link", json={}, headers=seller["headers"]), 409, "not_onboarded")
    assert not stack.stripe.received("POST", f"/v1/accounts/{created['account_id']}/login_links")

    landed = stack.get(local(submit_hosted_page(created["onboarding_url"], "complete")))
    assert landed.headers["Location"] == app_return(stack, "complete")
    response = stack.post("/api/connect/dashboard-link", json={}, headers=seller["headers"])
    assert response.status_code == 200, response.text
    url = response.json()["url"]
    assert url.startswith(f"{stack.stripe.url}/express/{created['account_id']}/"), url
    dashboard = requests.get(url, verify=False, timeout=30)
    assert dashboard.status_code == 200 and "Express dashboard" in dashboard.text
    assert len(stack.stripe.received("POST", f"/v1/accounts/{created['account_id']}/login_links")) == 1


# ------------------------------------------------------------------------------------------
# Missing, forged or expired state: the static page, nothing changed
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_sellers(stack):
    """Seller A and seller B, each with an account made through our API, and A's valid state."""
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        sellers = []
        for _ in range(2):
            seller = make_profile(connection, "seller")
            created = create_account(stack, seller)
            assert created.status_code == 201, created.text
            link = link_record(stack, created.json()["onboarding_url"])
            sellers.append({**seller, "account": created.json()["account_id"], "state": state_param(link["return_url"])})
    return sellers


def _flip(text, index=-2):
    chars = list(text)
    chars[index] = "A" if chars[index] != "A" else "B"
    return "".join(chars)


def _with_fields(state, **changes):
    """A's state with payload fields replaced, keeping A's signature (what an attacker can do)."""
    payload, signature = state.split(".")
    profile, account, expiry, nonce = b64url_decode(payload).decode().split("|")
    fields = {"profile": profile, "account": account, "expiry": expiry, "nonce": nonce, **changes}
    raw = "|".join([fields["profile"], fields["account"], fields["expiry"], fields["nonce"]]).encode()
    return b64url(raw) + "." + signature


# Each builder: (stack, a, b) -> the query string (None: no state parameter at all).
BAD_STATES = {
    "missing": lambda s, a, b: None,
    "empty": lambda s, a, b: "state=",
    "garbage": lambda s, a, b: "state=not-a-state",
    "three_parts": lambda s, a, b: f"state={a['state']}.x",
    "not_base64": lambda s, a, b: "state=%21%21%21.%21%21%21",
    "too_long": lambda s, a, b: "state=" + "A" * 600 + "." + a["state"].split(".")[1],
    "signature_flipped": lambda s, a, b: "state=" + _flip(a["state"]),
    "signature_dropped": lambda s, a, b: "state=" + a["state"].split(".")[0] + ".",
    "signature_of_other_state": lambda s, a, b: "state=" + a["state"].split(".")[0] + "." + b["state"].split(".")[1],
    "payload_other_profile": lambda s, a, b: "state=" + _with_fields(a["state"], profile=b["id"]),
    "payload_other_account": lambda s, a, b: "state=" + _with_fields(a["state"], account=b["account"]),
    "payload_expiry_extended": lambda s, a, b: "state=" + _with_fields(a["state"], expiry=str(int(time.time()) + 10**8)),
    "payload_expiry_past": lambda s, a, b: "state=" + _with_fields(a["state"], expiry=str(int(time.time()) - 60)),
    "payload_attacker_url": lambda s, a, b: "state=" + _with_fields(a["state"], account="https://evil.example/"),
    "state_with_redirect_params": lambda s, a, b: "state=" + _flip(a["state"]) + "&return_url=https://evil.example/",
    # Signed with the real key (only the test knows it): still refused.
    "signed_but_expired": lambda s, a, b: "state=" + sign_state(
        state_key(s), f"{a['id']}|{a['account']}|{int(time.time()) - 5}|0011223344556677"),
    "signed_but_other_profiles_account": lambda s, a, b: "state=" + sign_state(
        state_key(s), f"{a['id']}|{b['account']}|{int(time.time()) + 3600}|0011223344556677"),
}

# What would tell an attacker which check failed (the page's generic sentence, the same for every
# case, may say "expired"; it is asserted byte for byte equal to the static file above).
REVEALING = ("forged", "malformed", "missing", "onboarding_state_invalid", "hmac", "signature", "acct_",
             "request_id", '"error"', "start again from the marketplace")


def test_the_state_signer_matches_the_app(stack, two_sellers):
    """The crafted states below rely on this: re-signing A's payload reproduces A's state."""
    a = two_sellers[0]
    payload = b64url_decode(a["state"].split(".")[0]).decode()
    assert payload.split("|")[:2] == [a["id"], a["account"]], payload
    assert sign_state(state_key(stack), payload) == a["state"]


@pytest.mark.parametrize("endpoint", ["return", "refresh"])
@pytest.mark.parametrize("case", list(BAD_STATES))
def test_bad_state_gets_the_static_page_and_changes_nothing(stack, db, two_sellers, endpoint, case):
    a, b = two_sellers
    query = BAD_STATES[case](stack, a, b)
    settle(stack)
    before = table_fingerprint(db)
    links_before = len(stack.stripe.received("POST", "/v1/account_links"))
    profiles_before = [profile_row(db, s["id"]) for s in (a, b)]

    path = f"/api/connect/onboarding/{endpoint}" + (f"?{query}" if query is not None else "")
    response = stack.get(path)

    assert response.status_code == 400, (case, response.status_code, response.headers.get("Location"), response.text[:300])
    assert "Location" not in response.headers, response.headers
    assert response.headers["Content-Type"].startswith("text/html"), response.headers
    assert response.text == ERROR_PAGE.read_text(), response.text[:500]
    lowered = response.text.lower()
    assert not [word for word in REVEALING if word in lowered]
    assert a["id"] not in response.text and b["id"] not in response.text
    assert response.headers.get("X-Content-Type-Options") == "nosniff", response.headers

    settle(stack)
    assert table_fingerprint(db) == before, f"{case}: a refused state changed rows"
    assert [profile_row(db, s["id"]) for s in (a, b)] == profiles_before
    assert len(stack.stripe.received("POST", "/v1/account_links")) == links_before, "a refused state minted a link"


@pytest.mark.parametrize("endpoint", ["return", "refresh"])
def test_valid_state_is_accepted(stack, two_sellers, endpoint):
    """The control case of the matrix above: A's own state works on both endpoints."""
    a = two_sellers[0]
    response = stack.get(f"/api/connect/onboarding/{endpoint}?state={a['state']}")
    assert response.status_code == 302, (response.status_code, response.text[:300])
    if endpoint == "return":
        assert response.headers["Location"] == app_return(stack, "incomplete")
    else:
        assert response.headers["Location"].startswith(f"{stack.stripe.url}/setup/e/{a['account']}/")


# ------------------------------------------------------------------------------------------
# Link URLs never reach a log
# ------------------------------------------------------------------------------------------

def test_link_urls_and_states_never_logged(stack, db):
    access_log = stack.nginx.directory / "logs" / "access.log"
    error_log = stack.nginx.directory / "logs" / "error.log"
    returns_logged = lambda: access_log.read_text().count('"uri":"/api/connect/onboarding/return"')  # noqa: E731
    time.sleep(1.2)  # earlier tests' lines leave nginx's buffer first
    returns_before = returns_logged()
    seller = make_profile(db, "seller")
    created = create_account(stack, seller).json()
    again = create_account(stack, seller).json()
    first_link = link_record(stack, created["onboarding_url"])
    back = submit_hosted_page(created["onboarding_url"], "later")
    assert stack.get(local(back)).status_code == 302
    refreshed = stack.get(local(first_link["refresh_url"]))
    assert refreshed.status_code == 302
    back = submit_hosted_page(refreshed.headers["Location"], "complete")
    assert stack.get(local(back)).headers["Location"] == app_return(stack, "complete")
    marker = stack.get("/api/connect/onboarding/return?state=" + _flip(first_link["return_url"].split("state=")[1]))
    assert marker.status_code == 400
    settle(stack)

    urls = [created["onboarding_url"], again["onboarding_url"], refreshed.headers["Location"]]
    secrets = set()
    for url in urls:
        secrets.add(urlsplit(url).path)               # /setup/e/acct_…/token
        secrets.add(urlsplit(url).path.rsplit("/", 1)[1])  # the token alone
        link = link_record(stack, url)
        secrets.add(state_param(link["return_url"]))
        secrets.add(state_param(link["return_url"])[:24])

    # nginx buffers its access log for up to a second: wait for this test's own lines.
    wait_for(lambda: returns_logged() >= returns_before + 2, 10, what="the access log lines of the return requests")
    logs = {"app": stack.app.log_text(), "nginx access": access_log.read_text(),
            "nginx error": error_log.read_text() if error_log.exists() else ""}
    for name, text in logs.items():
        for secret in secrets:
            assert secret not in text, f"the {name} log carries a link URL or state ({secret[:12]}…)"
        for needle in ("state=", "/setup/e/"):
            lines = [line for line in text.splitlines() if needle in line]
            assert lines == [], f"the {name} log carries {needle!r}: {lines[:3]}"


# ------------------------------------------------------------------------------------------
# account.updated / deauthorized keep the profile in sync and gate purchases
# ------------------------------------------------------------------------------------------

def test_account_updated_syncs_and_gates_purchases(stack, db, fresh_intent_windows):
    seller, account = onboard_through_api(stack, db)
    listing = make_listing(db, seller)
    buyer = make_profile(db, "buyer")

    stack.stripe_control("POST", f"/_control/accounts/{account}/update", {
        "charges_enabled": False,
        "requirements": {"currently_due": ["individual.verification.document"]},
        "disabled_reason": "requirements.pending_verification"})
    settle(stack)
    row = profile_row(db, seller["id"])
    assert (row["charges_enabled"], row["payouts_enabled"], row["details_submitted"]) == (False, True, True), row
    assert row["requirements_due"] == ["individual.verification.document"], row
    assert row["disabled_reason"] == "requirements.pending_verification", row
    assert connect_status(stack, seller) == {"account_id": account, "charges_enabled": False, "payouts_enabled": True,
                      "details_submitted": True, "requirements_due": ["individual.verification.document"],
                      "disabled_reason": "requirements.pending_verification",
                      "ready_to_sell": False, "missing": ["charges_enabled"]}

    before = table_fingerprint(db)
    refused = stack.post("/api/payments/create-intent", json={"listing_id": listing}, headers=buyer["headers"])
    assert_envelope(refused, 409, "seller_not_ready")
    assert "charges_enabled" in refused.json()["error"]["message"], refused.text
    assert table_fingerprint(db) == before
    assert db.execute("SELECT status FROM listings WHERE id = %s", (listing,)).fetchone()[0] == "active"

    # Charges enabled again but payouts not: still refused, naming payouts (issue 15, item 8).
    stack.stripe_control("POST", f"/_control/accounts/{account}/update", {
        "charges_enabled": True, "payouts_enabled": False,
        "requirements": {"currently_due": []}, "disabled_reason": None})
    settle(stack)
    row = profile_row(db, seller["id"])
    assert (row["charges_enabled"], row["payouts_enabled"], row["requirements_due"], row["disabled_reason"]) == \
        (True, False, [], None), row
    refused = stack.post("/api/payments/create-intent", json={"listing_id": listing}, headers=buyer["headers"])
    assert_envelope(refused, 409, "seller_not_ready")
    assert refused.json()["error"]["message"].endswith("missing payouts_enabled."), refused.text

    # Enabled again: the same purchase goes through (the gate was the account, nothing else).
    stack.stripe_control("POST", f"/_control/accounts/{account}/update", {"payouts_enabled": True})
    settle(stack)
    accepted = stack.post("/api/payments/create-intent", json={"listing_id": listing}, headers=buyer["headers"])
    assert accepted.status_code in (200, 201), accepted.text


def test_account_updated_from_hosted_completion_syncs_without_return(stack, db):
    """The seller completes onboarding but never comes back to the return URL (closed the
    tab): the account.updated webhook alone enables them."""
    seller = make_profile(db, "seller")
    created = create_account(stack, seller).json()
    account = created["account_id"]
    submit_hosted_page(created["onboarding_url"], "complete")  # the redirect is not followed
    settle(stack)
    wait_for(lambda: profile_row(db, seller["id"])["charges_enabled"], what="the account.updated webhook to sync")
    row = profile_row(db, seller["id"])
    assert (row["charges_enabled"], row["payouts_enabled"], row["details_submitted"]) == (True, True, True), row
    assert row["requirements_due"] == [] and row["disabled_reason"] is None, row
    events = [e for e in stack.stripe.events("account.updated") if e.get("account") == account]
    assert len(events) == 1, "the fake emitted no account.updated for the completion"
    deliveries = stack.stripe.deliveries(event_id=events[0]["id"], endpoint="connect")
    assert [d["state"] for d in deliveries] == ["succeeded"], deliveries
    assert not stack.stripe.received("GET", f"/v1/accounts/{account}"), "the return endpoint was reached"


def test_deauthorized_seller_blocks_new_purchases_keeps_old_payments(stack, db, fresh_intent_windows):
    seller, account = onboard_through_api(stack, db)
    sold = make_listing(db, seller)
    other = make_listing(db, seller)
    buyer, late_buyer = make_profile(db, "buyer"), make_profile(db, "buyer")

    made = stack.post("/api/payments/create-intent", json={"listing_id": sold}, headers=buyer["headers"])
    assert made.status_code in (200, 201), made.text
    payment_id, intent = made.json()["payment_id"], made.json()["payment_intent_id"]
    confirmed, body = stack.stripe.confirm_payment_intent(intent, "pm_card_visa")
    assert confirmed == 200 and body["status"] == "requires_capture", body
    settle(stack)
    wait_for(lambda: db.execute("SELECT status FROM payments WHERE id = %s", (payment_id,)).fetchone()[0]
             == "requires_capture", what="the payment to reach requires_capture")
    payment_before = db.execute("SELECT p::text FROM payments p WHERE id = %s", (payment_id,)).fetchone()[0]
    listing_before = db.execute("SELECT l::text FROM listings l WHERE id = %s", (sold,)).fetchone()[0]
    shown_before = stack.get(f"/api/payments/{payment_id}", headers=buyer["headers"]).json()

    stack.stripe_control("POST", f"/_control/accounts/{account}/deauthorize")
    settle(stack)
    row = profile_row(db, seller["id"])
    assert row["charges_enabled"] is False and row["payouts_enabled"] is False, row
    assert row["disabled_reason"] == "application_deauthorized", row
    assert connect_status(stack, seller)["charges_enabled"] is False

    refused = stack.post("/api/payments/create-intent", json={"listing_id": other}, headers=late_buyer["headers"])
    assert_envelope(refused, 409, "seller_not_ready")
    assert db.execute("SELECT count(*) FROM payments WHERE listing_id = %s", (other,)).fetchone()[0] == 0

    assert db.execute("SELECT p::text FROM payments p WHERE id = %s", (payment_id,)).fetchone()[0] == payment_before
    assert db.execute("SELECT l::text FROM listings l WHERE id = %s", (sold,)).fetchone()[0] == listing_before
    assert stack.get(f"/api/payments/{payment_id}", headers=buyer["headers"]).json() == shown_before


# ------------------------------------------------------------------------------------------
# Only sellers
# ------------------------------------------------------------------------------------------

SELLER_ROUTES = [("POST", "/api/connect/accounts"), ("GET", "/api/connect/status"),
                 ("POST", "/api/connect/dashboard-link")]


@pytest.mark.parametrize("method,path", SELLER_ROUTES)
@pytest.mark.parametrize("role", ["buyer", "admin", None])
def test_non_sellers_are_refused(stack, db, method, path, role):
    headers = make_profile(db, role)["headers"] if role else {}
    accounts_before = len(stack.stripe.received("POST", "/v1/accounts"))
    settle(stack)
    before = table_fingerprint(db)
    kwargs = {"json": {}} if method == "POST" else {}
    response = stack.request(method, path, headers=headers, **kwargs)
    if role is None:
        assert_envelope(response, 401, "unauthenticated")
    else:
        assert_envelope(response, 403, "forbidden")
    assert table_fingerprint(db) == before
    assert len(stack.stripe.received("POST", "/v1/accounts")) == accounts_before
