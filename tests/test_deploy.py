"""Issue 18, items 5 and 6 — what an operator installs: the alert rules (promtool checks and
unit-tests them), the Grafana dashboard (it loads, its queries parse, and every metric it or an
alert names is one the app really exposes), the systemd units (`systemd-analyze verify`, and the
settings they must carry) and the nginx site of a real host (rendered and `nginx -t`)."""

import json
import os
import re
import subprocess

import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness.paths import BINARY, NGINX, REPO, SCRIPTS
from test_metrics import put_money_at_risk, sweep
from test_webhook_signatures_http import event_body

DEPLOY = REPO / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "payments.json"
UNITS = DEPLOY / "systemd"
SECRETS = ("DATABASE_URL", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRETS", "STRIPE_CONNECT_WEBHOOK_SECRETS",
           "AUTH_JWT_SECRET")
# Every metric an alert names must be in a scrape (none is allowed to be missing any more).
COMES_WITH_RECONCILIATION: set = set()
METRIC = re.compile(r"\bpayments_[a-z0-9_]+\b")


def promtool(*args, cwd=None):
    result = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=cwd)
    return result.returncode, result.stdout + result.stderr


# --- alerts and dashboard ---------------------------------------------------------------------

def alert_rules():
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def dashboard_expressions():
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def as_promql(expression):
    """A dashboard query with Grafana's variables filled in as Grafana would."""
    return expression.replace("$__rate_interval", "5m").replace("$instance", ".*")


def test_promtool_accepts_the_alert_rules_and_their_unit_tests():
    status, output = promtool("check", "rules", str(ALERTS))
    assert status == 0 and "SUCCESS" in output, output
    status, output = promtool("test", "rules", "alerts.test.yml", cwd=ALERTS.parent)
    assert status == 0 and "SUCCESS" in output, output
    names = {rule["alert"] for rule in alert_rules()}
    for required in ("PaymentsWebhookEventsDead", "PaymentsWebhookSignatureFailures", "PaymentsHoldsLapsing",
                     "PaymentsStripeErrorRate", "PaymentsSweeperNotRunning", "PaymentsReconciliationDrift"):
        assert required in names, required


def test_promtool_refuses_a_broken_rule(tmp_path):
    """The check above can fail: the same file with one expression broken is refused."""
    broken = tmp_path / "alerts.yml"
    broken.write_text(ALERTS.read_text().replace("> 300", "> > 300", 1))
    status, output = promtool("check", "rules", str(broken))
    assert status != 0, output


