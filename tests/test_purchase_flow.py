"""Issue 6, the purchase flow end to end through nginx, the real app, PostgreSQL and the fake
Stripe: create-intent → the buyer's browser confirms at the fake → webhooks → capture (or
decline, cancel, reservation expiry, lapsing authorisation).

The helpers at the top are shared by tests/test_purchase_{failures,races,inputs}.py."""

import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest

from charge_models import stack, stripe_account_scoped  # noqa: F401  (both charge models; see charge_models.py)
from harness.api import make_listing, make_profile, onboarded_seller, stripe_calls
from harness.assertions import assert_envelope, request_id
from harness.paths import BINARY
from harness.api import wait_for

# ------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------

PLATFORM_FEE_BPS = 1000
RESERVATION_MINUTES = 10
CREATE_PATH = "/v1/payment_intents"


def fee_for(amount: int) -> int:
    """The documented rule: round half up of amount × bps / 10000, in integers."""
    return (amount * PLATFORM_FEE_BPS + 5000) // 10000


@pytest.fixture(autouse=True)
def fresh_ip_rate_windows(db):
    """The suite's requests all come from 127.0.0.1, so the IP-keyed windows (`intent:{ip}`
    60/min, `capture:{ip}` 30/min) would be shared by every test of the session. Each test
    starts with empty IP windows; the limiter itself is tested elsewhere."""
    db.execute("DELETE FROM rate_limits WHERE key IN ('intent:127.0.0.1', 'capture:127.0.0.1')")
    yield


def create_intent(stack, buyer, listing_id, **kwargs):
    return stack.post("/api/payments/create-intent", json={"listing_id": listing_id},
                      headers=buyer["headers"], **kwargs)


def capture(stack, profile, payment_id, amount_to_capture=None, reason=None, **kwargs):
    body = {"payment_id": payment_id}
    if amount_to_capture is not None:
        body["amount_to_capture"] = amount_to_capture
    if reason is not None:
        body["reason"] = reason
    return stack.post("/api/payments/capture", json=body, headers=profile["headers"], **kwargs)


def cancel(stack, profile, payment_id):
    return stack.post(f"/api/payments/{payment_id}/cancel", json={}, headers=profile["headers"])


def confirm(stack, intent_id, payment_method="pm_card_visa"):
    """The buyer's browser step at the fake (Stripe.js confirmCardPayment): (status, body)."""
    return stack.stripe.confirm_payment_intent(intent_id, payment_method)




def payment_row(db, payment_id):
    cursor = db.execute("SELECT * FROM payments WHERE id = %s", (payment_id,))
    names = [c.name for c in cursor.description]
    row = cursor.fetchone()
    return dict(zip(names, row)) if row else None


