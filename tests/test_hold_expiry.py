"""Issue 15, item 4 — an authorisation nobody captured does not simply lapse: the sweeper warns
buyer and seller `HOLD_WARNING_HOURS` before, then applies `HOLD_EXPIRY_ACTION` (`cancel`, the
default, or `capture`) `CAPTURE_MARGIN_HOURS` before `capture_before`; an open dispute blocks
the automatic capture and alerts the admins, once."""

import subprocess
from datetime import datetime, timedelta, timezone

from charge_models import stack, stripe_account_scoped  # noqa: F401  (both charge models; see charge_models.py)
from harness.api import make_profile
from harness.paths import BINARY
from test_milestones import fresh_loopback_windows, open_dispute  # noqa: F401  (autouse fixture)
from test_purchase_flow import (
    audit_ops, authorised, fake_calls, fake_object, notification_kinds, payment_row, settle_webhooks,
    wait_payment_status,
)

MARGIN_HOURS = 12  # the default CAPTURE_MARGIN_HOURS
WARNING_HOURS = 24  # the default HOLD_WARNING_HOURS


def sweep(stack, **settings):
    env = {**stack.app.env, **settings}
    result = subprocess.run([str(BINARY), "sweep"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return dict(line.removeprefix("sweep: ").split(": ") for line in result.stdout.splitlines())


def hold_ends_in(db, payment_id, hours):
    db.execute("UPDATE payments SET capture_before = now() + make_interval(hours => %s) WHERE id = %s",
               (hours, payment_id))


def warnings(db, profile_id, payment_id):
    rows = db.execute("SELECT payload FROM notifications WHERE profile_id = %s AND kind = 'authorization_expiring'"
                      " AND payload->>'payment_id' = %s", (profile_id, payment_id)).fetchall()
    return [r[0] for r in rows]


def test_buyer_and_seller_are_warned_once_then_the_hold_is_cancelled(stack, db):
    seller, buyer, listing, body = authorised(stack, db)
    payment_id = body["payment_id"]
    # Outside the warning window: nothing.
    hold_ends_in(db, payment_id, MARGIN_HOURS + WARNING_HOURS + 5)
    sweep(stack)
    assert warnings(db, buyer["id"], payment_id) == []

    hold_ends_in(db, payment_id, MARGIN_HOURS + 10)
    sweep(stack)
    sweep(stack)  # a second run (or a second host) warns nobody again
    for party in (buyer, seller):
        (warning,) = warnings(db, party["id"], payment_id)
        assert warning["action"] == "cancel"
        action_at = datetime.fromisoformat(warning["action_at"].replace("Z", "+00:00"))
        assert abs(action_at - (datetime.now(timezone.utc) + timedelta(hours=10))) < timedelta(minutes=5)
    assert payment_row(db, payment_id)["status"] == "requires_capture"

    hold_ends_in(db, payment_id, 1)
    sweep(stack)
    assert fake_object(stack, body["payment_intent_id"])["status"] == "canceled"
    settle_webhooks(stack)
    assert payment_row(db, payment_id)["status"] == "canceled"
    assert notification_kinds(db, buyer["id"], payment_id) == ["authorization_cancelled", "authorization_expiring"]
    assert fake_calls(stack, f"payment:{payment_id}:capture") == []


def test_the_capture_policy_captures_in_full_before_the_hold_lapses(stack, db):
    seller, buyer, listing, body = authorised(stack, db, price=7300)
    payment_id = body["payment_id"]
    hold_ends_in(db, payment_id, MARGIN_HOURS + 2)
    sweep(stack, HOLD_EXPIRY_ACTION="capture")
    assert [w["action"] for w in warnings(db, buyer["id"], payment_id)] == ["capture"]
    assert payment_row(db, payment_id)["status"] == "requires_capture"

    hold_ends_in(db, payment_id, MARGIN_HOURS - 1)
    assert sweep(stack, HOLD_EXPIRY_ACTION="capture")["settle_lapsing_authorizations"] != "0"
    captures = fake_calls(stack, f"payment:{payment_id}:capture")
    assert [c["headers"]["Idempotency-Key"] for c in captures] == [f"payment:{payment_id}:capture:7300"], captures
    assert "amount_to_capture" not in captures[0]["params"]
    intent = fake_object(stack, body["payment_intent_id"])
    assert (intent["status"], intent["amount_received"]) == ("succeeded", 7300)
    row = wait_payment_status(db, payment_id, "succeeded")
    assert row["amount_received"] == 7300
    ops = audit_ops(db, payment_id)
    assert ops.count("payment.capture") == 1, ops
    actor = db.execute("SELECT actor_role FROM payment_audit_logs WHERE entity_id = %s AND operation = 'payment.capture'",
                       (payment_id,)).fetchone()[0]
    assert actor == "system"
    assert "payment_succeeded" in notification_kinds(db, buyer["id"], payment_id)
    # Nothing left to do on the next run.
    sweep(stack, HOLD_EXPIRY_ACTION="capture")
    assert len(fake_calls(stack, f"payment:{payment_id}:capture")) == 1


def test_an_open_dispute_blocks_the_automatic_capture_and_alerts_admins_once(stack, db):
    admin = make_profile(db, "admin")
    seller, buyer, listing, body = authorised(stack, db, price=4100)
    payment_id = body["payment_id"]
    opened = open_dispute(stack, buyer, payment_id)
    assert opened.status_code == 201, opened.text
    hold_ends_in(db, payment_id, MARGIN_HOURS - 1)
    sweep(stack, HOLD_EXPIRY_ACTION="capture")
    sweep(stack, HOLD_EXPIRY_ACTION="capture")
    assert fake_calls(stack, f"payment:{payment_id}:capture") == []
    assert payment_row(db, payment_id)["status"] == "requires_capture"
    alerts = db.execute("SELECT count(*) FROM notifications WHERE profile_id = %s AND kind = 'hold_expiry_blocked'"
                        " AND payload->>'payment_id' = %s", (admin["id"], payment_id)).fetchone()[0]
    assert alerts == 1
    assert audit_ops(db, payment_id, success=False).count("payment.hold_expiry_blocked") == 1


def test_the_hold_window_follows_the_fakes_clock(stack, db):
    """An intent authorised six days ago at Stripe (the fake's clock set back) holds until
    created + 7 days: inside the warning window, outside the action margin."""
    stack.stripe_control("POST", "/_control/clock/advance", {"seconds": -6 * 86400 + 3600})
    try:
        seller, buyer, listing, body = authorised(stack, db, price=2500)
    finally:
        stack.stripe_control("POST", "/_control/clock/advance", {"seconds": 6 * 86400 - 3600})
    payment_id = body["payment_id"]
    hours_left = db.execute("SELECT extract(epoch FROM capture_before - now()) / 3600 FROM payments WHERE id = %s",
                            (payment_id,)).fetchone()[0]
    assert 24 < float(hours_left) < 26, hours_left
    sweep(stack)
    assert [w["action"] for w in warnings(db, seller["id"], payment_id)] == ["cancel"]
    assert payment_row(db, payment_id)["status"] == "requires_capture"


def test_a_bad_hold_expiry_action_is_refused_at_start(stack):
    result = subprocess.run([str(BINARY), "sweep"], env={**stack.app.env, "HOLD_EXPIRY_ACTION": "ignore"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "HOLD_EXPIRY_ACTION must be cancel or capture" in result.stderr


def test_capture_before_comes_from_the_cards_authorisation_when_stripe_gives_it(stack, db):
    """A card whose authorisation holds 5 days, not 7: the charge's capture_before is kept, and
    the hold-expiry action follows it (a 7-day estimate would let the hold lapse first)."""
    stack.stripe_control("POST", "/_control/authorizations/window", {"days": 5})
    try:
        seller, buyer, listing, body = authorised(stack, db, price=3300)
    finally:
        stack.stripe_control("POST", "/_control/authorizations/window", {"days": 7})
    settle_webhooks(stack)
    payment_id = body["payment_id"]
    charge = fake_object(stack, fake_object(stack, body["payment_intent_id"])["latest_charge"])
    exact = charge["payment_method_details"]["card"]["capture_before"]
    stored = db.execute("SELECT extract(epoch FROM capture_before)::bigint FROM payments WHERE id = %s",
                        (payment_id,)).fetchone()[0]
    assert stored == exact, (stored, exact)
    days_left = (exact - datetime.now(timezone.utc).timestamp()) / 86400
    assert 4.9 < days_left < 5.1, days_left
    # The listing stays reserved for as long as the authorisation holds.
    reserved = db.execute("SELECT extract(epoch FROM reserved_until)::bigint FROM listings WHERE id = %s",
                          (listing,)).fetchone()[0]
    assert reserved >= exact
    # The API shows the same end of the hold.
    shown = stack.get(f"/api/payments/{payment_id}", headers=buyer["headers"]).json()["capture_before"]
    assert int(datetime.fromisoformat(shown.replace("Z", "+00:00")).timestamp()) == exact