def test_the_dashboard_loads_and_every_query_parses(tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 12
    for panel in panels:
        assert panel["targets"] and panel["gridPos"]["w"] > 0, panel["title"]
    # promtool parses each query as a recording rule: a PromQL syntax error fails here.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{n}", "expr": as_promql(expr)} for n, expr in enumerate(dashboard_expressions())]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    status, output = promtool("check", "rules", str(path))
    assert status == 0, output


def test_every_metric_of_the_alerts_and_the_dashboard_is_in_a_real_scrape(stack, db):
    # Make the series that appear with their first event: a Stripe call, a webhook, a sweep, and
    # a backlog and money at risk (their series exist per type or currency that has some).
    put_money_at_risk(stack, db)
    db.execute("""INSERT INTO webhook_events (id, type, endpoint, payload, status, created)
                  VALUES ('evt_deploy_parked_1', 'charge.refunded', 'platform', '{}', 'parked', 0)
                  ON CONFLICT DO NOTHING""")
    assert stack.post("/api/_diag/stripe", json={"method": "GET", "path": "/v1/balance"}).status_code == 200
    _, body = event_body()
    assert stack.post("/api/payments/webhook", data=body, headers={
        "Content-Type": "application/json", "Stripe-Signature": stack.sign_webhook(body)}).status_code == 200
    sweep(stack)
    exposed = set()
    for family in text_string_to_metric_families(stack.get("/metrics").text):
        exposed.update(sample.name for sample in family.samples)

    named = {m for rule in alert_rules() for m in METRIC.findall(rule["expr"])}
    missing = named - exposed - COMES_WITH_RECONCILIATION
    assert not missing, f"alerts name metrics the app does not expose: {sorted(missing)}"
    assert not COMES_WITH_RECONCILIATION & exposed, "drift is exposed now: drop it from the exceptions"
    on_dashboard = {m for expr in dashboard_expressions() for m in METRIC.findall(expr)}
    missing = on_dashboard - exposed
    assert not missing, f"the dashboard queries metrics the app does not expose: {sorted(missing)}"
    assert len(on_dashboard) >= 20


# --- systemd units ----------------------------------------------------------------------------

def unit(name):
    """{section: {key: [values]}}: a small reader of our own, since systemd repeats keys
    (Environment=, LoadCredential=), which configparser refuses."""
    # Repeated keys (Environment=, LoadCredential=) are kept, one per line.
    text = (UNITS / name).read_text()
    sections, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def test_systemd_analyze_verifies_the_units(tmp_path):
    """`systemd-analyze verify` on every unit, with ExecStart pointed at the binary this suite
    built (verify checks that each command is executable). Warnings count as failures."""
    for path in UNITS.iterdir():
        (tmp_path / path.name).write_text(path.read_text().replace("/usr/local/bin/payments", str(BINARY)))
    result = subprocess.run(["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.iterdir())],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr

    # ... and it notices a broken unit, so the check above can fail.
    (tmp_path / "payments-sweep.timer").write_text(
        (UNITS / "payments-sweep.timer").read_text().replace("OnCalendar=minutely", "OnCalendar=minutly"))
    broken = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "payments-sweep.timer")],
                            capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0 or broken.stderr


def test_the_serve_unit_reads_secrets_from_credentials_and_outlasts_the_shutdown_timeout():
    service = unit("payments@.service")["Service"]
    assert service["ExecStart"] == ["/usr/local/bin/payments serve"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # SIGHUP reopens logs, never a restart
    assert service["KillSignal"] == ["SIGTERM"]
    # SHUTDOWN_TIMEOUT_SECONDS defaults to STRIPE_DEADLINE_SECONDS + 10 = 30: systemd must wait longer.
    assert int(service["TimeoutStopSec"][0]) > 30
    environment = dict(e.split("=", 1) for e in service["Environment"])
    assert environment["FCGI_SOCKET"] == "/run/payments/app-%i.sock"  # one socket pair per instance
    credentials = dict(c.split(":", 1) for c in service["LoadCredential"])
    for name in SECRETS:
        credential = name.lower().replace("_", "-")
        assert credentials[credential] == f"/etc/payments/secrets/{credential}"
        assert environment[f"{name}_FILE"] == f"%d/{credential}"
        assert name not in environment  # never the secret itself
    assert service["User"] == ["payments"] and service["NoNewPrivileges"] == ["yes"]
    env_file = (DEPLOY / "payments.env").read_text()
    assert not any(re.search(rf"^{name}=", env_file, re.M) for name in SECRETS)


def test_the_sweep_timer_runs_the_oneshot_sweep_every_minute():
    timer = unit("payments-sweep.timer")
    assert timer["Timer"]["OnCalendar"] == ["minutely"]
    assert timer["Install"]["WantedBy"] == ["timers.target"]
    service = unit("payments-sweep.service")["Service"]
    assert service["Type"] == ["oneshot"]
    assert service["ExecStart"] == ["/usr/local/bin/payments sweep"]
    assert {"DATABASE_URL_FILE=%d/database-url", "STRIPE_SECRET_KEY_FILE=%d/stripe-secret-key"} <= set(
        service["Environment"])


# --- nginx for a real host --------------------------------------------------------------------

def test_the_real_host_nginx_site_renders_and_passes_nginx_t(tmp_path):
    settings = (DEPLOY / "nginx" / "payments-host.env").read_text()
    assert "CERT_FILE=/etc/letsencrypt/live/" in settings and "KEY_FILE=/etc/letsencrypt/live/" in settings
    subprocess.run([str(SCRIPTS / "make-cert.sh"), str(tmp_path / "tls")], check=True)
    prefix = tmp_path / "nginx"
    # As docs/deploy.md does it; only the certificate paths point at a test certificate here.
    render = subprocess.run(
        ["bash", "-c", 'set -a; . "$1"; set +a; CERT_FILE="$2/cert.pem" KEY_FILE="$2/key.pem" exec "$3" "$4"', "-",
         str(DEPLOY / "nginx" / "payments-host.env"), str(tmp_path / "tls"), str(SCRIPTS / "render-nginx.sh"),
         str(prefix)],
        capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"]})
    assert render.returncode == 0, render.stderr
    config = (prefix / "nginx.conf").read_text()
    assert "user www-data www-data;" in config
    assert "listen 0.0.0.0:443 ssl http2;" in config and "listen 0.0.0.0:80;" in config
    assert config.count("server_name payments.example.com;") == 2
    assert "server unix:/run/payments/app-1.sock; server unix:/run/payments/app-2.sock;" in config
    assert "server unix:/run/payments/app-1-stripe.sock; server unix:/run/payments/app-2-stripe.sock;" in config
    assert "fastcgi_read_timeout 30s" in (prefix / "fastcgi-stripe.conf").read_text() + config
    real_ip = (prefix / "trusted-proxies.conf").read_text()
    assert "set_real_ip_from 10.0.0.5;" in real_ip and "real_ip_header X-Forwarded-For;" in real_ip
    assert "include trusted-proxies.conf;" in config and "include stripe-webhook-ips.conf;" in config
    checked = subprocess.run([NGINX, "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                              "-e", str(prefix / "logs" / "error.log")], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr


def test_render_refuses_a_bad_listen_address(tmp_path):
    result = subprocess.run([str(SCRIPTS / "render-nginx.sh"), str(tmp_path / "n")], capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"], "APP_SOCKETS": "/run/a.sock", "CERT_FILE": "/c",
                                 "KEY_FILE": "/k", "LISTEN_ADDRESS": "0.0.0.0; include /etc/passwd"})
    assert result.returncode != 0 and "LISTEN_ADDRESS" in result.stderr