def payments_for_listing(db, listing_id):
    cursor = db.execute("SELECT * FROM payments WHERE listing_id = %s ORDER BY created_at", (listing_id,))
    names = [c.name for c in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def listing_row(db, listing_id):
    cursor = db.execute("SELECT * FROM listings WHERE id = %s", (listing_id,))
    names = [c.name for c in cursor.description]
    return dict(zip(names, cursor.fetchone()))


def wait_payment_status(db, payment_id, status, timeout=10.0):
    return wait_for(lambda: (row := payment_row(db, payment_id)) and row["status"] == status and row,
                    timeout, what=f"payment {payment_id} to become {status} "
                                  f"(is {(payment_row(db, payment_id) or {}).get('status')})")


def audit_rows(db, payment_id):
    cursor = db.execute(
        "SELECT operation, success, actor_profile_id::text AS actor, actor_role, request_id, error_code, new_values"
        " FROM payment_audit_logs WHERE entity_type = 'payment' AND entity_id = %s ORDER BY id", (payment_id,))
    names = [c.name for c in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def audit_ops(db, payment_id, success=True):
    return [r["operation"] for r in audit_rows(db, payment_id) if r["success"] is success]


def notification_kinds(db, profile_id, payment_id=None):
    rows = db.execute("SELECT kind, payload FROM notifications WHERE profile_id = %s ORDER BY created_at",
                      (profile_id,)).fetchall()
    return sorted(kind for kind, payload in rows if payment_id is None or payload.get("payment_id") == payment_id)


def fake_object(stack, object_id):
    return stack.stripe_control("GET", f"/_control/objects/{object_id}")["object"]


def fake_calls(stack, key, method="POST", path_prefix=None):
    """What the fake received under this Idempotency-Key or one that extends it with `:…` (a
    payment's capture and cancel keys name the amount and the reason)."""
    return stripe_calls(stack, key, path_prefix=path_prefix, method=method, family=True)


def creates_for_listing(stack, listing_id):
    """Every create PaymentIntent request the fake saw for this listing (any key)."""
    return [r for r in stack.stripe.received(method="POST", path_prefix=CREATE_PATH)
            if r["path"] == CREATE_PATH and ((r["params"] or {}).get("metadata") or {}).get("listing_id") == listing_id]


def events_for(stack, intent_id, type_):
    return [e for e in stack.stripe.events(type_)
            if e["data"]["object"].get("id") == intent_id or e["data"]["object"].get("payment_intent") == intent_id]


def sweep(stack):
    result = subprocess.run([str(BINARY), "sweep"], env=stack.app.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def new_purchase(stack, db, price=5000, seller=None):
    """A ready seller, a fresh buyer and an active listing."""
    seller = seller or onboarded_seller(stack, db)
    buyer = make_profile(db, "buyer")
    listing = make_listing(db, seller, price=price)
    return seller, buyer, listing


def created_intent(stack, db, price=5000, seller=None):
    """create-intent done (201): returns (seller, buyer, listing, body)."""
    seller, buyer, listing = new_purchase(stack, db, price, seller)
    response = create_intent(stack, buyer, listing)
    assert response.status_code == 201, response.text
    return seller, buyer, listing, response.json()


def authorised(stack, db, price=5000, seller=None):
    """create-intent, confirmed with pm_card_visa, and our row `requires_capture` (by webhook)."""
    seller, buyer, listing, body = created_intent(stack, db, price, seller)
    status, confirmed = confirm(stack, body["payment_intent_id"])
    assert status == 200 and confirmed["status"] == "requires_capture", (status, confirmed)
    wait_payment_status(db, body["payment_id"], "requires_capture")
    return seller, buyer, listing, body


def settle_webhooks(stack):
    assert stack.stripe.wait_for_webhooks(15), "the fake still has webhooks pending"


# ------------------------------------------------------------------------------------------
# The happy path
# ------------------------------------------------------------------------------------------

def test_purchase_happy_path_end_to_end(stack, db):
    seller = onboarded_seller(stack, db)
    buyer = make_profile(db, "buyer")
    price = 1005  # 10 % of it is 100.5: the fee rounds half up to 101
    listing = make_listing(db, seller, price=price)

    # 1. create-intent
    before = datetime.now(timezone.utc)
    response = create_intent(stack, buyer, listing)
    assert response.status_code == 201, response.text
    body = response.json()
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]
    assert intent_id.startswith("pi_")
    assert body["amount"] == price
    assert body["application_fee"] == fee_for(price) == 101
    assert body["currency"] == "usd"
    intent = fake_object(stack, intent_id)
    assert body["client_secret"] == intent["client_secret"]
    reserved_until = parse_time(body["reserved_until"])
    assert before + timedelta(minutes=RESERVATION_MINUTES) - timedelta(seconds=5) <= reserved_until \
        <= datetime.now(timezone.utc) + timedelta(minutes=RESERVATION_MINUTES) + timedelta(seconds=5)

    row = listing_row(db, listing)
    assert row["status"] == "payment_pending"
    assert str(row["reserved_by"]) == buyer["id"]
    assert abs((row["reserved_until"] - reserved_until).total_seconds()) < 1

    payment = payment_row(db, payment_id)
    assert payment["stripe_payment_intent_id"] == intent_id
    assert (payment["kind"], str(payment["buyer_id"]), str(payment["seller_id"]), str(payment["listing_id"])) == \
        ("purchase", buyer["id"], seller["id"], listing)
    assert (payment["amount_cents"], payment["application_fee_cents"], payment["currency"]) == (price, 101, "usd")

    created = [r for r in audit_rows(db, payment_id) if r["operation"] == "payment.create"]
    assert len(created) == 1 and created[0]["success"] is True, created
    assert created[0]["actor"] == buyer["id"]
    assert created[0]["request_id"] == request_id(response)

    # The one create at the fake, with the charge model's parameters: a destination charge to the
    # seller's account, or a direct charge on it (Stripe-Account), which Stripe.js must be told of.
    creates = fake_calls(stack, f"payment:{payment_id}:create")
    assert len(creates) == 1, creates
    params = creates[0]["params"]
    assert creates[0]["path"] == CREATE_PATH
    assert params["amount"] == str(price)
    assert params["currency"] == "usd"
    assert params["capture_method"] == "manual"
    assert params["application_fee_amount"] == "101"
    assert params["metadata"] == {"payment_id": payment_id, "listing_id": listing,
                                  "buyer_id": buyer["id"], "seller_id": seller["id"]}
    assert creates_for_listing(stack, listing) == creates
    assert intent["capture_method"] == "manual"
    assert (payment["charge_model"], body["charge_model"]) == (stack.charge_model, stack.charge_model)
    if stack.is_direct:
        assert "transfer_data" not in params and "on_behalf_of" not in params, params
        assert creates[0]["headers"]["Stripe-Account"] == seller_account(db, seller)
        assert body["stripe_account"] == payment["stripe_account"] == seller_account(db, seller)
        assert intent["transfer_data"] is None
    else:
        assert params["transfer_data"] == {"destination": seller_account(db, seller)}
        assert params["transfer_group"] == payment["transfer_group"] and params["transfer_group"]
        assert "Stripe-Account" not in creates[0]["headers"]
        assert body["stripe_account"] is None and payment["stripe_account"] is None
        assert intent["transfer_data"]["destination"] == seller_account(db, seller)

    # 2. the buyer's browser confirms the card; amount_capturable_updated arrives by webhook.
    status, confirmed = confirm(stack, intent_id, "pm_card_visa")
    assert status == 200 and confirmed["status"] == "requires_capture", confirmed
    payment = wait_payment_status(db, payment_id, "requires_capture")
    assert payment["amount_capturable"] == price
    assert payment["capture_before"] is not None
    assert listing_row(db, listing)["status"] == "payment_pending"
    shown = stack.get(f"/api/payments/{payment_id}", headers=buyer["headers"])
    assert shown.status_code == 200 and shown.json()["status"] == "requires_capture", shown.text

    # 3. the buyer confirms delivery: capture.
    captured = capture(stack, buyer, payment_id)
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "succeeded"
    assert captured.json()["amount_received"] == price

    # 4. payment_intent.succeeded arrives; everything settles.
    wait_for(lambda: db.execute(
        "SELECT 1 FROM webhook_events WHERE type = 'payment_intent.succeeded' AND object_id = %s AND status = 'processed'",
        (intent_id,)).fetchone(), what="payment_intent.succeeded processed")
    settle_webhooks(stack)
    payment = payment_row(db, payment_id)
    assert payment["status"] == "succeeded"
    assert payment["amount_received"] == price
    assert payment["amount_capturable"] == 0
    assert payment["stripe_charge_id"] == fake_object(stack, intent_id)["latest_charge"]
    row = listing_row(db, listing)
    assert (row["status"], row["reserved_by"], row["reserved_until"]) == ("sold", None, None)

    assert notification_kinds(db, buyer["id"], payment_id) == ["payment_succeeded"]
    assert notification_kinds(db, seller["id"], payment_id) == ["payment_authorized", "payment_succeeded"]

    # The audit trail: create, authorised, and the buyer's capture — plus Stripe's
    # payment.succeeded row when its webhook applied the effect before the capture request did.
    ops = audit_ops(db, payment_id)
    assert ops[0] == "payment.create", ops
    assert ops.count("payment.authorized") == 1, ops
    assert ops.count("payment.capture") == 1, ops
    assert ops.count("payment.succeeded") <= 1, ops

    # Exactly one create and one capture at the fake; the capture carries the payment's key.
    assert len(fake_calls(stack, f"payment:{payment_id}:create")) == 1
    captures = stack.stripe.received(method="POST", path_prefix=f"/v1/payment_intents/{intent_id}/capture")
    assert len(captures) == 1, captures
    assert captures[0]["headers"]["Idempotency-Key"] == f"payment:{payment_id}:capture:{price}"
    assert not (captures[0]["params"] or {}).get("amount_to_capture")
    assert fake_calls(stack, f"payment:{payment_id}:cancel") == []
    final = fake_object(stack, intent_id)
    assert (final["status"], final["amount_received"]) == ("succeeded", price)
    assert final["application_fee_amount"] == 101

    # The seller sees it too; the buyer's view agrees.
    for profile in (buyer, seller):
        shown = stack.get(f"/api/payments/{payment_id}", headers=profile["headers"])
        assert shown.status_code == 200, shown.text
        assert shown.json()["status"] == "succeeded" and shown.json()["amount_received"] == price


def seller_account(db, seller):
    return db.execute("SELECT stripe_account_id FROM profiles WHERE id = %s", (seller["id"],)).fetchone()[0]


# ------------------------------------------------------------------------------------------
# Decline, cancel
# ------------------------------------------------------------------------------------------

def test_declined_card_fails_payment_and_releases_listing(stack, db):
    seller, buyer, listing, body = created_intent(stack, db)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]

    status, declined = confirm(stack, intent_id, "pm_card_chargeDeclined")
    assert status == 402 and declined["error"]["code"] == "card_declined", declined

    payment = wait_payment_status(db, payment_id, "failed")
    assert payment["failure_code"] in ("generic_decline", "card_declined"), payment
    wait_for(lambda: listing_row(db, listing)["status"] == "active", what="listing active again")
    settle_webhooks(stack)
    row = listing_row(db, listing)
    assert (row["status"], row["reserved_by"], row["reserved_until"]) == ("active", None, None)
    assert notification_kinds(db, buyer["id"], payment_id) == ["payment_failed"]
    assert "payment.failed" in audit_ops(db, payment_id)
    assert fake_calls(stack, f"payment:{payment_id}:capture") == []

    # The listing can be bought again (by someone else).
    other = make_profile(db, "buyer")
    again = create_intent(stack, other, listing)
    assert again.status_code == 201, again.text
    assert again.json()["payment_id"] != payment_id


def test_buyer_cancels_authorised_payment(stack, db):
    seller, buyer, listing, body = authorised(stack, db)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]

    response = cancel(stack, buyer, payment_id)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "canceled"

    cancels = fake_calls(stack, f"payment:{payment_id}:cancel")
    assert len(cancels) == 1, cancels
    assert cancels[0]["path"] == f"/v1/payment_intents/{intent_id}/cancel"
    intent = fake_object(stack, intent_id)
    assert intent["status"] == "canceled"
    assert fake_calls(stack, f"payment:{payment_id}:capture") == []

    settle_webhooks(stack)
    payment = payment_row(db, payment_id)
    assert (payment["status"], payment["amount_capturable"], payment["amount_received"]) == ("canceled", 0, 0)
    row = listing_row(db, listing)
    assert (row["status"], row["reserved_by"], row["reserved_until"]) == ("active", None, None)
    # The buyer's cancellation is audited once (and Stripe's payment.canceled row appears only
    # when its webhook applied the effect first).
    ops = audit_ops(db, payment_id)
    assert ops.count("payment.cancel") == 1, ops
    assert ops.count("payment.canceled") <= 1, ops
    # The seller hears of it once.
    assert notification_kinds(db, seller["id"], payment_id) == ["payment_authorized", "payment_canceled"]

    # Cancelling again is refused and sends nothing more to Stripe.
    again = cancel(stack, buyer, payment_id)
    assert_envelope(again, 409, "payment_not_cancellable")
    assert len(fake_calls(stack, f"payment:{payment_id}:cancel")) == 1


