"""Failure semantics of the inbox (issue 5): transient database failures answer 503 with
nothing written, so Stripe's redelivery applies the event once; a handler error is stored
`failed` (attempts, last error, next attempt) and answered 500; retries are bounded and the
event ends `dead`, visible to operators."""

import threading
import time

import psycopg

from harness.processes import wait_until
from test_webhooks_inbox import (audit_operations, cli, deliver, encode, event_row, listing_row, new_payment,
                                 notifications, payment_row, send, succeeded)

MAX_ATTEMPTS = 8  # WebhookInbox.maximumFailedAttempts, documented in docs/webhooks.md


def wait_for_every_worker(stack):
    """After a database restart each app worker notices its broken connection on its next
    query (503) and reconnects on the one after: ask /api/ready until 3 × WORKERS answers in a
    row are 200, so that the redelivery below meets a reconnected worker."""
    streak = {"n": 0}

    def all_ready():
        streak["n"] = streak["n"] + 1 if stack.get("/api/ready").status_code == 200 else 0
        return streak["n"] >= 3 * int(stack.app.env["WORKERS"])

    wait_until(all_ready, 30, what="/api/ready to answer 200 on every worker")


def assert_applied_once(stack, db, payment, evt):
    body = encode(evt)
    response = deliver(stack, body)
    assert response.status_code == 200 and response.json() == {"received": True}, response.text
    assert deliver(stack, body).json() == {"received": True, "duplicate": True}
    row = event_row(db, evt["id"])
    assert (row["status"], row["attempts"]) == ("processed", 1)
    assert payment_row(db, payment["id"])["status"] == "succeeded"
    assert audit_operations(db, payment["id"]) == ["payment.succeeded"]
    assert len(notifications(db, payment["id"])) == 2


def test_database_stopped_before_delivery_is_503_and_the_redelivery_applies_once(stack, db):
    payment = new_payment(db)
    evt = succeeded(payment, int(time.time()))
    body = encode(evt)
    stack.stop_database()
    try:
        response = deliver(stack, body)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "database_unavailable"
    finally:
        stack.start_database()
    wait_for_every_worker(stack)
    with psycopg.connect(stack.database_url, autocommit=True) as fresh:
        assert event_row(fresh, evt["id"]) is None
        assert_applied_once(stack, fresh, payment, evt)


def test_database_stopped_mid_delivery_is_503_with_no_partial_rows(stack, db, admin_db):
    """The delivery waits for the payment's row lock, inside its transaction, when PostgreSQL
    goes down: the answer is 503 and none of its writes survive."""
    payment = new_payment(db)
    evt = succeeded(payment, int(time.time()))
    body = encode(evt)
    answer = {}
    holder = psycopg.connect(stack.database_url)  # a transaction holding the payment's row lock
    try:
        holder.execute("SELECT 1 FROM payments WHERE id = %s FOR UPDATE", (payment["id"],))
        thread = threading.Thread(target=lambda: answer.update(response=deliver(stack, body)))
        thread.start()
        # As the superuser: the app's sessions (its own role) show their queries only to it.
        wait_until(lambda: admin_db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            " AND (query LIKE '%%FROM payments%%FOR UPDATE%%' OR query LIKE '%%webhook_receive_payment_intent%%')"
            ).fetchone()[0] == 1, 10, what="the delivery to wait on the payment's lock")
        stack.stop_database()
        thread.join(30)
        assert not thread.is_alive()
    finally:
        stack.start_database()
        holder.close()
    response = answer["response"]
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "database_unavailable"
    wait_for_every_worker(stack)
    with psycopg.connect(stack.database_url, autocommit=True) as fresh:
        assert event_row(fresh, evt["id"]) is None
        assert payment_row(fresh, payment["id"])["status"] == "processing"
        assert listing_row(fresh, payment["listing"])["status"] == "payment_pending"
        assert audit_operations(fresh, payment["id"]) == [] and notifications(fresh, payment["id"]) == []
        assert_applied_once(stack, fresh, payment, evt)


