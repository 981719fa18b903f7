"""1,000 distinct events, each delivered 3 times, concurrently and shuffled (issue 5):
exactly 1,000 processed rows (each applied once), every payment's final state and amounts
right, and no duplicate audit row or notification."""

import collections
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from test_webhooks_inbox import capturable, charge_refunded, deliver, encode, new_payment, succeeded

PAYMENTS = 250          # × 4 events = 1,000 distinct events
DELIVERIES = 3
WORKERS = 32


def build(db):
    """Per payment: authorised, succeeded, a partial refund of 300, then either a full refund
    (even payments → refunded, listing back on sale) or a larger partial refund of 500 (odd →
    succeeded, listing sold)."""
    payments, events = [], []
    t = int(time.time()) - 600
    for n in range(PAYMENTS):
        payment = new_payment(db, amount=1000 + 10 * n, fee=100)
        full = n % 2 == 0
        payment["expected"] = ("refunded", payment["amount"], payment["amount"]) if full else \
            ("succeeded", payment["amount"], 500)
        # sql/0005: a fully refunded purchase puts its listing back on sale.
        payment["listing_after"] = "active" if full else "sold"
        payment["events"] = [capturable(payment, t + 1), succeeded(payment, t + 2),
                             charge_refunded(payment, t + 3, refunded=300),
                             charge_refunded(payment, t + 4, refunded=payment["amount"] if full else 500)]
        payments.append(payment)
        events.extend(payment["events"])
    return payments, events


def test_thousand_events_delivered_three_times_concurrently_apply_exactly_once(stack, db):
    payments, events = build(db)
    assert len({e["id"] for e in events}) == 1000
    deliveries = [encode(e) for e in events for _ in range(DELIVERIES)]
    random.Random(5).shuffle(deliveries)

    local = threading.local()
    sessions = []

    def session():
        if not hasattr(local, "session"):
            local.session = requests.Session()
            sessions.append(local.session)
        return local.session

    def one(body):
        response = deliver(stack, body, session=session())
        return response.status_code, response.json()

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            answers = list(pool.map(one, deliveries))
    finally:
        for s in sessions:
            s.close()
    elapsed = time.monotonic() - started

    statuses = collections.Counter(status for status, _ in answers)
    assert statuses == {200: 3000}, statuses
    bodies = collections.Counter(tuple(sorted(b.items())) for _, b in answers)
    assert bodies[(("received", True),)] == 1000, bodies
    assert bodies[(("duplicate", True), ("received", True))] == 2000, bodies
    assert elapsed < 60, f"3,000 deliveries took {elapsed:.1f} s"

    ids = [e["id"] for e in events]
    rows = db.execute("SELECT status, attempts, count(*) FROM webhook_events WHERE id = ANY(%s) GROUP BY status, attempts",
                      (ids,)).fetchall()
    assert rows == [("processed", 1, 1000)], rows

    payment_ids = [p["id"] for p in payments]
    state = {r[0]: r[1:] for r in db.execute(
        "SELECT id::text, status, amount_received, amount_refunded, amount_capturable, stripe_charge_id"
        " FROM payments WHERE id = ANY(%s::uuid[])", (payment_ids,))}
    listings = dict(db.execute("SELECT id::text, status FROM listings WHERE id = ANY(%s::uuid[])",
                               ([p["listing"] for p in payments],)).fetchall())
    audits = collections.defaultdict(list)
    for entity, operation, event_id in db.execute(
            "SELECT entity_id, operation, metadata->>'event_id' FROM payment_audit_logs"
            " WHERE entity_type = 'payment' AND entity_id = ANY(%s)", (payment_ids,)):
        audits[entity].append((operation, event_id))
    notices = collections.defaultdict(collections.Counter)
    for payment_id, profile, kind in db.execute(
            "SELECT payload->>'payment_id', profile_id::text, kind FROM notifications WHERE payload->>'payment_id' = ANY(%s)",
            (payment_ids,)):
        notices[payment_id][(profile, kind)] += 1

    wrong = []
    reordered = 0  # payments whose success (or a refund) overtook their authorisation
    for p in payments:
        status, received, refunded, capturable_amount, charge = state[p["id"]]
        if (status, received, refunded) != p["expected"] or capturable_amount != 0 or charge != p["charge"]:
            wrong.append((p["id"], (status, received, refunded, capturable_amount, charge), p["expected"]))
        if listings[p["listing"]] != p["listing_after"]:
            wrong.append((p["id"], "listing", listings[p["listing"]]))
        ops = collections.Counter(op for op, _ in audits[p["id"]])
        # No (event, operation) twice; exactly one success; authorisation at most once (it is
        # skipped when success came first); one or two refund steps (the larger may come first).
        if len(set(audits[p["id"]])) != len(audits[p["id"]]) or ops["payment.succeeded"] != 1 \
                or ops["payment.authorized"] > 1 or not 1 <= ops["payment.refunded"] <= 2 \
                or set(ops) - {"payment.succeeded", "payment.authorized", "payment.refunded"}:
            wrong.append((p["id"], "audit", audits[p["id"]]))
        # Notifications match the audited changes one to one, per party.
        buyer, seller = p["buyer"]["id"], p["seller"]["id"]
        expected = collections.Counter({(buyer, "payment_succeeded"): 1, (seller, "payment_succeeded"): 1,
                                        (buyer, "payment_refunded"): ops["payment.refunded"],
                                        (seller, "payment_refunded"): ops["payment.refunded"]})
        if ops["payment.authorized"]:
            expected[(seller, "payment_authorized")] = 1
        else:
            reordered += 1
        if notices[p["id"]] != expected:
            wrong.append((p["id"], "notifications", dict(notices[p["id"]]), dict(expected)))
    assert not wrong, f"{len(wrong)} problems, first: {wrong[:5]}"
    assert reordered > 0, "the shuffle produced no out-of-order sequence"
