"""Issue 16, the rest — a direct charge's refunds through nginx, the real app, PostgreSQL and the
fake Stripe:

- the operator's choice of giving the platform's application fee back (`DIRECT_REFUND_APPLICATION_FEE`),
  for goodwill and dispute refunds alike, recorded on the refund when it is reserved so that a
  resumed refund keeps it whatever the setting says by then;
- a refund that the seller's balance cannot cover (the fake's balance rule, as Stripe's: the
  refund is made and stays `pending`, `pending_reason: insufficient_funds`, until the balance
  covers it)."""

import contextlib

import pytest

from charge_models import ChargeModelStack, stripe_account_scoped  # noqa: F401  (the autouse check)
from harness.api import make_profile, onboarded_seller, wait_for
from harness.assertions import assert_envelope
from test_disputes_platform import captured_purchase, refund_rows
from test_metrics import scrape, value
from test_milestones import (  # noqa: F401  (the autouse fixture applies here too)
    Client, executed, fake_object, fresh_loopback_windows, open_dispute, payment_row, settle, wait_payment,
)


@contextlib.contextmanager
def direct_app(stack, **settings):
    with stack.other_apps(CHARGE_MODEL="direct", **settings) as apps:
        wait_for(lambda: apps.get("/api/health").status_code == 200, 15, what="the direct-charge app")
        yield ChargeModelStack(stack, "direct", apps)


@pytest.fixture(scope="module")
def fee_refunded(stack):
    """CHARGE_MODEL=direct with the default DIRECT_REFUND_APPLICATION_FEE (true)."""
    with direct_app(stack) as app:
        yield app


@pytest.fixture(scope="module")
def fee_kept(stack):
    """CHARGE_MODEL=direct with DIRECT_REFUND_APPLICATION_FEE=false."""
    with direct_app(stack, DIRECT_REFUND_APPLICATION_FEE="false") as app:
        yield app


def paid(app, db, price):
    seller, buyer = onboarded_seller(app, db), make_profile(db, "buyer")
    return {"seller": seller, "buyer": buyer, **captured_purchase(app, db, seller, buyer, price)}


def refund_calls(stack, payment_id, dispute_id=None):
    """The refund requests the fake executed for this payment (and its dispute), oldest first."""
    prefixes = (f"payment:{payment_id}:refund:",) + ((f"dispute:{dispute_id}:refund:",) if dispute_id else ())
    mine = [r for r in stack.stripe.received(method="POST", path_prefix="/v1/refunds")
            if r["headers"].get("Idempotency-Key", "").startswith(prefixes)]
    return executed([r for r in mine if r["status"] is not None])  # None: a dropped connection


def application_fee(stack, case):
    return fake_object(stack, fake_object(stack, case["charge"])["application_fee"])


@pytest.mark.parametrize("setting", ["fee_refunded", "fee_kept"])
def test_goodwill_and_dispute_refunds_give_the_fee_back_as_the_operator_chose(stack, db, request, setting):
    app = request.getfixturevalue(setting)
    refunds_fee = setting == "fee_refunded"
    case = paid(app, db, 6000)
    admin = Client(app, make_profile(db, "admin"))
    # A goodwill refund, then the buyer's dispute: a dispute refund, then refund_buyer for the rest.
    goodwill = admin.post(f"/api/admin/payments/{case['payment_id']}/refund", json={"amount": 1500, "reason": "late"})
    assert goodwill.status_code == 201, goodwill.text
    opened = open_dispute(app, case["buyer"], case["payment_id"])
    assert opened.status_code == 201, opened.text
    dispute_id = opened.json()["id"]
    assert admin.refund(dispute_id, amount=1500).status_code == 201
    resolved = admin.resolve(dispute_id, "refund_buyer")
    assert resolved.status_code == 200, resolved.text
    settle(stack)

    calls = refund_calls(stack, case["payment_id"], dispute_id)
    assert [(r["params"]["amount"], r["params"]["refund_application_fee"], r["headers"].get("Stripe-Account"))
            for r in calls] == [(amount, str(refunds_fee).lower(), case_account(db, case))
                                for amount in ("1500", "1500", "3000")], calls
    assert [r["refund_application_fee"] for r in refund_rows(db, case["payment_id"])] == [refunds_fee] * 3
    # The fee (10 %: 600) came back to the seller's account in proportion, or stayed the platform's.
    fee = application_fee(stack, case)
    assert (fee["amount"], fee["amount_refunded"]) == (600, 600 if refunds_fee else 0), fee
    row = wait_payment(db, case["payment_id"], "refunded")
    assert (row["amount_refunded"], row["amount_received"]) == (6000, 6000)


