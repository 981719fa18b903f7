"""Balance transactions (`txn_`), which every money movement records, and payouts (control
only: the app only receives `payout.*` events)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from . import events
from .errors import invalid, missing
from .state import Ctx, State
from .util import check_unknown, new_id


def transaction(st: State, amount: int, currency: str, type_: str, source: str,
                account: Optional[str], fee: int = 0, description: Optional[str] = None,
                available_now: bool = False) -> str:
    """Record a balance transaction on `account`'s balance (None = the platform's); its id.
    Funds become available two days on, or at once (`available_now`: a refund's debit, taken
    from the available balance)."""
    t = {
        "id": new_id("txn"), "object": "balance_transaction", "amount": amount,
        "available_on": st.now() + (0 if available_now else 2 * 86400), "created": st.now(),
        "currency": currency, "description": description, "exchange_rate": None,
        "fee": fee,
        "fee_details": ([{"amount": fee, "application": None, "currency": currency,
                          "description": "Stripe processing fees", "type": "stripe_fee"}]
                        if fee else []),
        "net": amount - fee, "reporting_category": {
            "charge": "charge", "refund": "refund", "transfer": "transfer",
            "transfer_refund": "transfer_reversal", "payment": "charge",
            "application_fee": "fee", "application_fee_refund": "fee",
            "adjustment": "dispute", "payment_refund": "refund",
            "payout": "payout"}.get(type_, "other"),
        "source": source, "status": "pending", "type": type_,
    }
    st.put(t, account)
    return t["id"]


def available(st: State, account: Optional[str], currency: str) -> int:
    """The available balance of `account` (None = the platform's) in `currency`."""
    return sum(obj["net"] for obj, owner in st.scan()
               if obj.get("object") == "balance_transaction" and owner == account
               and obj["currency"] == currency and obj["available_on"] <= st.now())


def covers(st: State, account: Optional[str], amount: int, currency: str) -> bool:
    """Whether `account` can be debited `amount` now, as Stripe decides for a refund: from its
    available balance (pending funds do not count), or at once, whatever the balance, when Stripe
    may take a negative balance from the account's bank (`settings.payouts.debit_negative_balances`,
    the fake's default). The platform's own balance is not modelled: always covered."""
    if account is None or amount <= 0:
        return True
    acct = st.objects.get(account) or {}
    if acct.get("settings", {}).get("payouts", {}).get("debit_negative_balances", True):
        return True
    return available(st, account, currency) >= amount


def set_available(st: State, acct_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    """Control: make a connected account's available balance `amount` (an `adjustment`, available
    at once; 0 exhausts it), and optionally set `debit_negative_balances`. Its balance."""
    acct = st.objects.get(acct_id)
    if not acct or acct.get("object") != "account":
        raise missing("account", acct_id)
    currency = str(p.get("currency", "usd"))
    try:
        amount = int(p.get("amount", 0))
    except (TypeError, ValueError):
        raise invalid("amount must be an integer", param="amount")
    if "debit_negative_balances" in p:
        if not isinstance(p["debit_negative_balances"], bool):
            raise invalid("debit_negative_balances must be true or false", param="debit_negative_balances")
        acct["settings"]["payouts"]["debit_negative_balances"] = p["debit_negative_balances"]
    difference = amount - available(st, acct_id, currency)
    if difference:
        transaction(st, difference, currency, "adjustment", acct_id, acct_id, description="balance set by the test",
                    available_now=True)
    return retrieve(st, Ctx(account=acct_id), {})


def retrieve(st: State, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
    """GET /v1/balance of the caller's account (`Stripe-Account`, or the platform): the net of its
    balance transactions by currency, available once `available_on` has passed, else pending."""
    check_unknown(p, ())
    available: Dict[str, int] = {}
    pending: Dict[str, int] = {}
    for obj, account in st.scan():
        if obj.get("object") != "balance_transaction" or account != ctx.account:
            continue
        bucket = available if obj["available_on"] <= st.now() else pending
        bucket[obj["currency"]] = bucket.get(obj["currency"], 0) + obj["net"]
    currencies = sorted(set(available) | set(pending)) or ["usd"]

    def amounts(bucket: Dict[str, int]) -> list:
        return [{"amount": bucket.get(c, 0), "currency": c, "source_types": {"card": bucket.get(c, 0)}}
                for c in currencies]
    return {"object": "balance", "available": amounts(available), "pending": amounts(pending),
            "livemode": False}


def simulate_payout(st: State, acct_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    """Control: a payout of a connected account, paid or failed at once."""
    acct = st.objects.get(acct_id)
    if not acct or acct.get("object") != "account":
        raise missing("account", acct_id)
    status = p.get("status", "paid")
    if status not in ("paid", "failed"):
        raise invalid("status must be paid or failed", param="status")
    amount = int(p.get("amount", 1000))
    po = {"id": new_id("po"), "object": "payout", "amount": amount,
          "arrival_date": st.now() + 86400, "automatic": True,
          "balance_transaction": None, "created": st.now(),
          "currency": p.get("currency", "usd"), "description": "STRIPE PAYOUT",
          "destination": new_id("ba"), "failure_balance_transaction": None,
          "failure_code": None, "failure_message": None, "livemode": False,
          "metadata": {}, "method": "standard", "reconciliation_status": "not_applicable",
          "source_type": "card", "statement_descriptor": None, "status": "pending",
          "type": "bank_account"}
    po["balance_transaction"] = transaction(st, -amount, po["currency"], "payout", po["id"],
                                            acct_id)
    st.put(po, acct_id)
    events.emit(st, "payout.created", po, None, acct_id)
    prev = {"status": "pending"}
    if status == "paid":
        po["status"] = "paid"
        events.emit(st, "payout.paid", po, None, acct_id, prev)
    else:
        po["status"] = "failed"
        po["failure_code"] = p.get("failure_code", "account_closed")
        po["failure_message"] = "The bank account has been closed."
        events.emit(st, "payout.failed", po, None, acct_id, prev)
    return po


def list_payouts(st: State, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
    """GET /v1/payouts of the caller's account (`Stripe-Account`), newest first."""
    return st.list_objects(ctx, p, "payout", "/v1/payouts", filters=("status",))
