"""The fake Stripe server behaves like Stripe for the flows the app relies on.

Run: .venv/bin/python -m pytest tests/test_fake_stripe.py
(needs the `stripe` package: .venv/bin/pip install -r tests/fake_stripe/requirements.txt)
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import pytest  # noqa: E402
import stripe  # noqa: E402

from tests.fake_stripe import FakeStripe  # noqa: E402
from tests.fake_stripe.core import Ctx  # noqa: E402
from tests.fake_stripe.forms import parse_form  # noqa: E402

KEY = "sk_test_fakeKey1234567890abcdefAB12"
PLATFORM_SECRET = "whsec_test_platform_secret_for_tests"
CONNECT_SECRET = "whsec_test_connect_secret_for_tests"
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "stripe")


# ---- helpers -----------------------------------------------------------------------------
class Receiver:
    """A webhook endpoint that records deliveries; `plan` lists statuses to answer first."""

    def __init__(self, tls: Optional[Tuple[str, str]] = None):
        self.got: List[Dict[str, Any]] = []
        self.plan: List[int] = []
        self.lock = threading.Lock()
        rec = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with rec.lock:
                    status = rec.plan.pop(0) if rec.plan else 200
                    rec.got.append({"path": self.path, "headers": dict(self.headers),
                                    "body": body, "status": status})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.base = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def events(self, path: Optional[str] = None) -> List[Dict[str, Any]]:
        with self.lock:
            return [dict(g, event=json.loads(g["body"])) for g in self.got
                    if path is None or g["path"] == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def fake(receiver):
    fs = FakeStripe(platform_webhook_url=receiver.base + "/platform",
                    connect_webhook_url=receiver.base + "/connect",
                    platform_secrets=[PLATFORM_SECRET], connect_secrets=[CONNECT_SECRET],
                    webhook_backoff=0.05, webhook_max_attempts=4).start()
    yield fs
    fs.stop()


class Resp:
    def __init__(self, status: int, headers: Dict[str, str], body: bytes):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def call(fs: FakeStripe, method: str, path: str, params: Any = None, key: Optional[str] = KEY,
         idem: Optional[str] = None, account: Optional[str] = None,
         version: Optional[str] = None, timeout: float = 10.0, raw: Optional[str] = None,
         headers: Optional[Dict[str, str]] = None) -> Resp:
    u = urllib.parse.urlsplit(fs.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    h = dict(headers or {})
    if key:
        h["Authorization"] = f"Bearer {key}"
    if idem:
        h["Idempotency-Key"] = idem
    if account:
        h["Stripe-Account"] = account
    if version:
        h["Stripe-Version"] = version
    body = None
    if raw is not None:
        body = raw
    elif params is not None:
        from stripe._encode import _api_encode
        enc = urllib.parse.urlencode(list(_api_encode(params)))
        if method == "GET":
            path = path + "?" + enc
        else:
            body = enc
    if body is not None:
        h["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return Resp(r.status, dict(r.getheaders()), r.read())
    finally:
        conn.close()


def control(fs: FakeStripe, method: str, path: str, body: Any = None) -> Resp:
    u = urllib.parse.urlsplit(fs.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    data = json.dumps(body) if body is not None else None
    conn.request(method, "/_control" + path, body=data,
                 headers={"Content-Type": "application/json"} if data else {})
    r = conn.getresponse()
    out = Resp(r.status, dict(r.getheaders()), r.read())
    conn.close()
    return out


def get_url(url: str, method: str = "GET", body: Optional[str] = None) -> Resp:
    """Follow nothing: return redirects as-is."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    hdrs = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    conn.request(method, u.path + (("?" + u.query) if u.query else ""), body=body, headers=hdrs)
    r = conn.getresponse()
    out = Resp(r.status, dict(r.getheaders()), r.read())
    conn.close()
    return out


def client(fs: FakeStripe, retries: int = 0) -> stripe.StripeClient:
    return stripe.StripeClient(KEY, base_addresses={"api": fs.url},
                               max_network_retries=retries)


def onboarded_account(fs: FakeStripe) -> str:
    a = call(fs, "POST", "/v1/accounts", {
        "type": "express", "email": "seller@example.test",
        "capabilities": {"card_payments": {"requested": True},
                         "transfers": {"requested": True}}}).json()
    assert control(fs, "POST", f"/accounts/{a['id']}/complete_onboarding").status == 200
    return a["id"]


def destination_pi(fs: FakeStripe, acct: str, amount: int = 5000, fee: int = 500,
                   capture_method: str = "manual", idem: Optional[str] = None) -> Dict[str, Any]:
    r = call(fs, "POST", "/v1/payment_intents", {
        "amount": amount, "currency": "usd", "capture_method": capture_method,
        "transfer_data": {"destination": acct}, "application_fee_amount": fee,
        "transfer_group": "listing_1", "metadata": {"payment_id": "pay_1"}}, idem=idem)
    assert r.status == 200, r.body
    return r.json()


def event_types(fs: FakeStripe) -> List[str]:
    return [e["type"] for e in fs.events()]


# ---- auth, headers, envelope --------------------------------------------------------------
def test_auth_required_and_error_shape(fake):
    r = call(fake, "GET", "/v1/payment_intents", key=None)
    assert r.status == 401
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert "You did not provide an API key" in err["message"]
    assert r.headers["request-id"].startswith("req_")

    r = call(fake, "GET", "/v1/payment_intents", key="sk_live_abcdefabcdef1234")
    assert r.status == 401
    r = call(fake, "GET", "/v1/payment_intents", key="not_a_key_at_all_1234")
    assert r.status == 401
    assert "not_a_key_at_all_1234" not in r.body.decode()  # masked
    assert r.json()["error"]["message"].endswith("1234")

    # Basic auth (curl -u sk_test_…:) works too
    basic = base64.b64encode(f"{KEY}:".encode()).decode()
    r = call(fake, "GET", "/v1/payment_intents", key=None,
             headers={"Authorization": f"Basic {basic}"})
    assert r.status == 200
    assert r.json() == {"object": "list", "data": [], "has_more": False,
                        "url": "/v1/payment_intents"}


def test_request_id_and_stripe_version_echo(fake):
    r = call(fake, "GET", "/v1/payment_intents", version="2023-10-16")
    assert r.headers["stripe-version"] == "2023-10-16"
    r2 = call(fake, "GET", "/v1/payment_intents")
    assert r2.headers["stripe-version"] == "2024-06-20"
    assert r.headers["request-id"] != r2.headers["request-id"]
    r = call(fake, "GET", "/v1/payment_intents/pi_doesnotexist")
    assert r.status == 404
    assert r.json()["error"]["code"] == "resource_missing"
    assert r.json()["error"]["request_log_url"].startswith("https://dashboard.stripe.com/")
    r = call(fake, "GET", "/v1/nothing_here")
    assert r.status == 404 and "Unrecognized request URL" in r.json()["error"]["message"]


def test_unknown_and_missing_params(fake):
    r = call(fake, "POST", "/v1/payment_intents", {"currency": "usd"})
    assert r.status == 400
    assert r.json()["error"]["code"] == "parameter_missing"
    assert r.json()["error"]["param"] == "amount"
    r = call(fake, "POST", "/v1/payment_intents", {"amount": 100, "currency": "usd",
                                                    "bogus": "x"})
    assert r.json()["error"]["code"] == "parameter_unknown"
    assert r.json()["error"]["param"] == "bogus"
    r = call(fake, "POST", "/v1/payment_intents", {"amount": "12x", "currency": "usd"})
    assert r.json()["error"]["code"] == "parameter_invalid_integer"


