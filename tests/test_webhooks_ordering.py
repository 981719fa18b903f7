"""Out-of-order deliveries end in the right state (issue 5): every transition is guarded by
the allowed previous states and the event's `created`; an event for an object we do not
know yet is parked and applied once the object appears (sweeper or `events replay`)."""

import time

from harness.api import make_profile, make_listing
from test_webhooks_inbox import (audit_operations, capturable, charge_refunded, cli, dispute_event, event_row,
                                 insert_payment, listing_row, new_payment, notifications, payment_failed, payment_row,
                                 send, succeeded, uid)

BOTH = "both"


def expect_notified(db, payment, kinds: dict):
    """kinds: {kind: 'buyer' | 'seller' | 'both'}, each exactly once per party."""
    expected = []
    for kind, who in kinds.items():
        if who in ("buyer", BOTH):
            expected.append((payment["buyer"]["id"], kind))
        if who in ("seller", BOTH):
            expected.append((payment["seller"]["id"], kind))
    assert notifications(db, payment["id"]) == sorted(expected)


def test_succeeded_before_amount_capturable_updated_ends_succeeded(stack, db):
    payment = new_payment(db)
    t = int(time.time())
    assert send(stack, succeeded(payment, t + 2)).json() == {"received": True}
    late = capturable(payment, t + 1)
    assert send(stack, late).json() == {"received": True}
    assert event_row(db, late["id"])["status"] == "processed"  # stale: stored and marked, no effect
    got = payment_row(db, payment["id"])
    assert (got["status"], got["amount_received"], got["amount_capturable"], got["capture_before"]) == \
        ("succeeded", payment["amount"], 0, None)
    assert listing_row(db, payment["listing"])["status"] == "sold"
    assert audit_operations(db, payment["id"]) == ["payment.succeeded"]
    expect_notified(db, payment, {"payment_succeeded": BOTH})


def test_in_order_authorisation_then_success(stack, db):
    """The reference sequence, for comparison with the reversed one above."""
    payment = new_payment(db)
    t = int(time.time())
    send(stack, capturable(payment, t + 1))
    got = payment_row(db, payment["id"])
    assert (got["status"], got["amount_capturable"]) == ("requires_capture", payment["amount"])
    assert got["capture_before"] is not None
    # The listing stays held until the capture deadline (sql/0004).
    assert listing_row(db, payment["listing"])["reserved_until"] >= got["capture_before"]
    send(stack, succeeded(payment, t + 2))
    got = payment_row(db, payment["id"])
    assert (got["status"], got["amount_received"], got["amount_capturable"]) == ("succeeded", payment["amount"], 0)
    assert audit_operations(db, payment["id"]) == ["payment.authorized", "payment.succeeded"]
    expect_notified(db, payment, {"payment_authorized": "seller", "payment_succeeded": BOTH})


def test_partial_refund_before_succeeded_ends_succeeded_with_the_refund(stack, db):
    payment = new_payment(db, amount=8000)
    t = int(time.time())
    assert send(stack, charge_refunded(payment, t + 3, refunded=2500)).json() == {"received": True}
    got = payment_row(db, payment["id"])
    assert (got["status"], got["amount_received"], got["amount_refunded"], got["stripe_charge_id"]) == \
        ("succeeded", 8000, 2500, payment["charge"])
    for late in (succeeded(payment, t + 2), capturable(payment, t + 1)):
        assert send(stack, late).json() == {"received": True}
    got = payment_row(db, payment["id"])
    assert (got["status"], got["amount_received"], got["amount_refunded"]) == ("succeeded", 8000, 2500)
    assert listing_row(db, payment["listing"])["status"] == "sold"
    assert audit_operations(db, payment["id"]) == ["payment.succeeded", "payment.refunded"]
    expect_notified(db, payment, {"payment_succeeded": BOTH, "payment_refunded": BOTH})


def test_full_refund_before_succeeded_ends_refunded(stack, db):
    payment = new_payment(db, amount=6000)
    t = int(time.time())
    send(stack, charge_refunded(payment, t + 3, refunded=6000))
    send(stack, succeeded(payment, t + 2))
    # An older, smaller cumulative refund arrives last: totals never shrink.
    send(stack, charge_refunded(payment, t + 2, refunded=1000))
    got = payment_row(db, payment["id"])
    assert (got["status"], got["amount_received"], got["amount_refunded"]) == ("refunded", 6000, 6000)
    # sql/0005: a fully refunded purchase puts its listing back on sale.
    assert listing_row(db, payment["listing"]) == {"status": "active", "reserved_by": None, "reserved_until": None}
    assert audit_operations(db, payment["id"]) == ["payment.succeeded", "payment.refunded"]
    expect_notified(db, payment, {"payment_succeeded": BOTH, "payment_refunded": BOTH})


