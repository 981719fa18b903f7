"""Issue 13, the edge: what nginx lets through and what it adds, proved through nginx
instances rendered from the project's template with the switches of scripts/render-nginx.sh
(each test renders its own, in front of the session's app).

- /api/_diag/ is denied (a JSON 404) unless the config is rendered with
  NGINX_ALLOW_DIAGNOSTICS=1, even when the app itself has DIAGNOSTICS_ENABLED=1.
- Every response carries Referrer-Policy: no-referrer and one Content-Security-Policy: the
  strict API one on JSON (the app's and nginx's own), the static pages' own on nginx/static.
- TLS is Mozilla's "intermediate" profile, without session tickets.
- The client address: with NGINX_TRUSTED_PROXIES, X-Forwarded-For from a trusted proxy names
  the client (its own rate-limit bucket; IPv6 clients share one per /64); without it, the header
  is ignored.
- The webhook locations, rendered with NGINX_STRIPE_WEBHOOK_IPS=1, admit only the addresses of
  the list (Stripe's, written by scripts/stripe-webhook-ips.py): anyone else gets nginx's JSON
  403, signature or not."""

import json
import re
import socket
import ssl
import subprocess
import sys
import time
import uuid

import pytest
import requests

from harness.assertions import (API_CSP, STATIC_PAGE_CSP, assert_envelope, assert_security_headers, reached_app, request_id,
                                single_header)
from harness.paths import NGINX, REPO

# Capture's IP-keyed limit, tight, in the app processes these tests start (other_apps).
TIGHT_CAPTURE = "capture=2/60"


def call(nginx, method, path, **kwargs):
    kwargs.setdefault("verify", False)
    kwargs.setdefault("timeout", 30)
    kwargs.setdefault("allow_redirects", False)
    return requests.request(method, nginx.url(path), **kwargs)


# ------------------------------------------------------------------------------------------
# Diagnostics routes
# ------------------------------------------------------------------------------------------

DIAG_REQUESTS = [
    ("POST", "/api/_diag/stripe", {"json": {"method": "GET", "path": "/v1/balance"}}),
    ("POST", "/api/_diag/stripe/", {"json": {"method": "GET", "path": "/v1/balance"}}),
    ("POST", "/api/_diag/echo", {"data": b"x", "headers": {"Content-Type": "text/plain"}}),
    ("GET", "/api/_diag/sleep?ms=0", {}),
    ("GET", "/api//_diag/sleep?ms=0", {}),
    ("GET", "/api/%5Fdiag/sleep?ms=0", {}),
    ("GET", "/api/_diag", {}),
]


def test_diagnostics_are_denied_unless_rendered_allowed(stack):
    """The session's app runs with DIAGNOSTICS_ENABLED=1; an nginx rendered without the switch
    (as `make run` renders it) still answers every spelling of /api/_diag/ with nginx's JSON 404,
    and the app never sees the request."""
    assert stack.app.env["DIAGNOSTICS_ENABLED"] == "1"
    balance_calls = len(stack.stripe.received("GET", "/v1/balance"))
    with stack.other_nginx(NGINX_ALLOW_DIAGNOSTICS="0") as default:
        config = (default.directory / "nginx.conf").read_text()
        assert "include diagnostics-denied.conf;" in config
        for method, path, kwargs in DIAG_REQUESTS:
            response = call(default, method, path, **kwargs)
            assert_envelope(response, 404, "not_found")
            assert not reached_app(stack, response), path
        # The rest of the API is untouched by the rule.
        assert call(default, "GET", "/api/health").status_code == 200
    assert len(stack.stripe.received("GET", "/v1/balance")) == balance_calls, "a denied call reached Stripe"


def test_diagnostics_reach_the_app_when_rendered_allowed(stack):
    """The control: the harness's own nginx is rendered with NGINX_ALLOW_DIAGNOSTICS=1."""
    assert "include diagnostics-denied.conf;" not in (stack.nginx.directory / "nginx.conf").read_text()
    response = stack.get("/api/_diag/sleep?ms=0")
    assert response.status_code == 200 and response.json() == {"slept_ms": 0}


def test_run_script_never_renders_diagnostics_allowed():
    """`make run` (scripts/run.sh) pins the switch off, whatever the caller's environment says."""
    script = (REPO / "scripts" / "run.sh").read_text()
    assert "NGINX_ALLOW_DIAGNOSTICS=0 " in script and "NGINX_ALLOW_DIAGNOSTICS=1" not in script


