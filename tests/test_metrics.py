"""Issue 18, item 4 — metrics that matter. Every scrape is parsed with the Prometheus client's
own text parser, and each metric is shown to move when its event happens: a Stripe call, a
request, a sweep run and a sweeper failure, an expiring authorisation, an open dispute, a
pending refund, a busy lane. The scrape-time queries are shown to read through indexes."""

import subprocess
import threading
import time

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.paths import BINARY
from harness.stack import APP_ROLE
from test_milestones import open_dispute
from test_purchase_flow import authorised

INSTANCE_LABEL = "instance"


def scrape(stack):
    """{(sample name, frozenset of labels but instance): value}, and the families' types, from
    the real /metrics through nginx, parsed by prometheus_client (which raises on bad text)."""
    response = stack.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples, types = {}, {}
    for family in text_string_to_metric_families(response.text):
        types[family.name] = family.type
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop(INSTANCE_LABEL), sample  # every series names its process
            samples[(sample.name, frozenset(labels.items()))] = sample.value
    return samples, types


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def sweep(stack, expect_status=0):
    result = subprocess.run([str(BINARY), "sweep"], env=stack.app.env, capture_output=True, text=True, timeout=90)
    assert result.returncode == expect_status, (result.returncode, result.stdout, result.stderr)
    return result


def put_money_at_risk(stack, db, price=4200):
    """An authorisation lapsing within 24 h, disputed by its buyer, with a refund pending;
    returns the payment's id."""
    seller, buyer, listing, body = authorised(stack, db, price=price)
    payment_id = body["payment_id"]
    db.execute("UPDATE payments SET capture_before = now() + interval '20 hours' WHERE id = %s", (payment_id,))
    response = open_dispute(stack, buyer, payment_id)
    assert response.status_code in (200, 201), response.text
    db.execute("INSERT INTO refunds (payment_id, sequence, amount_cents, currency, status)"
               " VALUES (%s, 1, 1500, 'usd', 'pending')", (payment_id,))
    return payment_id


def test_the_scrape_parses_and_names_follow_prometheus_conventions(stack):
    stack.get("/api/health")
    samples, types = scrape(stack)
    # prometheus_client strips `_total` from counter family names; every counter we expose has it.
    text = stack.get("/metrics").text
    for line in text.splitlines():
        if line.startswith("# TYPE ") and line.endswith(" counter"):
            assert line.split()[2].endswith("_total"), line
    for family, kind in {
        "payments_http_request_duration_seconds": "histogram",
        "payments_webhook_processing_seconds": "histogram",
        "payments_lane_workers": "gauge", "payments_lane_busy_workers": "gauge",
        "payments_db_pool_in_use": "gauge", "payments_db_pool_waiting": "gauge",
        "payments_authorizations_expiring": "gauge", "payments_disputes_open": "gauge",
        "payments_refunds_pending": "gauge",
    }.items():
        assert types.get(family) == kind, (family, types.get(family))
    assert value(samples, "payments_lane_workers", lane="core") == 4  # WORKERS in the harness
    assert value(samples, "payments_lane_workers", lane="stripe") == 4


def test_request_latency_by_route_pattern_and_status_class(stack):
    before, _ = scrape(stack)
    for _ in range(3):
        assert stack.get("/api/health").status_code == 200
    assert stack.get("/api/payments/00000000-0000-0000-0000-000000000000").status_code == 401
    after, _ = scrape(stack)
    health = {"route": "/api/health", "status_class": "2xx"}
    assert value(after, "payments_http_request_duration_seconds_count", **health) - \
        value(before, "payments_http_request_duration_seconds_count", **health) == 3
    assert value(after, "payments_http_request_duration_seconds_bucket", **health, le="+Inf") == \
        value(after, "payments_http_request_duration_seconds_count", **health)
    assert value(after, "payments_http_request_duration_seconds_sum", **health) > \
        value(before, "payments_http_request_duration_seconds_sum", **health)
    refused = {"route": "/api/payments/{id}", "status_class": "4xx"}
    assert value(after, "payments_http_request_duration_seconds_count", **refused) - \
        value(before, "payments_http_request_duration_seconds_count", **refused) == 1
    # Label values are route patterns: no raw path reaches a label.
    assert not any("00000000-0000" in v for key in after for _, v in key[1])


