"""Issue 18, `payments doctor`: one line per check in plain words; it passes on the test stack
once the endpoints exist, and fails (exit 1) naming the problem when a migration is pending or
changed, when an endpoint is missing, when Stripe cannot be reached, or when a socket is open to
everyone."""

import os
import shutil

from harness.paths import BINARY, SQL_DIR
from harness.processes import run
from test_stripe_endpoints import endpoints, no_endpoints  # noqa: F401 (fixtures)

CHECKS = ("configuration", "database", "migrations", "stripe", "clock", "platform endpoint", "connect endpoint",
          "FCGI_SOCKET", "FCGI_STRIPE_SOCKET")


def doctor(stack, **env):
    return run([str(BINARY), "doctor"], env={**stack.app.env, **env}, timeout=60)


def verdicts(result) -> dict:
    """`{check name: (verdict, detail)}` from doctor's lines (`ok      name: detail`)."""
    out = {}
    for line in result.stdout.splitlines():
        verdict, _, rest = line.partition(" ")
        name, _, detail = rest.strip().partition(": ")
        out[name] = (verdict, detail)
    return out


def test_doctor_passes_on_the_test_stack(stack, endpoints):  # noqa: F811
    result = doctor(stack)
    assert result.returncode == 0, result
    found = verdicts(result)
    assert set(found) == set(CHECKS), result.stdout
    assert all(verdict == "ok" for verdict, _ in found.values()), result.stdout
    assert "none pending" in found["migrations"][1]
    assert "mode 0660" in found["FCGI_SOCKET"][1], found["FCGI_SOCKET"]


def test_doctor_reports_a_pending_migration(stack, endpoints, tmp_path):  # noqa: F811
    migrations = tmp_path / "sql"
    shutil.copytree(SQL_DIR, migrations)
    (migrations / "9999_later.sql").write_text("SELECT 1;\n")
    result = doctor(stack, MIGRATIONS_DIR=str(migrations))
    assert result.returncode == 1, result
    verdict, detail = verdicts(result)["migrations"]
    assert verdict == "problem" and "1 pending (9999_later)" in detail and "payments migrate" in detail, result.stdout


def test_doctor_reports_a_changed_migration(stack, endpoints, tmp_path):  # noqa: F811
    migrations = tmp_path / "sql"
    shutil.copytree(SQL_DIR, migrations)
    first = sorted(migrations.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    result = doctor(stack, MIGRATIONS_DIR=str(migrations))
    assert result.returncode == 1, result
    verdict, detail = verdicts(result)["migrations"]
    assert verdict == "problem" and "edited after it was applied" in detail, result.stdout


def test_doctor_reports_missing_endpoints(stack, no_endpoints):  # noqa: F811
    result = doctor(stack)
    assert result.returncode == 1, result
    found = verdicts(result)
    for name in ("platform endpoint", "connect endpoint"):
        assert found[name][0] == "problem" and "missing at Stripe" in found[name][1], result.stdout
    assert found["database"][0] == "ok" and found["stripe"][0] == "ok", result.stdout


def test_doctor_reports_an_unreachable_stripe_and_a_socket_open_to_everyone(stack, endpoints):  # noqa: F811
    socket_path = stack.app.socket_path
    mode = os.stat(socket_path).st_mode & 0o777
    os.chmod(socket_path, 0o666)
    try:
        result = doctor(stack, STRIPE_API_BASE="https://127.0.0.1:1", STRIPE_MAX_RETRIES="0")
    finally:
        os.chmod(socket_path, mode)
    assert result.returncode == 1, result
    found = verdicts(result)
    assert found["stripe"][0] == "problem" and "not reachable" in found["stripe"][1], result.stdout
    assert found["FCGI_SOCKET"][0] == "problem" and "anyone on the host can connect" in found["FCGI_SOCKET"][1]
    assert "sk_test_" not in result.stdout + result.stderr, "doctor printed the key"


def test_doctor_compares_its_clock_with_stripes_date_header(stack, endpoints):  # noqa: F811
    try:
        stack.stripe_control("POST", "/_control/date_offset", {"seconds": -90})
        warned = doctor(stack)
        stack.stripe_control("POST", "/_control/date_offset", {"seconds": 900})
        failed = doctor(stack)
    finally:
        stack.stripe_control("POST", "/_control/date_offset", {"seconds": 0})
    assert warned.returncode == 0, warned
    verdict, detail = verdicts(warned)["clock"]
    assert verdict == "warning" and "ahead of Stripe's" in detail, warned.stdout
    assert failed.returncode == 1, failed
    verdict, detail = verdicts(failed)["clock"]
    assert verdict == "problem" and "behind Stripe's" in detail and "tolerance of 300 s" in detail, failed.stdout
