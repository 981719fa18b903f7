"""Issue 15, item 3 — the admin's money tools through nginx, the real app, PostgreSQL and the
fake Stripe: goodwill refunds (partial, full, over the cap, concurrent, refused to others),
the payment search, the webhook inbox backlog with replay, and the audit log's pages and
filters."""

import concurrent.futures
import json
import time
import uuid

from charge_models import stack, stripe_account_scoped  # noqa: F401  (both charge models; see charge_models.py)
from harness.api import make_profile, onboarded_seller, table_fingerprint
from harness.assertions import assert_envelope, request_id
from security_routes import insert_payment
from test_disputes_platform import authorised_purchase, captured_purchase, refund_rows
from test_milestones import (  # noqa: F401  (the autouse fixture applies here too)
    Client, admin_client, audit_by_request, executed, fake_object, fresh_loopback_windows, open_dispute, payment_row,
    settle, wait_payment,
)
from test_webhooks_inbox import deliver, event, intent_object


def goodwill_keys(stack, payment_id):
    """The refund calls the fake executed for this payment's goodwill refunds, by key."""
    return {r["headers"]["Idempotency-Key"]: r
            for r in executed(stack.stripe.received(method="POST", path_prefix="/v1/refunds"))
            if r["headers"].get("Idempotency-Key", "").startswith(f"payment:{payment_id}:refund:")}


def refund(admin, payment_id, amount=None, reason="goodwill: late delivery", **kwargs):
    body = {"reason": reason}
    if amount is not None:
        body["amount"] = amount
    return admin.post(f"/api/admin/payments/{payment_id}/refund", json=body, **kwargs)


def paid(stack, db, price):
    seller, buyer = onboarded_seller(stack, db), make_profile(db, "buyer")
    return {"seller": seller, "buyer": buyer, **captured_purchase(stack, db, seller, buyer, price)}


# ------------------------------------------------------------------------------------------
# Goodwill refunds
# ------------------------------------------------------------------------------------------

def test_goodwill_refunds_partial_then_the_rest_then_nothing(stack, db):
    case = paid(stack, db, 6000)
    admin = admin_client(stack, db)
    payment_id = case["payment_id"]

    partial = refund(admin, payment_id, amount=1500)
    assert partial.status_code == 201, partial.text
    assert (partial.json()["amount"], partial.json()["stripe_refund_id"].startswith("re_")) == (1500, True)
    assert_envelope(refund(admin, payment_id, amount=4501), 409, "refund_exceeds_captured")
    rest = refund(admin, payment_id)
    assert rest.status_code == 201, rest.text
    assert rest.json()["amount"] == 4500
    assert_envelope(refund(admin, payment_id, amount=1), 409, "nothing_to_refund")

    at_fake = goodwill_keys(stack, payment_id)
    assert sorted(at_fake) == [f"payment:{payment_id}:refund:1", f"payment:{payment_id}:refund:2"], sorted(at_fake)
    first = at_fake[f"payment:{payment_id}:refund:1"]["params"]
    # A destination charge: the seller's share and the platform's fee come back with it. A direct
    # charge is refunded on the seller's account (its balance), the platform's fee given back.
    assert (first["amount"], first.get("reverse_transfer"), first["refund_application_fee"]) == \
        ("1500", None if stack.is_direct else "true", "true")
    assert at_fake[f"payment:{payment_id}:refund:1"]["headers"].get("Stripe-Account") == \
        payment_row(db, payment_id)["stripe_account"]
    assert first["metadata"]["payment_id"] == payment_id and "dispute_id" not in first["metadata"]
    settle(stack)
    row = wait_payment(db, payment_id, "refunded")
    assert (row["amount_refunded"], row["amount_received"]) == (6000, 6000)
    assert fake_object(stack, case["charge"])["amount_refunded"] == 6000
    rows = refund_rows(db, payment_id)
    assert [(r["amount_cents"], r["dispute_id"], r["attempt"], r["reason"]) for r in rows] == [
        (1500, None, 1, "goodwill: late delivery"), (4500, None, 2, "goodwill: late delivery")]
    # Audited on the payment, with the admin, old and new values.
    audited = audit_by_request(db, request_id(partial))
    assert [(a["operation"], a["entity_type"], a["entity_id"], a["success"]) for a in audited] == [
        ("payment.refund", "payment", payment_id, True)], audited
    assert audited[0]["actor"] == admin.profile["id"]
    assert audited[0]["new_values"]["amount"] == 1500
    # The buyer is told.
    told = db.execute("SELECT count(*) FROM notifications WHERE profile_id = %s AND kind = 'refund_issued'",
                      (case["buyer"]["id"],)).fetchone()[0]
    assert told == 2