def test_stripe_calls_by_operation_and_outcome_with_latency(stack, faults):
    ok = {"operation": "GET /v1/balance", "outcome": "ok"}
    missing = {"operation": "GET /v1/accounts/{id}", "outcome": "invalidRequest"}
    before, _ = scrape(stack)
    assert stack.post("/api/_diag/stripe", json={"method": "GET", "path": "/v1/balance"}).status_code == 200
    assert stack.post("/api/_diag/stripe",
                      json={"method": "GET", "path": "/v1/accounts/acct_nobody123"}).status_code == 502
    faults(type="error", status=500, method="GET", path_prefix="/v1/balance", count=10)
    failed = stack.post("/api/_diag/stripe", json={"method": "GET", "path": "/v1/balance"})
    assert failed.status_code == 502 and failed.json()["kind"] == "api", failed.text
    after, _ = scrape(stack)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("payments_stripe_requests_total", **ok) == 1
    assert moved("payments_stripe_requests_total", **missing) == 1
    assert moved("payments_stripe_requests_total", operation="GET /v1/balance", outcome="api") == 1
    # The latency histogram counts each call once, retries included in its duration.
    assert moved("payments_stripe_request_duration_seconds_count", operation="GET /v1/balance") == 2
    assert moved("payments_stripe_request_duration_seconds_sum", operation="GET /v1/balance") > 0
    # No Stripe id ever becomes a label value.
    assert not any("acct_nobody" in v for key in after for _, v in key[1])


def test_a_busy_lane_shows_in_its_gauge(stack, faults):
    faults(type="delay", delay_ms=3000, when="before", method="GET", path_prefix="/v1/balance", count=1)
    slow = threading.Thread(
        target=lambda: stack.post("/api/_diag/stripe", json={"method": "GET", "path": "/v1/balance"}))
    slow.start()
    try:
        deadline = time.monotonic() + 2.5
        busy = 0.0
        while time.monotonic() < deadline and busy < 1:
            busy = value(scrape(stack)[0], "payments_lane_busy_workers", lane="stripe")
            time.sleep(0.1)
        assert busy >= 1
    finally:
        slow.join(30)
    assert value(scrape(stack)[0], "payments_lane_busy_workers", lane="stripe") == 0


DESTINATION = {"charge_model": "destination"}  # the session app's purchases


def test_money_at_risk_moves_with_holds_disputes_and_refunds(stack, db):
    before, _ = scrape(stack)

    def grown(after, name, **labels):
        """How much a destination-charge series (the session app's purchases) moved since `before`."""
        return value(after, name, **DESTINATION, **labels) - value(before, name, **DESTINATION, **labels)

    seller, buyer, listing, body = authorised(stack, db, price=4200)
    payment_id = body["payment_id"]
    # A hold that lapses in a week is not at risk yet; one that lapses within 24 hours is.
    db.execute("UPDATE payments SET capture_before = now() + interval '7 days' WHERE id = %s", (payment_id,))
    middle, _ = scrape(stack)
    assert grown(middle, "payments_authorizations_expiring") == 0
    db.execute("UPDATE payments SET capture_before = now() + interval '20 hours' WHERE id = %s", (payment_id,))
    expiring, _ = scrape(stack)
    assert grown(expiring, "payments_authorizations_expiring") == 1
    assert grown(expiring, "payments_authorizations_expiring_amount_minor", currency="usd") == 4200

    response = open_dispute(stack, buyer, payment_id)
    assert response.status_code in (200, 201), response.text
    disputed, _ = scrape(stack)
    assert grown(disputed, "payments_disputes_open") == 1
    assert grown(disputed, "payments_disputes_open_amount_minor", currency="usd") == 4200

    # A refund Stripe has not settled yet (`pending`, as Stripe reports bank refunds).
    db.execute("INSERT INTO refunds (payment_id, sequence, amount_cents, currency, status)"
               " VALUES (%s, 1, 1500, 'usd', 'pending')", (payment_id,))
    refunding, _ = scrape(stack)
    assert grown(refunding, "payments_refunds_pending") == 1
    assert grown(refunding, "payments_refunds_pending_amount_minor", currency="usd") == 1500
    # The other model's series moved not at all (both are always present).
    for name in ("payments_authorizations_expiring", "payments_disputes_open", "payments_refunds_pending"):
        assert (name, frozenset({"charge_model": "direct"}.items())) in refunding
        assert value(refunding, name, charge_model="direct") == value(before, name, charge_model="direct")
    db.execute("UPDATE refunds SET status = 'succeeded' WHERE payment_id = %s", (payment_id,))
    assert grown(scrape(stack)[0], "payments_refunds_pending") == 0


