"""The Stripe client (Sources/Stripe over libcurl), driven through the real app and nginx
against the fake Stripe (issue 4, "Integration tests against the fake").

Every call goes through the test-only route `POST /api/_diag/stripe`, which makes one call with
the app's own `StripeClient` (the worker's curl handle, the app's configuration:
STRIPE_TIMEOUT_SECONDS=3 per attempt, a 6 s overall deadline, STRIPE_MAX_RETRIES=2) and answers
the object's id/status or the typed `StripeError` (502). What the client really sent is read
back from the fake's request log, filtered by a unique Idempotency-Key per test (the stack is
shared with every other test file). Injected faults are removed by id in `finally`.

Run: .venv/bin/python -m pytest -q tests/test_stripe_client.py
"""

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.assertions import assert_envelope

SECRET_KEY_MARKER = "sk_test_harness"
PINNED_VERSION = "2024-06-20"
PER_ATTEMPT_TIMEOUT = 3.0   # STRIPE_TIMEOUT_SECONDS in the stack
OVERALL_DEADLINE = 6.0      # twice that
SLACK = 1.0                 # nginx + FastCGI + process scheduling


# ---- helpers ------------------------------------------------------------------------------

def new_key(label):
    return f"itest:{label}:{uuid.uuid4().hex}"


def diag(stack, method, path, *, key=None, params=None, account=None):
    """One Stripe call made by the app; returns (status, body, elapsed seconds)."""
    payload = {"method": method, "path": path}
    if key is not None:
        payload["idempotency_key"] = key
    if params is not None:
        payload["params"] = params
    if account is not None:
        payload["account"] = account
    started = time.monotonic()
    response = stack.post("/api/_diag/stripe", json=payload, timeout=60)
    elapsed = time.monotonic() - started
    assert response.headers["Content-Type"].startswith("application/json"), response.text
    return response.status_code, response.json(), elapsed


def create_intent(stack, key, tag, **extra):
    params = {"amount": 1000, "currency": "usd", "metadata": {"itest": tag}, **extra}
    return diag(stack, "POST", "/v1/payment_intents", key=key, params=params)


class Faults:
    """Faults injected by one test, removed by id afterwards (never anyone else's)."""

    def __init__(self, stack):
        self.stack = stack
        self.ids = []

    def add(self, **spec):
        fault = self.stack.stripe.inject_fault(**spec)
        self.ids.append(fault["id"])
        return fault

    def state(self, fault):
        listed = self.stack.stripe_control("GET", "/_control/faults")["data"]
        return next(f for f in listed if f["id"] == fault["id"])

    def clear(self):
        for fault_id in self.ids:
            try:
                self.stack.stripe_control("DELETE", f"/_control/faults/{fault_id}")
            except Exception:  # already gone
                pass


@pytest.fixture
def faults(stack):
    injected = Faults(stack)
    try:
        yield injected
    finally:
        injected.clear()


def intents_created_with(stack, tag):
    """Ids of the PaymentIntents the fake created with metadata itest=tag (from its events)."""
    return [event["data"]["object"]["id"] for event in stack.stripe.events("payment_intent.created")
            if (event["data"]["object"].get("metadata") or {}).get("itest") == tag]


def gaps(records):
    times = [record["time"] for record in records]
    return [later - earlier for earlier, later in zip(times, times[1:])]


def onboarded_account(stack):
    created = stack.stripe_api("POST", "/v1/accounts", {
        "type": "express", "country": "US",
        "capabilities[card_payments][requested]": "true", "capabilities[transfers][requested]": "true"})
    stack.stripe_control("POST", f"/_control/accounts/{created['id']}/complete_onboarding")
    return created["id"]


# ---- the happy path and what goes on the wire ---------------------------------------------

