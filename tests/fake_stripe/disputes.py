"""Disputes (`dp_`): opened and decided by the card network (control calls, or the
`pm_card_createDispute` test cards), answered by the platform through the API."""
from __future__ import annotations

from typing import Any, Dict

from . import balance, charges, events
from .errors import invalid, missing, state_error
from .state import Ctx, State
from .util import apply_metadata, check_unknown, deep, get_bool, get_dict, new_id

DISPUTE_REASONS = ("bank_cannot_process", "check_returned", "credit_not_processed",
                   "customer_initiated", "debit_not_authorized", "duplicate", "fraudulent",
                   "general", "incorrect_account_details", "insufficient_funds",
                   "product_not_received", "product_unacceptable", "subscription_canceled",
                   "unrecognized")
EVIDENCE_FIELDS = ("access_activity_log", "billing_address", "cancellation_policy",
                   "cancellation_policy_disclosure", "cancellation_rebuttal",
                   "customer_communication", "customer_email_address", "customer_name",
                   "customer_purchase_ip", "customer_signature",
                   "duplicate_charge_documentation", "duplicate_charge_explanation",
                   "duplicate_charge_id", "product_description", "receipt", "refund_policy",
                   "refund_policy_disclosure", "refund_refusal_explanation", "service_date",
                   "service_documentation", "shipping_address", "shipping_carrier",
                   "shipping_date", "shipping_documentation", "shipping_tracking_number",
                   "uncategorized_file", "uncategorized_text")


