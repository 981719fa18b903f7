"""The fake's HTTP server: `FakeStripe` (lifecycle, the state file, the Python conveniences
tests use) and `RequestHandler`, which sends each request to its part by path prefix:
`/v1/...` to api.py, `/_control/...` to control.py, the hosted pages to pages.py.

Shared state: `FakeStripe.core` is the Stripe state (state.py: objects, events, links, the
clock; guarded by `core.lock`); the fault list, the request log and the idempotency records
are the fake's own, guarded by `meta_lock`. Both persist through persist.py.
"""
from __future__ import annotations

import collections
import json
import socket
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Set, Tuple, Union
from urllib.parse import parse_qsl, urlsplit

from . import api, control, events, pages
from .control_webhooks import as_list
from .core import DEFAULT_API_VERSION, Core, Ctx
from .errors import StripeError
from .faults import Fault
from .forms import FormError, parse_form
from .idempotency import IdemKey, Idempotency
from .persist import StateFile
from .util import deep, request_id
from .webhooks import Dispatcher, Endpoint, sign

# The request log keeps the most recent entries only, so a long `make run` does not grow
# without bound. Far above what a test needs (the whole suite makes a few thousand requests);
# an entry is about 2 KB, so a full log is some tens of MB.
REQUEST_LOG_LIMIT = 20_000


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
            {"platform": Endpoint("platform", platform_webhook_url, as_list(platform_secrets)),
             "connect": Endpoint("connect", connect_webhook_url, as_list(connect_secrets))},
            max_attempts=webhook_max_attempts, backoff=webhook_backoff,
            timeout=webhook_timeout, log=self.log)
        events.connect(self.core, self.dispatcher)
        self.meta_lock = threading.RLock()  # guards faults, requests and idempotency
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
            for prefix, part in PARTS:
                if path.startswith(prefix + "/") or path == prefix:
                    return part(self, method, path, split.query)
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
        """Loopback only; a JSON or form body; the answer is JSON."""
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


def _control(http: RequestHandler, method: str, path: str, query: str) -> None:
    http._control(method, path, query)


# Path prefix -> the part of the fake that answers it.
PARTS: List[Tuple[str, Callable[[RequestHandler, str, str, str], None]]] = [
    ("/_control", _control),
    ("/setup/e", lambda http, method, path, query: pages.onboarding(http, method, path)),
    ("/express", lambda http, method, path, query: pages.express_dashboard(http, method, path)),
    ("/v1", api.handle),
]
