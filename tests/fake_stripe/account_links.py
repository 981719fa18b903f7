"""Onboarding of connected accounts: account links and the hosted onboarding page behind
them, Express login links, and the control calls that change verification state
(`complete_onboarding`, `update`)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from . import accounts, events
from .errors import invalid, missing, param_missing, state_error
from .state import Ctx, State
from .util import check_unknown, deep, get_str, rand


def create_link(st: State, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ("account", "refresh_url", "return_url", "type", "collect",
                      "collection_options"))
    acct_id = get_str(p, "account", required=True)
    type_ = get_str(p, "type", required=True, choices=("account_onboarding",
                                                       "account_update"))
    refresh = get_str(p, "refresh_url")
    ret = get_str(p, "return_url")
    if type_ == "account_onboarding":
        if not refresh:
            raise param_missing("refresh_url")
        if not ret:
            raise param_missing("return_url")
    accounts.check_access(st, acct_id)
    acct = st.objects.get(acct_id)
    if acct is None or acct.get("object") != "account":
        raise invalid(f"No such account: '{acct_id}'", param="account",
                      code="resource_missing")
    if type_ == "account_update" and acct["type"] == "express":
        raise invalid("You cannot create `account_update` type Account Links for Express "
                      "accounts.", param="type")
    token = rand(32)
    now = st.now()
    url = f"{st.public_url()}/setup/e/{acct_id}/{token}"
    st.links[token] = {"account": acct_id, "refresh_url": refresh, "return_url": ret,
                       "type": type_, "created": now,
                       "expires_at": now + st.account_link_ttl, "used": False, "url": url}
    return {"object": "account_link", "created": now,
            "expires_at": now + st.account_link_ttl, "url": url}


def create_login_link(st: State, ctx: Ctx, acct_id: str, p: Dict[str, Any]
                      ) -> Dict[str, Any]:
    check_unknown(p, ("redirect_url",))
    accounts.check_access(st, acct_id)
    acct = st.objects.get(acct_id)
    if acct is None or acct.get("object") != "account":
        raise missing("account", acct_id, param="account")
    if acct["type"] != "express":
        raise state_error("Login links can only be created for Express accounts.",
                          code=None, param="account")
    if not acct["details_submitted"]:
        raise state_error("Cannot create a login link for an account that has not "
                          "completed onboarding.", code=None, param="account")
    token = rand(32)
    url = f"{st.public_url()}/express/{acct_id}/{token}"
    st.login_links[token] = {"account": acct_id, "created": st.now()}
    return {"object": "login_link", "created": st.now(), "url": url}


def open_link(st: State, token: str) -> Tuple[str, Optional[str], Dict[str, Any]]:
    """GET of an account link URL -> ("page", session, link) | ("redirect", url, link)
    | ("missing", None, {})."""
    link = st.links.get(token)
    if link is None:
        return "missing", None, {}
    if link["used"] or st.now() >= link["expires_at"]:
        return "redirect", link["refresh_url"], link
    link["used"] = True
    session = rand(32)
    st.sessions[session] = {"token": token, "account": link["account"], "done": False}
    return "page", session, link


def submit(st: State, token: str, session: str, action: str) -> Tuple[str, Optional[str]]:
    """POST of the page's form -> ("done", return_url) | ("redirect", refresh_url)
    | ("missing", None). `complete` finishes onboarding; `later` changes nothing."""
    link = st.links.get(token)
    if link is None:
        return "missing", None
    s = st.sessions.get(session)
    if s is None or s["token"] != token or s["done"]:
        return "redirect", link["refresh_url"]
    s["done"] = True
    if action == "complete":
        complete_onboarding(st, link["account"])
    return "done", link["return_url"]


def complete_onboarding(st: State, acct_id: str, ctx: Optional[Ctx] = None
                        ) -> Dict[str, Any]:
    """The Complete button (or its control call): verified, capabilities active."""
    acct = st.objects.get(acct_id)
    if not acct or acct.get("object") != "account":
        raise missing("account", acct_id)
    prev = {k: deep(acct[k]) for k in ("capabilities", "charges_enabled",
                                       "details_submitted", "payouts_enabled",
                                       "requirements", "tos_acceptance")}
    acct["details_submitted"] = True
    acct["charges_enabled"] = True
    acct["payouts_enabled"] = True
    acct["capabilities"] = {k: "active" for k in (acct["capabilities"] or
                                                  {"card_payments": 1, "transfers": 1})}
    acct["requirements"] = {"alternatives": [], "current_deadline": None,
                            "currently_due": [], "disabled_reason": None, "errors": [],
                            "eventually_due": [], "past_due": [],
                            "pending_verification": []}
    acct["tos_acceptance"] = {"date": st.now(), "ip": "127.0.0.1",
                              "user_agent": "fake-stripe-onboarding"}
    if acct["business_type"] is None:
        acct["business_type"] = "individual"
    prev = {k: v for k, v in prev.items() if acct[k] != v}
    if prev:
        events.emit(st, "account.updated", acct, ctx, acct_id, prev)
    return acct


def set_state(st: State, acct_id: str, changes: Dict[str, Any],
              ctx: Optional[Ctx] = None) -> Dict[str, Any]:
    """Control: change onboarding/verification state and emit account.updated."""
    acct = st.objects.get(acct_id)
    if not acct or acct.get("object") != "account":
        raise missing("account", acct_id)
    prev: Dict[str, Any] = {}
    for k in ("charges_enabled", "payouts_enabled", "details_submitted"):
        if k in changes and acct[k] != bool(changes[k]):
            prev[k] = acct[k]
            acct[k] = bool(changes[k])
    if "requirements" in changes and isinstance(changes["requirements"], dict):
        prev["requirements"] = deep(acct["requirements"])
        acct["requirements"].update(changes["requirements"])
    if "disabled_reason" in changes:
        prev.setdefault("requirements", deep(acct["requirements"]))
        acct["requirements"]["disabled_reason"] = changes["disabled_reason"]
    if "capabilities" in changes and isinstance(changes["capabilities"], dict):
        prev["capabilities"] = deep(acct["capabilities"])
        acct["capabilities"].update(changes["capabilities"])
    if prev:
        events.emit(st, "account.updated", acct, ctx, acct_id, prev)
    return acct


def login_link(st: State, acct_id: str, token: str) -> Optional[Dict[str, Any]]:
    """The login link record behind an Express dashboard URL, if it is one of `acct_id`'s."""
    link = st.login_links.get(token)
    return link if link and link["account"] == acct_id else None


def list_links(st: State) -> List[Dict[str, Any]]:
    """Control: every account link, with its token."""
    return [dict(v, token=k) for k, v in st.links.items()]


def expire_links(st: State, url: Optional[str] = None, account: Optional[str] = None) -> int:
    """Control: expire the account links matching `url` and `account` (all if neither)."""
    n = 0
    for tok, link in st.links.items():
        if url in (None, link["url"]) and account in (None, link["account"]):
            link["expires_at"] = st.now() - 1
            n += 1
    return n
