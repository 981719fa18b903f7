"""Issue 12: a slow Stripe must not stall the service. Lanes (Stripe-calling routes on workers
of their own), one bounded connection pool per process that is never held across a Stripe
call, one deadline per request, bounded waits for a worker, several app processes behind one
upstream, and recovery of work a killed process or a lost response left behind."""

import collections
import re
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests

from harness.api import make_listing, make_profile, onboarded_seller, reset_ip_limits, wait_for, wait_until_ready
from harness.assertions import assert_envelope
from harness.paths import BINARY
from test_webhooks_inbox import WEBHOOK, audit_operations, intent_object, new_payment

CREATE = "/api/payments/create-intent"
STRIPE_CREATE = "/v1/payment_intents"
ANY_ID = "00000000-0000-4000-8000-00000000beef"


@pytest.fixture(autouse=True)
def clean_faults_and_windows(stack):
    """No faults and empty IP windows after each test (on a connection of its own: one test
    here restarts PostgreSQL under the `db` fixture's connection)."""
    def reset():
        with psycopg.connect(stack.database_url, autocommit=True) as connection:
            reset_ip_limits(connection)
    reset()
    yield
    stack.stripe_control("DELETE", "/_control/faults")
    reset()


def buyer_and_listing(stack, db, seller=None, price=5000):
    seller = seller or onboarded_seller(stack, db)
    return make_profile(db, "buyer"), make_listing(db, seller, price=price), seller


def create_intent(client, buyer, listing, key=None, timeout=60):
    headers = dict(buyer["headers"])
    if key:
        headers["Idempotency-Key"] = key
    return client.post(CREATE, json={"listing_id": listing}, headers=headers, timeout=timeout)


def payment_of(db, listing):
    return db.execute("SELECT id::text, status, stripe_payment_intent_id FROM payments WHERE listing_id = %s"
                      " ORDER BY created_at", (listing,)).fetchall()


def fake_intents_for(stack, payment_id):
    """The PaymentIntents the fake holds whose metadata names `payment_id`."""
    with stack.stripe.core.lock:
        return [dict(o) for o in stack.stripe.core.objects.values()
                if o.get("object") == "payment_intent" and (o.get("metadata") or {}).get("payment_id") == payment_id]


def held_at_stripe(stack, key_prefix="payment:"):
    """The create calls the fake has received since its log was last cleared (it holds each
    one its delay fault caught); tests clear the log first, or an earlier test's calls count."""
    return [r for r in stack.stripe.received(method="POST", path_prefix=STRIPE_CREATE)
            if (r["headers"].get("Idempotency-Key") or "").startswith(key_prefix)]


