"""Issue 3, the CSRF policy: cookie-authenticated unsafe requests need `X-CSRF-Token` equal to
the `csrf_token` cookie (double submit); Bearer requests and safe methods need none. A refused
request changes nothing and is audited."""

import secrets

import pytest

from harness.api import make_listing, make_profile, onboarded_seller, table_fingerprint, token
from harness.assertions import assert_envelope, request_id
from security_routes import STATE_CHANGING_TOKEN_ROUTES, audit_rows, prepare, send, settle


pytestmark = pytest.mark.usefixtures("fresh_ip_windows")


def cookie_header(access_token=None, csrf=None, extra=""):
    parts = []
    if access_token is not None:
        parts.append(f"access_token={access_token}")
    if csrf is not None:
        parts.append(f"csrf_token={csrf}")
    if extra:
        parts.append(extra)
    return "; ".join(parts)


def unread_notification(db, profile):
    return db.execute("INSERT INTO notifications (profile_id, kind) VALUES (%s, 'csrf_test') RETURNING id::text",
                      (profile["id"],)).fetchone()[0]


def read_at(db, notification_id):
    return db.execute("SELECT read_at FROM notifications WHERE id = %s", (notification_id,)).fetchone()[0]


CSRF_FAILURES = {
    "no_header_no_cookie": lambda csrf: ({}, None),
    "cookie_but_no_header": lambda csrf: ({}, csrf),
    "header_but_no_cookie": lambda csrf: ({"X-CSRF-Token": csrf}, None),
    "mismatching_header": lambda csrf: ({"X-CSRF-Token": csrf[:-1] + ("A" if csrf[-1] != "A" else "B")}, csrf),
    "header_is_a_prefix": lambda csrf: ({"X-CSRF-Token": csrf[:8]}, csrf),
    "empty_cookie_and_header": lambda csrf: ({"X-CSRF-Token": ""}, ""),
    "header_equals_access_token": lambda csrf: (None, csrf),  # filled in the test
}


@pytest.mark.parametrize("case", CSRF_FAILURES)
def test_cookie_post_without_matching_csrf_token_is_403_and_changes_nothing(stack, db, case):
    profile = make_profile(db, "buyer")
    notification_id = unread_notification(db, profile)
    access = token(profile["user_id"])
    csrf = secrets.token_urlsafe(24)
    headers, csrf_cookie = CSRF_FAILURES[case](csrf)
    if case == "header_equals_access_token":
        headers = {"X-CSRF-Token": access}
    headers = {**headers, "Cookie": cookie_header(access, csrf_cookie)}
    before = table_fingerprint(db)

    response = stack.post(f"/api/notifications/{notification_id}/read", headers=headers, json={})

    assert_envelope(response, 403, "csrf_failed")
    assert table_fingerprint(db) == before
    assert read_at(db, notification_id) is None
    rows = audit_rows(db, request_id(response))
    assert [(r["operation"], r["entity_id"], r["success"], r["error_code"]) for r in rows] == \
        [("notification.read", notification_id, False, "csrf_failed")], rows


def test_cookie_post_with_matching_csrf_token_is_allowed(stack, db):
    profile = make_profile(db, "buyer")
    notification_id = unread_notification(db, profile)
    csrf = secrets.token_urlsafe(24)
    response = stack.post(f"/api/notifications/{notification_id}/read", json={},
                          headers={"Cookie": cookie_header(token(profile["user_id"]), csrf), "X-CSRF-Token": csrf})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == notification_id
    assert read_at(db, notification_id) is not None
    rows = audit_rows(db, request_id(response))
    assert [(r["operation"], r["success"], r["actor_profile_id"]) for r in rows] == \
        [("notification.read", True, profile["id"])], rows


