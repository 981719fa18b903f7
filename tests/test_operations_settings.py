"""Issue 18, item 6 — what the deployment units rely on: secrets from files (`X_FILE`), SIGHUP
reopening `LOG_FILE` without ending the process, and a shutdown timeout that outlasts the
Stripe deadline by default. Each against the real `payments serve` behind nginx."""

import signal
import subprocess
import threading
import time

from harness.api import make_profile
from harness.paths import BINARY
from harness.processes import wait_until
from harness.stack import CONNECT_SECRET, PLATFORM_SECRET
from test_webhook_signatures_http import event_body

SECRETS = ("DATABASE_URL", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRETS", "STRIPE_CONNECT_WEBHOOK_SECRETS",
           "AUTH_JWT_SECRET")


def secret_files(stack, tmp_path):
    """Every secret moved from the environment into a root-only file (with a trailing newline,
    as an editor or `echo` leaves it); the variable itself set empty."""
    env = {}
    for name in SECRETS:
        path = tmp_path / name.lower()
        path.write_text(stack.app.env[name] + "\n")
        path.chmod(0o600)
        env[name] = ""
        env[name + "_FILE"] = str(path)
    return env


def serve_once(env, timeout=15):
    """`payments serve` with `env`, expected to refuse to start."""
    return subprocess.run([str(BINARY), "serve"], env=env, capture_output=True, text=True, timeout=timeout)


def test_serve_reads_every_secret_from_its_file(stack, db, tmp_path):
    with stack.other_apps(**secret_files(stack, tmp_path)) as other:
        assert other.get("/api/ready").status_code == 200  # DATABASE_URL from its file
        buyer = make_profile(db, "buyer")
        assert other.get("/api/me", headers=buyer["headers"]).status_code == 200  # AUTH_JWT_SECRET
        balance = other.post("/api/_diag/stripe", json={"method": "GET", "path": "/v1/balance"})
        assert balance.status_code == 200, balance.text  # STRIPE_SECRET_KEY
        event_id, body = event_body()
        delivered = other.post("/api/payments/webhook", data=body, headers={
            "Content-Type": "application/json", "Stripe-Signature": stack.sign_webhook(body)})
        assert delivered.status_code == 200, delivered.text  # STRIPE_WEBHOOK_SECRETS
        assert db.execute("SELECT count(*) FROM webhook_events WHERE id = %s", (event_id,)).fetchone()[0] == 1
    assert PLATFORM_SECRET not in other.apps[0].log_text() and CONNECT_SECRET not in other.apps[0].log_text()


def test_a_secret_given_twice_or_from_an_unreadable_file_stops_start_up(stack, tmp_path):
    key_file = tmp_path / "stripe-key"
    key_file.write_text("sk_test_from_file_000000\n")
    both = serve_once({**stack.app.env, "FCGI_SOCKET": str(tmp_path / "a.sock"),
                       "STRIPE_SECRET_KEY_FILE": str(key_file)})
    assert both.returncode == 1
    assert "STRIPE_SECRET_KEY and STRIPE_SECRET_KEY_FILE are both set" in both.stderr, both.stderr
    assert "sk_test_" not in both.stderr

    missing = serve_once({**stack.app.env, "FCGI_SOCKET": str(tmp_path / "b.sock"), "AUTH_JWT_SECRET": "",
                          "AUTH_JWT_SECRET_FILE": str(tmp_path / "nowhere")})
    assert missing.returncode == 1
    assert "AUTH_JWT_SECRET_FILE names a file that cannot be read" in missing.stderr, missing.stderr
    assert not (tmp_path / "a.sock").exists() and not (tmp_path / "b.sock").exists()


def test_other_commands_read_secret_files_too(stack, tmp_path):
    env = {**stack.app.env, **secret_files(stack, tmp_path)}
    listed = subprocess.run([str(BINARY), "events", "list", "--limit", "1"], env=env, capture_output=True, text=True,
                            timeout=30)
    assert listed.returncode == 0, listed.stderr


def test_sighup_reopens_the_log_file_and_the_process_keeps_serving(stack, tmp_path):
    log = tmp_path / "payments.log"
    with stack.other_apps(LOG_FILE=str(log)) as other:
        app = other.apps[0]
        assert other.get("/api/health").status_code == 200
        wait_until(lambda: "/api/health" in log.read_text(), 5, what="a request line in LOG_FILE")
        assert app.log_text() == ""  # nothing went to the inherited stdout/stderr

        rotated = tmp_path / "payments.log.1"
        log.rename(rotated)  # what logrotate does, then it sends SIGHUP
        app.signal(signal.SIGHUP)
        wait_until(lambda: log.exists() and "log file reopened" in log.read_text(), 5, what="a new LOG_FILE")
        assert app.is_running()
        first = other.get("/api/health", headers={"X-Test": "after-hup"})
        assert first.status_code == 200
        request_id = first.headers["X-Request-Id"]
        wait_until(lambda: request_id in log.read_text(), 5, what="the request in the new file")
        assert request_id not in rotated.read_text()

        for _ in range(3):  # again and again: never fatal
            app.signal(signal.SIGHUP)
        time.sleep(0.5)
        assert app.is_running() and other.get("/api/health").status_code == 200
        assert app.stop() == 0  # SIGTERM still ends it cleanly


def test_sighup_without_a_log_file_does_not_end_the_process(stack):
    with stack.other_apps() as other:
        app = other.apps[0]
        app.signal(signal.SIGHUP)
        time.sleep(0.5)
        assert app.is_running()
        assert other.get("/api/health").status_code == 200


def test_shutdown_timeout_must_be_above_the_stripe_deadline(stack, tmp_path):
    refused = serve_once({**stack.app.env, "FCGI_SOCKET": str(tmp_path / "c.sock"),
                          "STRIPE_DEADLINE_SECONDS": "30", "SHUTDOWN_TIMEOUT_SECONDS": "30"})
    assert refused.returncode == 1
    assert "SHUTDOWN_TIMEOUT_SECONDS must be above STRIPE_DEADLINE_SECONDS (30)" in refused.stderr, refused.stderr


def test_by_default_a_request_waiting_on_stripe_finishes_before_shutdown(stack, faults):
    """STRIPE_DEADLINE_SECONDS=12 and no SHUTDOWN_TIMEOUT_SECONDS: the default (22 s) lets a
    request stuck 11 s on Stripe answer after SIGTERM (the old fixed default of 10 s cut it)."""
    # An empty value is an unset one: the default applies.
    with stack.other_apps(STRIPE_DEADLINE_SECONDS=12, STRIPE_TIMEOUT_SECONDS=12, SHUTDOWN_TIMEOUT_SECONDS="") as other:
        app = other.apps[0]
        faults(type="delay", delay_ms=11000, when="before", method="GET", path_prefix="/v1/balance", count=1)
        answers = []
        slow = threading.Thread(target=lambda: answers.append(
            other.post("/api/_diag/stripe", json={"method": "GET", "path": "/v1/balance"}, timeout=60)))
        slow.start()
        time.sleep(1.0)
        app.signal(signal.SIGTERM)
        assert app.wait(40) == 0  # every in-flight request finished in time
        slow.join(40)
    assert answers and answers[0].status_code == 200, answers