def case_account(db, case):
    return db.execute("SELECT stripe_account FROM payments WHERE id = %s", (case["payment_id"],)).fetchone()[0]


@pytest.mark.parametrize("reserved_under,resumed_under", [("fee_kept", "fee_refunded"), ("fee_refunded", "fee_kept")])
def test_a_resumed_refund_keeps_the_choice_it_was_reserved_under(stack, db, request, reserved_under, resumed_under):
    first, then = request.getfixturevalue(reserved_under), request.getfixturevalue(resumed_under)
    refunds_fee = reserved_under == "fee_refunded"
    case = paid(first, db, 5000)
    admin = Client(first, make_profile(db, "admin"))
    try:
        # The connection drops before the fake acts: the outcome is unknown, the refund kept.
        stack.stripe_control("POST", "/_control/faults", {"type": "drop", "when": "before", "method": "POST",
                                                          "path_prefix": "/v1/refunds", "count": 3})
        lost = admin.post(f"/api/admin/payments/{case['payment_id']}/refund", json={"amount": 2000, "reason": "x"})
    finally:
        stack.stripe_control("DELETE", "/_control/faults")
    assert_envelope(lost, 502, "stripe_unavailable")
    assert refund_calls(stack, case["payment_id"]) == []
    [reserved] = refund_rows(db, case["payment_id"])
    assert (reserved["status"], reserved["outcome_unknown"], reserved["refund_application_fee"]) == (
        "creating", True, refunds_fee)

    # The operator changes the setting; the next refund of that amount resumes the reserved one.
    admin.stack = then
    resumed = admin.post(f"/api/admin/payments/{case['payment_id']}/refund", json={"amount": 2000, "reason": "x"})
    assert resumed.status_code == 201, resumed.text
    [call] = refund_calls(stack, case["payment_id"])
    assert call["headers"]["Idempotency-Key"] == f"payment:{case['payment_id']}:refund:1"
    assert call["params"]["refund_application_fee"] == str(refunds_fee).lower(), call["params"]
    assert application_fee(stack, case)["amount_refunded"] == (200 if refunds_fee else 0)
    # A new refund after it is made under the setting now in force.
    settle(stack)
    rest = admin.post(f"/api/admin/payments/{case['payment_id']}/refund", json={"reason": "the rest"})
    assert rest.status_code == 201, rest.text
    assert [r["refund_application_fee"] for r in refund_rows(db, case["payment_id"])] == [refunds_fee, not refunds_fee]