def open_dispute(st: State, ch_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    """Control: the cardholder's bank opens a dispute on a charge."""
    ch = st.objects.get(ch_id)
    if ch is None or ch.get("object") != "charge":
        raise missing("charge", ch_id, param="charge")
    if ch["status"] != "succeeded" or not ch["captured"]:
        raise invalid("Only succeeded, captured charges can be disputed.", param="charge")
    if ch.get("dispute"):
        raise invalid(f"Charge {ch_id} already has a dispute.", param="charge")
    reason = p.get("reason") or "general"
    if reason not in DISPUTE_REASONS:
        raise invalid(f"Invalid reason: {reason}", param="reason")
    inquiry = p.get("status") == "warning_needs_response"
    amount = int(p.get("amount") or (ch["amount_captured"] - max(
        0, ch["amount_refunded"] - (ch["amount"] - ch["amount_captured"]))))
    account = st.scope[ch_id]
    now = st.now()
    dp = {
        "id": new_id("dp"), "object": "dispute", "amount": amount,
        "balance_transactions": [], "charge": ch_id, "created": now,
        "currency": ch["currency"], "enhanced_eligibility_types": [],
        "evidence": {f: None for f in EVIDENCE_FIELDS},
        "evidence_details": {"due_by": now + int(p.get("due_in_seconds") or 7 * 86400),
                             "enhanced_eligibility": {}, "has_evidence": False,
                             "past_due": False, "submission_count": 0},
        "is_charge_refundable": bool(p.get("is_charge_refundable", inquiry)),
        "livemode": False, "metadata": {}, "network_reason_code": "10.4",
        "payment_intent": ch["payment_intent"],
        "payment_method_details": {"card": {"brand": ch["payment_method_details"]["card"]
                                            ["brand"], "case_type": "inquiry"
                                            if inquiry else "chargeback",
                                            "network_reason_code": "10.4"},
                                   "type": "card"},
        "reason": reason,
        "status": "warning_needs_response" if inquiry else "needs_response",
    }
    st.put(dp, account)
    charges.mark_disputed(ch, dp["id"])
    events.emit(st, "charge.dispute.created", dp, None, account)
    if not inquiry:
        txn = balance.transaction(st, -amount - 1500, ch["currency"], "adjustment", dp["id"],
                                  account, description=f"Chargeback withdrawal for {ch_id}")
        dp["balance_transactions"].append(st.clean(deep(st.objects[txn])))
        events.emit(st, "charge.dispute.funds_withdrawn", dp, None, account)
    return dp


def retrieve(st: State, ctx: Ctx, dp_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ())
    return st.get(dp_id, ctx, "dispute")


def update(st: State, ctx: Ctx, dp_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ("evidence", "metadata", "submit"))
    dp = st.get(dp_id, ctx, "dispute")
    ev = get_dict(p, "evidence", allowed=EVIDENCE_FIELDS)
    submit = get_bool(p, "submit", default=True)
    if dp["status"] not in ("needs_response", "warning_needs_response"):
        if ev or submit or "metadata" not in p:
            raise state_error(
                f"This dispute is in status {dp['status']} and its evidence can no longer "
                f"be updated or submitted.", code=None)
    prev: Dict[str, Any] = {}
    if ev:
        prev["evidence"] = deep(dp["evidence"])
        for k, v in ev.items():
            if isinstance(v, dict):
                raise invalid("Invalid string", param=f"evidence[{k}]")
            dp["evidence"][k] = v or None
        prev["evidence_details"] = deep(dp["evidence_details"])
        dp["evidence_details"]["has_evidence"] = any(
            v is not None for v in dp["evidence"].values())
    if "metadata" in p:
        prev["metadata"] = deep(dp["metadata"])
        dp["metadata"] = apply_metadata(dp["metadata"], p)
    if submit and dp["status"] in ("needs_response", "warning_needs_response"):
        prev.setdefault("evidence_details", deep(dp["evidence_details"]))
        prev["status"] = dp["status"]
        dp["evidence_details"]["submission_count"] += 1
        dp["evidence_details"]["past_due"] = st.now() > dp["evidence_details"]["due_by"]
        dp["status"] = ("warning_under_review" if dp["status"] == "warning_needs_response"
                        else "under_review")
    if prev:
        events.emit(st, "charge.dispute.updated", dp, ctx, st.scope[dp_id], prev)
    return dp


def close(st: State, ctx: Ctx, dp_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ())
    dp = st.get(dp_id, ctx, "dispute")
    if dp["status"] not in ("needs_response", "warning_needs_response"):
        raise state_error(f"This dispute has status {dp['status']} and can no longer be "
                          f"closed.", code=None)
    prev = {"status": dp["status"]}
    dp["status"] = "warning_closed" if dp["status"] == "warning_needs_response" else "lost"
    events.emit(st, "charge.dispute.closed", dp, ctx, st.scope[dp_id], prev)
    return dp


def resolve(st: State, dp_id: str, outcome: str) -> Dict[str, Any]:
    """Control: the network decides (won | lost | warning_closed)."""
    dp = st.objects.get(dp_id)
    if dp is None or dp.get("object") != "dispute":
        raise missing("dispute", dp_id)
    if outcome not in ("won", "lost", "warning_closed"):
        raise invalid("outcome must be won, lost or warning_closed", param="outcome")
    if dp["status"] in ("won", "lost", "warning_closed"):
        raise state_error(f"Dispute {dp_id} is already closed ({dp['status']}).", code=None)
    account = st.scope[dp_id]
    prev = {"status": dp["status"]}
    if outcome == "won" and dp["balance_transactions"]:
        txn = balance.transaction(st, dp["amount"] + 1500, dp["currency"], "adjustment",
                                  dp_id, account,
                                  description=f"Chargeback reversal for {dp['charge']}")
        dp["balance_transactions"].append(st.clean(deep(st.objects[txn])))
        dp["status"] = "won"
        events.emit(st, "charge.dispute.funds_reinstated", dp, None, account)
    dp["status"] = outcome
    events.emit(st, "charge.dispute.closed", dp, None, account, prev)
    return dp


def list_(st: State, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
    return st.list_objects(ctx, p, "dispute", "/v1/disputes", ("charge", "payment_intent"))
