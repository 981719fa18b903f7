"""The process under stress: the app dying, the database going away, SIGTERM under load."""

import signal
import time
from concurrent.futures import ThreadPoolExecutor

from harness.api import wait_until_ready
from harness.assertions import assert_envelope
from harness.processes import wait_until

SLEEPING = """SELECT count(*) FROM pg_stat_activity
              WHERE state = 'active' AND query ILIKE '%pg_sleep%' AND pid <> pg_backend_pid()"""


def test_app_down_is_a_502_envelope_and_a_restart_takes_the_stale_socket(stack):
    stack.app.kill()
    try:
        assert_envelope(stack.get("/api/health"), 502, "bad_gateway")
        assert_envelope(stack.post("/api/_diag/json", json={}), 502, "bad_gateway")
    finally:
        stack.restart_app()
    assert stack.get("/api/health").json() == {"status": "ok"}


def test_database_outage_is_503_and_the_app_recovers_by_itself(stack):
    pid = stack.app.pid
    stack.stop_database()
    try:
        assert_envelope(stack.get("/api/ready"), 503, "database_unavailable")
        assert_envelope(stack.get("/api/_diag/sleep?ms=1"), 503, "database_unavailable")
        assert stack.get("/api/health").status_code == 200
    finally:
        stack.start_database()

    wait_until_ready(stack, 12)
    assert stack.app.pid == pid and stack.app.is_running(), "the app was restarted"


def test_sigterm_finishes_in_flight_requests_then_exits_0(stack, admin_db):
    workers = int(stack.app.env["WORKERS"])
    timeout = int(stack.app.env["SHUTDOWN_TIMEOUT_SECONDS"])
    try:
        with ThreadPoolExecutor(workers) as pool:
            in_flight = [pool.submit(stack.get, "/api/_diag/sleep?ms=1500") for _ in range(workers)]
            wait_until(lambda: admin_db.execute(SLEEPING).fetchone()[0] == workers, 10,
                       what="every worker to be busy")
            stack.app.signal(signal.SIGTERM)
            signalled = time.monotonic()
            time.sleep(0.3)
            late = stack.get("/api/health")  # arrives after SIGTERM: nobody accepts it any more
            responses = [future.result(timeout=30) for future in in_flight]
        exit_code = stack.app.wait(timeout + 5)
        elapsed = time.monotonic() - signalled
    finally:
        stack.restart_app()

    assert [r.status_code for r in responses] == [200] * workers, [r.text for r in responses]
    assert all(r.json() == {"slept_ms": 1500} for r in responses)
    assert_envelope(late, 502, "bad_gateway")
    assert exit_code == 0
    assert elapsed < timeout, elapsed
