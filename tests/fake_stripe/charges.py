"""Charges: charging a PaymentIntent's payment method (success, decline, 3-D Secure), the
`ch_` objects that makes, and what a capture settles (balance transaction, application fee,
the destination transfer). The app only reads charges."""
from __future__ import annotations

from typing import Any, Dict, Optional

from . import application_fees, balance, disputes, events, transfers
from .errors import card_error
from .state import Ctx, State
from .util import check_unknown, deep, new_id, rand


def attempt(st: State, pi: Dict[str, Any], ctx: Ctx, skip_3ds: bool = False) -> None:
    """Charge `pi`'s payment method (confirming it): the test payment method (or a `decline`
    fault, `ctx.forced_decline`) decides between requires_action, a decline (raised as the
    402 card error, after the failed charge is recorded) and a charge that succeeds."""
    pm = st.objects[pi["payment_method"]]
    outcome = pm.get("_test_outcome", "ok")
    if ctx.forced_decline:
        outcome = "decline:" + ctx.forced_decline
    if outcome == "3ds" and not skip_3ds:
        pi["status"] = "requires_action"
        pi["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {
            "type": "three_d_secure_redirect",
            "stripe_js": f"{ctx.base_url or st.public_url()}/3ds/{pi['id']}",
            "source": "src_" + rand(24)}}
        pi["last_payment_error"] = None
        events.emit(st, "payment_intent.requires_action", pi, ctx, st.scope[pi["id"]])
        return
    pi["next_action"] = None
    account = st.scope[pi["id"]]
    if outcome.startswith("decline:"):
        decline = outcome.split(":", 1)[1]
        ch = _new_charge(st, pi, pm, ctx, failed=decline)
        err = card_error(decline)
        pm_clean = st.clean(pm)
        pi["last_payment_error"] = {
            "charge": ch["id"], "code": err.code, "decline_code": decline,
            "doc_url": f"https://stripe.com/docs/error-codes/{err.code.replace('_', '-')}",
            "message": err.message, "payment_method": pm_clean, "type": "card_error"}
        pi["status"] = "requires_payment_method"
        pi["payment_method"] = None
        pi["latest_charge"] = ch["id"]
        events.emit(st, "charge.failed", ch, ctx, account)
        events.emit(st, "payment_intent.payment_failed", pi, ctx, account)
        err.extra = {"charge": ch["id"], "payment_intent": st.clean(deep(pi)),
                     "payment_method": pm_clean}
        raise err
    pi["last_payment_error"] = None
    manual = pi["capture_method"] == "manual"
    ch = _new_charge(st, pi, pm, ctx, failed=None, captured=not manual)
    pi["latest_charge"] = ch["id"]
    if manual:
        pi["status"] = "requires_capture"
        pi["amount_capturable"] = pi["amount"]
        events.emit(st, "charge.succeeded", ch, ctx, account)
        events.emit(st, "payment_intent.amount_capturable_updated", pi, ctx, account)
    else:
        pi["status"] = "succeeded"
        pi["amount_received"] = pi["amount"]
        settle_capture(st, pi, ch, pi["amount"], ctx)
        events.emit(st, "charge.succeeded", ch, ctx, account)
        events.emit(st, "payment_intent.succeeded", pi, ctx, account)
    if outcome in ("dispute", "dispute_inquiry") and not manual:
        disputes.open_dispute(st, ch["id"], {"reason": "fraudulent",
                                             "status": "warning_needs_response"
                                             if outcome == "dispute_inquiry" else None})


