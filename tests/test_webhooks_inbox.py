"""Webhook inbox (issue 5): the exact raw bytes are stored, duplicates (sequential and
concurrent) have exactly one effect, unknown types and platform events on the Connect endpoint
are stored `ignored` (Connect events on the platform endpoint are refused: issue 13), and
/metrics shows what happened.

The helpers at the top are shared with the other test_webhooks_* files (they import this
module): payment rows are created directly in the database, as issue 5 allows until the
purchase family runs the same cases through create-intent."""

import json
import re
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from harness.api import make_listing, make_profile
from harness.paths import BINARY

WEBHOOK = "/api/payments/webhook"
CONNECT_WEBHOOK = "/api/payments/webhook/connect"


# --- helpers shared by the webhook tests -------------------------------------------------------

def uid() -> str:
    return uuid.uuid4().hex[:20]


def new_payment(db, *, amount=5000, fee=500, status="processing", currency="usd") -> dict:
    """A buyer, a seller, a listing reserved by the buyer (payment_pending) and a purchase
    payment row with a fresh PaymentIntent id."""
    buyer = make_profile(db, "buyer")
    seller = make_profile(db, "seller", stripe_account=f"acct_{uid()}", charges_enabled=True)
    listing = make_listing(db, seller, price=amount, currency=currency)
    db.execute("UPDATE listings SET status = 'payment_pending', reserved_by = %s, reserved_until = now() + interval '10 minutes'"
               " WHERE id = %s", (buyer["id"], listing))
    intent = f"pi_{uid()}"
    payment_id = insert_payment(db, buyer=buyer, seller=seller, listing=listing, intent=intent, amount=amount, fee=fee,
                                status=status, currency=currency)
    return {"id": payment_id, "intent": intent, "charge": f"ch_{uid()}", "amount": amount, "buyer": buyer,
            "seller": seller, "listing": listing, "currency": currency}


def insert_payment(db, *, buyer, seller, listing, intent, amount, fee=500, status="processing", currency="usd") -> str:
    return db.execute(
        "INSERT INTO payments (kind, buyer_id, seller_id, listing_id, stripe_payment_intent_id, amount_cents,"
        " application_fee_cents, currency, status) VALUES ('purchase', %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id::text",
        (buyer["id"], seller["id"], listing, intent, amount, fee, currency, status)).fetchone()[0]


def event(type_: str, obj: dict, *, created: int | None = None, event_id: str | None = None,
          account: str | None = None) -> dict:
    body = {"id": event_id or f"evt_{uid()}", "object": "event", "api_version": "2024-06-20",
            "created": created if created is not None else int(time.time()), "livemode": False, "type": type_,
            "data": {"object": obj}}
    if account:
        body["account"] = account
    return body


def encode(evt: dict) -> bytes:
    return json.dumps(evt, separators=(",", ":")).encode()


def intent_object(payment: dict, *, status: str, amount_capturable=0, amount_received=0, charge=True,
                  error: dict | None = None, created: int | None = None) -> dict:
    return {"id": payment["intent"], "object": "payment_intent", "amount": payment["amount"],
            "amount_capturable": amount_capturable, "amount_received": amount_received,
            "currency": payment["currency"], "status": status, "created": created or int(time.time()) - 60,
            "capture_method": "manual", "latest_charge": payment["charge"] if charge else None,
            "last_payment_error": error, "metadata": {"listing_id": payment["listing"]}}


def capturable(payment, created):
    return event("payment_intent.amount_capturable_updated",
                 intent_object(payment, status="requires_capture", amount_capturable=payment["amount"]), created=created)


def succeeded(payment, created):
    return event("payment_intent.succeeded",
                 intent_object(payment, status="succeeded", amount_received=payment["amount"]), created=created)


def payment_failed(payment, created):
    return event("payment_intent.payment_failed",
                 intent_object(payment, status="requires_payment_method", charge=False,
                               error={"code": "card_declined", "decline_code": "insufficient_funds",
                                      "message": "Your card has insufficient funds."}), created=created)


