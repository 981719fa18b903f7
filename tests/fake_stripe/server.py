"""`FakeStripe`: the fake's lifecycle (handler.py serves the HTTP), the state file, and the
Python conveniences tests use (`received`, `inject_fault`, `confirm_payment_intent`, ...).

Shared state: `FakeStripe.core` is the Stripe state (state.py: objects, events, links, the
clock; guarded by `core.lock`); the fault list, the request log and the idempotency records
are the fake's own, guarded by `meta_lock`. Both persist through persist.py.
"""
from __future__ import annotations

import collections
import ssl
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Set, Tuple, Union

from . import control, events
from .control_webhooks import as_list
from .core import DEFAULT_API_VERSION, Core, Ctx
from .errors import StripeError
from .faults import Fault
from .handler import RequestHandler, Server
from .idempotency import IdemKey, Idempotency
from .persist import StateFile
from .util import deep, request_id
from .webhooks import Dispatcher, Endpoint, sign

# The request log keeps the most recent entries only, so a long `make run` does not grow
# without bound. Far above what a test needs (the whole suite makes a few thousand requests);
# an entry is about 2 KB, so a full log is some tens of MB.
REQUEST_LOG_LIMIT = 20_000


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
            {"platform": Endpoint("platform", platform_webhook_url, as_list(platform_secrets)),
             "connect": Endpoint("connect", connect_webhook_url, as_list(connect_secrets))},
            max_attempts=webhook_max_attempts, backoff=webhook_backoff,
            timeout=webhook_timeout, log=self.log)
        events.connect(self.core, self.dispatcher)
        self.meta_lock = threading.RLock()  # guards faults, requests and idempotency
        self.date_offset = 0.0  # seconds added to the HTTP Date header (control /date_offset)
        self.faults: List[Fault] = []
        self.requests: Deque[Dict[str, Any]] = collections.deque(maxlen=request_log_limit)
        self.idempotency = Idempotency(self.meta_lock)
        self.httpd: Optional[ThreadingHTTPServer] = None
        self.thread: Optional[threading.Thread] = None
        self.store = StateFile(state_file) if state_file else None
        if self.store:
            self._load_state()

    @property
    def idem(self) -> Dict[IdemKey, Dict[str, Any]]:
        """The idempotency records (see idempotency.py)."""
        return self.idempotency.records

    @property
    def idem_unsaved(self) -> Set[IdemKey]:
        return self.idempotency.unsaved

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

        httpd = Server((self.host, self.port), _Handler)
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
            idem = self.idempotency.take_unsaved()
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
            state["idempotency"] = self.idempotency.saved()
            self.store.compact(state)
            self.core.mark_saved()

    def _load_state(self) -> None:
        assert self.store is not None
        snapshot, records = self.store.load()
        if snapshot:
            self.core.restore(snapshot)
            self.idempotency.restore(snapshot.get("idempotency", []))
        for record in records:
            self.core.apply_changes(record)
            self.idempotency.restore(record.get("idempotency", []))
        # Start from a fresh snapshot: the journal is replayed once, and a torn last line is
        # gone before anything is appended after it.
        self.compact_state()

    def record_idem_result(self, key: IdemKey, store: bool, status: int, body: bytes,
                           headers: Dict[str, str]) -> None:
        self.idempotency.finish(key, store, status, body, headers)

    # ---- Python conveniences (same operations as the control API) -------------------
    def reset(self) -> None:
        with self.core.lock, self.meta_lock:
            self.core.reset()
            self.faults.clear()
            self.requests.clear()
            self.idempotency.clear()
            self.date_offset = 0.0
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
        return self.control_call(lambda: self._browser_confirm(pi_id, payment_method))

    def _browser_confirm(self, pi_id: str, payment_method: str) -> Dict[str, Any]:
        with self.core.lock:
            account = self.core.scope.get(pi_id)
            ctx = Ctx(request_id=request_id(), account=account, base_url=self.public_url)
            pi = self.core.pi_confirm(ctx, pi_id, {"payment_method": payment_method})
            return self.core.render(pi, [], ctx)

    def control_call(self, fn: Callable[[], Dict[str, Any]]) -> Tuple[int, Dict[str, Any]]:
        """Run a state-changing control operation and save: (200, result) or the
        StripeError's (status, body)."""
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
            return events.history(self.core, type_)

    def sign(self, body: bytes, endpoint: str = "platform",
             timestamp: Optional[int] = None) -> str:
        ep = self.dispatcher.endpoints[endpoint]
        return sign(body, ep.secrets, int(time.time()) if timestamp is None else timestamp)

    def control(self, method: str, path: str, q: Dict[str, str], body: Dict[str, Any]
                ) -> Tuple[int, Any]:
        """One control API call (see control.py): (status, JSON-ready body)."""
        return control.dispatch(self, method, path, q, body)