def test_post_success_headers_and_nested_params(stack):
    """Headers at the fake: pinned Stripe-Version, a User-Agent naming the project, Bearer auth,
    form Content-Type on POSTs; nested params arrive as nested objects."""
    destination = onboarded_account(stack)
    key, tag = new_key("headers"), uuid.uuid4().hex
    status, body, _ = create_intent(stack, key, tag, capture_method="manual",
                                    metadata={"itest": tag, "a": "b", "order_id": "42"},
                                    transfer_data={"destination": destination},
                                    application_fee_amount=100)
    assert status == 200, body
    assert body["id"].startswith("pi_") and body["status"] == "requires_payment_method", body

    [record] = stack.stripe.received(idempotency_key=key)
    assert record["method"] == "POST" and record["path"] == "/v1/payment_intents"
    assert record["status"] == 200
    headers = record["headers"]
    assert headers["Idempotency-Key"] == key
    assert headers["Stripe-Version"] == PINNED_VERSION
    assert "marketplace-payments" in headers["User-Agent"], headers
    assert headers["Content-Type"].split(";")[0].strip() == "application/x-www-form-urlencoded"
    assert "Stripe-Account" not in headers  # no connected account asked for
    assert record["authorization"]["present"] is True
    assert record["authorization"]["scheme"].lower() == "bearer"
    assert record["authorization"]["key_type"] == "sk_test", record["authorization"]

    params = record["params"]
    assert params["metadata"] == {"itest": tag, "a": "b", "order_id": "42"}
    assert params["transfer_data"] == {"destination": destination}
    assert params["amount"] == "1000" and params["currency"] == "usd"
    assert params["capture_method"] == "manual" and params["application_fee_amount"] == "100"
    # Brackets stay literal in the body, as the official libraries send them.
    assert "metadata[a]=b" in record["raw_body"]
    assert f"transfer_data[destination]={destination}" in record["raw_body"]

    # The fake really holds the object the client decoded.
    held = stack.stripe_control("GET", f"/_control/objects/{body['id']}")["object"]
    assert held["id"] == body["id"]
    assert held["metadata"] == {"itest": tag, "a": "b", "order_id": "42"}
    assert held["transfer_data"]["destination"] == destination


def test_get_with_query_and_connected_account(stack):
    """A POST and a GET on a connected account carry Stripe-Account; GETs carry no key, no
    body, no Content-Type, and their params become the query."""
    account = onboarded_account(stack)
    key, tag = new_key("account"), uuid.uuid4().hex
    status, body, _ = diag(stack, "POST", "/v1/payment_intents", key=key, account=account,
                           params={"amount": 2500, "currency": "usd", "metadata": {"itest": tag}})
    assert status == 200, body
    [post] = stack.stripe.received(idempotency_key=key)
    assert post["headers"]["Stripe-Account"] == account
    assert post["headers"]["Stripe-Version"] == PINNED_VERSION

    before = len(stack.stripe.received(method="GET", path_prefix=f"/v1/payment_intents/{body['id']}"))
    status, fetched, _ = diag(stack, "GET", f"/v1/payment_intents/{body['id']}", account=account,
                              params={"expand": ["latest_charge"]})
    assert status == 200, fetched
    assert fetched == {"id": body["id"], "status": "requires_payment_method"}
    gets = stack.stripe.received(method="GET", path_prefix=f"/v1/payment_intents/{body['id']}")
    assert len(gets) == before + 1
    get = gets[-1]
    assert get["headers"]["Stripe-Account"] == account
    assert get["headers"]["Stripe-Version"] == PINNED_VERSION
    assert "marketplace-payments" in get["headers"]["User-Agent"]
    assert "Idempotency-Key" not in get["headers"] and "Content-Type" not in get["headers"]
    assert get["raw_body"] == ""
    assert get["params"]["expand"] == ["latest_charge"], get
    assert get["authorization"]["present"] is True

    # The object belongs to the account: without the header the platform does not see it.
    status, missing, _ = diag(stack, "GET", f"/v1/payment_intents/{body['id']}")
    assert status == 502, missing
    assert (missing["kind"], missing["http_status"], missing["code"]) == ("invalidRequest", 404, "resource_missing")