def charge_refunded(payment, created, refunded: int):
    return event("charge.refunded", {
        "id": payment["charge"], "object": "charge", "amount": payment["amount"], "amount_captured": payment["amount"],
        "amount_refunded": refunded, "currency": payment["currency"], "payment_intent": payment["intent"],
        "refunded": refunded >= payment["amount"], "status": "succeeded"}, created=created)


def dispute_event(type_: str, payment: dict, dispute_id: str, status: str, created: int):
    return event(type_, {
        "id": dispute_id, "object": "dispute", "amount": payment["amount"], "currency": payment["currency"],
        "charge": payment["charge"], "payment_intent": payment["intent"], "reason": "fraudulent", "status": status,
        "evidence_details": {"due_by": created + 7 * 86400, "has_evidence": False, "submission_count": 0}},
        created=created)


def deliver(stack, body: bytes, *, endpoint="platform", session=None, signature=None, timestamp=None):
    """POSTs raw bytes, signed with the endpoint's secret, through nginx."""
    headers = {"Stripe-Signature": signature or stack.sign_webhook(body, endpoint=endpoint, timestamp=timestamp),
               "Content-Type": "application/json"}
    path = WEBHOOK if endpoint == "platform" else CONNECT_WEBHOOK
    if session is None:
        return stack.post(path, data=body, headers=headers)
    return session.post(stack.url(path), data=body, headers=headers, verify=False, timeout=30, allow_redirects=False)


def send(stack, evt: dict, endpoint="platform"):
    return deliver(stack, encode(evt), endpoint=endpoint)


def event_row(db, event_id: str):
    row = db.execute("SELECT status, attempts, endpoint, type, created, account, object_id, payload, last_error,"
                     " next_attempt_at, processed_at FROM webhook_events WHERE id = %s", (event_id,)).fetchone()
    if row is None:
        return None
    keys = ("status", "attempts", "endpoint", "type", "created", "account", "object_id", "payload", "last_error",
            "next_attempt_at", "processed_at")
    return dict(zip(keys, row))


def payment_row(db, payment_id: str) -> dict:
    row = db.execute("SELECT status, amount_received, amount_refunded, amount_capturable, stripe_charge_id, is_disputed,"
                     " capture_before, last_event_created FROM payments WHERE id = %s", (payment_id,)).fetchone()
    keys = ("status", "amount_received", "amount_refunded", "amount_capturable", "stripe_charge_id", "is_disputed",
            "capture_before", "last_event_created")
    return dict(zip(keys, row))


def listing_row(db, listing_id: str) -> dict:
    row = db.execute("SELECT status, reserved_by::text, reserved_until FROM listings WHERE id = %s", (listing_id,)).fetchone()
    return dict(zip(("status", "reserved_by", "reserved_until"), row))


def audit_operations(db, payment_id: str) -> list[str]:
    """The audit rows written for the payment, by operation, oldest first."""
    return [r[0] for r in db.execute("SELECT operation FROM payment_audit_logs WHERE entity_type = 'payment'"
                                     " AND entity_id = %s ORDER BY id", (payment_id,))]


def notifications(db, payment_id: str) -> list[tuple[str, str]]:
    """(profile_id, kind) of every notification about the payment, sorted."""
    return sorted(db.execute("SELECT profile_id::text, kind FROM notifications WHERE payload->>'payment_id' = %s",
                             (payment_id,)).fetchall())


def cli(stack, *args, check=True):
    """Runs `payments ARGS…` with the app's environment."""
    result = subprocess.run([str(BINARY), *args], env=stack.app.env, capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, f"payments {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    return result


# --- raw bytes ----------------------------------------------------------------------------------

def test_exact_raw_bytes_are_stored_for_an_ignored_event(stack, db):
    """CRLF, odd spacing, raw UTF-8, escaped unicode and key order all survive nginx and the app:
    the stored payload is byte-for-byte the signed body."""
    event_id = f"evt_{uid()}"
    body = ("{\r\n  \"id\" : \"" + event_id + "\",\r\n\t\"object\":\"event\", \"type\":\"customer.created\", \"livemode\":false,\r\n"
            "  \"created\": " + str(int(time.time())) + ",  \"data\": {\"object\": {\"id\": \"cus_1\", "
            "\"name\": \"Zoë Ångström 💳\", \"note\": \"caf\\u00e9 \\ud83d\\ude00 \\r\\n\", \"z\": 1, \"a\": 2.50}}}\r\n"
            ).encode("utf-8")
    response = deliver(stack, body)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "status": "ignored"}
    row = event_row(db, event_id)
    assert bytes(row["payload"]) == body
    assert (row["status"], row["endpoint"], row["type"]) == ("ignored", "platform", "customer.created")


