"""Issue 16: the purchase suites run under both charge models without being copied.

A suite module imports `stack` and `stripe_account_scoped` from here:

    from charge_models import stack, stripe_account_scoped  # noqa: F401

(or `stack_by_model`, to run only the tests it marks under both models).

`stack` then overrides the session stack for that module, once per model: under `destination`
it is the session stack itself; under `direct`, the same stack (database, fake Stripe, CLI
environment) seen through an extra app started with `CHARGE_MODEL=direct` behind an nginx of its
own, so every API request of the module's tests goes to that app. Each test's purchases are
therefore made under the module's model, and everything after the purchase (the CLI's sweeps,
webhooks, refunds) follows the payment's row — the CLI runs with the session's (destination)
environment on purpose.

`stripe_account_scoped` (autouse) checks, after each test, every request the fake received during
it: a request for a payment (its key names the payment; its path, `payment_intent` or metadata
names its intent, charge or id) carries exactly that payment's `Stripe-Account` — the seller's
account for a direct charge, none for a destination or platform charge."""

import contextlib
import time

import pytest

from harness.api import wait_for


class ChargeModelStack:
    """The session stack, with HTTP requests sent to the apps of one charge model."""

    def __init__(self, stack, charge_model, apps=None):
        self._stack = stack
        self._apps = apps
        self.charge_model = charge_model

    def __getattr__(self, name):
        return getattr(self._stack, name)

    @property
    def is_direct(self):
        return self.charge_model == "direct"

    @property
    def payment_events_endpoint(self):
        """Where the fake sends a purchase's payment events: a direct charge's come from the
        seller's account, to the Connect endpoint."""
        return "connect" if self.is_direct else "platform"

    def url(self, path, scheme="https"):
        return self._apps.url(path) if self._apps else self._stack.url(path, scheme)

    def request(self, method, path, **kwargs):
        return self._apps.request(method, path, **kwargs) if self._apps else self._stack.request(method, path, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)


@contextlib.contextmanager
def model_stack(stack, model):
    """The session stack as seen through an app of `model` (its own nginx renders the pages the
    same way, the fake's origin allowed for the buyer page's card form)."""
    if model == "destination":
        yield ChargeModelStack(stack, "destination")
        return
    with stack.other_apps(CHARGE_MODEL="direct", nginx_settings={"PAGES_FAKE_STRIPE_ORIGIN": stack.stripe.url}) as apps:
        wait_for(lambda: apps.get("/api/health").status_code == 200, 15, what="the direct-charge app")
        yield ChargeModelStack(stack, "direct", apps)


@pytest.fixture(scope="module", params=["destination", "direct"])
def stack(stack, request):
    """The module's stack under one charge model, every test of the module once per model (see
    the module's docstring)."""
    with model_stack(stack, request.param) as chosen:
        yield chosen


@pytest.fixture(scope="module", name="stack")
def stack_by_model(stack, request):
    """The same for a module where only some tests run under both models: they say so with
    `@pytest.mark.parametrize("stack", ["destination", "direct"], indirect=True)`; the others get
    the session stack."""
    with model_stack(stack, getattr(request, "param", "destination")) as chosen:
        yield chosen


def payments_by_stripe_ids(db):
    """Every payment's ids at Stripe and the account that owns them."""
    return db.execute(
        "SELECT id::text, stripe_payment_intent_id, stripe_charge_id, stripe_account FROM payments").fetchall()


def requests_for(payment, requests_):
    """The requests among `requests_` that concern `payment` (a payments_by_stripe_ids row)."""
    payment_id, intent_id, charge_id = payment[0], payment[1], payment[2]
    found = []
    for r in requests_:
        key = r["headers"].get("Idempotency-Key", "")
        params = r.get("params") or {}
        metadata = params.get("metadata") if isinstance(params.get("metadata"), dict) else {}
        if (f"payment:{payment_id}:" in key or metadata.get("payment_id") == payment_id
                or (intent_id and (intent_id in r["path"] or params.get("payment_intent") == intent_id))
                or (charge_id and (charge_id in r["path"] or params.get("charge") == charge_id))):
            found.append(r)
    return found


def misdirected_requests(db, requests_):
    """(payment id, method, path, Stripe-Account sent, expected) for every request of `requests_`
    that does not carry its payment's account."""
    wrong = []
    for payment in payments_by_stripe_ids(db):
        for r in requests_for(payment, requests_):
            sent = r["headers"].get("Stripe-Account")
            if sent != payment[3]:
                wrong.append((payment[0], r["method"], r["path"], sent, payment[3]))
    return wrong


def requests_since(stack, started):
    """The fake's log from `started` (its clock, `time.time()`) on: by time, not by position, as
    the log keeps only its most recent requests."""
    return [r for r in stack.stripe.received() if r["time"] >= started]


@pytest.fixture(autouse=True)
def stripe_account_scoped(stack, db):
    """After each test: every Stripe request it caused for a payment carried that payment's account."""
    started = time.time()
    yield
    stack.stripe.wait_for_webhooks(15)  # follow-ups (cancels) a webhook queued
    assert misdirected_requests(db, requests_since(stack, started)) == []
