"""The project's nginx config: TLS, redirect, security headers, body limits per location,
rate limits, loopback-only metrics and JSON envelopes for every error nginx produces."""

import json
import re

import pytest
import requests

from harness import rawhttp
from harness.assertions import assert_envelope, assert_security_headers, reached_app, request_id

NGINX_ERROR_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                     413: "payload_too_large", 429: "rate_limited", 500: "internal_error",
                     502: "bad_gateway", 503: "service_unavailable", 504: "gateway_timeout"}


def test_rendered_config_passes_nginx_t(stack):
    result = stack.nginx.check_config()
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_every_nginx_error_status_has_a_json_envelope_page(stack):
    """500 and 503 cannot be provoked from outside; this proves their pages (and all others)
    are wired: each status maps to a location returning that status and a valid envelope."""
    config = (stack.nginx.directory / "error-pages.conf").read_text()
    for status, code in NGINX_ERROR_CODES.items():
        mapped = re.search(rf"^error_page [\d ]*\b{status}\b[\d ]* (@\w+);", config, re.M)
        assert mapped, f"no error_page for {status}"
        block = re.search(rf"location {mapped.group(1)} {{(.*?)\n}}", config, re.S).group(1)
        body = re.search(rf"return {status} '(.*)';", block).group(1)
        envelope = json.loads(body.replace("$request_id", "abc"))
        assert envelope == {"error": {"code": code, "message": envelope["error"]["message"], "request_id": "abc"}}
        assert "default_type application/json;" in block and "include nginx-response-headers.conf;" in block
    # The app's envelopes pass through untouched everywhere but the onboarding redirects.
    server_config = (stack.nginx.directory / "nginx.conf").read_text()
    assert "fastcgi_intercept_errors off;" in server_config
    assert server_config.count("fastcgi_intercept_errors on;") == 1


def test_path_outside_api_is_nginx_404(stack):
    response = stack.get("/no-such-page")
    assert_envelope(response, 404, "not_found")
    assert not reached_app(stack, response)


def test_static_folder_is_served_at_root(stack):
    response = stack.get("/")
    assert response.status_code == 200
    assert "text/html" in response.headers["Content-Type"]
    request_id(response)
    assert_security_headers(response)


def test_other_methods_on_static_files_are_nginx_405(stack):
    for path in ("/", "/index.html"):
        response = stack.post(path, data=b"x")
        assert_envelope(response, 405, "method_not_allowed")
        assert response.headers["Allow"] == "GET, HEAD"


def test_body_over_the_api_limit_is_nginx_413(stack):
    response = stack.post("/api/_diag/echo", data=b"x" * (64 * 1024 + 1),
                          headers={"Content-Type": "text/plain"})
    assert_envelope(response, 413, "payload_too_large")
    assert not reached_app(stack, response)


@pytest.mark.parametrize("path", ["/api/payments/webhook", "/api/payments/webhook/connect"])
def test_webhook_locations_take_bodies_up_to_1m(stack, path):
    large = stack.post(path, data=b"{" + b" " * (200 * 1024) + b"}", headers={"Content-Type": "application/json"})
    assert reached_app(stack, large), (large.status_code, large.text)
    too_large = stack.post(path, data=b"x" * (1024 * 1024 + 1), headers={"Content-Type": "application/json"})
    assert_envelope(too_large, 413, "payload_too_large")
    assert not reached_app(stack, too_large)


def test_malformed_request_is_nginx_400(stack):
    response = rawhttp.request(stack.nginx.https_port, "GET", "/api/health", host="bad host")
    assert_envelope(response, 400, "bad_request")


def test_plain_http_on_the_tls_port_is_400_envelope(stack):
    response = rawhttp.request(stack.nginx.https_port, "GET", "/api/health", tls=False)
    assert_envelope(response, 400, "bad_request")


def test_http_redirects_to_https(stack):
    response = stack.get("/api/health?probe=1", scheme="http")
    assert response.status_code == 308
    assert response.headers["Location"] == stack.url("/api/health?probe=1")
    request_id(response)
    assert_security_headers(response)
    followed = stack.get("/api/health?probe=1", scheme="http", allow_redirects=True)
    assert followed.status_code == 200 and followed.json() == {"status": "ok"}


def test_metrics_only_from_loopback_addresses_127_0_0_1_and_ipv6(stack):
    allowed = rawhttp.request(stack.nginx.https_port, "GET", "/metrics")
    assert allowed.status_code == 200
    denied = rawhttp.request(stack.nginx.https_port, "GET", "/metrics", source="127.0.0.2")
    assert_envelope(denied, 403, "forbidden")
    assert rawhttp.request(stack.nginx.https_port, "GET", "/api/health", source="127.0.0.2").status_code == 200


def test_rate_limit_is_a_429_envelope(stack):
    with stack.other_nginx(API_RATE="1r/s", API_BURST=1) as strict:
        responses = [requests.get(strict.url("/api/health"), verify=False, timeout=10) for _ in range(5)]
    assert responses[0].status_code == 200
    limited = [r for r in responses if r.status_code == 429]
    assert len(limited) >= 3, [r.status_code for r in responses]
    for response in limited:
        assert_envelope(response, 429, "rate_limited")
        assert response.headers["Retry-After"] == "1"
        assert not reached_app(stack, response)


def test_slow_app_is_a_504_envelope_and_the_app_survives(stack):
    with stack.other_nginx(FASTCGI_READ_TIMEOUT="1s") as impatient:
        response = requests.get(impatient.url("/api/_diag/sleep?ms=2500"), verify=False, timeout=10)
    assert_envelope(response, 504, "gateway_timeout")
    # The app finishes the request, writes to a connection nginx has closed, and lives on.
    assert stack.app.request_log(request_id(response), timeout=10)
    assert stack.app.is_running()
    assert stack.get("/api/health").status_code == 200