def test_sweep_runs_rows_and_failures_are_recorded_and_scraped(stack, db, faults):
    before, _ = scrape(stack)
    started = time.time()
    db.execute("INSERT INTO rate_limits (key, window_start, count) VALUES ('metrics-test', now() - interval '3 days', 1)")
    sweep(stack)
    after, types = scrape(stack)
    assert types["payments_sweep_runs"] == "counter"  # prometheus_client drops the _total
    for task in ("purge_rate_limit_windows", "expire_reservations", "settle_lapsing_authorizations",
                 "retry_webhook_events"):
        assert value(after, "payments_sweep_runs_total", task=task) - \
            value(before, "payments_sweep_runs_total", task=task) == 1, task
        assert value(after, "payments_sweep_last_run_timestamp_seconds", task=task) >= started - 1
        assert value(after, "payments_sweep_last_success_timestamp_seconds", task=task) >= started - 1
    assert value(after, "payments_sweep_last_rows", task="purge_rate_limit_windows") >= 1
    assert value(after, "payments_sweep_rows_total", task="purge_rate_limit_windows") - \
        value(before, "payments_sweep_rows_total", task="purge_rate_limit_windows") >= 1

    # A lapsing authorisation whose cancel Stripe refuses: settled here, but the failure is
    # counted (it used to be swallowed), logged, and the task's last success does not move.
    seller, buyer, listing, body = authorised(stack, db)
    db.execute("UPDATE payments SET capture_before = now() + interval '1 hour' WHERE id = %s", (body["payment_id"],))
    faults(type="error", status=500, method="POST", path_prefix="/v1/payment_intents/", count=20)
    last_success = value(after, "payments_sweep_last_success_timestamp_seconds", task="settle_lapsing_authorizations")
    result = sweep(stack)  # items that stay due are not exit 1
    assert "settle_lapsing_authorizations: 1 item(s) failed" in result.stderr, result.stderr
    failed, _ = scrape(stack)
    task = {"task": "settle_lapsing_authorizations"}
    assert value(failed, "payments_sweep_failures_total", **task) - value(after, "payments_sweep_failures_total", **task) == 1
    assert value(failed, "payments_sweep_last_failures", **task) == 1
    assert value(failed, "payments_sweep_last_success_timestamp_seconds", **task) == last_success
    assert value(failed, "payments_sweep_runs_total", **task) - value(after, "payments_sweep_runs_total", **task) == 1


def test_a_task_that_fails_as_a_whole_is_recorded_and_the_others_still_run(stack, db):
    # The app role loses its right to one table: that task fails, the rest run, exit 1.
    role = APP_ROLE
    db.execute(f"REVOKE DELETE ON rate_limits FROM {role}")
    try:
        before, _ = scrape(stack)
        result = sweep(stack, expect_status=1)
        assert "purge_rate_limit_windows failed" in result.stderr, result.stderr
        after, _ = scrape(stack)
    finally:
        db.execute(f"GRANT DELETE ON rate_limits TO {role}")
    failing = {"task": "purge_rate_limit_windows"}
    assert value(after, "payments_sweep_failures_total", **failing) - value(before, "payments_sweep_failures_total", **failing) == 1
    ran = {"task": "retry_webhook_events"}
    assert value(after, "payments_sweep_runs_total", **ran) - value(before, "payments_sweep_runs_total", **ran) == 1


def test_the_webhook_backlog_counts_dead_events(stack, db):
    before, _ = scrape(stack)
    db.execute("""INSERT INTO webhook_events (id, type, endpoint, payload, status, created)
                  VALUES ('evt_metrics_dead_1', 'payment_intent.succeeded', 'platform', '{}', 'dead', 0)""")
    after, _ = scrape(stack)
    dead = {"status": "dead", "type": "payment_intent.succeeded"}
    assert value(after, "payments_webhook_backlog", **dead) - value(before, "payments_webhook_backlog", **dead) == 1


@pytest.mark.parametrize("view, tables, indexes", [
    ("metrics_webhook_backlog", ["webhook_events"], [{"webhook_events_backlog_idx"}]),
    ("metrics_webhook_refused", ["webhook_events"], [{"webhook_events_refused_idx"}]),
    # Authorisations: the partial index of held payments (sql/0022), which holds only them.
    ("metrics_money_at_risk", ["payments", "disputes", "refunds"],
     [{"payments_hold_expires_idx"}, {"disputes_open_idx"},
      {"refunds_pending_idx"}]),
])
def test_scrape_queries_read_through_partial_indexes_not_whole_tables(stack, view, tables, indexes):
    """With sequential scans priced out, a query that can only scan the table still does (at a
    huge cost), or walks a whole index; one over a partial index uses it. So the partial
    indexes in the plan, and no `Seq Scan`, mean the scrape reads only the rows it counts
    (the backlog, not the whole inbox), however large the tables grow."""
    with psycopg.connect(stack.app_database_url, autocommit=True) as connection:
        connection.execute("SET enable_seqscan = off")
        plan = "\n".join(row[0] for row in connection.execute(f"EXPLAIN SELECT * FROM {view}"))
    for table in tables:
        assert f"Seq Scan on {table}" not in plan, plan
    for accepted in indexes:
        assert any(index in plan for index in accepted), (accepted, plan)