def test_stale_payment_failed_after_succeeded_does_not_regress(stack, db):
    payment = new_payment(db)
    t = int(time.time())
    send(stack, succeeded(payment, t + 5))
    stale = payment_failed(payment, t + 1)
    assert send(stack, stale).json() == {"received": True}
    assert event_row(db, stale["id"])["status"] == "processed"
    got = payment_row(db, payment["id"])
    assert (got["status"], got["amount_received"]) == ("succeeded", payment["amount"])
    assert listing_row(db, payment["listing"])["status"] == "sold"
    assert audit_operations(db, payment["id"]) == ["payment.succeeded"]
    expect_notified(db, payment, {"payment_succeeded": BOTH})


def test_payment_failed_releases_the_reservation_and_a_stale_authorisation_does_not_revive_it(stack, db):
    payment = new_payment(db)
    t = int(time.time())
    send(stack, payment_failed(payment, t + 5))
    send(stack, capturable(payment, t + 1))
    got = payment_row(db, payment["id"])
    assert (got["status"], got["amount_capturable"]) == ("failed", 0)
    assert listing_row(db, payment["listing"]) == {"status": "active", "reserved_by": None, "reserved_until": None}
    assert audit_operations(db, payment["id"]) == ["payment.failed"]
    expect_notified(db, payment, {"payment_failed": "buyer"})


# --- parked ------------------------------------------------------------------------------------

def unsaved_payment(db):
    """Everything a payment needs except its row: the create transaction has not committed."""
    buyer = make_profile(db, "buyer")
    seller = make_profile(db, "seller", stripe_account=f"acct_{uid()}", charges_enabled=True)
    listing = make_listing(db, seller, price=4200)
    db.execute("UPDATE listings SET status = 'payment_pending', reserved_by = %s, reserved_until = now() + interval '10 minutes'"
               " WHERE id = %s", (buyer["id"], listing))
    return {"id": None, "intent": f"pi_{uid()}", "charge": f"ch_{uid()}", "amount": 4200, "currency": "usd",
            "buyer": buyer, "seller": seller, "listing": listing}


def save(db, payment):
    payment["id"] = insert_payment(db, buyer=payment["buyer"], seller=payment["seller"], listing=payment["listing"],
                                   intent=payment["intent"], amount=payment["amount"])


def test_event_for_an_unknown_payment_is_parked_then_applied_by_the_sweeper(stack, db):
    payment = unsaved_payment(db)
    evt = succeeded(payment, int(time.time()))
    response = send(stack, evt)
    assert response.status_code == 200
    assert response.json() == {"received": True, "status": "parked"}
    row = event_row(db, evt["id"])
    assert (row["status"], row["attempts"], row["object_id"]) == ("parked", 1, payment["intent"])
    assert row["next_attempt_at"] is not None and row["processed_at"] is None
    assert evt["id"] in cli(stack, "events", "list", "--status", "parked", "--limit", "1000").stdout

    # Due but the payment still unknown: stays parked, one more attempt.
    db.execute("UPDATE webhook_events SET next_attempt_at = now() WHERE id = %s", (evt["id"],))
    cli(stack, "sweep")
    assert (event_row(db, evt["id"])["status"], event_row(db, evt["id"])["attempts"]) == ("parked", 2)

    save(db, payment)
    db.execute("UPDATE webhook_events SET next_attempt_at = now() WHERE id = %s", (evt["id"],))
    cli(stack, "sweep")
    row = event_row(db, evt["id"])
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("processed", 3, None)
    got = payment_row(db, payment["id"])
    assert (got["status"], got["amount_received"]) == ("succeeded", 4200)
    assert listing_row(db, payment["listing"])["status"] == "sold"

    # Applied once: another sweep, a replay and Stripe's redelivery change nothing.
    cli(stack, "sweep")
    cli(stack, "events", "replay", "--id", evt["id"])
    assert send(stack, evt).json() == {"received": True, "duplicate": True}
    assert audit_operations(db, payment["id"]) == ["payment.succeeded"]
    expect_notified(db, payment, {"payment_succeeded": BOTH})
    assert evt["id"] not in cli(stack, "events", "list", "--status", "parked", "--limit", "1000").stdout