def test_lock_held_past_the_statement_timeout_is_503_with_nothing_stored(stack, db):
    """docs/webhooks.md: a lock or statement timeout answers 503 and stores nothing (the
    transaction rolled back; Stripe retries). The app's statement_timeout is 15 s."""
    wait_for_every_worker(stack)  # a 503 below must come from the lock, not from a stale connection
    payment = new_payment(db)
    evt = succeeded(payment, int(time.time()))
    with psycopg.connect(stack.database_url) as holder:
        holder.execute("SELECT 1 FROM payments WHERE id = %s FOR UPDATE", (payment["id"],))
        started = time.monotonic()
        response = deliver(stack, encode(evt))
        waited = time.monotonic() - started
        holder.rollback()
    assert waited >= 10, f"the delivery did not wait for the lock ({waited:.1f} s): {response.text}"
    stored = event_row(db, evt["id"])
    stored = stored and {k: stored[k] for k in ("status", "attempts", "last_error")}
    assert response.status_code == 503, (response.status_code, response.text, stored)
    assert stored is None
    assert send(stack, evt).json() == {"received": True}
    assert payment_row(db, payment["id"])["status"] == "succeeded"


def test_malformed_object_is_failed_then_retried_then_dead(stack, db):
    payment = new_payment(db)
    evt = succeeded(payment, int(time.time()))
    evt["data"]["object"]["amount"] = "5000"  # a string where Stripe sends an integer
    response = send(stack, evt)
    assert response.status_code == 500, response.text
    assert response.json()["error"]["code"] == "webhook_processing_failed"
    row = event_row(db, evt["id"])
    assert (row["status"], row["attempts"], row["type"]) == ("failed", 1, "payment_intent.succeeded")
    assert row["last_error"] and "payment_intent.succeeded" in row["last_error"]
    assert row["next_attempt_at"] is not None
    assert bytes(row["payload"]) == encode(evt)
    assert evt["id"] in cli(stack, "events", "list", "--status", "failed", "--limit", "1000").stdout

    # Stripe's own retry tries again and fails again: attempts grow, still 500.
    response = send(stack, evt)
    assert (response.status_code, response.json()["error"]["code"]) == (500, "webhook_processing_failed")
    assert (event_row(db, evt["id"])["status"], event_row(db, evt["id"])["attempts"]) == ("failed", 2)

    # An operator's replay fails too (exit 1) and counts as an attempt.
    replay = cli(stack, "events", "replay", "--id", evt["id"], check=False)
    assert replay.returncode == 1 and f"{evt['id']}\tfailed" in replay.stdout
    assert (event_row(db, evt["id"])["status"], event_row(db, evt["id"])["attempts"]) == ("failed", 3)

    # The sweeper retries only when the next attempt is due.
    cli(stack, "sweep")
    assert event_row(db, evt["id"])["attempts"] == 3
    db.execute("UPDATE webhook_events SET next_attempt_at = now() WHERE id = %s", (evt["id"],))
    cli(stack, "sweep")
    row = event_row(db, evt["id"])
    assert (row["status"], row["attempts"]) == ("failed", 4)
    assert row["next_attempt_at"] is not None

    # One attempt short of the bound: the next failing sweep makes it dead.
    db.execute("UPDATE webhook_events SET attempts = %s, next_attempt_at = now() WHERE id = %s",
               (MAX_ATTEMPTS - 1, evt["id"]))
    cli(stack, "sweep")
    row = event_row(db, evt["id"])
    assert (row["status"], row["attempts"]) == ("dead", MAX_ATTEMPTS)
    assert row["last_error"]
    assert evt["id"] in cli(stack, "events", "list", "--status", "dead", "--limit", "1000").stdout
    # Dead events are no longer swept.
    db.execute("UPDATE webhook_events SET next_attempt_at = now() WHERE id = %s", (evt["id"],))
    cli(stack, "sweep")
    assert event_row(db, evt["id"])["attempts"] == MAX_ATTEMPTS

    # Nothing of the event was ever applied.
    assert payment_row(db, payment["id"])["status"] == "processing"
    assert audit_operations(db, payment["id"]) == [] and notifications(db, payment["id"]) == []


def test_failed_event_is_not_applied_by_a_valid_event_and_a_valid_one_still_applies(stack, db):
    """A failing event does not block the payment: the next valid event applies normally."""
    payment = new_payment(db)
    bad = succeeded(payment, int(time.time()))
    bad["data"]["object"]["amount_received"] = {"value": 1}
    assert send(stack, bad).status_code == 500
    good = succeeded(payment, int(time.time()) + 1)
    assert send(stack, good).json() == {"received": True}
    assert payment_row(db, payment["id"])["status"] == "succeeded"
    assert event_row(db, bad["id"])["status"] == "failed"
    assert event_row(db, good["id"])["status"] == "processed"
