"""Issue 9, platform disputes end to end through nginx, the real app, PostgreSQL and the fake
Stripe: a buyer (or seller) opens a dispute, it blocks capture and milestone release, and an
admin settles it — partial refund then `refund_buyer`, `release_seller` (capture or release),
`dismiss`. Refunds at the fake carry `dispute:{id}:refund:{n}`; a released milestone's
transfer is reversed first (`dispute:{id}:reversal:{n}`)."""

import uuid

from charge_models import stack, stripe_account_scoped  # noqa: F401  (both charge models; see charge_models.py)
from harness.api import make_listing, make_profile, onboarded_seller, table_fingerprint
from harness.assertions import assert_envelope, request_id
from test_milestones import (  # noqa: F401  (the autouse fixture applies here too)
    admin_client, audit, calls, confirm, executed, fake_object, fee_for, fresh_loopback_windows, fund, fund_and_confirm,
    funded_job, listing_row, many, milestone_status, new_job, notifications, one, open_dispute, payment_row, release,
    seller_account, settle, transfers_for_charge, wait_for, wait_milestone, wait_payment,
)

REFUNDS = "/v1/refunds"


# ------------------------------------------------------------------------------------------
# Purchase helpers
# ------------------------------------------------------------------------------------------

def create_intent(stack, buyer, listing_id):
    return stack.post("/api/payments/create-intent", json={"listing_id": listing_id}, headers=buyer["headers"])


def capture(stack, profile, payment_id):
    return stack.post("/api/payments/capture", json={"payment_id": payment_id}, headers=profile["headers"])


def authorised_purchase(stack, db, seller, buyer, price=10000):
    """A listing bought by `buyer`: create-intent, confirmed at the fake, `requires_capture`."""
    listing = make_listing(db, seller, price=price)
    created = create_intent(stack, buyer, listing)
    assert created.status_code == 201, created.text
    body = created.json()
    status, confirmed = confirm(stack, body["payment_intent_id"])
    assert status == 200 and confirmed["status"] == "requires_capture", confirmed
    wait_payment(db, body["payment_id"], "requires_capture")
    return {"listing": listing, "payment_id": body["payment_id"], "intent": body["payment_intent_id"], "price": price}


def captured_purchase(stack, db, seller, buyer, price=10000):
    purchase = authorised_purchase(stack, db, seller, buyer, price)
    captured = capture(stack, buyer, purchase["payment_id"])
    assert captured.status_code == 200 and captured.json()["status"] == "succeeded", captured.text
    row = payment_row(db, purchase["payment_id"])
    assert row["amount_received"] == price and row["stripe_charge_id"], row
    purchase["charge"] = row["stripe_charge_id"]
    return purchase


def refunds_at_fake(stack, dispute_id):
    """The refund requests the fake executed for this dispute, by key."""
    return {r["headers"]["Idempotency-Key"]: r for r in executed(stack.stripe.received(method="POST", path_prefix=REFUNDS))
            if r["headers"].get("Idempotency-Key", "").startswith(f"dispute:{dispute_id}:refund:")}


def refund_rows(db, payment_id):
    return many(db, "SELECT * FROM refunds WHERE payment_id = %s ORDER BY sequence", (payment_id,))


# ------------------------------------------------------------------------------------------
# The walk-through
# ------------------------------------------------------------------------------------------

