"""Issue 15, items 6 and 8 — people who both buy and sell; a seller's readiness names what is
missing; intents carry a description and a receipt email; the seller sees when a sale's funds
are expected to be available."""

from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from harness.api import make_listing, make_milestones, make_profile, onboarded_seller, table_fingerprint
from harness.assertions import assert_envelope
from test_connect_onboarding import payout_delay_days, settle
from test_disputes_platform import authorised_purchase, captured_purchase, create_intent

INTENTS = "/v1/payment_intents"


def onboarded(stack, db, role):
    """A profile of `role` ("seller" or "buyer,seller") whose Express account can take charges."""
    seller = onboarded_seller(stack, db)
    db.execute("UPDATE profiles SET roles = %s WHERE id = %s", (role.split(","), seller["id"]))
    return seller


def create_calls(stack, payment_id):
    """The create-intent calls the fake received for this payment."""
    return [r for r in stack.stripe.received(method="POST", path_prefix=INTENTS)
            if r["path"] == INTENTS and r["params"].get("metadata", {}).get("payment_id") == payment_id]


def test_a_buyer_who_sells_buys_elsewhere_sells_their_own_and_cannot_buy_it(stack, db):
    both = onboarded(stack, db, "buyer,seller")
    other_seller = onboarded_seller(stack, db)
    other_buyer = make_profile(db, "buyer")

    me = stack.get("/api/me", headers=both["headers"])
    assert me.status_code == 200 and me.json()["roles"] == ["buyer", "seller"], me.text
    status = stack.get("/api/connect/status", headers=both["headers"]).json()
    assert (status["ready_to_sell"], status["missing"]) == (True, []), status

    # They buy someone else's listing…
    bought = captured_purchase(stack, db, other_seller, both, 3000)
    # …and someone buys theirs.
    sold = captured_purchase(stack, db, both, other_buyer, 4500)

    # Their own listing: refused, nothing written.
    own = make_listing(db, both, price=1200)
    job = make_listing(db, both, price=2000, kind="job")
    [milestone] = make_milestones(db, job, [2000])
    settle(stack)
    before = table_fingerprint(db)
    assert_envelope(create_intent(stack, both, own), 403, "self_purchase")
    funding = stack.post("/api/payments/milestones/create-intent", json={"listing_id": job, "milestone_id": milestone},
                         headers=both["headers"])
    assert_envelope(funding, 403, "self_purchase")
    assert table_fingerprint(db) == before

    # Their purchases by default (they buy), their sales with ?as=seller.
    purchases = stack.get("/api/payments", headers=both["headers"]).json()["data"]
    sales = stack.get("/api/payments?as=seller", headers=both["headers"]).json()["data"]
    assert [p["id"] for p in purchases] == [bought["payment_id"]], purchases
    assert [p["id"] for p in sales] == [sold["payment_id"]], sales

    # Both role-gated sides are open to them: the seller's balance and the buyer's capture.
    assert stack.get("/api/connect/balance", headers=both["headers"]).status_code == 200
    audit = db.execute("SELECT actor_role FROM payment_audit_logs WHERE operation = 'payment.create' AND entity_id = %s",
                       (bought["payment_id"],)).fetchone()
    assert audit == ("buyer,seller",), audit


def test_a_seller_only_profile_still_cannot_buy(stack, db):
    seller = onboarded(stack, db, "seller")
    listing = make_listing(db, onboarded_seller(stack, db))
    assert_envelope(create_intent(stack, seller, listing), 403, "forbidden")


def test_roles_are_one_of_the_allowed_sets(db):
    """An admin stays separate, and every set is spelled one way: the database refuses the rest."""
    profile = make_profile(db, "buyer")
    for roles in (["admin", "buyer"], ["seller", "buyer"], [], ["buyer", "buyer"], ["owner"]):
        with pytest.raises(psycopg.errors.CheckViolation):
            with db.transaction():
                db.execute("UPDATE profiles SET roles = %s WHERE id = %s", (roles, profile["id"]))


