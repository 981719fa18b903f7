"""Refunds: create (with proportional transfer reversals and application fee refunds),
retrieve, update, cancel, list, and the control calls that settle or fail them."""
from __future__ import annotations

from typing import Any, Dict, Optional

from . import application_fees, balance, charges, events, transfers
from .errors import invalid, missing, state_error
from .state import Ctx, State
from .util import apply_metadata, check_unknown, deep, get_bool, get_int, get_str, new_id

REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
MODES = ("succeeded", "pending")  # what new refunds start in (control: refunds/mode)


def create(st: State, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ("payment_intent", "charge", "amount", "reason", "metadata",
                      "reverse_transfer", "refund_application_fee", "instructions_email",
                      "origin", "currency", "customer"))
    pi_id = get_str(p, "payment_intent")
    ch_id = get_str(p, "charge")
    amount = get_int(p, "amount", minimum=1)
    reason = get_str(p, "reason", choices=REFUND_REASONS)
    reverse = get_bool(p, "reverse_transfer", default=False)
    refund_fee = get_bool(p, "refund_application_fee", default=False)
    metadata = apply_metadata({}, p)
    if not pi_id and not ch_id:
        raise invalid("One of the following params should be provided for this request: "
                      "payment_intent or charge.", code="parameter_missing")
    if pi_id:
        pi = st.get(pi_id, ctx, "payment_intent", param="payment_intent")
        if not pi["latest_charge"] or st.objects[pi["latest_charge"]]["status"] != \
                "succeeded":
            raise state_error(f"This PaymentIntent ({pi_id}) does not have a successful "
                              f"charge to refund.", code=None, param="payment_intent")
        ch = st.objects[pi["latest_charge"]]
        if ch_id and ch_id != ch["id"]:
            raise invalid("The charge does not belong to the payment_intent.",
                          param="charge")
    else:
        ch = st.get(ch_id, ctx, "charge", param="charge")
    if ch["status"] != "succeeded":
        raise state_error(f"Charge {ch['id']} cannot be refunded because it has failed.",
                          code="charge_not_refundable", param="charge")
    if not ch["captured"]:
        raise state_error(
            f"Charge {ch['id']} has not been captured; cancel the PaymentIntent to release "
            f"the authorization instead.", code="charge_not_refundable")
    if ch.get("dispute"):
        dp = st.objects[ch["dispute"]]
        if not dp["is_charge_refundable"]:
            raise state_error(f"Charge {ch['id']} has been charged back; cannot issue a "
                              f"refund.", code="charge_disputed")
    remaining = ch["amount"] - ch["amount_refunded"]
    if remaining <= 0:
        raise state_error(f"Charge {ch['id']} has already been refunded.",
                          code="charge_already_refunded")
    if amount is None:
        amount = remaining
    if amount > remaining:
        raise state_error(
            f"Refund amount (${amount / 100:.2f}) is greater than unrefunded amount on "
            f"charge (${remaining / 100:.2f})", code="amount_too_large", param="amount")
    if reverse and not ch["transfer"]:
        raise invalid("You can only reverse the transfer of a destination charge "
                      "(a charge created with `transfer_data[destination]`).",
                      param="reverse_transfer")
    if refund_fee and not ch["application_fee"]:
        raise invalid("This charge has no application fee to refund.",
                      param="refund_application_fee")
    account = st.scope[ch["id"]]
    status = st.refund_mode
    captured = ch["amount_captured"] or ch["amount"]
    fee_obj = st.objects[ch["application_fee"]] if refund_fee else None
    fr_amount = (min(round(amount * fee_obj["amount"] / captured), fee_obj["amount"] - fee_obj["amount_refunded"])
                 if fee_obj else 0)
    # Stripe's balance rule: a refund is taken from the available balance of the account that
    # owns the charge (with the fee it gets back); one the balance cannot cover stays pending
    # (`pending_reason: insufficient_funds`) until it can, unless Stripe may debit the
    # account's bank (`debit_negative_balances`).
    short = not balance.covers(st, account, amount - fr_amount, ch["currency"])
    if short:
        status = "pending"
    rf = {
        "id": new_id("re"), "object": "refund", "amount": amount,
        "balance_transaction": None, "charge": ch["id"], "created": st.now(),
        "currency": ch["currency"],
        "destination_details": {"card": {"reference_status": "pending",
                                         "reference_type": "acquirer_reference_number",
                                         "type": "refund"}, "type": "card"},
        "metadata": metadata, "payment_intent": ch["payment_intent"], "reason": reason,
        "pending_reason": ("insufficient_funds" if short else "processing" if status == "pending" else None),
        "receipt_number": None, "source_transfer_reversal": None, "status": status,
        "transfer_reversal": None,
    }
    if not short:
        rf["balance_transaction"] = balance.transaction(st, -amount, ch["currency"], "refund",
                                                        rf["id"], account, available_now=True)
    st.put(rf, account)
    charges.add_refunded(ch, amount)
    if reverse:
        tr = st.objects[ch["transfer"]]
        rev_amount = min(round(amount * tr["amount"] / captured),
                         tr["amount"] - tr["amount_reversed"])
        if rev_amount > 0:
            trr = transfers.reverse(st, ctx, tr, rev_amount, {}, account,
                                    source_refund=rf["id"])
            rf["transfer_reversal"] = trr["id"]
    if fee_obj and fr_amount > 0:
        # The fee refund is the platform's, where its fee lives (a direct charge's
        # refund is made on the connected account, its fee on the platform).
        application_fees.refund(st, ctx, fee_obj, fr_amount, st.scope[fee_obj["id"]])
    events.emit(st, "charge.refunded", ch, ctx, account)
    events.emit(st, "refund.created", rf, ctx, account)
    return rf


