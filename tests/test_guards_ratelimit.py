"""Issue 3, the rate limiter: fixed windows counted in PostgreSQL with one atomic upsert, exact
under concurrency; 429 `rate_limited` with `Retry-After`; the client IP is nginx's REMOTE_ADDR.

The stack runs with RATE_LIMITS=notifications=10/60 (key `notifications:{profile}`)."""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from harness.api import SourceAddressAdapter, make_profile, reset_ip_limits, table_fingerprint
from harness.assertions import assert_envelope, request_id
from security_routes import audit_rows

LIMIT, WINDOW = 10, 60  # the stack's RATE_LIMITS=notifications=10/60 (checked by the fixture below)


@pytest.fixture(autouse=True)
def notifications_limit_is_10_per_minute(stack):
    assert configured_limit(stack, "notifications", (120, 60)) == (LIMIT, WINDOW), stack.app.env.get("RATE_LIMITS")


@pytest.fixture(autouse=True)
def fresh_ip_windows(db):
    reset_ip_limits(db)
    reset_ip_limits(db, "127.0.0.2")
    yield
    reset_ip_limits(db)
    reset_ip_limits(db, "127.0.0.2")


def wait_for_room_in_window(db, needed_seconds=15):
    """Fixed windows start at multiples of 60 s of the database clock: start a burst early enough
    in a window that it cannot straddle two."""
    elapsed = db.execute(f"SELECT extract(epoch FROM now())::numeric % {WINDOW}").fetchone()[0]
    if WINDOW - float(elapsed) < needed_seconds:
        time.sleep(WINDOW - float(elapsed) + 0.5)


def window_rows(db, key):
    return db.execute("SELECT window_start, count FROM rate_limits WHERE key = %s ORDER BY window_start",
                      (key,)).fetchall()


def notification(db, profile):
    return db.execute("INSERT INTO notifications (profile_id, kind) VALUES (%s, 'rate_test') RETURNING id::text",
                      (profile["id"],)).fetchone()[0]


def test_50_concurrent_requests_against_a_limit_of_10_let_exactly_10_through(stack, db):
    profile = make_profile(db, "buyer")
    notification_id = notification(db, profile)
    key = f"notifications:{profile['id']}"
    wait_for_room_in_window(db)

    def hit(_):
        return stack.post(f"/api/notifications/{notification_id}/read", json={}, headers=profile["headers"])

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(hit, range(50)))

    passed = [r for r in responses if r.status_code != 429]
    limited = [r for r in responses if r.status_code == 429]
    assert (len(passed), len(limited)) == (10, 40), sorted(r.status_code for r in responses)
    assert all(r.status_code == 200 for r in passed), [(r.status_code, r.text) for r in passed]
    assert len({r.json()["read_at"] for r in passed}) == 1  # marked read once; the rest see the same time
    for response in limited:
        assert_envelope(response, 429, "rate_limited")
        retry_after = response.headers.get("Retry-After")
        assert retry_after is not None and retry_after.isdigit(), response.headers
        assert 1 <= int(retry_after) <= WINDOW, retry_after

    rows = window_rows(db, key)
    assert [count for _, count in rows] == [50], rows

    # One execution reached the change; every refused attempt is audited with its code.
    entries = db.execute(
        "SELECT success, error_code, count(*) FROM payment_audit_logs WHERE entity_id = %s GROUP BY 1, 2 ORDER BY 1",
        (notification_id,)).fetchall()
    assert entries == [(False, "rate_limited", 40), (True, None, 1)], entries
    limited_ids = {request_id(r) for r in limited}
    assert len(limited_ids) == 40


def test_a_different_profile_is_not_limited_by_anothers_window(stack, db):
    hog = make_profile(db, "buyer")
    hog_notification = notification(db, hog)
    wait_for_room_in_window(db)
    for _ in range(LIMIT):
        assert stack.post(f"/api/notifications/{hog_notification}/read", json={}, headers=hog["headers"]).status_code == 200
    assert_envelope(stack.post(f"/api/notifications/{hog_notification}/read", json={}, headers=hog["headers"]),
                    429, "rate_limited")

    other = make_profile(db, "buyer")
    other_notification = notification(db, other)
    response = stack.post(f"/api/notifications/{other_notification}/read", json={}, headers=other["headers"])
    assert response.status_code == 200, response.text
    assert [count for _, count in window_rows(db, f"notifications:{other['id']}")] == [1]
    assert [count for _, count in window_rows(db, f"notifications:{hog['id']}")] == [LIMIT + 1]