def test_purchase_dispute_partial_refund_then_refund_buyer_end_to_end(stack, db):
    seller = onboarded_seller(stack, db)
    buyer = make_profile(db, "buyer")
    admin = admin_client(stack, db)
    price = 10000
    first = captured_purchase(stack, db, seller, buyer, price)
    second = authorised_purchase(stack, db, seller, buyer, 4000)
    job = funded_job(stack, db, (6000,), seller=seller)       # another buyer's funded milestone

    # The buyer opens a dispute on the captured purchase.
    opened = open_dispute(stack, buyer, first["payment_id"], reason="item_not_received", details="Nothing came.")
    assert opened.status_code == 201, opened.text
    dispute = opened.json()
    dispute_id = dispute["id"]
    assert (dispute["kind"], dispute["status"], dispute["payment_id"], dispute["opened_by"], dispute["reason"],
            dispute["details"]) == ("platform", "open", first["payment_id"], buyer["id"], "item_not_received", "Nothing came.")
    row = one(db, "SELECT * FROM disputes WHERE id = %s", (dispute_id,))
    assert (row["kind"], row["status"], str(row["opened_by"])) == ("platform", "open", buyer["id"])
    assert payment_row(db, first["payment_id"])["is_disputed"] is True
    assert [n["payload"]["dispute_id"] for n in notifications(db, seller["id"], "dispute_opened")] == [dispute_id]
    assert [n["payload"]["dispute_id"] for n in notifications(db, admin.profile["id"], "dispute_opened")] == [dispute_id]
    assert notifications(db, buyer["id"], "dispute_opened") == []
    opened_audit = [r for r in audit(db, "dispute", dispute_id) if r["operation"] == "dispute.open"]
    assert len(opened_audit) == 1 and opened_audit[0]["actor"] == buyer["id"] and \
        opened_audit[0]["request_id"] == request_id(opened), opened_audit

    # One open dispute per payment, whoever tries.
    assert_envelope(open_dispute(stack, buyer, first["payment_id"]), 409, "dispute_already_open")
    assert_envelope(open_dispute(stack, seller, first["payment_id"]), 409, "dispute_already_open")
    assert db.execute("SELECT count(*) FROM disputes WHERE payment_id = %s", (first["payment_id"],)).fetchone()[0] == 1

    # The same buyer's other, authorised purchase is unaffected: it captures.
    captured = capture(stack, buyer, second["payment_id"])
    assert captured.status_code == 200 and captured.json()["status"] == "succeeded", captured.text
    assert len(executed(calls(stack, f"payment:{second['payment_id']}:capture", family=True))) == 1

    # A disputed milestone is not released.
    milestone = job["milestones"][0]
    assert open_dispute(stack, job["buyer"], job["fundings"][0]["payment_id"]).status_code == 201
    assert_envelope(release(stack, job["buyer"], milestone), 409, "payment_disputed")
    assert milestone_status(db, milestone) == "funded" and calls(stack, f"milestone:{milestone}:release") == []

    # The admin refunds part of it, then resolves refund_buyer: the rest is refunded.
    partial = admin.refund(dispute_id, amount=3000, reason="partial goodwill")
    assert partial.status_code == 201, partial.text
    assert partial.json()["amount"] == 3000 and partial.json()["stripe_refund_id"].startswith("re_")
    resolved = admin.resolve(dispute_id, "refund_buyer", note="never delivered")
    assert resolved.status_code == 200, resolved.text
    body = resolved.json()
    assert (body["id"], body["status"], body["outcome"], body["resolution_note"], body["resolved_by"]) == \
        (dispute_id, "resolved", "refund_buyer", "never delivered", admin.profile["id"])

    at_fake = refunds_at_fake(stack, dispute_id)
    assert sorted(at_fake) == [f"dispute:{dispute_id}:refund:1", f"dispute:{dispute_id}:refund:2"], at_fake
    one_, two = at_fake[f"dispute:{dispute_id}:refund:1"], at_fake[f"dispute:{dispute_id}:refund:2"]
    assert (one_["params"]["amount"], two["params"]["amount"]) == ("3000", "7000")
    assert int(one_["params"]["amount"]) + int(two["params"]["amount"]) == price
    for request in (one_, two):
        params = request["params"]
        assert params["payment_intent"] == first["intent"]
        assert params["refund_application_fee"] == "true", params
        # A destination charge takes the seller's share back; a direct one is refunded on the
        # seller's account, from the seller's balance.
        assert params.get("reverse_transfer") == (None if stack.is_direct else "true"), params
    charge = fake_object(stack, first["charge"])
    assert (charge["amount_refunded"], charge["refunded"]) == (price, True)
    if stack.is_direct:
        assert charge["transfer"] is None
        fee = fake_object(stack, charge["application_fee"])
        assert fee["amount_refunded"] == fee["amount"] == fee_for(price)
    else:
        transfer = fake_object(stack, charge["transfer"])
        assert transfer["amount_reversed"] == transfer["amount"] == price - fee_for(price)

    settle(stack)
    payment = wait_payment(db, first["payment_id"], "refunded")
    assert (payment["amount_received"], payment["amount_refunded"], payment["is_disputed"]) == (price, price, False)
    assert listing_row(db, first["listing"])["status"] == "active"
    refunds = refund_rows(db, first["payment_id"])
    assert [(r["amount_cents"], str(r["dispute_id"]), r["status"]) for r in refunds] == \
        [(3000, dispute_id, "succeeded"), (7000, dispute_id, "succeeded")]
    for r in refunds:
        at_stripe = fake_object(stack, r["stripe_refund_id"])
        assert (at_stripe["amount"], at_stripe["payment_intent"], at_stripe["status"], at_stripe["metadata"]["dispute_id"]) == \
            (r["amount_cents"], first["intent"], "succeeded", dispute_id)
    assert [n["payload"]["outcome"] for n in notifications(db, buyer["id"], "dispute_resolved")] == ["refund_buyer"]
    assert [n["payload"]["outcome"] for n in notifications(db, seller["id"], "dispute_resolved")] == ["refund_buyer"]
    assert len(notifications(db, buyer["id"], "refund_issued")) == 2

    # A settled dispute cannot be settled again, and nothing more reaches Stripe.
    for outcome in ("refund_buyer", "release_seller", "dismiss"):
        assert_envelope(admin.resolve(dispute_id, outcome), 409, "dispute_not_open")
    assert len(refunds_at_fake(stack, dispute_id)) == 2
    assert one(db, "SELECT status, outcome FROM disputes WHERE id = %s", (dispute_id,)) == \
        {"status": "resolved", "outcome": "refund_buyer"}


