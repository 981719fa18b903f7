"""What every response of the service must look like (SPEC §7)."""

SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

# The Content-Security-Policy of API responses (the app's and nginx's own JSON), and of the
# static HTML pages under nginx/static/ (scripts and styles from files of the same origin).
API_CSP = "default-src 'none'; frame-ancestors 'none'"
STATIC_PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'; "
                   "form-action 'none'; frame-ancestors 'none'")


def single_header(response, name):
    """The value of a header that must appear exactly once."""
    values = response.raw.headers.getlist(name)
    assert len(values) == 1, f"expected one {name} header, got {values}"
    return values[0]


def request_id(response):
    value = single_header(response, "X-Request-Id")
    assert value, "empty X-Request-Id"
    return value


def assert_security_headers(response):
    for name, value in SECURITY_HEADERS.items():
        assert single_header(response, name) == value


def assert_envelope(response, status, code):
    """`response` is the JSON error envelope with `status` and `code`, carrying the same
    request id as its X-Request-Id header, plus the security headers; returns the error."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["code"] == code, body
    assert isinstance(error["message"], str) and error["message"], body
    assert error["request_id"] == request_id(response), (body, response.headers)
    assert_security_headers(response)
    return error


def reached_app(stack, response):
    """True when the app logged the request, i.e. nginx passed it on."""
    try:
        stack.app.request_log(request_id(response), timeout=2)
        return True
    except TimeoutError:
        return False