def test_parked_event_applied_by_replay(stack, db):
    payment = unsaved_payment(db)
    t = int(time.time())
    first, second = capturable(payment, t + 1), succeeded(payment, t + 2)
    assert send(stack, first).json()["status"] == "parked"
    assert send(stack, second).json()["status"] == "parked"
    # Stripe's retry of a parked event tries again (still unknown: still parked).
    assert send(stack, first).json() == {"received": True, "status": "parked"}
    save(db, payment)
    replay = cli(stack, "events", "replay", "--type", "payment_intent.succeeded", "--since", str(t + 2))
    assert f"{second['id']}\tprocessed" in replay.stdout
    replay = cli(stack, "events", "replay", "--id", first["id"])
    assert f"{first['id']}\tprocessed" in replay.stdout
    assert event_row(db, first["id"])["status"] == "processed"
    assert event_row(db, second["id"])["status"] == "processed"
    got = payment_row(db, payment["id"])
    assert (got["status"], got["amount_received"], got["amount_capturable"]) == ("succeeded", 4200, 0)
    assert audit_operations(db, payment["id"]) == ["payment.succeeded"]
    expect_notified(db, payment, {"payment_succeeded": BOTH})
    # Replaying again is idempotent.
    cli(stack, "events", "replay", "--id", second["id"])
    assert audit_operations(db, payment["id"]) == ["payment.succeeded"]


def test_unknown_event_id_replay_reports_not_found(stack):
    result = cli(stack, "events", "replay", "--id", f"evt_{uid()}", check=False)
    assert result.returncode == 1
    assert "not found" in result.stdout


# --- disputes ----------------------------------------------------------------------------------

def dispute_row(db, dispute_id):
    return db.execute("SELECT status, amount_cents, kind, payment_id::text FROM disputes WHERE stripe_dispute_id = %s",
                      (dispute_id,)).fetchone()


def chargeback_notices(db, payment):
    return db.execute("SELECT count(*) FROM notifications WHERE kind = 'chargeback_opened' AND profile_id = %s"
                      " AND payload->>'payment_id' = %s", (payment["seller"]["id"], payment["id"])).fetchone()[0]


def paid(stack, db):
    payment = new_payment(db)
    send(stack, succeeded(payment, int(time.time()) - 100))
    assert payment_row(db, payment["id"])["status"] == "succeeded"
    return payment


def test_dispute_closed_before_created_ends_closed(stack, db):
    for outcome in ("won", "lost"):
        payment = paid(stack, db)
        dispute = f"dp_{uid()}"
        t = int(time.time())
        assert send(stack, dispute_event("charge.dispute.closed", payment, dispute, outcome, t + 10)).json() == \
            {"received": True}
        assert send(stack, dispute_event("charge.dispute.created", payment, dispute, "needs_response", t + 1)).json() == \
            {"received": True}
        assert send(stack, dispute_event("charge.dispute.updated", payment, dispute, "under_review", t + 5)).json() == \
            {"received": True}
        assert dispute_row(db, dispute) == (outcome, payment["amount"], "chargeback", payment["id"])
        assert payment_row(db, payment["id"])["is_disputed"] is False, outcome
        assert chargeback_notices(db, payment) == 1


def test_dispute_in_order_marks_the_payment_disputed_until_closed(stack, db):
    payment = paid(stack, db)
    dispute = f"dp_{uid()}"
    t = int(time.time())
    created = dispute_event("charge.dispute.created", payment, dispute, "needs_response", t + 1)
    send(stack, created)
    assert dispute_row(db, dispute)[0] == "needs_response"
    assert payment_row(db, payment["id"])["is_disputed"] is True
    assert send(stack, created).json() == {"received": True, "duplicate": True}
    send(stack, dispute_event("charge.dispute.closed", payment, dispute, "won", t + 9))
    assert dispute_row(db, dispute)[0] == "won"
    assert payment_row(db, payment["id"])["is_disputed"] is False
    assert chargeback_notices(db, payment) == 1
    assert payment_row(db, payment["id"])["status"] == "succeeded"


def test_dispute_for_an_unknown_payment_is_parked(stack, db):
    payment = unsaved_payment(db)
    payment["id"] = "-"
    evt = dispute_event("charge.dispute.created", payment, f"dp_{uid()}", "needs_response", int(time.time()))
    assert send(stack, evt).json() == {"received": True, "status": "parked"}
    assert event_row(db, evt["id"])["status"] == "parked"
