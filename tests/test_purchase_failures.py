"""Issue 6, failure paths of the purchase flow: Stripe failing on create and capture, the
database failing after Stripe created the intent, a lost Stripe response, and captures the
app must refuse (above the authorisation, disputed, not yet authorised)."""


from charge_models import stack, stripe_account_scoped  # noqa: F401  (both charge models; see charge_models.py)
from harness.api import make_profile
from harness.assertions import assert_envelope, request_id
from test_purchase_flow import (  # noqa: F401  (fresh_ip_rate_windows is an autouse fixture)
    CREATE_PATH, audit_rows, authorised, capture, create_intent, created_intent, creates_for_listing, fake_calls,
    fake_object, fresh_ip_rate_windows, listing_row, new_purchase, notification_kinds, payment_row,
    payments_for_listing, settle_webhooks, sweep, wait_payment_status)




def test_stripe_unavailable_on_create_keeps_the_payment_for_the_retry(stack, db, faults):
    """5xx on every attempt: Stripe may have made the intent (a 5xx can follow the work), so
    the payment is not failed and the listing stays held for the buyer; the buyer's retry
    resumes that payment with the same Stripe key instead of starting another."""
    seller, buyer, listing = new_purchase(stack, db)
    faults(type="error", status=500, method="POST", path_prefix=CREATE_PATH, count=3)

    response = create_intent(stack, buyer, listing)
    assert_envelope(response, 502, "stripe_unavailable")
    assert response.headers.get("Retry-After"), response.headers

    payments = payments_for_listing(db, listing)
    assert len(payments) == 1, payments
    payment = payments[0]
    assert payment["status"] == "creating" and payment["stripe_payment_intent_id"] is None, payment
    payment_id = str(payment["id"])
    row = listing_row(db, listing)
    assert (row["status"], str(row["reserved_by"])) == ("payment_pending", buyer["id"])

    # Retried with one key (1 + STRIPE_MAX_RETRIES=2 attempts), all refused; no intent exists.
    attempts = fake_calls(stack, f"payment:{payment_id}:create")
    assert len(attempts) == 3, [(a["status"], a["fault"]) for a in attempts]
    assert all(a["status"] == 500 for a in attempts)
    assert all(a["status"] == 500 for a in creates_for_listing(stack, listing))
    # The refused attempt is audited against the listing it tried to buy.
    assert db.execute("SELECT error_code FROM payment_audit_logs WHERE entity_type = 'listing' AND entity_id = %s"
                      " AND operation = 'payment.create' AND NOT success", (listing,)).fetchall() == [("stripe_unavailable",)]

    # Stripe back: the buyer's retry finishes the same payment, under the same key.
    again = create_intent(stack, buyer, listing)
    assert again.status_code == 201, again.text
    assert again.json()["payment_id"] == payment_id
    assert len(payments_for_listing(db, listing)) == 1
    assert len(fake_calls(stack, f"payment:{payment_id}:create")) == 4
    assert listing_row(db, listing)["status"] == "payment_pending"


def test_stripe_rejection_on_create_is_502_stripe_error(stack, db, faults):
    """A non-retryable Stripe rejection (400) is our request's fault: 502 stripe_error, released."""
    seller, buyer, listing = new_purchase(stack, db)
    faults(type="error", status=400, method="POST", path_prefix=CREATE_PATH, count=1,
           error={"type": "invalid_request_error", "code": "parameter_invalid", "message": "nope"})
    response = create_intent(stack, buyer, listing)
    assert_envelope(response, 502, "stripe_error")
    payment = payments_for_listing(db, listing)[0]
    assert payment["status"] == "failed"
    assert len(fake_calls(stack, f"payment:{payment['id']}:create")) == 1  # not retried
    assert listing_row(db, listing)["status"] == "active"


