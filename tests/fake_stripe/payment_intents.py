"""PaymentIntents: create, retrieve, update, confirm, capture, cancel, list, and the 3-D
Secure step (control). Charging the card is charges.py's job."""
from __future__ import annotations

from typing import Any, Dict

from . import accounts, charges, events, payment_methods
from .errors import invalid, missing, param_missing, state_error
from .state import Ctx, State
from .util import (apply_metadata, check_currency, check_unknown, deep, get_bool, get_dict,
                   get_int, get_list, get_str, new_id, rand)

PI_CANCELLABLE = ("requires_payment_method", "requires_capture", "requires_confirmation",
                  "requires_action", "processing")
PI_CONFIRMABLE = ("requires_confirmation", "requires_action", "requires_payment_method")
CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")

PI_CREATE_PARAMS = (
    "amount", "currency", "capture_method", "confirm", "payment_method", "metadata",
    "description", "transfer_data", "application_fee_amount", "on_behalf_of",
    "transfer_group", "automatic_payment_methods", "payment_method_types", "customer",
    "receipt_email", "statement_descriptor", "statement_descriptor_suffix",
    "confirmation_method", "setup_future_usage", "shipping", "return_url",
    "payment_method_options", "off_session", "error_on_requires_action", "mandate",
    "mandate_data", "use_stripe_sdk", "payment_method_data", "radar_options",
    "payment_method_configuration", "capture_before")


def create(st: State, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, PI_CREATE_PARAMS)
    amount = get_int(p, "amount", required=True)
    currency = check_currency(get_str(p, "currency"))
    check_amount(amount)
    capture_method = get_str(p, "capture_method",
                             choices=("automatic", "automatic_async", "manual")) or \
        "automatic_async"
    td = get_dict(p, "transfer_data", allowed=("destination", "amount"))
    fee = get_int(p, "application_fee_amount", minimum=0)
    on_behalf_of = get_str(p, "on_behalf_of")
    transfer_data = None
    if td is not None:
        dest = td.get("destination")
        if not dest:
            raise param_missing("transfer_data[destination]")
        accounts.check_transfer_destination(st, dest, "transfer_data[destination]")
        transfer_data = {"destination": dest}
        if td.get("amount") is not None:
            transfer_data["amount"] = get_int(td, "amount", minimum=0,
                                              label="transfer_data[amount]")
    if fee is not None:
        if transfer_data is None and ctx.account is None:
            raise invalid("Can only apply an application_fee_amount when the PaymentIntent "
                          "is attempting a direct payment (using an OAuth key or "
                          "Stripe-Account header) or destination payment (using "
                          "`transfer_data[destination]`).", param="application_fee_amount")
        if fee > amount:
            raise invalid("The application fee amount cannot be greater than the amount.",
                          param="application_fee_amount")
    if on_behalf_of is not None:
        if st.objects.get(on_behalf_of, {}).get("object") != "account":
            raise invalid(f"No such account: '{on_behalf_of}'", param="on_behalf_of",
                          code="resource_missing")
    apm = get_dict(p, "automatic_payment_methods", allowed=("enabled", "allow_redirects"))
    pmt = get_list(p, "payment_method_types")
    confirm = get_bool(p, "confirm", default=False)
    pm_name = get_str(p, "payment_method")
    metadata = apply_metadata({}, p)
    pi_id = new_id("pi")
    automatic_pm = None
    if apm is not None:
        automatic_pm = {"allow_redirects": apm.get("allow_redirects", "always"),
                        "enabled": get_bool(apm, "enabled", False,
                                            label="automatic_payment_methods[enabled]")}
    elif not pmt:
        automatic_pm = {"allow_redirects": "always", "enabled": True}
    pi = {
        "id": pi_id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
        "amount_details": {"tip": {}}, "amount_received": 0, "application": None,
        "application_fee_amount": fee, "automatic_payment_methods": automatic_pm,
        "canceled_at": None, "cancellation_reason": None, "capture_method": capture_method,
        "client_secret": f"{pi_id}_secret_{rand(25)}",
        "confirmation_method": get_str(p, "confirmation_method",
                                       choices=("automatic", "manual")) or "automatic",
        "created": st.now(), "currency": currency, "customer": get_str(p, "customer"),
        "description": get_str(p, "description"), "invoice": None,
        "last_payment_error": None, "latest_charge": None, "livemode": False,
        "metadata": metadata, "next_action": None, "on_behalf_of": on_behalf_of,
        "payment_method": None, "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"installments": None, "mandate_options": None,
                                            "network": None,
                                            "request_three_d_secure": "automatic"}},
        "payment_method_types": pmt or ["card"], "processing": None,
        "receipt_email": get_str(p, "receipt_email"), "review": None,
        "setup_future_usage": get_str(p, "setup_future_usage"), "shipping": None,
        "source": None, "statement_descriptor": get_str(p, "statement_descriptor"),
        "statement_descriptor_suffix": get_str(p, "statement_descriptor_suffix"),
        "status": "requires_payment_method", "transfer_data": transfer_data,
        "transfer_group": get_str(p, "transfer_group"),
    }
    pm = None
    if pm_name:
        pm = payment_methods.resolve(st, pm_name, ctx)
    st.put(pi, ctx.account)
    if pm:
        pi["payment_method"] = pm["id"]
        pi["status"] = "requires_confirmation"
    events.emit(st, "payment_intent.created", pi, ctx, ctx.account)
    if confirm:
        if not pm:
            raise state_error(
                "You cannot confirm this PaymentIntent because it's missing a payment "
                "method. You can either update the PaymentIntent with a payment method and "
                "then confirm it again, or confirm it again directly with a payment method.",
                code="payment_intent_unexpected_state")
        charges.attempt(st, pi, ctx)
    return pi


