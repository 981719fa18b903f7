"""Fixtures of the integration suite: one stack for the whole session."""

import psycopg
import pytest

from harness import Stack
from harness.api import reset_ip_limits


@pytest.fixture(scope="session")
def stack():
    """PostgreSQL, the real `payments serve` and nginx with the project's config, on loopback."""
    running = Stack()
    try:
        yield running.start()
    finally:
        running.close()


@pytest.fixture
def db(stack):
    """An autocommit connection to the stack's database, for asserting rows."""
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def admin_db(stack):
    """An autocommit superuser connection to the stack's cluster (create databases, inspect
    pg_stat_activity)."""
    with psycopg.connect(stack.pg.admin_url, autocommit=True) as connection:
        yield connection


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that used the stack shows the end of the app's log (the stack's
    folder is gone once the session ends)."""
    outcome = yield
    report = outcome.get_result()
    running = getattr(item, "funcargs", {}).get("stack")
    if report.failed and running is not None:
        report.sections.append(("app log (last 40 lines)", running.app.log_tail(40)))


@pytest.fixture
def faults(stack):
    """Injects faults at the fake Stripe (`faults(type=…, path_prefix=…, count=…)`); every fault
    is cleared afterwards, whatever happens."""
    def inject(**spec):
        return stack.stripe_control("POST", "/_control/faults", spec)
    try:
        yield inject
    finally:
        stack.stripe_control("DELETE", "/_control/faults")


@pytest.fixture
def fresh_ip_windows(db):
    """Empty IP-keyed rate-limit windows before and after the test (see reset_ip_limits)."""
    reset_ip_limits(db)
    yield
    reset_ip_limits(db)
