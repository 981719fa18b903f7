"""Webhook endpoints (`we_`): the objects `payments stripe endpoints setup` creates and `check`
reads (`/v1/webhook_endpoints`), in Stripe's shape: `url`, `api_version`, `enabled_events`,
`status`, `metadata`, `description`, and the signing `secret`, returned by the create call only.

`connect` is a create-only parameter that Stripe's documented object does not carry: the fake
keeps it (as `_connect`, hidden from API answers) for the control API (`/_control/
webhook_endpoints`) to show. These objects are bookkeeping only: which URLs the fake delivers
events to is set when it starts (webhooks.py).
"""
from __future__ import annotations

import re
from typing import Any, Dict, List

from .errors import invalid, missing
from .state import Ctx, State
from .util import apply_metadata, check_unknown, get_bool, get_list, get_str, new_id, paginate, rand

API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")


def _url(p: Dict[str, Any], required: bool) -> Any:
    url = get_str(p, "url", required=required)
    if url is not None and not re.match(r"^https?://[^/\s]+", url):
        raise invalid("Invalid URL: URL must be publicly accessible and use http(s).", param="url",
                      code="url_invalid")
    return url


def _events(p: Dict[str, Any], required: bool) -> Any:
    if "enabled_events" not in p:
        if required:
            raise invalid("Missing required param: enabled_events.", param="enabled_events",
                          code="parameter_missing")
        return None
    events = get_list(p, "enabled_events")
    if not events or not all(isinstance(e, str) and e for e in events):
        raise invalid("Invalid array: enabled_events must list event types.",
                      param="enabled_events")
    return list(dict.fromkeys(events))


def _get(st: State, ctx: Ctx, we_id: str) -> Dict[str, Any]:
    we = st.get(we_id, ctx, "webhook_endpoint")
    if we.get("_deleted"):
        raise missing("webhook_endpoint", we_id)
    return we


def create(st: State, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ("url", "enabled_events", "api_version", "connect", "description",
                      "metadata"))
    url = _url(p, required=True)
    events = _events(p, required=True)
    version = get_str(p, "api_version")
    if version is not None and not API_VERSION.match(version):
        raise invalid(f"Invalid API version: {version}", param="api_version")
    we = {"id": new_id("we"), "object": "webhook_endpoint", "api_version": version,
          "application": None, "created": st.now(), "description": get_str(p, "description"),
          "enabled_events": events, "livemode": False, "metadata": apply_metadata({}, p),
          "status": "enabled", "url": url, "_connect": bool(get_bool(p, "connect", False)),
          "_secret": "whsec_" + rand(32)}
    st.put(we, ctx.account)
    # Only this answer carries the secret.
    return {**we, "secret": we["_secret"]}


def retrieve(st: State, ctx: Ctx, we_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ())
    return _get(st, ctx, we_id)


def update(st: State, ctx: Ctx, we_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    """Stripe lets an endpoint change its url, events, description, metadata and `disabled`;
    not its api_version or connect flag."""
    check_unknown(p, ("url", "enabled_events", "description", "disabled", "metadata"))
    we = _get(st, ctx, we_id)
    url = _url(p, required=False)
    events = _events(p, required=False)
    if url is not None:
        we["url"] = url
    if events is not None:
        we["enabled_events"] = events
    if "description" in p:
        we["description"] = get_str(p, "description") or None
    disabled = get_bool(p, "disabled")
    if disabled is not None:
        we["status"] = "disabled" if disabled else "enabled"
    we["metadata"] = apply_metadata(we["metadata"], p)
    st.put(we, st.scope[we_id])
    return we


def delete(st: State, ctx: Ctx, we_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ())
    we = _get(st, ctx, we_id)
    we["_deleted"] = True
    st.put(we, st.scope[we_id])
    return {"id": we_id, "object": "webhook_endpoint", "deleted": True}


def list_(st: State, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ("limit", "starting_after", "ending_before"))
    items = [o for o, account in st.scan() if o.get("object") == "webhook_endpoint"
             and account == ctx.account and not o.get("_deleted")]
    return paginate(items, p, "/v1/webhook_endpoints")


# ---- control (/_control/webhook_endpoints) -------------------------------------------------
def all_endpoints(st: State) -> List[Dict[str, Any]]:
    """Every live endpoint with what the API hides (`connect`, `secret`), oldest first."""
    out = []
    for o, _ in reversed(list(st.scan())):
        if o.get("object") == "webhook_endpoint" and not o.get("_deleted"):
            shown = st.clean(o)
            shown["connect"], shown["secret"] = o["_connect"], o["_secret"]
            out.append(shown)
    return out


def force(st: State, we_id: str, changes: Dict[str, Any]) -> Dict[str, Any]:
    """Control: set fields as Stripe's Dashboard or an upgrade might leave them (api_version,
    status, enabled_events, url, connect), bypassing the API's rules."""
    we = st.objects.get(we_id)
    if we is None or we.get("object") != "webhook_endpoint" or we.get("_deleted"):
        raise missing("webhook_endpoint", we_id)
    allowed = {"api_version", "status", "enabled_events", "url", "connect"}
    unknown = set(changes) - allowed
    if unknown:
        raise invalid(f"cannot force {', '.join(sorted(unknown))}")
    for key, value in changes.items():
        we["_connect" if key == "connect" else key] = value
    st.put(we, st.scope[we_id])
    return all_endpoints_by_id(st)[we_id]


def all_endpoints_by_id(st: State) -> Dict[str, Dict[str, Any]]:
    return {e["id"]: e for e in all_endpoints(st)}
