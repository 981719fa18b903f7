"""Issue 3, the audit log: successful changes and rejected attempts are recorded with actor,
role, request id (= the response's X-Request-Id), ip, user agent and old/new values; the table is
append-only at the database (UPDATE, DELETE and TRUNCATE fail for every role)."""

import json
import uuid

import psycopg
import pytest

from harness.api import make_listing, make_profile, onboarded_seller, table_fingerprint, token
from harness.assertions import assert_envelope, request_id
from security_routes import ROLE_RESTRICTED_ROUTES, audit_rows, prepare, send, settle


pytestmark = pytest.mark.usefixtures("fresh_ip_windows")


def notification(db, profile):
    return db.execute("INSERT INTO notifications (profile_id, kind) VALUES (%s, 'audit_test') RETURNING id::text",
                      (profile["id"],)).fetchone()[0]


def test_a_successful_change_is_audited_with_actor_request_and_values(stack, db):
    profile = make_profile(db, "seller")
    notification_id = notification(db, profile)
    agent = f"audit-test-agent/{uuid.uuid4().hex}"
    response = stack.post(f"/api/notifications/{notification_id}/read", json={},
                          headers={**profile["headers"], "User-Agent": agent})
    assert response.status_code == 200, response.text
    read_at = response.json()["read_at"]
    stored = db.execute("SELECT read_at FROM notifications WHERE id = %s", (notification_id,)).fetchone()[0]
    assert stored is not None

    rows = audit_rows(db, request_id(response))
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["operation"] == "notification.read"
    assert (row["entity_type"], row["entity_id"]) == ("notification", notification_id)
    assert (row["actor_profile_id"], row["actor_role"]) == (profile["id"], "seller")
    assert row["request_id"] == request_id(response)
    assert row["ip"] == "127.0.0.1"
    assert row["user_agent"] == agent
    assert row["old_values"] == {"read_at": None}
    assert row["new_values"] == {"read_at": read_at}
    assert (row["success"], row["error_code"]) == (True, None)
    # The row never carries the credential.
    assert profile["headers"]["Authorization"].split()[1] not in json.dumps(row, default=str)


def test_a_long_user_agent_is_truncated_not_refused(stack, db):
    profile = make_profile(db, "buyer")
    notification_id = notification(db, profile)
    agent = "A" * 2000
    response = stack.post(f"/api/notifications/{notification_id}/read", json={},
                          headers={**profile["headers"], "User-Agent": agent})
    assert response.status_code == 200, response.text
    assert [r["user_agent"] for r in audit_rows(db, request_id(response))] == ["A" * 512]


def test_create_intent_is_audited_with_the_payment_it_created(stack, db):
    seller = onboarded_seller(stack, db)
    listing_id = make_listing(db, seller, price=2500)
    buyer = make_profile(db, "buyer")
    settle(stack)
    response = stack.post("/api/payments/create-intent", json={"listing_id": listing_id},
                          headers={**buyer["headers"], "User-Agent": "audit-intent"})
    assert response.status_code == 201, response.text
    body = response.json()
    rows = [r for r in audit_rows(db, request_id(response)) if r["operation"] == "payment.create"]
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["entity_type"], row["entity_id"]) == ("payment", body["payment_id"])
    assert (row["actor_profile_id"], row["actor_role"], row["ip"], row["user_agent"]) == \
        (buyer["id"], "buyer", "127.0.0.1", "audit-intent")
    assert row["success"] is True and row["error_code"] is None
    assert row["new_values"]["payment_intent_id"] == body["payment_intent_id"]
    assert row["new_values"]["amount"] == 2500
    assert body["client_secret"] not in json.dumps(row, default=str)
    assert db.execute("SELECT count(*) FROM payments WHERE id = %s AND buyer_id = %s",
                      (body["payment_id"], buyer["id"])).fetchone()[0] == 1


def test_another_users_notification_is_a_failed_attempt_on_record(stack, db):
    victim = make_profile(db, "buyer")
    attacker = make_profile(db, "buyer")
    notification_id = notification(db, victim)
    before = table_fingerprint(db)
    response = stack.post(f"/api/notifications/{notification_id}/read", json={},
                          headers={**attacker["headers"], "User-Agent": "attacker-agent"})
    assert_envelope(response, 404, "not_found")
    assert table_fingerprint(db) == before
    rows = audit_rows(db, request_id(response))
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["operation"], row["entity_type"], row["entity_id"]) == ("notification.read", "notification", notification_id)
    assert (row["actor_profile_id"], row["actor_role"]) == (attacker["id"], "buyer")
    assert (row["success"], row["error_code"]) == (False, "not_found")
    assert (row["request_id"], row["ip"], row["user_agent"]) == (request_id(response), "127.0.0.1", "attacker-agent")
    assert row["new_values"] is None