def test_post_without_idempotency_key_is_refused_and_never_sent(stack):
    tag = uuid.uuid4().hex
    response = stack.post("/api/_diag/stripe", json={
        "method": "POST", "path": "/v1/payment_intents",
        "params": {"amount": 1000, "currency": "usd", "metadata": {"itest": tag}}})
    error = assert_envelope(response, 400, "invalid_field")
    assert "idempotency_key" in error["message"] or "idempotency_key" in json.dumps(error)
    assert not [r for r in stack.stripe.received(method="POST") if tag in r["raw_body"]]
    assert intents_created_with(stack, tag) == []


def test_stripe_errors_are_typed_and_not_retried(stack):
    """A 400 invalid request (no Stripe-Should-Retry) is not retried; the typed error carries
    Stripe's code, param and Request-Id."""
    key = new_key("invalid")
    status, body, _ = diag(stack, "POST", "/v1/payment_intents", key=key,
                           params={"amount": 10, "currency": "usd"})  # below the 50 minimum
    assert status == 502, body
    assert body["kind"] == "invalidRequest" and body["http_status"] == 400, body
    assert body["param"] == "amount" and body["attempts"] == 1, body
    [record] = stack.stripe.received(idempotency_key=key)
    assert body["request_id"] == record["id"]
    assert SECRET_KEY_MARKER not in json.dumps(body)

    # The same key with other params: Stripe's idempotency_error, typed as such.
    key = new_key("mismatch")
    assert create_intent(stack, key, "one")[0] == 200
    status, body, _ = create_intent(stack, key, "two")
    assert status == 502, body
    assert (body["kind"], body["http_status"], body["attempts"]) == ("idempotency", 400, 1), body
    assert len(stack.stripe.received(idempotency_key=key)) == 2


# ---- retries ------------------------------------------------------------------------------

def assert_one_key(records, key, count):
    assert len(records) == count, [(r["status"], r["fault"]) for r in records]
    assert {r["headers"].get("Idempotency-Key") for r in records} == {key}


@pytest.mark.parametrize("fault_type,status", [("error", 500), ("rate_limit", 429), ("lock_timeout", 409)])
def test_retried_until_success_with_the_same_key(stack, faults, fault_type, status):
    """Two injected failures, then success on attempt 3: three requests, one key, one object,
    exponential backoff with jitter between them (0.5 s base: 0.25–0.5 s, then 0.5–1 s)."""
    key, tag = new_key(fault_type), uuid.uuid4().hex
    fault = faults.add(type=fault_type, method="POST", path_prefix="/v1/payment_intents", count=2)
    code, body, elapsed = create_intent(stack, key, tag)
    assert code == 200, body
    records = stack.stripe.received(idempotency_key=key)
    assert_one_key(records, key, 3)
    assert [r["status"] for r in records] == [status, status, 200]
    assert [bool(r["fault"]) for r in records] == [True, True, False]
    assert intents_created_with(stack, tag) == [body["id"]]
    first, second = gaps(records)
    assert 0.25 - 0.02 <= first <= 0.5 + 0.3, gaps(records)
    assert 0.5 - 0.02 <= second <= 1.0 + 0.3, gaps(records)
    assert elapsed < 0.75 + 1.5 + SLACK
    assert faults.state(fault)["remaining"] == 0


@pytest.mark.parametrize("fault_type,kind,status", [("error", "api", 500), ("rate_limit", "rateLimited", 429),
                                                   ("lock_timeout", "api", 409)])
def test_retries_stop_at_the_bound(stack, faults, fault_type, kind, status):
    """Failing five times: the client stops after 1 + STRIPE_MAX_RETRIES (2) = 3 attempts."""
    key, tag = new_key(f"bound-{fault_type}"), uuid.uuid4().hex
    fault = faults.add(type=fault_type, method="POST", path_prefix="/v1/payment_intents", count=5)
    code, body, elapsed = create_intent(stack, key, tag)
    assert code == 502, body
    assert body["kind"] == kind and body["http_status"] == status and body["attempts"] == 3, body
    records = stack.stripe.received(idempotency_key=key)
    assert_one_key(records, key, 3)
    assert body["request_id"] == records[-1]["id"]  # the last attempt's Request-Id
    assert faults.state(fault)["remaining"] == 2
    assert intents_created_with(stack, tag) == []
    assert elapsed < OVERALL_DEADLINE


