"""HTTP layer of the fake: auth, idempotency, faults, request log, control API, pages."""
from __future__ import annotations

import base64
import collections
import hashlib
import html
import json
import re
import socket
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Set, Tuple, Union
from urllib.parse import parse_qsl, urlsplit

from .core import DEFAULT_API_VERSION, Core, Ctx, TEST_PAYMENT_METHODS
from .errors import StripeError, invalid
from .forms import FormError, parse_form
from .persist import StateFile
from .util import deep, get_list, rand, request_id
from .webhooks import Dispatcher, Endpoint, sign

Handler = Callable[..., Dict[str, Any]]

# The request log keeps the most recent entries only, so a long `make run` does not grow
# without bound. Far above what a test needs (the whole suite makes a few thousand requests);
# an entry is about 2 KB, so a full log is some tens of MB.
REQUEST_LOG_LIMIT = 20_000

IdemKey = Tuple[str, Optional[str], str]  # (secret key's digest, Stripe-Account, Idempotency-Key)

# (method, regex, core method name, extra kwargs builder)
ROUTES: List[Tuple[str, "re.Pattern[str]", Callable[..., Dict[str, Any]]]] = []


def route(method: str, pattern: str):
    def deco(fn):
        ROUTES.append((method, re.compile("^" + pattern + "$"), fn))
        return fn
    return deco


_ID = r"([A-Za-z0-9_]+)"

# ---- API routes ----------------------------------------------------------------------
route("POST", r"/v1/payment_intents")(
    lambda c, ctx, p, f: c.pi_create(ctx, p))
route("GET", r"/v1/payment_intents")(lambda c, ctx, p, f: c.pi_list(ctx, p))
route("GET", rf"/v1/payment_intents/{_ID}")(lambda c, ctx, p, f, i: c.pi_retrieve(ctx, i, p))
route("POST", rf"/v1/payment_intents/{_ID}")(lambda c, ctx, p, f, i: c.pi_update(ctx, i, p))
route("POST", rf"/v1/payment_intents/{_ID}/confirm")(
    lambda c, ctx, p, f, i: c.pi_confirm(ctx, i, p))
route("POST", rf"/v1/payment_intents/{_ID}/capture")(
    lambda c, ctx, p, f, i: c.pi_capture(ctx, i, p))
route("POST", rf"/v1/payment_intents/{_ID}/cancel")(
    lambda c, ctx, p, f, i: c.pi_cancel(ctx, i, p))
route("GET", r"/v1/charges")(lambda c, ctx, p, f: c.charge_list(ctx, p))
route("GET", rf"/v1/charges/{_ID}")(lambda c, ctx, p, f, i: c.charge_retrieve(ctx, i, p))
route("POST", r"/v1/refunds")(lambda c, ctx, p, f: c.refund_create(ctx, p))
route("GET", r"/v1/refunds")(lambda c, ctx, p, f: c.refund_list(ctx, p))
route("GET", rf"/v1/refunds/{_ID}")(lambda c, ctx, p, f, i: c.refund_retrieve(ctx, i, p))
route("POST", rf"/v1/refunds/{_ID}")(lambda c, ctx, p, f, i: c.refund_update(ctx, i, p))
route("POST", rf"/v1/refunds/{_ID}/cancel")(lambda c, ctx, p, f, i: c.refund_cancel(ctx, i, p))
route("POST", r"/v1/accounts")(lambda c, ctx, p, f: c.account_create(ctx, p))
route("GET", r"/v1/accounts")(lambda c, ctx, p, f: c.account_list(ctx, p))
route("GET", r"/v1/account")(lambda c, ctx, p, f: c.account_retrieve(ctx, None, p))
route("GET", rf"/v1/accounts/{_ID}")(lambda c, ctx, p, f, i: c.account_retrieve(ctx, i, p))
route("POST", rf"/v1/accounts/{_ID}")(lambda c, ctx, p, f, i: c.account_update(ctx, i, p))
route("POST", rf"/v1/accounts/{_ID}/login_links")(
    lambda c, ctx, p, f, i: c.login_link_create(ctx, i, p))
route("POST", r"/v1/account_links")(lambda c, ctx, p, f: c.account_link_create(ctx, p))
route("POST", r"/v1/transfers")(lambda c, ctx, p, f: c.transfer_create(ctx, p))
route("GET", r"/v1/transfers")(lambda c, ctx, p, f: c.transfer_list(ctx, p))
route("GET", rf"/v1/transfers/{_ID}")(lambda c, ctx, p, f, i: c.transfer_retrieve(ctx, i, p))
route("POST", rf"/v1/transfers/{_ID}")(lambda c, ctx, p, f, i: c.transfer_update(ctx, i, p))
route("POST", rf"/v1/transfers/{_ID}/reversals")(
    lambda c, ctx, p, f, i: c.reversal_create(ctx, i, p))
route("GET", rf"/v1/transfers/{_ID}/reversals")(
    lambda c, ctx, p, f, i: c.reversal_list(ctx, i, p))
route("GET", rf"/v1/transfers/{_ID}/reversals/{_ID}")(
    lambda c, ctx, p, f, i, j: c.reversal_retrieve(ctx, i, j, p))
route("GET", r"/v1/disputes")(lambda c, ctx, p, f: c.dispute_list(ctx, p))
route("GET", rf"/v1/disputes/{_ID}")(lambda c, ctx, p, f, i: c.dispute_retrieve(ctx, i, p))
route("POST", rf"/v1/disputes/{_ID}")(lambda c, ctx, p, f, i: c.dispute_update(ctx, i, p))
route("POST", rf"/v1/disputes/{_ID}/close")(lambda c, ctx, p, f, i: c.dispute_close(ctx, i, p))
route("GET", r"/v1/events")(lambda c, ctx, p, f: c.event_list(ctx, p))
route("GET", rf"/v1/events/{_ID}")(lambda c, ctx, p, f, i: c.event_retrieve(ctx, i, p))
route("GET", rf"/v1/payment_methods/{_ID}")(
    lambda c, ctx, p, f, i: c.simple_retrieve(ctx, i, "payment_method", p))
