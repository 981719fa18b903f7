"""Events: recording them (`emit`, which every state change calls), `/v1/events`, and the
glue to webhook delivery (webhooks.py's Dispatcher sends what `emit` records)."""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

from .errors import invalid
from .state import Ctx, State
from .util import check_unknown, created_filter, deep, get_list, get_str, new_id, paginate


def emit(st: State, type_: str, obj: Dict[str, Any], ctx: Optional[Ctx],
         account: Optional[str] = None, previous: Optional[Dict[str, Any]] = None,
         deliver: bool = True) -> Dict[str, Any]:
    """Record the event Stripe would send for a change of `obj` (events with `account` go to
    the Connect endpoint), serialise it once, and pass it on for delivery (unless not to)."""
    data: Dict[str, Any] = {"object": st.clean(deep(obj))}
    if previous:
        data["previous_attributes"] = deep(previous)
    evt: Dict[str, Any] = {
        "id": new_id("evt"),
        "object": "event",
    }
    if account:
        evt["account"] = account
    evt.update({
        "api_version": st.api_version,
        "created": st.now(),
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": ctx.request_id if ctx else None,
                    "idempotency_key": ctx.idempotency_key if ctx else None},
        "type": type_,
    })
    st.put(evt, account)
    body = json.dumps(evt, indent=2).encode("utf-8")
    st.event_bodies[evt["id"]] = body
    if deliver:
        st.on_event(evt, body)
    return evt


def retrieve(st: State, ctx: Ctx, evt_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ())
    return st.get(evt_id, ctx, "event")


def list_(st: State, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ("limit", "starting_after", "ending_before", "created", "type",
                      "types", "delivery_success"))
    cf = created_filter(p)
    type_ = get_str(p, "type")
    types = get_list(p, "types")
    if type_ and types:
        raise invalid("You may only specify one of these parameters: type, types.",
                      param="type")

    def tmatch(t: str) -> bool:
        pats = types or ([type_] if type_ else [])
        if not pats:
            return True
        for pat in pats:
            if pat.endswith("*") and t.startswith(pat[:-1]):
                return True
            if pat == t:
                return True
        return False
    items = [o for o, account in st.scan()
             if o.get("object") == "event" and account == ctx.account
             and cf(o["created"]) and tmatch(o["type"])]
    return paginate(items, p, "/v1/events")


def emit_custom(st: State, type_: str, obj: Dict[str, Any], account: Optional[str],
                listed_under: Any = False) -> Dict[str, Any]:
    """Control: record an arbitrary event (and deliver it). With `listed_under` (an account id,
    or None for the platform) the event is not delivered but listed by the Events API to that
    account while its body still says `account`: a fault, to see that a reader of one
    account's events checks each event's own `account`."""
    if listed_under is False:
        return emit(st, type_, obj, None, account)
    evt = emit(st, type_, obj, None, account, deliver=False)
    st.put(evt, listed_under)
    return evt


# ---- webhook delivery glue (webhooks.py) ---------------------------------------------
def connect(st: State, dispatcher: Any) -> None:
    """Hand every recorded event to `dispatcher` and let `pending_webhooks` show its queue."""
    st.on_event = lambda evt, body: dispatcher.enqueue(evt, body)
    st.pending_webhooks = dispatcher.pending_count


def stored(st: State, evt_id: str) -> Optional[Tuple[Dict[str, Any], bytes]]:
    """An event (a copy) and the exact bytes delivered for it, to redeliver; None if unknown."""
    evt = st.objects.get(evt_id)
    if not evt or evt.get("object") != "event":
        return None
    return deep(evt), st.event_bodies[evt_id]


def history(st: State, type_: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every event (copies), oldest first, optionally of one type."""
    oldest_first = [st.objects.peek(i) for i in st.order]
    return [deep(o) for o in oldest_first
            if o.get("object") == "event" and (type_ is None or o["type"] == type_)]