def test_form_decoding_matches_official_encoder_fixtures():
    with open(os.path.join(FIXTURES, "form_encoding.json"), encoding="utf-8") as fh:
        cases = json.load(fh)["cases"]
    assert len(cases) >= 10

    def stringify(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: stringify(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [stringify(x) for x in v]
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)

    for c in cases:
        assert parse_form(c["encoded"]) == stringify(c["params"]), c["name"]
    # the `[]` array form decodes like the indexed one
    assert parse_form("expand[]=latest_charge&expand[]=b") == \
        parse_form("expand[0]=latest_charge&expand[1]=b")


def test_params_reach_the_fake_as_parsed_by_stripe(fake):
    body = ("amount=2000&currency=usd&metadata[order%20id]=a%26b&expand[]=latest_charge"
            "&transfer_group=g%3A1")
    r = call(fake, "POST", "/v1/payment_intents", raw=body)
    assert r.status == 200, r.body
    pi = r.json()
    assert pi["metadata"] == {"order id": "a&b"}
    assert pi["transfer_group"] == "g:1"
    assert pi["latest_charge"] is None


# ---- idempotency -------------------------------------------------------------------------
def test_idempotency_replay_mismatch_and_scope(fake):
    params = {"amount": 2000, "currency": "usd", "metadata": {"a": "1"}}
    r1 = call(fake, "POST", "/v1/payment_intents", params, idem="payment:1:create")
    r2 = call(fake, "POST", "/v1/payment_intents", params, idem="payment:1:create")
    assert r1.status == r2.status == 200
    assert r1.body == r2.body
    assert r2.headers["idempotent-replayed"] == "true"
    assert r2.headers["original-request"] == r1.headers["request-id"]
    assert "idempotent-replayed" not in r1.headers
    pis = call(fake, "GET", "/v1/payment_intents").json()["data"]
    assert len(pis) == 1

    # same key, other params -> 400 idempotency_error, nothing created
    r3 = call(fake, "POST", "/v1/payment_intents", dict(params, amount=2001),
              idem="payment:1:create")
    assert r3.status == 400
    assert r3.json()["error"]["type"] == "idempotency_error"
    assert "same parameters" in r3.json()["error"]["message"]
    # same key on another endpoint -> idempotency_error too
    r4 = call(fake, "POST", "/v1/refunds", {"payment_intent": r1.json()["id"]},
              idem="payment:1:create")
    assert r4.status == 400 and r4.json()["error"]["type"] == "idempotency_error"
    # keys are scoped per secret key: another key may reuse it
    r5 = call(fake, "POST", "/v1/payment_intents", dict(params, amount=3000),
              idem="payment:1:create", key="sk_test_anotherKeyZZZZ9999")
    assert r5.status == 200 and r5.json()["id"] != r1.json()["id"]
    assert len(call(fake, "GET", "/v1/payment_intents").json()["data"]) == 2


def test_idempotency_does_not_store_validation_errors_but_stores_declines(fake):
    bad = call(fake, "POST", "/v1/payment_intents", {"currency": "usd"}, idem="k-validate")
    assert bad.status == 400
    good = call(fake, "POST", "/v1/payment_intents", {"amount": 900, "currency": "usd"},
                idem="k-validate")
    assert good.status == 200  # the 400 was not saved

    params = {"amount": 900, "currency": "usd", "payment_method": "pm_card_chargeDeclined",
              "confirm": True}
    d1 = call(fake, "POST", "/v1/payment_intents", params, idem="k-decline")
    d2 = call(fake, "POST", "/v1/payment_intents", params, idem="k-decline")
    assert d1.status == d2.status == 402
    assert d1.body == d2.body and d2.headers["idempotent-replayed"] == "true"


def test_concurrent_request_with_same_key_gets_409_then_replay(fake):
    fake.inject_fault(type="delay", method="POST", path_prefix="/v1/payment_intents",
                      delay_ms=1200, count=1)
    params = {"amount": 1500, "currency": "usd"}
    with pytest.raises((socket.timeout, TimeoutError)):
        call(fake, "POST", "/v1/payment_intents", params, idem="slow-1", timeout=0.3)
    busy = call(fake, "POST", "/v1/payment_intents", params, idem="slow-1")
    assert busy.status == 409
    assert busy.json()["error"]["type"] == "idempotency_error"
    assert busy.json()["error"]["code"] == "idempotency_key_in_use"
    assert busy.headers["stripe-should-retry"] == "true"
    time.sleep(1.3)
    again = call(fake, "POST", "/v1/payment_intents", params, idem="slow-1")
    assert again.status == 200 and again.headers["idempotent-replayed"] == "true"
    assert len(call(fake, "GET", "/v1/payment_intents").json()["data"]) == 1


# ---- payment intents -------------------------------------------------------------------
def test_manual_capture_destination_flow(fake):
    acct = onboarded_account(fake)
    pi = destination_pi(fake, acct)
    assert pi["id"].startswith("pi_")
    assert pi["client_secret"].startswith(pi["id"] + "_secret_")
    assert pi["status"] == "requires_payment_method"
    assert pi["transfer_data"] == {"destination": acct}
    assert pi["application_fee_amount"] == 500 and pi["capture_method"] == "manual"

    # capture before the buyer confirmed -> unexpected state
    r = call(fake, "POST", f"/v1/payment_intents/{pi['id']}/capture")
    assert r.status == 400 and r.json()["error"]["code"] == "payment_intent_unexpected_state"

    st, body = fake.confirm_payment_intent(pi["id"], "pm_card_visa")
    assert st == 200 and body["status"] == "requires_capture"
    assert body["amount_capturable"] == 5000 and body["amount_received"] == 0
    assert body["payment_method"].startswith("pm_")

    r = call(fake, "POST", f"/v1/payment_intents/{pi['id']}/capture", {"amount_to_capture": 6000})
    assert r.status == 400 and r.json()["error"]["param"] == "amount_to_capture"

    r = call(fake, "POST", f"/v1/payment_intents/{pi['id']}/capture", {"amount_to_capture": 4000},
             idem="payment:1:capture:1")
    assert r.status == 200
    cap = r.json()
    assert cap["status"] == "succeeded" and cap["amount_received"] == 4000
    assert cap["amount_capturable"] == 0
    assert cap["latest_charge"].startswith("ch_")

    full = call(fake, "GET", f"/v1/payment_intents/{pi['id']}",
                {"expand": ["latest_charge"]}).json()
    ch = full["latest_charge"]
    assert isinstance(ch, dict) and ch["object"] == "charge"
    assert ch["captured"] is True and ch["amount_captured"] == 4000
    assert ch["amount_refunded"] == 1000  # released, uncaptured remainder
    assert ch["balance_transaction"].startswith("txn_")
    assert ch["transfer"].startswith("tr_") and ch["application_fee"].startswith("fee_")
    tr = call(fake, "GET", f"/v1/transfers/{ch['transfer']}").json()
    assert tr["amount"] == 3500 and tr["destination"] == acct
    assert tr["source_transaction"] == ch["id"] and tr["transfer_group"] == "listing_1"

    # cancel after success is refused with Stripe's code
    r = call(fake, "POST", f"/v1/payment_intents/{pi['id']}/cancel")
    assert r.status == 400 and r.json()["error"]["code"] == "payment_intent_unexpected_state"
    types = event_types(fake)
    for t in ("payment_intent.created", "charge.succeeded",
              "payment_intent.amount_capturable_updated", "charge.captured",
              "payment_intent.succeeded", "transfer.created"):
        assert t in types
    assert types.index("payment_intent.amount_capturable_updated") < \
        types.index("payment_intent.succeeded")


def test_balance_is_pending_until_available_on_then_available(fake):
    acct = onboarded_account(fake)
    pi = destination_pi(fake, acct)
    fake.confirm_payment_intent(pi["id"], "pm_card_visa")
    assert call(fake, "POST", f"/v1/payment_intents/{pi['id']}/capture", idem="cap-balance").status == 200
    seller = call(fake, "GET", "/v1/balance", account=acct).json()
    assert seller["object"] == "balance"
    assert seller["pending"][0]["amount"] == 4500 and seller["available"][0]["amount"] == 0, seller
    platform = call(fake, "GET", "/v1/balance").json()
    assert platform["pending"][0]["amount"] > 0  # the charge, less the transfer and Stripe's fee
    assert call(fake, "GET", "/v1/balance", {"limit": 3}).status == 400
    control(fake, "POST", "/clock/advance", {"seconds": 3 * 86400})
    later = call(fake, "GET", "/v1/balance", account=acct).json()
    assert later["available"][0]["amount"] == 4500 and later["pending"][0]["amount"] == 0, later


def test_destination_requires_onboarded_account(fake):
    a = call(fake, "POST", "/v1/accounts", {"type": "express",
                                             "capabilities": {"transfers": {"requested": True}}})
    r = call(fake, "POST", "/v1/payment_intents", {
        "amount": 5000, "currency": "usd", "transfer_data": {"destination": a.json()["id"]}})
    assert r.status == 400
    assert r.json()["error"]["code"] == "insufficient_capabilities_for_transfer"


def test_declines(fake):
    pi = call(fake, "POST", "/v1/payment_intents", {"amount": 2500, "currency": "usd"}).json()
    st, err = fake.confirm_payment_intent(pi["id"], "pm_card_chargeDeclined")
    assert st == 402
    e = err["error"]
    assert e["type"] == "card_error" and e["code"] == "card_declined"
    assert e["decline_code"] == "generic_decline"
    assert e["payment_intent"]["status"] == "requires_payment_method"
    assert e["charge"].startswith("ch_")
    pi2 = call(fake, "GET", f"/v1/payment_intents/{pi['id']}").json()
    assert pi2["status"] == "requires_payment_method"
    assert pi2["last_payment_error"]["decline_code"] == "generic_decline"

    r = call(fake, "POST", f"/v1/payment_intents/{pi['id']}/confirm",
             {"payment_method": "pm_card_chargeDeclinedInsufficientFunds"})
    assert r.status == 402
    assert r.json()["error"]["decline_code"] == "insufficient_funds"
    assert event_types(fake).count("payment_intent.payment_failed") == 2
    assert event_types(fake).count("charge.failed") == 2

    # then a good card works on the same intent (automatic capture)
    r = call(fake, "POST", f"/v1/payment_intents/{pi['id']}/confirm",
             {"payment_method": "pm_card_visa"})
    assert r.status == 200 and r.json()["status"] == "succeeded"
    assert r.json()["amount_received"] == 2500
    # confirming again is refused
    r = call(fake, "POST", f"/v1/payment_intents/{pi['id']}/confirm",
             {"payment_method": "pm_card_visa"})
    assert r.status == 400 and r.json()["error"]["code"] == "payment_intent_unexpected_state"


def test_stripe_library_sees_typed_errors(fake):
    c = client(fake)
    pi = c.v1.payment_intents.create(params={"amount": 1000, "currency": "usd"})
    with pytest.raises(stripe.CardError) as ei:
        c.v1.payment_intents.confirm(pi.id, params={"payment_method": "pm_card_chargeDeclined"})
    assert ei.value.code == "card_declined"
    assert ei.value.error.decline_code == "generic_decline"
    assert ei.value.request_id.startswith("req_")
    with pytest.raises(stripe.InvalidRequestError) as ei:
        c.v1.payment_intents.capture(pi.id)
    assert ei.value.code == "payment_intent_unexpected_state"


def test_cancel_releases_authorization(fake):
    pi = call(fake, "POST", "/v1/payment_intents", {"amount": 3000, "currency": "usd",
                                                     "capture_method": "manual"}).json()
    fake.confirm_payment_intent(pi["id"])
    r = call(fake, "POST", f"/v1/payment_intents/{pi['id']}/cancel",
             {"cancellation_reason": "abandoned"})
    assert r.status == 200
    assert r.json()["status"] == "canceled" and r.json()["cancellation_reason"] == "abandoned"
    assert r.json()["canceled_at"] is not None
    ch = call(fake, "GET", f"/v1/charges/{r.json()['latest_charge']}").json()
    assert ch["captured"] is False and ch["refunded"] is True
    assert "payment_intent.canceled" in event_types(fake)
    r = call(fake, "POST", f"/v1/payment_intents/{pi['id']}/cancel")
    assert r.status == 400 and r.json()["error"]["code"] == "payment_intent_unexpected_state"


def test_three_d_secure_browser_step(fake):
    pi = call(fake, "POST", "/v1/payment_intents", {"amount": 3000, "currency": "usd"}).json()
    st, body = fake.confirm_payment_intent(pi["id"], "pm_card_authenticationRequired")
    assert st == 200 and body["status"] == "requires_action"
    assert body["next_action"]["type"] == "use_stripe_sdk"
    r = control(fake, "POST", f"/payment_intents/{pi['id']}/authenticate",
                {"outcome": "succeed"})
    assert r.status == 200 and r.json()["status"] == "succeeded"


def test_browser_confirms_with_the_publishable_key_in_the_body(fake):
    """What Stripe.js does (and the buyer page, against the fake): `key=pk_test_…` and the
    client secret as form parameters, no Authorization header, so the browser's request needs no
    CORS preflight; the answer allows any origin to read it. A wrong client secret, a secret key
    in the body, or a publishable key on another endpoint are refused."""
    pi = call(fake, "POST", "/v1/payment_intents", {"amount": 3000, "currency": "usd",
                                                    "capture_method": "manual"}).json()
    form = {"key": "pk_test_browser", "client_secret": pi["client_secret"], "payment_method": "pm_card_visa"}
    wrong = call(fake, "POST", f"/v1/payment_intents/{pi['id']}/confirm", key=None,
                 raw=urllib.parse.urlencode({**form, "client_secret": pi["client_secret"] + "x"}))
    assert wrong.status == 400 and wrong.json()["error"]["param"] == "client_secret"
    secret = call(fake, "POST", f"/v1/payment_intents/{pi['id']}/confirm", key=None,
                  raw=urllib.parse.urlencode({**form, "key": KEY}))
    assert secret.status == 401, secret.body
    elsewhere = call(fake, "POST", "/v1/refunds", key=None,
                     raw=urllib.parse.urlencode({"key": "pk_test_browser", "payment_intent": pi["id"]}))
    assert elsewhere.status == 401 and "publishable" in elsewhere.json()["error"]["message"]
    confirmed = call(fake, "POST", f"/v1/payment_intents/{pi['id']}/confirm", key=None,
                     raw=urllib.parse.urlencode(form))
    assert confirmed.status == 200, confirmed.body
    assert confirmed.json()["status"] == "requires_capture"
    assert confirmed.headers["access-control-allow-origin"] == "*"
    logged = fake.received("POST", f"/v1/payment_intents/{pi['id']}/confirm")[-1]
    assert logged["authorization"] == {"present": True, "scheme": "key-param", "key_type": "pk_test"}
    assert "key" not in logged["params"]


def test_browser_confirms_a_direct_charge_naming_the_connected_account(fake):
    """Issue 16: Stripe.js initialised with `stripeAccount` sends it as `_stripe_account` (beside
    `key`); without it a connected account's intent is not found. The log shows the account as
    the Stripe-Account it stands for."""
    acct = onboarded_account(fake)
    pi = call(fake, "POST", "/v1/payment_intents", {"amount": 3000, "currency": "usd", "capture_method": "manual",
                                                    "application_fee_amount": 300}, account=acct).json()
    form = {"key": "pk_test_browser", "client_secret": pi["client_secret"], "payment_method": "pm_card_visa"}
    unscoped = call(fake, "POST", f"/v1/payment_intents/{pi['id']}/confirm", key=None, raw=urllib.parse.urlencode(form))
    assert unscoped.status == 404, unscoped.body
    confirmed = call(fake, "POST", f"/v1/payment_intents/{pi['id']}/confirm", key=None,
                     raw=urllib.parse.urlencode({**form, "_stripe_account": acct}))
    assert confirmed.status == 200 and confirmed.json()["status"] == "requires_capture", confirmed.body
    logged = fake.received("POST", f"/v1/payment_intents/{pi['id']}/confirm")[-1]
    assert logged["headers"]["Stripe-Account"] == acct and "_stripe_account" not in logged["params"]


# ---- refunds -----------------------------------------------------------------------------
def paid_pi(fs: FakeStripe, amount: int = 5000) -> Dict[str, Any]:
    pi = call(fs, "POST", "/v1/payment_intents", {"amount": amount, "currency": "usd",
                                                   "payment_method": "pm_card_visa",
                                                   "confirm": True}).json()
    assert pi["status"] == "succeeded"
    return pi


def test_partial_refunds_are_cumulative_and_capped(fake):
    pi = paid_pi(fake)
    r1 = call(fake, "POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 2000,
                                             "reason": "requested_by_customer",
                                             "metadata": {"case": "1"}})
    assert r1.status == 200
    rf = r1.json()
    assert rf["id"].startswith("re_") and rf["status"] == "succeeded"
    assert rf["charge"] == pi["latest_charge"] and rf["payment_intent"] == pi["id"]
    assert rf["metadata"] == {"case": "1"}
    r2 = call(fake, "POST", "/v1/refunds", {"charge": pi["latest_charge"], "amount": 2000})
    assert r2.status == 200
    ch = call(fake, "GET", f"/v1/charges/{pi['latest_charge']}").json()
    assert ch["amount_refunded"] == 4000 and ch["refunded"] is False

    over = call(fake, "POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 1500})
    assert over.status == 400
    e = over.json()["error"]
    assert e["type"] == "invalid_request_error" and e["code"] == "amount_too_large"
    assert e["param"] == "amount"
    assert "greater than unrefunded amount on charge ($10.00)" in e["message"]

    rest = call(fake, "POST", "/v1/refunds", {"payment_intent": pi["id"]})  # default: the rest
    assert rest.status == 200 and rest.json()["amount"] == 1000
    ch = call(fake, "GET", f"/v1/charges/{pi['latest_charge']}").json()
    assert ch["amount_refunded"] == 5000 and ch["refunded"] is True
    again = call(fake, "POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 1})
    assert again.status == 400 and again.json()["error"]["code"] == "charge_already_refunded"
    lst = call(fake, "GET", "/v1/refunds", {"payment_intent": pi["id"]}).json()
    assert [x["amount"] for x in lst["data"]] == [1000, 2000, 2000]
    assert event_types(fake).count("charge.refunded") == 3
    assert event_types(fake).count("refund.created") == 3


def test_refund_of_destination_charge_reverses_transfer_and_fee(fake):
    acct = onboarded_account(fake)
    pi = destination_pi(fake, acct, amount=10000, fee=1000, capture_method="automatic")
    fake.confirm_payment_intent(pi["id"])
    r = call(fake, "POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 5000,
                                            "reverse_transfer": True,
                                            "refund_application_fee": True})
    assert r.status == 200
    rf = r.json()
    assert rf["transfer_reversal"].startswith("trr_")
    ch = call(fake, "GET", f"/v1/charges/{rf['charge']}",).json()
    tr = call(fake, "GET", f"/v1/transfers/{ch['transfer']}").json()
    assert tr["amount"] == 9000 and tr["amount_reversed"] == 4500 and tr["reversed"] is False
    fee = call(fake, "GET", f"/v1/application_fees/{ch['application_fee']}").json()
    assert fee["amount"] == 1000 and fee["amount_refunded"] == 500
    assert "transfer.reversed" in event_types(fake)


def test_refund_pending_then_succeeded_via_control(fake):
    pi = paid_pi(fake)
    assert control(fake, "POST", "/refunds/mode", {"status": "pending"}).status == 200
    rf = call(fake, "POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 1000}).json()
    assert rf["status"] == "pending"
    r = control(fake, "POST", f"/refunds/{rf['id']}/status", {"status": "succeeded"})
    assert r.status == 200 and r.json()["status"] == "succeeded"
    assert call(fake, "GET", f"/v1/refunds/{rf['id']}").json()["status"] == "succeeded"
    updated = [e for e in fake.events() if e["type"] == "charge.refund.updated"]
    assert len(updated) == 1
    assert updated[0]["data"]["previous_attributes"] == {"status": "pending"}
    assert "refund.updated" in event_types(fake)


# ---- accounts & onboarding ----------------------------------------------------------------
def test_account_create_initial_state(fake):
    r = call(fake, "POST", "/v1/accounts", {
        "type": "express", "country": "US", "email": "s@example.test",
        "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}},
        "settings": {"payouts": {"schedule": {"delay_days": 7}}},
        "metadata": {"profile_id": "p1"}})
    assert r.status == 200
    a = r.json()
    assert a["id"].startswith("acct_") and a["type"] == "express"
    assert a["charges_enabled"] is False and a["details_submitted"] is False
    assert a["payouts_enabled"] is False
    assert a["requirements"]["currently_due"]
    assert a["capabilities"] == {"card_payments": "inactive", "transfers": "inactive"}
    assert a["settings"]["payouts"]["schedule"]["delay_days"] == 7
    assert a["metadata"] == {"profile_id": "p1"}
    u = call(fake, "POST", f"/v1/accounts/{a['id']}", {"metadata": {"x": "y"}}).json()
    assert u["metadata"] == {"profile_id": "p1", "x": "y"}
    assert call(fake, "GET", f"/v1/accounts/{a['id']}").json()["email"] == "s@example.test"
    r = call(fake, "POST", f"/v1/accounts/{a['id']}/login_links")
    assert r.status == 400  # not onboarded yet


def test_account_link_single_use_and_redirects(fake):
    a = call(fake, "POST", "/v1/accounts", {"type": "express"}).json()
    link = call(fake, "POST", "/v1/account_links", {
        "account": a["id"], "refresh_url": "https://app.test/refresh?state=s1",
        "return_url": "https://app.test/return?state=s1", "type": "account_onboarding"}).json()
    assert link["object"] == "account_link"
    assert link["expires_at"] - link["created"] == 300
    assert link["url"].startswith(fake.url + "/setup/e/")

    page = get_url(link["url"])
    assert page.status == 200
    html = page.body.decode()
    assert 'id="complete"' in html and "<form" in html
    action = html.split('action="')[1].split('"')[0]
    session = html.split('name="session" value="')[1].split('"')[0]

    again = get_url(link["url"])  # single use
    assert again.status == 302
    assert again.headers["location"] == "https://app.test/refresh?state=s1"

    done = get_url(fake.url + action, "POST",
                   urllib.parse.urlencode({"session": session, "action": "complete"}))
    assert done.status == 303
    assert done.headers["location"] == "https://app.test/return?state=s1"
    acct = call(fake, "GET", f"/v1/accounts/{a['id']}").json()
    assert acct["details_submitted"] and acct["charges_enabled"] and acct["payouts_enabled"]
    assert acct["requirements"]["currently_due"] == []
    replay = get_url(fake.url + action, "POST",
                     urllib.parse.urlencode({"session": session, "action": "complete"}))
    assert replay.status == 302 and replay.headers["location"].endswith("/refresh?state=s1")

    login = call(fake, "POST", f"/v1/accounts/{a['id']}/login_links")
    assert login.status == 200 and login.json()["object"] == "login_link"
    assert get_url(login.json()["url"]).status == 200


def test_expired_account_link_redirects_to_refresh(fake):
    a = call(fake, "POST", "/v1/accounts", {"type": "express"}).json()
    link = call(fake, "POST", "/v1/account_links", {
        "account": a["id"], "refresh_url": "https://app.test/refresh",
        "return_url": "https://app.test/return", "type": "account_onboarding"}).json()
    control(fake, "POST", "/clock/advance", {"seconds": 301})
    r = get_url(link["url"])
    assert r.status == 302 and r.headers["location"] == "https://app.test/refresh"
    assert call(fake, "GET", f"/v1/accounts/{a['id']}").json()["details_submitted"] is False


def test_onboarding_emits_account_updated_signed_with_connect_secret(fake, receiver):
    a = call(fake, "POST", "/v1/accounts", {"type": "express",
                                             "capabilities": {"transfers": {"requested": True}}}
             ).json()
    link = call(fake, "POST", "/v1/account_links", {
        "account": a["id"], "refresh_url": "https://app.test/r", "return_url": "https://app.test/ok",
        "type": "account_onboarding"}).json()
    html = get_url(link["url"]).body.decode()
    action = html.split('action="')[1].split('"')[0]
    session = html.split('name="session" value="')[1].split('"')[0]
    get_url(fake.url + action, "POST", urllib.parse.urlencode({"session": session,
                                                               "action": "complete"}))
    assert fake.wait_for_webhooks(5)
    got = [g for g in receiver.events("/connect") if g["event"]["type"] == "account.updated"]
    assert len(got) == 1
    g = got[0]
    evt = g["event"]
    assert evt["account"] == a["id"] and evt["id"].startswith("evt_")
    assert evt["data"]["object"]["charges_enabled"] is True
    assert evt["data"]["previous_attributes"]["charges_enabled"] is False
    assert evt["livemode"] is False and evt["api_version"] == "2024-06-20"
    sig = g["headers"]["Stripe-Signature"]
    assert stripe.WebhookSignature.verify_header(g["body"].decode(), sig, CONNECT_SECRET, 300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(g["body"].decode(), sig, PLATFORM_SECRET, 300)
    ev = stripe.Webhook.construct_event(g["body"], sig, CONNECT_SECRET)
    assert ev.type == "account.updated"
    # no account events went to the platform endpoint
    assert not [x for x in receiver.events("/platform") if x["event"].get("account")]


# ---- faults & request log ---------------------------------------------------------------
def test_fault_injection_counts_down_and_request_log(fake):
    f = fake.inject_fault(type="error", method="POST", path_prefix="/v1/payment_intents",
                          status=500, count=2)
    params = {"amount": 1200, "currency": "usd"}
    r1 = call(fake, "POST", "/v1/payment_intents", params, idem="payment:9:create")
    r2 = call(fake, "POST", "/v1/payment_intents", params, idem="payment:9:create")
    r3 = call(fake, "POST", "/v1/payment_intents", params, idem="payment:9:create")
    assert (r1.status, r2.status, r3.status) == (500, 500, 200)
    assert r1.json()["error"]["type"] == "api_error"
    faults = control(fake, "GET", "/faults").json()["data"]
    assert faults[0]["id"] == f["id"] and faults[0]["remaining"] == 0 and faults[0]["hits"] == 2
    # a GET is not matched by a POST fault
    assert call(fake, "GET", "/v1/payment_intents").status == 200

    log = control(fake, "GET", "/requests?method=POST&path_prefix=/v1/payment_intents").json()
    entries = log["data"]
    assert [e["status"] for e in entries] == [500, 500, 200]
    assert {e["headers"]["Idempotency-Key"] for e in entries} == {"payment:9:create"}
    assert [bool(e["fault"]) for e in entries] == [True, True, False]
    for e in entries:
        assert e["params"] == {"amount": "1200", "currency": "usd"}
        assert e["raw_body"] == "amount=1200&currency=usd"
        assert e["authorization"] == {"present": True, "scheme": "Bearer",
                                      "key_type": "sk_test"}
    assert KEY not in json.dumps(log)
    by_key = control(fake, "GET", "/requests?idempotency_key=payment:9:create").json()["data"]
    assert len(by_key) == 3
    assert control(fake, "DELETE", "/requests").status == 200
    assert control(fake, "GET", "/requests").json()["data"] == []


def test_fault_types_429_lock_timeout_drop_decline(fake):
    fake.inject_fault(type="rate_limit", path_prefix="/v1/accounts", should_retry=True)
    r = call(fake, "POST", "/v1/accounts", {"type": "express"})
    assert r.status == 429 and r.json()["error"]["code"] == "rate_limit"
    assert r.headers["stripe-should-retry"] == "true"

    fake.inject_fault(type="lock_timeout", path_prefix="/v1/accounts")
    r = call(fake, "POST", "/v1/accounts", {"type": "express"})
    assert r.status == 409 and r.json()["error"]["code"] == "lock_timeout"
    assert r.headers["stripe-should-retry"] == "true"

    fake.inject_fault(type="drop", path_prefix="/v1/accounts", count=1)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        call(fake, "POST", "/v1/accounts", {"type": "express"})
    # "after": Stripe did the work but the response was lost -> retry replays it
    fake.inject_fault(type="drop", when="after", path_prefix="/v1/accounts", count=1)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        call(fake, "POST", "/v1/accounts", {"type": "express"}, idem="acct:1")
    r = call(fake, "POST", "/v1/accounts", {"type": "express"}, idem="acct:1")
    assert r.status == 200 and r.headers["idempotent-replayed"] == "true"
    assert len(call(fake, "GET", "/v1/accounts").json()["data"]) == 1

    pi = call(fake, "POST", "/v1/payment_intents", {"amount": 999, "currency": "usd"}).json()
    fake.inject_fault(type="decline", path_prefix="/v1/payment_intents/",
                      decline_code="insufficient_funds")
    assert call(fake, "GET", f"/v1/payment_intents/{pi['id']}").status == 200  # not consumed
    r = call(fake, "POST", f"/v1/payment_intents/{pi['id']}/confirm",
             {"payment_method": "pm_card_visa"})
    assert r.status == 402 and r.json()["error"]["decline_code"] == "insufficient_funds"


def test_delay_past_client_timeout(fake):
    fake.inject_fault(type="delay", method="GET", path_prefix="/v1/payment_intents",
                      delay_ms=800, when="after")
    t0 = time.time()
    with pytest.raises((socket.timeout, TimeoutError)):
        call(fake, "GET", "/v1/payment_intents", timeout=0.3)
    assert time.time() - t0 < 0.8
    assert call(fake, "GET", "/v1/payment_intents", timeout=2).status == 200


def test_official_client_retries_with_same_idempotency_key(fake, monkeypatch):
    from stripe._http_client import HTTPClient
    monkeypatch.setattr(HTTPClient, "INITIAL_DELAY", 0.01)
    fake.inject_fault(type="error", method="POST", path_prefix="/v1/payment_intents", count=2)
    c = client(fake, retries=3)
    pi = c.v1.payment_intents.create(params={"amount": 700, "currency": "usd"})
    assert pi.status == "requires_payment_method"
    reqs = fake.received(method="POST", path_prefix="/v1/payment_intents")
    assert [r["status"] for r in reqs] == [500, 500, 200]
    assert len({r["headers"]["Idempotency-Key"] for r in reqs}) == 1


# ---- webhooks -------------------------------------------------------------------------
def test_webhook_retries_backoff_and_redelivery(fake, receiver):
    receiver.plan = [500, 503]
    pi = call(fake, "POST", "/v1/payment_intents", {"amount": 1000, "currency": "usd"}).json()
    assert fake.wait_for_webhooks(5)
    d = fake.deliveries(event_type="payment_intent.created")
    assert len(d) == 1 and d[0]["state"] == "succeeded"
    assert [a["status"] for a in d[0]["attempts"]] == [500, 503, 200]
    assert d[0]["attempts"][1]["at"] - d[0]["attempts"][0]["at"] >= 0.04
    evt_id = d[0]["event_id"]
    bodies = {g["body"] for g in receiver.events("/platform")}
    assert len(bodies) == 1  # same bytes every attempt
    evt = call(fake, "GET", f"/v1/events/{evt_id}").json()
    assert evt["data"]["object"]["id"] == pi["id"] and evt["pending_webhooks"] == 0

    # pause, queue, resume in order; redeliver duplicates
    control(fake, "POST", "/webhooks/pause", {"endpoint": "platform"})
    call(fake, "POST", f"/v1/payment_intents/{pi['id']}", {"metadata": {"a": "b"}})
    time.sleep(0.2)
    assert len(receiver.events("/platform")) == 3
    pending = control(fake, "GET", "/webhooks/deliveries?state=pending").json()["data"]
    assert len(pending) == 1
    assert call(fake, "GET", f"/v1/events/{pending[0]['event_id']}").json()[
        "pending_webhooks"] == 1
    control(fake, "POST", "/webhooks/resume", {})
    assert fake.wait_for_webhooks(5)
    assert receiver.events("/platform")[-1]["event"]["type"] == "payment_intent.updated"
    r = control(fake, "POST", "/webhooks/redeliver", {"event_id": evt_id, "sync": True})
    assert r.json()["data"][0]["attempts"][0]["status"] == 200
    dup = [g for g in receiver.events("/platform") if g["event"]["id"] == evt_id]
    assert len(dup) == 4  # 3 attempts + 1 redelivery


def test_webhook_gives_up_after_max_attempts(fake, receiver):
    receiver.plan = [500] * 10
    call(fake, "POST", "/v1/payment_intents", {"amount": 1000, "currency": "usd"})
    assert fake.wait_for_webhooks(5)
    d = fake.deliveries()[0]
    assert d["state"] == "failed" and len(d["attempts"]) == 4


def test_webhook_connection_error_is_retried(receiver):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there
    fs = FakeStripe(platform_webhook_url=f"http://127.0.0.1:{port}/x",
                    webhook_backoff=0.02, webhook_max_attempts=3).start()
    try:
        call(fs, "POST", "/v1/payment_intents", {"amount": 1000, "currency": "usd"})
        assert fs.wait_for_webhooks(5)
        d = fs.deliveries()[0]
        assert d["state"] == "failed" and len(d["attempts"]) == 3
        assert all(a["status"] is None and a["error"] for a in d["attempts"])
        # point it at a live endpoint and redeliver
        control(fs, "POST", "/webhooks/config", {"platform_url": receiver.base + "/p"})
        r = control(fs, "POST", "/webhooks/redeliver", {"event_id": d["event_id"], "sync": True})
        assert r.json()["data"][0]["state"] == "succeeded"
    finally:
        fs.stop()


def test_rotation_signs_with_every_secret(receiver):
    fs = FakeStripe(platform_webhook_url=receiver.base + "/p",
                    platform_secrets=["whsec_test_old", "whsec_test_new"],
                    webhook_backoff=0.02).start()
    try:
        call(fs, "POST", "/v1/payment_intents", {"amount": 1000, "currency": "usd"})
        assert fs.wait_for_webhooks(5)
        g = receiver.events("/p")[0]
        sig = g["headers"]["Stripe-Signature"]
        assert sig.count("v1=") == 2 and sig.startswith("t=")
        for s in ("whsec_test_old", "whsec_test_new"):
            assert stripe.WebhookSignature.verify_header(g["body"].decode(), sig, s)
    finally:
        fs.stop()


@pytest.fixture
def self_signed(tmp_path):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"], check=True,
                   capture_output=True)
    return cert, key


def test_https_webhook_target_and_tls_server(self_signed):
    rec = Receiver(tls=self_signed)
    fs = FakeStripe(platform_webhook_url=rec.base + "/hook", webhook_backoff=0.02,
                    tls_cert=self_signed[0], tls_key=self_signed[1]).start()
    try:
        assert fs.url.startswith("https://")
        c = stripe.StripeClient(KEY, base_addresses={"api": fs.url},
                                http_client=stripe.RequestsClient(verify_ssl_certs=False))
        pi = c.v1.payment_intents.create(params={"amount": 1000, "currency": "usd"})
        assert pi.id.startswith("pi_")
        assert fs.wait_for_webhooks(5)
        assert rec.events("/hook")[0]["event"]["type"] == "payment_intent.created"
    finally:
        fs.stop()
        rec.close()


# ---- disputes, transfers, events, connect ------------------------------------------------
def test_dispute_lifecycle(fake):
    pi = paid_pi(fake)
    r = control(fake, "POST", f"/charges/{pi['latest_charge']}/dispute",
                {"reason": "product_not_received", "amount": 5000})
    assert r.status == 200
    dp = r.json()
    assert dp["id"].startswith("dp_") and dp["status"] == "needs_response"
    assert dp["payment_intent"] == pi["id"] and dp["reason"] == "product_not_received"
    assert call(fake, "GET", f"/v1/charges/{pi['latest_charge']}").json()["disputed"] is True
    refund = call(fake, "POST", "/v1/refunds", {"payment_intent": pi["id"]})
    assert refund.status == 400 and refund.json()["error"]["code"] == "charge_disputed"

    u = call(fake, "POST", f"/v1/disputes/{dp['id']}", {
        "evidence": {"uncategorized_text": "Delivered", "shipping_tracking_number": "Z1"},
        "submit": False}).json()
    assert u["status"] == "needs_response" and u["evidence_details"]["has_evidence"] is True
    assert u["evidence"]["shipping_tracking_number"] == "Z1"
    bad = call(fake, "POST", f"/v1/disputes/{dp['id']}", {"evidence": {"nope": "x"}})
    assert bad.status == 400 and bad.json()["error"]["param"] == "evidence[nope]"
    s = call(fake, "POST", f"/v1/disputes/{dp['id']}", {"submit": True}).json()
    assert s["status"] == "under_review" and s["evidence_details"]["submission_count"] == 1
    assert call(fake, "POST", f"/v1/disputes/{dp['id']}/close").status == 400
    w = control(fake, "POST", f"/disputes/{dp['id']}/resolve", {"outcome": "won"})
    assert w.json()["status"] == "won"
    types = event_types(fake)
    for t in ("charge.dispute.created", "charge.dispute.funds_withdrawn",
              "charge.dispute.updated", "charge.dispute.funds_reinstated",
              "charge.dispute.closed"):
        assert t in types

    pi2 = paid_pi(fake)
    dp2 = control(fake, "POST", f"/charges/{pi2['latest_charge']}/dispute", {}).json()
    closed = call(fake, "POST", f"/v1/disputes/{dp2['id']}/close")
    assert closed.status == 200 and closed.json()["status"] == "lost"


def test_transfers_and_cumulative_reversals(fake):
    acct = onboarded_account(fake)
    pi = paid_pi(fake, 10000)
    tr = call(fake, "POST", "/v1/transfers", {
        "amount": 9000, "currency": "usd", "destination": acct,
        "source_transaction": pi["latest_charge"], "transfer_group": "listing_7",
        "metadata": {"milestone": "m1"}}).json()
    assert tr["id"].startswith("tr_") and tr["destination"] == acct
    too_much = call(fake, "POST", "/v1/transfers", {
        "amount": 2000, "currency": "usd", "destination": acct,
        "source_transaction": pi["latest_charge"]})
    assert too_much.status == 400
    r1 = call(fake, "POST", f"/v1/transfers/{tr['id']}/reversals", {"amount": 4000}).json()
    assert r1["id"].startswith("trr_") and r1["transfer"] == tr["id"]
    call(fake, "POST", f"/v1/transfers/{tr['id']}/reversals", {"amount": 4000})
    over = call(fake, "POST", f"/v1/transfers/{tr['id']}/reversals", {"amount": 1001})
    assert over.status == 400 and over.json()["error"]["code"] == "amount_too_large"
    t = call(fake, "GET", f"/v1/transfers/{tr['id']}").json()
    assert t["amount_reversed"] == 8000 and t["reversed"] is False
    assert t["reversals"]["total_count"] == 2
    last = call(fake, "POST", f"/v1/transfers/{tr['id']}/reversals").json()
    assert last["amount"] == 1000
    assert call(fake, "GET", f"/v1/transfers/{tr['id']}").json()["reversed"] is True
    assert event_types(fake).count("transfer.reversed") == 3


def test_events_list_filters_and_pagination(fake):
    for _ in range(3):
        paid_pi(fake, 1000)
    all_ = call(fake, "GET", "/v1/events", {"limit": 100}).json()["data"]
    assert len(all_) == 9  # created, charge.succeeded, payment_intent.succeeded x3
    assert all_[0]["created"] >= all_[-1]["created"]
    succ = call(fake, "GET", "/v1/events", {"type": "payment_intent.succeeded"}).json()
    assert len(succ["data"]) == 3
    wild = call(fake, "GET", "/v1/events", {"type": "payment_intent.*"}).json()
    assert len(wild["data"]) == 6
    page1 = call(fake, "GET", "/v1/events", {"limit": 4}).json()
    assert page1["has_more"] is True and len(page1["data"]) == 4
    page2 = call(fake, "GET", "/v1/events", {"limit": 10,
                                              "starting_after": page1["data"][-1]["id"]}).json()
    assert page2["has_more"] is False and len(page2["data"]) == 5
    assert not {e["id"] for e in page1["data"]} & {e["id"] for e in page2["data"]}
    future = call(fake, "GET", "/v1/events", {"created": {"gt": int(time.time()) + 100}}).json()
    assert future["data"] == []
    e = all_[0]
    assert e["request"]["id"].startswith("req_") and "idempotency_key" in e["request"]
    assert "account" not in e


def test_deauthorize_and_stripe_account_header(fake, receiver):
    acct = onboarded_account(fake)
    # a direct charge on the connected account is scoped to it
    pi = call(fake, "POST", "/v1/payment_intents", {"amount": 1000, "currency": "usd"},
              account=acct).json()
    assert call(fake, "GET", f"/v1/payment_intents/{pi['id']}").status == 404
    assert call(fake, "GET", f"/v1/payment_intents/{pi['id']}", account=acct).status == 200
    assert call(fake, "GET", "/v1/account", account=acct).json()["id"] == acct
    r = control(fake, "POST", f"/accounts/{acct}/deauthorize")
    assert r.status == 200 and r.json()["type"] == "account.application.deauthorized"
    assert fake.wait_for_webhooks(5)
    conn = [g["event"] for g in receiver.events("/connect")]
    assert any(e["type"] == "account.application.deauthorized" and e["account"] == acct
               for e in conn)
    assert any(e["type"] == "payment_intent.created" and e["account"] == acct for e in conn)
    r = call(fake, "GET", "/v1/account", account=acct)
    assert r.status == 403 and r.json()["error"]["code"] == "account_invalid"


def test_control_payouts_and_custom_events(fake, receiver):
    acct = onboarded_account(fake)
    assert control(fake, "POST", f"/accounts/{acct}/payouts",
                   {"amount": 4200, "status": "failed"}).status == 200
    assert fake.wait_for_webhooks(5)
    types = [(g["event"]["type"], g["event"].get("account")) for g in receiver.events("/connect")]
    assert ("payout.failed", acct) in types and ("payout.created", acct) in types


def test_reset_and_state_file(tmp_path):
    path = str(tmp_path / "state.json")
    fs = FakeStripe(state_file=path).start()
    pi = call(fs, "POST", "/v1/payment_intents", {"amount": 1000, "currency": "usd"}).json()
    fs.stop()
    fs2 = FakeStripe(state_file=path).start()
    try:
        assert call(fs2, "GET", f"/v1/payment_intents/{pi['id']}").json()["amount"] == 1000
        assert control(fs2, "POST", "/reset").status == 200
        assert call(fs2, "GET", f"/v1/payment_intents/{pi['id']}").status == 404
    finally:
        fs2.stop()


# ---- the state file: a snapshot and a journal ----------------------------------------------
def state_of(fs: FakeStripe) -> Dict[str, Any]:
    """Everything the state file must keep, JSON-normalised, to compare two fakes."""
    with fs.core.lock, fs.meta_lock:
        idem = {json.dumps(list(k)): dict(r, body=r["body"].decode())
                for k, r in fs.idem.items() if r["status"] is not None}
        return json.loads(json.dumps({"core": fs.core.snapshot(), "idempotency": idem}))


def crash_copy(fs: FakeStripe, tmp_path, name: str) -> str:
    """The state files as they are now, i.e. as a killed fake would leave them (a clean stop
    compacts; a kill leaves the journal to replay)."""
    folder = tmp_path / name
    folder.mkdir()
    path = str(folder / "state.json")
    shutil.copy(fs.state_file, path)
    shutil.copy(fs.state_file + ".journal", path + ".journal")
    return path


def journal_lines(path: str) -> List[bytes]:
    with open(path + ".journal", "rb") as fh:
        return fh.read().splitlines()


PI_PARAMS = {"amount": 1200, "currency": "usd", "metadata": {"order": "o-1"}}


def busy_day(fs: FakeStripe) -> Dict[str, str]:
    """One of each kind of write, so that a reload has every part of the state to restore:
    objects changed in place, accounts, links and onboarding sessions, login links, refunds,
    transfers, disputes, payouts, deauthorization, the clock, the refund mode, idempotency."""
    acct = onboarded_account(fs)
    other = call(fs, "POST", "/v1/accounts", {"type": "express"}).json()["id"]
    link = call(fs, "POST", "/v1/account_links", {
        "account": other, "refresh_url": "https://app.test/refresh",
        "return_url": "https://app.test/return", "type": "account_onboarding"}).json()
    page = get_url(link["url"]).body.decode()
    action = page.split('action="')[1].split('"')[0]
    session = page.split('name="session" value="')[1].split('"')[0]
    assert get_url(fs.url + action, "POST", urllib.parse.urlencode(
        {"session": session, "action": "complete"})).status == 303
    assert call(fs, "POST", f"/v1/accounts/{acct}/login_links").status == 200

    pi = destination_pi(fs, acct, idem="busy:pi")
    assert call(fs, "POST", f"/v1/payment_intents/{pi['id']}/confirm",
                {"payment_method": "pm_card_visa"}).json()["status"] == "requires_capture"
    assert call(fs, "POST", f"/v1/payment_intents/{pi['id']}/capture",
                {"amount_to_capture": 4000}).json()["status"] == "succeeded"
    assert call(fs, "POST", "/v1/refunds", {
        "payment_intent": pi["id"], "amount": 1000, "reverse_transfer": True,
        "refund_application_fee": True}, idem="busy:refund").status == 200

    paid = paid_pi(fs, 10000)
    tr = call(fs, "POST", "/v1/transfers", {
        "amount": 6000, "currency": "usd", "destination": acct,
        "source_transaction": paid["latest_charge"]}).json()
    assert call(fs, "POST", f"/v1/transfers/{tr['id']}/reversals",
                {"amount": 1000}).status == 200
    disputed = paid_pi(fs)
    assert control(fs, "POST", f"/charges/{disputed['latest_charge']}/dispute",
                   {"reason": "fraudulent"}).status == 200
    assert control(fs, "POST", f"/accounts/{acct}/payouts", {"amount": 700}).status == 200

    assert control(fs, "POST", "/clock/advance", {"seconds": 3600}).status == 200
    assert control(fs, "POST", "/refunds/mode", {"status": "pending"}).status == 200
    pending = call(fs, "POST", "/v1/refunds", {"payment_intent": paid_pi(fs)["id"]}).json()
    assert pending["status"] == "pending"
    assert control(fs, "POST", f"/accounts/{other}/deauthorize").status == 200
    declined = call(fs, "POST", "/v1/payment_intents", {
        "amount": 900, "currency": "usd", "payment_method": "pm_card_chargeDeclined",
        "confirm": True}, idem="busy:decline")
    assert declined.status == 402
    created = call(fs, "POST", "/v1/payment_intents", PI_PARAMS, idem="busy:plain")
    assert call(fs, "GET", "/v1/payment_intents").status == 200  # a scan, between writes
    return {"pi": pi["id"], "plain": created.json()["id"], "plain_body": created.body.decode(),
            "declined": declined.body.decode(), "paid": paid["id"]}


def test_state_survives_a_crash_through_the_journal(tmp_path):
    fs = FakeStripe(state_file=str(tmp_path / "state.json")).start()
    try:
        day = busy_day(fs)
        assert len(journal_lines(fs.state_file)) > 20  # one record per write, on top of...
        assert fs.store.generation == 1                 # ...the snapshot made at start-up
        crashed = crash_copy(fs, tmp_path, "crashed")
        live = state_of(fs)
    finally:
        fs.stop()

    fs2 = FakeStripe(state_file=crashed).start()
    try:
        assert state_of(fs2) == live
        again = call(fs2, "POST", "/v1/payment_intents", PI_PARAMS, idem="busy:plain")
        assert again.status == 200 and again.headers["idempotent-replayed"] == "true"
        assert again.body.decode() == day["plain_body"]
        declined = call(fs2, "POST", "/v1/payment_intents", {
            "amount": 900, "currency": "usd", "payment_method": "pm_card_chargeDeclined",
            "confirm": True}, idem="busy:decline")
        assert declined.status == 402 and declined.headers["idempotent-replayed"] == "true"
        assert declined.body.decode() == day["declined"]
        other_params = call(fs2, "POST", "/v1/payment_intents", dict(PI_PARAMS, amount=1300),
                            idem="busy:plain")
        assert other_params.status == 400
        pi = call(fs2, "GET", f"/v1/payment_intents/{day['pi']}").json()
        assert pi["status"] == "succeeded" and pi["amount_received"] == 4000
        fresh = call(fs2, "POST", "/v1/payment_intents", PI_PARAMS, idem="after-restart")
        assert fresh.status == 200 and "idempotent-replayed" not in fresh.headers
        after_writes = state_of(fs2)
    finally:
        fs2.stop()
    # a clean stop folds the journal into the snapshot, and that reloads the same state
    assert len(journal_lines(crashed)) == 1
    fs3 = FakeStripe(state_file=crashed)
    assert state_of(fs3) == after_writes
    fs3.stop()


def test_torn_last_journal_line_is_dropped(tmp_path):
    fs = FakeStripe(state_file=str(tmp_path / "state.json")).start()
    try:
        kept = call(fs, "POST", "/v1/payment_intents", PI_PARAMS, idem="kept").json()
        torn = call(fs, "POST", "/v1/payment_intents", PI_PARAMS, idem="torn").json()
        crashed = crash_copy(fs, tmp_path, "crashed")
    finally:
        fs.stop()
    with open(crashed + ".journal", "rb") as fh:
        data = fh.read()
    last = data.rstrip(b"\n").rsplit(b"\n", 1)[1]
    with open(crashed + ".journal", "wb") as fh:  # killed half-way through the last append
        fh.write(data[:len(data) - 1 - len(last) // 2])

    fs2 = FakeStripe(state_file=crashed).start()
    try:
        assert call(fs2, "GET", f"/v1/payment_intents/{kept['id']}").status == 200
        assert call(fs2, "GET", f"/v1/payment_intents/{torn['id']}").status == 404
        assert call(fs2, "POST", "/v1/payment_intents", PI_PARAMS,
                    idem="kept").headers["idempotent-replayed"] == "true"
        retry = call(fs2, "POST", "/v1/payment_intents", PI_PARAMS, idem="torn")
        assert retry.status == 200 and "idempotent-replayed" not in retry.headers
        # the torn line went with the start-up compaction: later appends replay fine
        assert len(journal_lines(crashed)) == 2
        recrashed = crash_copy(fs2, tmp_path, "recrashed")
    finally:
        fs2.stop()
    fs3 = FakeStripe(state_file=recrashed)
    assert retry.json()["id"] in fs3.core.objects
    fs3.stop()

    # a bad line that is not the last one is damage, not a crash: refuse to guess
    damaged = str(tmp_path / "damaged.json")
    with open(damaged, "w") as fh:
        json.dump({"generation": 7}, fh)
    with open(damaged + ".journal", "wb") as fh:
        fh.write(b'{"generation":7}\n{"order":["pi_1"\n{"clock_offset":5}\n')
    with pytest.raises(ValueError, match="line 2 is not a journal record"):
        FakeStripe(state_file=damaged)


def test_compaction_keeps_the_state(tmp_path):
    fs = FakeStripe(state_file=str(tmp_path / "state.json")).start()
    fs.store.compact_min_bytes = 0
    fs.store.compact_ratio = 0.5  # compact whenever the journal passes half the snapshot
    try:
        day = busy_day(fs)
        assert fs.store.generation > 3  # compacted during the run, not only at start-up
        with open(fs.state_file) as fh:
            assert json.load(fh)["generation"] == fs.store.generation
        assert os.path.getsize(fs.state_file + ".journal") < os.path.getsize(fs.state_file)
        crashed = crash_copy(fs, tmp_path, "crashed")
        live = state_of(fs)

        # Killed between the two steps of a compaction: the new snapshot is in place, the
        # old journal is not restarted yet. Replaying it would undo the capture below.
        pi = destination_pi(fs, onboarded_account(fs))
        stale_journal = crash_copy(fs, tmp_path, "stale")
        call(fs, "POST", f"/v1/payment_intents/{pi['id']}/confirm",
             {"payment_method": "pm_card_visa"})
        call(fs, "POST", f"/v1/payment_intents/{pi['id']}/capture")
        fs.compact_state()
        shutil.copy(fs.state_file, stale_journal)
        later = state_of(fs)
    finally:
        fs.stop()
    for path, expected in ((crashed, live), (stale_journal, later)):
        reloaded = FakeStripe(state_file=path)
        assert state_of(reloaded) == expected
        reloaded.stop()
    reloaded = FakeStripe(state_file=stale_journal).start()
    try:
        assert call(reloaded, "GET",
                    f"/v1/payment_intents/{pi['id']}").json()["status"] == "succeeded"
        assert call(reloaded, "GET", f"/v1/payment_intents/{day['paid']}").status == 200
    finally:
        reloaded.stop()


def test_concurrent_writes_reload_to_the_same_state(tmp_path):
    fs = FakeStripe(state_file=str(tmp_path / "state.json")).start()
    fs.store.compact_min_bytes, fs.store.compact_ratio = 0, 0.5  # compactions in between too
    errors: List[str] = []

    def worker(n: int) -> None:
        for i in range(12):
            pi = call(fs, "POST", "/v1/payment_intents", dict(PI_PARAMS, capture_method="manual"),
                      idem=f"w{n}-{i}").json()
            for step, params in (("confirm", {"payment_method": "pm_card_visa"}),
                                 ("capture", None)):
                if call(fs, "POST", f"/v1/payment_intents/{pi['id']}/{step}",
                        params).status != 200:
                    errors.append(f"{step} {pi['id']}")
    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert fs.store.generation > 3
        crashed = crash_copy(fs, tmp_path, "crashed")
        live = state_of(fs)
    finally:
        fs.stop()
    reloaded = FakeStripe(state_file=crashed)
    assert state_of(reloaded) == live
    assert sum(1 for o in reloaded.core.objects.values()
               if o.get("object") == "payment_intent" and o["status"] == "succeeded") == 96
    reloaded.stop()


def test_a_write_costs_the_same_whatever_the_state_size(tmp_path):
    """Bytes, not time: one write appends the same to the journal with 100 or 3000 objects,
    and leaves the snapshot alone."""
    fs = FakeStripe(state_file=str(tmp_path / "state.json")).start()
    fs.store.compact_min_bytes = 1 << 40  # no compaction in the middle of a measurement

    def fill(n_objects: int) -> None:  # straight into the core: faster than HTTP
        with fs.core.lock:
            while len(fs.core.objects) < n_objects:
                fs.core.pi_create(Ctx(request_id="req_fill"),
                                  {"amount": "1000", "currency": "usd"})
        fs.save_state()

    def bytes_for_one_write(n: int) -> int:
        snapshot = os.stat(fs.state_file)
        before = os.path.getsize(fs.state_file + ".journal")
        r = call(fs, "POST", "/v1/payment_intents", PI_PARAMS, idem=f"measure-{n}")
        assert r.status == 200
        after = os.stat(fs.state_file)
        assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
            (snapshot.st_ino, snapshot.st_size, snapshot.st_mtime_ns)
        return os.path.getsize(fs.state_file + ".journal") - before

    try:
        fill(100)
        small = bytes_for_one_write(1)
        fill(3000)
        large = bytes_for_one_write(2)
    finally:
        fs.stop()
    assert 0 < small < 20_000
    assert abs(large - small) <= small // 20, (small, large)
    assert os.path.getsize(fs.state_file) > 100 * large  # the whole state is far bigger


def test_request_log_keeps_the_most_recent_entries():
    fs = FakeStripe(request_log_limit=3).start()
    try:
        for n in range(5):
            call(fs, "GET", f"/v1/payment_intents/pi_{n}")
        assert [r["path"] for r in fs.received()] == [f"/v1/payment_intents/pi_{n}"
                                                      for n in (2, 3, 4)]
    finally:
        fs.stop()


def test_cli_starts_and_serves(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_stripe", "--port", "0",
                             "--platform-secret", "whsec_test_a,whsec_test_b", "--quiet"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in line
        url = line.strip().rsplit(" ", 1)[1]
        r = get_url(url + "/_control/health")
        assert r.status == 200 and r.json()["ok"] is True
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_direct_charge_application_fee_and_its_refund(fake, receiver):
    """Issue 16: a direct charge (on the connected account) with an application fee: the fee is
    a platform object naming the account; a refund on the connected account with
    `refund_application_fee` gives the fee back from the platform, proportionally."""
    acct = onboarded_account(fake)
    pi = call(fake, "POST", "/v1/payment_intents", {
        "amount": 5000, "currency": "usd", "capture_method": "manual", "application_fee_amount": 500,
        "payment_method_types": ["card"]}, account=acct, idem="direct:create").json()
    status, _ = fake.confirm_payment_intent(pi["id"], "pm_card_visa")
    assert status == 200
    captured = call(fake, "POST", f"/v1/payment_intents/{pi['id']}/capture", {}, account=acct,
                    idem="direct:capture")
    assert captured.status == 200, captured.body
    ch = call(fake, "GET", f"/v1/charges/{captured.json()['latest_charge']}", account=acct).json()
    assert ch["transfer"] is None and ch["application_fee"].startswith("fee_")
    # The fee is the platform's object (not the connected account's), and names the account.
    assert call(fake, "GET", f"/v1/application_fees/{ch['application_fee']}", account=acct).status == 404
    fee = call(fake, "GET", f"/v1/application_fees/{ch['application_fee']}").json()
    assert (fee["amount"], fee["account"], fee["charge"]) == (500, acct, ch["id"])

    # A platform-scoped refund cannot see the connected account's charge.
    assert call(fake, "POST", "/v1/refunds", {"payment_intent": pi["id"]}, idem="direct:r0").status == 404
    # reverse_transfer needs a destination charge.
    bad = call(fake, "POST", "/v1/refunds", {"payment_intent": pi["id"], "reverse_transfer": True},
               account=acct, idem="direct:r1")
    assert bad.status == 400 and bad.json()["error"]["param"] == "reverse_transfer"
    refund = call(fake, "POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 2000,
                                                "refund_application_fee": True}, account=acct,
                  idem="direct:r2")
    assert refund.status == 200, refund.body
    assert call(fake, "GET", f"/v1/refunds/{refund.json()['id']}", account=acct).status == 200
    fee = call(fake, "GET", f"/v1/application_fees/{ch['application_fee']}").json()
    assert fee["amount_refunded"] == 200 and not fee["refunded"]
    assert fee["refunds"]["data"][0]["amount"] == 200
    assert fake.wait_for_webhooks(5)
    connect = [(g["event"]["type"], g["event"].get("account")) for g in receiver.events("/connect")]
    assert ("charge.refunded", acct) in connect and ("payment_intent.succeeded", acct) in connect


def test_a_direct_refund_the_sellers_balance_cannot_cover_waits_for_funds(fake):
    """Stripe's balance rule: a refund is taken from the available balance of the account that
    owns the charge. When Stripe may not debit the account's bank (`debit_negative_balances`
    false) and the balance cannot cover it, the refund is made `pending` with `pending_reason:
    insufficient_funds`, takes nothing, and succeeds (refund.updated, charge.refund.updated)
    once the balance covers it, oldest first."""
    acct = onboarded_account(fake)
    pi = call(fake, "POST", "/v1/payment_intents", {
        "amount": 5000, "currency": "usd", "capture_method": "automatic", "application_fee_amount": 500,
        "payment_method_types": ["card"]}, account=acct, idem="short:create").json()
    assert fake.confirm_payment_intent(pi["id"], "pm_card_visa")[0] == 200
    # The default (debit_negative_balances true): covered whatever the balance, which goes negative.
    covered = call(fake, "POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 1000}, account=acct,
                   idem="short:r1").json()
    assert (covered["status"], covered["pending_reason"]) == ("succeeded", None)
    assert control(fake, "POST", f"/accounts/{acct}/balance", {"amount": 300, "debit_negative_balances": "no"}
                   ).status == 400
    set_ = control(fake, "POST", f"/accounts/{acct}/balance", {"amount": 300, "debit_negative_balances": False})
    assert set_.status == 200 and set_.json()["balance"]["available"][0]["amount"] == 300, set_.body
    # 300 available and 100 of fee given back cannot cover 1000.
    short = call(fake, "POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 1000,
                                               "refund_application_fee": True}, account=acct, idem="short:r2").json()
    assert (short["status"], short["pending_reason"], short["balance_transaction"]) == (
        "pending", "insufficient_funds", None), short
    second = call(fake, "POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 2000}, account=acct,
                  idem="short:r3").json()
    assert (second["status"], second["pending_reason"]) == ("pending", "insufficient_funds")
    ch = call(fake, "GET", f"/v1/charges/{pi['latest_charge'] or covered['charge']}", account=acct).json()
    assert ch["amount_refunded"] == 4000  # a pending refund counts on the charge, as at Stripe
    available = call(fake, "GET", "/v1/balance", account=acct).json()["available"][0]["amount"]
    assert available == 400  # the fee given back with the first waiting refund; nothing taken yet
    # Funds arrive for the first only: it succeeds; the second still waits.
    topped = control(fake, "POST", f"/accounts/{acct}/balance", {"amount": 1500}).json()
    assert topped["refunds_succeeded"] == [short["id"]], topped
    assert call(fake, "GET", f"/v1/refunds/{second['id']}", account=acct).json()["status"] == "pending"
    assert call(fake, "GET", "/v1/balance", account=acct).json()["available"][0]["amount"] == 500
    done = call(fake, "GET", f"/v1/refunds/{short['id']}", account=acct).json()
    assert (done["status"], done["pending_reason"], done["balance_transaction"].startswith("txn_")) == (
        "succeeded", None, True)
    updated = [e for e in fake.events() if e["type"] == "charge.refund.updated"
               and e["data"]["object"]["id"] == short["id"]]
    assert [(e["account"], e["data"]["previous_attributes"]) for e in updated] == [(acct, {"status": "pending"})]
    # A waiting refund that fails gives nothing back: it took nothing.
    failed = control(fake, "POST", f"/refunds/{second['id']}/status", {"status": "failed"}).json()
    assert failed["status"] == "failed" and not failed.get("failure_balance_transaction"), failed
    assert call(fake, "GET", "/v1/balance", account=acct).json()["available"][0]["amount"] == 500
