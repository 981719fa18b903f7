"""Issue 9, the admin side of disputes through nginx, the real app, PostgreSQL and the fake
Stripe: refunds never above what was captured (also under concurrency), the list and detail
routes, the 401/403/404 matrix of the admin routes, their IP-keyed rate limits, and the
audit trail of every admin action (success or failure), which cannot be altered."""

import concurrent.futures
import time
import uuid
from types import SimpleNamespace

import psycopg
import pytest

from harness import App, Nginx
from harness.api import make_profile, onboarded_seller, table_fingerprint
from harness.assertions import assert_envelope, request_id
from test_disputes_platform import authorised_purchase, captured_purchase, refund_rows, refunds_at_fake
from test_milestones import (  # noqa: F401  (the autouse fixture applies here too)
    Client, admin_client, audit, audit_by_request, calls, fake_object, fresh_loopback_windows, many, one, open_dispute,
    payment_row, settle, wait_for, wait_payment,
)

# The shared stack opens the per-IP admin limits up (every test comes from 127.0.0.1), so the
# limits are proven on a second app process over the same database with tight ones, behind
# its own nginx rendered from the project's config.
ADMIN_LIMIT = 6
TIGHT_LIMITS = f"admin-refund={ADMIN_LIMIT}/60,admin-resolve={ADMIN_LIMIT}/60,admin-evidence={ADMIN_LIMIT}/60"


def disputed_purchase(stack, db, price=10000, captured=True):
    seller = onboarded_seller(stack, db)
    buyer = make_profile(db, "buyer")
    purchase = (captured_purchase if captured else authorised_purchase)(stack, db, seller, buyer, price)
    opened = open_dispute(stack, buyer, purchase["payment_id"])
    assert opened.status_code == 201, opened.text
    return {"seller": seller, "buyer": buyer, **purchase, "dispute": opened.json()["id"]}


# ------------------------------------------------------------------------------------------
# Refund amounts
# ------------------------------------------------------------------------------------------

def test_refund_above_the_captured_remainder_is_409_and_moves_nothing(stack, db):
    case = disputed_purchase(stack, db, 5000)
    admin = admin_client(stack, db)
    dispute = case["dispute"]
    error = assert_envelope(admin.refund(dispute, amount=5001), 409, "refund_exceeds_captured")
    assert "5000" in error["message"], error
    assert refunds_at_fake(stack, dispute) == {}
    assert refund_rows(db, case["payment_id"]) == []

    assert admin.refund(dispute, amount=1500).status_code == 201
    assert_envelope(admin.refund(dispute, amount=3501), 409, "refund_exceeds_captured")
    full_rest = admin.refund(dispute, amount=3500)
    assert full_rest.status_code == 201, full_rest.text
    assert_envelope(admin.refund(dispute, amount=1), 409, "nothing_to_refund")
    assert_envelope(admin.refund(dispute), 409, "nothing_to_refund")
    assert sorted(refunds_at_fake(stack, dispute)) == [f"dispute:{dispute}:refund:1", f"dispute:{dispute}:refund:2"]
    settle(stack)
    payment = wait_payment(db, case["payment_id"], "refunded")
    assert (payment["amount_refunded"], payment["amount_received"]) == (5000, 5000)
    assert fake_object(stack, case["charge"])["amount_refunded"] == 5000
    # Money that was never captured cannot be refunded.
    uncaptured = disputed_purchase(stack, db, 3000, captured=False)
    assert_envelope(admin.refund(uncaptured["dispute"], amount=100), 409, "payment_not_captured")
    assert refunds_at_fake(stack, uncaptured["dispute"]) == {}


def test_refund_without_amount_refunds_the_rest(stack, db):
    case = disputed_purchase(stack, db, 4000)
    admin = admin_client(stack, db)
    assert admin.refund(case["dispute"], amount=1000).status_code == 201
    rest = admin.refund(case["dispute"])
    assert rest.status_code == 201, rest.text
    assert rest.json()["amount"] == 3000
    at_fake = refunds_at_fake(stack, case["dispute"])
    assert [at_fake[k]["params"]["amount"] for k in sorted(at_fake)] == ["1000", "3000"]


def concurrent_refunds_round(stack, db):
    case = disputed_purchase(stack, db, 5000)
    admin = admin_client(stack, db)
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: admin.refund(case["dispute"], amount=700), range(10)))
    return case, answers


