"""Issue 3, Idempotency-Key on POST routes, per (profile, key): the same request twice runs once
and replays the stored status and body byte for byte (`Idempotent-Replayed: true`); another
request under the same key is 422; a repeat while the first runs is 409 or a replay, never a
second execution; a malformed key is 400."""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.api import jwt, make_listing, make_profile, onboarded_seller, table_fingerprint
from harness.assertions import assert_envelope, request_id
from security_routes import audit_rows, settle


pytestmark = pytest.mark.usefixtures("fresh_ip_windows")


def notification(db, profile):
    return db.execute("INSERT INTO notifications (profile_id, kind) VALUES (%s, 'idem_test') RETURNING id::text",
                      (profile["id"],)).fetchone()[0]


def read_at(db, notification_id):
    return db.execute("SELECT read_at FROM notifications WHERE id = %s", (notification_id,)).fetchone()[0]


def for_sale(stack, db, price=3100):
    seller = onboarded_seller(stack, db)
    listing_id = make_listing(db, seller, price=price)
    settle(stack)
    return listing_id


def create_intent(stack, buyer, listing_id, key=None, **extra_headers):
    headers = {**buyer["headers"], **extra_headers}
    if key is not None:
        headers["Idempotency-Key"] = key
    return stack.post("/api/payments/create-intent", json={"listing_id": listing_id}, headers=headers)


def intents_at_stripe(stack, listing_id):
    return [r for r in stack.stripe.received(method="POST", path_prefix="/v1/payment_intents")
            if r["path"] == "/v1/payment_intents" and listing_id in (r["raw_body"] or "")]


def payments_of(db, listing_id):
    return db.execute("SELECT id::text, status FROM payments WHERE listing_id = %s", (listing_id,)).fetchall()


def key_row(db, profile, key):
    return db.execute("SELECT route, status, response_status FROM idempotency_keys WHERE profile_id = %s AND key = %s",
                      (profile["id"], key)).fetchone()


def test_create_intent_twice_with_one_key_runs_once_and_replays_byte_for_byte(stack, db):
    listing_id = for_sale(stack, db)
    buyer = make_profile(db, "buyer")
    key = f"intent-{uuid.uuid4()}"

    first = create_intent(stack, buyer, listing_id, key)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    second = create_intent(stack, buyer, listing_id, key)

    # Without the key a second call would find the reservation and answer 200: 201 is the replay.
    assert second.status_code == 201, second.text
    assert second.content == first.content
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.headers["Content-Type"] == first.headers["Content-Type"]
    assert request_id(second) != request_id(first)

    payment_id = first.json()["payment_id"]
    assert [p for p, _ in payments_of(db, listing_id)] == [payment_id]
    assert len(intents_at_stripe(stack, listing_id)) == 1
    assert [r["operation"] for r in audit_rows(db, request_id(first)) if r["success"]] == ["payment.create"]
    assert audit_rows(db, request_id(second)) == []
    assert key_row(db, buyer, key) == ("/api/payments/create-intent", "completed", 201)


def test_notification_read_twice_with_one_key_executes_once(stack, db):
    profile = make_profile(db, "buyer")
    notification_id = notification(db, profile)
    headers = {**profile["headers"], "Idempotency-Key": "read-once"}
    first = stack.post(f"/api/notifications/{notification_id}/read", json={}, headers=headers)
    assert first.status_code == 200, first.text
    stamped = read_at(db, notification_id)
    time.sleep(0.05)
    second = stack.post(f"/api/notifications/{notification_id}/read", json={}, headers=headers)
    assert second.status_code == 200, second.text
    assert second.content == first.content
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert read_at(db, notification_id) == stamped
    assert db.execute("SELECT count(*) FROM payment_audit_logs WHERE entity_id = %s",
                      (notification_id,)).fetchone()[0] == 1
    assert audit_rows(db, request_id(second)) == []


def test_one_key_with_a_different_body_is_422_and_changes_nothing(stack, db):
    listing_a = for_sale(stack, db)
    listing_b = for_sale(stack, db)
    buyer = make_profile(db, "buyer")
    key = f"reuse-{uuid.uuid4()}"
    assert create_intent(stack, buyer, listing_a, key).status_code == 201
    settle(stack)
    before = table_fingerprint(db)

    reused = create_intent(stack, buyer, listing_b, key)

    assert_envelope(reused, 422, "idempotency_key_reused")
    assert table_fingerprint(db) == before
    assert payments_of(db, listing_b) == []
    assert intents_at_stripe(stack, listing_b) == []
    assert db.execute("SELECT status FROM listings WHERE id = %s", (listing_b,)).fetchone()[0] == "active"


