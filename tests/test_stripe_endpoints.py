"""Issue 18, `payments stripe endpoints setup|check` against the fake Stripe: setup creates the
platform and Connect webhook endpoints with our URLs, the pinned API version, exactly the event
types the app handles and `connect` for the Connect one, and prints each signing secret once; a
second setup updates instead of duplicating; check passes, and fails (exit 1, the difference in
words) once an endpoint is changed at Stripe. Events rendered at another API version are
processed but counted in `payments_webhook_api_version_mismatch_total`."""

import time

import pytest

from harness.api import wait_for
from harness.paths import BINARY
from harness.processes import run
from test_webhooks_inbox import event, event_row, intent_object, new_payment, scrape, send

PINNED = "2024-06-20"
# The events docs/webhooks.md documents, written out here independently of the code's list.
PLATFORM_EVENTS = {
    "payment_intent.succeeded", "payment_intent.amount_capturable_updated", "payment_intent.payment_failed",
    "payment_intent.canceled", "charge.succeeded", "charge.refunded", "charge.refund.updated", "charge.dispute.created",
    "charge.dispute.updated", "charge.dispute.closed", "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated", "transfer.created", "transfer.reversed",
}
# Issue 16: a direct charge's payment events come from the seller's account, to the Connect endpoint.
DIRECT_CHARGE_EVENTS = {"payment_intent.succeeded", "payment_intent.amount_capturable_updated",
                        "payment_intent.payment_failed", "payment_intent.canceled", "charge.succeeded",
                        "charge.refunded", "charge.refund.updated", "charge.dispute.created", "charge.dispute.updated",
                        "charge.dispute.closed", "charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated"}
CONNECT_EVENTS = {"account.updated", "account.application.deauthorized", "payout.paid", "payout.failed",
                  *DIRECT_CHARGE_EVENTS}
MISMATCH = 'payments_webhook_api_version_mismatch_total{endpoint="%s"}'


def cli(stack, *args, env=None):
    return run([str(BINARY), *args], env={**stack.app.env, **(env or {})}, timeout=60)


def stored_endpoints(stack) -> list:
    """What the fake holds, with the fields its API hides (connect, secret)."""
    return stack.stripe_control("GET", "/_control/webhook_endpoints")["data"]


def by_url(stack) -> dict:
    base = stack.app.env["PUBLIC_BASE_URL"]
    stored = {e["url"]: e for e in stored_endpoints(stack)}
    return {"platform": stored.get(base + "/api/payments/webhook"),
            "connect": stored.get(base + "/api/payments/webhook/connect")}


def delete_all_endpoints(stack):
    for endpoint in stored_endpoints(stack):
        stack.stripe_api("DELETE", f"/v1/webhook_endpoints/{endpoint['id']}")
    assert stored_endpoints(stack) == []


def force(stack, endpoint_id, **changes):
    return stack.stripe_control("POST", f"/_control/webhook_endpoints/{endpoint_id}", changes)


@pytest.fixture
def no_endpoints(stack):
    """No webhook endpoints at the fake before and after the test."""
    delete_all_endpoints(stack)
    yield
    delete_all_endpoints(stack)


@pytest.fixture
def endpoints(stack, no_endpoints):
    """Both endpoints, made by `payments stripe endpoints setup`."""
    result = cli(stack, "stripe", "endpoints", "setup")
    assert result.returncode == 0, result
    return by_url(stack)


def test_setup_creates_both_endpoints_as_the_app_needs_them(stack, no_endpoints):
    result = cli(stack, "stripe", "endpoints", "setup")
    assert result.returncode == 0, result
    stored = by_url(stack)
    platform, connect = stored["platform"], stored["connect"]
    assert platform and connect, stored_endpoints(stack)
    assert len(stored_endpoints(stack)) == 2
    assert set(platform["enabled_events"]) == PLATFORM_EVENTS
    assert set(connect["enabled_events"]) == CONNECT_EVENTS
    for endpoint, is_connect in ((platform, False), (connect, True)):
        assert endpoint["api_version"] == PINNED
        assert endpoint["connect"] is is_connect
        assert endpoint["status"] == "enabled"
        assert len(endpoint["enabled_events"]) == len(set(endpoint["enabled_events"]))
    # Each secret printed once, next to the variable it belongs in.
    assert result.stdout.count(platform["secret"]) == 1 and result.stdout.count(connect["secret"]) == 1, result.stdout
    assert f"{platform['secret']} (shown once: add it to STRIPE_WEBHOOK_SECRETS)" in result.stdout
    assert f"{connect['secret']} (shown once: add it to STRIPE_CONNECT_WEBHOOK_SECRETS)" in result.stdout
    # Through the API a secret exists only in the create call's answer.
    listed = stack.stripe_api("GET", "/v1/webhook_endpoints")["data"]
    assert {e["id"] for e in listed} == {platform["id"], connect["id"]}
    assert all("secret" not in e for e in listed)