def test_concurrent_partial_refunds_never_exceed_the_captured_amount(stack, db):
    """Ten admins refund 700 of a 5 000 payment at once, in three rounds: seven refunds go
    through (4 900), three are refused with 409 (only 100 is left), and Stripe is never asked
    for more than what is left."""
    for _ in range(3):
        case, answers = concurrent_refunds_round(stack, db)
        settle(stack)
        rows = refund_rows(db, case["payment_id"])
        at_fake = refunds_at_fake(stack, case["dispute"])
        sent = [r for r in stack.stripe.received(method="POST", path_prefix="/v1/refunds")
                if r["headers"].get("Idempotency-Key", "").startswith(f"dispute:{case['dispute']}:refund:")]
        # The invariant that must hold whatever happens.
        live = [r for r in rows if r["status"] not in ("failed", "canceled")]
        assert sum(r["amount_cents"] for r in live) <= 5000
        assert sum(int(r["params"]["amount"]) for r in at_fake.values()) <= 5000
        charge = fake_object(stack, case["charge"])
        assert charge["amount_refunded"] <= charge["amount_captured"] == 5000
        # And the answers an admin should get.
        detail = [(a.status_code, a.json().get("error", {}).get("code")) for a in answers]
        assert sorted(a.status_code for a in answers) == [201] * 7 + [409] * 3, detail
        for answer in answers:
            if answer.status_code == 409:
                assert_envelope(answer, 409, "refund_exceeds_captured")
        assert [r["status"] for r in sent] == [200] * 7, \
            f"refunds beyond the remainder were sent to Stripe: {[(r['headers']['Idempotency-Key'], r['status']) for r in sent]}"
        assert len(rows) == 7 and {r["status"] for r in rows} == {"succeeded"}, \
            [(r["sequence"], r["amount_cents"], r["status"], r["failure_reason"]) for r in rows]
        assert sorted(at_fake) == sorted(f"dispute:{case['dispute']}:refund:{n}" for n in range(1, 8)), sorted(at_fake)
        assert charge["amount_refunded"] == 4900
        payment = wait_for(lambda: (p := payment_row(db, case["payment_id"]))["amount_refunded"] == 4900 and p,
                           what="amount_refunded 4900")
        assert payment["status"] == "succeeded" and payment["amount_received"] == 5000


def test_refunds_queued_behind_the_payment_lock_never_over_reserve(stack, db, admin_db):
    """The race, made deterministic: another transaction holds the payment row while four
    refunds of 2 000 (of 5 000) arrive (one per app worker); when it lets go they run one after
    another. Two fit; the other two must be refused with 409 before anything reaches Stripe."""
    case = disputed_purchase(stack, db, 5000)
    admin = admin_client(stack, db)
    workers = int(stack.app.env["WORKERS"])
    with psycopg.connect(stack.database_url) as holder:          # not autocommit: a transaction
        holder.execute("SELECT 1 FROM payments WHERE id = %s FOR UPDATE", (case["payment_id"],))
        pool = concurrent.futures.ThreadPoolExecutor(workers)
        futures = [pool.submit(admin.refund, case["dispute"], 2000) for _ in range(workers)]
        wait_for(lambda: admin_db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'payments' AND wait_event_type = 'Lock'"
            " AND query ILIKE '%%FROM payments%%FOR UPDATE%%' AND pid <> %s", (holder.info.backend_pid,)).fetchone()[0]
            >= workers, what="the refunds waiting on the payment row")
        holder.commit()
        answers = [f.result() for f in futures]
        pool.shutdown()
    settle(stack)
    detail = [(a.status_code, a.json().get("error", {}).get("code")) for a in answers]
    sent = [(r["headers"]["Idempotency-Key"], r["params"]["amount"], r["status"])
            for r in stack.stripe.received(method="POST", path_prefix="/v1/refunds")
            if r["headers"].get("Idempotency-Key", "").startswith(f"dispute:{case['dispute']}:refund:")]
    rows = [(r["sequence"], r["amount_cents"], r["status"], r["failure_reason"]) for r in refund_rows(db, case["payment_id"])]
    assert sorted(detail) == [(201, None), (201, None), (409, "refund_exceeds_captured"), (409, "refund_exceeds_captured")], \
        (detail, sent, rows)
    assert [status for _, _, status in sent] == [200, 200], sent
    assert [(amount, status) for _, amount, status, _ in rows] == [(2000, "succeeded"), (2000, "succeeded")], rows