route("GET", rf"/v1/balance_transactions/{_ID}")(
    lambda c, ctx, p, f, i: c.simple_retrieve(ctx, i, "balance_transaction", p))
route("GET", rf"/v1/application_fees/{_ID}")(
    lambda c, ctx, p, f, i: c.simple_retrieve(ctx, i, "application_fee", p))

# Stripe.js (publishable key + client_secret) may only do these:
PUBLISHABLE_OK = [re.compile(rf"^/v1/payment_intents/{_ID}$"),
                  re.compile(rf"^/v1/payment_intents/{_ID}/confirm$")]


class Fault:
    TYPES = ("error", "rate_limit", "lock_timeout", "delay", "drop", "decline")

    def __init__(self, spec: Dict[str, Any]):
        self.id = "flt_" + rand(10)
        self.type = spec.get("type", "error")
        if self.type not in self.TYPES:
            raise ValueError(f"type must be one of {', '.join(self.TYPES)}")
        self.method = str(spec.get("method", "*")).upper()
        self.path_prefix = spec.get("path_prefix") or spec.get("path") or "/v1/"
        self.account = spec.get("account")
        self.remaining = int(spec.get("count", 1))
        self.status = spec.get("status")
        self.delay_ms = int(spec.get("delay_ms", 0))
        self.when = spec.get("when", "before")
        if self.when not in ("before", "after"):
            raise ValueError("when must be before or after")
        self.should_retry = spec.get("should_retry")
        self.decline_code = spec.get("decline_code", "generic_decline")
        self.error = spec.get("error") or {}
        self.store = bool(spec.get("idempotent_store", False))
        self.hits = 0
        if self.type == "delay" and self.delay_ms <= 0:
            raise ValueError("delay faults need delay_ms > 0")

    def matches(self, method: str, path: str, account: Optional[str]) -> bool:
        if self.remaining <= 0:
            return False
        if self.method not in ("*", method):
            return False
        if not path.startswith(self.path_prefix):
            return False
        if self.account is not None and self.account != account:
            return False
        if self.type == "decline" and not (method == "POST" and (
                path.endswith("/confirm") or path == "/v1/payment_intents")):
            return False  # a decline only makes sense where a card is charged
        return True

    def error_response(self) -> StripeError:
        if self.type == "rate_limit":
            e = StripeError(int(self.status or 429), "invalid_request_error",
                            "Request rate limit exceeded. You can learn more about rate limits "
                            "here https://stripe.com/docs/rate-limits.", code="rate_limit",
                            store=self.store)
        elif self.type == "lock_timeout":
            e = StripeError(int(self.status or 409), "invalid_request_error",
                            "This object cannot be accessed right now because another API "
                            "request or Stripe process is currently accessing it. If you see "
                            "this error intermittently, retry the request. If you see this "
                            "error frequently and are making multiple concurrent requests to a "
                            "single object, make your requests serially or at a lower rate.",
                            code="lock_timeout", store=self.store)
            if self.should_retry is None:
                e.headers["Stripe-Should-Retry"] = "true"
        else:
            e = StripeError(int(self.status or 500), "api_error",
                            "An unknown error occurred", store=self.store)
        if self.error:
            e.type = self.error.get("type", e.type)
            e.code = self.error.get("code", e.code)
            e.message = self.error.get("message", e.message)
            e.param = self.error.get("param", e.param)
        if self.should_retry is not None:
            e.headers["Stripe-Should-Retry"] = "true" if self.should_retry in (
                True, "true", "1", 1) else "false"
        return e

    def to_dict(self) -> Dict[str, Any]:
        return {"id": self.id, "type": self.type, "method": self.method,
                "path_prefix": self.path_prefix, "account": self.account,
                "remaining": self.remaining, "hits": self.hits, "status": self.status,
                "delay_ms": self.delay_ms, "when": self.when,
                "should_retry": self.should_retry, "decline_code": self.decline_code,
                "error": self.error, "idempotent_store": self.store}