# ------------------------------------------------------------------------------------------
# Response headers
# ------------------------------------------------------------------------------------------

def assert_headers(response, csp):
    assert_security_headers(response)  # HSTS, nosniff, frame DENY, Referrer-Policy: no-referrer
    assert single_header(response, "Content-Security-Policy") == csp, response.url


def test_api_responses_carry_the_strict_policy(stack):
    for response in (stack.get("/api/health"),                    # the app, 200
                     stack.get("/api/no-such-route"),             # the app's own envelope
                     stack.get("/metrics"),                       # the app, loopback only
                     stack.get("/api/connect/onboarding/return?state=" + "A" * 20)):  # app 400, nginx's page
        assert response.status_code in (200, 400, 404), (response.url, response.status_code)
        csp = STATIC_PAGE_CSP if response.headers["Content-Type"].startswith("text/html") else API_CSP
        assert_headers(response, csp)
    app_error = stack.get("/api/no-such-route")
    assert_envelope(app_error, 404, "not_found")
    assert reached_app(stack, app_error)


def test_nginx_own_responses_carry_the_strict_policy(stack):
    not_found = stack.get("/no-such-page")                    # nginx's JSON 404
    assert_envelope(not_found, 404, "not_found")
    assert_headers(not_found, API_CSP)
    not_allowed = stack.post("/index.html", data=b"x")        # nginx's JSON 405
    assert_envelope(not_allowed, 405, "method_not_allowed")
    assert_headers(not_allowed, API_CSP)
    redirect = stack.get("/api/health", scheme="http")        # the plain-HTTP redirect
    assert redirect.status_code == 308
    assert_headers(redirect, API_CSP)


@pytest.mark.parametrize("path,content_type", [("/", "text/html"), ("/marketplace/", "text/html"),
                                               ("/marketplace/?onboarding=complete", "text/html"),
                                               ("/site.css", "text/css"),
                                               ("/marketplace/result.js", "application/javascript")])
def test_static_pages_carry_their_own_policy(stack, path, content_type):
    response = stack.get(path)
    assert response.status_code == 200, (path, response.status_code)
    assert response.headers["Content-Type"].startswith(content_type), response.headers
    assert_headers(response, STATIC_PAGE_CSP)
    request_id(response)


def test_onboarding_error_page_carries_the_static_policy(stack):
    response = stack.get("/api/connect/onboarding/refresh?state=not-a-state")
    assert response.status_code == 400 and response.headers["Content-Type"].startswith("text/html")
    assert_headers(response, STATIC_PAGE_CSP)


def test_static_pages_need_nothing_the_policy_forbids():
    """STATIC_PAGE_CSP allows no inline script, style or handler: the pages carry none, and
    load their files from this origin only (test_connect_browser runs the script for real)."""
    pages = sorted((REPO / "nginx" / "static").rglob("*.html"))
    assert pages
    for page in pages:
        text = page.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text, re.I), f"{page}: inline script"
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=|javascript:", text, re.I), f"{page}: inline style/handler"
        for url in re.findall(r'(?:src|href)="([^"]+)"', text):
            assert url.startswith("/") and not url.startswith("//"), f"{page}: {url} is not of this origin"


# ------------------------------------------------------------------------------------------
# TLS
# ------------------------------------------------------------------------------------------

# Mozilla Server Side TLS guideline 5.7, "intermediate": the TLS 1.2 cipher suites.
MOZILLA_INTERMEDIATE = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                        "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
                        "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305")


def test_rendered_tls_settings(stack):
    config = (stack.nginx.directory / "nginx.conf").read_text()
    assert re.findall(r"^\s*ssl_ciphers (\S+);", config, re.M) == [MOZILLA_INTERMEDIATE]
    for line in ("ssl_protocols TLSv1.2 TLSv1.3;", "ssl_prefer_server_ciphers off;", "ssl_session_tickets off;",
                 "ssl_dhparam ffdhe2048.pem;"):
        assert re.search(rf"^\s*{re.escape(line)}$", config, re.M), line
    assert "ssl_session_tickets on" not in config