def test_buyer_cancels_before_confirming(stack, db):
    seller, buyer, listing, body = created_intent(stack, db)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]

    response = cancel(stack, buyer, payment_id)
    assert response.status_code == 200 and response.json()["status"] == "canceled", response.text
    assert len(fake_calls(stack, f"payment:{payment_id}:cancel")) == 1
    assert fake_object(stack, intent_id)["status"] == "canceled"
    assert listing_row(db, listing)["status"] == "active"
    ops = audit_ops(db, payment_id)
    assert ops.count("payment.cancel") == 1, ops
    assert ops.count("payment.canceled") <= 1, ops

    # The browser confirming the cancelled intent afterwards cannot revive it.
    status, refused = confirm(stack, intent_id)
    assert status == 400, (status, refused)
    settle_webhooks(stack)
    assert payment_row(db, payment_id)["status"] == "canceled"


# ------------------------------------------------------------------------------------------
# The sweeper
# ------------------------------------------------------------------------------------------

def test_sweep_expires_unpaid_reservation(stack, db):
    seller, buyer, listing, body = created_intent(stack, db)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]

    # Not due yet: a sweep leaves it alone.
    sweep(stack)
    assert payment_row(db, payment_id)["status"] == "requires_payment_method"
    assert fake_calls(stack, f"payment:{payment_id}:cancel") == []

    db.execute("UPDATE listings SET reserved_until = now() - interval '1 minute' WHERE id = %s", (listing,))
    sweep(stack)

    cancels = fake_calls(stack, f"payment:{payment_id}:cancel")
    assert len(cancels) == 1, cancels
    assert cancels[0]["path"] == f"/v1/payment_intents/{intent_id}/cancel"
    assert fake_object(stack, intent_id)["status"] == "canceled"
    payment = payment_row(db, payment_id)
    assert payment["status"] == "canceled"
    row = listing_row(db, listing)
    assert (row["status"], row["reserved_by"], row["reserved_until"]) == ("active", None, None)
    # The sweeper cancels locally before it cancels at Stripe, so Stripe's payment_intent.canceled
    # finds nothing to change: the buyer is told once why, and it is audited once.
    settle_webhooks(stack)
    assert notification_kinds(db, buyer["id"], payment_id) == ["reservation_expired"]
    ops = audit_ops(db, payment_id)
    assert ops.count("payment.reservation_expired") == 1 and ops.count("payment.canceled") == 0, ops

    # A second sweep (cron, a minute later) has nothing left to do.
    sweep(stack)
    settle_webhooks(stack)
    assert len(fake_calls(stack, f"payment:{payment_id}:cancel")) == 1
    assert audit_ops(db, payment_id) == ops
    assert len(notification_kinds(db, buyer["id"], payment_id)) == 1
    assert payment_row(db, payment_id)["status"] == "canceled"