def metric_samples(text):
    """{series name with labels: value} of a Prometheus exposition."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def retried(call, attempts=6):
    """What a client following the envelope does: retry 502/504 (they say "retry shortly")."""
    for _ in range(attempts):
        response = call()
        if response.status_code not in (502, 504):
            return response
        time.sleep(0.5)
    return response


def sweep(stack):
    result = subprocess.run([str(BINARY), "sweep"], env=stack.app.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# --- lanes ---------------------------------------------------------------------------------------

STRIPE_LANE = [
    ("POST", "/api/payments/create-intent", "/api/payments/create-intent"),
    ("POST", "/api/payments/capture", "/api/payments/capture"),
    ("POST", f"/api/payments/{ANY_ID}/cancel", "/api/payments/{id}/cancel"),
    ("POST", "/api/payments/milestones/create-intent", "/api/payments/milestones/create-intent"),
    ("POST", f"/api/payments/milestones/{ANY_ID}/release", "/api/payments/milestones/{id}/release"),
    ("POST", f"/api/admin/disputes/{ANY_ID}/refund", "/api/admin/disputes/{id}/refund"),
    ("POST", f"/api/admin/disputes/{ANY_ID}/resolve", "/api/admin/disputes/{id}/resolve"),
    ("POST", f"/api/admin/disputes/{ANY_ID}/evidence", "/api/admin/disputes/{id}/evidence"),
    ("POST", "/api/connect/accounts", "/api/connect/accounts"),
    ("POST", "/api/connect/dashboard-link", "/api/connect/dashboard-link"),
    ("GET", "/api/connect/onboarding/refresh", "/api/connect/onboarding/refresh"),
    ("GET", "/api/connect/onboarding/return", "/api/connect/onboarding/return"),
    ("POST", "/api/_diag/stripe", "/api/_diag/stripe"),
]
CORE_LANE = [
    ("GET", "/api/health", "/api/health"),
    ("GET", "/api/ready", "/api/ready"),
    ("POST", WEBHOOK, WEBHOOK),
    ("POST", WEBHOOK + "/connect", WEBHOOK + "/connect"),
    ("GET", f"/api/payments/{ANY_ID}", "/api/payments/{id}"),
    ("GET", "/api/payments", "/api/payments"),
    ("POST", f"/api/payments/{ANY_ID}/disputes", "/api/payments/{id}/disputes"),
    ("GET", "/api/admin/disputes", "/api/admin/disputes"),
    ("GET", "/api/me", "/api/me"),
    ("GET", "/api/connect/status", "/api/connect/status"),
    ("GET", "/api/listings/x/milestones", "/api/listings/{id}/milestones"),
]


def test_every_route_that_calls_stripe_runs_on_the_stripe_lane_and_no_other_does(stack):
    with stack.other_apps() as other:
        for method, path, _ in STRIPE_LANE + CORE_LANE:
            response = other.request(method, path, json={})
            assert response.status_code < 500, (path, response.status_code, response.text)
        samples = metric_samples(other.get("/metrics").text)
    served = collections.defaultdict(set)
    for name in samples:
        found = re.match(r'payments_http_requests_total\{instance="test/app-1",lane="(\w+)",route="([^"]+)"', name)
        if found:
            served[found.group(2)].add(found.group(1))
    for lane, routes in (("stripe", STRIPE_LANE), ("core", CORE_LANE)):
        for _, _, pattern in routes:
            assert served[pattern] == {lane}, (pattern, served[pattern])
    assert not [n for n in samples if n.startswith("payments_lane_misrouted_total")]


def test_health_and_webhooks_stay_fast_while_every_stripe_worker_waits_on_stripe(stack, db):
    """Two Stripe-lane workers, both held 3 s at the fake: health and a webhook are answered
    at once by the core lane, and a third create-intent waits its bounded time for a Stripe
    worker, then gets a fast 503 server_busy envelope that changed nothing."""
    seller = onboarded_seller(stack, db)
    stack.stripe.inject_fault(type="delay", when="before", delay_ms=3000, method="POST", path_prefix=STRIPE_CREATE,
                              count=2)
    with stack.other_apps(STRIPE_WORKERS=2, LANE_QUEUE_TIMEOUT_MS=300) as other:
        jobs = [buyer_and_listing(stack, db, seller) for _ in range(3)]
        stack.stripe.clear_requests()  # held_at_stripe counts only this test's create calls
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(create_intent, other, buyer, listing) for buyer, listing, _ in jobs[:2]]
            wait_for(lambda: len(held_at_stripe(stack)) >= 2, 10, what="both create calls held at the fake")
            started = time.monotonic()
            health = other.get("/api/health")
            health_seconds = time.monotonic() - started
            webhook = other.post(WEBHOOK, data=b"{}", headers={"Stripe-Signature": "t=1,v1=00"})
            started = time.monotonic()
            busy = create_intent(other, jobs[2][0], jobs[2][1])
            busy_seconds = time.monotonic() - started
            results = [f.result(timeout=30) for f in held]
    assert health.status_code == 200 and health_seconds < 1.0, health_seconds
    assert_envelope(webhook, 400, "signature_invalid")
    assert_envelope(busy, 503, "server_busy")
    assert busy.headers["Retry-After"] == "1"
    assert busy_seconds < 2.0, busy_seconds
    assert payment_of(db, jobs[2][1]) == []
    assert db.execute("SELECT status FROM listings WHERE id = %s", (jobs[2][1],)).fetchone()[0] == "active"
    assert [r.status_code for r in results] == [201, 201], [r.text for r in results]


def test_a_request_that_waited_too_long_in_the_core_lanes_backlog_is_answered_server_busy(stack):
    """One core worker, held 1.5 s: a request queued behind it in the socket's backlog is not
    served late once the worker frees up, but answered 503 server_busy at once."""
    with stack.other_apps(WORKERS=1, LANE_QUEUE_TIMEOUT_MS=300) as other, ThreadPoolExecutor(1) as pool:
        holder = pool.submit(other.get, "/api/_diag/sleep?ms=1500")
        time.sleep(0.3)
        started = time.monotonic()
        late = other.get("/api/ready")
        waited = time.monotonic() - started
        assert holder.result(timeout=10).status_code == 200
        assert other.get("/api/ready").status_code == 200  # a fresh request is served again
    assert_envelope(late, 503, "server_busy")
    assert waited < 2.0, waited


# --- the pool ---------------------------------------------------------------------------------------

def test_pool_exhaustion_answers_503_database_busy_and_writes_nothing(stack, db, admin_db):
    buyer, listing, _ = buyer_and_listing(stack, db)
    with stack.other_apps(DATABASE_POOL_SIZE=1, DATABASE_POOL_TIMEOUT_MS=300) as other:
        with ThreadPoolExecutor(1) as pool:
            holder = pool.submit(other.get, "/api/_diag/sleep?ms=2000")  # holds the only connection
            # As the superuser: the app's sessions (its own role) show their queries only to it.
            wait_for(lambda: admin_db.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                                              " AND query ILIKE '%%pg_sleep%%' AND pid <> pg_backend_pid()").fetchone()[0] == 1,
                     10, what="the sleeper to hold the only connection")
            before = db.execute("SELECT count(*) FROM rate_limits").fetchone()[0], \
                db.execute("SELECT count(*) FROM payment_audit_logs").fetchone()[0]
            refused = create_intent(other, buyer, listing)
            after = db.execute("SELECT count(*) FROM rate_limits").fetchone()[0], \
                db.execute("SELECT count(*) FROM payment_audit_logs").fetchone()[0]
            assert holder.result(timeout=10).status_code == 200
        assert_envelope(refused, 503, "database_busy")
        assert refused.headers["Retry-After"] == "1"
        assert before == after
        assert payment_of(db, listing) == []
        # The connection is back: the same request now goes through.
        assert create_intent(other, buyer, listing).status_code == 201


def test_no_connection_is_held_while_a_request_waits_on_stripe(stack, db):
    """One pooled connection and a 3 s Stripe call: while create-intent waits at the fake the
    pool reports nothing in use, and reads borrow the one connection without waiting."""
    buyer, listing, _ = buyer_and_listing(stack, db)
    stack.stripe.inject_fault(type="delay", when="before", delay_ms=3000, method="POST", path_prefix=STRIPE_CREATE,
                              count=1)
    with stack.other_apps(DATABASE_POOL_SIZE=1, DATABASE_POOL_TIMEOUT_MS=500) as other:
        stack.stripe.clear_requests()  # held_at_stripe counts only this test's create call
        with ThreadPoolExecutor(1) as pool:
            creating = pool.submit(create_intent, other, buyer, listing)
            wait_for(lambda: held_at_stripe(stack), 10, what="the create call held at the fake")
            samples = metric_samples(other.get("/metrics").text)
            reads = [other.get("/api/payments", headers=buyer["headers"]).status_code for _ in range(5)]
            ready = other.get("/api/ready")
            created = creating.result(timeout=30)
    assert samples['payments_db_pool_in_use{instance="test/app-1"}'] == 0
    assert samples['payments_db_pool_size{instance="test/app-1"}'] == 1
    assert reads == [200] * 5 and ready.status_code == 200
    assert created.status_code == 201, created.text


def test_postgres_restart_under_load_recovers_without_an_app_restart(stack):
    pid = stack.app.pid
    statuses = collections.Counter()
    stop = threading.Event()

    def load():
        with requests.Session() as session:
            while not stop.is_set():
                response = session.get(stack.url("/api/ready"), verify=False, timeout=30)
                statuses[response.status_code] += 1
                if response.status_code != 200:
                    assert response.json()["error"]["code"] in ("database_unavailable", "database_busy")

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        stack.stop_database()
        time.sleep(0.5)
        stack.start_database()
        wait_until_ready(stack, 30)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert stack.app.pid == pid and stack.app.is_running()
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] > 0 and statuses[200] > 0, statuses


# --- deadlines and recovery -------------------------------------------------------------------------

def test_stripe_deadline_is_504_stripe_timeout_and_the_retry_makes_no_second_intent(stack, db):
    buyer, listing, _ = buyer_and_listing(stack, db)
    stack.stripe.inject_fault(type="delay", when="before", delay_ms=3500, method="POST", path_prefix=STRIPE_CREATE,
                              count=1)
    key = f"deadline-{uuid.uuid4().hex[:8]}"
    with stack.other_apps(STRIPE_DEADLINE_SECONDS=2) as other:
        started = time.monotonic()
        first = create_intent(other, buyer, listing, key=key)
        elapsed = time.monotonic() - started
        assert_envelope(first, 504, "stripe_timeout")
        assert 1.5 < elapsed < 4, elapsed
        (payment_id, status, intent), = payment_of(db, listing)
        assert (status, intent) == ("creating", None)
        # The client retries with the same key, as the envelope says (it may take another try
        # while the first call is still held at the fake).
        retry = retried(lambda: create_intent(other, buyer, listing, key=key))
    assert retry.status_code == 201, retry.text
    intents = fake_intents_for(stack, payment_id)
    assert [i["id"] for i in intents] == [retry.json()["payment_intent_id"]]
    assert payment_of(db, listing) == [(payment_id, "requires_payment_method", intents[0]["id"])]


def test_kill_9_during_a_create_held_at_stripe_is_finished_by_the_retry_or_cancelled_by_the_sweeper(stack, db):
    seller = onboarded_seller(stack, db)
    (buyer, listing, _), (lost_buyer, lost_listing, _) = buyer_and_listing(stack, db, seller), \
        buyer_and_listing(stack, db, seller)
    key = f"killed-{uuid.uuid4().hex[:8]}"
    with stack.other_apps() as other:
        app = other.apps[0]
        for who, where, idempotency_key in ((buyer, listing, key), (lost_buyer, lost_listing, None)):
            stack.stripe.clear_requests()
            stack.stripe.inject_fault(type="delay", when="before", delay_ms=2500, method="POST",
                                      path_prefix=STRIPE_CREATE, count=1)
            threading.Thread(target=lambda: create_intent(other, who, where, key=idempotency_key, timeout=10),
                             daemon=True).start()
            wait_for(lambda: held_at_stripe(stack), 10, what="the create call held at the fake")
            app.kill()
            app.start()
        # The buyer who retries with the same key gets the payment (the fake may still hold
        # the first call for a moment: the app retries that at Stripe within its deadline).
        retry = retried(lambda: create_intent(other, buyer, listing, key=key))
    assert retry.status_code == 201, retry.text
    (payment_id, status, intent), = payment_of(db, listing)
    assert [i["id"] for i in fake_intents_for(stack, payment_id)] == [intent] == [retry.json()["payment_intent_id"]]

    # The other buyer never retries: once the reservation runs out, the sweeper recovers the
    # intent Stripe made for the killed request (same key) and cancels it.
    wait_for(lambda: fake_intents_for(stack, payment_of(db, lost_listing)[0][0]), 10, what="the fake to create it")
    db.execute("UPDATE listings SET reserved_until = now() - interval '1 minute' WHERE id = %s", (lost_listing,))
    sweep(stack)
    (lost_payment, lost_status, lost_intent), = payment_of(db, lost_listing)
    stray = fake_intents_for(stack, lost_payment)
    assert [i["id"] for i in stray] == [lost_intent] and stray[0]["status"] == "canceled"
    assert lost_status == "canceled"
    assert db.execute("SELECT status FROM listings WHERE id = %s", (lost_listing,)).fetchone()[0] == "active"


def test_the_fault_mix_leaves_no_intent_at_stripe_without_its_payment_unless_cancelled(stack, db):
    """300 buyers create intents while the fake fails every other call: 5xx, 429, responses
    lost after the intent was made, delays. Clients that fail do not retry. After the
    reservations expire and the sweeper runs, every intent the app caused is attached to its
    payment row or cancelled, and no payment is left half-created."""
    seller = onboarded_seller(stack, db)
    jobs = [buyer_and_listing(stack, db, seller, price=1000 + n) for n in range(300)]
    kinds = [{"type": "error", "status": 500}, {"type": "rate_limit"}, {"type": "drop", "when": "after"},
             {"type": "drop", "when": "before"}, {"type": "delay", "when": "after", "delay_ms": 200}]
    for n in range(300):
        stack.stripe.inject_fault(method="POST", path_prefix=STRIPE_CREATE, count=1, **kinds[n % len(kinds)])
    with stack.other_apps(STRIPE_WORKERS=16) as other, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda job: create_intent(other, job[0], job[1]), jobs))
    stack.stripe_control("DELETE", "/_control/faults")
    statuses = collections.Counter(a.status_code for a in answers)
    assert statuses[201] > 0 and set(statuses) <= {201, 502, 504}, statuses
    assert all(a.json()["error"]["code"] in ("stripe_unavailable", "stripe_timeout") for a in answers if a.status_code >= 500)

    listings = [listing for _, listing, _ in jobs]
    unknown = db.execute("SELECT count(*) FROM payments WHERE listing_id = ANY(%s::uuid[]) AND status = 'creating'",
                         (listings,)).fetchone()[0]
    assert unknown > 0  # lost responses and 5xx: outcomes the sweeper must settle
    db.execute("UPDATE listings SET reserved_until = now() - interval '1 minute'"
               " WHERE id = ANY(%s::uuid[]) AND status = 'payment_pending'", (listings,))
    for _ in range(5):
        sweep(stack)
        if not db.execute("SELECT count(*) FROM payments WHERE listing_id = ANY(%s::uuid[]) AND status = 'creating'",
                          (listings,)).fetchone()[0]:
            break
    payments = {row[0]: row[1:] for row in db.execute(
        "SELECT id::text, status, stripe_payment_intent_id FROM payments WHERE listing_id = ANY(%s::uuid[])",
        (listings,))}
    assert len(payments) == 300
    assert not [p for p, (status, _) in payments.items() if status == "creating"]
    orphans = []
    with stack.stripe.core.lock:
        intents = [dict(o) for o in stack.stripe.core.objects.values() if o.get("object") == "payment_intent"
                   and (o.get("metadata") or {}).get("payment_id") in payments]
    for intent in intents:
        attached = payments[intent["metadata"]["payment_id"]][1] == intent["id"]
        if not attached and intent["status"] != "canceled":
            orphans.append((intent["id"], intent["status"]))
    assert orphans == []
    # A payment whose intent was made is attached to exactly that one intent.
    made = collections.Counter(i["metadata"]["payment_id"] for i in intents)
    assert max(made.values()) == 1, made.most_common(3)


# --- several processes ------------------------------------------------------------------------------

def test_two_processes_kill_9_one_under_webhook_load_and_every_event_applies_once(stack, db):
    payments = [new_payment(db, amount=2000 + n) for n in range(120)]
    endpoint = stack.stripe.dispatcher.endpoints["platform"]
    original = endpoint.url
    with stack.other_apps(count=2) as other:
        endpoint.url = other.url(WEBHOOK)
        try:
            events = []
            for n, payment in enumerate(payments):
                events.append(stack.stripe_control("POST", "/_control/events", {
                    "type": "payment_intent.succeeded",
                    "object": intent_object(payment, status="succeeded", amount_received=payment["amount"])}))
                if n == 40:
                    other.apps[0].kill()
            assert stack.stripe.wait_for_webhooks(timeout=90)
        finally:
            endpoint.url = original
        served = metric_samples(other.get("/metrics").text)
    ids = [e["id"] for e in events]
    rows = db.execute("SELECT status, attempts, count(*) FROM webhook_events WHERE id = ANY(%s) GROUP BY 1, 2",
                      (ids,)).fetchall()
    assert rows == [("processed", 1, 120)], rows
    states = db.execute("SELECT status, count(*) FROM payments WHERE id = ANY(%s::uuid[]) GROUP BY 1",
                        ([p["id"] for p in payments],)).fetchall()
    assert states == [("succeeded", 120)], states
    for payment in payments:
        assert audit_operations(db, payment["id"]).count("payment.succeeded") == 1
    assert any(name.startswith('payments_http_requests_total{instance="test/app-2"') for name in served)


# --- what follows an unknown outcome ----------------------------------------------------------------

def lose_the_create(stack, db, when="after"):
    """A create-intent whose every attempt is dropped (`after`: the intent is made, each answer
    lost; `before`: nothing reaches Stripe): 502, the payment left `creating`."""
    buyer, listing, _ = buyer_and_listing(stack, db)
    stack.stripe.inject_fault(type="drop", when=when, method="POST", path_prefix=STRIPE_CREATE, count=3)
    try:
        assert_envelope(create_intent(stack, buyer, listing), 502, "stripe_unavailable")
    finally:
        stack.stripe_control("DELETE", "/_control/faults")
    (payment_id, status, intent), = payment_of(db, listing)
    assert (status, intent) == ("creating", None)
    return buyer, listing, payment_id


def test_a_resumed_create_refused_by_stripe_keeps_the_payment_for_the_next_retry(stack, db):
    """The first attempt made the intent (its answers lost). A retry that Stripe then refuses
    does not prove there is no intent: the payment stays `creating` and the next retry gets
    the first attempt's intent."""
    buyer, listing, payment_id = lose_the_create(stack, db)
    stack.stripe.inject_fault(type="error", status=400, method="POST", path_prefix=STRIPE_CREATE, count=1,
                              error={"type": "invalid_request_error", "code": "parameter_invalid"})
    assert_envelope(create_intent(stack, buyer, listing), 502, "stripe_error")
    assert payment_of(db, listing) == [(payment_id, "creating", None)]
    assert db.execute("SELECT status FROM listings WHERE id = %s", (listing,)).fetchone()[0] == "payment_pending"
    third = create_intent(stack, buyer, listing)
    assert third.status_code == 201, third.text
    assert [i["id"] for i in fake_intents_for(stack, payment_id)] == [third.json()["payment_intent_id"]]