def handshake(port, *, version, ciphers=None):
    """One TLS handshake with nginx: (protocol, cipher, session) or the ssl.SSLError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = version
    if ciphers:
        context.set_ciphers(ciphers)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw) as tls:
                return tls.version(), tls.cipher()[0], tls.session
    except ssl.SSLError as error:
        return error


def test_tls_accepts_only_the_intermediate_ciphers_and_issues_no_tickets(stack):
    port = stack.nginx.https_port
    modern = handshake(port, version=ssl.TLSVersion.TLSv1_3)
    assert not isinstance(modern, ssl.SSLError) and modern[0] == "TLSv1.3", modern
    # TLS 1.2: each forward-secret AEAD suite of the list works with this RSA certificate
    # (the DHE ones through the rendered ffdhe2048 group) …
    for cipher in ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305",
                   "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384"):
        result = handshake(port, version=ssl.TLSVersion.TLSv1_2, ciphers=cipher)
        assert not isinstance(result, ssl.SSLError), (cipher, result)
        protocol, negotiated, session = result
        assert (protocol, negotiated) == ("TLSv1.2", cipher)
        assert not session.has_ticket, "nginx issued a TLS session ticket"
    # … and nothing else: CBC, SHA-1 and static-RSA suites are refused.
    for cipher in ("ECDHE-RSA-AES128-SHA256", "ECDHE-RSA-AES128-SHA", "AES128-GCM-SHA256", "AES256-SHA"):
        assert isinstance(handshake(port, version=ssl.TLSVersion.TLSv1_2, ciphers=cipher), ssl.SSLError), cipher


# ------------------------------------------------------------------------------------------
# Client addresses behind a trusted proxy
# ------------------------------------------------------------------------------------------

def capture_from(stack_or_apps, forwarded_for=None):
    """An unauthenticated capture attempt: the IP-keyed limit counts it before authentication
    refuses it (401), and refuses it itself once the window is full (429)."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return stack_or_apps.post("/api/payments/capture", json={"payment_id": "x"}, headers=headers)


def windows(db, *keys):
    rows = db.execute("SELECT key, sum(count)::int FROM rate_limits WHERE key = ANY(%s) GROUP BY key", (list(keys),))
    return dict(rows.fetchall())


@pytest.fixture
def forwarded_windows(db):
    """The capture windows of this test's made-up clients are empty before and after it (a rerun
    within the minute; test_guards_ratelimit asserts that no forwarded address ever gets a key)."""
    def clear():
        db.execute("DELETE FROM rate_limits WHERE key LIKE 'capture:198.51.100.%' OR key LIKE 'capture:192.0.2.%'"
                   " OR key LIKE 'capture:2001:db8:%'")
    clear()
    yield
    clear()


def test_trusted_proxy_gives_each_forwarded_client_its_own_bucket(stack, db, forwarded_windows):
    apps = stack.other_apps(nginx_settings={"NGINX_TRUSTED_PROXIES": "127.0.0.1"}, RATE_LIMITS=TIGHT_CAPTURE)
    with apps as behind_proxy:
        assert "include trusted-proxies.conf;" in (behind_proxy.nginx.directory / "nginx.conf").read_text()
        first = [capture_from(behind_proxy, "192.0.2.1, 198.51.100.7") for _ in range(3)]
        other = capture_from(behind_proxy, "198.51.100.8")
        # IPv6: two addresses of one /64 share a bucket, another /64 has its own.
        v6_first = [capture_from(behind_proxy, "2001:db8:1:2:aaaa::1") for _ in range(2)]
        v6_same_64 = capture_from(behind_proxy, "2001:db8:1:2:bbbb::2")
        v6_other_64 = capture_from(behind_proxy, "2001:db8:1:3::1")

    assert [r.status_code for r in first] == [401, 401, 429], [r.text for r in first]
    assert_envelope(first[2], 429, "rate_limited")
    assert other.status_code == 401, "another forwarded client was limited with the first one"
    assert [r.status_code for r in v6_first] == [401, 401]
    assert_envelope(v6_same_64, 429, "rate_limited")
    assert v6_other_64.status_code == 401, v6_other_64.text
    # The rightmost untrusted hop is the client; 192.0.2.1 (its own claim) never counts.
    assert windows(db, "capture:198.51.100.7", "capture:198.51.100.8", "capture:192.0.2.1", "capture:2001:db8:1:2::/64",
                   "capture:2001:db8:1:3::/64") == {"capture:198.51.100.7": 3, "capture:198.51.100.8": 1,
                                                   "capture:2001:db8:1:2::/64": 3, "capture:2001:db8:1:3::/64": 1}
    # Audit rows keep the client's full address, not its bucket.
    audited = db.execute("SELECT ip FROM payment_audit_logs WHERE request_id = %s",
                         (request_id(v6_same_64),)).fetchone()
    assert audited == ("2001:db8:1:2:bbbb::2",), audited


