"""Issue 13, the Connect onboarding redirects (`GET /api/connect/onboarding/refresh|return?state=…`),
through nginx, the real app, PostgreSQL and the fake Stripe:

- a state lives 30 minutes, longer than the account link it comes with;
- it is single-use at the refresh endpoint: a reused (or concurrently replayed) state gets the
  static error page and makes no second Stripe call; the used nonces live in PostgreSQL until
  the state expires, then `payments sweep` deletes them;
- both redirects are rate limited: per profile named in a valid state, per client address for
  states that do not verify (429, on the same static page);
- no `state` value reaches nginx's access or error log, or the app's log."""

import base64
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from harness.api import make_profile, wait_for
from harness.paths import BINARY
from harness.processes import run

ERROR_PAGE = (Path(__file__).resolve().parents[1] / "nginx" / "static" / "connect" / "onboarding-error.html").read_text()
LIFETIME = 30 * 60  # OnboardingState.lifetime
TIGHT = "onboarding=2/60,onboarding-ip=2/60"


def new_link(stack, db):
    """A seller with an account made through our API: (seller, account id, the link's record)."""
    seller = make_profile(db, "seller")
    created = stack.post("/api/connect/accounts", json={}, headers=seller["headers"])
    assert created.status_code == 201, created.text
    body = created.json()
    links = [link for link in stack.stripe_control("GET", "/_control/account_links")["data"]
             if link["url"] == body["onboarding_url"]]
    assert len(links) == 1
    return seller, body["account_id"], links[0]


def state_of(url):
    return parse_qs(urlsplit(url).query)["state"][0]


def payload_of(state):
    payload = state.split(".")[0]
    return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode().split("|")


def local(url):
    parts = urlsplit(url)
    return parts.path + "?" + parts.query


def links_minted(stack):
    return len(stack.stripe.received("POST", "/v1/account_links"))


def assert_error_page(response, status):
    assert response.status_code == status, (response.status_code, response.headers.get("Location"), response.text[:200])
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text == ERROR_PAGE


# ------------------------------------------------------------------------------------------
# Lifetime
# ------------------------------------------------------------------------------------------

def test_state_lives_30_minutes_and_outlives_its_link(stack, db):
    before = int(time.time())
    _, account, link = new_link(stack, db)
    profile, state_account, expires_at, nonce = payload_of(state_of(link["refresh_url"]))
    assert state_account == account and len(nonce) == 16
    assert before + LIFETIME <= int(expires_at) <= int(time.time()) + LIFETIME, (expires_at, before)
    assert int(expires_at) > link["expires_at"], "the state must outlive the account link it comes with"


# ------------------------------------------------------------------------------------------
# Single use at refresh
# ------------------------------------------------------------------------------------------

def test_reused_refresh_state_gets_the_error_page_and_no_stripe_call(stack, db):
    seller, account, link = new_link(stack, db)
    minted = links_minted(stack)
    first = stack.get(local(link["refresh_url"]))
    assert first.status_code == 302, (first.status_code, first.text[:200])
    assert first.headers["Location"].startswith(f"{stack.stripe.url}/setup/e/{account}/")
    assert links_minted(stack) == minted + 1

    again = stack.get(local(link["refresh_url"]))
    assert_error_page(again, 400)
    assert links_minted(stack) == minted + 1, "a reused state minted a second link"

    nonce = payload_of(state_of(link["refresh_url"]))[3]
    row = db.execute("SELECT profile_id::text, extract(epoch FROM expires_at)::bigint FROM onboarding_state_nonces"
                     " WHERE nonce = %s", (nonce,)).fetchone()
    assert row == (seller["id"], int(payload_of(state_of(link["refresh_url"]))[2])), row

    # The link it minted carries a fresh state, which works once in turn; the return endpoint
    # (which mints nothing) still answers the first state.
    second_state = next(l for l in stack.stripe_control("GET", "/_control/account_links")["data"]
                        if l["url"] == first.headers["Location"])["refresh_url"]
    assert state_of(second_state) != state_of(link["refresh_url"])
    assert stack.get(local(second_state)).status_code == 302
    assert stack.get(local(link["return_url"])).status_code == 302