def test_a_refused_refund_is_failed_and_frees_the_amount(stack, db):
    case = disputed_purchase(stack, db, 5000)
    admin = admin_client(stack, db)
    try:
        stack.stripe_control("POST", "/_control/faults", {"type": "error", "status": 400, "method": "POST",
                                                          "path_prefix": "/v1/refunds", "count": 1,
                                                          "error": {"type": "invalid_request_error", "code": "nope"}})
        failed = admin.refund(case["dispute"], amount=2000)
    finally:
        stack.stripe_control("DELETE", "/_control/faults")
    assert_envelope(failed, 502, "stripe_error")
    assert [(r["amount_cents"], r["status"]) for r in refund_rows(db, case["payment_id"])] == [(2000, "failed")]
    assert payment_row(db, case["payment_id"])["amount_refunded"] == 0
    # The failed reservation does not count: the whole amount can still be refunded.
    full = admin.refund(case["dispute"], amount=5000)
    assert full.status_code == 201, full.text
    executed_keys = sorted(k for k, r in refunds_at_fake(stack, case["dispute"]).items())
    assert executed_keys == [f"dispute:{case['dispute']}:refund:2"], executed_keys
    settle(stack)
    wait_payment(db, case["payment_id"], "refunded")


def test_a_refund_whose_outcome_is_unknown_is_resumed_and_never_made_twice(stack, db):
    """The refund reached Stripe but its answer was lost (every attempt): the reservation is
    kept, another amount is refused until it is settled, and the retry of that amount resumes
    it under the same key — one refund at Stripe, not two."""
    case = disputed_purchase(stack, db, 5000)
    admin = admin_client(stack, db)
    try:
        stack.stripe_control("POST", "/_control/faults", {"type": "drop", "when": "after", "method": "POST",
                                                          "path_prefix": "/v1/refunds", "count": 3})
        lost = admin.refund(case["dispute"], amount=2000)
    finally:
        stack.stripe_control("DELETE", "/_control/faults")
    assert_envelope(lost, 502, "stripe_unavailable")
    (row,) = refund_rows(db, case["payment_id"])
    assert (row["amount_cents"], row["status"], row["outcome_unknown"]) == (2000, "creating", True)
    assert fake_object(stack, case["charge"])["amount_refunded"] == 2000  # it did happen at Stripe

    other = admin.refund(case["dispute"], amount=1000)
    assert_envelope(other, 409, "refund_in_progress")
    again = admin.refund(case["dispute"], amount=2000)
    assert again.status_code == 201, again.text
    assert [(r["amount_cents"], r["status"] in ("pending", "succeeded"), r["outcome_unknown"])
            for r in refund_rows(db, case["payment_id"])] == [(2000, True, False)]
    keys = {r["headers"].get("Idempotency-Key") for r in stack.stripe.received(method="POST", path_prefix="/v1/refunds")
            if r["headers"].get("Idempotency-Key", "").startswith(f"dispute:{case['dispute']}:")}
    assert keys == {f"dispute:{case['dispute']}:refund:1"}, keys
    assert fake_object(stack, case["charge"])["amount_refunded"] == 2000
    settle(stack)
    assert payment_row(db, case["payment_id"])["amount_refunded"] == 2000


def test_refund_rows_follow_stripe_to_their_final_status(stack, db):
    case = disputed_purchase(stack, db, 6000)
    admin = admin_client(stack, db)
    try:
        stack.stripe_control("POST", "/_control/refunds/mode", {"status": "pending"})
        first = admin.refund(case["dispute"], amount=1000)
        second = admin.refund(case["dispute"], amount=2000)
    finally:
        stack.stripe_control("POST", "/_control/refunds/mode", {"status": "succeeded"})
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    assert first.json()["status"] == second.json()["status"] == "pending"
    settle(stack)
    stack.stripe_control("POST", f"/_control/refunds/{first.json()['stripe_refund_id']}/status", {"status": "succeeded"})
    stack.stripe_control("POST", f"/_control/refunds/{second.json()['stripe_refund_id']}/status",
                         {"status": "failed", "failure_reason": "expired_or_canceled_card"})
    wait_for(lambda: [(r["amount_cents"], r["status"]) for r in refund_rows(db, case["payment_id"])] ==
             [(1000, "succeeded"), (2000, "failed")], what="refund rows at their final status")
    failed = [r for r in refund_rows(db, case["payment_id"]) if r["status"] == "failed"][0]
    assert failed["failure_reason"] == "expired_or_canceled_card"
    # The failed refund's amount can be refunded again: 5 000 is left.
    assert_envelope(admin.refund(case["dispute"], amount=5001), 409, "refund_exceeds_captured")
    rest = admin.refund(case["dispute"], amount=5000)
    assert rest.status_code == 201, rest.text
    settle(stack)
    assert fake_object(stack, case["charge"])["amount_refunded"] == 6000