def check_amount(amount: int, param: str = "amount") -> None:
    if amount < 50:
        raise invalid("Amount must be at least $0.50 usd", param=param, code="amount_too_small")
    if amount > 99999999:
        raise invalid("Amount must be no more than $999,999.99", param=param,
                      code="amount_too_large")


def retrieve(st: State, ctx: Ctx, pi_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ("client_secret",))
    pi = st.get(pi_id, ctx, "payment_intent")
    if ctx.publishable and p.get("client_secret") != pi["client_secret"]:
        raise invalid("The client_secret provided does not match the client_secret "
                      "associated with the PaymentIntent.", param="client_secret")
    return pi


def update(st: State, ctx: Ctx, pi_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ("amount", "currency", "metadata", "description", "payment_method",
                      "application_fee_amount", "transfer_group", "receipt_email",
                      "statement_descriptor", "statement_descriptor_suffix",
                      "transfer_data", "capture_method", "setup_future_usage", "shipping",
                      "customer", "payment_method_types", "payment_method_options"))
    pi = st.get(pi_id, ctx, "payment_intent")
    amount = get_int(p, "amount")
    money_fields = ("amount", "currency", "payment_method", "capture_method",
                    "application_fee_amount", "transfer_data")
    if any(f in p for f in money_fields) and pi["status"] not in (
            "requires_payment_method", "requires_confirmation", "requires_action"):
        if not (set(p) <= {"application_fee_amount", "metadata", "description",
                           "transfer_group", "expand"} and pi["status"] == "requires_capture"):
            raise state_error(
                f"This PaymentIntent's {next(f for f in money_fields if f in p)} could not "
                f"be updated because it has a status of {pi['status']}. You may only "
                f"update the {next(f for f in money_fields if f in p)} of a PaymentIntent "
                f"with one of the following statuses: requires_payment_method, "
                f"requires_confirmation, requires_action.",
                code="payment_intent_unexpected_state")
    prev: Dict[str, Any] = {}

    def setf(k: str, v: Any) -> None:
        if pi.get(k) != v:
            prev[k] = deep(pi.get(k))
            pi[k] = v
    if amount is not None:
        check_amount(amount)
        setf("amount", amount)
    if "currency" in p:
        setf("currency", check_currency(get_str(p, "currency")))
    if "application_fee_amount" in p:
        setf("application_fee_amount", get_int(p, "application_fee_amount", minimum=0))
    for f in ("description", "transfer_group", "receipt_email", "statement_descriptor",
              "statement_descriptor_suffix", "customer"):
        if f in p:
            setf(f, get_str(p, f) or None)
    if "metadata" in p:
        setf("metadata", apply_metadata(pi["metadata"], p))
    if "payment_method" in p:
        pm = payment_methods.resolve(st, get_str(p, "payment_method", required=True), ctx)
        setf("payment_method", pm["id"])
        if pi["status"] == "requires_payment_method":
            setf("status", "requires_confirmation")
    if prev:
        events.emit(st, "payment_intent.updated", pi, ctx, ctx.account, prev)
    return pi


def confirm(st: State, ctx: Ctx, pi_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ("payment_method", "return_url", "client_secret", "receipt_email",
                      "setup_future_usage", "shipping", "payment_method_options",
                      "payment_method_data", "off_session", "error_on_requires_action",
                      "mandate", "mandate_data", "use_stripe_sdk", "capture_method",
                      "payment_method_types", "radar_options"))
    pi = st.get(pi_id, ctx, "payment_intent")
    if ctx.publishable and p.get("client_secret") != pi["client_secret"]:
        raise invalid("The client_secret provided does not match the client_secret "
                      "associated with the PaymentIntent.", param="client_secret")
    if pi["status"] not in PI_CONFIRMABLE:
        raise state_error(
            f"You cannot confirm this PaymentIntent because it has a status of "
            f"{pi['status']}. Only a PaymentIntent with one of the following statuses may "
            f"be confirmed: requires_confirmation, requires_action, requires_payment_method.",
            code="payment_intent_unexpected_state")
    pm_name = get_str(p, "payment_method")
    if pm_name:
        pm = payment_methods.resolve(st, pm_name, ctx)
        pi["payment_method"] = pm["id"]
    if not pi["payment_method"]:
        raise state_error(
            "You cannot confirm this PaymentIntent because it's missing a payment method. "
            "You can either update the PaymentIntent with a payment method and then confirm "
            "it again, or confirm it again directly with a payment method.",
            code="payment_intent_unexpected_state")
    if "capture_method" in p:
        pi["capture_method"] = get_str(p, "capture_method",
                                       choices=("automatic", "automatic_async", "manual"))
    charges.attempt(st, pi, ctx)
    return pi