def test_exact_raw_bytes_are_stored_for_a_handled_event(stack, db):
    payment = new_payment(db)
    evt = succeeded(payment, int(time.time()))
    evt["data"]["object"]["description"] = "Vélo — “fixie”\r\nline two"
    body = json.dumps(evt, indent=2, ensure_ascii=False).replace("\n", "\r\n").encode("utf-8")
    assert b"\r\n" in body and "é".encode() in body
    response = deliver(stack, body)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True}
    row = event_row(db, evt["id"])
    assert bytes(row["payload"]) == body
    assert (row["status"], row["attempts"], row["created"], row["object_id"]) == ("processed", 1, evt["created"],
                                                                                   payment["intent"])
    assert row["processed_at"] is not None
    assert payment_row(db, payment["id"])["status"] == "succeeded"


def test_bad_signature_stores_nothing(stack, db):
    payment = new_payment(db)
    evt = succeeded(payment, int(time.time()))
    body = encode(evt)
    signature = stack.sign_webhook(body)
    response = deliver(stack, body + b" ", signature=signature)  # one byte more than was signed
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "signature_invalid"
    assert event_row(db, evt["id"]) is None
    assert payment_row(db, payment["id"])["status"] == "processing"


# --- duplicates ---------------------------------------------------------------------------------

def test_sequential_duplicates_have_one_effect(stack, db):
    payment = new_payment(db)
    body = encode(succeeded(payment, int(time.time())))
    event_id = json.loads(body)["id"]
    answers = [deliver(stack, body) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json() for a in answers] == [{"received": True}, {"received": True, "duplicate": True},
                                           {"received": True, "duplicate": True}]
    # A later retry signed with a newer timestamp (Stripe re-signs each attempt) is a duplicate too.
    again = deliver(stack, body, timestamp=int(time.time()) + 5)
    assert again.json() == {"received": True, "duplicate": True}

    row = event_row(db, event_id)
    assert (row["status"], row["attempts"]) == ("processed", 1)
    assert db.execute("SELECT count(*) FROM webhook_events WHERE id = %s", (event_id,)).fetchone()[0] == 1
    assert audit_operations(db, payment["id"]) == ["payment.succeeded"]
    assert notifications(db, payment["id"]) == sorted([(payment["buyer"]["id"], "payment_succeeded"),
                                                       (payment["seller"]["id"], "payment_succeeded")])
    got = payment_row(db, payment["id"])
    assert (got["status"], got["amount_received"], got["stripe_charge_id"]) == ("succeeded", payment["amount"],
                                                                                 payment["charge"])
    assert listing_row(db, payment["listing"]) == {"status": "sold", "reserved_by": None, "reserved_until": None}


def test_twenty_concurrent_deliveries_of_one_event_have_one_effect(stack, db):
    payment = new_payment(db)
    body = encode(succeeded(payment, int(time.time())))
    event_id = json.loads(body)["id"]
    signature = stack.sign_webhook(body)
    barrier = threading.Barrier(20)

    def one(_):
        with requests.Session() as session:
            session.get(stack.url("/api/health"), verify=False, timeout=10)  # connect (TLS) before the race
            barrier.wait(timeout=30)
            response = deliver(stack, body, session=session, signature=signature)
            return response.status_code, response.json()

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    assert all(status == 200 for status, _ in answers), answers
    bodies = [b for _, b in answers]
    assert bodies.count({"received": True}) == 1, bodies
    assert bodies.count({"received": True, "duplicate": True}) == 19, bodies

    row = event_row(db, event_id)
    assert (row["status"], row["attempts"]) == ("processed", 1)
    assert audit_operations(db, payment["id"]) == ["payment.succeeded"]
    assert notifications(db, payment["id"]) == sorted([(payment["buyer"]["id"], "payment_succeeded"),
                                                       (payment["seller"]["id"], "payment_succeeded")])
    assert payment_row(db, payment["id"])["status"] == "succeeded"


