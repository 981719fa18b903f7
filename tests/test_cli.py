"""Issue 18, the command line on swift-argument-parser: `--help` on every subcommand only
prints help (no table changes, no Stripe call), misuse exits 64 with a message and changes
nothing, `--version` names our version and the pinned Stripe API version, and the
development-only commands (`token`, `seed-demo`, `make run`) refuse a live Stripe key."""

import os
import subprocess
import uuid

import psycopg
import pytest
import yaml

from harness.paths import BINARY, REPO
from harness.stack import APP_ROLE
from harness.processes import run

PINNED_STRIPE_VERSION = "2024-06-20"

SUBCOMMANDS = [
    ["serve"], ["migrate"], ["token"], ["seed-demo"], ["sweep"], ["events"], ["events", "list"],
    ["events", "replay"], ["stripe"], ["stripe", "endpoints"], ["stripe", "endpoints", "setup"],
    ["stripe", "endpoints", "check"], ["doctor"],
]

LIVE_KEY = "sk_live_cli_guard_0123456789"


def cli(stack, *args, env=None, timeout=60):
    return run([str(BINARY), *args], env={**stack.app.env, **(env or {})}, timeout=timeout)


def openapi_version() -> str:
    return yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())["info"]["version"]


def fingerprint(db) -> dict:
    """Row count and an md5 of every row of every table of the schema: equal means unchanged."""
    tables = [name for (name,) in db.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename").fetchall()]
    assert len(tables) > 10, tables
    return {table: db.execute(
        f"SELECT count(*), md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM {table} x").fetchone()
        for table in tables}


@pytest.fixture
def sweepable(db):
    """Rows a sweep or a seed would change if it ran: an old rate-limit window (purged by
    `sweep`); the demo profiles are absent (created by `seed-demo`)."""
    key = "cli-help-test:window"
    db.execute("INSERT INTO rate_limits (key, window_start, count) VALUES (%s, now() - interval '3 days', 1)"
               " ON CONFLICT DO NOTHING", (key,))
    assert db.execute("SELECT count(*) FROM profiles WHERE user_id LIKE 'demo-%'").fetchone()[0] == 0
    yield
    db.execute("DELETE FROM rate_limits WHERE key = %s", (key,))


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_help_on_every_subcommand_does_nothing_else(stack, db, sweepable, flag):
    before = fingerprint(db)
    calls = len(stack.stripe.received())
    for command in SUBCOMMANDS:
        result = cli(stack, "help", *command) if flag == "help" else cli(stack, *command, flag)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        assert "USAGE: payments " + " ".join(command) in result.stdout, (command, result.stdout)
        assert result.stderr == "", (command, result.stderr)
    assert fingerprint(db) == before, "a --help ran its command"
    assert len(stack.stripe.received()) == calls, "a --help called Stripe"


def test_the_top_level_help_lists_every_command(stack):
    result = cli(stack, "--help")
    assert result.returncode == 0, result
    for command in ("serve", "migrate", "token", "seed-demo", "sweep", "events", "stripe", "doctor"):
        assert f"\n  {command} " in result.stdout, (command, result.stdout)


@pytest.mark.parametrize("arguments, message", [
    ([], "name a command"),
    (["frobnicate"], "frobnicate"),
    (["sweep", "--force"], "--force"),
    (["token"], "--user"),
    (["token", "--user", "someone", "--ttl", "0"], "--ttl must be a number of seconds from 1 to 86400"),
    (["token", "--user", "someone", "--ttl", "soon"], "soon"),
    (["events", "list", "--status", "lost"], "--status must be one of"),
    (["events", "list", "--limit", "0"], "--limit must be from 1 to 10000"),
    (["events", "replay"], "give either --id or --type"),
    (["events", "replay", "--id", "evt_1", "--type", "charge.refunded"], "give either --id or --type"),
    (["events", "replay", "--id", "evt_1", "--since", "5"], "--since goes with --type"),
    (["stripe", "endpoints", "setup", "--url", "https://x"], "--url"),
])
def test_misuse_exits_64_with_a_message_and_changes_nothing(stack, db, sweepable, arguments, message):
    before = fingerprint(db)
    calls = len(stack.stripe.received())
    result = cli(stack, *arguments)
    assert result.returncode == 64, (arguments, result.returncode, result.stdout, result.stderr)
    assert message in result.stderr, (arguments, result.stderr)
    assert "Usage: payments" in result.stderr, result.stderr
    assert "Fatal error" not in result.stderr and "Stack dump" not in result.stderr
    assert fingerprint(db) == before
    assert len(stack.stripe.received()) == calls


def test_a_failure_exits_1_with_one_plain_line(stack, tmp_path):
    """Not misuse but a failure: the database cannot be reached."""
    result = cli(stack, "events", "list", env={"DATABASE_URL": f"postgresql:///payments?host={tmp_path}"})
    assert result.returncode == 1, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("payments: database error"), result.stderr


def test_version_names_ours_and_the_pinned_stripe_version(stack):
    result = cli(stack, "--version")
    assert result.returncode == 0, result
    assert result.stdout.strip() == f"payments {openapi_version()} (Stripe API {PINNED_STRIPE_VERSION})"


def test_the_user_agent_sent_to_stripe_carries_the_same_version(stack):
    before = len(stack.stripe.received(path_prefix="/v1/webhook_endpoints"))
    cli(stack, "stripe", "endpoints", "check")
    requests = stack.stripe.received(path_prefix="/v1/webhook_endpoints")[before:]
    assert requests, "check listed no endpoints"
    assert requests[-1]["headers"]["User-Agent"].startswith(f"marketplace-payments/{openapi_version()} "), requests[-1]


def test_shell_completion_comes_from_the_parser(stack):
    result = cli(stack, "--generate-completion-script", "bash")
    assert result.returncode == 0, result
    assert "complete" in result.stdout and "seed-demo" in result.stdout and "endpoints" in result.stdout


def test_existing_commands_keep_their_output(stack):
    token = cli(stack, "token", "--user", "cli-user", "--ttl", "60")
    assert token.returncode == 0, token
    assert len(token.stdout.splitlines()) == 1 and token.stdout.count(".") == 2, token.stdout
    events = cli(stack, "events", "list", "--limit", "1")
    assert events.returncode == 0, events
    replay = cli(stack, "events", "replay", "--id", "evt_cli_does_not_exist")
    assert replay.returncode == 1 and replay.stdout.strip() == "evt_cli_does_not_exist\tnot found", replay


# ---- live-mode guards ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def spare_database(stack):
    """A migrated database of its own, for commands that would add rows to the suite's."""
    name = "cli_seed_" + uuid.uuid4().hex[:8]
    stack.pg.create_database(name)
    migrated = stack.app.migrate(DATABASE_URL=stack.pg.url(name))
    assert migrated.returncode == 0, migrated
    return stack.pg.url(name, APP_ROLE)


def test_seed_demo_with_a_test_key_seeds_once(stack, spare_database):
    """What the live-key refusal below stops is a working command."""
    first = cli(stack, "seed-demo", env={"DATABASE_URL": spare_database})
    assert first.returncode == 0, first
    created = int(first.stdout.split()[1])
    assert created > 5 and first.stdout == f"seed-demo: {created} rows created\n", first.stdout
    again = cli(stack, "seed-demo", env={"DATABASE_URL": spare_database})
    assert again.returncode == 0 and again.stdout == "seed-demo: 0 rows created\n", again


def test_seed_demo_refuses_a_live_key_even_on_an_empty_database(stack, spare_database):
    with psycopg.connect(spare_database, autocommit=True) as spare:
        spare.execute("DELETE FROM milestones; DELETE FROM listings; DELETE FROM profiles")
        result = cli(stack, "seed-demo", env={"DATABASE_URL": spare_database, "STRIPE_SECRET_KEY": LIVE_KEY})
        assert result.returncode == 1, result
        assert spare.execute("SELECT count(*) FROM profiles").fetchone()[0] == 0


def test_seed_demo_refuses_a_live_key_and_changes_nothing(stack, db, sweepable):
    before = fingerprint(db)
    calls = len(stack.stripe.received())
    for key in (LIVE_KEY, "rk_live_cli_guard_0123456789"):
        result = cli(stack, "seed-demo", env={"STRIPE_SECRET_KEY": key})
        assert result.returncode == 1, result
        assert "live STRIPE_SECRET_KEY" in result.stderr and "seed-demo" in result.stderr, result.stderr
        assert key not in result.stdout + result.stderr
    assert fingerprint(db) == before
    assert len(stack.stripe.received()) == calls


def test_token_refuses_a_live_key(stack, db):
    before = fingerprint(db)
    result = cli(stack, "token", "--user", "someone", env={"STRIPE_SECRET_KEY": LIVE_KEY})
    assert result.returncode == 1, result
    assert result.stdout == "", "a token was printed"
    assert "live STRIPE_SECRET_KEY" in result.stderr and LIVE_KEY not in result.stderr, result.stderr
    assert fingerprint(db) == before


def test_make_run_refuses_a_live_key_before_starting_anything(stack, tmp_path):
    """scripts/run.sh checks the key first: no folder, no fake Stripe, no PostgreSQL, no app."""
    run_dir = tmp_path / "run"
    environment = {"PATH": os.environ["PATH"], "RUN_DIR": str(run_dir), "STRIPE_SECRET_KEY": LIVE_KEY,
                   "STRIPE_FAKE_PORT": "1", "HTTPS_PORT": "1"}
    result = subprocess.run([str(REPO / "scripts" / "run.sh")], env=environment, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1, result
    assert "STRIPE_SECRET_KEY is a live key" in result.stderr, result.stderr
    assert LIVE_KEY not in result.stdout + result.stderr
    assert not run_dir.exists(), "run.sh created its folder before refusing"