@pytest.mark.parametrize("change,missing", [
    ({"charges_enabled": False}, ["charges_enabled"]),
    ({"payouts_enabled": False}, ["payouts_enabled"]),
    ({"requirements": {"past_due": ["external_account"]}}, ["requirements.past_due"]),
    ({"capabilities": {"transfers": "inactive"}}, ["capabilities.transfers"]),
    ({"charges_enabled": False, "capabilities": {"transfers": "pending"}}, ["charges_enabled", "capabilities.transfers"]),
])
def test_seller_not_ready_names_what_is_missing(stack, db, change, missing):
    seller = onboarded_seller(stack, db)
    account = db.execute("SELECT stripe_account_id FROM profiles WHERE id = %s", (seller["id"],)).fetchone()[0]
    stack.stripe_control("POST", f"/_control/accounts/{account}/update", change)
    settle(stack)
    listing = make_listing(db, seller)
    job = make_listing(db, seller, kind="job", price=900)
    [milestone] = make_milestones(db, job, [900])
    buyer = make_profile(db, "buyer")
    settle(stack)

    status = stack.get("/api/connect/status", headers=seller["headers"]).json()
    assert (status["ready_to_sell"], status["missing"]) == (False, missing), status
    listed = {item["id"]: item for item in stack.get("/api/listings?limit=100", headers=buyer["headers"]).json()["data"]}
    assert listed[listing]["seller_can_be_paid"] is False

    before = table_fingerprint(db)
    refused = create_intent(stack, buyer, listing)
    assert_envelope(refused, 409, "seller_not_ready")
    assert refused.json()["error"]["message"] == f"The seller cannot accept payments yet: missing {', '.join(missing)}."
    funding = stack.post("/api/payments/milestones/create-intent", json={"listing_id": job, "milestone_id": milestone},
                         headers=buyer["headers"])
    assert_envelope(funding, 409, "seller_not_ready")
    assert funding.json()["error"]["message"] == refused.json()["error"]["message"]
    assert table_fingerprint(db) == before


def test_intents_carry_a_description_and_the_buyers_receipt_email(stack, db):
    seller = onboarded_seller(stack, db)
    buyer = make_profile(db, "buyer")
    db.execute("UPDATE listings SET title = 'Vintage camera' WHERE id = %s", (listing := make_listing(db, seller),))
    created = create_intent(stack, buyer, listing)
    assert created.status_code == 201, created.text
    payment_id = created.json()["payment_id"]
    [call] = create_calls(stack, payment_id)
    assert (call["params"]["description"], call["params"]["receipt_email"]) == (
        "Vintage camera", f"{buyer['user_id']}@example.test"), call["params"]
    shown = stack.get(f"/api/payments/{payment_id}", headers=buyer["headers"]).json()
    assert shown["description"] == "Vintage camera"

    # A buyer without an email: a description, no receipt_email.
    quiet = make_profile(db, "buyer")
    db.execute("UPDATE profiles SET email = NULL WHERE id = %s", (quiet["id"],))
    other = create_intent(stack, quiet, make_listing(db, seller))
    [call] = create_calls(stack, other.json()["payment_id"])
    assert "receipt_email" not in call["params"] and call["params"]["description"] == "Test listing", call["params"]

    # A milestone funding names the job and the milestone.
    job = make_listing(db, seller, kind="job", price=700)
    [milestone] = make_milestones(db, job, [700])
    funded = stack.post("/api/payments/milestones/create-intent", json={"listing_id": job, "milestone_id": milestone},
                        headers=buyer["headers"])
    assert funded.status_code == 201, funded.text
    [call] = create_calls(stack, funded.json()["payment_id"])
    assert call["params"]["description"] == "Test listing — Milestone 1", call["params"]


def test_the_seller_sees_when_a_sales_funds_are_expected(stack, db):
    seller, buyer = onboarded_seller(stack, db), make_profile(db, "buyer")
    pending = authorised_purchase(stack, db, seller, buyer, 2500)
    sale = captured_purchase(stack, db, seller, buyer, 6000)
    succeeded_at = db.execute("SELECT succeeded_at FROM payments WHERE id = %s", (sale["payment_id"],)).fetchone()[0]
    expected = (succeeded_at.astimezone(timezone.utc) + timedelta(days=payout_delay_days(stack))).date().isoformat()

    as_seller = stack.get(f"/api/payments/{sale['payment_id']}", headers=seller["headers"]).json()
    assert as_seller["funds_available_on"] == expected, as_seller
    assert datetime.fromisoformat(as_seller["succeeded_at"].replace("Z", "+00:00")) == succeeded_at
    listed = {p["id"]: p for p in stack.get("/api/payments?as=seller", headers=seller["headers"]).json()["data"]}
    assert listed[sale["payment_id"]]["funds_available_on"] == expected
    assert listed[pending["payment_id"]]["funds_available_on"] is None  # not captured yet

    as_buyer = stack.get(f"/api/payments/{sale['payment_id']}", headers=buyer["headers"]).json()
    assert as_buyer["funds_available_on"] is None and as_buyer["succeeded_at"] == as_seller["succeeded_at"]