def test_storing_the_intent_fails_after_stripe_created_it(stack, db):
    """The database write after a successful Stripe create fails: the intent is cancelled at
    Stripe with the payment's cancel key, the listing released, the client gets a 5xx envelope."""
    seller, buyer, listing = new_purchase(stack, db)
    function = f"test_fail_store_{listing.replace('-', '_')}"
    db.execute(f"""
        CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'injected failure storing the intent'; END $$""")
    db.execute(f"""
        CREATE TRIGGER {function} BEFORE UPDATE ON payments FOR EACH ROW
        WHEN (NEW.stripe_payment_intent_id IS NOT NULL AND OLD.stripe_payment_intent_id IS NULL
              AND NEW.listing_id = '{listing}'::uuid)
        EXECUTE FUNCTION {function}()""")
    try:
        response = create_intent(stack, buyer, listing)
    finally:
        db.execute(f"DROP TRIGGER IF EXISTS {function} ON payments")
        db.execute(f"DROP FUNCTION IF EXISTS {function}()")

    assert_envelope(response, 500, "internal_error")
    assert "injected" not in response.text

    payments = payments_for_listing(db, listing)
    assert len(payments) == 1, payments
    payment = payments[0]
    payment_id = str(payment["id"])
    assert payment["status"] == "failed" and payment["stripe_payment_intent_id"] is None, payment
    assert payment["failure_code"] == "storage_failed"
    row = listing_row(db, listing)
    assert (row["status"], row["reserved_by"], row["reserved_until"]) == ("active", None, None)

    creates = fake_calls(stack, f"payment:{payment_id}:create")
    assert len(creates) == 1 and creates[0]["status"] == 200, creates
    cancels = fake_calls(stack, f"payment:{payment_id}:cancel")
    assert len(cancels) == 1 and cancels[0]["status"] == 200, cancels
    intent_id = cancels[0]["path"].split("/")[3]
    intent = fake_object(stack, intent_id)
    assert intent["metadata"]["payment_id"] == payment_id
    assert intent["status"] == "canceled"
    failed = [r for r in audit_rows(db, payment_id) if not r["success"]]
    assert any(r["error_code"] == "storage_failed" for r in failed), audit_rows(db, payment_id)

    # The listing is for sale again.
    other = make_profile(db, "buyer")
    assert create_intent(stack, other, listing).status_code == 201


def test_lost_create_response_is_retried_with_the_same_key(stack, db, faults):
    """Stripe created the intent but the response was lost: the retry carries the same key, so
    Stripe answers with the same intent and no second one exists."""
    seller, buyer, listing = new_purchase(stack, db)
    faults(type="drop", when="after", method="POST", path_prefix=CREATE_PATH, count=1)

    response = create_intent(stack, buyer, listing)
    assert response.status_code == 201, response.text
    body = response.json()
    attempts = fake_calls(stack, f"payment:{body['payment_id']}:create")
    assert len(attempts) == 2, attempts
    assert attempts[0]["dropped"] and attempts[1]["idempotent_replayed"], attempts
    created = [e for e in stack.stripe.events("payment_intent.created")
               if e["data"]["object"]["metadata"].get("listing_id") == listing]
    assert [e["data"]["object"]["id"] for e in created] == [body["payment_intent_id"]]
    assert payment_row(db, body["payment_id"])["stripe_payment_intent_id"] == body["payment_intent_id"]


def test_stripe_unavailable_on_capture_keeps_authorisation(stack, db, faults):
    seller, buyer, listing, body = authorised(stack, db)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]
    faults(type="error", status=500, method="POST", path_prefix=f"/v1/payment_intents/{intent_id}/capture", count=5)

    response = capture(stack, buyer, payment_id)
    assert_envelope(response, 502, "stripe_unavailable")
    attempts = fake_calls(stack, f"payment:{payment_id}:capture")
    assert len(attempts) == 3 and all(a["status"] == 500 for a in attempts), attempts
    assert fake_object(stack, intent_id)["status"] == "requires_capture"
    payment = payment_row(db, payment_id)
    assert (payment["status"], payment["amount_received"]) == ("requires_capture", 0)
    assert listing_row(db, listing)["status"] == "payment_pending"

    # Stripe back: the buyer retries, same key, captured once.
    stack.stripe_control("DELETE", "/_control/faults")
    again = capture(stack, buyer, payment_id)
    assert again.status_code == 200 and again.json()["status"] == "succeeded", again.text
    assert len(fake_calls(stack, f"payment:{payment_id}:capture")) == 4
    settle_webhooks(stack)
    assert payment_row(db, payment_id)["status"] == "succeeded"
    assert listing_row(db, listing)["status"] == "sold"


def test_capture_above_authorised_amount_is_refused(stack, db):
    seller, buyer, listing, body = authorised(stack, db, price=5000)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]

    admin = make_profile(db, "admin")
    response = capture(stack, admin, payment_id, amount_to_capture=5001, reason="more than authorised")
    error = assert_envelope(response, 400, "invalid_field")
    assert "amount_to_capture" in error["message"]
    assert stack.stripe.received(method="POST", path_prefix=f"/v1/payment_intents/{intent_id}/capture") == []
    assert fake_object(stack, intent_id)["status"] == "requires_capture"
    payment = payment_row(db, payment_id)
    assert (payment["status"], payment["amount_capturable"], payment["amount_received"]) == ("requires_capture", 5000, 0)
    assert listing_row(db, listing)["status"] == "payment_pending"


