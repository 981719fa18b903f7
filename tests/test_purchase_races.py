"""Issue 6, concurrency in the purchase flow: buyers racing for one listing, a buyer repeating
create-intent, double-clicked captures, and webhooks that overtake the API's own responses."""

import threading

import pytest

from charge_models import stack, stripe_account_scoped  # noqa: F401  (both charge models; see charge_models.py)
from harness.api import make_profile
from harness.assertions import request_id
from test_purchase_flow import (  # noqa: F401  (fresh_ip_rate_windows is an autouse fixture)
    CREATE_PATH, audit_rows, authorised, cancel, capture, create_intent, created_intent, creates_for_listing,
    events_for, fake_calls, fake_object, fresh_ip_rate_windows, listing_row, new_purchase, notification_kinds,
    payment_row, payments_for_listing, settle_webhooks, sweep, wait_for, wait_payment_status)


def concurrently(*calls):
    """Runs the calls at the same moment (a barrier), returns their results in order."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(index, call):
        barrier.wait()
        try:
            results[index] = call()
        except Exception as error:  # surfaced by the assertions below
            results[index] = error

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results




# ------------------------------------------------------------------------------------------
# create-intent
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("round_", range(3))
def test_two_buyers_race_for_one_listing(stack, db, round_):
    seller, first, listing = new_purchase(stack, db)
    second = make_profile(db, "buyer")

    responses = concurrently(lambda: create_intent(stack, first, listing), lambda: create_intent(stack, second, listing))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409], [(r.status_code, r.text) for r in responses]
    won = next(r for r in responses if r.status_code == 201)
    lost = next(r for r in responses if r.status_code == 409)
    assert lost.json()["error"]["code"] == "listing_unavailable", lost.text
    winner = first if responses[0].status_code == 201 else second

    payments = payments_for_listing(db, listing)
    assert len(payments) == 1, payments
    assert str(payments[0]["buyer_id"]) == winner["id"]
    assert str(payments[0]["id"]) == won.json()["payment_id"]
    row = listing_row(db, listing)
    assert (row["status"], str(row["reserved_by"])) == ("payment_pending", winner["id"])
    creates = creates_for_listing(stack, listing)
    assert len(creates) == 1, creates
    assert creates[0]["headers"]["Idempotency-Key"] == f"payment:{won.json()['payment_id']}:create"


def test_many_buyers_race_for_one_listing(stack, db):
    seller, _, listing = new_purchase(stack, db)
    buyers = [make_profile(db, "buyer") for _ in range(6)]
    responses = concurrently(*[(lambda b=b: create_intent(stack, b, listing)) for b in buyers])
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 5, [(r.status_code, r.text) for r in responses]
    assert all(r.json()["error"]["code"] == "listing_unavailable" for r in responses if r.status_code == 409)
    assert len(payments_for_listing(db, listing)) == 1
    assert len(creates_for_listing(stack, listing)) == 1


def test_same_buyer_twice_returns_the_same_intent(stack, db):
    seller, buyer, listing, first = created_intent(stack, db)

    second = create_intent(stack, buyer, listing)
    assert second.status_code == 200, second.text
    body = second.json()
    for field in ("payment_id", "payment_intent_id", "client_secret", "amount", "application_fee", "currency"):
        assert body[field] == first[field], (field, body, first)
    assert body["reserved_until"] is not None
    assert len(creates_for_listing(stack, listing)) == 1
    assert len(payments_for_listing(db, listing)) == 1
    # Still one intent after the card is authorised and the buyer reloads the page.
    status, _ = stack.stripe.confirm_payment_intent(first["payment_intent_id"], "pm_card_visa")
    assert status == 200
    wait_payment_status(db, first["payment_id"], "requires_capture")
    third = create_intent(stack, buyer, listing)
    assert third.status_code == 200 and third.json()["payment_intent_id"] == first["payment_intent_id"], third.text
    assert len(creates_for_listing(stack, listing)) == 1


def test_same_buyer_twice_concurrently_never_two_intents(stack, db):
    seller, buyer, listing = new_purchase(stack, db)
    responses = concurrently(*[(lambda: create_intent(stack, buyer, listing)) for _ in range(4)])
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 1, [(r.status_code, r.text) for r in responses]
    created = next(r.json() for r in responses if r.status_code == 201)
    for response in responses:
        if response.status_code == 200:
            assert response.json()["payment_intent_id"] == created["payment_intent_id"]
        elif response.status_code == 409:
            assert response.json()["error"]["code"] == "payment_in_progress", response.text
            assert response.headers.get("Retry-After")
        else:
            assert response.status_code == 201, response.text
    assert len(payments_for_listing(db, listing)) == 1
    assert len(creates_for_listing(stack, listing)) == 1


def test_same_buyer_while_stripe_is_slow(stack, db, faults):
    """The first create is held at Stripe for a second: the repeats in that window get
    409 payment_in_progress, never a second intent; afterwards the repeat returns the intent."""
    seller, buyer, listing = new_purchase(stack, db)
    faults(type="delay", when="before", delay_ms=1500, method="POST", path_prefix=CREATE_PATH, count=1)
    slow = {}
    thread = threading.Thread(target=lambda: slow.setdefault("r", create_intent(stack, buyer, listing)))
    thread.start()
    wait_for(lambda: payments_for_listing(db, listing), what="the payment row")
    repeat = create_intent(stack, buyer, listing)
    thread.join(30)
    assert repeat.status_code == 409 and repeat.json()["error"]["code"] == "payment_in_progress", repeat.text
    assert slow["r"].status_code == 201, slow["r"].text
    after = create_intent(stack, buyer, listing)
    assert after.status_code == 200 and after.json()["payment_intent_id"] == slow["r"].json()["payment_intent_id"]
    assert len(creates_for_listing(stack, listing)) == 1
    assert len(payments_for_listing(db, listing)) == 1


# ------------------------------------------------------------------------------------------
# capture
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("round_", range(3))
def test_double_click_capture_captures_once(stack, db, round_):
    seller, buyer, listing, body = authorised(stack, db, price=4200)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]

    responses = concurrently(lambda: capture(stack, buyer, payment_id), lambda: capture(stack, buyer, payment_id))
    for response in responses:
        if response.status_code == 200:
            assert response.json()["status"] == "succeeded" and response.json()["amount_received"] == 4200
        else:
            assert (response.status_code, response.json()["error"]["code"]) == (409, "payment_not_capturable"), \
                response.text
    assert 200 in [r.status_code for r in responses]

    captures = stack.stripe.received(method="POST", path_prefix=f"/v1/payment_intents/{intent_id}/capture")
    assert captures, "no capture reached the fake"
    assert {c["headers"]["Idempotency-Key"] for c in captures} == {f"payment:{payment_id}:capture:4200"}
    assert len([c for c in captures if c["status"] == 200 and not c["idempotent_replayed"]]) == 1, captures
    assert len(events_for(stack, intent_id, "charge.captured")) == 1
    assert len(events_for(stack, intent_id, "payment_intent.succeeded")) == 1
    intent = fake_object(stack, intent_id)
    assert (intent["status"], intent["amount_received"]) == ("succeeded", 4200)

    settle_webhooks(stack)
    payment = payment_row(db, payment_id)
    assert (payment["status"], payment["amount_received"], payment["amount_capturable"]) == ("succeeded", 4200, 0)
    assert listing_row(db, listing)["status"] == "sold"
    assert notification_kinds(db, buyer["id"], payment_id).count("payment_succeeded") == 1
    assert notification_kinds(db, seller["id"], payment_id).count("payment_succeeded") == 1
    # Every click that was answered 200 is the buyer's own audited action; the money moved once.
    ops = [r["operation"] for r in audit_rows(db, payment_id) if r["success"]]
    assert ops.count("payment.capture") == [r.status_code for r in responses].count(200), ops
    assert ops.count("payment.succeeded") <= 1, ops


def test_double_click_capture_with_one_idempotency_key_replays(stack, db):
    seller, buyer, listing, body = authorised(stack, db)
    payment_id = body["payment_id"]
    headers = {**buyer["headers"], "Idempotency-Key": f"capture-click-{payment_id}"}
    first = stack.post("/api/payments/capture", json={"payment_id": payment_id}, headers=headers)
    second = stack.post("/api/payments/capture", json={"payment_id": payment_id}, headers=headers)
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json() == second.json()
    assert len([c for c in fake_calls(stack, f"payment:{payment_id}:capture") if not c["idempotent_replayed"]]) == 1


def test_capture_and_cancel_at_once_end_consistent(stack, db):
    """The buyer clicks 'confirm delivery' and 'cancel' together: whichever wins at Stripe,
    our row ends in the same state as the intent at Stripe, and the money moved once at most."""
    seller, buyer, listing, body = authorised(stack, db)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]
    captured, cancelled = concurrently(lambda: capture(stack, buyer, payment_id), lambda: cancel(stack, buyer, payment_id))
    assert captured.status_code < 500 or captured.json()["error"]["code"].startswith("stripe"), captured.text
    assert cancelled.status_code < 500 or cancelled.json()["error"]["code"].startswith("stripe"), cancelled.text
    settle_webhooks(stack)
    intent = fake_object(stack, intent_id)
    payment = payment_row(db, payment_id)
    row = listing_row(db, listing)
    if intent["status"] == "succeeded":
        assert (payment["status"], payment["amount_received"], row["status"]) == ("succeeded", 5000, "sold")
        assert captured.status_code == 200, captured.text
    else:
        assert intent["status"] == "canceled"
        assert (payment["status"], payment["amount_received"], row["status"]) == ("canceled", 0, "active")
        assert cancelled.status_code == 200, cancelled.text


# ------------------------------------------------------------------------------------------
# Webhooks overtaking the API's own response
# ------------------------------------------------------------------------------------------
# Stripe emits payment_intent.canceled / .succeeded the moment it acts, so the webhook can reach
# the app before the request that caused it has written its row. The person's action must still
# be audited with their request (SPEC §7: every state-changing action, with request id and actor).

def test_cancel_overtaken_by_its_webhook_is_still_audited(stack, db, faults):
    seller, buyer, listing, body = authorised(stack, db)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]
    settle_webhooks(stack)
    # Stripe cancels at once but its answer takes 1.5 s: the webhook arrives first.
    faults(type="delay", when="after", delay_ms=1500, method="POST",
           path_prefix=f"/v1/payment_intents/{intent_id}/cancel", count=1)

    response = cancel(stack, buyer, payment_id)
    assert response.status_code == 200 and response.json()["status"] == "canceled", response.text
    settle_webhooks(stack)
    assert payment_row(db, payment_id)["status"] == "canceled"
    assert listing_row(db, listing)["status"] == "active"
    mine = [r for r in audit_rows(db, payment_id) if r["request_id"] == request_id(response)]
    assert any(r["operation"] == "payment.cancel" and r["success"] and r["actor"] == buyer["id"] for r in mine), \
        audit_rows(db, payment_id)


def test_capture_overtaken_by_its_webhook_is_still_audited(stack, db, faults):
    seller, buyer, listing, body = authorised(stack, db)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]
    settle_webhooks(stack)
    faults(type="delay", when="after", delay_ms=1500, method="POST",
           path_prefix=f"/v1/payment_intents/{intent_id}/capture", count=1)

    response = capture(stack, buyer, payment_id)
    assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text
    settle_webhooks(stack)
    assert payment_row(db, payment_id)["status"] == "succeeded"
    assert listing_row(db, listing)["status"] == "sold"
    assert notification_kinds(db, buyer["id"], payment_id).count("payment_succeeded") == 1
    mine = [r for r in audit_rows(db, payment_id) if r["request_id"] == request_id(response)]
    assert any(r["operation"] == "payment.capture" and r["success"] and r["actor"] == buyer["id"] for r in mine), \
        audit_rows(db, payment_id)


def test_sweep_overtaken_by_its_webhook_still_audits_and_notifies(stack, db, faults):
    seller, buyer, listing, body = created_intent(stack, db)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]
    settle_webhooks(stack)
    faults(type="delay", when="after", delay_ms=1500, method="POST",
           path_prefix=f"/v1/payment_intents/{intent_id}/cancel", count=1)
    db.execute("UPDATE listings SET reserved_until = now() - interval '1 minute' WHERE id = %s", (listing,))

    sweep(stack)
    settle_webhooks(stack)
    assert fake_object(stack, intent_id)["status"] == "canceled"
    assert payment_row(db, payment_id)["status"] == "canceled"
    assert listing_row(db, listing)["status"] == "active"
    assert [r["operation"] for r in audit_rows(db, payment_id)].count("payment.reservation_expired") == 1, \
        audit_rows(db, payment_id)
    assert "reservation_expired" in notification_kinds(db, buyer["id"], payment_id), \
        notification_kinds(db, buyer["id"], payment_id)