def test_cookie_create_intent_without_csrf_token_creates_nothing_at_stripe(stack, db):
    """The money route: a cross-site form post riding the buyer's cookie reserves nothing and
    never reaches Stripe."""
    seller = onboarded_seller(stack, db)
    listing_id = make_listing(db, seller)
    buyer = make_profile(db, "buyer")
    settle(stack)
    before = table_fingerprint(db)
    intents_before = len(stack.stripe.received(method="POST", path_prefix="/v1/payment_intents"))

    response = stack.post("/api/payments/create-intent", json={"listing_id": listing_id},
                          headers={"Cookie": cookie_header(token(buyer["user_id"]), "abc"), "X-CSRF-Token": "abd"})

    assert_envelope(response, 403, "csrf_failed")
    assert table_fingerprint(db) == before
    assert len(stack.stripe.received(method="POST", path_prefix="/v1/payment_intents")) == intents_before
    assert db.execute("SELECT status FROM listings WHERE id = %s", (listing_id,)).fetchone()[0] == "active"
    rows = audit_rows(db, request_id(response))
    assert [(r["operation"], r["success"], r["error_code"]) for r in rows] == [("payment.create", False, "csrf_failed")]


@pytest.mark.parametrize("route", STATE_CHANGING_TOKEN_ROUTES, ids=lambda r: r.id)
def test_every_state_changing_route_refuses_cookie_requests_without_csrf(stack, db, route):
    prepared = prepare(route, stack, db)
    before = table_fingerprint(db)
    response = send(stack, prepared, {"Cookie": cookie_header(token(prepared.caller["user_id"]), "c" * 32)})
    assert_envelope(response, 403, "csrf_failed")
    assert table_fingerprint(db) == before


def test_cookie_get_needs_no_csrf_token(stack, db):
    profile = make_profile(db, "seller")
    response = stack.get("/api/me", headers={"Cookie": cookie_header(token(profile["user_id"]))})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == profile["id"]
    listed = stack.get("/api/notifications", headers={"Cookie": cookie_header(token(profile["user_id"]))})
    assert listed.status_code == 200, listed.text


def test_bearer_post_needs_no_csrf_token(stack, db):
    profile = make_profile(db, "buyer")
    notification_id = unread_notification(db, profile)
    response = stack.post(f"/api/notifications/{notification_id}/read", json={}, headers=profile["headers"])
    assert response.status_code == 200, response.text
    assert read_at(db, notification_id) is not None


def test_bearer_post_with_a_stray_cookie_is_judged_by_the_bearer_token(stack, db):
    """A browser sends cookies along; the explicit Bearer credential decides, and needs no CSRF."""
    owner = make_profile(db, "buyer")
    other = make_profile(db, "buyer")
    notification_id = unread_notification(db, owner)
    response = stack.post(f"/api/notifications/{notification_id}/read", json={},
                          headers={**owner["headers"], "Cookie": cookie_header(token(other["user_id"]))})
    assert response.status_code == 200, response.text
    assert read_at(db, notification_id) is not None


def test_an_invalid_cookie_token_is_401_not_csrf(stack, db):
    profile = make_profile(db, "buyer")
    notification_id = unread_notification(db, profile)
    csrf = secrets.token_urlsafe(16)
    before = table_fingerprint(db)
    response = stack.post(f"/api/notifications/{notification_id}/read", json={},
                          headers={"Cookie": cookie_header("garbage.token.here", csrf), "X-CSRF-Token": csrf})
    assert_envelope(response, 401, "unauthenticated")
    assert table_fingerprint(db) == before


def test_csrf_cookie_from_another_session_does_not_help_a_forged_header(stack, db):
    """Double submit: the header must equal this request's cookie, not any valid-looking value."""
    profile = make_profile(db, "buyer")
    notification_id = unread_notification(db, profile)
    response = stack.post(f"/api/notifications/{notification_id}/read", json={},
                          headers={"Cookie": cookie_header(token(profile["user_id"]), "victim-session-csrf"),
                                   "X-CSRF-Token": "attacker-chosen-csrf"})
    assert_envelope(response, 403, "csrf_failed")
    assert read_at(db, notification_id) is None