def test_capture_refused_while_a_dispute_is_open(stack, db):
    seller, buyer, listing, body = authorised(stack, db)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]
    dispute = db.execute(
        "INSERT INTO disputes (payment_id, kind, status, reason, opened_by) VALUES (%s, 'platform', 'open', 'x', %s)"
        " RETURNING id", (payment_id, buyer["id"])).fetchone()[0]

    refused = []
    for who in (buyer, make_profile(db, "admin")):
        response = capture(stack, who, payment_id)
        assert_envelope(response, 409, "payment_disputed")
        refused.append((request_id(response), who["id"]))
    assert stack.stripe.received(method="POST", path_prefix=f"/v1/payment_intents/{intent_id}/capture") == []
    assert fake_calls(stack, f"payment:{payment_id}:capture") == []
    assert fake_object(stack, intent_id)["status"] == "requires_capture"
    assert payment_row(db, payment_id)["status"] == "requires_capture"
    assert listing_row(db, listing)["status"] == "payment_pending"
    for rid, actor in refused:  # each refused attempt is audited with its request and actor
        rows = db.execute("SELECT operation, success, error_code, actor_profile_id::text FROM payment_audit_logs"
                          " WHERE request_id = %s", (rid,)).fetchall()
        assert rows == [("payment.capture", False, "payment_disputed", actor)], rows

    # Once the dispute is dismissed, delivery can be confirmed.
    db.execute("UPDATE disputes SET status = 'dismissed' WHERE id = %s", (dispute,))
    response = capture(stack, buyer, payment_id)
    assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text


def test_capture_before_authorisation_is_refused(stack, db):
    seller, buyer, listing, body = created_intent(stack, db)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]

    response = capture(stack, buyer, payment_id)
    assert_envelope(response, 409, "payment_not_capturable")
    assert stack.stripe.received(method="POST", path_prefix=f"/v1/payment_intents/{intent_id}/capture") == []
    assert fake_object(stack, intent_id)["status"] == "requires_payment_method"
    assert payment_row(db, payment_id)["status"] == "requires_payment_method"
    assert listing_row(db, listing)["status"] == "payment_pending"


def test_capture_after_decline_is_refused(stack, db):
    seller, buyer, listing, body = created_intent(stack, db)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]
    status, _ = stack.stripe.confirm_payment_intent(intent_id, "pm_card_chargeDeclinedInsufficientFunds")
    assert status == 402
    payment = wait_payment_status(db, payment_id, "failed")
    assert payment["failure_code"] == "insufficient_funds"
    assert_envelope(capture(stack, buyer, payment_id), 409, "payment_not_capturable")
    assert fake_calls(stack, f"payment:{payment_id}:capture") == []
    settle_webhooks(stack)
    assert notification_kinds(db, buyer["id"], payment_id) == ["payment_failed"]


def test_refused_capture_audit_row_names_the_payment(stack, db):
    """A refused capture is audited (SPEC §7); the row must say which payment it was about,
    or nobody can find the attempts made on a payment."""
    seller, buyer, listing, body = created_intent(stack, db)
    payment_id = body["payment_id"]
    response = capture(stack, buyer, payment_id)
    assert_envelope(response, 409, "payment_not_capturable")
    rows = db.execute("SELECT operation, entity_type, entity_id, success FROM payment_audit_logs WHERE request_id = %s",
                      (request_id(response),)).fetchall()
    assert rows == [("payment.capture", "payment", payment_id, False)], rows


def test_no_authorisation_is_left_behind_a_failed_payment(stack, db):
    """After a decline the intent is back in `requires_payment_method` at Stripe, and Stripe.js
    lets the buyer try another card on it. Our row is `failed` and the listing is for sale again,
    so an authorisation made on that intent afterwards must not stay held on the buyer's card
    with nothing in our database able to capture or release it: either the intent is cancelled
    when the payment fails, or the late authorisation is cancelled (by the webhook or the sweeper)."""
    seller, buyer, listing, body = created_intent(stack, db)
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]
    status, _ = stack.stripe.confirm_payment_intent(intent_id, "pm_card_chargeDeclined")
    assert status == 402
    wait_payment_status(db, payment_id, "failed")
    settle_webhooks(stack)
    assert listing_row(db, listing)["status"] == "active"

    # The buyer's page retries with a good card on the same client secret.
    stack.stripe.confirm_payment_intent(intent_id, "pm_card_visa")
    settle_webhooks(stack)
    sweep(stack)
    settle_webhooks(stack)

    intent = fake_object(stack, intent_id)
    payment = payment_row(db, payment_id)
    held = intent["status"] == "requires_capture"
    assert not (held and payment["status"] != "requires_capture"), \
        f"Stripe holds {intent['amount_capturable']} on the buyer's card (intent {intent['status']}) " \
        f"while our payment is {payment['status']} and the listing {listing_row(db, listing)['status']}"
