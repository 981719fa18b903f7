"""Issue 15, item 6 — a seller's money: the balance of their connected account (asked of the
fake Stripe, on the seller's account) and their payouts, mirrored from `payout.*` events."""

from harness.api import make_profile, onboarded_seller
from harness.assertions import assert_envelope
from test_connect_onboarding import payout_delay_days
from test_disputes_platform import captured_purchase
from test_milestones import (  # noqa: F401  (the autouse fixture applies here too)
    Client, fresh_loopback_windows, seller_account, settle, wait_for,
)


def test_the_seller_sees_their_own_balance_from_stripe(stack, db):
    seller, buyer = onboarded_seller(stack, db), make_profile(db, "buyer")
    account = seller_account(db, seller)
    client = Client(stack, seller)
    empty = client.get("/api/connect/balance")
    assert empty.status_code == 200, empty.text
    assert sum(m["amount"] for m in empty.json()["pending"] + empty.json()["available"]) == 0

    purchase = captured_purchase(stack, db, seller, buyer, 8000)
    fee = db.execute("SELECT application_fee_cents FROM payments WHERE id = %s",
                     (purchase["payment_id"],)).fetchone()[0]
    body = client.get("/api/connect/balance").json()
    # The destination charge's transfer lands on the seller's account, pending until Stripe
    # makes it available.
    assert body["account_id"] == account
    assert body["pending"] == [{"amount": 8000 - fee, "currency": "usd"}], body
    assert body["available"] == [{"amount": 0, "currency": "usd"}], body
    assert body["payout_delay_days"] == payout_delay_days(stack)
    asked = [r for r in stack.stripe.received(method="GET", path_prefix="/v1/balance")
             if r["headers"].get("Stripe-Account") == account]
    assert len(asked) == 2, asked


def test_balance_needs_a_connected_account_and_the_seller_role(stack, db):
    assert_envelope(Client(stack, make_profile(db, "seller")).get("/api/connect/balance"), 409, "not_onboarded")
    assert_envelope(Client(stack, make_profile(db, "buyer")).get("/api/connect/balance"), 403, "forbidden")
    assert_envelope(Client(stack, make_profile(db, "buyer")).get("/api/connect/payouts"), 403, "forbidden")


def test_payouts_are_mirrored_from_events_and_listed_newest_first(stack, db):
    seller = onboarded_seller(stack, db)
    other = onboarded_seller(stack, db)
    account = seller_account(db, seller)
    paid = stack.stripe_control("POST", f"/_control/accounts/{account}/payouts", {"amount": 2500, "status": "paid"})
    failed = stack.stripe_control("POST", f"/_control/accounts/{account}/payouts",
                                  {"amount": 700, "status": "failed", "failure_code": "account_closed"})
    stack.stripe_control("POST", f"/_control/accounts/{seller_account(db, other)}/payouts", {"amount": 99})
    settle(stack)
    client = Client(stack, seller)

    def listed():
        return client.get("/api/connect/payouts?limit=1").json()

    wait_for(lambda: len(db.execute("SELECT 1 FROM payouts WHERE account = %s AND status IN ('paid', 'failed')",
                                    (account,)).fetchall()) == 2, what="both payouts mirrored")
    first = listed()
    assert [p["id"] for p in first["data"]] == [failed["id"]], first
    assert (first["data"][0]["status"], first["data"][0]["failure_code"], first["data"][0]["amount"]) == (
        "failed", "account_closed", 700)
    second = client.get(f"/api/connect/payouts?limit=1&cursor={first['next_cursor']}").json()
    assert [(p["id"], p["status"], p["amount"]) for p in second["data"]] == [(paid["id"], "paid", 2500)]
    assert second["data"][0]["arrival_date"].endswith("Z")
    assert second["next_cursor"] is None
    # Another seller's payouts are not shown.
    assert all(p["id"] not in (paid["id"], failed["id"])
               for p in Client(stack, other).get("/api/connect/payouts").json()["data"])
    assert_envelope(client.get("/api/connect/payouts?cursor=forged"), 400, "invalid_field")