def test_without_the_include_x_forwarded_for_is_ignored(stack, db, fresh_ip_windows, forwarded_windows):
    with stack.other_apps(RATE_LIMITS=TIGHT_CAPTURE) as direct:
        config = (direct.nginx.directory / "nginx.conf").read_text()
        assert "include trusted-proxies.conf;" not in config
        responses = [capture_from(direct, "198.51.100.7"), capture_from(direct, "198.51.100.8"),
                     capture_from(direct, "2001:db8:1:4::1")]
    assert [r.status_code for r in responses] == [401, 401, 429], [r.text for r in responses]
    assert windows(db, "capture:127.0.0.1") == {"capture:127.0.0.1": 3}
    assert windows(db, "capture:198.51.100.7", "capture:198.51.100.8", "capture:2001:db8:1:4::/64") == {}


# ------------------------------------------------------------------------------------------
# Webhook source addresses
# ------------------------------------------------------------------------------------------

WEBHOOKS = [("/api/payments/webhook", "platform"), ("/api/payments/webhook/connect", "connect")]
REFRESH_SCRIPT = REPO / "scripts" / "stripe-webhook-ips.py"


def signed_event(stack, endpoint):
    """A correctly signed event of a type the app stores and ignores: (event id, body, headers)."""
    event_id = f"evt_{uuid.uuid4().hex}"
    body = json.dumps({"id": event_id, "object": "event", "type": "customer.created", "created": int(time.time()),
                       "livemode": False, "data": {"object": {"id": "cus_edge", "object": "customer"}}}).encode()
    headers = {"Content-Type": "application/json", "Stripe-Signature": stack.sign_webhook(body, endpoint=endpoint)}
    return event_id, body, headers


def stored_event(db, event_id):
    return db.execute("SELECT endpoint FROM webhook_events WHERE id = %s", (event_id,)).fetchone()


def refresh_list(source, output):
    return subprocess.run([sys.executable, str(REFRESH_SCRIPT), str(source), "-o", str(output), "--date", "2026-12-01"],
                          capture_output=True, text=True, timeout=30)


def test_seed_list_is_stripes_and_excludes_loopback():
    text = (REPO / "nginx" / "stripe-webhook-ips.conf").read_text()
    assert re.search(r"^# Seed list of \d{4}-\d{2}-\d{2} ", text, re.M), "the list carries no date"
    allowed = re.findall(r"^allow (\S+);$", text, re.M)
    assert len(allowed) >= 10 and "3.18.12.63" in allowed, allowed
    assert not [a for a in allowed if a.startswith(("127.", "::1", "10.", "192.168."))], allowed
    assert text.rstrip().endswith("deny all;")


def test_webhooks_from_other_addresses_get_a_json_403(stack, db):
    with stack.other_nginx(NGINX_STRIPE_WEBHOOK_IPS="1") as guarded:
        config = (guarded.directory / "nginx.conf").read_text()
        assert config.count("include stripe-webhook-ips.conf;") == 2
        assert "127.0.0.1" not in (guarded.directory / "stripe-webhook-ips.conf").read_text()
        for path, endpoint in WEBHOOKS:
            event_id, body, headers = signed_event(stack, endpoint)
            response = call(guarded, "POST", path, data=body, headers=headers)
            assert_envelope(response, 403, "forbidden")
            assert not reached_app(stack, response), path
            assert stored_event(db, event_id) is None
        # Only the webhook locations are restricted.
        assert call(guarded, "GET", "/api/health").status_code == 200


def test_webhooks_are_accepted_from_anywhere_when_the_switch_is_off(stack, db):
    assert "include stripe-webhook-ips.conf;" not in (stack.nginx.directory / "nginx.conf").read_text()
    for path, endpoint in WEBHOOKS:
        event_id, body, headers = signed_event(stack, endpoint)
        response = stack.post(path, data=body, headers=headers)
        assert response.status_code == 200, (path, response.status_code, response.text)
        assert stored_event(db, event_id) == (endpoint,)