def test_concurrent_goodwill_refunds_never_exceed_the_captured_amount(stack, db):
    case = paid(stack, db, 5000)
    admin = admin_client(stack, db)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: refund(admin, case["payment_id"], amount=1200), range(8)))
    codes = sorted((a.status_code, a.json().get("error", {}).get("code")) for a in answers)
    assert codes == [(201, None)] * 4 + [(409, "refund_exceeds_captured")] * 4, codes
    settle(stack)
    live = [r for r in refund_rows(db, case["payment_id"]) if r["status"] not in ("failed", "canceled")]
    assert sum(r["amount_cents"] for r in live) == 4800
    assert len(goodwill_keys(stack, case["payment_id"])) == 4
    charge = fake_object(stack, case["charge"])
    assert charge["amount_refunded"] == 4800 <= charge["amount_captured"]


def test_goodwill_refunds_need_a_captured_undisputed_payment_and_a_reason(stack, db):
    admin = admin_client(stack, db)
    seller, buyer = onboarded_seller(stack, db), make_profile(db, "buyer")
    authorised = authorised_purchase(stack, db, seller, buyer, 3000)
    before = table_fingerprint(db)
    assert_envelope(refund(admin, authorised["payment_id"], amount=100), 409, "payment_not_captured")
    assert_envelope(admin.post(f"/api/admin/payments/{authorised['payment_id']}/refund", json={"amount": 100}),
                    400, "invalid_field")
    assert_envelope(refund(admin, str(uuid.uuid4()), amount=100), 404, "not_found")
    assert_envelope(refund(admin, authorised["payment_id"], amount=0), 400, "invalid_field")
    assert table_fingerprint(db) == before
    # A disputed payment is refunded through its dispute, which records why.
    disputed = paid(stack, db, 4000)
    assert open_dispute(stack, disputed["buyer"], disputed["payment_id"]).status_code == 201
    error = assert_envelope(refund(admin, disputed["payment_id"], amount=100), 409, "payment_disputed")
    assert "dispute" in error["message"]
    assert goodwill_keys(stack, disputed["payment_id"]) == {}


def test_only_admins_refund_and_refusals_are_audited(stack, db):
    case = paid(stack, db, 3000)
    before = table_fingerprint(db, tables=("payments", "refunds"))
    for role, profile in (("buyer", case["buyer"]), ("seller", case["seller"])):
        client = Client(stack, profile)
        refused = refund(client, case["payment_id"], amount=100)
        assert_envelope(refused, 403, "forbidden")
        (row,) = audit_by_request(db, request_id(refused))
        assert (row["operation"], row["success"], row["error_code"], row["actor"]) == (
            "payment.refund", False, "forbidden", profile["id"]), row
    assert_envelope(Client(stack, None).post(f"/api/admin/payments/{case['payment_id']}/refund",
                                             json={"amount": 100, "reason": "x"}), 401, "unauthenticated")
    assert table_fingerprint(db, tables=("payments", "refunds")) == before
    assert goodwill_keys(stack, case["payment_id"]) == {}


