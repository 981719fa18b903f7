"""Issue 13, database roles and sockets: the app serves as a role with DML only, so even a
compromised app cannot rewrite the audit trail or switch its append-only trigger off; migrations
run as the owner and grant that role its privileges; the FastCGI sockets are 0660."""

import grp
import os
import stat
import uuid

import psycopg
import pytest

from harness.api import make_profile
from harness.stack import APP_ROLE, NGINX_WORKER_GROUP


@pytest.fixture
def app_db(stack):
    """An autocommit connection as the app's role, exactly as the app connects."""
    with psycopg.connect(stack.app_database_url, autocommit=True) as connection:
        yield connection


def audited(db):
    """One audit row (written by the owner, for the test) and the table's fingerprint."""
    row_id = db.execute("INSERT INTO payment_audit_logs (operation, entity_type, success) VALUES ('roles.probe', 'test', true)"
                        " RETURNING id").fetchone()[0]
    return row_id


def fingerprint(db):
    return db.execute("SELECT count(*), md5(coalesce(string_agg(a::text, ',' ORDER BY a.id), '')) "
                      "FROM payment_audit_logs a").fetchone()


def test_the_app_serves_as_a_plain_role_that_owns_nothing(stack, app_db, db):
    assert app_db.execute("SELECT current_user").fetchone()[0] == APP_ROLE
    assert app_db.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
                          ).fetchone() == (False, False, False)
    owned = db.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) = %s", (APP_ROLE,)).fetchone()[0]
    assert owned == 0
    # The migrations ran as the owner, the requests as the app's role.
    assert db.execute("SELECT current_user").fetchone()[0] != APP_ROLE
    assert stack.get("/api/ready").status_code == 200


TAMPERING = {
    "update": "UPDATE payment_audit_logs SET success = NOT success WHERE id = {id}",
    "delete": "DELETE FROM payment_audit_logs WHERE id = {id}",
    "truncate": "TRUNCATE payment_audit_logs",
    "disable_triggers": "ALTER TABLE payment_audit_logs DISABLE TRIGGER ALL",
    "disable_one_trigger": "ALTER TABLE payment_audit_logs DISABLE TRIGGER payment_audit_logs_no_update_delete",
    "drop_trigger": "DROP TRIGGER payment_audit_logs_no_update_delete ON payment_audit_logs",
    "drop_truncate_trigger": "DROP TRIGGER payment_audit_logs_no_truncate ON payment_audit_logs",
    "drop_table": "DROP TABLE payment_audit_logs",
    "replace_trigger_function": "CREATE OR REPLACE FUNCTION payment_audit_logs_reject_change() RETURNS trigger "
                                "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
    "grant_itself": "GRANT UPDATE, DELETE, TRUNCATE ON payment_audit_logs TO CURRENT_USER",
}


@pytest.mark.parametrize("statement", TAMPERING)
def test_the_app_role_cannot_change_remove_or_unprotect_audit_rows(app_db, db, statement):
    row_id = audited(db)
    before = fingerprint(db)
    # Refused by privileges (not by the trigger, which the owner could switch off): "permission
    # denied" or "must be owner". Always rolled back, so a regression cannot damage the stack.
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
        with app_db.transaction(force_rollback=True):
            app_db.execute(TAMPERING[statement].format(id=row_id))
            if statement == "grant_itself":  # a no-op GRANT only warns: prove nothing was granted
                app_db.execute(TAMPERING["update"].format(id=row_id))
    message = str(refused.value)
    assert "append-only" not in message and ("permission denied" in message or "must be owner" in message), message
    assert fingerprint(db) == before
    triggers = db.execute("SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'payment_audit_logs'::regclass "
                          "AND NOT tgisinternal ORDER BY 1").fetchall()
    assert triggers == [("payment_audit_logs_no_truncate", "O"), ("payment_audit_logs_no_update_delete", "O")]


def test_the_app_role_inserts_and_reads_audit_rows_and_does_dml_elsewhere(app_db):
    with app_db.transaction(force_rollback=True):
        row_id = app_db.execute("INSERT INTO payment_audit_logs (operation, entity_type, success) "
                                "VALUES ('roles.probe', 'test', true) RETURNING id").fetchone()[0]
        assert app_db.execute("SELECT operation FROM payment_audit_logs WHERE id = %s", (row_id,)).fetchone() == ("roles.probe",)
        profile = make_profile(app_db, "buyer")
        app_db.execute("UPDATE profiles SET email = 'x@example.test' WHERE id = %s", (profile["id"],))
        app_db.execute("DELETE FROM notifications WHERE profile_id = %s", (profile["id"],))
    # The schema is the owner's: the app may read the migrations applied, not record or create any.
    assert app_db.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] > 0
    for statement in ("INSERT INTO schema_migrations (version, checksum) VALUES ('9999_x', 'x')",
                      "CREATE TABLE roles_probe (id int)", "TRUNCATE rate_limits", "ALTER TABLE payments DISABLE TRIGGER ALL"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with app_db.transaction(force_rollback=True):
                app_db.execute(statement)


def test_migrate_refuses_a_missing_or_privileged_app_role(stack):
    missing = f"nobody_{uuid.uuid4().hex[:8]}"
    result = stack.app.migrate(DATABASE_APP_ROLE=missing)
    assert result.returncode == 1 and missing in result.stderr and "does not exist" in result.stderr, result
    for privileged in ("payments", "postgres"):  # the owner itself, a superuser
        result = stack.app.migrate(DATABASE_APP_ROLE=privileged)
        assert result.returncode == 1 and "DATABASE_APP_ROLE" in result.stderr, result
    result = stack.app.migrate(DATABASE_APP_ROLE='x"; DROP TABLE payments; --')
    assert result.returncode == 1 and "DATABASE_APP_ROLE" in result.stderr, result
    again = stack.app.migrate()
    assert again.returncode == 0 and APP_ROLE in again.stdout, again


def test_migrate_takes_back_privileges_granted_by_hand(stack, db, app_db):
    db.execute(f"GRANT TRUNCATE, UPDATE ON payment_audit_logs TO {APP_ROLE}")
    try:
        assert app_db.execute("SELECT has_table_privilege('payment_audit_logs', 'TRUNCATE')").fetchone()[0]
        assert stack.app.migrate().returncode == 0
        assert app_db.execute("SELECT has_table_privilege('payment_audit_logs', 'TRUNCATE'), "
                              "has_table_privilege('payment_audit_logs', 'UPDATE'), "
                              "has_table_privilege('payment_audit_logs', 'INSERT')").fetchone() == (False, False, True)
    finally:
        db.execute(f"REVOKE TRUNCATE, UPDATE ON payment_audit_logs FROM {APP_ROLE}")


def test_the_fastcgi_sockets_are_0660_for_nginx_workers_only(stack):
    core = stack.app.socket_path
    for path in (core, core.removesuffix(".sock") + "-stripe.sock"):
        info = os.stat(path)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o660, oct(info.st_mode)
        if os.geteuid() == 0:  # nginx's workers are nobody:nogroup: the group lets them in
            assert grp.getgrgid(info.st_gid).gr_name == NGINX_WORKER_GROUP
    # …and through that group nginx reaches both lanes.
    assert stack.get("/api/health").status_code == 200
