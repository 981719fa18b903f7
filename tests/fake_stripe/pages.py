"""The HTML pages Stripe hosts: the account link's onboarding page (`/setup/e/{acct}/{token}`)
and the Express dashboard a login link opens (`/express/{acct}/{token}`)."""
from __future__ import annotations

import html
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from . import account_links

if TYPE_CHECKING:
    from .handler import RequestHandler

HTML = "text/html; charset=utf-8"

ONBOARDING_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fake Stripe Express onboarding</title>
<meta name="robots" content="noindex"></head>
<body>
<h1>Set up payouts</h1>
<p>Fake Stripe hosted onboarding for account <code id="account">{acct}</code> {email}.</p>
<form id="onboarding" method="post" action="{action}">
  <input type="hidden" name="session" value="{session}">
  <button type="submit" name="action" value="complete" id="complete">Complete</button>
  <button type="submit" name="action" value="later" id="later">Save for later</button>
</form>
</body></html>
"""


def onboarding(http: "RequestHandler", method: str, path: str) -> None:
    fake = http.server_fake
    core = fake.core
    parts = [p for p in path.split("/") if p]  # setup e acct token [complete]
    if len(parts) < 4:
        http.send_body(404, b"Not Found", {}, content_type="text/plain")
        return
    acct, token = parts[2], parts[3]
    if method == "GET" and len(parts) == 4:
        with core.lock:
            kind, session, link = account_links.open_link(core, token)
        fake.save_state()
        if kind == "missing" or link.get("account") not in (None, acct):
            http.send_body(404, b"<h1>This link is invalid.</h1>", {}, content_type=HTML)
            return
        if kind == "redirect":
            http.redirect(session or "/")
            return
        with core.lock:
            a = core.objects[acct]
            email = a.get("email") or ""
        page = ONBOARDING_PAGE.format(acct=html.escape(acct), email=html.escape(email),
                                      action=html.escape(f"/setup/e/{acct}/{token}/complete"),
                                      session=html.escape(session or ""))
        http.send_body(200, page.encode("utf-8"), {"Cache-Control": "no-store"}, content_type=HTML)
        return
    if method == "POST" and len(parts) == 5 and parts[4] == "complete":
        raw = http.read_body().decode("utf-8", "replace")
        form = dict(parse_qsl(raw))
        with core.lock:
            kind, url = account_links.submit(core, token, form.get("session", ""),
                                             form.get("action", "complete"))
        fake.save_state()
        if kind == "missing":
            http.send_body(404, b"<h1>This link is invalid.</h1>", {}, content_type=HTML)
            return
        http.redirect(url or "/", 303 if kind == "done" else 302)
        return
    http.send_body(405, b"Method Not Allowed", {}, content_type="text/plain")


def express_dashboard(http: "RequestHandler", method: str, path: str) -> None:
    core = http.server_fake.core
    parts = [p for p in path.split("/") if p]  # express acct token
    if len(parts) != 3:
        http.send_body(404, b"Not Found", {}, content_type="text/plain")
        return
    with core.lock:
        link = account_links.login_link(core, parts[1], parts[2])
    if not link:
        http.send_body(404, b"<h1>This login link is invalid or expired.</h1>", {},
                       content_type=HTML)
        return
    body = (f"<!doctype html><title>Express dashboard</title><h1>Express dashboard</h1>"
            f"<p>Account {html.escape(parts[1])} (fake Stripe)</p>").encode("utf-8")
    http.send_body(200, body, {}, content_type=HTML)