def test_should_retry_false_on_500_is_not_retried(stack, faults):
    key, tag = new_key("no-retry"), uuid.uuid4().hex
    fault = faults.add(type="error", method="POST", path_prefix="/v1/payment_intents", count=3, should_retry=False)
    code, body, _ = create_intent(stack, key, tag)
    assert code == 502, body
    assert (body["kind"], body["http_status"], body["attempts"]) == ("api", 500, 1), body
    assert_one_key(stack.stripe.received(idempotency_key=key), key, 1)
    assert faults.state(fault)["remaining"] == 2


def test_should_retry_true_forces_a_retry_of_a_400(stack, faults):
    key, tag = new_key("force-retry"), uuid.uuid4().hex
    faults.add(type="error", status=400, method="POST", path_prefix="/v1/payment_intents", count=1,
               should_retry=True, error={"type": "invalid_request_error", "code": "parameter_invalid_empty",
                                         "message": "transient", "param": "amount"})
    code, body, _ = create_intent(stack, key, tag)
    assert code == 200, body
    records = stack.stripe.received(idempotency_key=key)
    assert_one_key(records, key, 2)
    assert [r["status"] for r in records] == [400, 200]
    assert intents_created_with(stack, tag) == [body["id"]]


# ---- connection drops ---------------------------------------------------------------------

def test_drop_before_execution_is_retried_with_the_same_key(stack, faults):
    key, tag = new_key("drop-before"), uuid.uuid4().hex
    faults.add(type="drop", when="before", method="POST", path_prefix="/v1/payment_intents", count=1)
    code, body, _ = create_intent(stack, key, tag)
    assert code == 200, body
    records = stack.stripe.received(idempotency_key=key)
    assert_one_key(records, key, 2)
    assert [r["dropped"] for r in records] == [True, False]
    assert records[1]["idempotent_replayed"] is False  # nothing had run the first time
    assert intents_created_with(stack, tag) == [body["id"]]


def test_drop_after_execution_returns_the_same_object(stack, faults):
    """The object was created but the response lost: the retry with the same key gets Stripe's
    idempotent replay — the same id — and the fake holds exactly one object."""
    key, tag = new_key("drop-after"), uuid.uuid4().hex
    faults.add(type="drop", when="after", method="POST", path_prefix="/v1/payment_intents", count=1)
    code, body, _ = create_intent(stack, key, tag)
    assert code == 200, body
    records = stack.stripe.received(idempotency_key=key)
    assert_one_key(records, key, 2)
    assert [r["dropped"] for r in records] == [True, False]
    assert records[1]["idempotent_replayed"] is True
    assert intents_created_with(stack, tag) == [body["id"]]


def warm_every_worker(stack, faults):
    """Give every app worker's curl handle a kept-alive connection to the fake (the normal
    state of a running service): as many concurrent GETs as workers, each held 0.5 s at the
    fake so that no worker can serve two of them."""
    workers = int(stack.app.env["WORKERS"])
    path = f"/v1/payment_intents/pi_warm{uuid.uuid4().hex}"
    faults.add(type="delay", when="before", delay_ms=500, method="GET", path_prefix=path, count=workers)
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda _: diag(stack, "GET", path), range(workers)))
    assert all(status == 502 and body["http_status"] == 404 for status, body, _ in results), results
    assert len(stack.stripe.received(method="GET", path_prefix=path)) == workers


