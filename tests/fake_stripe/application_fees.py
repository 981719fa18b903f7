"""Application fees (`fee_`) of destination and direct charges, and their refunds (`fr_`).
The fee object always belongs to the platform; `account` names the connected account it came from."""
from __future__ import annotations

from typing import Any, Dict, Optional

from . import balance, events
from .state import PLATFORM_APPLICATION, Ctx, State
from .util import deep, new_id


def create_for_charge(st: State, ctx: Ctx, ch: Dict[str, Any], dest: str, app_fee: int,
                      account: Optional[str]) -> str:
    """The platform's fee on a captured destination or direct charge, kept in `account`'s scope
    (the platform's: None) (emits application_fee.created); its id."""
    fee_obj = {
        "id": new_id("fee"), "object": "application_fee", "account": dest,
        "amount": app_fee, "amount_refunded": 0, "application": PLATFORM_APPLICATION,
        "balance_transaction": None, "charge": ch["id"], "created": st.now(),
        "currency": ch["currency"], "fee_source": {"charge": ch["id"], "type": "charge"},
        "livemode": False, "originating_transaction": ch["id"], "refunded": False,
        "refunds": {"object": "list", "data": [], "has_more": False,
                    "total_count": 0, "url": ""},
    }
    fee_obj["refunds"]["url"] = f"/v1/application_fees/{fee_obj['id']}/refunds"
    fee_obj["balance_transaction"] = balance.transaction(st, app_fee, ch["currency"],
                                                         "application_fee", fee_obj["id"],
                                                         account)
    st.put(fee_obj, account)
    events.emit(st, "application_fee.created", fee_obj, ctx, account)
    return fee_obj["id"]


def refund(st: State, ctx: Ctx, fee_obj: Dict[str, Any], amount: int,
           account: Optional[str]) -> None:
    """Refund `amount` of an application fee (a `fr_`; emits application_fee.refunded)."""
    fr = {"id": new_id("fr"), "object": "fee_refund", "amount": amount,
          "balance_transaction": None, "created": st.now(),
          "currency": fee_obj["currency"], "fee": fee_obj["id"], "metadata": {}}
    fr["balance_transaction"] = balance.transaction(st, -amount, fee_obj["currency"],
                                                    "application_fee_refund", fr["id"], account)
    st.put(fr, account)
    payer = st.scope.get(fee_obj["originating_transaction"])
    if payer:  # a direct charge's fee came from the connected account's balance: it goes back there
        balance.transaction(st, amount, fee_obj["currency"], "application_fee_refund", fr["id"], payer,
                            available_now=True)
    fee_obj["amount_refunded"] += amount
    fee_obj["refunded"] = fee_obj["amount_refunded"] >= fee_obj["amount"]
    fee_obj["refunds"]["data"].insert(0, deep(fr))
    fee_obj["refunds"]["total_count"] += 1
    events.emit(st, "application_fee.refunded", fee_obj, ctx, account)