# ------------------------------------------------------------------------------------------
# Who may call the admin routes
# ------------------------------------------------------------------------------------------

def admin_routes(dispute_id):
    return [
        ("GET", "/api/admin/disputes", None),
        ("GET", "/api/admin/disputes?status=open&kind=platform", None),
        ("GET", f"/api/admin/disputes/{dispute_id}", None),
        ("POST", f"/api/admin/disputes/{dispute_id}/refund", {"amount": 100, "reason": "r"}),
        ("POST", f"/api/admin/disputes/{dispute_id}/resolve", {"outcome": "refund_buyer", "note": "n"}),
        ("POST", f"/api/admin/disputes/{dispute_id}/evidence", {"evidence": {"product_description": "x"}, "submit": False}),
    ]


def test_admin_routes_auth_matrix(stack, db):
    case = disputed_purchase(stack, db, 5000)
    stranger_seller = make_profile(db, "seller")
    admin = admin_client(stack, db)
    settle(stack)
    before = table_fingerprint(db)
    requests_before = len(stack.stripe.received(method="POST"))
    for method, path, body in admin_routes(case["dispute"]):
        kwargs = {"json": body} if body is not None else {}
        client = Client(stack, None)
        assert_envelope(client.request(method, path, **kwargs), 401, "unauthenticated")
        assert_envelope(client.request(method, path, headers={"Authorization": "Bearer x.y.z"}, **kwargs), 401,
                        "unauthenticated")
        for profile in (case["buyer"], case["seller"], stranger_seller):
            assert_envelope(Client(stack, profile).request(method, path, **kwargs), 403, "forbidden")
    assert table_fingerprint(db) == before
    assert len(stack.stripe.received(method="POST")) == requests_before
    assert one(db, "SELECT status FROM disputes WHERE id = %s", (case["dispute"],))["status"] == "open"

    # An admin: 404 for a dispute that does not exist, 400 for bad input naming the field.
    for method, path, body in admin_routes(uuid.uuid4())[2:]:
        assert_envelope(admin.request(method, path, **({"json": body} if body else {})), 404, "not_found")
    dispute = case["dispute"]
    bad = [
        (admin.refund(dispute, amount=0), "amount"),
        (admin.refund(dispute, amount=-5), "amount"),
        (admin.post(f"/api/admin/disputes/{dispute}/refund", json={"amount": "100", "reason": "r"}), "amount"),
        (admin.post(f"/api/admin/disputes/{dispute}/refund", json={"amount": 100}), "reason"),
        (admin.post(f"/api/admin/disputes/{dispute}/resolve", json={"outcome": "refund_everyone"}), "outcome"),
        (admin.post(f"/api/admin/disputes/{dispute}/resolve", json={}), "outcome"),
        (admin.post(f"/api/admin/disputes/{dispute}/evidence", json={"evidence": "text", "submit": False}), "evidence"),
        (admin.post(f"/api/admin/disputes/{dispute}/evidence", json={"evidence": {"product_description": "y"}, "submit": "yes"}), "submit"),
        (admin.post(f"/api/admin/disputes/{dispute}/evidence", json={"evidence": {"x": "y"}}), "evidence.x"),
        (admin.get("/api/admin/disputes?kind=other"), "kind"),
        (admin.get("/api/admin/disputes?status=open;drop"), "status"),
    ]
    for answer, field in bad:
        error = assert_envelope(answer, 400, "invalid_field")
        assert field in error["message"], (field, error)
    assert_envelope(admin.get("/api/admin/disputes?cursor=not-a-cursor"), 400, "invalid_field")
    assert table_fingerprint(db) == before
    assert refunds_at_fake(stack, dispute) == {}