def test_drops_exhaust_retries_as_a_connection_error(stack, faults):
    """Every attempt's connection reset: a typed `connection` error after exactly
    1 + STRIPE_MAX_RETRIES requests on the wire — no hidden extra sends — all with one key."""
    warm_every_worker(stack, faults)
    key, tag = new_key("drop-all"), uuid.uuid4().hex
    fault = faults.add(type="drop", when="before", method="POST", path_prefix="/v1/payment_intents", count=5)
    code, body, elapsed = create_intent(stack, key, tag)
    assert code == 502, body
    assert (body["kind"], body["http_status"], body["attempts"]) == ("connection", 0, 3), body
    assert intents_created_with(stack, tag) == []
    assert elapsed < OVERALL_DEADLINE
    records = stack.stripe.received(idempotency_key=key)
    assert {r["headers"].get("Idempotency-Key") for r in records} == {key}
    assert all(r["dropped"] for r in records)
    # The bound holds on the wire, and the attempts the error reports are the requests sent.
    assert len(records) == body["attempts"] == 3, (
        f"{len(records)} requests reached the fake for {body['attempts']} reported attempts; "
        f"offsets {[round(r['time'] - records[0]['time'], 3) for r in records]} s")
    assert faults.state(fault)["remaining"] == 2


def test_get_drops_respect_the_bound_too(stack, faults):
    warm_every_worker(stack, faults)
    path = f"/v1/payment_intents/pi_drop{uuid.uuid4().hex}"
    faults.add(type="drop", when="before", method="GET", path_prefix=path, count=5)
    code, body, _ = diag(stack, "GET", path)
    assert code == 502, body
    assert (body["kind"], body["attempts"]) == ("connection", 3), body
    records = stack.stripe.received(method="GET", path_prefix=path)
    assert len(records) == 3, [round(r["time"] - records[0]["time"], 3) for r in records]


# ---- timeouts and the overall deadline -----------------------------------------------------

def test_get_timeout_is_typed_and_bounded_by_the_deadline(stack, faults):
    """A GET held past the 3 s per-attempt timeout, every time: attempt 1 times out at 3 s,
    attempt 2 gets only what is left of the 6 s deadline, then `timeout` — not 3 × 3 s."""
    key, tag = new_key("get-timeout"), uuid.uuid4().hex
    code, created, _ = create_intent(stack, key, tag)
    assert code == 200, created
    path = f"/v1/payment_intents/{created['id']}"
    faults.add(type="delay", when="before", delay_ms=8000, method="GET", path_prefix=path, count=3)
    code, body, elapsed = diag(stack, "GET", path)
    assert code == 502, body
    assert body["kind"] == "timeout" and body["http_status"] == 0, body
    assert body["attempts"] == 2, body
    assert PER_ATTEMPT_TIMEOUT <= elapsed <= OVERALL_DEADLINE + SLACK, elapsed
    assert len(stack.stripe.received(method="GET", path_prefix=path)) == 2
    assert SECRET_KEY_MARKER not in body["message"]


def test_post_timeout_then_in_progress_key(stack, faults):
    """A POST held 8 s before it executes: attempt 1 times out; the retries with the same key
    meet Stripe's `409 idempotency_key_in_use` (the first request still runs), which is
    retried too until the bound; the client reports that 409 well within the deadline. Once
    the held request finishes, the same key returns the object it created — only one."""
    key, tag = new_key("post-timeout"), uuid.uuid4().hex
    faults.add(type="delay", when="before", delay_ms=8000, method="POST", path_prefix="/v1/payment_intents", count=1)
    started = time.monotonic()
    code, body, elapsed = create_intent(stack, key, tag)
    assert code == 502, body
    assert elapsed <= OVERALL_DEADLINE + SLACK, elapsed
    assert elapsed >= PER_ATTEMPT_TIMEOUT, elapsed
    assert (body["kind"], body["http_status"], body["code"], body["attempts"]) == \
        ("api", 409, "idempotency_key_in_use", 3), body
    records = stack.stripe.received(idempotency_key=key)
    assert_one_key(records, key, 3)
    assert [r["status"] for r in records[1:]] == [409, 409]

    # Wait for the held request to execute at the fake, then retry as the app would.
    time.sleep(max(0.0, 8.5 - (time.monotonic() - started)))
    deadline = time.monotonic() + 5
    while records[0]["status"] is None and time.monotonic() < deadline:
        time.sleep(0.1)
        records = stack.stripe.received(idempotency_key=key)
    assert records[0]["status"] == 200, records[0]
    code, again, _ = create_intent(stack, key, tag)
    assert code == 200, again
    assert intents_created_with(stack, tag) == [again["id"]]
    assert stack.stripe.received(idempotency_key=key)[-1]["idempotent_replayed"] is True