def _as_list(v: Union[None, str, Sequence[str]]) -> List[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    return [s for s in v if s]


class _Server(ThreadingHTTPServer):
    """Python's default listen queue holds 5 connections; the app opens a fresh connection for
    every Stripe call, up to STRIPE_WORKERS at once, and dropped connects come back only after
    TCP's 1 s / 3 s retransmits. Real Stripe never refuses a connection like that."""
    request_queue_size = 256


class FakeStripe:
    """A stateful, in-memory fake of the parts of Stripe the marketplace uses.

        fs = FakeStripe(platform_webhook_url=..., connect_webhook_url=...).start()
        fs.url            # e.g. "http://127.0.0.1:43121" (use as STRIPE_API_BASE)
        fs.stop()
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1", *,
                 platform_webhook_url: Optional[str] = None,
                 connect_webhook_url: Optional[str] = None,
                 platform_secrets: Union[str, Sequence[str]] = ("whsec_test_platform",),
                 connect_secrets: Union[str, Sequence[str]] = ("whsec_test_connect",),
                 tls_cert: Optional[str] = None, tls_key: Optional[str] = None,
                 state_file: Optional[str] = None, public_url: Optional[str] = None,
                 api_version: str = DEFAULT_API_VERSION, webhook_max_attempts: int = 5,
                 webhook_backoff: float = 1.0, webhook_timeout: float = 10.0,
                 account_link_ttl: int = 300, api_keys: Optional[Sequence[str]] = None,
                 log: Optional[Callable[[str], None]] = None,
                 request_log_limit: int = REQUEST_LOG_LIMIT):
        self.host = host
        self.port = port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.state_file = state_file
        self._public_url = public_url
        self.api_keys = set(api_keys) if api_keys else None
        self.log = log or (lambda msg: None)
        self.core = Core(api_version=api_version, account_link_ttl=account_link_ttl,
                         public_url=lambda: self.public_url)
        self.dispatcher = Dispatcher(
            {"platform": Endpoint("platform", platform_webhook_url, _as_list(platform_secrets)),
             "connect": Endpoint("connect", connect_webhook_url, _as_list(connect_secrets))},
            max_attempts=webhook_max_attempts, backoff=webhook_backoff,
            timeout=webhook_timeout, log=self.log)
        self.core.on_event = lambda evt, body: self.dispatcher.enqueue(evt, body)
        self.core.pending_webhooks = self.dispatcher.pending_count
        self.faults: List[Fault] = []
        self.requests: Deque[Dict[str, Any]] = collections.deque(maxlen=request_log_limit)
        self.idem: Dict[IdemKey, Dict[str, Any]] = {}
        self.idem_unsaved: Set[IdemKey] = set()  # finished since the last save_state()
        self.meta_lock = threading.RLock()
        self.httpd: Optional[ThreadingHTTPServer] = None
        self.thread: Optional[threading.Thread] = None
        self.store = StateFile(state_file) if state_file else None
        if self.store:
            self._load_state()

    # ---- lifecycle -------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def public_url(self) -> str:
        return self._public_url or self.url

    def start(self) -> "FakeStripe":
        fake = self

        class _Handler(RequestHandler):
            server_fake = fake

        httpd = _Server((self.host, self.port), _Handler)
        httpd.daemon_threads = True
        if self.tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True,
                                           do_handshake_on_connect=False)
        self.httpd = httpd
        self.port = httpd.server_address[1]
        self.dispatcher.start()
        self.thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True, name="fake-stripe-http")
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        self.dispatcher.stop()
        if self.store:
            self.compact_state()  # leave one snapshot and an empty journal behind
            self.store.close()

    def __enter__(self) -> "FakeStripe":
        return self.start() if self.httpd is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- state file (see persist.py) ------------------------------------------------
    def save_state(self) -> None:
        """Append what changed since the last save to the journal: one line, as long as the
        change, whatever the size of the state. Called after every write."""
        if not self.store:
            return
        with self.core.lock:  # held until the line is written: records stay in change order
            record = self.core.take_changes()
            idem = self._take_unsaved_idem()
            if idem:
                record["idempotency"] = idem
            if record:
                self.store.append(record)
            if self.store.wants_compaction():
                self.compact_state()

    def compact_state(self) -> None:
        """Rewrite the snapshot from memory and empty the journal (O(state): at start-up, on
        stop, on reset, and when the journal has outgrown the snapshot)."""
        if not self.store:
            return
        with self.core.lock:
            state = self.core.snapshot()
            state["idempotency"] = self._saved_idem()
            self.store.compact(state)
            self.core.mark_saved()

    def _load_state(self) -> None:
        assert self.store is not None
        snapshot, records = self.store.load()
        if snapshot:
            self.core.restore(snapshot)
            self._restore_idem(snapshot.get("idempotency", []))
        for record in records:
            self.core.apply_changes(record)
            self._restore_idem(record.get("idempotency", []))
        # Start from a fresh snapshot: the journal is replayed once, and a torn last line is
        # gone before anything is appended after it.
        self.compact_state()

    def _take_unsaved_idem(self) -> List[Dict[str, Any]]:
        with self.meta_lock:
            keys, self.idem_unsaved = self.idem_unsaved, set()
            return [_idem_to_json(k, self.idem[k]) for k in keys if k in self.idem]

    def _saved_idem(self) -> List[Dict[str, Any]]:
        """Every finished idempotency record. One still executing is left out: it is
        journaled when it finishes, and after a restart its request can be retried."""
        with self.meta_lock:
            self.idem_unsaved.clear()
            done = [(k, r) for k, r in self.idem.items() if r["status"] is not None]
        return [_idem_to_json(k, r) for k, r in done]  # finished records no longer change

    def _restore_idem(self, records: List[Dict[str, Any]]) -> None:
        with self.meta_lock:
            for r in records:
                key, rec = _idem_from_json(r)
                self.idem[key] = rec

    def record_idem_result(self, key: IdemKey, store: bool, status: int, body: bytes,
                     headers: Dict[str, str]) -> None:
        with self.meta_lock:
            if store:
                self.idem[key].update(status=status, body=body, headers=headers)
                self.idem_unsaved.add(key)
            else:
                self.idem.pop(key, None)

    # ---- Python conveniences (same operations as the control API) -------------------
    def reset(self) -> None:
        with self.core.lock, self.meta_lock:
            self.core.reset()
            self.faults.clear()
            self.requests.clear()
            self.idem.clear()
            self.idem_unsaved.clear()
            self.compact_state()  # a journal record can't say "forget everything"
        self.dispatcher.reset()

    def inject_fault(self, **spec: Any) -> Dict[str, Any]:
        f = Fault(spec)
        with self.meta_lock:
            self.faults.append(f)
        return f.to_dict()

    def received(self, method: Optional[str] = None, path_prefix: Optional[str] = None,
                 idempotency_key: Optional[str] = None, account: Optional[str] = None
                 ) -> List[Dict[str, Any]]:
        with self.meta_lock:
            out = []
            for r in self.requests:
                if method and r["method"] != method.upper():
                    continue
                if path_prefix and not r["path"].startswith(path_prefix):
                    continue
                if idempotency_key and r["headers"].get("Idempotency-Key") != idempotency_key:
                    continue
                if account and r["headers"].get("Stripe-Account") != account:
                    continue
                out.append(deep(r))
            return out

    def clear_requests(self) -> None:
        with self.meta_lock:
            self.requests.clear()

    def confirm_payment_intent(self, pi_id: str, payment_method: str = "pm_card_visa"
                               ) -> Tuple[int, Dict[str, Any]]:
        """The buyer's browser step (Stripe.js confirmCardPayment)."""
        return self._control_call(lambda: self._browser_confirm(pi_id, payment_method))

    def _browser_confirm(self, pi_id: str, payment_method: str) -> Dict[str, Any]:
        with self.core.lock:
            account = self.core.scope.get(pi_id)
            ctx = Ctx(request_id=request_id(), account=account, base_url=self.public_url)
            pi = self.core.pi_confirm(ctx, pi_id, {"payment_method": payment_method})
            return self.core.render(pi, [], ctx)

    def _control_call(self, fn: Callable[[], Dict[str, Any]]) -> Tuple[int, Dict[str, Any]]:
        try:
            out = fn()
            self.save_state()
            return 200, out
        except StripeError as e:
            self.save_state()
            return e.status, e.body()

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        return self.dispatcher.wait_idle(timeout)

    def deliveries(self, **filters: Any) -> List[Dict[str, Any]]:
        return self.dispatcher.list(**filters)

    def events(self, type_: Optional[str] = None) -> List[Dict[str, Any]]:
        with self.core.lock:
            oldest_first = [self.core.objects.peek(i) for i in self.core.order]
            return [deep(o) for o in oldest_first
                    if o.get("object") == "event" and (type_ is None or o["type"] == type_)]

    def sign(self, body: bytes, endpoint: str = "platform",
             timestamp: Optional[int] = None) -> str:
        ep = self.dispatcher.endpoints[endpoint]
        return sign(body, ep.secrets, int(time.time()) if timestamp is None else timestamp)

    # ---- control API dispatch -------------------------------------------------------
    def control(self, method: str, path: str, q: Dict[str, str], body: Dict[str, Any]
                ) -> Tuple[int, Any]:
        c = self.core
        parts = [p for p in path.split("/") if p][1:]  # drop "_control"
        m = method

        def ok(x: Any) -> Tuple[int, Any]:
            return 200, x

        try:
            if parts == ["health"]:
                return ok({"ok": True, "url": self.url})
            if parts == ["reset"] and m == "POST":
                self.reset()
                self.save_state()
                return ok({"reset": True})
            if parts == ["faults"]:
                if m == "POST":
                    return ok(self.inject_fault(**body))
                if m == "DELETE":
                    with self.meta_lock:
                        self.faults.clear()
                    return ok({"cleared": True})
                with self.meta_lock:
                    return ok({"data": [f.to_dict() for f in self.faults]})
            if len(parts) == 2 and parts[0] == "faults" and m == "DELETE":
                with self.meta_lock:
                    self.faults = [f for f in self.faults if f.id != parts[1]]
                return ok({"deleted": parts[1]})
            if parts == ["requests"]:
                if m == "DELETE" or (m == "POST" and body.get("clear")):
                    self.clear_requests()
                    return ok({"cleared": True})
                data = self.received(q.get("method"), q.get("path_prefix"),
                                     q.get("idempotency_key"), q.get("account"))
                since = q.get("since")
                if since:
                    data = [r for r in data if r["time"] >= float(since)]
                return ok({"data": data})
            if parts == ["clock"]:
                return ok({"now": c.now(), "offset": c.clock_offset})
            if parts == ["clock", "advance"] and m == "POST":
                with c.lock:
                    c.clock_offset += int(body.get("seconds", 0))
                return ok({"now": c.now(), "offset": c.clock_offset})
            if parts and parts[0] == "objects" and len(parts) == 2:
                with c.lock:
                    obj = c.objects.peek(parts[1])
                    if obj is None:
                        return 404, {"error": {"type": "invalid_request_error",
                                               "message": f"No such object: {parts[1]}"}}
                    return ok({"object": c.clean(deep(obj)), "account": c.scope.peek(parts[1])})
            if parts == ["events"] and m == "POST":
                with c.lock:
                    evt = c.emit_custom(body["type"], body.get("object") or {},
                                        body.get("account"))
                return ok(evt)
            if parts == ["events"]:
                return ok({"data": self.events(q.get("type"))})
            if len(parts) == 3 and parts[0] == "payment_intents" and m == "POST":
                pi_id, action = parts[1], parts[2]
                if action == "confirm":
                    return self.confirm_payment_intent(
                        pi_id, body.get("payment_method", "pm_card_visa"))
                if action == "authenticate":
                    return self._control_call(lambda: self._locked(
                        lambda: c.clean(c.pi_authenticate(
                            pi_id, body.get("outcome", "succeed") in ("succeed", "success",
                                                                      "succeeded")))))
            if len(parts) == 3 and parts[0] == "charges" and parts[2] == "dispute" \
                    and m == "POST":
                return self._control_call(lambda: self._locked(
                    lambda: c.dispute_create(parts[1], body)))
            if len(parts) == 3 and parts[0] == "disputes" and parts[2] in ("close", "resolve") \
                    and m == "POST":
                return self._control_call(lambda: self._locked(
                    lambda: c.dispute_resolve(parts[1], body.get("outcome", body.get(
                        "status", "lost")))))
            if len(parts) == 3 and parts[0] == "accounts" and m == "POST":
                acct, action = parts[1], parts[2]
                if action == "complete_onboarding":
                    return self._control_call(lambda: self._locked(
                        lambda: c.account_complete_onboarding(acct)))
                if action == "update":
                    return self._control_call(lambda: self._locked(
                        lambda: c.account_set_state(acct, body)))
                if action == "deauthorize":
                    return self._control_call(lambda: self._locked(
                        lambda: c.account_deauthorize(acct)))
                if action == "payouts":
                    return self._control_call(lambda: self._locked(
                        lambda: c.payout_simulate(acct, body)))
            if parts == ["refunds", "mode"] and m == "POST":
                mode = body.get("status", "succeeded")
                if mode not in ("succeeded", "pending"):
                    return 400, {"error": {"message": "status must be succeeded or pending"}}
                c.refund_mode = mode
                return ok({"status": mode})
            if len(parts) == 3 and parts[0] == "refunds" and parts[2] == "status" \
                    and m == "POST":
                return self._control_call(lambda: self._locked(lambda: c.refund_set_status(
                    parts[1], body.get("status", "succeeded"), body.get("failure_reason"))))
            if parts == ["account_links", "expire"] and m == "POST":
                n = 0
                with c.lock:
                    for tok, link in c.links.items():
                        if (body.get("url") in (None, link["url"]) and
                                body.get("account") in (None, link["account"])):
                            link["expires_at"] = c.now() - 1
                            n += 1
                return ok({"expired": n})
            if parts == ["account_links"]:
                with c.lock:
                    return ok({"data": [dict(v, token=k) for k, v in c.links.items()]})
            if parts and parts[0] == "webhooks":
                return self._control_webhooks(m, parts[1:], q, body)
            if parts == ["test_payment_methods"]:
                return ok({"data": {k: {"brand": v[0], "last4": v[1], "outcome": v[3]}
                                    for k, v in TEST_PAYMENT_METHODS.items()}})
        except (ValueError, KeyError, TypeError) as e:
            return 400, {"error": {"type": "invalid_request_error",
                                   "message": f"bad control request: {e}"}}
        return 404, {"error": {"type": "invalid_request_error",
                               "message": f"Unknown control endpoint {method} {path}"}}

    def _locked(self, fn: Callable[[], Any]) -> Any:
        with self.core.lock:
            out = fn()
            return self.core.clean(deep(out)) if isinstance(out, dict) else out

    def _control_webhooks(self, m: str, parts: List[str], q: Dict[str, str],
                          body: Dict[str, Any]) -> Tuple[int, Any]:
        d = self.dispatcher
        ep = body.get("endpoint") or q.get("endpoint")
        if ep is not None and ep not in d.endpoints:
            raise ValueError("endpoint must be platform or connect")
        if parts == ["deliveries"] or parts == []:
            return 200, {"data": d.list(q.get("event_id"), q.get("endpoint"), q.get("state"),
                                        q.get("type")),
                         "paused": {k: v.paused for k, v in d.endpoints.items()}}
        if parts == ["pause"] and m == "POST":
            d.pause(ep)
            return 200, {"paused": {k: v.paused for k, v in d.endpoints.items()}}
        if parts == ["resume"] and m == "POST":
            d.resume(ep)
            return 200, {"paused": {k: v.paused for k, v in d.endpoints.items()}}
        if parts == ["discard_pending"] and m == "POST":
            return 200, {"discarded": d.discard_pending(ep)}
        if parts == ["redeliver"] and m == "POST":
            ids = body.get("event_ids") or [body["event_id"]]
            out = []
            for evt_id in ids:
                with self.core.lock:
                    evt = self.core.objects.get(evt_id)
                    if not evt or evt.get("object") != "event":
                        return 404, {"error": {"message": f"No such event: {evt_id}"}}
                    evt = deep(evt)
                    body_bytes = self.core.event_bodies[evt_id]
                if body.get("sync"):
                    out.append(d.deliver_now(evt, body_bytes, ep))
                else:
                    out.append(d.enqueue(evt, body_bytes, ep))
            return 200, {"data": out}
        if parts == ["wait"] and m == "POST":
            return 200, {"idle": d.wait_idle(float(body.get("timeout", 10)))}
        if parts == ["config"] and m == "POST":
            if "max_attempts" in body:
                d.max_attempts = int(body["max_attempts"])
            if "backoff" in body:
                d.backoff = float(body["backoff"])
            if "timeout" in body:
                d.timeout = float(body["timeout"])
            for name in ("platform", "connect"):
                if f"{name}_url" in body:
                    d.endpoints[name].url = body[f"{name}_url"] or None
                if f"{name}_secrets" in body:
                    d.endpoints[name].secrets = _as_list(body[f"{name}_secrets"])
            return 200, {"max_attempts": d.max_attempts, "backoff": d.backoff,
                         "timeout": d.timeout,
                         "endpoints": {k: {"url": v.url, "secrets": len(v.secrets),
                                           "paused": v.paused}
                                       for k, v in d.endpoints.items()}}
        if parts == ["sign"] and m == "POST":
            raw = body.get("payload", "").encode("utf-8")
            return 200, {"header": self.sign(raw, ep or "platform", body.get("timestamp"))}
        return 404, {"error": {"message": "unknown webhooks control endpoint"}}


# =====================================================================================
class RequestHandler(BaseHTTPRequestHandler):
    server_fake: FakeStripe
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""
    # A response goes out as two writes (headers, then body). With Nagle's algorithm on, the
    # body waits for the ACK of the headers, which a keep-alive client delays by ~40 ms:
    # every request on a reused connection would take 40 ms.
    disable_nagle_algorithm = True

    def log_message(self, fmt: str, *args: Any) -> None:  # silence default logging
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # ---- plumbing -----------------------------------------------------------------------
    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status: int, body: bytes, headers: Dict[str, str],
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: Optional[Dict[str, str]] = None) -> None:
        self._send(status, json.dumps(obj, indent=2).encode("utf-8"), headers or {})

    def _redirect(self, url: str, status: int = 302) -> None:
        self._send(status, b"", {"Location": url}, content_type="text/html; charset=utf-8")

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _dispatch(self, method: str) -> None:
        fake = self.server_fake
        try:
            split = urlsplit(self.path)
            path = split.path
            if path.startswith("/_control/") or path == "/_control":
                return self._control(method, path, split.query)
            if path.startswith("/setup/e/"):
                return self._onboarding(method, path)
            if path.startswith("/express/"):
                return self._express(method, path)
            if path.startswith("/v1/") or path == "/v1":
                return self._api(method, path, split.query)
            self._send(404, b"Not Found", {}, content_type="text/plain")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001
            fake.log(f"internal error: {type(e).__name__}: {e}")
            try:
                self._json(500, StripeError(500, "api_error",
                                            "An unknown error occurred").body(request_id()),
                           {"Request-Id": request_id()})
            except Exception:  # noqa: BLE001
                self.close_connection = True

    # ---- control ------------------------------------------------------------------------
    def _control(self, method: str, path: str, query: str) -> None:
        fake = self.server_fake
        client = self.client_address[0]
        if not (client.startswith("127.") or client in ("::1", "::ffff:127.0.0.1")):
            self._json(403, {"error": {"message": "control API is loopback-only"}})
            return
        raw = self._read_body()
        body: Dict[str, Any] = {}
        if raw:
            ctype = self.headers.get("Content-Type", "")
            try:
                if "json" in ctype or raw.lstrip().startswith(b"{"):
                    body = json.loads(raw.decode("utf-8"))
                else:
                    body = parse_form(raw.decode("utf-8"))
            except (ValueError, FormError) as e:
                self._json(400, {"error": {"message": f"bad body: {e}"}})
                return
        q = dict(parse_qsl(query))
        status, out = fake.control(method, path, q, body)
        if method != "GET":
            fake.save_state()  # e.g. the clock or the refund mode (nothing to write: no line)
        self._json(status, out)

    # ---- hosted onboarding + express dashboard pages -------------------------------------
    def _onboarding(self, method: str, path: str) -> None:
        fake = self.server_fake
        core = fake.core
        parts = [p for p in path.split("/") if p]  # setup e acct token [complete]
        if len(parts) < 4:
            self._send(404, b"Not Found", {}, content_type="text/plain")
            return
        acct, token = parts[2], parts[3]
        if method == "GET" and len(parts) == 4:
            with core.lock:
                kind, session, link = core.onboarding_open(token)
            fake.save_state()
            if kind == "missing" or link.get("account") not in (None, acct):
                self._send(404, b"<h1>This link is invalid.</h1>", {},
                           content_type="text/html; charset=utf-8")
                return
            if kind == "redirect":
                self._redirect(session or "/")
                return
            with core.lock:
                a = core.objects[acct]
                email = a.get("email") or ""
            page = ONBOARDING_PAGE.format(acct=html.escape(acct), email=html.escape(email),
                                          action=html.escape(f"/setup/e/{acct}/{token}/complete"),
                                          session=html.escape(session or ""))
            self._send(200, page.encode("utf-8"), {"Cache-Control": "no-store"},
                       content_type="text/html; charset=utf-8")
            return
        if method == "POST" and len(parts) == 5 and parts[4] == "complete":
            raw = self._read_body().decode("utf-8", "replace")
            form = dict(parse_qsl(raw))
            with core.lock:
                kind, url = core.onboarding_submit(token, form.get("session", ""),
                                                   form.get("action", "complete"))
            fake.save_state()
            if kind == "missing":
                self._send(404, b"<h1>This link is invalid.</h1>", {},
                           content_type="text/html; charset=utf-8")
                return
            self._redirect(url or "/", 303 if kind == "done" else 302)
            return
        self._send(405, b"Method Not Allowed", {}, content_type="text/plain")

    def _express(self, method: str, path: str) -> None:
        core = self.server_fake.core
        parts = [p for p in path.split("/") if p]
        if len(parts) != 3:
            self._send(404, b"Not Found", {}, content_type="text/plain")
            return
        with core.lock:
            link = core.login_links.get(parts[2])
        if not link or link["account"] != parts[1]:
            self._send(404, b"<h1>This login link is invalid or expired.</h1>", {},
                       content_type="text/html; charset=utf-8")
            return
        body = (f"<!doctype html><title>Express dashboard</title><h1>Express dashboard</h1>"
                f"<p>Account {html.escape(parts[1])} (fake Stripe)</p>").encode("utf-8")
        self._send(200, body, {}, content_type="text/html; charset=utf-8")

    # ---- API ----------------------------------------------------------------------------
    def _api(self, method: str, path: str, query: str) -> None:
        fake = self.server_fake
        core = fake.core
        raw = self._read_body()
        req_id = request_id()
        h = self.headers
        idem_key = h.get("Idempotency-Key")
        account = h.get("Stripe-Account") or None
        version = h.get("Stripe-Version") or core.api_version
        auth = h.get("Authorization")
        auth_scheme, api_key = _parse_auth(auth)
        entry: Dict[str, Any] = {
            "id": req_id, "time": time.time(), "method": method, "path": path,
            "query": query,
            "headers": {k: h.get(k) for k in ("Idempotency-Key", "Stripe-Account",
                                               "Stripe-Version", "User-Agent", "Content-Type",
                                               "X-Stripe-Client-User-Agent")
                        if h.get(k) is not None},
            "authorization": {"present": auth is not None, "scheme": auth_scheme,
                              "key_type": _key_type(api_key)},
            "params": None, "raw_body": raw.decode("utf-8", "replace"), "status": None,
            "fault": None, "idempotent_replayed": False, "dropped": False,
        }
        with fake.meta_lock:
            fake.requests.append(entry)
        base_headers = {"Request-Id": req_id, "Stripe-Version": version,
                        "Cache-Control": "no-cache, no-store",
                        "Access-Control-Allow-Origin": "*"}
        if idem_key and method == "POST":
            base_headers["Idempotency-Key"] = idem_key

        def reply_error(err: StripeError) -> None:
            entry["status"] = err.status
            hdrs = dict(base_headers)
            hdrs.update(err.headers)
            self._json(err.status, err.body(req_id), hdrs)

        # -- params
        try:
            text = raw.decode("utf-8") if method in ("POST", "PUT", "PATCH") else query
            if method in ("POST", "PUT", "PATCH") and query:
                text = query + ("&" + text if text else "")
            params = parse_form(text)
        except UnicodeDecodeError:
            return reply_error(invalid("Invalid request: the body is not valid UTF-8."))
        except FormError as e:
            return reply_error(invalid(str(e), param=e.param))
        entry["params"] = params

        # -- auth
        err = self._check_auth(auth_scheme, api_key, method, path, params)
        if err:
            if err.status == 401:
                err.headers.setdefault("WWW-Authenticate", 'Bearer realm="Stripe"')
            return reply_error(err)
        publishable = api_key.startswith("pk_")

        # -- faults
        fault = None
        with fake.meta_lock:
            for f in fake.faults:
                if f.matches(method, path, account):
                    f.remaining -= 1
                    f.hits += 1
                    fault = f
                    break
        forced: Dict[str, Any] = {}
        if fault:
            entry["fault"] = {"id": fault.id, "type": fault.type}
            if fault.type in ("error", "rate_limit", "lock_timeout"):
                return reply_error(fault.error_response())
            if fault.type == "drop" and fault.when == "before":
                entry["dropped"] = True
                return self._drop()
            if fault.type == "decline":
                forced["decline"] = fault.decline_code

        # -- connected account
        if account:
            with core.lock:
                a = core.objects.peek(account)
                bad = a is None or a.get("object") != "account" or account in core.deauthorized
            if bad:
                return reply_error(StripeError(
                    403, "invalid_request_error",
                    f"The provided key '{_mask(api_key)}' does not have access to account "
                    f"'{account}' (or that account does not exist). Application access may "
                    f"have been revoked.", code="account_invalid", store=False))

        # -- route
        handler = None
        groups: Tuple[str, ...] = ()
        for rm, rx, fn in ROUTES:
            mm = rx.match(path)
            if mm:
                if rm == method:
                    handler, groups = fn, mm.groups()
                    break
        if handler is None:
            return reply_error(StripeError(
                404, "invalid_request_error",
                f"Unrecognized request URL ({method}: {path}). Please see "
                f"https://stripe.com/docs or we can help at https://support.stripe.com/.",
                store=False))
        if publishable and not any(rx.match(path) for rx in PUBLISHABLE_OK):
            return reply_error(StripeError(
                401, "invalid_request_error", "This API call cannot be made with a publishable "
                "API key. Please use a secret API key. You can find a list of your API keys at "
                "https://dashboard.stripe.com/account/apikeys.", store=False))

        # -- idempotency
        scope_key = None
        if method == "POST" and idem_key:
            if len(idem_key) > 255:
                return reply_error(invalid("Idempotency-Key must be at most 255 characters "
                                           "long.", param="Idempotency-Key"))
            scope_key = (_key_digest(api_key), account, idem_key)
            with fake.meta_lock:
                rec = fake.idem.get(scope_key)
                if rec is not None:
                    if rec["path"] != path or rec["method"] != method:
                        return reply_error(StripeError(
                            400, "idempotency_error",
                            f"Keys for idempotent requests can only be used for the same "
                            f"endpoint they were first used for ('{rec['method']} "
                            f"{rec['path']}' vs '{method} {path}'). Try using a key other than "
                            f"'{idem_key}' if you meant to execute a different request.",
                            store=False))
                    if rec["params"] != params:
                        return reply_error(StripeError(
                            400, "idempotency_error",
                            f"Keys for idempotent requests can only be used with the same "
                            f"parameters they were first used with. Try using a key other than "
                            f"'{idem_key}' if you meant to execute a different request.",
                            store=False))
                    if rec["status"] is None:
                        return reply_error(StripeError(
                            409, "idempotency_error",
                            f"There is currently another in-progress request using this "
                            f"Idempotent Key (that probably means you submitted twice, and the "
                            f"other request is still going through): {idem_key}. Please try "
                            f"again later.", code="idempotency_key_in_use", store=False,
                            headers={"Stripe-Should-Retry": "true"}))
                    entry["idempotent_replayed"] = True
                    entry["status"] = rec["status"]
                    hdrs = dict(base_headers)
                    hdrs.update(rec["headers"])
                    hdrs["Idempotent-Replayed"] = "true"
                    hdrs["Original-Request"] = rec["request_id"]
                    # A replayed response can be lost or slow on the way back just like the first.
                    if fault and fault.type == "drop" and fault.when == "after":
                        entry["dropped"] = True
                        return self._drop()
                    if fault and fault.type == "delay" and fault.when == "after":
                        time.sleep(fault.delay_ms / 1000.0)
                    self._send(rec["status"], rec["body"], hdrs)
                    return
                fake.idem[scope_key] = {"path": path, "method": method, "params": params,
                                        "status": None, "body": b"", "headers": {},
                                        "request_id": req_id, "created": time.time()}

        # a slow request: the key stays "in progress" meanwhile (concurrent retries get 409)
        if fault and fault.type == "delay" and fault.when == "before":
            time.sleep(fault.delay_ms / 1000.0)

        # -- execute
        ctx = Ctx(request_id=req_id, idempotency_key=idem_key, account=account,
                  base_url=fake.public_url, publishable=publishable,
                  forced_decline=forced.get("decline"))
        status = 200
        out_headers: Dict[str, str] = {}
        store = True
        try:
            with core.lock:
                expand = [str(x) for x in get_list(params, "expand")]
                obj = handler(core, ctx, params, forced, *groups)
                body_obj = core.render(obj, expand, ctx) if obj.get("object") != "list" else \
                    _render_list(core, obj, expand, ctx)
            body = json.dumps(body_obj, indent=2).encode("utf-8")
        except StripeError as e:
            status = e.status
            body = json.dumps(e.body(req_id), indent=2).encode("utf-8")
            out_headers.update(e.headers)
            store = e.store
        except Exception as e:  # noqa: BLE001
            fake.log(f"handler crash {method} {path}: {type(e).__name__}: {e}")
            status = 500
            body = json.dumps(StripeError(500, "api_error", "An unknown error occurred")
                              .body(req_id), indent=2).encode("utf-8")
        if scope_key is not None:
            fake.record_idem_result(scope_key, store, status, body, out_headers)
        if method != "GET":
            fake.save_state()
        entry["status"] = status
        fake.log(f"{method} {path} -> {status} {req_id}"
                 + (f" (idempotency-key {idem_key})" if idem_key else ""))
        if fault and fault.type == "drop" and fault.when == "after":
            entry["dropped"] = True
            return self._drop()
        if fault and fault.type == "delay" and fault.when == "after":
            time.sleep(fault.delay_ms / 1000.0)
        hdrs = dict(base_headers)
        hdrs.update(out_headers)
        self._send(status, body, hdrs)

    def _check_auth(self, scheme: Optional[str], key: str, method: str, path: str,
                    params: Dict[str, Any]) -> Optional[StripeError]:
        fake = self.server_fake
        if not key:
            return StripeError(
                401, "invalid_request_error",
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
                "or we can help at https://support.stripe.com/.", store=False)
        if key.startswith("sk_live_") or key.startswith("rk_live_") or key.startswith("pk_live_"):
            return StripeError(401, "invalid_request_error",
                               f"Invalid API Key provided: {_mask(key)} (this fake Stripe only "
                               f"accepts test-mode keys)", store=False)
        valid = (key.startswith("sk_test_") or key.startswith("rk_test_") or
                 key.startswith("pk_test_")) and len(key) > len("sk_test_")
        if valid and fake.api_keys is not None and not key.startswith("pk_test_"):
            valid = key in fake.api_keys
        if not valid:
            return StripeError(401, "invalid_request_error",
                               f"Invalid API Key provided: {_mask(key)}", store=False)
        return None