def retrieve(st: State, ctx: Ctx, re_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ())
    return st.get(re_id, ctx, "refund")


def update(st: State, ctx: Ctx, re_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ("metadata",))
    rf = st.get(re_id, ctx, "refund")
    prev = {"metadata": deep(rf["metadata"])}
    rf["metadata"] = apply_metadata(rf["metadata"], p)
    if prev["metadata"] != rf["metadata"]:
        events.emit(st, "refund.updated", rf, ctx, st.scope[rf["id"]], prev)
    return rf


def cancel(st: State, ctx: Ctx, re_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ())
    rf = st.get(re_id, ctx, "refund")
    if rf["status"] != "requires_action":
        raise state_error(f"Refund {re_id} cannot be canceled because it has a status of "
                          f"{rf['status']}. Only a refund with a status of requires_action "
                          f"can be canceled.", code=None)
    return set_status(st, re_id, "canceled", ctx=ctx)


def set_status(st: State, re_id: str, status: str, failure_reason: Optional[str] = None,
               ctx: Optional[Ctx] = None) -> Dict[str, Any]:
    """Control (and cancel): move a refund to `status`; a failed or canceled refund gives its
    amount back to the charge."""
    rf = st.objects.get(re_id)
    if not rf or rf.get("object") != "refund":
        raise missing("refund", re_id)
    if status not in ("succeeded", "failed", "canceled", "pending", "requires_action"):
        raise invalid("status must be succeeded, failed, canceled, pending or "
                      "requires_action", param="status")
    account = st.scope[re_id]
    prev = {"status": rf["status"]}
    if rf["status"] == status:
        return rf
    ch = st.objects[rf["charge"]]
    if status in ("failed", "canceled") and rf["status"] not in ("failed", "canceled"):
        charges.add_refunded(ch, -rf["amount"])
        if status == "failed":
            rf["failure_reason"] = failure_reason or "unknown"
            if rf["balance_transaction"]:  # a refund still waiting for funds took nothing yet
                rf["failure_balance_transaction"] = balance.transaction(
                    st, rf["amount"], rf["currency"], "refund_failure", rf["id"], account)
    rf["status"] = status
    if status != "pending":
        rf["pending_reason"] = None
    events.emit(st, "refund.updated", rf, ctx, account, prev)
    events.emit(st, "charge.refund.updated", rf, ctx, account, prev)
    if status == "failed":
        events.emit(st, "refund.failed", rf, ctx, account)
    return rf


def cover_waiting(st: State, account: str) -> list:
    """Refunds of `account` waiting for funds (`pending_reason: insufficient_funds`) that its
    available balance now covers are taken from it and succeed, oldest first (each with its
    `refund.updated` and `charge.refund.updated`). The refunds that succeeded."""
    waiting = [rf for rf, owner in st.scan() if owner == account and rf.get("object") == "refund"
               and rf["status"] == "pending" and rf.get("pending_reason") == "insufficient_funds"]
    done = []
    for rf in reversed(waiting):  # scan() is newest first
        if not balance.covers(st, account, rf["amount"], rf["currency"]):
            break
        rf = st.objects[rf["id"]]
        rf["balance_transaction"] = balance.transaction(st, -rf["amount"], rf["currency"], "refund",
                                                        rf["id"], account, available_now=True)
        done.append(set_status(st, rf["id"], "succeeded"))
    return done


def list_(st: State, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
    return st.list_objects(ctx, p, "refund", "/v1/refunds", ("charge", "payment_intent"))


def set_mode(st: State, mode: str) -> None:
    """Control: the status new refunds start in (one of MODES)."""
    assert mode in MODES
    st.refund_mode = mode
