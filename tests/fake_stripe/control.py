"""The control API (`/_control/...`): what tests use to play the card network, the buyer's
browser and the clock, and to inspect or steer the fake (faults, the request log, webhook
delivery). Loopback only; JSON or form bodies in, JSON out. See docs/stripe-fake.md.

A handler is called as `handler(fake, query, body, **path_params)` and returns
(status, JSON-ready body).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, Dict, Tuple
from urllib.parse import parse_qsl

from . import (account_links, accounts, balance, control_webhooks, disputes, events,
               payment_intents, payment_methods, refunds, webhook_endpoints)
from .forms import FormError, parse_form
from .routes import Router
from .state import Ctx
from .util import deep

if TYPE_CHECKING:
    from .handler import RequestHandler
    from .server import FakeStripe

Reply = Tuple[int, Any]
CONTROL = Router(segment=r"[^/]+")
route = CONTROL.route


def handle(http: "RequestHandler", method: str, path: str, query: str) -> None:
    """Loopback only; a JSON or form body; the answer is JSON."""
    fake = http.server_fake
    client = http.client_address[0]
    if not (client.startswith("127.") or client in ("::1", "::ffff:127.0.0.1")):
        http.send_json(403, {"error": {"message": "control API is loopback-only"}})
        return
    raw = http.read_body()
    body: Dict[str, Any] = {}
    if raw:
        ctype = http.headers.get("Content-Type", "")
        try:
            if "json" in ctype or raw.lstrip().startswith(b"{"):
                body = json.loads(raw.decode("utf-8"))
            else:
                body = parse_form(raw.decode("utf-8"))
        except (ValueError, FormError) as e:
            http.send_json(400, {"error": {"message": f"bad body: {e}"}})
            return
    q = dict(parse_qsl(query))
    status, out = fake.control(method, path, q, body)
    if method != "GET":
        fake.save_state()  # e.g. the clock or the refund mode (nothing to write: no line)
    http.send_json(status, out)


def dispatch(fake: "FakeStripe", method: str, path: str, q: Dict[str, str],
             body: Dict[str, Any]) -> Reply:
    parts = [p for p in path.split("/") if p][1:]  # drop "_control"
    found = CONTROL.match(method, "/" + "/".join(parts))
    try:
        if found:
            handler, params = found
            return handler(fake, q, body, **params)
    except (ValueError, KeyError, TypeError) as e:
        return 400, {"error": {"type": "invalid_request_error",
                               "message": f"bad control request: {e}"}}
    return 404, {"error": {"type": "invalid_request_error",
                           "message": f"Unknown control endpoint {method} {path}"}}


def _stateful(fake: "FakeStripe", fn: Callable[[], Any]) -> Reply:
    """Run `fn` on the state (under its lock), save, and answer like the API: 200 with the
    object, or the StripeError's status and body."""
    def locked() -> Any:
        with fake.core.lock:
            out = fn()
            return fake.core.clean(deep(out)) if isinstance(out, dict) else out
    return fake.control_call(locked)


# ---- the fake itself -------------------------------------------------------------------
@route("*", "/health")
def health(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]) -> Reply:
    return 200, {"ok": True, "url": fake.url}


@route("POST", "/reset")
def reset(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]) -> Reply:
    fake.reset()
    fake.save_state()
    return 200, {"reset": True}


@route("POST", "/faults")
def add_fault(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]) -> Reply:
    return 200, fake.inject_fault(**body)


@route("DELETE", "/faults")
def clear_faults(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]) -> Reply:
    with fake.meta_lock:
        fake.faults.clear()
    return 200, {"cleared": True}


@route("*", "/faults")
def list_faults(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]) -> Reply:
    with fake.meta_lock:
        return 200, {"data": [f.to_dict() for f in fake.faults]}


@route("DELETE", "/faults/{fault_id}")
def delete_fault(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
                 fault_id: str) -> Reply:
    with fake.meta_lock:
        fake.faults = [f for f in fake.faults if f.id != fault_id]
    return 200, {"deleted": fault_id}


@route("DELETE", "/requests")
def clear_requests(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]) -> Reply:
    fake.clear_requests()
    return 200, {"cleared": True}


@route("POST", "/requests")
def clear_requests_by_post(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]
                           ) -> Reply:
    return clear_requests(fake, q, body) if body.get("clear") else list_requests(fake, q, body)


@route("*", "/requests")
def list_requests(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]) -> Reply:
    data = fake.received(q.get("method"), q.get("path_prefix"), q.get("idempotency_key"),
                         q.get("account"))
    since = q.get("since")
    if since:
        data = [r for r in data if r["time"] >= float(since)]
    return 200, {"data": data}


@route("*", "/clock")
def clock(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]) -> Reply:
    return 200, {"now": fake.core.now(), "offset": fake.core.clock_offset}


@route("POST", "/date_offset")
def date_offset(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]) -> Reply:
    """The HTTP `Date` header runs `seconds` off real time (a skewed server clock)."""
    fake.date_offset = float(body.get("seconds", 0))
    return 200, {"date_offset": fake.date_offset}


@route("POST", "/clock/advance")
def advance_clock(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]) -> Reply:
    fake.core.advance_clock(int(body.get("seconds", 0)))
    return clock(fake, q, body)