def wait_for_room_in_window(seconds_needed=10):
    """The admin limits use fixed 60-second windows; start a burst well inside one."""
    into = time.time() % 60
    if into > 60 - seconds_needed:
        time.sleep(60 - into + 0.5)


@pytest.fixture(scope="module")
def tight_stack(stack):
    """A second `payments serve` (same database, same fake Stripe) with tight admin limits,
    behind its own nginx; both stopped at the end of the module."""
    root = stack.root / f"tight-{uuid.uuid4().hex[:6]}"
    root.mkdir()
    env = {**stack.app.env, "FCGI_SOCKET": str(root / "app.sock"),
           "RATE_LIMITS": "notifications=10/60,intent-ip=5000/60,capture=5000/60," + TIGHT_LIMITS}
    app = App(env, root / "app.log")
    nginx = Nginx(root / "nginx", env["FCGI_SOCKET"], stack.root / "tls", API_RATE="2000r/s", API_BURST=4000,
                  WEBHOOK_RATE="2000r/s", WEBHOOK_BURST=4000)
    app.start()
    try:
        nginx.start()
        try:
            yield SimpleNamespace(url=nginx.url, app=app)
        finally:
            nginx.stop()
    finally:
        app.stop()


class TightClient(Client):
    def __init__(self, tight, profile, **kwargs):
        super().__init__(None, profile, **kwargs)
        self.tight = tight

    def request(self, method, path, **kwargs):
        headers = {"User-Agent": self.user_agent, **self.profile["headers"], **kwargs.pop("headers", {})}
        return self.session.request(method, self.tight.url(path), headers=headers, verify=False, timeout=60,
                                    allow_redirects=False, **kwargs)


@pytest.mark.parametrize("route,key_prefix", [("refund", "admin:refund"), ("resolve", "admin:resolve")])
def test_admin_rate_limits_per_client_ip(stack, tight_stack, db, route, key_prefix):
    profile = make_profile(db, "admin")
    admin = TightClient(tight_stack, profile)
    unknown = uuid.uuid4()
    call = (lambda client: client.refund(unknown, amount=100)) if route == "refund" else \
        (lambda client: client.resolve(unknown, "dismiss"))
    wait_for_room_in_window()
    answers = [call(admin) for _ in range(ADMIN_LIMIT)]
    assert [a.status_code for a in answers] == [404] * ADMIN_LIMIT, [a.text for a in answers if a.status_code != 404]
    limited = call(admin)
    assert_envelope(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    window = many(db, "SELECT key, count FROM rate_limits WHERE key = %s", (f"{key_prefix}:{admin.ip}",))
    assert [w["count"] for w in window] == [ADMIN_LIMIT + 1], window
    # The window is the client IP's, not the admin's: the same admin from another address
    # goes through, and the other admin route keeps its own window.
    assert call(TightClient(tight_stack, profile)).status_code == 404
    other = "admin:resolve" if route == "refund" else "admin:refund"
    assert many(db, "SELECT 1 FROM rate_limits WHERE key = %s", (f"{other}:{admin.ip}",)) == []
    other_call = admin.resolve(unknown, "dismiss") if route == "refund" else admin.refund(unknown, amount=1)
    assert_envelope(other_call, 404, "not_found")
    # The limit is checked before authentication: a buyer from the limited address gets 429, not 403.
    assert_envelope(call(TightClient(tight_stack, make_profile(db, "buyer"), ip=admin.ip)), 429, "rate_limited")
    # The rejected attempt is audited too.
    rows = audit_by_request(db, request_id(limited))
    assert [(r["success"], r["error_code"], r["ip"]) for r in rows] == [(False, "rate_limited", admin.ip)], rows


def test_admin_rate_limit_holds_under_concurrency(stack, tight_stack, db):
    admin = TightClient(tight_stack, make_profile(db, "admin"))
    unknown = uuid.uuid4()
    wait_for_room_in_window()
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: admin.refund(unknown, amount=100), range(20)))
    assert sorted(a.status_code for a in answers) == [404] * ADMIN_LIMIT + [429] * (20 - ADMIN_LIMIT)
    assert [w["count"] for w in many(db, "SELECT count FROM rate_limits WHERE key = %s", (f"admin:refund:{admin.ip}",))] == [20]