def test_cancelling_a_payment_whose_create_was_lost_cancels_the_intent_stripe_made(stack, db):
    buyer, listing, payment_id = lose_the_create(stack, db)
    cancelled = stack.post(f"/api/payments/{payment_id}/cancel", json={}, headers=buyer["headers"])
    assert cancelled.status_code == 200, cancelled.text
    (_, status, intent), = payment_of(db, listing)
    made = fake_intents_for(stack, payment_id)
    assert status == "canceled" and [i["id"] for i in made] == [intent] and made[0]["status"] == "canceled"
    assert db.execute("SELECT status FROM listings WHERE id = %s", (listing,)).fetchone()[0] == "active"


def test_the_sweeper_cancels_locally_when_stripe_refuses_the_recovery(stack, db):
    """Nothing reached Stripe, and Stripe now refuses the same call (here: a 400): no intent
    exists under the key, so the sweeper settles the payment without one instead of retrying
    it forever and holding the listing."""
    _, listing, payment_id = lose_the_create(stack, db, when="before")
    db.execute("UPDATE listings SET reserved_until = now() - interval '1 minute' WHERE id = %s", (listing,))
    stack.stripe.inject_fault(type="error", status=400, method="POST", path_prefix=STRIPE_CREATE, count=100,
                              error={"type": "invalid_request_error", "code": "account_invalid"})
    sweep(stack)
    assert payment_of(db, listing) == [(payment_id, "canceled", None)]
    assert fake_intents_for(stack, payment_id) == []
    assert db.execute("SELECT status FROM listings WHERE id = %s", (listing,)).fetchone()[0] == "active"
