"""Connected accounts: create, retrieve (also the platform's own, `GET /v1/account`), update,
list, deauthorization, and the checks other resources make on an account (access, transfer
destination). Onboarding is in account_links.py."""
from __future__ import annotations

from typing import Any, Dict, Optional

from . import events
from .errors import StripeError, invalid, missing
from .state import PLATFORM_APPLICATION, Ctx, State
from .util import (apply_metadata, check_unknown, created_filter, deep, get_bool, get_dict,
                   get_int, get_str, new_id, paginate)

EXPRESS_REQUIREMENTS = ["business_profile.mcc", "business_profile.url", "business_type",
                        "external_account", "representative.first_name",
                        "representative.last_name", "tos_acceptance.date",
                        "tos_acceptance.ip"]
ACCOUNT_PARAMS = ("type", "country", "email", "capabilities", "settings", "metadata",
                  "business_type", "business_profile", "controller", "default_currency",
                  "tos_acceptance", "individual", "company", "external_account",
                  "account_token", "documents")


def create(st: State, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ACCOUNT_PARAMS)
    if ctx.account:
        raise invalid("You cannot create connected accounts on behalf of a connected "
                      "account (remove the Stripe-Account header).", param="type")
    type_ = get_str(p, "type", choices=("custom", "express", "standard"))
    if type_ is None and p.get("controller") is None:
        raise invalid("You must provide either `type` or `controller` when creating an "
                      "account.", param="type", code="parameter_missing")
    type_ = type_ or "none"
    country = (get_str(p, "country") or "US").upper()
    now = st.now()
    acct_id = new_id("acct", 16)
    caps = get_dict(p, "capabilities") or {}
    capabilities = {}
    for name, spec in caps.items():
        if not isinstance(spec, dict):
            raise invalid("Invalid hash", param=f"capabilities[{name}]")
        if get_bool(spec, "requested", False, label=f"capabilities[{name}][requested]"):
            capabilities[name] = "inactive"
    schedule = {"delay_days": 2, "interval": "daily"}
    settings_in = get_dict(p, "settings") or {}
    _apply_payout_settings(schedule, settings_in)
    acct = {
        "id": acct_id, "object": "account",
        "business_profile": {"annual_revenue": None, "estimated_worker_count": None,
                             "mcc": None, "name": None, "product_description": None,
                             "support_address": None, "support_email": None,
                             "support_phone": None, "support_url": None, "url": None},
        "business_type": get_str(p, "business_type"), "capabilities": capabilities,
        "charges_enabled": False,
        "controller": {"fees": {"payer": "application"}, "is_controller": True,
                       "losses": {"payments": "application"},
                       "requirement_collection": "stripe",
                       "stripe_dashboard": {"type": "express"}, "type": "application"},
        "country": country, "created": now,
        "default_currency": (get_str(p, "default_currency") or "usd").lower(),
        "details_submitted": False, "email": get_str(p, "email"),
        "external_accounts": {"object": "list", "data": [], "has_more": False,
                              "total_count": 0,
                              "url": f"/v1/accounts/{acct_id}/external_accounts"},
        "future_requirements": {"alternatives": [], "current_deadline": None,
                                "currently_due": [], "disabled_reason": None, "errors": [],
                                "eventually_due": [], "past_due": [],
                                "pending_verification": []},
        "login_links": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                        "url": f"/v1/accounts/{acct_id}/login_links"},
        "metadata": apply_metadata({}, p), "payouts_enabled": False,
        "requirements": {"alternatives": [], "current_deadline": None,
                         "currently_due": list(EXPRESS_REQUIREMENTS),
                         "disabled_reason": "requirements.past_due", "errors": [],
                         "eventually_due": list(EXPRESS_REQUIREMENTS),
                         "past_due": list(EXPRESS_REQUIREMENTS),
                         "pending_verification": []},
        "settings": {
            "bacs_debit_payments": {"display_name": None, "service_user_number": None},
            "branding": {"icon": None, "logo": None, "primary_color": None,
                         "secondary_color": None},
            "card_issuing": {"tos_acceptance": {"date": None, "ip": None}},
            "card_payments": {"decline_on": {"avs_failure": False, "cvc_failure": False},
                              "statement_descriptor_prefix": None,
                              "statement_descriptor_prefix_kana": None,
                              "statement_descriptor_prefix_kanji": None},
            "dashboard": {"display_name": None, "timezone": "Etc/UTC"},
            "invoices": {"default_account_tax_ids": None},
            "payments": {"statement_descriptor": None,
                         "statement_descriptor_kana": None,
                         "statement_descriptor_kanji": None},
            "payouts": {"debit_negative_balances": True, "schedule": schedule,
                        "statement_descriptor": None},
            "sepa_debit_payments": {}},
        "tos_acceptance": {"date": None, "ip": None, "user_agent": None},
        "type": type_,
    }
    bp = get_dict(p, "business_profile")
    if bp:
        for k, v in bp.items():
            if k in acct["business_profile"]:
                acct["business_profile"][k] = v
    st.put(acct, None)
    return acct