# ------------------------------------------------------------------------------------------
# The audit trail
# ------------------------------------------------------------------------------------------

def admin_actions(stack, db):
    """A dispute worked through by an admin from its own address and user agent: each action's
    (response, expected success)."""
    case = disputed_purchase(stack, db, 8000)
    admin = admin_client(stack, db, user_agent="AdminConsole/7.1 (audit test)")
    dispute = case["dispute"]
    actions = [
        (admin.refund(dispute, amount=2000, reason="half the parcel was missing"), True),
        (admin.refund(dispute, amount=9000, reason="too much"), False),
        (admin.evidence(dispute, {"product_description": "x"}, submit=False), False),
        (admin.resolve(dispute, "refund_buyer", note="refund the rest"), True),
        (admin.resolve(dispute, "dismiss", note="again"), False),
        (admin.refund(dispute, amount=1, reason="after the end"), False),
    ]
    assert [a.status_code for a, _ in actions] == [201, 409, 409, 200, 409, 409], [a.text for a, _ in actions]
    return case, admin, actions


def test_every_admin_action_is_audited_with_admin_request_ip_and_user_agent(stack, db):
    case, admin, actions = admin_actions(stack, db)
    for response, succeeded in actions:
        rid = request_id(response)
        rows = audit_by_request(db, rid)
        assert rows, f"no audit row for {response.request.method} {response.request.path_url} ({response.status_code})"
        for row in rows:
            assert (row["actor"], row["actor_role"], row["request_id"], row["ip"], row["user_agent"]) == \
                (admin.profile["id"], "admin", rid, admin.ip, admin.user_agent), row
            assert row["entity_id"] == case["dispute"] and row["entity_type"] == "dispute", row
        outcome = [r for r in rows if r["operation"].startswith("dispute.")]
        assert {r["success"] for r in outcome} == {succeeded}, rows
        if not succeeded:
            assert {r["error_code"] for r in outcome} == {response.json()["error"]["code"]}, rows


def test_successful_admin_actions_record_old_and_new_values(stack, db):
    case, admin, actions = admin_actions(stack, db)
    for response, succeeded in actions:
        if not succeeded:
            continue
        rows = [r for r in audit_by_request(db, request_id(response)) if r["success"]]
        assert rows, response.text
        for row in rows:
            assert isinstance(row["old_values"], dict) and row["old_values"], \
                f"{row['operation']} audit row has no old values: {row}"
            assert isinstance(row["new_values"], dict) and row["new_values"], row
    refund_row = [r for r in audit_by_request(db, request_id(actions[0][0])) if r["success"]][0]
    assert refund_row["new_values"]["amount"] == 2000
    resolve_row = [r for r in audit_by_request(db, request_id(actions[3][0])) if r["operation"] == "dispute.resolve"][0]
    assert resolve_row["old_values"] == {"status": "open"}
    assert (resolve_row["new_values"]["status"], resolve_row["new_values"]["outcome"]) == ("resolved", "refund_buyer")


def test_failed_admin_actions_record_old_and_new_values(stack, db):
    """Issue 9 §6: old and new values on every admin action's row, success or failure (for a
    rejected action: what the dispute was, and what was asked)."""
    case, admin, actions = admin_actions(stack, db)
    for response, succeeded in actions:
        if succeeded:
            continue
        rows = [r for r in audit_by_request(db, request_id(response)) if not r["success"]]
        assert rows, response.text
        assert any(r["old_values"] is not None and r["new_values"] is not None for r in rows), \
            f"{response.request.path_url} {response.status_code}: failure audit rows without old/new values: {rows}"


def test_audit_rows_cannot_be_altered(stack, db):
    case, admin, actions = admin_actions(stack, db)
    row = audit_by_request(db, request_id(actions[0][0]))[0]
    for statement in ("UPDATE payment_audit_logs SET success = NOT success, actor_profile_id = NULL WHERE id = %s",
                      "DELETE FROM payment_audit_logs WHERE id = %s"):
        with pytest.raises(psycopg.Error, match="append-only"):
            db.execute(statement, (row["id"],))
    with pytest.raises(psycopg.Error, match="append-only"):
        db.execute("TRUNCATE payment_audit_logs")
    assert audit_by_request(db, request_id(actions[0][0]))[0] == row


