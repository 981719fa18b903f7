"""Issue 19, item 2 — what the pages may run, and what the API gives them:

- the buyer page, the seller page and the admin console are served with a Content-Security-
  Policy that allows no inline code ('unsafe-inline', 'unsafe-eval'), scripts of this origin
  only, and no third-party origin — except the fake Stripe's origin (connect-src) on the buyer
  page as the harness renders it, or Stripe's own origins when rendered with PAGES_STRIPE_JS=1;
- no page in nginx/static has an inline <script> body, an inline event handler attribute, a
  javascript: URL or an inline style, and every script it loads is a file of this origin."""

import re
import subprocess
from html.parser import HTMLParser

import pytest

from harness.assertions import assert_envelope
from harness.paths import REPO

STATIC = REPO / "nginx" / "static"
PAGES = ["/buyer/", "/seller/", "/admin/"]


def policy(response):
    """The one Content-Security-Policy header, as {directive: [sources]}."""
    values = [v for k, v in response.headers.items() if k.lower() == "content-security-policy"]
    assert len(values) == 1, response.headers
    directives = {}
    for part in values[0].split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return values[0], directives


def assert_strict(header, directives):
    assert "unsafe-inline" not in header and "unsafe-eval" not in header and "unsafe-hashes" not in header, header
    assert "data:" not in header and "blob:" not in header and "*" not in header.replace("https://*.", ""), header
    assert directives["default-src"] == ["'none'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["base-uri"] == ["'none'"]
    assert directives["form-action"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_are_served_with_a_policy_without_inline_code(stack, path):
    response = stack.get(path)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html"), path
    header, directives = policy(response)
    assert_strict(header, directives)
    assert directives["script-src"] == ["'self'"], header
    assert directives["img-src"] == ["'self'"], header
    if path == "/buyer/":
        # The harness renders the config as `make run` does with the fake: its origin, for the
        # card confirmation, and nothing else.
        assert directives["connect-src"] == ["'self'", stack.stripe.url], header
        assert directives["frame-src"] == ["'none'"], header
    else:
        assert directives["connect-src"] == ["'self'"], header
    for name in ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "X-Request-Id"):
        assert name in response.headers, (path, name)
    # The pages' scripts and style sheet are served.
    for asset in re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css))"', response.text):
        assert stack.get(asset).status_code == 200, asset


def test_pages_refuse_other_methods(stack):
    for path in PAGES:
        assert_envelope(stack.post(path, data=b"x"), 405, "method_not_allowed")


def test_buyer_page_allows_stripe_only_when_rendered_for_stripe(stack):
    with stack.other_nginx(PAGES_STRIPE_JS="1") as stripe_rendered:
        import requests
        response = requests.get(stripe_rendered.url("/buyer/"), verify=False, timeout=30)
        header, directives = policy(response)
        assert_strict(header, directives)
        assert directives["script-src"] == ["'self'", "https://js.stripe.com", "https://*.js.stripe.com"], header
        assert directives["connect-src"] == ["'self'", "https://api.stripe.com"], header
        assert directives["frame-src"] == ["https://js.stripe.com", "https://*.js.stripe.com", "https://hooks.stripe.com"]
        assert stack.stripe.url not in header
        # The other pages never get Stripe's origins.
        admin_header, admin = policy(requests.get(stripe_rendered.url("/admin/"), verify=False, timeout=30))
        assert "stripe" not in admin_header and admin["connect-src"] == ["'self'"]
    with stack.other_nginx() as plain:
        import requests
        header, directives = policy(requests.get(plain.url("/buyer/"), verify=False, timeout=30))
        assert directives["connect-src"] == ["'self'"] and directives["script-src"] == ["'self'"], header


@pytest.mark.parametrize("settings,complaint", [
    ({"PAGES_STRIPE_JS": "1", "PAGES_FAKE_STRIPE_ORIGIN": "https://127.0.0.1:12111"}, "exclude each other"),
    ({"PAGES_FAKE_STRIPE_ORIGIN": "https://127.0.0.1:12111/v1"}, "must be an origin"),
    ({"PAGES_FAKE_STRIPE_ORIGIN": "https://evil.test; script-src *"}, "must be an origin"),
    ({"PAGES_STRIPE_JS": "yes"}, "must be 1 or 0"),
])
def test_render_refuses_bad_page_settings(tmp_path, settings, complaint):
    env = {"PATH": "/usr/bin:/bin", "APP_SOCKETS": str(tmp_path / "app.sock"), "CERT_FILE": "/nonexistent/cert.pem",
           "KEY_FILE": "/nonexistent/key.pem", **settings}
    result = subprocess.run([str(REPO / "scripts" / "render-nginx.sh"), str(tmp_path / "prefix")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and complaint in result.stderr, (result.returncode, result.stderr)


class PageAudit(HTMLParser):
    """Collects what a strict policy would refuse (or what would need 'unsafe-inline')."""

    def __init__(self):
        super().__init__()
        self.problems, self.scripts, self.in_script = [], [], False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name.lower().startswith("on"):
                self.problems.append(f"inline event handler {name} on <{tag}>")
            if name.lower() == "style":
                self.problems.append(f"inline style on <{tag}>")
            if value and value.strip().lower().startswith("javascript:"):
                self.problems.append(f"javascript: URL in {name} of <{tag}>")
        if tag == "style":
            self.problems.append("<style> element")
        if tag == "script":
            src = dict(attrs).get("src")
            if not src:
                self.problems.append("<script> without src")
            elif not src.startswith("/") or src.startswith("//"):
                self.problems.append(f"script from another origin: {src}")
            else:
                self.scripts.append(src)
            self.in_script = True

    def handle_endtag(self, tag):
        if tag == "script":
            self.in_script = False

    def handle_data(self, data):
        if self.in_script and data.strip():
            self.problems.append(f"inline script body: {data.strip()[:40]!r}")


HTML_FILES = sorted(STATIC.rglob("*.html"))


@pytest.mark.parametrize("page", HTML_FILES, ids=lambda p: str(p.relative_to(STATIC)))
def test_no_page_has_inline_code(page):
    audit = PageAudit()
    audit.feed(page.read_text())
    assert not audit.problems, (page, audit.problems)
    for src in audit.scripts:
        assert (STATIC / src.lstrip("/")).is_file(), (page, src)


def test_the_audit_catches_inline_code():
    """The control: the checker above finds each kind of inline code it looks for."""
    audit = PageAudit()
    audit.feed('<body onload="x()"><a href="javascript:x()" style="color:red">a</a><script>alert(1)</script>'
               '<script src="https://cdn.example/x.js"></script><style>p{}</style></body>')
    assert len(audit.problems) == 7, audit.problems  # handler, URL, style, no src, body, origin, <style>


def test_pages_exist_and_load_their_scripts():
    for page in ("buyer", "seller", "admin"):
        audit = PageAudit()
        audit.feed((STATIC / page / "index.html").read_text())
        assert audit.scripts[0] == "/common.js" and audit.scripts[-1] == f"/{page}/{page}.js", audit.scripts
    assert "sessionStorage" in (STATIC / "common.js").read_text()
    for script in STATIC.rglob("*.js"):
        assert not re.search(r"localStorage\.|document\.cookie", script.read_text()), script
    for script in STATIC.rglob("*.js"):
        text = script.read_text()
        assert "innerHTML" not in text and "eval(" not in text and "document.write" not in text, script