def _apply_payout_settings(schedule: Dict[str, Any], settings_in: Dict[str, Any]
                           ) -> None:
    payouts = settings_in.get("payouts") if isinstance(settings_in, dict) else None
    if not payouts:
        return
    if not isinstance(payouts, dict):
        raise invalid("Invalid hash", param="settings[payouts]")
    sch = payouts.get("schedule")
    if sch is None:
        return
    if not isinstance(sch, dict):
        raise invalid("Invalid hash", param="settings[payouts][schedule]")
    for k in sch:
        if k not in ("delay_days", "interval", "monthly_anchor", "weekly_anchor"):
            raise invalid(f"Received unknown parameter: settings[payouts][schedule][{k}]",
                          param=f"settings[payouts][schedule][{k}]",
                          code="parameter_unknown")
    if "delay_days" in sch:
        if sch["delay_days"] == "minimum":
            schedule["delay_days"] = 2
        else:
            dd = get_int(sch, "delay_days", label="settings[payouts][schedule][delay_days]")
            if dd < 2 or dd > 365:
                raise invalid("The delay_days must be between 2 and 365 (or `minimum`).",
                              param="settings[payouts][schedule][delay_days]")
            schedule["delay_days"] = dd
    if "interval" in sch:
        schedule["interval"] = get_str(sch, "interval",
                                       choices=("daily", "manual", "monthly", "weekly"),
                                       label="settings[payouts][schedule][interval]")
    for a in ("monthly_anchor", "weekly_anchor"):
        if a in sch:
            schedule[a] = sch[a] if a == "weekly_anchor" else int(sch[a])


def check_access(st: State, acct_id: str) -> None:
    """A deauthorized account is off limits (403 account_invalid)."""
    if acct_id in st.deauthorized:
        raise StripeError(403, "invalid_request_error",
                          f"The provided key does not have access to account '{acct_id}' "
                          f"(or that account does not exist). Application access may have "
                          f"been revoked.", code="account_invalid", store=False)


def retrieve(st: State, ctx: Ctx, acct_id: Optional[str], p: Dict[str, Any]
             ) -> Dict[str, Any]:
    check_unknown(p, ())
    if acct_id is None:
        if ctx.account is None:
            return platform_account()
        acct_id = ctx.account
    check_access(st, acct_id)
    acct = st.objects.get(acct_id)
    if acct is None or acct.get("object") != "account":
        raise StripeError(404, "invalid_request_error", f"No such account: '{acct_id}'",
                          code="resource_missing", param="account", store=False)
    return acct


def platform_account() -> Dict[str, Any]:
    """`GET /v1/account` without Stripe-Account: the platform's own account."""
    return {"id": "acct_FakePlatform0001", "object": "account",
            "business_profile": {"name": "Fake Platform", "url": None},
            "charges_enabled": True, "country": "US", "default_currency": "usd",
            "details_submitted": True, "email": "platform@example.test",
            "payouts_enabled": True, "settings": {"dashboard": {"display_name":
                                                                "Fake Platform"}},
            "type": "standard"}