# ------------------------------------------------------------------------------------------
# List and detail
# ------------------------------------------------------------------------------------------

def walk(admin, query):
    pages, cursor = [], None
    while True:
        answer = admin.get(f"/api/admin/disputes?{query}" + (f"&cursor={cursor}" if cursor else ""))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["data"]) <= 50
        pages.append(body["data"])
        cursor = body.get("next_cursor")
        if not cursor:
            return pages
        assert len(pages) < 200, "pagination does not end"


def test_admin_dispute_list_filters_and_cursor_pagination(stack, db):
    case = disputed_purchase(stack, db, 5000)
    admin = admin_client(stack, db)
    # 55 dismissed platform disputes created at the same instant: any run of 50+ rows holds a
    # page boundary, so the cursor must break ties on id.
    bulk = [r[0] for r in db.execute(
        "INSERT INTO disputes (payment_id, kind, status, reason, created_at)"
        " SELECT %s, 'platform', 'dismissed', 'bulk ' || g, timestamptz '2001-02-03 04:05:06.789+00'"
        " FROM generate_series(1, 55) g RETURNING id::text", (case["payment_id"],)).fetchall()]

    pages = walk(admin, "status=dismissed&kind=platform")
    seen = [d["id"] for page in pages for d in page]
    assert len(seen) == len(set(seen)), "a dispute appeared on two pages"
    assert sorted(d for d in seen if d in set(bulk)) == sorted(bulk)
    assert all(d["status"] == "dismissed" and d["kind"] == "platform" for page in pages for d in page)
    assert len(pages) >= 2 and all(len(page) == 50 for page in pages[:-1])
    keys = [(d["created_at"], d["id"]) for page in pages for d in page]
    assert keys == sorted(keys, reverse=True), "not newest first (ties by id)"

    opened = [d for page in walk(admin, "status=open&kind=platform") for d in page]
    assert case["dispute"] in [d["id"] for d in opened]
    assert not set(bulk) & {d["id"] for d in opened}
    assert all(d["status"] == "open" and d["kind"] == "platform" for d in opened)
    chargebacks = [d for page in walk(admin, "kind=chargeback") for d in page]
    assert all(d["kind"] == "chargeback" for d in chargebacks)
    assert not ({case["dispute"], *bulk} & {d["id"] for d in chargebacks})
    everything = {d["id"] for page in walk(admin, "") for d in page}
    assert {case["dispute"], *bulk} <= everything


def test_admin_dispute_detail_has_payment_parties_amounts_refunds_and_history(stack, db):
    case = disputed_purchase(stack, db, 6000)
    admin = admin_client(stack, db)
    refunded = admin.refund(case["dispute"], amount=2500, reason="partial")
    assert refunded.status_code == 201, refunded.text
    settle(stack)
    wait_for(lambda: payment_row(db, case["payment_id"])["amount_refunded"] == 2500, what="amount_refunded")
    shown = admin.dispute(case["dispute"])
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert (body["id"], body["kind"], body["status"], body["payment_id"], body["opened_by"]) == \
        (case["dispute"], "platform", "open", case["payment_id"], case["buyer"]["id"])
    payment = body["payment"]
    assert (payment["kind"], payment["status"], payment["buyer_id"], payment["seller_id"], payment["amount"],
            payment["amount_received"], payment["amount_refunded"], payment["currency"]) == \
        ("purchase", "succeeded", case["buyer"]["id"], case["seller"]["id"], 6000, 6000, 2500, "usd")
    assert [(r["amount"], r["status"], r["stripe_refund_id"]) for r in body["refunds"]] == \
        [(2500, "succeeded", refunded.json()["stripe_refund_id"])]
    operations = [h["operation"] for h in body["history"]]
    assert "dispute.open" in operations and "dispute.refund" in operations, operations
    refund_entry = [h for h in body["history"] if h["operation"] == "dispute.refund"][-1]
    assert (refund_entry["actor_profile_id"], refund_entry["request_id"], refund_entry["success"]) == \
        (admin.profile["id"], request_id(refunded), True)
    open_entry = [h for h in body["history"] if h["operation"] == "dispute.open"][0]
    assert open_entry["actor_profile_id"] == case["buyer"]["id"]
