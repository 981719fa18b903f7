"""Issue 13, the edge: what nginx lets through and what it adds, proved through nginx
instances rendered from the project's template with the switches of scripts/render-nginx.sh
(each test renders its own, in front of the session's app).

- /api/_diag/ is denied (a JSON 404) unless the config is rendered with
  NGINX_ALLOW_DIAGNOSTICS=1, even when the app itself has DIAGNOSTICS_ENABLED=1."""

import pytest
import requests

from harness import rawhttp
from harness.assertions import assert_envelope, request_id


def reached_app(stack, response):
    """True when the app logged the request, i.e. nginx passed it on."""
    try:
        stack.app.request_log(request_id(response), timeout=2)
        return True
    except TimeoutError:
        return False


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
    from harness.paths import SCRIPTS
    script = (SCRIPTS / "run.sh").read_text()
    assert "NGINX_ALLOW_DIAGNOSTICS=0 " in script and "NGINX_ALLOW_DIAGNOSTICS=1" not in script