# --- ignored ------------------------------------------------------------------------------------

def test_unknown_type_is_stored_ignored_and_has_no_effect(stack, db):
    payment = new_payment(db)
    evt = event("payment_intent.teleported", intent_object(payment, status="succeeded", amount_received=payment["amount"]))
    response = send(stack, evt)
    assert response.status_code == 200
    assert response.json() == {"received": True, "status": "ignored"}
    row = event_row(db, evt["id"])
    assert (row["status"], row["attempts"], row["type"]) == ("ignored", 1, "payment_intent.teleported")
    assert payment_row(db, payment["id"])["status"] == "processing"
    assert audit_operations(db, payment["id"]) == [] and notifications(db, payment["id"]) == []
    # A duplicate of an ignored event is a duplicate.
    assert send(stack, evt).json() == {"received": True, "duplicate": True}


def test_payment_event_on_the_connect_endpoint_is_ignored(stack, db):
    payment = new_payment(db)
    evt = succeeded(payment, int(time.time()))
    evt["account"] = payment["seller"]["id"]
    response = send(stack, evt, endpoint="connect")
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "status": "ignored"}
    row = event_row(db, evt["id"])
    assert (row["status"], row["endpoint"]) == ("ignored", "connect")
    assert payment_row(db, payment["id"])["status"] == "processing"
    assert listing_row(db, payment["listing"])["status"] == "payment_pending"
    assert audit_operations(db, payment["id"]) == [] and notifications(db, payment["id"]) == []


def test_account_event_on_the_platform_endpoint_is_refused(stack, db):
    """A connected account's event belongs on the Connect endpoint (issue 13: 400, nothing stored;
    test_webhooks_routing.py has the other cases)."""
    account = f"acct_{uid()}"
    profile = make_profile(db, "seller", stripe_account=account, charges_enabled=False)
    evt = event("account.updated", {"id": account, "object": "account", "charges_enabled": True, "payouts_enabled": True,
                                    "details_submitted": True,
                                    "requirements": {"currently_due": [], "disabled_reason": None}}, account=account)
    response = send(stack, evt, endpoint="platform")
    assert response.status_code == 400 and response.json()["error"]["code"] == "wrong_webhook_endpoint", response.text
    assert event_row(db, evt["id"]) is None
    assert db.execute("SELECT charges_enabled FROM profiles WHERE id = %s", (profile["id"],)).fetchone()[0] is False
    # The same event on the Connect endpoint (a new id: Stripe's ids are per delivery target) is applied.
    evt["id"] = f"evt_{uid()}"
    response = send(stack, evt, endpoint="connect")
    assert response.json() == {"received": True}
    assert db.execute("SELECT charges_enabled, payouts_enabled, details_submitted FROM profiles WHERE id = %s",
                      (profile["id"],)).fetchone() == (True, True, True)
    assert event_row(db, evt["id"])["status"] == "processed"


# --- metrics ------------------------------------------------------------------------------------

def scrape(stack) -> dict:
    response = stack.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    values = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            # Every series carries the process's instance label first; the stack has one process.
            assert re.match(r'^\w+\{instance="[^"]+"', name), name
            values[re.sub(r'\{instance="[^"]+",?', "{", name).replace("{}", "")] = float(value)
    return values