def test_refreshed_list_admits_its_addresses(stack, db, tmp_path):
    """scripts/stripe-webhook-ips.py turns the ips_webhooks.json format into the include; a list
    that names 127.0.0.1 (standing in for Stripe here) lets this client's webhooks through."""
    source = tmp_path / "ips_webhooks.json"
    source.write_text(json.dumps({"WEBHOOKS": ["54.187.216.72", "127.0.0.1", "3.18.12.63", "127.0.0.1"]}))
    output = tmp_path / "stripe-webhook-ips.conf"
    result = refresh_list(source, output)
    assert result.returncode == 0, result.stderr
    text = output.read_text()
    assert re.findall(r"^(allow \S+;|deny all;)$", text, re.M) == [
        "allow 3.18.12.63;", "allow 54.187.216.72;", "allow 127.0.0.1;", "deny all;"]
    assert "2026-12-01" in text and str(source) in text

    with stack.other_nginx(NGINX_STRIPE_WEBHOOK_IPS="1", NGINX_STRIPE_WEBHOOK_IPS_FILE=str(output)) as guarded:
        for path, endpoint in WEBHOOKS:
            event_id, body, headers = signed_event(stack, endpoint)
            response = call(guarded, "POST", path, data=body, headers=headers)
            assert response.status_code == 200, (path, response.status_code, response.text)
            assert stored_event(db, event_id) == (endpoint,)


@pytest.mark.parametrize("document", ['{"WEBHOOKS": []}', '{"webhooks": ["3.18.12.63"]}', '["3.18.12.63"]',
                                      '{"WEBHOOKS": ["3.18.12.63", "not-an-ip"]}', '{"WEBHOOKS": ["10.0.0.1/8"]}',
                                      "not json"])
def test_refresh_script_refuses_a_malformed_list_and_keeps_the_old_one(tmp_path, document):
    source = tmp_path / "ips_webhooks.json"
    source.write_text(document)
    output = tmp_path / "stripe-webhook-ips.conf"
    output.write_text("allow 3.18.12.63;\ndeny all;\n")
    result = refresh_list(source, output)
    assert result.returncode == 1 and result.stderr.startswith("stripe-webhook-ips: "), result
    assert output.read_text() == "allow 3.18.12.63;\ndeny all;\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([source.name, output.name]), "a temporary file was left"


# ------------------------------------------------------------------------------------------
# The benchmark's Flask peer (issue 17): a location of the bench stack only
# ------------------------------------------------------------------------------------------

def render_into(tmp_path, name, **settings):
    prefix = tmp_path / name
    env = {"PATH": "/usr/bin:/bin", "APP_SOCKETS": str(tmp_path / "app.sock"), "CERT_FILE": str(tmp_path / "tls" / "cert.pem"),
           "KEY_FILE": str(tmp_path / "tls" / "key.pem"), **settings}
    result = subprocess.run([str(REPO / "scripts" / "render-nginx.sh"), str(prefix)], env=env, capture_output=True,
                            text=True, timeout=60)
    return prefix, result


def test_the_flask_peer_location_exists_only_when_rendered_for_the_bench(stack, tmp_path):
    """`make run` and the test stacks render no /peer/ location; scripts/bench.sh's setting adds it
    behind the same listener, body limit and limit_req zone as the webhook, and nginx -t accepts it."""
    config = (stack.nginx.directory / "nginx.conf").read_text()
    assert "include bench-flask-peer.conf;" not in config and "location = /peer/" not in config
    assert not (stack.nginx.directory / "bench-flask-peer.conf").exists()
    subprocess.run([str(REPO / "scripts" / "make-cert.sh"), str(tmp_path / "tls")], check=True, capture_output=True)
    prefix, result = render_into(tmp_path, "bench", NGINX_BENCH_PEER_FLASK=str(tmp_path / "peer.sock"))
    assert result.returncode == 0, result.stderr
    assert "include bench-flask-peer.conf;" in (prefix / "nginx.conf").read_text()
    location = (prefix / "bench-flask-peer.conf").read_text()
    assert "location = /peer/flask/api/payments/webhook {" in location
    assert f"proxy_pass http://unix:{tmp_path / 'peer.sock'}:/api/payments/webhook;" in location
    assert "limit_req zone=webhook " in location and "client_max_body_size 1m;" in location
    checked = subprocess.run([NGINX, "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                              "-e", str(prefix / "logs" / "error.log")], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    # Rendered again into the same prefix without the setting: the location is gone.
    prefix, result = render_into(tmp_path, "bench")
    assert result.returncode == 0 and not (prefix / "bench-flask-peer.conf").exists()
    assert "include bench-flask-peer.conf;" not in (prefix / "nginx.conf").read_text()


@pytest.mark.parametrize("address", ["peer.sock", "/tmp/a b.sock", "/tmp/x;include /etc/passwd", "localhost:8000"])
def test_render_refuses_a_bad_flask_peer_address(tmp_path, address):
    _, result = render_into(tmp_path, "n", NGINX_BENCH_PEER_FLASK=address)
    assert result.returncode != 0 and "NGINX_BENCH_PEER_FLASK" in result.stderr