def _key_digest(api_key: str) -> str:
    """Idempotency keys are scoped per secret key; the scope holds a digest of it so that
    no API key is ever written to the state file."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:32]


def _idem_to_json(key: IdemKey, rec: Dict[str, Any]) -> Dict[str, Any]:
    return dict(rec, key=list(key), body=rec["body"].decode("utf-8"))


def _idem_from_json(data: Dict[str, Any]) -> Tuple[IdemKey, Dict[str, Any]]:
    rec = dict(data)
    key = tuple(rec.pop("key"))
    rec["body"] = rec["body"].encode("utf-8")
    return key, rec  # type: ignore[return-value]


def _render_list(core: Core, lst: Dict[str, Any], expand: List[str], ctx: Ctx
                 ) -> Dict[str, Any]:
    inner = [e[len("data."):] for e in expand if e.startswith("data.")]
    out = dict(lst)
    out["data"] = [core.render(o, inner, ctx) for o in lst["data"]]
    return out


def _parse_auth(auth: Optional[str]) -> Tuple[Optional[str], str]:
    if not auth:
        return None, ""
    if " " not in auth:
        return "unknown", ""
    scheme, _, cred = auth.partition(" ")
    cred = cred.strip()
    if scheme.lower() == "bearer":
        return "Bearer", cred
    if scheme.lower() == "basic":
        try:
            user = base64.b64decode(cred).decode("utf-8").split(":", 1)[0]
        except Exception:  # noqa: BLE001
            user = ""
        return "Basic", user
    return scheme, ""


def _key_type(key: str) -> Optional[str]:
    for p in ("sk_test", "rk_test", "pk_test", "sk_live", "rk_live", "pk_live"):
        if key.startswith(p + "_"):
            return p
    return None if not key else "invalid"


def _mask(key: str) -> str:
    if not key:
        return ""
    if len(key) <= 12:
        return "*" * len(key)
    prefix = key[:8] if key[:3] in ("sk_", "pk_", "rk_") else ""
    return prefix + "*" * max(len(key) - len(prefix) - 4, 4) + key[-4:]


ONBOARDING_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fake Stripe Express onboarding</title>
<meta name="robots" content="noindex"></head>
<body>
<h1>Set up payouts</h1>
<p>Fake Stripe hosted onboarding for account <code id="account">{acct}</code> {email}.</p>
<form id="onboarding" method="post" action="{action}">
  <input type="hidden" name="session" value="{session}">
  <button type="submit" name="action" value="complete" id="complete">Complete</button>
  <button type="submit" name="action" value="later" id="later">Save for later</button>
</form>
</body></html>
"""