def test_a_second_setup_updates_rather_than_duplicates(stack, endpoints):
    ids = {name: e["id"] for name, e in endpoints.items()}
    again = cli(stack, "stripe", "endpoints", "setup")
    assert again.returncode == 0, again
    assert "whsec_" not in again.stdout, "a secret was printed for an endpoint that already existed"
    assert again.stdout.count("is up to date") == 2, again.stdout
    assert {name: e["id"] for name, e in by_url(stack).items()} == ids
    assert len(stored_endpoints(stack)) == 2

    # An endpoint that lost an event type and was disabled is put right, in place.
    force(stack, ids["platform"], enabled_events=["charge.refunded"], status="disabled")
    repaired = cli(stack, "stripe", "endpoints", "setup")
    assert repaired.returncode == 0, repaired
    assert f"updated {ids['platform']} (enabled_events, disabled)" in repaired.stdout, repaired.stdout
    platform = by_url(stack)["platform"]
    assert platform["id"] == ids["platform"] and set(platform["enabled_events"]) == PLATFORM_EVENTS
    assert platform["status"] == "enabled"
    assert len(stored_endpoints(stack)) == 2


def test_check_passes_when_both_endpoints_are_as_set_up(stack, endpoints):
    result = cli(stack, "stripe", "endpoints", "check")
    assert result.returncode == 0, result
    assert result.stdout.count(": ok (") == 2, result.stdout


def test_check_fails_when_an_event_type_was_removed_at_stripe(stack, endpoints):
    connect = endpoints["connect"]
    force(stack, connect["id"], enabled_events=sorted(CONNECT_EVENTS - {"payout.failed"}))
    result = cli(stack, "stripe", "endpoints", "check")
    assert result.returncode == 1, result
    assert f"connect endpoint {connect['id']}: does not receive payout.failed" in result.stdout, result.stdout
    assert "platform endpoint" in result.stdout and ": ok (" in result.stdout


def test_check_fails_on_another_api_version_and_setup_says_what_to_do(stack, endpoints):
    platform = endpoints["platform"]
    force(stack, platform["id"], api_version="2023-10-16")
    result = cli(stack, "stripe", "endpoints", "check")
    assert result.returncode == 1, result
    assert f"api_version is 2023-10-16, expected the pinned {PINNED}" in result.stdout, result.stdout
    # Stripe cannot change an endpoint's version: setup says so and fails rather than pretend.
    setup = cli(stack, "stripe", "endpoints", "setup")
    assert setup.returncode == 1, setup
    assert "delete the endpoint at Stripe and run setup again" in setup.stdout, setup.stdout


def test_check_fails_on_a_disabled_endpoint_a_wrong_url_or_a_wrong_connect_flag(stack, endpoints):
    connect = endpoints["connect"]
    force(stack, connect["id"], status="disabled")
    disabled = cli(stack, "stripe", "endpoints", "check")
    assert disabled.returncode == 1 and "status is disabled, expected enabled" in disabled.stdout, disabled

    platform = endpoints["platform"]
    force(stack, platform["id"], url="https://old.example.test/api/payments/webhook")
    moved = cli(stack, "stripe", "endpoints", "check")
    assert moved.returncode == 1, moved
    assert "url is https://old.example.test/api/payments/webhook, expected " in moved.stdout, moved.stdout


def test_check_fails_when_an_endpoint_is_missing(stack, endpoints):
    stack.stripe_api("DELETE", f"/v1/webhook_endpoints/{endpoints['connect']['id']}")
    result = cli(stack, "stripe", "endpoints", "check")
    assert result.returncode == 1, result
    assert "connect endpoint: missing at Stripe" in result.stdout, result.stdout


def test_an_event_of_another_api_version_is_processed_and_counted(stack, db):
    payment = new_payment(db)
    current = event("payment_intent.amount_capturable_updated",
                    intent_object(payment, status="requires_capture", amount_capturable=payment["amount"]),
                    created=int(time.time()))
    before = scrape(stack)
    assert send(stack, current).status_code == 200
    assert scrape(stack).get(MISMATCH % "platform", 0) == before.get(MISMATCH % "platform", 0)

    older = event("payment_intent.succeeded",
                  intent_object(payment, status="succeeded", amount_received=payment["amount"]),
                  created=int(time.time()) + 1)
    older["api_version"] = "2020-08-27"
    response = send(stack, older)
    assert response.status_code == 200, response.text
    after = scrape(stack)
    assert after[MISMATCH % "platform"] == before.get(MISMATCH % "platform", 0) + 1
    assert event_row(db, older["id"])["status"] == "processed"
    wait_for(lambda: any(r.get("event_id") == older["id"] and "api_version differs" in r.get("msg", "")
                         for r in stack.app.log_records()), what="the mismatch's log line")