def update(st: State, ctx: Ctx, acct_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, tuple(x for x in ACCOUNT_PARAMS if x not in ("type", "country",
                                                                  "controller")))
    check_access(st, acct_id)
    acct = retrieve(st, ctx, acct_id, {})
    prev: Dict[str, Any] = {}
    if "metadata" in p:
        new = apply_metadata(acct["metadata"], p)
        if new != acct["metadata"]:
            prev["metadata"] = deep(acct["metadata"])
            acct["metadata"] = new
    if "email" in p:
        e = get_str(p, "email") or None
        if e != acct["email"]:
            prev["email"] = acct["email"]
            acct["email"] = e
    if "business_type" in p:
        prev["business_type"] = acct["business_type"]
        acct["business_type"] = get_str(p, "business_type") or None
    caps = get_dict(p, "capabilities")
    if caps:
        before = deep(acct["capabilities"])
        for name, spec in caps.items():
            req = get_bool(spec if isinstance(spec, dict) else {}, "requested", None,
                           label=f"capabilities[{name}][requested]")
            if req and name not in acct["capabilities"]:
                acct["capabilities"][name] = ("active" if acct["details_submitted"]
                                              else "inactive")
            elif req is False:
                acct["capabilities"].pop(name, None)
        if before != acct["capabilities"]:
            prev["capabilities"] = before
    settings_in = get_dict(p, "settings")
    if settings_in:
        before = deep(acct["settings"]["payouts"])
        _apply_payout_settings(acct["settings"]["payouts"]["schedule"], settings_in)
        if before != acct["settings"]["payouts"]:
            prev["settings"] = {"payouts": before}
    bp = get_dict(p, "business_profile")
    if bp:
        before = deep(acct["business_profile"])
        for k, v in bp.items():
            if k in acct["business_profile"]:
                acct["business_profile"][k] = v or None
        if before != acct["business_profile"]:
            prev["business_profile"] = before
    if prev:
        events.emit(st, "account.updated", acct, ctx, acct["id"], prev)
    return acct


def list_(st: State, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ("limit", "starting_after", "ending_before", "created"))
    cf = created_filter(p)
    items = [o for o, _ in st.scan()
             if o.get("object") == "account" and cf(o["created"])
             and o["id"] not in st.deauthorized]
    return paginate(items, p, "/v1/accounts")


def deauthorize(st: State, acct_id: str) -> Dict[str, Any]:
    """Control: the account disconnects the platform (account.application.deauthorized)."""
    acct = st.objects.get(acct_id)
    if not acct or acct.get("object") != "account":
        raise missing("account", acct_id)
    app = {"id": PLATFORM_APPLICATION, "object": "application", "name": "Fake Platform"}
    st.deauthorized.add(acct_id)
    return events.emit(st, "account.application.deauthorized", app, None, acct_id)


def is_usable(st: State, acct_id: str) -> bool:
    """May requests act on this connected account (`Stripe-Account`)? Reads only."""
    a = st.objects.peek(acct_id)
    return a is not None and a.get("object") == "account" and acct_id not in st.deauthorized


def check_transfer_destination(st: State, dest: str, param: str) -> None:
    """`dest` must be an account whose transfers capability is active."""
    acct = st.objects.get(dest)
    if acct is None or acct.get("object") != "account":
        raise invalid(f"No such destination: '{dest}'", param=param, code="resource_missing")
    if acct.get("capabilities", {}).get("transfers") != "active":
        raise invalid("Your destination account needs to have at least one of the following "
                      "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                      param=param, code="insufficient_capabilities_for_transfer")


def retrieve_own(st: State, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
    """`GET /v1/account`: the caller's account (the platform's, or `Stripe-Account`'s)."""
    return retrieve(st, ctx, None, p)