def test_metrics_show_outcomes_signature_failures_latency_and_backlog(stack, db):
    before = scrape(stack)
    payment = new_payment(db)
    processed = succeeded(payment, int(time.time()))
    assert send(stack, processed).json() == {"received": True}
    assert send(stack, processed).json() == {"received": True, "duplicate": True}
    assert send(stack, event("customer.created", {"id": f"cus_{uid()}"})).json()["status"] == "ignored"
    unknown = {"id": "-", "listing": "-", "intent": f"pi_{uid()}", "charge": f"ch_{uid()}", "amount": 100, "currency": "usd"}
    parked = succeeded(unknown, int(time.time()))  # no payment carries this intent id
    assert send(stack, parked).json() == {"received": True, "status": "parked"}
    broken = succeeded(payment, int(time.time()))
    broken["data"]["object"]["amount"] = "a lot"
    assert send(stack, broken).status_code == 500
    body = encode(succeeded(payment, int(time.time())))
    assert deliver(stack, body, signature="t=1,v1=" + "0" * 64).status_code == 400
    assert deliver(stack, body, signature=stack.sign_webhook(body, timestamp=int(time.time()) - 3600)).status_code == 400
    after = scrape(stack)

    def delta(name):
        return after.get(name, 0) - before.get(name, 0)

    events = 'payments_webhook_events_total{endpoint="platform",type="%s",outcome="%s"}'
    assert delta(events % ("payment_intent.succeeded", "processed")) == 1
    assert delta(events % ("payment_intent.succeeded", "duplicate")) == 1
    assert delta(events % ("payment_intent.succeeded", "parked")) == 1
    assert delta(events % ("payment_intent.succeeded", "failed")) == 1
    assert delta(events % ("customer.created", "ignored")) == 1
    # Every verified delivery counts as received (the broken one too), bad signatures do not.
    assert delta(events % ("payment_intent.succeeded", "received")) == 4
    assert delta(events % ("customer.created", "received")) == 1
    failures = [n for n in after if n.startswith("payments_webhook_signature_failures_total{")]
    assert sum(delta(n) for n in failures) == 2, failures
    assert any('endpoint="platform"' in n and delta(n) >= 1 for n in failures)
    assert delta('payments_webhook_signature_failures_total{endpoint="platform",reason="outside_tolerance"}') == 1
    # The histogram: cumulative buckets, +Inf equals the count, which grew by every stored delivery.
    buckets = sorted(((float(re.search(r'le="([^"]+)"', n).group(1)), v) for n, v in after.items()
                      if n.startswith("payments_webhook_processing_seconds_bucket")), key=lambda b: b[0])
    assert len(buckets) >= 5 and buckets[-1][0] == float("inf")
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
    assert buckets[-1][1] == after["payments_webhook_processing_seconds_count"]
    assert delta("payments_webhook_processing_seconds_count") >= 4
    assert delta("payments_webhook_processing_seconds_sum") > 0
    # The backlog gauges (by status and type, dead events included) are read from the database
    # at scrape time.
    backlog = {(status, type_): n for status, type_, n in db.execute(
        "SELECT status, type, count(*) FROM webhook_events WHERE status IN ('parked', 'failed', 'dead')"
        " GROUP BY status, type").fetchall()}
    gauges = {(re.search(r'status="([^"]+)"', n).group(1), re.search(r'type="([^"]+)"', n).group(1)): v
              for n, v in after.items() if n.startswith("payments_webhook_backlog{")}
    assert gauges == backlog
    assert gauges[("parked", "payment_intent.succeeded")] >= 1
    assert gauges[("failed", "payment_intent.succeeded")] >= 1


