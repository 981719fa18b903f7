"""The `/v1/...` request pipeline: request log, body parsing, auth, faults, `Stripe-Account`,
routing (routes.API), idempotency, execution under the state lock, and the response.

Each step is one method of `ApiRequest`; a step that answers the request returns True.
"""
from __future__ import annotations

import base64
import json
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from . import accounts
from .errors import StripeError, invalid
from .faults import Fault, take as take_fault
from .forms import FormError, parse_form
from .idempotency import IdemKey, scope_key
from .routes import API, PUBLISHABLE_OK, Handler
from .state import Ctx, State
from .util import get_list, request_id

if TYPE_CHECKING:
    from .handler import RequestHandler
    from .server import FakeStripe

LOGGED_HEADERS = ("Idempotency-Key", "Stripe-Account", "Stripe-Version", "User-Agent",
                  "Content-Type", "X-Stripe-Client-User-Agent")


def handle(http: "RequestHandler", method: str, path: str, query: str) -> None:
    ApiRequest(http, method, path, query).run()


class ApiRequest:
    def __init__(self, http: "RequestHandler", method: str, path: str, query: str):
        self.http = http
        self.fake: "FakeStripe" = http.server_fake
        self.core = self.fake.core
        self.method, self.path, self.query = method, path, query
        self.req_id = request_id()
        h = http.headers
        self.idem_key = h.get("Idempotency-Key")
        self.account = h.get("Stripe-Account") or None
        self.auth = h.get("Authorization")
        self.auth_scheme, self.api_key = parse_auth(self.auth)
        self.params: Dict[str, Any] = {}
        self.fault: Optional[Fault] = None
        self.handler: Optional[Handler] = None
        self.path_params: Tuple[str, ...] = ()
        self.scope_key: Optional[IdemKey] = None
        self.entry: Dict[str, Any] = {}
        self.base_headers = {"Request-Id": self.req_id,
                             "Stripe-Version": h.get("Stripe-Version") or self.core.api_version,
                             "Cache-Control": "no-cache, no-store",
                             "Access-Control-Allow-Origin": "*"}
        if self.idem_key and method == "POST":
            self.base_headers["Idempotency-Key"] = self.idem_key

    def run(self) -> None:
        raw = self.http.read_body()
        self.log_request(raw)
        for step in (lambda: self.parse(raw), self.authenticate, self.apply_fault,
                     self.check_account, self.find_route, self.claim_idempotency_key):
            if step():
                return
        # a slow request: the key stays "in progress" meanwhile (concurrent retries get 409)
        if self.fault and self.fault.type == "delay" and self.fault.when == "before":
            time.sleep(self.fault.delay_ms / 1000.0)
        status, body, headers = self.execute()
        self.respond(status, body, headers)

    # ---- steps ---------------------------------------------------------------------------
    def log_request(self, raw: bytes) -> None:
        h = self.http.headers
        self.entry = {
            "id": self.req_id, "time": time.time(), "method": self.method, "path": self.path,
            "query": self.query,
            "headers": {k: h.get(k) for k in LOGGED_HEADERS if h.get(k) is not None},
            "authorization": {"present": self.auth is not None, "scheme": self.auth_scheme,
                              "key_type": key_type(self.api_key)},
            "params": None, "raw_body": raw.decode("utf-8", "replace"), "status": None,
            "fault": None, "idempotent_replayed": False, "dropped": False,
        }
        with self.fake.meta_lock:
            self.fake.requests.append(self.entry)

    def parse(self, raw: bytes) -> bool:
        body_method = self.method in ("POST", "PUT", "PATCH")
        try:
            text = raw.decode("utf-8") if body_method else self.query
            if body_method and self.query:
                text = self.query + ("&" + text if text else "")
            self.params = parse_form(text)
        except UnicodeDecodeError:
            return self.reply_error(invalid("Invalid request: the body is not valid UTF-8."))
        except FormError as e:
            return self.reply_error(invalid(str(e), param=e.param))
        self.entry["params"] = self.params
        return False

    def authenticate(self) -> bool:
        # Stripe.js sends its publishable key as the `key` parameter, not in a header, so that a
        # browser's request stays a CORS "simple" one (no preflight). Only a pk_ key, and only
        # without an Authorization header; the parameter is not passed on to the endpoint.
        form_key = self.params.get("key")
        if self.auth is None and isinstance(form_key, str) and form_key.startswith("pk_"):
            self.api_key = self.params.pop("key")
            self.auth_scheme = "key-param"
            self.entry["authorization"] = {"present": True, "scheme": "key-param",
                                           "key_type": key_type(self.api_key)}
            # Stripe.js initialised with `stripeAccount` names it as a parameter, for the same
            # reason; the log shows it as the header it stands for.
            stripe_account = self.params.pop("_stripe_account", None)
            if isinstance(stripe_account, str) and stripe_account and not self.account:
                self.account = stripe_account
                self.entry["headers"]["Stripe-Account"] = stripe_account
        err = check_key(self.api_key, self.fake.api_keys)
        if err:
            if err.status == 401:
                err.headers.setdefault("WWW-Authenticate", 'Bearer realm="Stripe"')
            return self.reply_error(err)
        return False

    def apply_fault(self) -> bool:
        with self.fake.meta_lock:
            self.fault = fault = take_fault(self.fake.faults, self.method, self.path,
                                            self.account)
        if not fault:
            return False
        self.entry["fault"] = {"id": fault.id, "type": fault.type}
        if fault.type in ("error", "rate_limit", "lock_timeout"):
            return self.reply_error(fault.error_response())
        if fault.type == "drop" and fault.when == "before":
            return self.drop()
        return False

    def check_account(self) -> bool:
        if not self.account:
            return False
        with self.core.lock:
            usable = accounts.is_usable(self.core, self.account)
        if usable:
            return False
        return self.reply_error(StripeError(
            403, "invalid_request_error",
            f"The provided key '{mask(self.api_key)}' does not have access to account "
            f"'{self.account}' (or that account does not exist). Application access may "
            f"have been revoked.", code="account_invalid", store=False))

    def find_route(self) -> bool:
        found = API.match(self.method, self.path)
        if found is None:
            return self.reply_error(StripeError(
                404, "invalid_request_error",
                f"Unrecognized request URL ({self.method}: {self.path}). Please see "
                f"https://stripe.com/docs or we can help at https://support.stripe.com/.",
                store=False))
        self.handler, path_params = found
        self.path_params = tuple(path_params.values())
        if self.publishable and not any(rx.match(self.path) for rx in PUBLISHABLE_OK):
            return self.reply_error(StripeError(
                401, "invalid_request_error", "This API call cannot be made with a publishable "
                "API key. Please use a secret API key. You can find a list of your API keys at "
                "https://dashboard.stripe.com/account/apikeys.", store=False))
        return False

    def claim_idempotency_key(self) -> bool:
        if self.method != "POST" or not self.idem_key:
            return False
        if len(self.idem_key) > 255:
            return self.reply_error(invalid("Idempotency-Key must be at most 255 characters "
                                            "long.", param="Idempotency-Key"))
        key = scope_key(self.api_key, self.account, self.idem_key)
        outcome = self.fake.idempotency.begin(key, self.method, self.path, self.params,
                                              self.req_id)
        if outcome is None:
            self.scope_key = key
            return False
        if isinstance(outcome, StripeError):
            return self.reply_error(outcome)
        rec = outcome
        self.entry["idempotent_replayed"] = True
        self.entry["status"] = rec["status"]
        hdrs = dict(self.base_headers)
        hdrs.update(rec["headers"])
        hdrs["Idempotent-Replayed"] = "true"
        hdrs["Original-Request"] = rec["request_id"]
        # A replayed response can be lost or slow on the way back just like the first.
        self.send_after_faults(rec["status"], rec["body"], hdrs)
        return True

    def execute(self) -> Tuple[int, bytes, Dict[str, str]]:
        fake, core, method, path = self.fake, self.core, self.method, self.path
        ctx = Ctx(request_id=self.req_id, idempotency_key=self.idem_key, account=self.account,
                  base_url=fake.public_url, publishable=self.publishable,
                  forced_decline=(self.fault.decline_code
                                  if self.fault and self.fault.type == "decline" else None))
        status = 200
        out_headers: Dict[str, str] = {}
        store = True
        try:
            with core.lock:
                expand = [str(x) for x in get_list(self.params, "expand")]
                assert self.handler is not None
                obj = self.handler(core, ctx, *self.path_params, self.params)
                body_obj = core.render(obj, expand, ctx) if obj.get("object") != "list" else \
                    render_list(core, obj, expand, ctx)
            body = json.dumps(body_obj, indent=2).encode("utf-8")
        except StripeError as e:
            status = e.status
            body = json.dumps(e.body(self.req_id), indent=2).encode("utf-8")
            out_headers.update(e.headers)
            store = e.store
        except Exception as e:  # noqa: BLE001
            fake.log(f"handler crash {method} {path}: {type(e).__name__}: {e}")
            status = 500
            body = json.dumps(StripeError(500, "api_error", "An unknown error occurred")
                              .body(self.req_id), indent=2).encode("utf-8")
        if self.scope_key is not None:
            fake.idempotency.finish(self.scope_key, store, status, body, out_headers)
        if method != "GET":
            fake.save_state()
        return status, body, out_headers

    def respond(self, status: int, body: bytes, out_headers: Dict[str, str]) -> None:
        self.entry["status"] = status
        self.fake.log(f"{self.method} {self.path} -> {status} {self.req_id}"
                      + (f" (idempotency-key {self.idem_key})" if self.idem_key else ""))
        hdrs = dict(self.base_headers)
        hdrs.update(out_headers)
        self.send_after_faults(status, body, hdrs)

    # ---- answers -------------------------------------------------------------------------
    @property
    def publishable(self) -> bool:
        return self.api_key.startswith("pk_")

    def reply_error(self, err: StripeError) -> bool:
        self.entry["status"] = err.status
        hdrs = dict(self.base_headers)
        hdrs.update(err.headers)
        self.http.send_json(err.status, err.body(self.req_id), hdrs)
        return True

    def drop(self) -> bool:
        self.entry["dropped"] = True
        self.http.drop()
        return True

    def send_after_faults(self, status: int, body: bytes, headers: Dict[str, str]) -> None:
        """Send the response, unless an `after` fault drops it (the work is done, the answer
        lost) or delays it."""
        fault = self.fault
        if fault and fault.type == "drop" and fault.when == "after":
            self.drop()
            return
        if fault and fault.type == "delay" and fault.when == "after":
            time.sleep(fault.delay_ms / 1000.0)
        self.http.send_body(status, body, headers)