def test_concurrent_refreshes_of_one_state_mint_one_link(stack, db):
    _, _, link = new_link(stack, db)
    minted = links_minted(stack)
    barrier = threading.Barrier(4)

    def follow(_):
        barrier.wait()
        return stack.get(local(link["refresh_url"]))

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(follow, range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [302, 400, 400, 400], statuses
    assert links_minted(stack) == minted + 1


def test_refresh_state_survives_a_failed_stripe_call(stack, db, faults):
    """A refresh that could not mint a link leaves the state usable: the retry works."""
    _, account, link = new_link(stack, db)
    faults(type="error", status=500, method="POST", path_prefix="/v1/account_links", count=10)
    failed = stack.get(local(link["refresh_url"]))
    assert failed.status_code >= 500 and failed.text == ERROR_PAGE, failed.status_code
    stack.stripe_control("DELETE", "/_control/faults")
    retried = stack.get(local(link["refresh_url"]))
    assert retried.status_code == 302 and retried.headers["Location"].startswith(f"{stack.stripe.url}/setup/e/{account}/")


def test_sweep_purges_nonces_of_expired_states(stack, db):
    old, fresh = f"edge{uuid.uuid4().hex[:12]}", f"edge{uuid.uuid4().hex[:12]}"
    profile = make_profile(db, "seller")["id"]
    db.execute("INSERT INTO onboarding_state_nonces (nonce, profile_id, expires_at) VALUES"
               " (%s, %s, now() - interval '2 hours'), (%s, %s, now() + interval '20 minutes')",
               (old, profile, fresh, profile))
    result = run([str(BINARY), "sweep"], env=stack.app.env, timeout=60)
    assert result.returncode == 0, result.stderr
    left = {row[0] for row in db.execute("SELECT nonce FROM onboarding_state_nonces WHERE nonce = ANY(%s)",
                                         ([old, fresh],))}
    assert left == {fresh}


# ------------------------------------------------------------------------------------------
# Rate limits
# ------------------------------------------------------------------------------------------

def test_valid_states_are_limited_per_profile(stack, db):
    _, account, link = new_link(stack, db)
    _, _, other_link = new_link(stack, db)
    with stack.other_apps(RATE_LIMITS=TIGHT) as tight:
        lookups = len(stack.stripe.received("GET", f"/v1/accounts/{account}"))
        answers = [tight.get(local(link["return_url"])) for _ in range(3)]
        assert [r.status_code for r in answers[:2]] == [302, 302]
        assert_error_page(answers[2], 429)
        assert len(stack.stripe.received("GET", f"/v1/accounts/{account}")) == lookups + 2, "the 429 called Stripe"
        refused_refresh = tight.get(local(link["refresh_url"]))  # the same profile's bucket
        assert_error_page(refused_refresh, 429)
        # Another seller from the same address has a bucket of its own.
        assert tight.get(local(other_link["return_url"])).status_code == 302
    assert db.execute("SELECT count FROM rate_limits WHERE key = %s ORDER BY window_start DESC LIMIT 1",
                      (f"onboarding:{payload_of(state_of(link['return_url']))[0]}",)).fetchone() == (4,)


def test_invalid_states_are_limited_per_client_address(stack, db, fresh_ip_windows):
    _, _, link = new_link(stack, db)
    with stack.other_apps(RATE_LIMITS=TIGHT) as tight:
        answers = [tight.get(f"/api/connect/onboarding/{endpoint}?state=forged.{n}")
                   for n, endpoint in enumerate(["refresh", "return", "refresh"])]
        assert [r.status_code for r in answers[:2]] == [400, 400]
        assert_error_page(answers[2], 429)
        # Valid states are counted per profile, not against the address.
        assert tight.get(local(link["return_url"])).status_code == 302
    assert db.execute("SELECT sum(count)::int FROM rate_limits WHERE key = 'onboarding:127.0.0.1'").fetchone() == (3,)


# ------------------------------------------------------------------------------------------
# Logs
# ------------------------------------------------------------------------------------------

def test_no_state_in_any_log(stack, db):
    """After refreshes, reuses, returns, refusals, app 429s and nginx's own limit_req 429s, no
    log holds a `state=` or a state value: nginx's access log has $uri only, its error log
    records nothing but critical errors for the onboarding location (each entry would carry the
    request line), and the app logs the route pattern."""
    _, _, link = new_link(stack, db)
    states = {state_of(link["refresh_url"])}
    assert stack.get(local(link["refresh_url"])).status_code == 302
    assert stack.get(local(link["refresh_url"])).status_code == 400          # reused
    assert stack.get(local(link["return_url"])).status_code == 302
    assert stack.get("/api/connect/onboarding/refresh?state=forged.state").status_code == 400
    with stack.other_nginx(API_RATE="1r/s", API_BURST=1) as strict:
        answers = [requests.get(strict.url(local(link["return_url"])), verify=False, timeout=30, allow_redirects=False)
                   for _ in range(6)]
        assert 429 in [r.status_code for r in answers], [r.status_code for r in answers]
        strict_logs = [strict.directory / "logs" / "access.log", strict.directory / "logs" / "error.log"]
        time.sleep(1.5)  # the access log's buffer is flushed every second
    logs = {path: path.read_text() for path in [*strict_logs, stack.nginx.directory / "logs" / "access.log",
                                                stack.nginx.directory / "logs" / "error.log"] if path.exists()}
    wait_for(lambda: "/api/connect/onboarding/refresh" in (stack.nginx.directory / "logs" / "access.log").read_text(),
             10, what="the access log lines")
    logs[stack.nginx.directory / "logs" / "access.log"] = (stack.nginx.directory / "logs" / "access.log").read_text()
    logs["app"] = stack.app.log_text()
    assert any("onboarding" in text for text in logs.values())
    for name, text in logs.items():
        assert "state=" not in text, f"{name} carries state=: {[l for l in text.splitlines() if 'state=' in l][:2]}"
        for state in states:
            assert state not in text and state.split(".")[1] not in text, f"{name} carries a state value"