def round_trips_of(stack, response) -> int:
    """The database round trips the app logged for this response's request (`db_round_trips`)."""
    request_id = response.headers["X-Request-Id"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [r for r in stack.app.log_records() if r.get("msg") == "request" and r.get("request_id") == request_id]
        if lines:
            return lines[0]["db_round_trips"]
        time.sleep(0.05)
    raise AssertionError(f"no request log line for {request_id}")


def test_a_payment_intent_delivery_is_one_database_round_trip(stack, db):
    """Issue 17: the dedupe insert, the guarded transition, the audit row, the notifications and
    the processed mark are one prepared statement, so one round trip (once the statement is
    prepared on every connection), duplicates included — and the effect is the same as ever."""
    payment = new_payment(db, status="requires_payment_method")
    now = int(time.time())
    # Every pooled connection prepares the statement once (one more round trip, the first time).
    for _ in range(40):
        warm = new_payment(db, status="requires_payment_method")
        assert send(stack, capturable(warm, now)).status_code == 200

    authorised = send(stack, capturable(payment, now))
    paid_body = encode(succeeded(payment, now + 1))
    paid = deliver(stack, paid_body)
    repeated = deliver(stack, paid_body)
    assert [r.json() for r in (authorised, paid, repeated)] == [
        {"received": True}, {"received": True}, {"received": True, "duplicate": True}]
    assert [round_trips_of(stack, r) for r in (authorised, paid, repeated)] == [1, 1, 1]

    assert audit_operations(db, payment["id"]) == ["payment.authorized", "payment.succeeded"]
    assert notifications(db, payment["id"]) == sorted([(payment["seller"]["id"], "payment_authorized"),
                                                       (payment["buyer"]["id"], "payment_succeeded"),
                                                       (payment["seller"]["id"], "payment_succeeded")])
    row = event_row(db, json.loads(paid_body)["id"])
    assert (row["status"], row["attempts"]) == ("processed", 1)
    assert payment_row(db, payment["id"])["status"] == "succeeded"


def test_a_payment_transition_that_touches_no_hold_is_a_hot_update(stack, db):
    """Issue 17, item 3: no index on `payments` names `status` (the held payments' index names a
    generated column, NULL outside `requires_capture`), so `processing` → `succeeded` changes no
    indexed column and PostgreSQL writes it as a heap-only tuple, adding no index entry
    (`pg_stat_user_tables.n_tup_hot_upd`, flushed by each backend within about 10 s)."""
    def hot_updates() -> int:
        db.execute("SELECT pg_stat_clear_snapshot()")
        return db.execute("SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'payments'").fetchone()[0]

    payments = [new_payment(db, status="processing") for _ in range(5)]
    before = hot_updates()
    now = int(time.time())
    for payment in payments:
        assert send(stack, succeeded(payment, now)).status_code == 200
    assert all(payment_row(db, p["id"])["status"] == "succeeded" for p in payments)
    deadline = time.monotonic() + 20
    while hot_updates() - before < len(payments) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert hot_updates() - before >= len(payments)


def test_a_duplicate_payment_intent_delivery_writes_nothing(stack, db):
    """Issue 17 (sql/0027): a delivery of an event already processed reads its row without locking
    it. A row lock is a write (the locker's transaction id in the row's xmax, WAL to flush at the
    commit): during a retry storm most deliveries are duplicates, and they now cost a read."""
    payment = new_payment(db, status="processing")
    body = encode(succeeded(payment, int(time.time())))
    assert deliver(stack, body).status_code == 200
    version = "SELECT xmin::text, xmax::text FROM webhook_events WHERE id = %s"
    event_id = json.loads(body)["id"]
    first = db.execute(version, (event_id,)).fetchone()
    assert first[1] == "0", first
    for _ in range(3):
        answer = deliver(stack, body)
        assert answer.status_code == 200 and answer.json() == {"received": True, "duplicate": True}, answer.text
    assert db.execute(version, (event_id,)).fetchone() == first
    assert event_row(db, event_id)["attempts"] == 1


def test_a_failed_payment_intent_delivery_is_recorded_for_the_sweeper(stack, db):
    """The one-statement path keeps the inbox's failure semantics: an effect that fails rolls
    back, and the event is kept as `failed` (500), to be retried."""
    payment = new_payment(db, status="requires_payment_method")
    body = capturable(payment, int(time.time()))
    body["data"]["object"]["amount_capturable"] = -1  # the payments table refuses a negative amount
    answer = send(stack, body)
    assert answer.status_code == 500 and answer.json()["error"]["code"] == "webhook_processing_failed", answer.text
    row = event_row(db, body["id"])
    assert (row["status"], row["attempts"]) == ("failed", 1) and row["last_error"], row
    assert payment_row(db, payment["id"])["status"] == "requires_payment_method"
    assert audit_operations(db, payment["id"]) == []