def test_post_response_delayed_past_timeout_recovers_by_replay(stack, faults):
    """The create ran but its response is held 5 s: attempt 1 times out, attempt 2 (same key)
    gets the stored response — success, one object, within the deadline."""
    key, tag = new_key("post-slow-response"), uuid.uuid4().hex
    faults.add(type="delay", when="after", delay_ms=5000, method="POST", path_prefix="/v1/payment_intents", count=1)
    code, body, elapsed = create_intent(stack, key, tag)
    assert code == 200, body
    assert PER_ATTEMPT_TIMEOUT <= elapsed <= OVERALL_DEADLINE + SLACK, elapsed
    records = stack.stripe.received(idempotency_key=key)
    assert_one_key(records, key, 2)
    assert records[1]["idempotent_replayed"] is True
    assert intents_created_with(stack, tag) == [body["id"]]


# ---- card declines ------------------------------------------------------------------------

def test_card_decline_is_a_typed_card_error_and_not_retried(stack):
    key, tag = new_key("decline"), uuid.uuid4().hex
    code, body, _ = create_intent(stack, key, tag, payment_method="pm_card_chargeDeclined", confirm=True)
    assert code == 502, body
    assert body["kind"] == "card" and body["http_status"] == 402, body
    assert body["code"] == "card_declined" and body["decline_code"] == "generic_decline", body
    assert body["attempts"] == 1, body
    [record] = stack.stripe.received(idempotency_key=key)
    assert record["params"]["confirm"] == "true" and record["params"]["payment_method"] == "pm_card_chargeDeclined"
    assert body["request_id"] == record["id"]
    # Stripe saves declines under the key: the same call replays the same decline.
    code, again, _ = create_intent(stack, key, tag, payment_method="pm_card_chargeDeclined", confirm=True)
    assert code == 502 and again["kind"] == "card" and again["decline_code"] == "generic_decline", again
    assert stack.stripe.received(idempotency_key=key)[-1]["idempotent_replayed"] is True


def test_injected_decline_on_confirm(stack, faults):
    key, tag = new_key("decline-confirm"), uuid.uuid4().hex
    code, created, _ = create_intent(stack, key, tag)
    assert code == 200, created
    faults.add(type="decline", decline_code="insufficient_funds", method="POST",
               path_prefix=f"/v1/payment_intents/{created['id']}/confirm", count=1)
    confirm_key = new_key("confirm")
    code, body, _ = diag(stack, "POST", f"/v1/payment_intents/{created['id']}/confirm", key=confirm_key,
                         params={"payment_method": "pm_card_visa"})
    assert code == 502, body
    assert (body["kind"], body["code"], body["decline_code"], body["attempts"]) == \
        ("card", "card_declined", "insufficient_funds", 1), body
    assert len(stack.stripe.received(idempotency_key=confirm_key)) == 1


# ---- the secret key never leaks -----------------------------------------------------------

def test_secret_key_is_in_no_log_line(stack):
    """Runs last in this file: after every call and failure above, neither the app's log nor
    the fake's request log contains the secret key (the Authorization header is the only
    place it travels)."""
    # Make sure there is something to look at even when this test runs alone.
    key = new_key("leak")
    assert create_intent(stack, key, "leak")[0] == 200
    assert diag(stack, "GET", "/v1/payment_intents/pi_does_not_exist")[0] == 502
    app_log = stack.app.log_text()
    assert app_log, "the app logged nothing"
    assert SECRET_KEY_MARKER not in app_log
    assert stack.app.env["STRIPE_SECRET_KEY"] not in app_log
    fake_log = json.dumps(stack.stripe.received())
    assert stack.stripe.received(idempotency_key=key), "the fake's log lost our request"
    assert SECRET_KEY_MARKER not in fake_log