def test_open_dispute_blocks_capture_of_that_payment(stack, db):
    seller = onboarded_seller(stack, db)
    buyer = make_profile(db, "buyer")
    purchase = authorised_purchase(stack, db, seller, buyer, 5000)
    assert open_dispute(stack, buyer, purchase["payment_id"]).status_code == 201
    assert_envelope(capture(stack, buyer, purchase["payment_id"]), 409, "payment_disputed")
    assert calls(stack, f"payment:{purchase['payment_id']}:capture", family=True) == []
    assert payment_row(db, purchase["payment_id"])["status"] == "requires_capture"
    assert listing_row(db, purchase["listing"])["status"] == "payment_pending"


def test_who_may_open_a_dispute(stack, db):
    seller = onboarded_seller(stack, db)
    buyer = make_profile(db, "buyer")
    purchase = captured_purchase(stack, db, seller, buyer, 5000)
    pending_listing = make_listing(db, seller, price=5000)
    unconfirmed = create_intent(stack, make_profile(db, "buyer"), pending_listing)
    assert unconfirmed.status_code == 201
    stranger = make_profile(db, "buyer")
    other_seller = make_profile(db, "seller")
    admin = make_profile(db, "admin")
    settle(stack)
    before = table_fingerprint(db)
    path = f"/api/payments/{purchase['payment_id']}/disputes"
    assert_envelope(stack.post(path, json={"reason": "x"}), 401, "unauthenticated")
    assert_envelope(open_dispute(stack, admin, purchase["payment_id"]), 403, "forbidden")
    assert_envelope(open_dispute(stack, stranger, purchase["payment_id"]), 404, "not_found")
    assert_envelope(open_dispute(stack, other_seller, purchase["payment_id"]), 404, "not_found")
    assert_envelope(open_dispute(stack, buyer, str(uuid.uuid4())), 404, "not_found")
    # Nothing to dispute before the card is confirmed.
    assert_envelope(open_dispute(stack, seller, unconfirmed.json()["payment_id"]), 409, "payment_not_disputable")
    # Bad input names the field.
    for bad in ({}, {"reason": ""}, {"reason": 5}, {"reason": "x" * 201}, {"reason": "ok", "details": "d" * 5001}):
        answer = stack.post(path, json=bad, headers=buyer["headers"])
        error = assert_envelope(answer, 400, "invalid_field")
        assert ("details" if "details" in bad else "reason") in error["message"], error
    assert table_fingerprint(db) == before
    # The seller of it may open one.
    by_seller = open_dispute(stack, seller, purchase["payment_id"], reason="buyer_abuse")
    assert by_seller.status_code == 201, by_seller.text
    assert by_seller.json()["opened_by"] == seller["id"]
    assert [n["payload"]["dispute_id"] for n in notifications(db, buyer["id"], "dispute_opened")] == [by_seller.json()["id"]]


