"""The fake's Stripe state: objects, state machines, events.

Everything here runs under `Core.lock` (one RLock): handlers are short and in memory, so a
single lock gives linearizable behaviour, like one Stripe account's object locks would.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from .errors import (StripeError, card_error, invalid, missing, param_missing, state_error)
from .persist import TrackedDict
from .util import (apply_metadata, check_currency, check_unknown, created_filter, deep,
                   get_bool, get_dict, get_int, get_list, get_str, new_id, paginate, rand)

DEFAULT_API_VERSION = "2024-06-20"
PLATFORM_APPLICATION = "ca_FakePlatformApplication0001"

# ---- test payment methods ------------------------------------------------------------
# name -> (brand, last4, funding, outcome); outcome: "ok", "decline:<decline_code>",
# "3ds" (requires_action), "dispute" (succeeds, then a fraudulent dispute is opened)
TEST_PAYMENT_METHODS: Dict[str, Tuple[str, str, str, str]] = {
    "pm_card_visa": ("visa", "4242", "credit", "ok"),
    "pm_card_visa_debit": ("visa", "5556", "debit", "ok"),
    "pm_card_mastercard": ("mastercard", "4444", "credit", "ok"),
    "pm_card_mastercard_debit": ("mastercard", "8210", "debit", "ok"),
    "pm_card_amex": ("amex", "8431", "credit", "ok"),
    "pm_card_discover": ("discover", "1117", "credit", "ok"),
    "pm_card_us": ("visa", "4242", "credit", "ok"),
    "pm_card_bypassPending": ("visa", "0077", "credit", "ok"),
    "pm_card_chargeDeclined": ("visa", "0002", "credit", "decline:generic_decline"),
    "pm_card_visa_chargeDeclined": ("visa", "0002", "credit", "decline:generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": ("visa", "9995", "credit",
                                                "decline:insufficient_funds"),
    "pm_card_visa_chargeDeclinedInsufficientFunds": ("visa", "9995", "credit",
                                                     "decline:insufficient_funds"),
    "pm_card_chargeDeclinedLostCard": ("visa", "9987", "credit", "decline:lost_card"),
    "pm_card_visa_chargeDeclinedLostCard": ("visa", "9987", "credit", "decline:lost_card"),
    "pm_card_chargeDeclinedStolenCard": ("visa", "9979", "credit", "decline:stolen_card"),
    "pm_card_visa_chargeDeclinedStolenCard": ("visa", "9979", "credit", "decline:stolen_card"),
    "pm_card_chargeDeclinedExpiredCard": ("visa", "0069", "credit", "decline:expired_card"),
    "pm_card_chargeDeclinedIncorrectCvc": ("visa", "0127", "credit", "decline:incorrect_cvc"),
    "pm_card_chargeDeclinedProcessingError": ("visa", "0119", "credit",
                                              "decline:processing_error"),
    "pm_card_chargeDeclinedFraudulent": ("visa", "0019", "credit", "decline:fraudulent"),
    "pm_card_chargeDeclinedVelocityLimitExceeded": ("visa", "6975", "credit",
                                                    "decline:card_velocity_exceeded"),
    "pm_card_authenticationRequired": ("visa", "3184", "credit", "3ds"),
    "pm_card_threeDSecure2Required": ("visa", "3220", "credit", "3ds"),
    "pm_card_authenticationRequiredOnSetup": ("visa", "3155", "credit", "3ds"),
    "pm_card_createDispute": ("visa", "0259", "credit", "dispute"),
    "pm_card_createDisputeInquiry": ("visa", "2685", "credit", "dispute_inquiry"),
}

PI_CANCELLABLE = ("requires_payment_method", "requires_capture", "requires_confirmation",
                  "requires_action", "processing")
PI_CONFIRMABLE = ("requires_confirmation", "requires_action", "requires_payment_method")
CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
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
EXPRESS_REQUIREMENTS = ["business_profile.mcc", "business_profile.url", "business_type",
                        "external_account", "representative.first_name",
                        "representative.last_name", "tos_acceptance.date",
                        "tos_acceptance.ip"]

KIND_BY_PREFIX = {
    "pi": "payment_intent", "ch": "charge", "re": "refund", "pyr": "refund",
    "acct": "account", "tr": "transfer", "trr": "transfer_reversal", "dp": "dispute",
    "du": "dispute", "evt": "event", "pm": "payment_method", "txn": "balance_transaction",
    "fee": "application_fee", "fr": "fee_refund", "po": "payout", "py": "charge",
}


def kind_of(obj_id: str) -> str:
    return KIND_BY_PREFIX.get(obj_id.split("_", 1)[0], "object")


# The keyed parts of the state. They are TrackedDicts, so each journal record can carry just
# the entries a request fetched or changed (see Core.take_changes).
STORES = ("objects", "scope", "event_bodies", "links", "sessions", "login_links")


def _to_json(store: str, value: Any) -> Any:
    return value.decode("utf-8") if store == "event_bodies" else value


def _from_json(store: str, value: Any) -> Any:
    return value.encode("utf-8") if store == "event_bodies" else value


class Ctx:
    """Per-request context."""

    def __init__(self, request_id: Optional[str] = None, idempotency_key: Optional[str] = None,
                 account: Optional[str] = None, base_url: str = "", livemode: bool = False,
                 publishable: bool = False):
        self.request_id = request_id
        self.idempotency_key = idempotency_key
        self.account = account
        self.base_url = base_url
        self.publishable = publishable


class Core:
    def __init__(self, api_version: str = DEFAULT_API_VERSION, account_link_ttl: int = 300,
                 public_url: Callable[[], str] = lambda: "http://127.0.0.1"):
        self.lock = threading.RLock()
        self.api_version = api_version
        self.account_link_ttl = account_link_ttl
        self.public_url = public_url
        self.on_event: Callable[[Dict[str, Any], bytes], None] = lambda e, b: None
        self.pending_webhooks: Callable[[str], int] = lambda evt_id: 0
        self.reset()

    # ---- state ----------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.objects: TrackedDict = TrackedDict()  # id -> object
            self.scope: TrackedDict = TrackedDict()    # object id -> account (None = platform)
            self.order: List[str] = []                  # creation order of all objects
            self.event_bodies: TrackedDict = TrackedDict()  # event id -> the delivered bytes
            self.links: TrackedDict = TrackedDict()     # account link token -> record
            self.sessions: TrackedDict = TrackedDict()  # onboarding page session -> record
            self.login_links: TrackedDict = TrackedDict()
            self.deauthorized: set = set()
            self.clock_offset = 0
            self.refund_mode = "succeeded"
            self.mark_saved()

    def now(self) -> int:
        return int(time.time() + self.clock_offset)

    # ---- persistence (see persist.py) ------------------------------------------------
    def snapshot(self) -> Dict[str, Any]:
        """The whole state, JSON-ready. The values are the live objects: serialise the result
        before releasing `lock`."""
        with self.lock:
            # dict.items: reading a whole store for the snapshot is not a change to track
            data: Dict[str, Any] = {name: {k: _to_json(name, v)
                                           for k, v in dict.items(getattr(self, name))}
                                    for name in STORES}
            data.update(order=self.order, deauthorized=sorted(self.deauthorized),
                        clock_offset=self.clock_offset, refund_mode=self.refund_mode)
            return data

    def restore(self, data: Dict[str, Any]) -> None:
        with self.lock:
            for name in STORES:
                setattr(self, name, TrackedDict(
                    (k, _from_json(name, v)) for k, v in data.get(name, {}).items()))
            self.order = list(data.get("order", []))
            self.deauthorized = set(data.get("deauthorized", []))
            self.clock_offset = data.get("clock_offset", 0)
            self.refund_mode = data.get("refund_mode", "succeeded")
            self.mark_saved()

    def mark_saved(self) -> None:
        """Everything in memory is now on disk: the next change record starts from here."""
        with self.lock:
            for name in STORES:
                getattr(self, name).take_touched()
            self._saved_order = len(self.order)
            self._saved_deauthorized = len(self.deauthorized)
            self._saved_settings = (self.clock_offset, self.refund_mode)

    def take_changes(self) -> Dict[str, Any]:
        """A journal record of what may have changed since the last save ({} if nothing):
        every store entry fetched or set since, and the new tail of `order`. Like snapshot(),
        the values are live: serialise the record before releasing `lock`."""
        with self.lock:
            record: Dict[str, Any] = {}
            for name in STORES:
                store = getattr(self, name)
                keys = store.take_touched()
                put = {k: _to_json(name, store.peek(k)) for k in keys if k in store}
                gone = [k for k in keys if k not in store]
                if put:
                    record.setdefault("set", {})[name] = put
                if gone:
                    record.setdefault("del", {})[name] = gone
            if len(self.order) > self._saved_order:  # `order` is only ever appended to
                record["order"] = self.order[self._saved_order:]
            if len(self.deauthorized) != self._saved_deauthorized:
                # only ever added to, and tiny: the whole set is simpler than a diff
                record["deauthorized"] = sorted(self.deauthorized)
            if (self.clock_offset, self.refund_mode) != self._saved_settings:
                record.update(clock_offset=self.clock_offset, refund_mode=self.refund_mode)
            self.mark_saved()
            return record

    def apply_changes(self, record: Dict[str, Any]) -> None:
        """Replay one take_changes() record (loading the journal)."""
        with self.lock:
            for name in STORES:
                store = getattr(self, name)
                for k, v in record.get("set", {}).get(name, {}).items():
                    store[k] = _from_json(name, v)
                for k in record.get("del", {}).get(name, []):
                    store.pop(k, None)
            self.order.extend(record.get("order", []))
            if "deauthorized" in record:
                self.deauthorized = set(record["deauthorized"])
            self.clock_offset = record.get("clock_offset", self.clock_offset)
            self.refund_mode = record.get("refund_mode", self.refund_mode)
            self.mark_saved()

    def scan(self) -> Iterator[Tuple[Dict[str, Any], Optional[str]]]:
        """(object, account) for every object, newest first, to read only: a scan does not
        count as a change, so a list request adds nothing to the next journal record."""
        for i in reversed(self.order):
            yield self.objects.peek(i), self.scope.peek(i)

    def put(self, obj: Dict[str, Any], account: Optional[str]) -> Dict[str, Any]:
        if obj["id"] not in self.objects:
            self.order.append(obj["id"])
        self.objects[obj["id"]] = obj
        self.scope[obj["id"]] = account
        return obj

    def get(self, obj_id: str, ctx: Ctx, kind: Optional[str] = None,
            param: str = "id") -> Dict[str, Any]:
        kind = kind or kind_of(obj_id)
        obj = self.objects.get(obj_id)
        if obj is None or obj.get("object") != kind or self.scope.get(obj_id) != ctx.account:
            raise missing(kind, obj_id, param)
        return obj

    def account_obj(self, acct_id: str, param: str = "account") -> Dict[str, Any]:
        obj = self.objects.get(acct_id)
        if obj is None or obj.get("object") != "account":
            raise missing("account", acct_id, param) if param != "id" else StripeError(
                404, "invalid_request_error", f"No such account: '{acct_id}'",
                code="resource_missing", param="account", store=False)
        return obj

    # ---- events ---------------------------------------------------------------------
    def emit(self, type_: str, obj: Dict[str, Any], ctx: Optional[Ctx],
             account: Optional[str] = None, previous: Optional[Dict[str, Any]] = None
             ) -> Dict[str, Any]:
        data: Dict[str, Any] = {"object": self.clean(deep(obj))}
        if previous:
            data["previous_attributes"] = deep(previous)
        evt: Dict[str, Any] = {
            "id": new_id("evt"),
            "object": "event",
        }
        if account:
            evt["account"] = account
        evt.update({
            "api_version": self.api_version,
            "created": self.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": ctx.request_id if ctx else None,
                        "idempotency_key": ctx.idempotency_key if ctx else None},
            "type": type_,
        })
        self.put(evt, account)
        body = json.dumps(evt, indent=2).encode("utf-8")
        self.event_bodies[evt["id"]] = body
        self.on_event(evt, body)
        return evt

    def render(self, obj: Dict[str, Any], expand: List[str], ctx: Ctx) -> Dict[str, Any]:
        out = self.clean(deep(obj))
        if out.get("object") == "event":
            out["pending_webhooks"] = self.pending_webhooks(out["id"])
        for path in expand:
            self._expand(out, path.split("."), ctx)
        return out

    def _expand(self, node: Any, parts: List[str], ctx: Ctx) -> None:
        if not parts or not isinstance(node, dict):
            return
        head, rest = parts[0], parts[1:]
        if head == "data" and node.get("object") == "list":
            for item in node.get("data", []):
                self._expand(item, rest, ctx)
            return
        if head not in node:
            raise invalid(f"This property cannot be expanded ({head}).", param="expand")
        val = node[head]
        if isinstance(val, str) and val in self.objects:
            val = node[head] = self.render(self.objects[val], [], ctx)
        elif isinstance(val, str) or (val is not None and not isinstance(val, dict)):
            raise invalid(f"This property cannot be expanded ({head}).", param="expand")
        if rest and isinstance(val, dict):
            self._expand(val, rest, ctx)

    # ---- object builders -----------------------------------------------------------
    def _txn(self, amount: int, currency: str, type_: str, source: str,
             account: Optional[str], fee: int = 0, description: Optional[str] = None) -> str:
        t = {
            "id": new_id("txn"), "object": "balance_transaction", "amount": amount,
            "available_on": self.now() + 2 * 86400, "created": self.now(),
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
        self.put(t, account)
        return t["id"]

    def _payment_method(self, name: str, ctx: Ctx) -> Dict[str, Any]:
        if name in TEST_PAYMENT_METHODS:
            brand, last4, funding, outcome = TEST_PAYMENT_METHODS[name]
            pm = {
                "id": new_id("pm"), "object": "payment_method", "allow_redisplay": "unspecified",
                "billing_details": {"address": {"city": None, "country": None, "line1": None,
                                                "line2": None, "postal_code": None,
                                                "state": None},
                                    "email": None, "name": None, "phone": None},
                "card": {"brand": brand, "checks": {"address_line1_check": None,
                                                    "address_postal_code_check": None,
                                                    "cvc_check": "pass"},
                         "country": "US", "display_brand": brand, "exp_month": 12,
                         "exp_year": time.gmtime().tm_year + 3,
                         "fingerprint": rand(16), "funding": funding,
                         "generated_from": None, "last4": last4,
                         "networks": {"available": [brand], "preferred": None},
                         "three_d_secure_usage": {"supported": True}, "wallet": None},
                "created": self.now(), "customer": None, "livemode": False, "metadata": {},
                "type": "card",
            }
            self.put(pm, ctx.account)
            self.objects[pm["id"]]["_test_outcome"] = outcome  # internal, stripped on render
            return pm
        obj = self.objects.get(name)
        if obj is None or obj.get("object") != "payment_method":
            raise StripeError(400, "invalid_request_error", f"No such PaymentMethod: '{name}'",
                              code="resource_missing", param="payment_method", store=False)
        return obj

    def clean(self, obj: Dict[str, Any]) -> Dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    # =================================================================================
    # PaymentIntents
    # =================================================================================
    PI_CREATE_PARAMS = (
        "amount", "currency", "capture_method", "confirm", "payment_method", "metadata",
        "description", "transfer_data", "application_fee_amount", "on_behalf_of",
        "transfer_group", "automatic_payment_methods", "payment_method_types", "customer",
        "receipt_email", "statement_descriptor", "statement_descriptor_suffix",
        "confirmation_method", "setup_future_usage", "shipping", "return_url",
        "payment_method_options", "off_session", "error_on_requires_action", "mandate",
        "mandate_data", "use_stripe_sdk", "payment_method_data", "radar_options",
        "payment_method_configuration", "capture_before")

    def pi_create(self, ctx: Ctx, p: Dict[str, Any],
                  forced_decline: Optional[str] = None) -> Dict[str, Any]:
        check_unknown(p, self.PI_CREATE_PARAMS)
        amount = get_int(p, "amount", required=True)
        currency = check_currency(get_str(p, "currency"))
        self._check_amount(amount)
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
            acct = self.objects.get(dest)
            if acct is None or acct.get("object") != "account":
                raise invalid(f"No such destination: '{dest}'", param="transfer_data[destination]",
                              code="resource_missing")
            if acct.get("capabilities", {}).get("transfers") != "active":
                raise invalid("Your destination account needs to have at least one of the "
                              "following capabilities enabled: transfers, crypto_transfers, "
                              "legacy_payments", param="transfer_data[destination]",
                              code="insufficient_capabilities_for_transfer")
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
            if self.objects.get(on_behalf_of, {}).get("object") != "account":
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
            "created": self.now(), "currency": currency, "customer": get_str(p, "customer"),
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
            pm = self._payment_method(pm_name, ctx)
        self.put(pi, ctx.account)
        if pm:
            pi["payment_method"] = pm["id"]
            pi["status"] = "requires_confirmation"
        self.emit("payment_intent.created", pi, ctx, ctx.account)
        if confirm:
            if not pm:
                raise state_error(
                    "You cannot confirm this PaymentIntent because it's missing a payment "
                    "method. You can either update the PaymentIntent with a payment method and "
                    "then confirm it again, or confirm it again directly with a payment method.",
                    code="payment_intent_unexpected_state")
            self._confirm(pi, ctx, forced_decline)
        return pi

    def _check_amount(self, amount: int, param: str = "amount") -> None:
        if amount < 50:
            raise invalid("Amount must be at least $0.50 usd", param=param, code="amount_too_small")
        if amount > 99999999:
            raise invalid("Amount must be no more than $999,999.99", param=param,
                          code="amount_too_large")

    def pi_retrieve(self, ctx: Ctx, pi_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ("client_secret",))
        pi = self.get(pi_id, ctx, "payment_intent")
        if ctx.publishable and p.get("client_secret") != pi["client_secret"]:
            raise invalid("The client_secret provided does not match the client_secret "
                          "associated with the PaymentIntent.", param="client_secret")
        return pi

    def pi_update(self, ctx: Ctx, pi_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ("amount", "currency", "metadata", "description", "payment_method",
                          "application_fee_amount", "transfer_group", "receipt_email",
                          "statement_descriptor", "statement_descriptor_suffix",
                          "transfer_data", "capture_method", "setup_future_usage", "shipping",
                          "customer", "payment_method_types", "payment_method_options"))
        pi = self.get(pi_id, ctx, "payment_intent")
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
            self._check_amount(amount)
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
            pm = self._payment_method(get_str(p, "payment_method", required=True), ctx)
            setf("payment_method", pm["id"])
            if pi["status"] == "requires_payment_method":
                setf("status", "requires_confirmation")
        if prev:
            self.emit("payment_intent.updated", pi, ctx, ctx.account, prev)
        return pi

    def pi_confirm(self, ctx: Ctx, pi_id: str, p: Dict[str, Any],
                   forced_decline: Optional[str] = None) -> Dict[str, Any]:
        check_unknown(p, ("payment_method", "return_url", "client_secret", "receipt_email",
                          "setup_future_usage", "shipping", "payment_method_options",
                          "payment_method_data", "off_session", "error_on_requires_action",
                          "mandate", "mandate_data", "use_stripe_sdk", "capture_method",
                          "payment_method_types", "radar_options"))
        pi = self.get(pi_id, ctx, "payment_intent")
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
            pm = self._payment_method(pm_name, ctx)
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
        self._confirm(pi, ctx, forced_decline)
        return pi

    def _confirm(self, pi: Dict[str, Any], ctx: Ctx, forced_decline: Optional[str] = None,
                 skip_3ds: bool = False) -> None:
        pm = self.objects[pi["payment_method"]]
        outcome = pm.get("_test_outcome", "ok")
        if forced_decline:
            outcome = "decline:" + forced_decline
        if outcome == "3ds" and not skip_3ds:
            pi["status"] = "requires_action"
            pi["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {
                "type": "three_d_secure_redirect", "stripe_js": f"{ctx.base_url or self.public_url()}/3ds/{pi['id']}",
                "source": "src_" + rand(24)}}
            pi["last_payment_error"] = None
            self.emit("payment_intent.requires_action", pi, ctx, self.scope[pi["id"]])
            return
        pi["next_action"] = None
        account = self.scope[pi["id"]]
        if outcome.startswith("decline:"):
            decline = outcome.split(":", 1)[1]
            ch = self._new_charge(pi, pm, ctx, failed=decline)
            err = card_error(decline)
            pm_clean = self.clean(pm)
            pi["last_payment_error"] = {
                "charge": ch["id"], "code": err.code, "decline_code": decline,
                "doc_url": f"https://stripe.com/docs/error-codes/{err.code.replace('_', '-')}",
                "message": err.message, "payment_method": pm_clean, "type": "card_error"}
            pi["status"] = "requires_payment_method"
            pi["payment_method"] = None
            pi["latest_charge"] = ch["id"]
            self.emit("charge.failed", ch, ctx, account)
            self.emit("payment_intent.payment_failed", pi, ctx, account)
            err.extra = {"charge": ch["id"], "payment_intent": self.clean(deep(pi)),
                         "payment_method": pm_clean}
            raise err
        pi["last_payment_error"] = None
        manual = pi["capture_method"] == "manual"
        ch = self._new_charge(pi, pm, ctx, failed=None, captured=not manual)
        pi["latest_charge"] = ch["id"]
        if manual:
            pi["status"] = "requires_capture"
            pi["amount_capturable"] = pi["amount"]
            self.emit("charge.succeeded", ch, ctx, account)
            self.emit("payment_intent.amount_capturable_updated", pi, ctx, account)
        else:
            pi["status"] = "succeeded"
            pi["amount_received"] = pi["amount"]
            self._settle_capture(pi, ch, pi["amount"], ctx)
            self.emit("charge.succeeded", ch, ctx, account)
            self.emit("payment_intent.succeeded", pi, ctx, account)
        if outcome in ("dispute", "dispute_inquiry") and not manual:
            self.dispute_create(ch["id"], {"reason": "fraudulent",
                                           "status": "warning_needs_response"
                                           if outcome == "dispute_inquiry" else None})

    def _new_charge(self, pi: Dict[str, Any], pm: Dict[str, Any], ctx: Ctx,
                    failed: Optional[str], captured: bool = False) -> Dict[str, Any]:
        account = self.scope[pi["id"]]
        card = pm["card"]
        ok = failed is None
        err = card_error(failed) if failed else None
        ch = {
            "id": new_id("ch"), "object": "charge", "amount": pi["amount"],
            "amount_captured": 0, "amount_refunded": 0, "application": None,
            "application_fee": None, "application_fee_amount": pi["application_fee_amount"],
            "balance_transaction": None,
            "billing_details": deep(pm["billing_details"]),
            "calculated_statement_descriptor": "FAKE STRIPE", "captured": False,
            "created": self.now(), "currency": pi["currency"], "customer": pi["customer"],
            "description": pi["description"], "disputed": False,
            "failure_balance_transaction": None,
            "failure_code": err.code if err else None,
            "failure_message": err.message if err else None, "fraud_details": {},
            "invoice": None, "livemode": False, "metadata": deep(pi["metadata"]),
            "on_behalf_of": pi["on_behalf_of"],
            "outcome": ({"network_status": "approved_by_network", "reason": None,
                         "risk_level": "normal", "risk_score": 32,
                         "seller_message": "Payment complete.", "type": "authorized"} if ok else
                        {"network_status": "declined_by_network", "reason": failed,
                         "risk_level": "normal", "risk_score": 40,
                         "seller_message": "The bank did not return any further details with "
                                           "this decline.", "type": "issuer_declined"}),
            "paid": ok, "payment_intent": pi["id"], "payment_method": pm["id"],
            "payment_method_details": {"card": {
                "amount_authorized": pi["amount"] if ok else None, "brand": card["brand"],
                "capture_before": (self.now() + 7 * 86400) if ok else None,
                "checks": deep(card["checks"]), "country": card["country"],
                "exp_month": card["exp_month"], "exp_year": card["exp_year"],
                "fingerprint": card["fingerprint"], "funding": card["funding"],
                "installments": None, "last4": card["last4"], "mandate": None,
                "network": card["brand"], "network_token": {"used": False},
                "three_d_secure": None, "wallet": None}, "type": "card"},
            "receipt_email": pi["receipt_email"], "receipt_number": None,
            "receipt_url": f"{self.public_url()}/receipts/{pi['id']}", "refunded": False,
            "review": None, "shipping": None, "source": None, "source_transfer": None,
            "statement_descriptor": pi["statement_descriptor"],
            "statement_descriptor_suffix": pi["statement_descriptor_suffix"],
            "status": "succeeded" if ok else "failed", "transfer": None,
            "transfer_data": ({"amount": pi["transfer_data"].get("amount"),
                               "destination": pi["transfer_data"]["destination"]}
                              if pi["transfer_data"] else None),
            "transfer_group": pi["transfer_group"],
        }
        self.put(ch, account)
        return ch

    def _settle_capture(self, pi: Dict[str, Any], ch: Dict[str, Any], amount: int,
                        ctx: Ctx) -> None:
        """Mark a charge captured for `amount`; create balance txn, application fee, transfer."""
        account = self.scope[ch["id"]]
        ch["captured"] = True
        ch["amount_captured"] = amount
        if amount < ch["amount"]:
            # the uncaptured remainder is released (Stripe reports it as refunded)
            ch["amount_refunded"] = ch["amount"] - amount
        fee = 30 + round(amount * 0.029)
        ch["balance_transaction"] = self._txn(amount, ch["currency"], "charge", ch["id"],
                                              account, fee=fee)
        app_fee = pi.get("application_fee_amount")
        ch["application_fee_amount"] = app_fee
        if pi["transfer_data"]:
            dest = pi["transfer_data"]["destination"]
            if app_fee:
                fee_obj = {
                    "id": new_id("fee"), "object": "application_fee", "account": dest,
                    "amount": app_fee, "amount_refunded": 0, "application": PLATFORM_APPLICATION,
                    "balance_transaction": None, "charge": ch["id"], "created": self.now(),
                    "currency": ch["currency"], "fee_source": {"charge": ch["id"],
                                                               "type": "charge"},
                    "livemode": False, "originating_transaction": ch["id"], "refunded": False,
                    "refunds": {"object": "list", "data": [], "has_more": False,
                                "total_count": 0, "url": ""},
                }
                fee_obj["refunds"]["url"] = f"/v1/application_fees/{fee_obj['id']}/refunds"
                fee_obj["balance_transaction"] = self._txn(app_fee, ch["currency"],
                                                           "application_fee", fee_obj["id"],
                                                           account)
                self.put(fee_obj, account)
                ch["application_fee"] = fee_obj["id"]
                self.emit("application_fee.created", fee_obj, ctx, account)
            t_amount = pi["transfer_data"].get("amount")
            if t_amount is None:
                t_amount = amount - (app_fee or 0)
            tr = self._new_transfer(ctx, account, t_amount, ch["currency"], dest,
                                    source_transaction=ch["id"],
                                    transfer_group=pi["transfer_group"], metadata={})
            ch["transfer"] = tr["id"]

    def pi_capture(self, ctx: Ctx, pi_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ("amount_to_capture", "application_fee_amount", "metadata",
                          "statement_descriptor", "statement_descriptor_suffix",
                          "transfer_data", "final_capture"))
        pi = self.get(pi_id, ctx, "payment_intent")
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
        ch = self.objects[pi["latest_charge"]]
        account = self.scope[pi["id"]]
        self._settle_capture(pi, ch, atc, ctx)
        pi["amount_capturable"] = 0
        pi["amount_received"] = atc
        pi["status"] = "succeeded"
        self.emit("charge.captured", ch, ctx, account)
        self.emit("payment_intent.succeeded", pi, ctx, account)
        return pi

    def pi_cancel(self, ctx: Ctx, pi_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ("cancellation_reason",))
        pi = self.get(pi_id, ctx, "payment_intent")
        reason = get_str(p, "cancellation_reason", choices=CANCELLATION_REASONS)
        if pi["status"] not in PI_CANCELLABLE:
            raise state_error(
                f"You cannot cancel this PaymentIntent because it has a status of "
                f"{pi['status']}. Only a PaymentIntent with one of the following statuses may be "
                f"canceled: requires_payment_method, requires_capture, requires_confirmation, "
                f"requires_action, processing.", code="payment_intent_unexpected_state")
        account = self.scope[pi["id"]]
        was_capture = pi["status"] == "requires_capture"
        pi["status"] = "canceled"
        pi["canceled_at"] = self.now()
        pi["cancellation_reason"] = reason
        pi["amount_capturable"] = 0
        pi["next_action"] = None
        if was_capture and pi["latest_charge"]:
            ch = self.objects[pi["latest_charge"]]
            ch["amount_refunded"] = ch["amount"]
            ch["refunded"] = True
            self.emit("charge.refunded", ch, ctx, account)
        self.emit("payment_intent.canceled", pi, ctx, account)
        return pi

    def _list(self, ctx: Ctx, p: Dict[str, Any], kind: str, path: str, filters: Tuple[str, ...] = (),
              accepted: Tuple[str, ...] = ()) -> Dict[str, Any]:
        """A list endpoint: the caller's objects of `kind`, newest first, narrowed by `created`
        and by every field of `filters` the request names (`accepted` fields are allowed and
        ignored, as the fake has no customers)."""
        check_unknown(p, ("limit", "starting_after", "ending_before", "created", *filters, *accepted))
        cf = created_filter(p)
        wanted = {f: p[f] for f in filters if p.get(f) is not None}
        items = [o for o, account in self.scan()
                 if o.get("object") == kind and account == ctx.account and cf(o["created"])
                 and all(o.get(f) == v for f, v in wanted.items())]
        return paginate(items, p, path)

    def pi_list(self, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
        return self._list(ctx, p, "payment_intent", "/v1/payment_intents", accepted=("customer",))

    def pi_authenticate(self, pi_id: str, succeed: bool) -> Dict[str, Any]:
        """Control: finish (or fail) the 3-D Secure step the buyer does in the browser."""
        pi = self.objects.get(pi_id)
        if not pi or pi.get("object") != "payment_intent":
            raise missing("payment_intent", pi_id)
        if pi["status"] != "requires_action":
            raise state_error(f"PaymentIntent has status {pi['status']}, not requires_action",
                              code="payment_intent_unexpected_state")
        ctx = Ctx(account=self.scope[pi_id])
        if succeed:
            self._confirm(pi, ctx, skip_3ds=True)
        else:
            pm = self.objects[pi["payment_method"]]
            pi["status"] = "requires_payment_method"
            pi["next_action"] = None
            pi["payment_method"] = None
            pi["last_payment_error"] = {
                "code": "payment_intent_authentication_failure",
                "doc_url": "https://stripe.com/docs/error-codes/"
                           "payment-intent-authentication-failure",
                "message": "We are unable to authenticate your payment method. Please choose a "
                           "different payment method and try again.",
                "payment_method": self.clean(pm), "type": "invalid_request_error"}
            self.emit("payment_intent.payment_failed", pi, ctx, self.scope[pi_id])
        return pi

    # =================================================================================
    # Charges (read-only for the app) and PaymentMethods
    # =================================================================================
    def charge_retrieve(self, ctx: Ctx, ch_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ())
        return self.get(ch_id, ctx, "charge")

    def charge_list(self, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
        return self._list(ctx, p, "charge", "/v1/charges", ("payment_intent", "transfer_group"),
                          accepted=("customer",))

    def simple_retrieve(self, ctx: Ctx, obj_id: str, kind: str,
                        p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ())
        return self.get(obj_id, ctx, kind)

    # =================================================================================
    # Refunds
    # =================================================================================
    def refund_create(self, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
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
            pi = self.get(pi_id, ctx, "payment_intent", param="payment_intent")
            if not pi["latest_charge"] or self.objects[pi["latest_charge"]]["status"] != \
                    "succeeded":
                raise state_error(f"This PaymentIntent ({pi_id}) does not have a successful "
                                  f"charge to refund.", code=None, param="payment_intent")
            ch = self.objects[pi["latest_charge"]]
            if ch_id and ch_id != ch["id"]:
                raise invalid("The charge does not belong to the payment_intent.",
                              param="charge")
        else:
            ch = self.get(ch_id, ctx, "charge", param="charge")
        if ch["status"] != "succeeded":
            raise state_error(f"Charge {ch['id']} cannot be refunded because it has failed.",
                              code="charge_not_refundable", param="charge")
        if not ch["captured"]:
            raise state_error(
                f"Charge {ch['id']} has not been captured; cancel the PaymentIntent to release "
                f"the authorization instead.", code="charge_not_refundable")
        if ch.get("dispute"):
            dp = self.objects[ch["dispute"]]
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
        account = self.scope[ch["id"]]
        status = self.refund_mode
        rf = {
            "id": new_id("re"), "object": "refund", "amount": amount,
            "balance_transaction": None, "charge": ch["id"], "created": self.now(),
            "currency": ch["currency"],
            "destination_details": {"card": {"reference_status": "pending",
                                             "reference_type": "acquirer_reference_number",
                                             "type": "refund"}, "type": "card"},
            "metadata": metadata, "payment_intent": ch["payment_intent"], "reason": reason,
            "receipt_number": None, "source_transfer_reversal": None, "status": status,
            "transfer_reversal": None,
        }
        rf["balance_transaction"] = self._txn(-amount, ch["currency"], "refund", rf["id"],
                                              account)
        self.put(rf, account)
        ch["amount_refunded"] += amount
        ch["refunded"] = ch["amount_refunded"] >= ch["amount"]
        captured = ch["amount_captured"] or ch["amount"]
        if reverse:
            tr = self.objects[ch["transfer"]]
            rev_amount = min(round(amount * tr["amount"] / captured),
                             tr["amount"] - tr["amount_reversed"])
            if rev_amount > 0:
                trr = self._reverse_transfer(ctx, tr, rev_amount, {}, account,
                                             source_refund=rf["id"])
                rf["transfer_reversal"] = trr["id"]
        if refund_fee:
            fee_obj = self.objects[ch["application_fee"]]
            fr_amount = min(round(amount * fee_obj["amount"] / captured),
                            fee_obj["amount"] - fee_obj["amount_refunded"])
            if fr_amount > 0:
                self._refund_fee(ctx, fee_obj, fr_amount, account)
        self.emit("charge.refunded", ch, ctx, account)
        self.emit("refund.created", rf, ctx, account)
        return rf

    def _refund_fee(self, ctx: Ctx, fee_obj: Dict[str, Any], amount: int,
                    account: Optional[str]) -> None:
        fr = {"id": new_id("fr"), "object": "fee_refund", "amount": amount,
              "balance_transaction": None, "created": self.now(),
              "currency": fee_obj["currency"], "fee": fee_obj["id"], "metadata": {}}
        fr["balance_transaction"] = self._txn(-amount, fee_obj["currency"],
                                              "application_fee_refund", fr["id"], account)
        self.put(fr, account)
        fee_obj["amount_refunded"] += amount
        fee_obj["refunded"] = fee_obj["amount_refunded"] >= fee_obj["amount"]
        fee_obj["refunds"]["data"].insert(0, deep(fr))
        fee_obj["refunds"]["total_count"] += 1
        self.emit("application_fee.refunded", fee_obj, ctx, account)

    def refund_retrieve(self, ctx: Ctx, re_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ())
        return self.get(re_id, ctx, "refund")

    def refund_update(self, ctx: Ctx, re_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ("metadata",))
        rf = self.get(re_id, ctx, "refund")
        prev = {"metadata": deep(rf["metadata"])}
        rf["metadata"] = apply_metadata(rf["metadata"], p)
        if prev["metadata"] != rf["metadata"]:
            self.emit("refund.updated", rf, ctx, self.scope[rf["id"]], prev)
        return rf

    def refund_cancel(self, ctx: Ctx, re_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ())
        rf = self.get(re_id, ctx, "refund")
        if rf["status"] != "requires_action":
            raise state_error(f"Refund {re_id} cannot be canceled because it has a status of "
                              f"{rf['status']}. Only a refund with a status of requires_action "
                              f"can be canceled.", code=None)
        return self.refund_set_status(re_id, "canceled", ctx=ctx)

    def refund_set_status(self, re_id: str, status: str, failure_reason: Optional[str] = None,
                          ctx: Optional[Ctx] = None) -> Dict[str, Any]:
        rf = self.objects.get(re_id)
        if not rf or rf.get("object") != "refund":
            raise missing("refund", re_id)
        if status not in ("succeeded", "failed", "canceled", "pending", "requires_action"):
            raise invalid("status must be succeeded, failed, canceled, pending or "
                          "requires_action", param="status")
        account = self.scope[re_id]
        prev = {"status": rf["status"]}
        if rf["status"] == status:
            return rf
        ch = self.objects[rf["charge"]]
        if status in ("failed", "canceled") and rf["status"] not in ("failed", "canceled"):
            ch["amount_refunded"] -= rf["amount"]
            ch["refunded"] = ch["amount_refunded"] >= ch["amount"]
            if status == "failed":
                rf["failure_reason"] = failure_reason or "unknown"
                rf["failure_balance_transaction"] = self._txn(
                    rf["amount"], rf["currency"], "refund_failure", rf["id"], account)
        rf["status"] = status
        self.emit("refund.updated", rf, ctx, account, prev)
        self.emit("charge.refund.updated", rf, ctx, account, prev)
        if status == "failed":
            self.emit("refund.failed", rf, ctx, account)
        return rf

    def refund_list(self, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
        return self._list(ctx, p, "refund", "/v1/refunds", ("charge", "payment_intent"))

    # =================================================================================
    # Accounts, account links, login links
    # =================================================================================
    ACCOUNT_PARAMS = ("type", "country", "email", "capabilities", "settings", "metadata",
                      "business_type", "business_profile", "controller", "default_currency",
                      "tos_acceptance", "individual", "company", "external_account",
                      "account_token", "documents")

    def account_create(self, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, self.ACCOUNT_PARAMS)
        if ctx.account:
            raise invalid("You cannot create connected accounts on behalf of a connected "
                          "account (remove the Stripe-Account header).", param="type")
        type_ = get_str(p, "type", choices=("custom", "express", "standard"))
        if type_ is None and p.get("controller") is None:
            raise invalid("You must provide either `type` or `controller` when creating an "
                          "account.", param="type", code="parameter_missing")
        type_ = type_ or "none"
        country = (get_str(p, "country") or "US").upper()
        now = self.now()
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
        self._apply_payout_settings(schedule, settings_in)
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
        self.put(acct, None)
        return acct

    def _apply_payout_settings(self, schedule: Dict[str, Any], settings_in: Dict[str, Any]
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

    def _check_account_access(self, acct_id: str) -> None:
        if acct_id in self.deauthorized:
            raise StripeError(403, "invalid_request_error",
                              f"The provided key does not have access to account '{acct_id}' "
                              f"(or that account does not exist). Application access may have "
                              f"been revoked.", code="account_invalid", store=False)

    def account_retrieve(self, ctx: Ctx, acct_id: Optional[str], p: Dict[str, Any]
                         ) -> Dict[str, Any]:
        check_unknown(p, ())
        if acct_id is None:
            if ctx.account is None:
                return self.platform_account()
            acct_id = ctx.account
        self._check_account_access(acct_id)
        acct = self.objects.get(acct_id)
        if acct is None or acct.get("object") != "account":
            raise StripeError(404, "invalid_request_error", f"No such account: '{acct_id}'",
                              code="resource_missing", param="account", store=False)
        return acct

    def platform_account(self) -> Dict[str, Any]:
        return {"id": "acct_FakePlatform0001", "object": "account",
                "business_profile": {"name": "Fake Platform", "url": None},
                "charges_enabled": True, "country": "US", "default_currency": "usd",
                "details_submitted": True, "email": "platform@example.test",
                "payouts_enabled": True, "settings": {"dashboard": {"display_name":
                                                                    "Fake Platform"}},
                "type": "standard"}

    def account_update(self, ctx: Ctx, acct_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, tuple(x for x in self.ACCOUNT_PARAMS if x not in ("type", "country",
                                                                          "controller")))
        self._check_account_access(acct_id)
        acct = self.account_retrieve(ctx, acct_id, {})
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
            self._apply_payout_settings(acct["settings"]["payouts"]["schedule"], settings_in)
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
            self.emit("account.updated", acct, ctx, acct["id"], prev)
        return acct

    def account_list(self, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ("limit", "starting_after", "ending_before", "created"))
        cf = created_filter(p)
        items = [o for o, _ in self.scan()
                 if o.get("object") == "account" and cf(o["created"])
                 and o["id"] not in self.deauthorized]
        return paginate(items, p, "/v1/accounts")

    def account_set_state(self, acct_id: str, changes: Dict[str, Any],
                          ctx: Optional[Ctx] = None) -> Dict[str, Any]:
        """Control: change onboarding/verification state and emit account.updated."""
        acct = self.objects.get(acct_id)
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
            self.emit("account.updated", acct, ctx, acct_id, prev)
        return acct

    def account_complete_onboarding(self, acct_id: str, ctx: Optional[Ctx] = None
                                    ) -> Dict[str, Any]:
        acct = self.objects.get(acct_id)
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
        acct["tos_acceptance"] = {"date": self.now(), "ip": "127.0.0.1",
                                  "user_agent": "fake-stripe-onboarding"}
        if acct["business_type"] is None:
            acct["business_type"] = "individual"
        prev = {k: v for k, v in prev.items() if acct[k] != v}
        if prev:
            self.emit("account.updated", acct, ctx, acct_id, prev)
        return acct

    def account_deauthorize(self, acct_id: str) -> Dict[str, Any]:
        acct = self.objects.get(acct_id)
        if not acct or acct.get("object") != "account":
            raise missing("account", acct_id)
        app = {"id": PLATFORM_APPLICATION, "object": "application", "name": "Fake Platform"}
        self.deauthorized.add(acct_id)
        return self.emit("account.application.deauthorized", app, None, acct_id)

    def account_link_create(self, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
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
        self._check_account_access(acct_id)
        acct = self.objects.get(acct_id)
        if acct is None or acct.get("object") != "account":
            raise invalid(f"No such account: '{acct_id}'", param="account",
                          code="resource_missing")
        if type_ == "account_update" and acct["type"] == "express":
            raise invalid("You cannot create `account_update` type Account Links for Express "
                          "accounts.", param="type")
        token = rand(32)
        now = self.now()
        url = f"{self.public_url()}/setup/e/{acct_id}/{token}"
        self.links[token] = {"account": acct_id, "refresh_url": refresh, "return_url": ret,
                             "type": type_, "created": now,
                             "expires_at": now + self.account_link_ttl, "used": False,
                             "url": url}
        return {"object": "account_link", "created": now,
                "expires_at": now + self.account_link_ttl, "url": url}

    def login_link_create(self, ctx: Ctx, acct_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ("redirect_url",))
        self._check_account_access(acct_id)
        acct = self.objects.get(acct_id)
        if acct is None or acct.get("object") != "account":
            raise missing("account", acct_id, param="account")
        if acct["type"] != "express":
            raise state_error("Login links can only be created for Express accounts.",
                              code=None, param="account")
        if not acct["details_submitted"]:
            raise state_error("Cannot create a login link for an account that has not "
                              "completed onboarding.", code=None, param="account")
        token = rand(32)
        url = f"{self.public_url()}/express/{acct_id}/{token}"
        self.login_links[token] = {"account": acct_id, "created": self.now()}
        return {"object": "login_link", "created": self.now(), "url": url}

    # ---- hosted onboarding page ------------------------------------------------------
    def onboarding_open(self, token: str) -> Tuple[str, Optional[str], Dict[str, Any]]:
        """GET of an account link URL -> ("page", session, link) | ("redirect", url, link)
        | ("missing", None, {})."""
        link = self.links.get(token)
        if link is None:
            return "missing", None, {}
        if link["used"] or self.now() >= link["expires_at"]:
            return "redirect", link["refresh_url"], link
        link["used"] = True
        session = rand(32)
        self.sessions[session] = {"token": token, "account": link["account"], "done": False}
        return "page", session, link

    def onboarding_submit(self, token: str, session: str, action: str
                          ) -> Tuple[str, Optional[str]]:
        link = self.links.get(token)
        if link is None:
            return "missing", None
        s = self.sessions.get(session)
        if s is None or s["token"] != token or s["done"]:
            return "redirect", link["refresh_url"]
        s["done"] = True
        if action == "complete":
            self.account_complete_onboarding(link["account"])
        return "done", link["return_url"]

    # =================================================================================
    # Transfers and reversals
    # =================================================================================
    def _new_transfer(self, ctx: Ctx, account: Optional[str], amount: int, currency: str,
                      destination: str, source_transaction: Optional[str],
                      transfer_group: Optional[str], metadata: Dict[str, str],
                      description: Optional[str] = None) -> Dict[str, Any]:
        tr_id = new_id("tr")
        tr = {
            "id": tr_id, "object": "transfer", "amount": amount, "amount_reversed": 0,
            "balance_transaction": None, "created": self.now(), "currency": currency,
            "description": description, "destination": destination,
            "destination_payment": new_id("py"), "livemode": False, "metadata": metadata,
            "reversals": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                          "url": f"/v1/transfers/{tr_id}/reversals"},
            "reversed": False, "source_transaction": source_transaction,
            "source_type": "card", "transfer_group": transfer_group,
        }
        tr["balance_transaction"] = self._txn(-amount, currency, "transfer", tr_id, account)
        self.put(tr, account)
        self.emit("transfer.created", tr, ctx, account)
        return tr

    def transfer_create(self, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ("amount", "currency", "destination", "source_transaction",
                          "transfer_group", "metadata", "description", "source_type"))
        amount = get_int(p, "amount", required=True, minimum=1)
        currency = check_currency(get_str(p, "currency"))
        dest = get_str(p, "destination", required=True)
        src = get_str(p, "source_transaction")
        tg = get_str(p, "transfer_group")
        metadata = apply_metadata({}, p)
        self._check_account_access(dest)
        acct = self.objects.get(dest)
        if acct is None or acct.get("object") != "account":
            raise invalid(f"No such destination: '{dest}'", param="destination",
                          code="resource_missing")
        if acct.get("capabilities", {}).get("transfers") != "active":
            raise invalid("Your destination account needs to have at least one of the following "
                          "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                          param="destination", code="insufficient_capabilities_for_transfer")
        if src:
            ch = self.objects.get(src)
            if ch is None or ch.get("object") != "charge" or self.scope[src] != ctx.account:
                raise invalid(f"No such charge: '{src}'", param="source_transaction",
                              code="resource_missing")
            if ch["status"] != "succeeded" or not ch["captured"]:
                raise invalid("The source_transaction charge must be a succeeded, captured "
                              "charge.", param="source_transaction")
            if ch["currency"] != currency:
                raise invalid("The currency of source_transaction's balance transaction must "
                              "match the transfer currency.", param="currency")
            already = sum(t["amount"] - t["amount_reversed"] for t, _ in self.scan()
                          if t.get("object") == "transfer" and t["source_transaction"] == src)
            available = ch["amount_captured"] - (ch["amount_refunded"] -
                                                 (ch["amount"] - ch["amount_captured"])) - already
            if amount > available:
                raise state_error(
                    f"Insufficient funds in Stripe account. The transfer amount ({amount}) "
                    f"exceeds the remaining amount available from source_transaction "
                    f"{src} ({available}).", code="balance_insufficient", param="amount")
        return self._new_transfer(ctx, ctx.account, amount, currency, dest, src, tg, metadata,
                                  get_str(p, "description"))

    def transfer_retrieve(self, ctx: Ctx, tr_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ())
        return self.get(tr_id, ctx, "transfer")

    def transfer_update(self, ctx: Ctx, tr_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ("metadata", "description"))
        tr = self.get(tr_id, ctx, "transfer")
        prev = {"metadata": deep(tr["metadata"])}
        tr["metadata"] = apply_metadata(tr["metadata"], p)
        if "description" in p:
            prev["description"] = tr["description"]
            tr["description"] = get_str(p, "description") or None
        self.emit("transfer.updated", tr, ctx, self.scope[tr_id], prev)
        return tr

    def transfer_list(self, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
        return self._list(ctx, p, "transfer", "/v1/transfers", ("destination", "transfer_group"))

    def _reverse_transfer(self, ctx: Ctx, tr: Dict[str, Any], amount: int,
                          metadata: Dict[str, str], account: Optional[str],
                          source_refund: Optional[str] = None,
                          description: Optional[str] = None) -> Dict[str, Any]:
        trr = {"id": new_id("trr"), "object": "transfer_reversal", "amount": amount,
               "balance_transaction": None, "created": self.now(), "currency": tr["currency"],
               "destination_payment_refund": new_id("pyr"), "metadata": metadata,
               "source_refund": source_refund, "transfer": tr["id"]}
        trr["balance_transaction"] = self._txn(amount, tr["currency"], "transfer_refund",
                                               trr["id"], account)
        self.put(trr, account)
        tr["amount_reversed"] += amount
        tr["reversed"] = tr["amount_reversed"] >= tr["amount"]
        tr["reversals"]["data"].insert(0, deep(trr))
        tr["reversals"]["total_count"] += 1
        self.emit("transfer.reversed", tr, ctx, account)
        return trr

    def reversal_create(self, ctx: Ctx, tr_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ("amount", "metadata", "description", "refund_application_fee"))
        tr = self.get(tr_id, ctx, "transfer")
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
        return self._reverse_transfer(ctx, tr, amount, apply_metadata({}, p),
                                      self.scope[tr_id], description=get_str(p, "description"))

    def reversal_list(self, ctx: Ctx, tr_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ("limit", "starting_after", "ending_before"))
        tr = self.get(tr_id, ctx, "transfer")
        items = [self.objects[r["id"]] for r in tr["reversals"]["data"]]
        return paginate(items, p, f"/v1/transfers/{tr_id}/reversals")

    def reversal_retrieve(self, ctx: Ctx, tr_id: str, trr_id: str, p: Dict[str, Any]
                          ) -> Dict[str, Any]:
        check_unknown(p, ())
        self.get(tr_id, ctx, "transfer")
        trr = self.get(trr_id, ctx, "transfer_reversal")
        if trr["transfer"] != tr_id:
            raise missing("transfer_reversal", trr_id)
        return trr

    # =================================================================================
    # Disputes
    # =================================================================================
    def dispute_create(self, ch_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        """Control: the cardholder's bank opens a dispute on a charge."""
        ch = self.objects.get(ch_id)
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
        account = self.scope[ch_id]
        now = self.now()
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
        self.put(dp, account)
        ch["disputed"] = True
        ch["dispute"] = dp["id"]
        self.emit("charge.dispute.created", dp, None, account)
        if not inquiry:
            txn = self._txn(-amount - 1500, ch["currency"], "adjustment", dp["id"], account,
                            description=f"Chargeback withdrawal for {ch_id}")
            dp["balance_transactions"].append(self.clean(deep(self.objects[txn])))
            self.emit("charge.dispute.funds_withdrawn", dp, None, account)
        return dp

    def dispute_retrieve(self, ctx: Ctx, dp_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ())
        return self.get(dp_id, ctx, "dispute")

    def dispute_update(self, ctx: Ctx, dp_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ("evidence", "metadata", "submit"))
        dp = self.get(dp_id, ctx, "dispute")
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
            dp["evidence_details"]["past_due"] = self.now() > dp["evidence_details"]["due_by"]
            dp["status"] = ("warning_under_review" if dp["status"] == "warning_needs_response"
                            else "under_review")
        if prev:
            self.emit("charge.dispute.updated", dp, ctx, self.scope[dp_id], prev)
        return dp

    def dispute_close(self, ctx: Ctx, dp_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ())
        dp = self.get(dp_id, ctx, "dispute")
        if dp["status"] not in ("needs_response", "warning_needs_response"):
            raise state_error(f"This dispute has status {dp['status']} and can no longer be "
                              f"closed.", code=None)
        prev = {"status": dp["status"]}
        dp["status"] = "warning_closed" if dp["status"] == "warning_needs_response" else "lost"
        self.emit("charge.dispute.closed", dp, ctx, self.scope[dp_id], prev)
        return dp

    def dispute_resolve(self, dp_id: str, outcome: str) -> Dict[str, Any]:
        """Control: the network decides (won | lost | warning_closed)."""
        dp = self.objects.get(dp_id)
        if dp is None or dp.get("object") != "dispute":
            raise missing("dispute", dp_id)
        if outcome not in ("won", "lost", "warning_closed"):
            raise invalid("outcome must be won, lost or warning_closed", param="outcome")
        if dp["status"] in ("won", "lost", "warning_closed"):
            raise state_error(f"Dispute {dp_id} is already closed ({dp['status']}).", code=None)
        account = self.scope[dp_id]
        prev = {"status": dp["status"]}
        if outcome == "won" and dp["balance_transactions"]:
            txn = self._txn(dp["amount"] + 1500, dp["currency"], "adjustment", dp_id, account,
                            description=f"Chargeback reversal for {dp['charge']}")
            dp["balance_transactions"].append(self.clean(deep(self.objects[txn])))
            dp["status"] = "won"
            self.emit("charge.dispute.funds_reinstated", dp, None, account)
        dp["status"] = outcome
        self.emit("charge.dispute.closed", dp, None, account, prev)
        return dp

    def dispute_list(self, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
        return self._list(ctx, p, "dispute", "/v1/disputes", ("charge", "payment_intent"))

    # =================================================================================
    # Payouts (control only: the app only receives payout.* events)
    # =================================================================================
    def payout_simulate(self, acct_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        acct = self.objects.get(acct_id)
        if not acct or acct.get("object") != "account":
            raise missing("account", acct_id)
        status = p.get("status", "paid")
        if status not in ("paid", "failed"):
            raise invalid("status must be paid or failed", param="status")
        amount = int(p.get("amount", 1000))
        po = {"id": new_id("po"), "object": "payout", "amount": amount,
              "arrival_date": self.now() + 86400, "automatic": True,
              "balance_transaction": None, "created": self.now(),
              "currency": p.get("currency", "usd"), "description": "STRIPE PAYOUT",
              "destination": new_id("ba"), "failure_balance_transaction": None,
              "failure_code": None, "failure_message": None, "livemode": False,
              "metadata": {}, "method": "standard", "reconciliation_status": "not_applicable",
              "source_type": "card", "statement_descriptor": None, "status": "pending",
              "type": "bank_account"}
        po["balance_transaction"] = self._txn(-amount, po["currency"], "payout", po["id"],
                                              acct_id)
        self.put(po, acct_id)
        self.emit("payout.created", po, None, acct_id)
        prev = {"status": "pending"}
        if status == "paid":
            po["status"] = "paid"
            self.emit("payout.paid", po, None, acct_id, prev)
        else:
            po["status"] = "failed"
            po["failure_code"] = p.get("failure_code", "account_closed")
            po["failure_message"] = "The bank account has been closed."
            self.emit("payout.failed", po, None, acct_id, prev)
        return po

    # =================================================================================
    # Events
    # =================================================================================
    def event_retrieve(self, ctx: Ctx, evt_id: str, p: Dict[str, Any]) -> Dict[str, Any]:
        check_unknown(p, ())
        return self.get(evt_id, ctx, "event")

    def event_list(self, ctx: Ctx, p: Dict[str, Any]) -> Dict[str, Any]:
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
        items = [o for o, account in self.scan()
                 if o.get("object") == "event" and account == ctx.account
                 and cf(o["created"]) and tmatch(o["type"])]
        return paginate(items, p, "/v1/events")

    def emit_custom(self, type_: str, obj: Dict[str, Any], account: Optional[str]
                    ) -> Dict[str, Any]:
        return self.emit(type_, obj, None, account)
