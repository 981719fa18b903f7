"""Issue 19, item 3 — notifications reach people. `payments sweep`'s `deliver_notifications`
task delivers every notification as a signed webhook to the marketplace application and as an
email over SMTP, each channel on when configured. Here an aiosmtpd sink on loopback receives the
emails and a small HTTP receiver verifies each webhook's `Marketplace-Signature` the way
docs/notifications.md tells a marketplace to; both record what they accepted, so "exactly once"
is counted, across a receiver outage, a dead delivery retried by an admin, and two sweepers at
once."""

import email
import email.policy
import hashlib
import hmac
import json
import re
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from harness.api import make_profile
from harness.paths import BINARY, REPO
from harness.processes import free_port
from test_metrics import scrape, value
from test_purchase_flow import authorised, capture, settle_webhooks, wait_payment_status

SECRET = "whsec_marketplace_test_0123456789"
TOLERANCE = 300


# --- the receivers --------------------------------------------------------------------------------

def verify(secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    """docs/notifications.md's verification, as a marketplace would write it."""
    items = [part.split("=", 1) for part in (header or "").split(",") if "=" in part]
    timestamps = [v for k, v in items if k.strip() == "t"]
    signatures = [v for k, v in items if k.strip() == "v1"]
    if len(timestamps) != 1 or not timestamps[0].isdigit() or not signatures:
        return False
    expected = hmac.new(secret.encode(), timestamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        return False
    return abs((now or time.time()) - int(timestamps[0])) <= TOLERANCE


class Receiver:
    """The marketplace application's webhook endpoint: verifies, dedupes on the event id, and
    answers 2xx — or 503 while `down`."""

    def __init__(self, secret=SECRET, delay=0.0):
        self.secret, self.delay, self.down = secret, delay, False
        self.requests, self.accepted, self.refused = [], {}, []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.requests.append((dict(self.headers), body))
                    if receiver.down:
                        return self.answer(503)
                    if not verify(receiver.secret, self.headers.get("Marketplace-Signature"), body):
                        receiver.refused.append(body)
                        return self.answer(400)
                    event = json.loads(body)
                    assert self.headers["Marketplace-Event-Id"] == event["id"]
                    receiver.accepted.setdefault(event["id"], []).append(event)
                self.answer(200)

            def answer(self, status):
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/payments"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, ids):
        """{notification id: how many times it was accepted} for `ids`."""
        with self.lock:
            return {i: len(self.accepted.get(i, [])) for i in ids}

    def attempts(self, notification_id):
        with self.lock:
            return sum(1 for _, body in self.requests if json.loads(body)["id"] == notification_id)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Sink:
    """An SMTP server on loopback that keeps every message it accepted."""

    def __init__(self):
        self.messages = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                sink.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=free_port())
        self.controller.start()
        self.url = f"smtp://127.0.0.1:{self.controller.port}"

    def mails(self, notification_id):
        return [(to, m) for _, to, m in self.messages if m["Message-ID"].startswith(f"<{notification_id}.")]

    def close(self):
        self.controller.stop()


@pytest.fixture(autouse=True)
def earlier_notifications_out_of_the_way(db):
    """The suite shares one database: the notifications other modules made (thousands, none ever
    delivered, as no channel was configured) would queue before this module's own and fill the
    sweep's batch. They are marked skipped on both channels first."""
    db.execute("INSERT INTO notification_deliveries (notification_id, channel, state)"
               " SELECT n.id, c, 'skipped' FROM notifications n, unnest(ARRAY['webhook', 'email']) AS c"
               " ON CONFLICT (notification_id, channel) DO NOTHING")


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def sink():
    running = Sink()
    yield running
    running.close()


# --- helpers --------------------------------------------------------------------------------------

def settings(receiver=None, sink=None, **extra):
    env = {}
    if receiver:
        env |= {"MARKETPLACE_WEBHOOK_URL": receiver.url, "MARKETPLACE_WEBHOOK_SECRET": SECRET}
    if sink:
        env |= {"SMTP_URL": sink.url, "SMTP_FROM": "Marketplace <payments@marketplace.test>"}
    return env | {k: str(v) for k, v in extra.items()}


def sweep(stack, expect_status=0, **env):
    result = subprocess.run([str(BINARY), "sweep"], env={**stack.app.env, **env}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == expect_status, (result.returncode, result.stdout, result.stderr)
    return result


def dispatch(stack, **env):
    """One sweep; returns how many notifications it delivered."""
    result = sweep(stack, **env)
    line = next(line for line in result.stdout.splitlines() if line.startswith("sweep: deliver_notifications: "))
    return int(line.rsplit(": ", 1)[1])


def notifications_of(db, *profiles):
    rows = db.execute("SELECT id::text, profile_id::text, kind FROM notifications WHERE profile_id = ANY(%s::uuid[])"
                      " ORDER BY created_at", ([p["id"] for p in profiles],)).fetchall()
    return [{"id": r[0], "profile_id": r[1], "kind": r[2]} for r in rows]


def deliveries(db, notification_id):
    rows = db.execute("SELECT channel, state, attempts, last_error, delivered_at, next_attempt_at"
                      " FROM notification_deliveries WHERE notification_id = %s", (notification_id,)).fetchall()
    return {r[0]: {"state": r[1], "attempts": r[2], "last_error": r[3], "delivered_at": r[4], "next": r[5]}
            for r in rows}


def email_of(db, profile_id):
    return db.execute("SELECT email FROM profiles WHERE id = %s", (profile_id,)).fetchone()[0]


def notify(db, profile, kind="payment_succeeded", **payload):
    """A notification as the app writes it (Notifier), for tests that need many."""
    return db.execute("INSERT INTO notifications (profile_id, kind, payload) VALUES (%s, %s, %s) RETURNING id::text",
                      (profile["id"], kind, json.dumps(payload or {"payment_id": str(uuid.uuid4())}))).fetchone()[0]


def make_due(db, ids):
    """Time passes: the backoff of these deliveries is over."""
    db.execute("UPDATE notification_deliveries SET next_attempt_at = now() WHERE state = 'pending'"
               " AND notification_id = ANY(%s::uuid[])", (ids,))


def purchase(stack, db):
    """A purchase through the fake: authorised, captured by the buyer, webhooks settled."""
    seller, buyer, listing, body = authorised(stack, db, price=2500)
    captured = capture(stack, buyer, body["payment_id"])
    assert captured.status_code == 200, captured.text
    wait_payment_status(db, body["payment_id"], "succeeded")
    settle_webhooks(stack)
    return seller, buyer, body["payment_id"]


# --- the tests ------------------------------------------------------------------------------------

def test_a_purchase_flow_reaches_buyer_and_seller_once_by_email_and_by_signed_webhook(stack, db, receiver, sink):
    seller, buyer, payment_id = purchase(stack, db)
    sent = notifications_of(db, buyer, seller)
    assert sorted(n["kind"] for n in sent) == ["payment_authorized", "payment_succeeded", "payment_succeeded"], sent

    assert dispatch(stack, **settings(receiver, sink)) >= 2 * len(sent)
    dispatch(stack, **settings(receiver, sink))  # a second run delivers nothing again

    for notification in sent:
        mails = sink.mails(notification["id"])
        assert len(mails) == 1, (notification, mails)
        to, message = mails[0]
        assert to == [email_of(db, notification["profile_id"])]
        assert message["From"] == "Marketplace <payments@marketplace.test>"
        assert message["Content-Type"].startswith("text/plain")
        body = message.get_content()
        assert payment_id in body and "(not given)" not in message["Subject"], (message["Subject"], body)
        assert "{" not in message["Subject"] and "{" not in body
    assert receiver.events([n["id"] for n in sent]) == {n["id"]: 1 for n in sent}
    for notification in sent:
        (event,) = receiver.accepted[notification["id"]]
        assert event["type"] == notification["kind"] and event["object"] == "event"
        assert event["data"]["profile_id"] == notification["profile_id"]
        assert event["data"]["payload"]["payment_id"] == payment_id
        assert {c: d["state"] for c, d in deliveries(db, notification["id"]).items()} == \
            {"webhook": "delivered", "email": "delivered"}
        assert db.execute("SELECT delivered_at FROM notifications WHERE id = %s",
                          (notification["id"],)).fetchone()[0] is not None
    # The buyer's own list says when each notification reached them.
    shown = {n["id"]: n for n in stack.get("/api/notifications", headers=buyer["headers"]).json()["data"]}
    assert all(shown[n["id"]]["delivered_at"] for n in sent if n["profile_id"] == buyer["id"]), shown
    # A signature made with another secret does not verify.
    headers, body = next((h, b) for h, b in receiver.requests if json.loads(b)["id"] == sent[0]["id"])
    assert verify(SECRET, headers["Marketplace-Signature"], body)
    assert not verify("whsec_someone_else_000000000000", headers["Marketplace-Signature"], body)
    assert not verify(SECRET, headers["Marketplace-Signature"], body + b" ")


def test_the_dispatcher_retries_across_a_receiver_outage_and_each_event_arrives_once(stack, db, receiver, sink):
    seller, buyer, payment_id = purchase(stack, db)
    sent = [n["id"] for n in notifications_of(db, buyer, seller)]
    receiver.down = True
    dispatch(stack, **settings(receiver, sink))
    for notification in sent:
        state = deliveries(db, notification)
        assert state["webhook"]["state"] == "pending" and state["webhook"]["attempts"] == 1, state
        assert state["webhook"]["last_error"] == "the receiver answered HTTP 503"
        assert state["email"]["state"] == "delivered"  # the channels are independent
    assert receiver.events(sent) == {n: 0 for n in sent}

    dispatch(stack, **settings(receiver, sink))  # within the backoff (30 s by default): no attempt
    assert {n: deliveries(db, n)["webhook"]["attempts"] for n in sent} == {n: 1 for n in sent}

    make_due(db, sent)
    dispatch(stack, **settings(receiver, sink))  # still down: a second attempt each, and a longer backoff
    for notification in sent:
        state = deliveries(db, notification)["webhook"]
        assert (state["state"], state["attempts"]) == ("pending", 2)
        assert receiver.attempts(notification) == 2

    receiver.down = False
    make_due(db, sent)
    dispatch(stack, **settings(receiver, sink))
    dispatch(stack, **settings(receiver, sink))
    assert receiver.events(sent) == {n: 1 for n in sent}
    assert all(len(sink.mails(n)) == 1 for n in sent)
    for notification in sent:
        state = deliveries(db, notification)["webhook"]
        assert (state["state"], state["attempts"], state["last_error"]) == ("delivered", 3, None)


def test_a_delivery_that_keeps_failing_is_dead_shown_to_admins_in_metrics_and_can_be_retried(stack, db, receiver):
    buyer = make_profile(db, "buyer")
    admin = make_profile(db, "admin")
    dead = notify(db, buyer, "refund_issued", payment_id=str(uuid.uuid4()), amount_cents=1250)
    receiver.down = True
    for _ in range(3):
        dispatch(stack, **settings(receiver, NOTIFY_MAX_ATTEMPTS=3))
        make_due(db, [dead])
    state = deliveries(db, dead)["webhook"]
    assert (state["state"], state["attempts"], state["next"]) == ("dead", 3, None), state
    assert receiver.attempts(dead) == 3
    dispatch(stack, **settings(receiver, NOTIFY_MAX_ATTEMPTS=3))  # dead stays dead
    assert receiver.attempts(dead) == 3

    listed = stack.get("/api/admin/notifications?state=dead&channel=webhook&limit=100", headers=admin["headers"])
    assert listed.status_code == 200, listed.text
    (row,) = [d for d in listed.json()["data"] if d["notification_id"] == dead]
    assert (row["channel"], row["state"], row["attempts"], row["kind"]) == ("webhook", "dead", 3, "refund_issued")
    assert row["last_error"] == "the receiver answered HTTP 503" and row["profile_id"] == buyer["id"]
    assert stack.get("/api/admin/notifications?state=dead", headers=buyer["headers"]).status_code == 403

    samples, types = scrape(stack)
    assert types["payments_notification_deliveries"] == "counter"
    assert value(samples, "payments_notification_deliveries_total", channel="webhook", outcome="dead") >= 1
    assert value(samples, "payments_notification_deliveries_total", channel="webhook", outcome="failed") >= 3
    assert value(samples, "payments_notifications_dead", channel="webhook") >= 1
    assert ("payments_notifications_pending", frozenset({("channel", "email")})) in samples

    receiver.down = False
    retried = stack.post(f"/api/admin/notifications/{row['id']}/retry", json={}, headers=admin["headers"])
    assert retried.status_code == 200, retried.text
    assert (retried.json()["state"], retried.json()["attempts"]) == ("pending", 0)
    audit = db.execute("SELECT success, actor_profile_id::text FROM payment_audit_logs"
                       " WHERE operation = 'notification_delivery.retry' AND entity_id = %s", (str(row["id"]),)).fetchall()
    assert audit == [(True, admin["id"])]
    again = stack.post(f"/api/admin/notifications/{row['id']}/retry", json={}, headers=admin["headers"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "delivery_not_dead", again.text
    dispatch(stack, **settings(receiver))
    assert receiver.events([dead]) == {dead: 1}
    assert deliveries(db, dead)["webhook"]["state"] == "delivered"
    after, _ = scrape(stack)
    assert value(after, "payments_notifications_dead", channel="webhook") == \
        value(samples, "payments_notifications_dead", channel="webhook") - 1


def test_a_receiver_with_another_secret_refuses_every_delivery(stack, db):
    impostor = Receiver(secret="whsec_not_the_one_we_sign_with_00")
    try:
        buyer = make_profile(db, "buyer")
        notification = notify(db, buyer)
        dispatch(stack, **settings(impostor))
        assert impostor.events([notification]) == {notification: 0} and len(impostor.refused) >= 1
        state = deliveries(db, notification)["webhook"]
        assert (state["state"], state["last_error"]) == ("pending", "the receiver answered HTTP 400")
    finally:
        impostor.close()


def test_each_channel_is_off_until_configured_and_a_profile_without_email_is_skipped(stack, db, receiver, sink):
    buyer = make_profile(db, "buyer")
    first = notify(db, buyer)
    dispatch(stack)  # nothing configured: no rows, no errors
    assert deliveries(db, first) == {}
    dispatch(stack, **settings(receiver))  # the webhook only
    assert {c: d["state"] for c, d in deliveries(db, first).items()} == {"webhook": "delivered"}
    assert sink.mails(first) == []

    silent = make_profile(db, "seller")
    db.execute("UPDATE profiles SET email = NULL WHERE id = %s", (silent["id"],))
    second = notify(db, silent, "account_enabled", account="acct_silent")
    dispatch(stack, **settings(receiver, sink))
    assert {c: d["state"] for c, d in deliveries(db, second).items()} == {"webhook": "delivered", "email": "skipped"}
    assert deliveries(db, second)["email"]["last_error"] is None
    assert len(sink.mails(first)) == 1  # switched on later, the recent one is still mailed


def test_two_sweepers_at_once_deliver_each_notification_once(stack, db, sink):
    slow = Receiver(delay=0.05)
    try:
        buyer = make_profile(db, "buyer")
        ids = [notify(db, buyer, "refund_issued", payment_id=str(uuid.uuid4()), amount_cents=n) for n in range(30)]
        env = {**stack.app.env, **settings(slow, sink)}
        sweepers = [subprocess.Popen([str(BINARY), "sweep"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True) for _ in range(2)]
        outputs = [s.communicate(timeout=120) for s in sweepers]
        assert all(s.returncode == 0 for s in sweepers), outputs
        assert slow.events(ids) == {i: 1 for i in ids}
        assert all(slow.attempts(i) == 1 for i in ids)
        assert all(len(sink.mails(i)) == 1 for i in ids)
        counts = [int(next(l for l in out.splitlines() if "deliver_notifications" in l).rsplit(": ", 1)[1])
                  for out, _ in outputs]
        assert sum(counts) >= 2 * len(ids), counts
    finally:
        slow.close()


def test_a_misconfigured_channel_fails_its_task_only_and_names_the_variable(stack, db):
    result = sweep(stack, expect_status=1, MARKETPLACE_WEBHOOK_URL="http://marketplace.example.test/hooks",
                   MARKETPLACE_WEBHOOK_SECRET=SECRET)
    assert "deliver_notifications failed" in result.stderr and "MARKETPLACE_WEBHOOK_URL" in result.stderr
    assert SECRET not in result.stderr + result.stdout
    assert "sweep: expire_reservations: " in result.stdout  # the money tasks still ran
    half = sweep(stack, expect_status=1, SMTP_URL="smtp://127.0.0.1:2525")
    assert "SMTP_FROM" in half.stderr


def test_every_notification_goes_through_the_notifier_and_every_kind_has_a_template_and_a_doc_row():
    """`Notifier` takes a `NotificationKind`, whose email templates are an exhaustive switch (a kind
    without one does not build; the unit tests render each). So nothing may write notifications
    around it: no other INSERT in the sources or the migrations."""
    writers = sorted(str(p.relative_to(REPO)) for p in [*(REPO / "Sources").rglob("*.swift"), *(REPO / "sql").glob("*.sql")]
                     if re.search(r"INSERT\s+INTO\s+notifications\b", p.read_text(), re.I))
    # The one other writer: the payment_intent events' effect in SQL (one round trip per delivery,
    # issue 17; redefined by issue 16's migration to check the event's account, and by issue 17's
    # fewer statements and transitions as expressions), whose kinds must be NotificationKind's too.
    effect = ["sql/0018_webhook_one_round_trip.sql", "sql/0020_charge_models.sql",
              "sql/0023_webhook_fewer_statements.sql", "sql/0025_transitions_as_expressions.sql"]
    assert writers == ["Sources/PaymentsCore/Domain/Notifier.swift", *effect], writers
    enum = re.findall(r'case (\w+) = "(\w+)"', (REPO / "Sources/PaymentsCore/Domain/NotificationKind.swift").read_text())
    in_sql = {kind for path in effect for kind in re.findall(r"v_kind := '(\w+)'", (REPO / path).read_text())}
    assert in_sql and in_sql <= {kind for _, kind in enum}, in_sql
    source = (REPO / "Sources/PaymentsCore/Operations/NotificationTemplates.swift").read_text()
    switch = source[source.index("static func of("):source.index("func rendered(")]
    covered = {name.strip().lstrip(".") for case in re.findall(r"case (\.[^:]+):", switch) for name in case.split(",")}
    assert covered == {name for name, _ in enum} and len(enum) >= 24, covered ^ {name for name, _ in enum}
    kinds = [kind for _, kind in enum]
    documented = (REPO / "docs" / "notifications.md").read_text()
    assert [k for k in kinds if f"`{k}`" not in documented] == []