def test_a_csrf_refusal_is_a_failed_attempt_on_record(stack, db):
    profile = make_profile(db, "buyer")
    notification_id = notification(db, profile)
    response = stack.post(f"/api/notifications/{notification_id}/read", json={},
                          headers={"Cookie": f"access_token={token(profile['user_id'])}; csrf_token=one",
                                   "X-CSRF-Token": "two", "User-Agent": "csrf-agent"})
    assert_envelope(response, 403, "csrf_failed")
    rows = audit_rows(db, request_id(response))
    assert [(r["operation"], r["entity_id"], r["success"], r["error_code"], r["ip"], r["user_agent"]) for r in rows] == \
        [("notification.read", notification_id, False, "csrf_failed", "127.0.0.1", "csrf-agent")], rows
    assert db.execute("SELECT read_at FROM notifications WHERE id = %s", (notification_id,)).fetchone()[0] is None


AUDITED_ROLE_CASES = [(route, role) for route in ROLE_RESTRICTED_ROUTES if route.audit for role in route.denied_roles]


@pytest.mark.parametrize("route,role", AUDITED_ROLE_CASES, ids=[f"{r.id} as {role}" for r, role in AUDITED_ROLE_CASES])
def test_a_forbidden_attempt_names_the_authenticated_caller(stack, db, route, role):
    """The token was verified and the profile looked up: the record of a refused privilege
    escalation says who tried (SPEC 7: every failure is audited with its actor)."""
    prepared = prepare(route, stack, db)
    intruder = make_profile(db, role)
    response = send(stack, prepared, {**intruder["headers"], "User-Agent": "forbidden-agent"})
    assert_envelope(response, 403, "forbidden")
    rows = audit_rows(db, request_id(response))
    assert [(r["operation"], r["success"], r["error_code"], r["user_agent"]) for r in rows] == \
        [(route.audit, False, "forbidden", "forbidden-agent")], rows
    assert (rows[0]["actor_profile_id"], rows[0]["actor_role"]) == (intruder["id"], role), rows


def test_read_only_routes_write_no_audit_rows(stack, db):
    profile = make_profile(db, "admin")
    for path in ("/api/me", "/api/notifications", "/api/payments", "/api/admin/audit-logs"):
        response = stack.get(path, headers=profile["headers"])
        assert response.status_code == 200, (path, response.text)
        assert audit_rows(db, request_id(response)) == []


def test_admins_read_the_trail_of_one_entity(stack, db):
    profile = make_profile(db, "buyer")
    notification_id = notification(db, profile)
    intruder = make_profile(db, "seller")
    refused = stack.post(f"/api/notifications/{notification_id}/read", json={}, headers=intruder["headers"])
    done = stack.post(f"/api/notifications/{notification_id}/read", json={}, headers=profile["headers"])
    assert (refused.status_code, done.status_code) == (404, 200)
    admin = make_profile(db, "admin")
    trail = stack.get(f"/api/admin/audit-logs?entity_type=notification&entity_id={notification_id}", headers=admin["headers"])
    assert trail.status_code == 200, trail.text
    entries = trail.json()["data"]
    # Newest first.
    assert [(e["request_id"], e["success"], e.get("error_code"), e.get("actor_profile_id")) for e in entries] == [
        (request_id(done), True, None, profile["id"]),
        (request_id(refused), False, "not_found", intruder["id"]),
    ]


# Append-only at the database ---------------------------------------------------------------

def audit_snapshot(connection):
    return connection.execute(
        "SELECT count(*), md5(coalesce(string_agg(a::text, ',' ORDER BY a.id), '')) FROM payment_audit_logs a"
    ).fetchone()


def some_audit_row(stack, db):
    profile = make_profile(db, "buyer")
    notification_id = notification(db, profile)
    response = stack.post(f"/api/notifications/{notification_id}/read", json={}, headers=profile["headers"])
    assert response.status_code == 200
    return db.execute("SELECT id FROM payment_audit_logs WHERE request_id = %s", (request_id(response),)).fetchone()[0]


TAMPERING = {
    "update_one_row": "UPDATE payment_audit_logs SET success = NOT success, error_code = 'rewritten' WHERE id = {id}",
    "update_actor": "UPDATE payment_audit_logs SET actor_profile_id = NULL WHERE id = {id}",
    "delete_one_row": "DELETE FROM payment_audit_logs WHERE id = {id}",
    "delete_everything": "DELETE FROM payment_audit_logs",
    "truncate": "TRUNCATE payment_audit_logs",
    "truncate_cascade": "TRUNCATE payment_audit_logs RESTART IDENTITY CASCADE",
}


@pytest.mark.parametrize("who", ["app_user", "superuser"])
@pytest.mark.parametrize("statement", TAMPERING)
def test_audit_rows_cannot_be_changed_or_removed(stack, db, statement, who):
    row_id = some_audit_row(stack, db)
    connection = db if who == "app_user" else psycopg.connect(stack.pg.admin_url.replace("/postgres?", "/payments?"),
                                                               autocommit=True)
    try:
        before = audit_snapshot(db)
        # In a transaction that is always rolled back: were the trigger missing, the shared
        # stack would keep its audit trail and this test would still fail below.
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            with connection.transaction(force_rollback=True):
                connection.execute(TAMPERING[statement].format(id=row_id))
        assert "append-only" in str(refused.value), refused.value
        assert audit_snapshot(db) == before
    finally:
        if connection is not db:
            connection.close()