def test_sweep_does_not_expire_an_authorised_purchase(stack, db):
    """Once the buyer has paid (authorised), the reservation window no longer applies."""
    seller, buyer, listing, body = authorised(stack, db)
    payment_id = body["payment_id"]
    db.execute("UPDATE listings SET reserved_until = now() - interval '1 minute' WHERE id = %s", (listing,))
    sweep(stack)
    assert fake_calls(stack, f"payment:{payment_id}:cancel") == []
    assert payment_row(db, payment_id)["status"] == "requires_capture"
    assert fake_object(stack, body["payment_intent_id"])["status"] == "requires_capture"


def test_sweep_cancels_lapsing_authorisation(stack, db):
    seller, buyer, listing, body = authorised(stack, db)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]

    # Far from capture_before (created + 7 days): untouched.
    sweep(stack)
    assert payment_row(db, payment_id)["status"] == "requires_capture"

    db.execute("UPDATE payments SET capture_before = now() + interval '1 hour' WHERE id = %s", (payment_id,))
    sweep(stack)

    cancels = fake_calls(stack, f"payment:{payment_id}:cancel")
    assert len(cancels) == 1, cancels
    assert fake_object(stack, intent_id)["status"] == "canceled"
    settle_webhooks(stack)
    payment = payment_row(db, payment_id)
    assert (payment["status"], payment["amount_capturable"], payment["amount_received"]) == ("canceled", 0, 0)
    row = listing_row(db, listing)
    assert (row["status"], row["reserved_by"]) == ("active", None)
    # Buyer and seller are told once each why, audited once: the sweeper cancels locally first.
    told = notification_kinds(db, buyer["id"], payment_id)
    assert told == ["authorization_cancelled"], told
    assert [k for k in notification_kinds(db, seller["id"], payment_id) if k != "payment_authorized"] == told
    ops = audit_ops(db, payment_id)
    assert ops.count("payment.authorization_lapsing") == 1 and ops.count("payment.canceled") == 0, ops

    # It can no longer be captured.
    refused = capture(stack, buyer, payment_id)
    assert_envelope(refused, 409, "payment_not_capturable")
    assert fake_calls(stack, f"payment:{payment_id}:capture") == []