def test_a_goodwill_refund_whose_answer_was_lost_is_resumed_under_its_key(stack, db):
    case = paid(stack, db, 5000)
    admin = admin_client(stack, db)
    try:
        stack.stripe_control("POST", "/_control/faults", {"type": "drop", "when": "after", "method": "POST",
                                                          "path_prefix": "/v1/refunds", "count": 3})
        lost = refund(admin, case["payment_id"], amount=2000)
    finally:
        stack.stripe_control("DELETE", "/_control/faults")
    assert_envelope(lost, 502, "stripe_unavailable")
    assert_envelope(refund(admin, case["payment_id"], amount=1000), 409, "refund_in_progress")
    again = refund(admin, case["payment_id"], amount=2000)
    assert again.status_code == 201, again.text
    keys = {r["headers"]["Idempotency-Key"] for r in stack.stripe.received(method="POST", path_prefix="/v1/refunds")
            if r["headers"].get("Idempotency-Key", "").startswith(f"payment:{case['payment_id']}:")}
    assert keys == {f"payment:{case['payment_id']}:refund:1"}, keys
    assert fake_object(stack, case["charge"])["amount_refunded"] == 2000


# ------------------------------------------------------------------------------------------
# Payment search
# ------------------------------------------------------------------------------------------

def walk(admin, path):
    """Every page of a list, following next_cursor."""
    items, cursor = [], None
    for _ in range(50):
        response = admin.get(path + (f"&cursor={cursor}" if cursor else ""))
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the cursor never ended")


def test_payment_search_filters_and_pages(stack, db):
    admin = admin_client(stack, db)
    buyer, seller, other_seller = make_profile(db, "buyer"), make_profile(db, "seller"), make_profile(db, "seller")
    mine = [insert_payment(db, buyer, seller, status=s) for s in ("succeeded", "requires_capture", "succeeded")]
    theirs = insert_payment(db, make_profile(db, "buyer"), other_seller)

    by_buyer = walk(admin, f"/api/admin/payments?buyer={buyer['id']}&limit=1")
    assert [p["id"] for p in by_buyer] == list(reversed(mine))  # newest first, one per page
    by_status = walk(admin, f"/api/admin/payments?buyer={buyer['id']}&status=succeeded&limit=2")
    assert {p["id"] for p in by_status} == {mine[0], mine[2]}
    assert [p["id"] for p in walk(admin, f"/api/admin/payments?seller={other_seller['id']}")] == [theirs]
    listing = payment_row(db, mine[1])["listing_id"]
    assert [p["id"] for p in walk(admin, f"/api/admin/payments?listing={listing}")] == [mine[1]]
    future = int(time.time()) + 3600
    assert walk(admin, f"/api/admin/payments?buyer={buyer['id']}&since={future}") == []
    assert len(walk(admin, f"/api/admin/payments?buyer={buyer['id']}&until={future}")) == 3
    assert len(walk(admin, f"/api/admin/payments?buyer={buyer['id']}&since=2020-01-01T00:00:00Z")) == 3

    for query, field in (("status=teleported", "status"), ("buyer=nope", "buyer"), ("since=yesterday", "since"),
                         ("limit=0", "limit"), ("limit=101", "limit"), ("cursor=forged", "cursor")):
        error = assert_envelope(admin.get(f"/api/admin/payments?{query}"), 400, "invalid_field")
        assert field in error["message"], (query, error)
    refused = Client(stack, buyer).get("/api/admin/payments")
    assert_envelope(refused, 403, "forbidden")
    assert [a["operation"] for a in audit_by_request(db, request_id(refused))] == ["payment.search"]


# ------------------------------------------------------------------------------------------
# The webhook inbox
# ------------------------------------------------------------------------------------------