def capture(st: State, ctx: Ctx, pi_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ("amount_to_capture", "application_fee_amount", "metadata",
                      "statement_descriptor", "statement_descriptor_suffix",
                      "transfer_data", "final_capture"))
    pi = st.get(pi_id, ctx, "payment_intent")
    atc = get_int(p, "amount_to_capture", minimum=0)
    fee = get_int(p, "application_fee_amount", minimum=0)
    if pi["status"] != "requires_capture":
        raise state_error(
            f"This PaymentIntent could not be captured because it has a status of "
            f"{pi['status']}. Only a PaymentIntent with one of the following statuses may be "
            f"captured: requires_capture.", code="payment_intent_unexpected_state")
    if atc is None:
        atc = pi["amount_capturable"]
    if atc > pi["amount_capturable"]:
        raise invalid(f"The amount_to_capture ({atc}) must be less than or equal to the "
                      f"PaymentIntent's amount_capturable ({pi['amount_capturable']}).",
                      param="amount_to_capture", code="amount_too_large")
    if atc < 50:
        raise invalid("Amount must be at least $0.50 usd", param="amount_to_capture",
                      code="amount_too_small")
    if fee is not None:
        if fee > atc:
            raise invalid("The application fee amount cannot be greater than the amount "
                          "captured.", param="application_fee_amount")
        pi["application_fee_amount"] = fee
    pi["metadata"] = apply_metadata(pi["metadata"], p)
    charges.capture(st, pi, atc, ctx)
    pi["amount_capturable"] = 0
    pi["amount_received"] = atc
    pi["status"] = "succeeded"
    events.emit(st, "payment_intent.succeeded", pi, ctx, st.scope[pi["id"]])
    return pi


def cancel(st: State, ctx: Ctx, pi_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
    check_unknown(p, ("cancellation_reason",))
    pi = st.get(pi_id, ctx, "payment_intent")
    reason = get_str(p, "cancellation_reason", choices=CANCELLATION_REASONS)
    if pi["status"] not in PI_CANCELLABLE:
        raise state_error(
            f"You cannot cancel this PaymentIntent because it has a status of "
            f"{pi['status']}. Only a PaymentIntent with one of the following statuses may be "
            f"canceled: requires_payment_method, requires_capture, requires_confirmation, "
            f"requires_action, processing.", code="payment_intent_unexpected_state")
    account = st.scope[pi["id"]]
    was_capture = pi["status"] == "requires_capture"
    pi["status"] = "canceled"
    pi["canceled_at"] = st.now()
    pi["cancellation_reason"] = reason
    pi["amount_capturable"] = 0
    pi["next_action"] = None
    if was_capture and pi["latest_charge"]:
        charges.release(st, pi["latest_charge"], ctx)
    events.emit(st, "payment_intent.canceled", pi, ctx, account)
    return pi


def list_(st: State, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
    return st.list_objects(ctx, p, "payment_intent", "/v1/payment_intents",
                           accepted=("customer",))


def authenticate(st: State, pi_id: str, succeed: bool) -> Dict[str, Any]:
    """Control: finish (or fail) the 3-D Secure step the buyer does in the browser."""
    pi = st.objects.get(pi_id)
    if not pi or pi.get("object") != "payment_intent":
        raise missing("payment_intent", pi_id)
    if pi["status"] != "requires_action":
        raise state_error(f"PaymentIntent has status {pi['status']}, not requires_action",
                          code="payment_intent_unexpected_state")
    ctx = Ctx(account=st.scope[pi_id])
    if succeed:
        charges.attempt(st, pi, ctx, skip_3ds=True)
    else:
        pm = st.objects[pi["payment_method"]]
        pi["status"] = "requires_payment_method"
        pi["next_action"] = None
        pi["payment_method"] = None
        pi["last_payment_error"] = {
            "code": "payment_intent_authentication_failure",
            "doc_url": "https://stripe.com/docs/error-codes/"
                       "payment-intent-authentication-failure",
            "message": "We are unable to authenticate your payment method. Please choose a "
                       "different payment method and try again.",
            "payment_method": st.clean(pm), "type": "invalid_request_error"}
        events.emit(st, "payment_intent.payment_failed", pi, ctx, st.scope[pi_id])
    return pi