# ------------------------------------------------------------------------------------------
# Capture variants
# ------------------------------------------------------------------------------------------

def test_a_buyer_cannot_choose_the_captured_amount(stack, db):
    """Issue 13: a buyer captured 100 of a 5,000 authorisation and the listing was sold. A
    buyer's capture takes the full authorised amount; naming an amount is refused and changes
    nothing."""
    seller, buyer, listing, body = authorised(stack, db, price=5000)
    payment_id = body["payment_id"]
    before = payment_row(db, payment_id)

    for amount in (100, 5000):
        assert_envelope(capture(stack, buyer, payment_id, amount_to_capture=amount), 403, "forbidden")
    assert fake_calls(stack, f"payment:{payment_id}:capture") == []
    assert payment_row(db, payment_id) == before
    assert listing_row(db, listing)["status"] == "payment_pending"

    # Without an amount the buyer captures everything, with the fee agreed at creation.
    response = capture(stack, buyer, payment_id)
    assert response.status_code == 200 and response.json()["amount_received"] == 5000, response.text
    captures = fake_calls(stack, f"payment:{payment_id}:capture")
    assert [c["headers"]["Idempotency-Key"] for c in captures] == [f"payment:{payment_id}:capture:5000"]
    assert "amount_to_capture" not in captures[0]["params"] and "application_fee_amount" not in captures[0]["params"]