@route("*", "/objects/{obj_id}")
def get_object(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
               obj_id: str) -> Reply:
    c = fake.core
    with c.lock:
        obj = c.objects.peek(obj_id)
        if obj is None:
            return 404, {"error": {"type": "invalid_request_error",
                                   "message": f"No such object: {obj_id}"}}
        return 200, {"object": c.clean(deep(obj)), "account": c.scope.peek(obj_id)}


@route("POST", "/events")
def emit_event(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]) -> Reply:
    with fake.core.lock:
        return 200, events.emit_custom(fake.core, body["type"], body.get("object") or {},
                                       body.get("account"), body.get("listed_under", False))


@route("*", "/events")
def list_events(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]) -> Reply:
    return 200, {"data": fake.events(q.get("type"))}


@route("*", "/test_payment_methods")
def test_payment_methods(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]
                         ) -> Reply:
    return 200, {"data": payment_methods.catalogue()}


# ---- the buyer's browser and the card network ------------------------------------------
@route("POST", "/payment_intents/{pi_id}/confirm")
def confirm(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any], pi_id: str) -> Reply:
    return fake.confirm_payment_intent(pi_id, body.get("payment_method", "pm_card_visa"))


@route("POST", "/payment_intents/{pi_id}/authenticate")
def authenticate(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
                 pi_id: str) -> Reply:
    succeed = body.get("outcome", "succeed") in ("succeed", "success", "succeeded")
    return _stateful(fake, lambda: fake.core.clean(
        payment_intents.authenticate(fake.core, pi_id, succeed)))


@route("POST", "/charges/{ch_id}/dispute")
def open_dispute(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
                 ch_id: str) -> Reply:
    return _stateful(fake, lambda: disputes.open_dispute(fake.core, ch_id, body))


@route("POST", "/disputes/{dp_id}/{action:close|resolve}")
def resolve_dispute(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
                    dp_id: str, action: str) -> Reply:
    outcome = body.get("outcome", body.get("status", "lost"))
    return _stateful(fake, lambda: disputes.resolve(fake.core, dp_id, outcome))


@route("POST", "/authorizations/window")
def authorization_window(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]) -> Reply:
    days = body.get("days", 7)
    if not isinstance(days, int) or not 1 <= days <= 30:
        return 400, {"error": {"message": "days must be an integer from 1 to 30"}}
    with fake.core.lock:
        fake.core.authorization_window_days = days
    return 200, {"days": days}


@route("POST", "/refunds/mode")
def refund_mode(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]) -> Reply:
    mode = body.get("status", "succeeded")
    if mode not in refunds.MODES:
        return 400, {"error": {"message": "status must be succeeded or pending"}}
    with fake.core.lock:
        refunds.set_mode(fake.core, mode)
    return 200, {"status": mode}


@route("POST", "/refunds/{re_id}/status")
def refund_status(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
                  re_id: str) -> Reply:
    return _stateful(fake, lambda: refunds.set_status(
        fake.core, re_id, body.get("status", "succeeded"), body.get("failure_reason")))


# ---- connected accounts ----------------------------------------------------------------
@route("POST", "/accounts/{acct}/complete_onboarding")
def complete_onboarding(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
                        acct: str) -> Reply:
    return _stateful(fake, lambda: account_links.complete_onboarding(fake.core, acct))


@route("POST", "/accounts/{acct}/update")
def update_account(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
                   acct: str) -> Reply:
    return _stateful(fake, lambda: account_links.set_state(fake.core, acct, body))


@route("POST", "/accounts/{acct}/deauthorize")
def deauthorize(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
                acct: str) -> Reply:
    return _stateful(fake, lambda: accounts.deauthorize(fake.core, acct))


@route("POST", "/accounts/{acct}/payouts")
def payout(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any], acct: str) -> Reply:
    return _stateful(fake, lambda: balance.simulate_payout(fake.core, acct, body))


@route("POST", "/accounts/{acct}/balance")
def set_balance(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any], acct: str) -> Reply:
    """Set a connected account's available balance (`amount`, and `debit_negative_balances`);
    refunds that were waiting for funds and are now covered then succeed."""
    def apply() -> Dict[str, Any]:
        balance.set_available(fake.core, acct, body)
        covered = refunds.cover_waiting(fake.core, acct)
        return {"balance": balance.retrieve(fake.core, Ctx(account=acct), {}),
                "refunds_succeeded": [r["id"] for r in covered]}
    return _stateful(fake, apply)


@route("POST", "/account_links/expire")
def expire_links(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]) -> Reply:
    with fake.core.lock:
        n = account_links.expire_links(fake.core, body.get("url"), body.get("account"))
    return 200, {"expired": n}


@route("*", "/account_links")
def list_links(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]) -> Reply:
    with fake.core.lock:
        return 200, {"data": account_links.list_links(fake.core)}


# ---- webhook endpoints (the objects of /v1/webhook_endpoints) ------------------------------
@route("*", "/webhook_endpoints")
def list_webhook_endpoints(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any]) -> Reply:
    with fake.core.lock:
        return 200, {"data": webhook_endpoints.all_endpoints(fake.core)}


@route("POST", "/webhook_endpoints/{we_id}")
def force_webhook_endpoint(fake: "FakeStripe", q: Dict[str, str], body: Dict[str, Any],
                           we_id: str) -> Reply:
    return _stateful(fake, lambda: webhook_endpoints.force(fake.core, we_id, body))


# ---- webhook delivery ---------------------------------------------------------------------
control_webhooks.mount(CONTROL, "/webhooks")
