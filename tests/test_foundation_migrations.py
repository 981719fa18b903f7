"""`payments migrate`: every file applied once, a no-op when current, and a refusal to run
when an applied file was edited."""

import shutil
import uuid

import psycopg
import pytest

from harness.paths import SQL_DIR

SPEC_TABLES = {"profiles", "listings", "milestones", "payments", "refunds", "transfers", "disputes",
               "webhook_events", "rate_limits", "payment_audit_logs", "notifications",
               "idempotency_keys", "schema_migrations"}
APPLIED = "SELECT version::text, applied_at, checksum FROM schema_migrations ORDER BY version"
TABLES = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"


@pytest.fixture
def fresh_database(stack, admin_db):
    """A new empty database in the stack's cluster; its DATABASE_URL."""
    name = f"migrate_{uuid.uuid4().hex[:8]}"
    admin_db.execute(f'CREATE DATABASE "{name}" OWNER payments')
    yield stack.pg.url(name)
    admin_db.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def snapshot(url):
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(APPLIED).fetchall(), connection.execute(TABLES).fetchall()


def test_every_migration_file_is_applied(db):
    files = sorted(SQL_DIR.glob("[0-9]*.sql"))
    assert files, "no migration files in sql/"
    assert len(db.execute(APPLIED).fetchall()) == len(files)
    tables = {row[0] for row in db.execute(TABLES).fetchall()}
    assert SPEC_TABLES <= tables, SPEC_TABLES - tables
    columns = db.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'rate_limits' "
                         "ORDER BY ordinal_position").fetchall()
    assert [c[0] for c in columns] == ["key", "window_start", "count"]


def test_migrate_is_a_no_op_when_up_to_date(stack):
    before = snapshot(stack.database_url)
    result = stack.app.migrate()
    assert result.returncode == 0, result
    assert snapshot(stack.database_url) == before


def test_edited_migration_is_refused_and_nothing_changes(stack, fresh_database, tmp_path):
    sql = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql)
    first = stack.app.migrate(DATABASE_URL=fresh_database, MIGRATIONS_DIR=str(sql))
    assert first.returncode == 0, first
    before = snapshot(fresh_database)

    edited = sorted(sql.glob("[0-9]*.sql"))[0]
    edited.write_text(edited.read_text() + "\n-- edited after it was applied\n")
    (sql / "9999_pending_probe.sql").write_text("CREATE TABLE pending_probe (id int);\n")
    result = stack.app.migrate(DATABASE_URL=fresh_database, MIGRATIONS_DIR=str(sql))

    assert result.returncode != 0
    number = edited.name.split("_")[0]
    output = result.stdout + result.stderr
    assert edited.name in output or number in output, output
    assert snapshot(fresh_database) == before, "a refused migrate changed the database"