def test_an_admin_partial_capture_needs_a_reason_and_recomputes_the_fee(stack, db):
    seller, buyer, listing, body = authorised(stack, db, price=5000)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]
    admin = make_profile(db, "admin")

    before = payment_row(db, payment_id)
    assert_envelope(capture(stack, admin, payment_id, amount_to_capture=3000), 400, "invalid_field")
    assert_envelope(capture(stack, admin, payment_id, amount_to_capture=5001, reason="too much"), 400, "invalid_field")
    assert fake_calls(stack, f"payment:{payment_id}:capture") == []
    assert payment_row(db, payment_id) == before  # refused input changes nothing, not even a claim

    response = capture(stack, admin, payment_id, amount_to_capture=3000, reason="one item was missing")
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["amount_received"], response.json()["application_fee"]) == \
        ("succeeded", 3000, fee_for(3000))

    captures = fake_calls(stack, f"payment:{payment_id}:capture")
    assert len(captures) == 1, captures
    assert captures[0]["headers"]["Idempotency-Key"] == f"payment:{payment_id}:capture:3000"
    assert (captures[0]["params"]["amount_to_capture"], captures[0]["params"]["application_fee_amount"]) == \
        ("3000", str(fee_for(3000)))
    intent = fake_object(stack, intent_id)
    assert (intent["status"], intent["amount_received"], intent["application_fee_amount"]) == \
        ("succeeded", 3000, fee_for(3000))

    settle_webhooks(stack)
    payment = payment_row(db, payment_id)
    assert (payment["status"], payment["amount_received"], payment["amount_cents"], payment["application_fee_cents"]) == \
        ("succeeded", 3000, 5000, fee_for(3000))
    assert listing_row(db, listing)["status"] == "sold"
    audit = db.execute("""SELECT new_values, old_values FROM payment_audit_logs
                          WHERE entity_id = %s AND operation = 'payment.capture' AND success""", (payment_id,)).fetchall()
    assert len(audit) == 1
    assert audit[0][0]["reason"] == "one item was missing" and audit[0][0]["application_fee"] == fee_for(3000)
    assert audit[0][1]["application_fee"] == fee_for(5000)