def test_concurrent_dispute_openings_make_one_dispute(stack, db):
    import concurrent.futures
    seller = onboarded_seller(stack, db)
    buyer = make_profile(db, "buyer")
    purchase = captured_purchase(stack, db, seller, buyer, 5000)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: open_dispute(stack, buyer if i % 2 else seller, purchase["payment_id"]), range(6)))
    assert sorted(a.status_code for a in answers) == [201] + [409] * 5, [a.text for a in answers]
    for answer in answers:
        if answer.status_code == 409:
            assert_envelope(answer, 409, "dispute_already_open")
    assert db.execute("SELECT count(*) FROM disputes WHERE payment_id = %s", (purchase["payment_id"],)).fetchone()[0] == 1


# ------------------------------------------------------------------------------------------
# The other outcomes
# ------------------------------------------------------------------------------------------

def test_release_seller_on_an_authorised_purchase_captures_it(stack, db):
    seller = onboarded_seller(stack, db)
    buyer = make_profile(db, "buyer")
    admin = admin_client(stack, db)
    purchase = authorised_purchase(stack, db, seller, buyer, 7000)
    dispute_id = open_dispute(stack, buyer, purchase["payment_id"]).json()["id"]
    resolved = admin.resolve(dispute_id, "release_seller", note="delivered, tracking checked")
    assert resolved.status_code == 200, resolved.text
    assert (resolved.json()["status"], resolved.json()["outcome"]) == ("resolved", "release_seller")
    captures = executed(calls(stack, f"payment:{purchase['payment_id']}:capture", family=True))
    assert len(captures) == 1 and captures[0]["path"] == f"/v1/payment_intents/{purchase['intent']}/capture", captures
    payment = wait_payment(db, purchase["payment_id"], "succeeded")
    assert (payment["amount_received"], payment["is_disputed"]) == (7000, False)
    assert listing_row(db, purchase["listing"])["status"] == "sold"
    assert fake_object(stack, purchase["intent"])["status"] == "succeeded"
    assert refunds_at_fake(stack, dispute_id) == {}


def test_release_seller_on_a_funded_milestone_releases_it(stack, db):
    job = funded_job(stack, db, (9000,))
    admin = admin_client(stack, db)
    (milestone,), funding = job["milestones"], job["fundings"][0]
    dispute_id = open_dispute(stack, job["seller"], funding["payment_id"], reason="buyer_unresponsive").json()["id"]
    assert_envelope(release(stack, job["buyer"], milestone), 409, "payment_disputed")
    resolved = admin.resolve(dispute_id, "release_seller")
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["outcome"] == "release_seller"
    sent = executed(calls(stack, f"milestone:{milestone}:release"))
    assert len(sent) == 1, sent
    assert sent[0]["params"]["amount"] == str(9000 - fee_for(9000))
    assert sent[0]["params"]["destination"] == seller_account(db, job["seller"])
    assert sent[0]["params"]["source_transaction"] == funding["charge_id"]
    assert milestone_status(db, milestone) == "released"
    assert len(transfers_for_charge(stack, funding["charge_id"])) == 1
    assert payment_row(db, funding["payment_id"])["is_disputed"] is False
    released_audit = [r for r in audit(db, "milestone", milestone) if r["operation"] == "milestone.release" and r["success"]]
    assert len(released_audit) == 1 and released_audit[0]["actor"] == admin.profile["id"], released_audit


