"""The request pipeline as a client sees it through nginx over HTTPS: request ids, exact
bodies, the app's error envelopes and its per-request log line."""

import hashlib
import json
import os
import re

import pytest

from harness.assertions import assert_envelope, assert_security_headers, request_id

REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")  # nginx's $request_id


def test_health_answers_ok_with_a_request_id(stack):
    response = stack.get("/api/health")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"status": "ok"}
    assert REQUEST_ID.match(request_id(response))
    assert_security_headers(response)


def test_ready_reports_ready(stack):
    response = stack.get("/api/ready")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"
    request_id(response)


def test_every_request_gets_its_own_id_and_clients_cannot_choose_it(stack):
    spoofed = {"X-Request-Id": "client-chosen", "Request-Id": "client-chosen"}
    ids = {request_id(stack.get("/api/health", headers=spoofed)) for _ in range(5)}
    assert len(ids) == 5
    assert all(REQUEST_ID.match(i) for i in ids), ids


BODIES = {
    "crlf": b"line one\r\nline two\r\n\r\n",
    "nul": b"before\x00after\x00\x00",
    "invalid_utf8": b"\xff\xfe\xfd \xc3\x28 \xa0\xa1 \xed\xa0\x80",
    "bom": b"\xef\xbb\xbf{\"with\":\"bom\"}",
    "binary_30k": bytes(range(256)) * 117 + b"\r\n\x00",
    "empty": b"",
}


@pytest.mark.parametrize("name", BODIES)
@pytest.mark.parametrize("content_type", ["application/octet-stream", "text/plain; charset=utf-8"])
def test_bodies_reach_the_app_byte_exact(stack, name, content_type):
    body = BODIES[name]
    response = stack.post("/api/_diag/echo", data=body, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    assert response.json() == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_a_chunked_body_arrives_whole(stack):
    chunks = [b"\r\n", b"\x00" * 100, os.urandom(5000), b"\xef\xbb\xbf", b"end"]
    response = stack.post("/api/_diag/echo", data=iter(chunks),
                          headers={"Content-Type": "application/octet-stream"})
    body = b"".join(chunks)
    assert response.status_code == 200, response.text
    assert response.json() == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_a_json_route_receives_the_parsed_body(stack):
    document = {"text": "ünïcødé ✓", "list": [1, 2.5, None, True], "nested": {"a": {"b": []}}}
    response = stack.post("/api/_diag/json", data=json.dumps(document).encode(),
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json() == {"received": document}


def test_unknown_api_route_is_the_apps_404(stack):
    response = stack.get("/api/no-such-route")
    assert_envelope(response, 404, "not_found")
    assert stack.app.request_log(request_id(response))["status"] == 404


def test_wrong_method_is_405_with_allow(stack):
    response = stack.request("DELETE", "/api/health")
    assert_envelope(response, 405, "method_not_allowed")
    assert "GET" in [m.strip() for m in response.headers["Allow"].split(",")]


def test_non_json_body_on_a_json_route_is_415(stack):
    response = stack.post("/api/_diag/json", data=b'{"a":1}', headers={"Content-Type": "text/plain"})
    assert_envelope(response, 415, "unsupported_media_type")


def test_malformed_json_is_400_invalid_json(stack):
    response = stack.post("/api/_diag/json", data=b'{"a":', headers={"Content-Type": "application/json"})
    assert_envelope(response, 400, "invalid_json")


def test_body_over_the_apps_limit_is_the_apps_413(stack):
    body = b"x" * (int(stack.app.env["MAX_BODY_BYTES"]) + 1)  # still under nginx's 64k
    response = stack.post("/api/_diag/echo", data=body, headers={"Content-Type": "text/plain"})
    assert_envelope(response, 413, "payload_too_large")
    assert stack.app.request_log(request_id(response))["status"] == 413


def test_metrics_are_prometheus_text(stack):
    stack.get("/api/health")
    response = stack.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = [line for line in response.text.splitlines() if line and not line.startswith("#")]
    assert samples, response.text
    assert all(re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+$", line) for line in samples), samples
    request_id(response)


def test_one_log_line_per_request_without_secrets_or_body(stack):
    token = "Bearer sEcReT-tOkEn-6f1e2d"
    marker = b"bOdY-mArKeR-91c3"
    response = stack.post("/api/_diag/echo", data=marker,
                          headers={"Authorization": token, "Content-Type": "text/plain"})
    assert response.status_code == 200
    rid = request_id(response)
    record = stack.app.request_log(rid)
    assert record["method"] == "POST"
    assert record["status"] == 200
    assert "/api/_diag/echo" in record["route"]
    duration = [value for key, value in record.items() if key.startswith("duration")]
    assert len(duration) == 1 and isinstance(duration[0], (int, float)) and duration[0] >= 0, record
    assert len([r for r in stack.app.log_records() if r.get("request_id") == rid and "status" in r]) == 1
    log = stack.app.log_text()
    assert "sEcReT-tOkEn" not in log
    assert marker.decode() not in log
