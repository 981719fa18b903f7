"""Transfers (`tr_`) to connected accounts, made directly or by destination charges, and
their reversals (`trr_`)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from . import accounts, balance, events
from .errors import invalid, missing, state_error
from .state import Ctx, State
from .util import (apply_metadata, check_currency, check_unknown, deep, get_int, get_str,
                   new_id, paginate)


def new_transfer(st: State, ctx: Ctx, account: Optional[str], amount: int, currency: str,
                 destination: str, source_transaction: Optional[str],
                 transfer_group: Optional[str], metadata: Dict[str, str],
                 description: Optional[str] = None) -> Dict[str, Any]:
    """Make a transfer from `account`'s balance (None = the platform) (transfer.created)."""
    tr_id = new_id("tr")
    tr = {
        "id": tr_id, "object": "transfer", "amount": amount, "amount_reversed": 0,
        "balance_transaction": None, "created": st.now(), "currency": currency,
        "description": description, "destination": destination,
        "destination_payment": new_id("py"), "livemode": False, "metadata": metadata,
        "reversals": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                      "url": f"/v1/transfers/{tr_id}/reversals"},
        "reversed": False, "source_transaction": source_transaction,
        "source_type": "card", "transfer_group": transfer_group,
    }
    tr["balance_transaction"] = balance.transaction(st, -amount, currency, "transfer", tr_id,
                                                    account)
    # The destination receives it as a payment (`py_`) on its own balance.
    balance.transaction(st, amount, currency, "payment", tr["destination_payment"], destination)
    st.put(tr, account)
    events.emit(st, "transfer.created", tr, ctx, account)
    return tr


def create(st: State, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ("amount", "currency", "destination", "source_transaction",
                      "transfer_group", "metadata", "description", "source_type"))
    amount = get_int(p, "amount", required=True, minimum=1)
    currency = check_currency(get_str(p, "currency"))
    dest = get_str(p, "destination", required=True)
    src = get_str(p, "source_transaction")
    tg = get_str(p, "transfer_group")
    metadata = apply_metadata({}, p)
    accounts.check_access(st, dest)
    accounts.check_transfer_destination(st, dest, "destination")
    if src:
        ch = st.objects.get(src)
        if ch is None or ch.get("object") != "charge" or st.scope[src] != ctx.account:
            raise invalid(f"No such charge: '{src}'", param="source_transaction",
                          code="resource_missing")
        if ch["status"] != "succeeded" or not ch["captured"]:
            raise invalid("The source_transaction charge must be a succeeded, captured "
                          "charge.", param="source_transaction")
        if ch["currency"] != currency:
            raise invalid("The currency of source_transaction's balance transaction must "
                          "match the transfer currency.", param="currency")
        already = sum(t["amount"] - t["amount_reversed"] for t, _ in st.scan()
                      if t.get("object") == "transfer" and t["source_transaction"] == src)
        available = ch["amount_captured"] - (ch["amount_refunded"] -
                                             (ch["amount"] - ch["amount_captured"])) - already
        if amount > available:
            raise state_error(
                f"Insufficient funds in Stripe account. The transfer amount ({amount}) "
                f"exceeds the remaining amount available from source_transaction "
                f"{src} ({available}).", code="balance_insufficient", param="amount")
    return new_transfer(st, ctx, ctx.account, amount, currency, dest, src, tg, metadata,
                        get_str(p, "description"))


def retrieve(st: State, ctx: Ctx, tr_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ())
    return st.get(tr_id, ctx, "transfer")


def update(st: State, ctx: Ctx, tr_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ("metadata", "description"))
    tr = st.get(tr_id, ctx, "transfer")
    prev = {"metadata": deep(tr["metadata"])}
    tr["metadata"] = apply_metadata(tr["metadata"], p)
    if "description" in p:
        prev["description"] = tr["description"]
        tr["description"] = get_str(p, "description") or None
    events.emit(st, "transfer.updated", tr, ctx, st.scope[tr_id], prev)
    return tr


def list_(st: State, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
    return st.list_objects(ctx, p, "transfer", "/v1/transfers",
                           ("destination", "transfer_group"))


def reverse(st: State, ctx: Ctx, tr: Dict[str, Any], amount: int,
            metadata: Dict[str, str], account: Optional[str],
            source_refund: Optional[str] = None,
            description: Optional[str] = None) -> Dict[str, Any]:
    """Reverse `amount` of a transfer (a `trr_`; emits transfer.reversed)."""
    trr = {"id": new_id("trr"), "object": "transfer_reversal", "amount": amount,
           "balance_transaction": None, "created": st.now(), "currency": tr["currency"],
           "destination_payment_refund": new_id("pyr"), "metadata": metadata,
           "source_refund": source_refund, "transfer": tr["id"]}
    trr["balance_transaction"] = balance.transaction(st, amount, tr["currency"],
                                                     "transfer_refund", trr["id"], account)
    balance.transaction(st, -amount, tr["currency"], "payment_refund", trr["destination_payment_refund"],
                        tr["destination"])
    st.put(trr, account)
    tr["amount_reversed"] += amount
    tr["reversed"] = tr["amount_reversed"] >= tr["amount"]
    tr["reversals"]["data"].insert(0, deep(trr))
    tr["reversals"]["total_count"] += 1
    events.emit(st, "transfer.reversed", tr, ctx, account)
    return trr


def create_reversal(st: State, ctx: Ctx, tr_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ("amount", "metadata", "description", "refund_application_fee"))
    tr = st.get(tr_id, ctx, "transfer")
    amount = get_int(p, "amount", minimum=1)
    remaining = tr["amount"] - tr["amount_reversed"]
    if remaining <= 0:
        raise state_error(f"Transfer {tr_id} has already been fully reversed.",
                          code=None)
    if amount is None:
        amount = remaining
    if amount > remaining:
        raise state_error(
            f"Transfer reversal amount (${amount / 100:.2f}) is greater than the amount "
            f"remaining on the transfer (${remaining / 100:.2f}).", code="amount_too_large",
            param="amount")
    return reverse(st, ctx, tr, amount, apply_metadata({}, p), st.scope[tr_id],
                   description=get_str(p, "description"))


def list_reversals(st: State, ctx: Ctx, tr_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ("limit", "starting_after", "ending_before"))
    tr = st.get(tr_id, ctx, "transfer")
    items = [st.objects[r["id"]] for r in tr["reversals"]["data"]]
    return paginate(items, p, f"/v1/transfers/{tr_id}/reversals")


def retrieve_reversal(st: State, ctx: Ctx, tr_id: str, trr_id: str, p: Dict[str, Any]
                      ) -> Dict[str, Any]:
    check_unknown(p, ())
    st.get(tr_id, ctx, "transfer")
    trr = st.get(trr_id, ctx, "transfer_reversal")
    if trr["transfer"] != tr_id:
        raise missing("transfer_reversal", trr_id)
    return trr