def test_a_refund_the_sellers_balance_cannot_cover_waits_pending_and_completes_when_funds_arrive(stack, db,
                                                                                                  fee_refunded):
    """Under `direct` a refund is taken from the seller's balance. When Stripe cannot take it (the
    account's available balance is short and Stripe may not debit its bank), Stripe still makes
    the refund, `pending` with `pending_reason: insufficient_funds`, and completes it when the
    balance covers it. The platform answers the admin 201 with that status and reason, keeps the
    amount reserved (no second refund can exceed the capture), and records the completion from
    the refund's `charge.refund.updated`."""
    case = paid(fee_refunded, db, 6000)
    account = case_account(db, case)
    admin = Client(fee_refunded, make_profile(db, "admin"))
    before, _ = scrape(stack)
    drained = stack.stripe_control("POST", f"/_control/accounts/{account}/balance",
                                   {"amount": 0, "debit_negative_balances": False})
    assert drained["balance"]["available"][0]["amount"] == 0, drained

    waiting = admin.post(f"/api/admin/payments/{case['payment_id']}/refund", json={"amount": 4000, "reason": "late"})
    assert waiting.status_code == 201, waiting.text
    body = waiting.json()
    assert (body["amount"], body["status"], body["pending_reason"]) == (4000, "pending", "insufficient_funds"), body
    settle(stack)
    [row] = refund_rows(db, case["payment_id"])
    assert (row["status"], row["pending_reason"], row["stripe_refund_id"]) == (
        "pending", "insufficient_funds", body["stripe_refund_id"])
    # The amount stays reserved: at most the rest can be refunded meanwhile.
    assert_envelope(admin.post(f"/api/admin/payments/{case['payment_id']}/refund",
                               json={"amount": 2001, "reason": "too much"}), 409, "refund_exceeds_captured")
    audited = db.execute("SELECT new_values->>'pending_reason' FROM payment_audit_logs WHERE entity_id = %s "
                         "AND operation = 'payment.refund' AND success", (case["payment_id"],)).fetchall()
    assert audited == [("insufficient_funds",)], audited
    # Operations see it among the refunds not settled yet, under the direct model.
    waiting_now, _ = scrape(stack)
    for model, moved in (("direct", 1), ("destination", 0)):
        assert value(waiting_now, "payments_refunds_pending", charge_model=model) - \
            value(before, "payments_refunds_pending", charge_model=model) == moved, model
    assert value(waiting_now, "payments_refunds_pending_amount_minor", charge_model="direct", currency="usd") - \
        value(before, "payments_refunds_pending_amount_minor", charge_model="direct", currency="usd") == 4000

    # The seller's balance is topped up: Stripe takes the refund, and its event completes our row.
    funded = stack.stripe_control("POST", f"/_control/accounts/{account}/balance", {"amount": 10000})
    assert funded["refunds_succeeded"] == [body["stripe_refund_id"]], funded
    settle(stack)
    wait_for(lambda: refund_rows(db, case["payment_id"])[0]["status"] == "succeeded", 10,
             what="the waiting refund to be recorded succeeded")
    [row] = refund_rows(db, case["payment_id"])
    assert (row["status"], row["pending_reason"]) == ("succeeded", None)
    assert fake_object(stack, body["stripe_refund_id"])["status"] == "succeeded"
    assert payment_row(db, case["payment_id"])["amount_refunded"] == 4000
    assert value(scrape(stack)[0], "payments_refunds_pending", charge_model="direct") == \
        value(before, "payments_refunds_pending", charge_model="direct")


def test_a_waiting_refund_that_stripe_fails_frees_its_amount(stack, db, fee_refunded):
    case = paid(fee_refunded, db, 5000)
    account = case_account(db, case)
    admin = Client(fee_refunded, make_profile(db, "admin"))
    stack.stripe_control("POST", f"/_control/accounts/{account}/balance", {"amount": 0, "debit_negative_balances": False})
    waiting = admin.post(f"/api/admin/payments/{case['payment_id']}/refund", json={"reason": "all of it"})
    assert waiting.status_code == 201 and waiting.json()["pending_reason"] == "insufficient_funds", waiting.text
    assert_envelope(admin.post(f"/api/admin/payments/{case['payment_id']}/refund", json={"reason": "again"}),
                    409, "nothing_to_refund")
    stack.stripe_control("POST", f"/_control/refunds/{waiting.json()['stripe_refund_id']}/status", {"status": "failed"})
    settle(stack)
    wait_for(lambda: refund_rows(db, case["payment_id"])[0]["status"] == "failed", 10, what="the failed refund")
    # Its amount is free again: the admin can refund it anew (it waits for funds in its turn).
    again = admin.post(f"/api/admin/payments/{case['payment_id']}/refund", json={"reason": "again"})
    assert again.status_code == 201, again.text
    assert (again.json()["amount"], again.json()["status"]) == (5000, "pending")
    assert [r["status"] for r in refund_rows(db, case["payment_id"])] == ["failed", "pending"]