def render_list(st: State, lst: Dict[str, Any], expand: List[str], ctx: Ctx) -> Dict[str, Any]:
    inner = [e[len("data."):] for e in expand if e.startswith("data.")]
    out = dict(lst)
    out["data"] = [st.render(o, inner, ctx) for o in lst["data"]]
    return out


# ---- API keys --------------------------------------------------------------------------
def check_key(key: str, allowed: Optional[set]) -> Optional[StripeError]:
    """Why this API key is refused (a 401), or None. `allowed`: the only secret keys
    accepted (None: any sk_test_ key)."""
    if not key:
        return StripeError(
            401, "invalid_request_error",
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
            "or we can help at https://support.stripe.com/.", store=False)
    if key.startswith("sk_live_") or key.startswith("rk_live_") or key.startswith("pk_live_"):
        return StripeError(401, "invalid_request_error",
                           f"Invalid API Key provided: {mask(key)} (this fake Stripe only "
                           f"accepts test-mode keys)", store=False)
    valid = (key.startswith("sk_test_") or key.startswith("rk_test_") or
             key.startswith("pk_test_")) and len(key) > len("sk_test_")
    if valid and allowed is not None and not key.startswith("pk_test_"):
        valid = key in allowed
    if not valid:
        return StripeError(401, "invalid_request_error",
                           f"Invalid API Key provided: {mask(key)}", store=False)
    return None


def parse_auth(auth: Optional[str]) -> Tuple[Optional[str], str]:
    """Authorization header -> (scheme, key)."""
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


def key_type(key: str) -> Optional[str]:
    for p in ("sk_test", "rk_test", "pk_test", "sk_live", "rk_live", "pk_live"):
        if key.startswith(p + "_"):
            return p
    return None if not key else "invalid"


def mask(key: str) -> str:
    if not key:
        return ""
    if len(key) <= 12:
        return "*" * len(key)
    prefix = key[:8] if key[:3] in ("sk_", "pk_", "rk_") else ""
    return prefix + "*" * max(len(key) - len(prefix) - 4, 4) + key[-4:]
