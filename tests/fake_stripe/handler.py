"""HTTP plumbing of the fake: `RequestHandler` reads a request and hands it to the part of
the fake its path prefix belongs to (`PARTS`): `/v1/...` to api.py, `/_control/...` to
control.py, the hosted pages to pages.py. `Server` is the listening server."""
from __future__ import annotations

import json
import socket
import struct
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from . import api, control, pages
from .errors import StripeError
from .util import request_id

if TYPE_CHECKING:
    from .server import FakeStripe


class Server(ThreadingHTTPServer):
    """Python's default listen queue holds 5 connections; the app opens a fresh connection for
    every Stripe call, up to STRIPE_WORKERS at once, and dropped connects come back only after
    TCP's 1 s / 3 s retransmits. Real Stripe never refuses a connection like that."""
    request_queue_size = 256


class RequestHandler(BaseHTTPRequestHandler):
    server_fake: "FakeStripe"
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""
    # A response goes out as two writes (headers, then body). With Nagle's algorithm on, the
    # body waits for the ACK of the headers, which a keep-alive client delays by ~40 ms:
    # every request on a reused connection would take 40 ms.
    disable_nagle_algorithm = True

    def log_message(self, fmt: str, *args: Any) -> None:  # silence default logging
        pass

    def date_time_string(self, timestamp: Optional[float] = None) -> str:
        """The `Date` header, `date_offset` seconds off real time (control `/date_offset`), so
        that a test can give the fake a skewed clock."""
        now = time.time() if timestamp is None else timestamp
        return super().date_time_string(now + self.server_fake.date_offset)

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
    def read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send_body(self, status: int, body: bytes, headers: Dict[str, str],
                  content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, obj: Any, headers: Optional[Dict[str, str]] = None) -> None:
        self.send_body(status, json.dumps(obj, indent=2).encode("utf-8"), headers or {})

    def redirect(self, url: str, status: int = 302) -> None:
        self.send_body(status, b"", {"Location": url}, content_type="text/html; charset=utf-8")

    def drop(self) -> None:
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
            self.send_body(404, b"Not Found", {}, content_type="text/plain")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001
            fake.log(f"internal error: {type(e).__name__}: {e}")
            try:
                self.send_json(500, StripeError(500, "api_error",
                                                "An unknown error occurred").body(request_id()),
                               {"Request-Id": request_id()})
            except Exception:  # noqa: BLE001
                self.close_connection = True


# Path prefix -> the part of the fake that answers it.
PARTS: List[Tuple[str, Callable[[RequestHandler, str, str, str], None]]] = [
    ("/_control", control.handle),
    ("/setup/e", lambda http, method, path, query: pages.onboarding(http, method, path)),
    ("/express", lambda http, method, path, query: pages.express_dashboard(http, method, path)),
    ("/v1", api.handle),
]