def test_dismiss_closes_the_dispute_and_unblocks_capture(stack, db):
    seller = onboarded_seller(stack, db)
    buyer = make_profile(db, "buyer")
    admin = admin_client(stack, db)
    purchase = authorised_purchase(stack, db, seller, buyer, 6000)
    dispute_id = open_dispute(stack, buyer, purchase["payment_id"]).json()["id"]
    requests_before = len(stack.stripe.received(method="POST"))
    resolved = admin.resolve(dispute_id, "dismiss", note="no grounds")
    assert resolved.status_code == 200, resolved.text
    assert (resolved.json()["status"], resolved.json()["outcome"], resolved.json()["resolution_note"]) == \
        ("dismissed", "dismiss", "no grounds")
    assert len(stack.stripe.received(method="POST")) == requests_before    # dismiss moves no money
    assert (payment_row(db, purchase["payment_id"])["status"], payment_row(db, purchase["payment_id"])["is_disputed"]) == \
        ("requires_capture", False)
    assert_envelope(admin.resolve(dispute_id, "refund_buyer"), 409, "dispute_not_open")
    # The buyer may capture now, and dispute again later.
    assert capture(stack, buyer, purchase["payment_id"]).status_code == 200
    again = open_dispute(stack, buyer, purchase["payment_id"])
    assert again.status_code == 201 and again.json()["id"] != dispute_id


def test_refund_buyer_on_an_authorised_purchase_cancels_it(stack, db):
    seller = onboarded_seller(stack, db)
    buyer = make_profile(db, "buyer")
    admin = admin_client(stack, db)
    purchase = authorised_purchase(stack, db, seller, buyer, 6000)
    dispute_id = open_dispute(stack, buyer, purchase["payment_id"]).json()["id"]
    resolved = admin.resolve(dispute_id, "refund_buyer")
    assert resolved.status_code == 200, resolved.text
    assert len(executed(calls(stack, f"payment:{purchase['payment_id']}:cancel", family=True))) == 1
    assert refunds_at_fake(stack, dispute_id) == {}
    assert fake_object(stack, purchase["intent"])["status"] == "canceled"
    wait_payment(db, purchase["payment_id"], "canceled")
    assert listing_row(db, purchase["listing"])["status"] == "active"


def test_refund_buyer_on_a_released_milestone_reverses_the_transfer_first(stack, db):
    job = funded_job(stack, db, (10000,))
    admin = admin_client(stack, db)
    (milestone,), funding = job["milestones"], job["fundings"][0]
    released = release(stack, job["buyer"], milestone)
    assert released.status_code == 200, released.text
    transfer_id = released.json()["transfer_id"]
    dispute_id = open_dispute(stack, job["buyer"], funding["payment_id"]).json()["id"]
    resolved = admin.resolve(dispute_id, "refund_buyer")
    assert resolved.status_code == 200, resolved.text

    reversal = executed(calls(stack, f"dispute:{dispute_id}:reversal:1"))
    assert len(reversal) == 1 and reversal[0]["path"] == f"/v1/transfers/{transfer_id}/reversals", reversal
    assert reversal[0]["params"].get("amount") == str(10000 - fee_for(10000))
    refund = refunds_at_fake(stack, dispute_id)
    assert list(refund) == [f"dispute:{dispute_id}:refund:1"], refund
    params = refund[f"dispute:{dispute_id}:refund:1"]["params"]
    assert params["payment_intent"] == funding["payment_intent_id"] and params["amount"] == "10000"
    assert "reverse_transfer" not in params and "refund_application_fee" not in params, params  # a platform charge
    assert reversal[0]["time"] <= refund[f"dispute:{dispute_id}:refund:1"]["time"]
    assert fake_object(stack, transfer_id)["amount_reversed"] == 9000
    settle(stack)
    wait_payment(db, funding["payment_id"], "refunded")
    wait_milestone(db, milestone, "refunded")
    transfer = one(db, "SELECT status, amount_reversed FROM transfers WHERE stripe_transfer_id = %s", (transfer_id,))
    assert transfer == {"status": "reversed", "amount_reversed": 9000}