def test_admin_can_capture(stack, db):
    seller, buyer, listing, body = authorised(stack, db)
    admin = make_profile(db, "admin")
    response = capture(stack, admin, body["payment_id"])
    assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text
    assert len(fake_calls(stack, f"payment:{body['payment_id']}:capture")) == 1
    settle_webhooks(stack)
    assert payment_row(db, body["payment_id"])["status"] == "succeeded"
    assert listing_row(db, listing)["status"] == "sold"


def test_capture_when_our_row_lags_asks_stripe(stack, db):
    seller, buyer, listing, body = created_intent(stack, db)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]
    settle_webhooks(stack)
    stack.stripe_control("POST", "/_control/webhooks/pause", {"endpoint": stack.payment_events_endpoint})
    try:
        status, confirmed = confirm(stack, intent_id)
        assert status == 200 and confirmed["status"] == "requires_capture"
        time.sleep(0.3)
        assert payment_row(db, payment_id)["status"] != "requires_capture"  # the webhook is held

        response = capture(stack, buyer, payment_id)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "succeeded"
        assert response.json()["amount_received"] == 5000

        retrieved = stack.stripe.received(method="GET", path_prefix=f"/v1/payment_intents/{intent_id}")
        assert retrieved, "the app did not ask Stripe about the intent"
        captures = fake_calls(stack, f"payment:{payment_id}:capture")
        assert len(captures) == 1, captures
        assert fake_object(stack, intent_id)["status"] == "succeeded"
        payment = payment_row(db, payment_id)
        assert (payment["status"], payment["amount_received"]) == ("succeeded", 5000)
        assert listing_row(db, listing)["status"] == "sold"
    finally:
        stack.stripe_control("POST", "/_control/webhooks/resume", {"endpoint": stack.payment_events_endpoint})

    # The held webhooks arrive late and change nothing.
    settle_webhooks(stack)
    payment = payment_row(db, payment_id)
    assert (payment["status"], payment["amount_received"]) == ("succeeded", 5000)
    assert listing_row(db, listing)["status"] == "sold"
    assert notification_kinds(db, buyer["id"], payment_id).count("payment_succeeded") == 1
    assert notification_kinds(db, seller["id"], payment_id).count("payment_succeeded") == 1


def test_an_admin_naming_the_whole_authorised_amount_makes_the_buyers_capture_call(stack, db):
    """Same key, same parameters as a full capture: a concurrent buyer's capture and this one
    deduplicate at Stripe instead of colliding on one key with two parameter sets."""
    seller, buyer, listing, body = authorised(stack, db, price=5000)
    payment_id = body["payment_id"]
    admin = make_profile(db, "admin")
    response = capture(stack, admin, payment_id, amount_to_capture=5000, reason="all of it")
    assert response.status_code == 200 and response.json()["application_fee"] == fee_for(5000), response.text
    captures = fake_calls(stack, f"payment:{payment_id}:capture")
    assert [c["headers"]["Idempotency-Key"] for c in captures] == [f"payment:{payment_id}:capture:5000"]
    assert "amount_to_capture" not in captures[0]["params"] and "application_fee_amount" not in captures[0]["params"]