def test_a_rate_limited_request_changes_nothing(stack, db):
    profile = make_profile(db, "buyer")
    first = notification(db, profile)
    wait_for_room_in_window(db)
    for _ in range(LIMIT):
        assert stack.post(f"/api/notifications/{first}/read", json={}, headers=profile["headers"]).status_code == 200
    untouched = notification(db, profile)
    before = table_fingerprint(db)
    response = stack.post(f"/api/notifications/{untouched}/read", json={}, headers=profile["headers"])
    assert_envelope(response, 429, "rate_limited")
    assert table_fingerprint(db) == before
    assert db.execute("SELECT read_at FROM notifications WHERE id = %s", (untouched,)).fetchone()[0] is None


def create_intent_attempts(stack, buyer, count, headers=None, session=None):
    """create-intent for a listing that does not exist: counted by both intent policies, 404,
    no state change."""
    responses = []
    for _ in range(count):
        kwargs = dict(json={"listing_id": str(uuid.uuid4())}, headers={**buyer["headers"], **(headers or {})})
        if session is None:
            responses.append(stack.post("/api/payments/create-intent", **kwargs))
        else:
            responses.append(session.post(stack.url("/api/payments/create-intent"), verify=False, timeout=30,
                                          allow_redirects=False, **kwargs))
    return responses


SPOOFING_HEADERS = {"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.8", "Forwarded": "for=203.0.113.9",
                    "True-Client-IP": "203.0.113.10", "CF-Connecting-IP": "203.0.113.11"}


def test_the_ip_key_is_nginxs_remote_addr_not_a_client_header(stack, db):
    buyer = make_profile(db, "buyer")
    wait_for_room_in_window(db)
    responses = create_intent_attempts(stack, buyer, 3, headers=SPOOFING_HEADERS)
    for response in responses:
        assert_envelope(response, 404, "listing_not_found")

    assert [count for _, count in window_rows(db, "intent:127.0.0.1")] == [3]
    assert [count for _, count in window_rows(db, f"intent:{buyer['id']}")] == [3]
    spoofed = db.execute("SELECT key FROM rate_limits WHERE key LIKE '%%203.0.113.%%'").fetchall()
    assert spoofed == []
    # The audit rows carry the same address.
    for response in responses:
        assert [r["ip"] for r in audit_rows(db, request_id(response))] == ["127.0.0.1"]




def test_a_client_from_another_address_gets_its_own_ip_window(stack, db):
    buyer = make_profile(db, "buyer")
    wait_for_room_in_window(db)
    session = requests.Session()
    session.mount("https://", SourceAddressAdapter("127.0.0.2"))
    responses = create_intent_attempts(stack, buyer, 2, headers={"X-Forwarded-For": "127.0.0.1"}, session=session)
    for response in responses:
        assert_envelope(response, 404, "listing_not_found")
    assert [count for _, count in window_rows(db, "intent:127.0.0.2")] == [2]
    assert window_rows(db, "intent:127.0.0.1") == []
    for response in responses:
        assert [r["ip"] for r in audit_rows(db, request_id(response))] == ["127.0.0.2"]


def configured_limit(stack, policy, default):
    """The stack's limit for `policy` (RATE_LIMITS overrides the defaults of RateLimiter.swift)."""
    for entry in stack.app.env.get("RATE_LIMITS", "").split(","):
        name, _, value = entry.partition("=")
        if name.strip() == policy:
            count, _, seconds = value.partition("/")
            return int(count), int(seconds)
    return default


def test_ip_limits_count_unauthenticated_floods_before_authentication(stack, db):
    """`capture:{ip}` is checked before the token: requests without credentials are counted, and
    once the window is full they get 429, not 401."""
    limit, window = configured_limit(stack, "capture", (30, 60))
    wait_for_room_in_window(db)
    before = table_fingerprint(db)
    statuses = [stack.post("/api/payments/capture", json={"payment_id": str(uuid.uuid4())}).status_code
                for _ in range(5)]
    assert statuses == [401] * 5
    assert [count for _, count in window_rows(db, "capture:127.0.0.1")] == [5]

    # Fill the rest of this window (as limit - 5 more anonymous requests would) and knock once more.
    db.execute(f"UPDATE rate_limits SET count = %s WHERE key = 'capture:127.0.0.1'"
               f" AND window_start = to_timestamp(floor(extract(epoch FROM now()) / {window}) * {window})", (limit,))
    refused = stack.post("/api/payments/capture", json={"payment_id": str(uuid.uuid4())})
    assert_envelope(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"].isdigit() and 1 <= int(refused.headers["Retry-After"]) <= window
    assert "WWW-Authenticate" not in refused.headers
    assert [count for _, count in window_rows(db, "capture:127.0.0.1")] == [limit + 1]
    assert table_fingerprint(db) == before