def _new_charge(st: State, pi: Dict[str, Any], pm: Dict[str, Any], ctx: Ctx,
                failed: Optional[str], captured: bool = False) -> Dict[str, Any]:
    account = st.scope[pi["id"]]
    card = pm["card"]
    ok = failed is None
    err = card_error(failed) if failed else None
    ch = {
        "id": new_id("ch"), "object": "charge", "amount": pi["amount"],
        "amount_captured": 0, "amount_refunded": 0, "application": None,
        "application_fee": None, "application_fee_amount": pi["application_fee_amount"],
        "balance_transaction": None,
        "billing_details": deep(pm["billing_details"]),
        "calculated_statement_descriptor": "FAKE STRIPE", "captured": False,
        "created": st.now(), "currency": pi["currency"], "customer": pi["customer"],
        "description": pi["description"], "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": err.code if err else None,
        "failure_message": err.message if err else None, "fraud_details": {},
        "invoice": None, "livemode": False, "metadata": deep(pi["metadata"]),
        "on_behalf_of": pi["on_behalf_of"],
        "outcome": ({"network_status": "approved_by_network", "reason": None,
                     "risk_level": "normal", "risk_score": 32,
                     "seller_message": "Payment complete.", "type": "authorized"} if ok else
                    {"network_status": "declined_by_network", "reason": failed,
                     "risk_level": "normal", "risk_score": 40,
                     "seller_message": "The bank did not return any further details with "
                                       "this decline.", "type": "issuer_declined"}),
        "paid": ok, "payment_intent": pi["id"], "payment_method": pm["id"],
        "payment_method_details": {"card": {
            "amount_authorized": pi["amount"] if ok else None, "brand": card["brand"],
            "capture_before": (st.now() + st.authorization_window_days * 86400) if ok else None,
            "checks": deep(card["checks"]), "country": card["country"],
            "exp_month": card["exp_month"], "exp_year": card["exp_year"],
            "fingerprint": card["fingerprint"], "funding": card["funding"],
            "installments": None, "last4": card["last4"], "mandate": None,
            "network": card["brand"], "network_token": {"used": False},
            "three_d_secure": None, "wallet": None}, "type": "card"},
        "receipt_email": pi["receipt_email"], "receipt_number": None,
        "receipt_url": f"{st.public_url()}/receipts/{pi['id']}", "refunded": False,
        "review": None, "shipping": None, "source": None, "source_transfer": None,
        "statement_descriptor": pi["statement_descriptor"],
        "statement_descriptor_suffix": pi["statement_descriptor_suffix"],
        "status": "succeeded" if ok else "failed", "transfer": None,
        "transfer_data": ({"amount": pi["transfer_data"].get("amount"),
                           "destination": pi["transfer_data"]["destination"]}
                          if pi["transfer_data"] else None),
        "transfer_group": pi["transfer_group"],
    }
    st.put(ch, account)
    return ch


def settle_capture(st: State, pi: Dict[str, Any], ch: Dict[str, Any], amount: int,
                   ctx: Ctx) -> None:
    """Mark a charge captured for `amount`; create balance txn, application fee, transfer."""
    account = st.scope[ch["id"]]
    ch["captured"] = True
    ch["amount_captured"] = amount
    if amount < ch["amount"]:
        # the uncaptured remainder is released (Stripe reports it as refunded)
        ch["amount_refunded"] = ch["amount"] - amount
    fee = 30 + round(amount * 0.029)
    ch["balance_transaction"] = balance.transaction(st, amount, ch["currency"], "charge",
                                                    ch["id"], account, fee=fee)
    app_fee = pi.get("application_fee_amount")
    ch["application_fee_amount"] = app_fee
    if pi["transfer_data"]:
        dest = pi["transfer_data"]["destination"]
        if app_fee:
            ch["application_fee"] = application_fees.create_for_charge(st, ctx, ch, dest,
                                                                       app_fee, account)
        t_amount = pi["transfer_data"].get("amount")
        if t_amount is None:
            t_amount = amount - (app_fee or 0)
        tr = transfers.new_transfer(st, ctx, account, t_amount, ch["currency"], dest,
                                    source_transaction=ch["id"],
                                    transfer_group=pi["transfer_group"], metadata={})
        ch["transfer"] = tr["id"]
    elif app_fee and account:
        # A direct charge (made on a connected account): the fee object is the platform's,
        # taken from the connected account's share.
        ch["application_fee"] = application_fees.create_for_charge(st, ctx, ch, account, app_fee,
                                                                   None)


def capture(st: State, pi: Dict[str, Any], amount: int, ctx: Ctx) -> Dict[str, Any]:
    """Capture `amount` of `pi`'s authorized charge (emits charge.captured); the charge."""
    ch = st.objects[pi["latest_charge"]]
    settle_capture(st, pi, ch, amount, ctx)
    events.emit(st, "charge.captured", ch, ctx, st.scope[pi["id"]])
    return ch


def release(st: State, ch_id: str, ctx: Ctx) -> None:
    """Release an uncaptured authorization (a canceled PaymentIntent): Stripe reports the
    whole amount as refunded (emits charge.refunded)."""
    ch = st.objects[ch_id]
    ch["amount_refunded"] = ch["amount"]
    ch["refunded"] = True
    events.emit(st, "charge.refunded", ch, ctx, st.scope[ch_id])


def add_refunded(ch: Dict[str, Any], amount: int) -> None:
    """A refund of `amount` was made (negative: one failed or was canceled)."""
    ch["amount_refunded"] += amount
    ch["refunded"] = ch["amount_refunded"] >= ch["amount"]


def mark_disputed(ch: Dict[str, Any], dp_id: str) -> None:
    ch["disputed"] = True
    ch["dispute"] = dp_id


def retrieve(st: State, ctx: Ctx, ch_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ())
    return st.get(ch_id, ctx, "charge")


def list_(st: State, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
    return st.list_objects(ctx, p, "charge", "/v1/charges",
                           ("payment_intent", "transfer_group"), accepted=("customer",))