def test_one_key_on_another_route_or_resource_is_422(stack, db):
    profile = make_profile(db, "buyer")
    first_id, second_id = notification(db, profile), notification(db, profile)
    headers = {**profile["headers"], "Idempotency-Key": f"k-{uuid.uuid4()}"}
    assert stack.post(f"/api/notifications/{first_id}/read", json={}, headers=headers).status_code == 200
    before = table_fingerprint(db)
    other_resource = stack.post(f"/api/notifications/{second_id}/read", json={}, headers=headers)
    assert_envelope(other_resource, 422, "idempotency_key_reused")
    other_route = stack.post("/api/payments/create-intent", json={"listing_id": str(uuid.uuid4())}, headers=headers)
    assert_envelope(other_route, 422, "idempotency_key_reused")
    same_path_other_body = stack.post(f"/api/notifications/{first_id}/read", json={"x": 1}, headers=headers)
    assert_envelope(same_path_other_body, 422, "idempotency_key_reused")
    assert table_fingerprint(db) == before
    assert read_at(db, second_id) is None


def test_a_concurrent_pair_with_one_key_never_executes_twice(stack, db):
    listing_id = for_sale(stack, db)
    buyer = make_profile(db, "buyer")
    key = f"pair-{uuid.uuid4()}"
    fault = stack.stripe.inject_fault(type="delay", delay_ms=1500, method="POST", path_prefix="/v1/payment_intents",
                                      count=1)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            first = pool.submit(create_intent, stack, buyer, listing_id, key)
            time.sleep(0.4)  # the first now waits on Stripe with its key claimed
            second = pool.submit(create_intent, stack, buyer, listing_id, key)
            responses = [first.result(), second.result()]
    finally:
        with stack.stripe.meta_lock:
            hits = [f.hits for f in stack.stripe.faults if f.id == fault["id"]]
            stack.stripe.faults = [f for f in stack.stripe.faults if f.id != fault["id"]]
    assert hits == [1], "the delay fault was not used: the pair did not overlap"

    statuses = sorted(r.status_code for r in responses)
    created = [r for r in responses if r.status_code == 201]
    if statuses == [201, 409]:
        busy = next(r for r in responses if r.status_code == 409)
        assert_envelope(busy, 409, "idempotency_in_progress")
        assert busy.headers.get("Retry-After") == "1"
    else:
        assert statuses == [201, 201], [(r.status_code, r.text) for r in responses]
        assert created[0].content == created[1].content
        assert sorted(r.headers.get("Idempotent-Replayed", "") for r in responses) == ["", "true"]

    assert len(payments_of(db, listing_id)) == 1
    assert len(intents_at_stripe(stack, listing_id)) == 1
    assert db.execute("SELECT count(*) FROM payment_audit_logs WHERE operation = 'payment.create' AND success"
                      " AND actor_profile_id = %s", (buyer["id"],)).fetchone()[0] == 1

    # Once the first has finished, the same key replays its answer (the 409 was not stored).
    again = create_intent(stack, buyer, listing_id, key)
    assert again.status_code == 201, again.text
    assert again.content == created[0].content
    assert again.headers.get("Idempotent-Replayed") == "true"


INVALID_KEYS = {
    "with_space": "two words",
    "too_long": "k" * 256,
    "empty": "",
    "with_tab": "tab\tkey",
    "non_ascii": "cl\xe9".encode("latin-1"),
    "utf8_bytes": "ключ".encode(),
}


@pytest.mark.parametrize("case", INVALID_KEYS)
def test_a_malformed_key_is_400_and_nothing_runs(stack, db, case):
    profile = make_profile(db, "buyer")
    notification_id = notification(db, profile)
    before = table_fingerprint(db)
    response = stack.post(f"/api/notifications/{notification_id}/read", json={},
                          headers={**profile["headers"], "Idempotency-Key": INVALID_KEYS[case]})
    error = assert_envelope(response, 400, "invalid_field")
    assert "Idempotency-Key" in error["message"]
    assert table_fingerprint(db) == before
    assert read_at(db, notification_id) is None