def test_the_inbox_backlog_lists_and_one_event_is_replayed(stack, db):
    admin = admin_client(stack, db)
    buyer, seller = make_profile(db, "buyer"), make_profile(db, "seller")
    payment_id = insert_payment(db, buyer, seller, status="requires_payment_method")
    intent = f"pi_inbox_{uuid.uuid4().hex[:12]}"
    # An event for an intent we do not know yet is parked.
    created = int(time.time())
    body = json.dumps(event("payment_intent.amount_capturable_updated",
                            intent_object({"intent": intent, "amount": 4200, "currency": "usd", "charge": None,
                                           "listing": str(payment_row(db, payment_id)["listing_id"])},
                                          status="requires_capture", amount_capturable=4200, charge=False),
                            created=created)).encode()
    delivered = deliver(stack, body)
    assert delivered.status_code == 200, delivered.text
    event_id = json.loads(body)["id"]
    assert db.execute("SELECT status FROM webhook_events WHERE id = %s", (event_id,)).fetchone()[0] == "parked"

    parked = walk(admin, "/api/admin/webhook-events?status=parked&type=payment_intent.amount_capturable_updated")
    mine = [e for e in parked if e["id"] == event_id]
    assert len(mine) == 1 and mine[0]["status"] == "parked" and mine[0]["payload_bytes"] == len(body), mine
    assert "payload" not in mine[0]
    assert all(e["status"] == "parked" for e in parked)

    # The intent becomes known; the admin replays the event, which now applies.
    db.execute("UPDATE payments SET stripe_payment_intent_id = %s WHERE id = %s", (intent, payment_id))
    replayed = admin.post(f"/api/admin/webhook-events/{event_id}/replay", json={})
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["status"] == "processed"
    assert payment_row(db, payment_id)["status"] == "requires_capture"
    audited = audit_by_request(db, request_id(replayed))
    assert ("webhook_event.replay", event_id, True) in [(a["operation"], a["entity_id"], a["success"]) for a in audited]
    # Replaying again changes nothing (effects are idempotent).
    before = table_fingerprint(db, tables=("payments",))
    assert admin.post(f"/api/admin/webhook-events/{event_id}/replay", json={}).json()["status"] == "processed"
    assert table_fingerprint(db, tables=("payments",)) == before

    assert_envelope(admin.post("/api/admin/webhook-events/evt_unknown123/replay", json={}), 404, "not_found")
    assert_envelope(admin.post("/api/admin/webhook-events/not-an-event/replay", json={}), 400, "invalid_field")
    assert_envelope(admin.get("/api/admin/webhook-events?status=lost"), 400, "invalid_field")
    assert_envelope(admin.get("/api/admin/webhook-events?type=DROP%20TABLE"), 400, "invalid_field")
    refused = Client(stack, seller).post(f"/api/admin/webhook-events/{event_id}/replay", json={})
    assert_envelope(refused, 403, "forbidden")
    assert [(a["operation"], a["success"]) for a in audit_by_request(db, request_id(refused))] == [
        ("webhook_event.replay", False)]


# ------------------------------------------------------------------------------------------
# The audit log
# ------------------------------------------------------------------------------------------

def test_the_audit_log_pages_newest_first_with_filters(stack, db):
    admin = admin_client(stack, db)
    entity = str(uuid.uuid4())
    actor = make_profile(db, "admin")
    for n in range(5):
        db.execute(
            "INSERT INTO payment_audit_logs (operation, entity_type, entity_id, actor_profile_id, actor_role, success,"
            " new_values) VALUES (%s, 'payment', %s, %s, 'admin', true, %s)",
            ("payment.capture" if n % 2 else "payment.cancel", entity, actor["id"], json.dumps({"n": n})))
    entries = walk(admin, f"/api/admin/audit-logs?entity_type=payment&entity_id={entity}&limit=2")
    assert [e["new_values"]["n"] for e in entries] == [4, 3, 2, 1, 0]
    assert [e["new_values"]["n"] for e in walk(admin, f"/api/admin/audit-logs?entity_id={entity}"
                                                      f"&operation=payment.capture")] == [3, 1]
    assert len(walk(admin, f"/api/admin/audit-logs?actor={actor['id']}")) == 5
    assert walk(admin, f"/api/admin/audit-logs?entity_id={entity}&since={int(time.time()) + 60}") == []
    for query in ("actor=nope", "operation=Robert'); DROP", "since=never", "limit=501", "cursor=forged"):
        assert_envelope(admin.get(f"/api/admin/audit-logs?{query}"), 400, "invalid_field")
