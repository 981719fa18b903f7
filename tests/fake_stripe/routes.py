"""Routing: `Router` (method + path pattern -> handler, path parameters extracted once) and the
table of the `/v1/...` API.

An API handler is called as `handler(state, ctx, *path_params, params)`, which is the
signature of the resource modules' functions (`payment_intents.retrieve(st, ctx, pi_id, p)`).
"""
from __future__ import annotations

import functools
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import (account_links, accounts, balance, charges, disputes, events, payment_intents,
               refunds, transfers, webhook_endpoints)
from .state import State

Handler = Callable[..., Any]


def compile_pattern(pattern: str, segment: str = r"[A-Za-z0-9_]+") -> "re.Pattern[str]":
    """`/v1/transfers/{id}/reversals/{trr}` -> a regex with one named group per `{name}`
    (`{name:regex}` sets the group's regex; the default matches one id-like segment)."""
    def group(m: "re.Match[str]") -> str:
        return f"(?P<{m.group(1)}>{m.group(2) or segment})"
    return re.compile("^" + re.sub(r"\{(\w+)(?::([^}]+))?\}", group, pattern) + "$")


class Router:
    def __init__(self, segment: str = r"[A-Za-z0-9_]+"):
        self.segment = segment
        self.routes: List[Tuple[str, "re.Pattern[str]", Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> Handler:
        """`method` "*" matches any method. The first route that matches wins."""
        self.routes.append((method, compile_pattern(pattern, self.segment), handler))
        return handler

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        return lambda fn: self.add(method, pattern, fn)

    def match(self, method: str, path: str) -> Optional[Tuple[Handler, Dict[str, str]]]:
        for m, rx, fn in self.routes:
            mm = rx.match(path)
            if mm and m in ("*", method):
                return fn, mm.groupdict()
        return None


def _simple(kind: str) -> Handler:
    """GET of an object without behaviour of its own."""
    return functools.partial(State.retrieve, kind=kind)


API = Router()
for _method, _pattern, _handler in (
    ("POST", "/v1/payment_intents", payment_intents.create),
    ("GET", "/v1/payment_intents", payment_intents.list_),
    ("GET", "/v1/payment_intents/{id}", payment_intents.retrieve),
    ("POST", "/v1/payment_intents/{id}", payment_intents.update),
    ("POST", "/v1/payment_intents/{id}/confirm", payment_intents.confirm),
    ("POST", "/v1/payment_intents/{id}/capture", payment_intents.capture),
    ("POST", "/v1/payment_intents/{id}/cancel", payment_intents.cancel),
    ("GET", "/v1/charges", charges.list_),
    ("GET", "/v1/charges/{id}", charges.retrieve),
    ("POST", "/v1/refunds", refunds.create),
    ("GET", "/v1/refunds", refunds.list_),
    ("GET", "/v1/refunds/{id}", refunds.retrieve),
    ("POST", "/v1/refunds/{id}", refunds.update),
    ("POST", "/v1/refunds/{id}/cancel", refunds.cancel),
    ("POST", "/v1/accounts", accounts.create),
    ("GET", "/v1/accounts", accounts.list_),
    ("GET", "/v1/account", accounts.retrieve_own),
    ("GET", "/v1/accounts/{id}", accounts.retrieve),
    ("POST", "/v1/accounts/{id}", accounts.update),
    ("POST", "/v1/accounts/{id}/login_links", account_links.create_login_link),
    ("POST", "/v1/account_links", account_links.create_link),
    ("POST", "/v1/transfers", transfers.create),
    ("GET", "/v1/transfers", transfers.list_),
    ("GET", "/v1/transfers/{id}", transfers.retrieve),
    ("POST", "/v1/transfers/{id}", transfers.update),
    ("POST", "/v1/transfers/{id}/reversals", transfers.create_reversal),
    ("GET", "/v1/transfers/{id}/reversals", transfers.list_reversals),
    ("GET", "/v1/transfers/{id}/reversals/{trr}", transfers.retrieve_reversal),
    ("GET", "/v1/disputes", disputes.list_),
    ("GET", "/v1/disputes/{id}", disputes.retrieve),
    ("POST", "/v1/disputes/{id}", disputes.update),
    ("POST", "/v1/disputes/{id}/close", disputes.close),
    ("GET", "/v1/events", events.list_),
    ("GET", "/v1/events/{id}", events.retrieve),
    ("POST", "/v1/webhook_endpoints", webhook_endpoints.create),
    ("GET", "/v1/webhook_endpoints", webhook_endpoints.list_),
    ("GET", "/v1/webhook_endpoints/{id}", webhook_endpoints.retrieve),
    ("POST", "/v1/webhook_endpoints/{id}", webhook_endpoints.update),
    ("DELETE", "/v1/webhook_endpoints/{id}", webhook_endpoints.delete),
    ("GET", "/v1/payment_methods/{id}", _simple("payment_method")),
    ("GET", "/v1/balance", balance.retrieve),
    ("GET", "/v1/payouts", balance.list_payouts),
    ("GET", "/v1/balance_transactions/{id}", _simple("balance_transaction")),
    ("GET", "/v1/application_fees/{id}", _simple("application_fee")),
):
    API.add(_method, _pattern, _handler)

# Stripe.js (publishable key + client_secret) may only use these paths:
PUBLISHABLE_OK = [compile_pattern("/v1/payment_intents/{id}"),
                  compile_pattern("/v1/payment_intents/{id}/confirm")]