def test_a_key_of_255_printable_characters_is_accepted(stack, db):
    profile = make_profile(db, "buyer")
    notification_id = notification(db, profile)
    key = ("!~" + uuid.uuid4().hex) * 8
    key = (key * 2)[:255]
    response = stack.post(f"/api/notifications/{notification_id}/read", json={},
                          headers={**profile["headers"], "Idempotency-Key": key})
    assert response.status_code == 200, response.text
    assert key_row(db, profile, key) == ("/api/notifications/{id}/read", "completed", 200)


def test_keys_are_per_profile(stack, db):
    alice, bob = make_profile(db, "buyer"), make_profile(db, "seller")
    alice_note, bob_note = notification(db, alice), notification(db, bob)
    key = f"shared-{uuid.uuid4()}"
    first = stack.post(f"/api/notifications/{alice_note}/read", json={}, headers={**alice["headers"], "Idempotency-Key": key})
    second = stack.post(f"/api/notifications/{bob_note}/read", json={}, headers={**bob["headers"], "Idempotency-Key": key})
    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    assert "Idempotent-Replayed" not in second.headers
    assert second.json()["id"] == bob_note
    assert read_at(db, alice_note) is not None and read_at(db, bob_note) is not None
    assert db.execute("SELECT count(*) FROM idempotency_keys WHERE key = %s", (key,)).fetchone()[0] == 2


def test_an_attacker_cannot_claim_a_victims_key(stack, db):
    """A request that fails authentication stores nothing under the key it carried."""
    victim = make_profile(db, "buyer")
    notification_id = notification(db, victim)
    key = f"victim-{uuid.uuid4()}"
    forged = jwt({"sub": victim["user_id"], "exp": int(time.time()) + 600}, secret=b"forged-secret-0123456789abcdefghij")
    refused = stack.post(f"/api/notifications/{notification_id}/read", json={"evil": True},
                         headers={"Authorization": f"Bearer {forged}", "Idempotency-Key": key})
    assert_envelope(refused, 401, "unauthenticated")
    assert key_row(db, victim, key) is None
    honest = stack.post(f"/api/notifications/{notification_id}/read", json={},
                        headers={**victim["headers"], "Idempotency-Key": key})
    assert honest.status_code == 200, honest.text
    assert "Idempotent-Replayed" not in honest.headers


def test_a_handler_error_is_stored_and_replayed(stack, db):
    buyer = make_profile(db, "buyer")
    key = f"missing-{uuid.uuid4()}"
    missing = str(uuid.uuid4())
    first = create_intent(stack, buyer, missing, key)
    assert_envelope(first, 404, "listing_not_found")
    second = create_intent(stack, buyer, missing, key)
    assert second.status_code == 404
    assert second.content == first.content
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert key_row(db, buyer, key) == ("/api/payments/create-intent", "completed", 404)


def test_a_transient_stripe_failure_releases_the_key_so_a_retry_runs(stack, db):
    """`502 stripe_unavailable` says "retry shortly" (Retry-After: 5): the retry with the same key
    must run again, not replay the outage for 24 h (docs/security.md: a transient failure
    releases the key)."""
    listing_id = for_sale(stack, db)
    buyer = make_profile(db, "buyer")
    key = f"outage-{uuid.uuid4()}"
    fault = stack.stripe.inject_fault(type="error", status=500, method="POST", path_prefix="/v1/payment_intents", count=10)
    try:
        failed = create_intent(stack, buyer, listing_id, key)
    finally:
        with stack.stripe.meta_lock:
            stack.stripe.faults = [f for f in stack.stripe.faults if f.id != fault["id"]]
    assert_envelope(failed, 502, "stripe_unavailable")
    # The outcome at Stripe is unknown: the listing stays held for this buyer's retry.
    assert db.execute("SELECT status, reserved_by::text FROM listings WHERE id = %s",
                      (listing_id,)).fetchone() == ("payment_pending", buyer["id"])

    retried = create_intent(stack, buyer, listing_id, key)
    assert retried.status_code == 201, (retried.status_code, retried.headers.get("Idempotent-Replayed"), retried.text)
    assert "Idempotent-Replayed" not in retried.headers
    assert [s for _, s in payments_of(db, listing_id) if s != "failed"] != []
