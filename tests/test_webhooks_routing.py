"""Issue 13, webhook checks: an event of the other mode than our key's is refused (400, nothing
stored), a connected account's event on the platform endpoint is refused (400, nothing stored),
and a Connect `account.updated` changes only the profile of the event's own account — one whose
object names another account is stored `ignored` (200) and changes nothing. All counted in
`payments_webhook_rejections_total`."""

import time

import pytest

from harness.api import make_profile
from harness.assertions import assert_envelope
from test_webhooks_inbox import (audit_operations, encode, event, event_row, listing_row, new_payment, payment_row, scrape,
                                 send, succeeded, uid)

REJECTIONS = 'payments_webhook_rejections_total{endpoint="%s",reason="%s"}'


def account_object(account_id: str, enabled=True) -> dict:
    return {"id": account_id, "object": "account", "charges_enabled": enabled, "payouts_enabled": enabled,
            "details_submitted": enabled, "requirements": {"currently_due": [], "disabled_reason": None}}


def charges_enabled(db, profile) -> bool:
    return db.execute("SELECT charges_enabled FROM profiles WHERE id = %s", (profile["id"],)).fetchone()[0]


def delta(before, after, name):
    return after.get(name, 0) - before.get(name, 0)


def assert_untouched(db, payment):
    assert payment_row(db, payment["id"])["status"] == "processing"
    assert listing_row(db, payment["listing"])["status"] == "payment_pending"
    assert audit_operations(db, payment["id"]) == []


@pytest.mark.parametrize("endpoint", ["platform", "connect"])
@pytest.mark.parametrize("livemode", [True, None])
def test_an_event_of_the_other_mode_is_refused_and_not_stored(stack, db, endpoint, livemode):
    payment = new_payment(db)
    evt = succeeded(payment, int(time.time()))
    if endpoint == "connect":
        evt["account"] = f"acct_{uid()}"
    if livemode is None:
        del evt["livemode"]  # Stripe always says; an event that does not cannot be trusted to be ours
    else:
        evt["livemode"] = livemode  # a live event at the harness's sk_test_ deployment
    before = scrape(stack)
    response = send(stack, evt, endpoint=endpoint)
    assert_envelope(response, 400, "livemode_mismatch")
    assert "test-mode" in response.json()["error"]["message"]
    assert event_row(db, evt["id"]) is None
    assert_untouched(db, payment)
    assert delta(before, scrape(stack), REJECTIONS % (endpoint, "livemode_mismatch")) == 1


def test_a_live_key_takes_live_events_and_refuses_test_ones(stack, db):
    """The mode comes from the key: the same stack with an sk_live_ key reverses the answer."""
    with stack.other_apps(STRIPE_SECRET_KEY="sk_live_harness_000000000000", DIAGNOSTICS_ENABLED="0",
                          STRIPE_PUBLISHABLE_KEY="pk_live_harness_000000000000") as live:
        payment = new_payment(db)
        test_event = succeeded(payment, int(time.time()))
        body = encode(test_event)
        headers = {"Stripe-Signature": stack.sign_webhook(body), "Content-Type": "application/json"}
        assert_envelope(live.post("/api/payments/webhook", data=body, headers=headers), 400, "livemode_mismatch")
        assert event_row(db, test_event["id"]) is None
        live_event = {**test_event, "id": f"evt_{uid()}", "livemode": True}
        body = encode(live_event)
        headers = {"Stripe-Signature": stack.sign_webhook(body), "Content-Type": "application/json"}
        answer = live.post("/api/payments/webhook", data=body, headers=headers)
        assert answer.status_code == 200 and answer.json() == {"received": True}, answer.text
        assert payment_row(db, payment["id"])["status"] == "succeeded"


def test_a_connected_account_event_on_the_platform_endpoint_is_refused(stack, db):
    """A payment event carrying `account` is a connected account's, even with an intent id we
    know: applying it at the platform endpoint would move our payment on someone else's event."""
    payment = new_payment(db)
    evt = succeeded(payment, int(time.time()))
    evt["account"] = f"acct_{uid()}"
    before = scrape(stack)
    response = send(stack, evt, endpoint="platform")
    assert_envelope(response, 400, "wrong_webhook_endpoint")
    assert event_row(db, evt["id"]) is None
    assert_untouched(db, payment)
    assert delta(before, scrape(stack), REJECTIONS % ("platform", "wrong_webhook_endpoint")) == 1
    # Without `account` the same event is the platform's own, and applies.
    del evt["account"]
    assert send(stack, evt).json() == {"received": True}
    assert payment_row(db, payment["id"])["status"] == "succeeded"


@pytest.mark.parametrize("case", ["other_account", "no_account"])
def test_account_updated_for_another_account_than_the_events_is_stored_ignored(stack, db, case):
    sender = f"acct_{uid()}"
    victim_account = f"acct_{uid()}"
    victim = make_profile(db, "seller", stripe_account=victim_account, charges_enabled=False)
    owner = make_profile(db, "seller", stripe_account=sender, charges_enabled=False)
    evt = event("account.updated", account_object(victim_account), account=sender if case == "other_account" else None)
    before = scrape(stack)
    response = send(stack, evt, endpoint="connect")
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "status": "ignored"}
    row = event_row(db, evt["id"])
    assert (row["status"], row["endpoint"]) == ("ignored", "connect")
    assert row["last_error"].startswith("account_mismatch"), row["last_error"]
    assert charges_enabled(db, victim) is False and charges_enabled(db, owner) is False
    assert db.execute("SELECT count(*) FROM payment_audit_logs WHERE entity_id IN (%s, %s)",
                      (victim["id"], owner["id"])).fetchone()[0] == 0
    after = scrape(stack)
    assert delta(before, after, REJECTIONS % ("connect", "account_mismatch")) == 1
    events = 'payments_webhook_events_total{endpoint="connect",type="account.updated",outcome="refused"}'
    assert delta(before, after, events) == 1
    # A redelivery is a duplicate, and the event of the account itself applies.
    assert send(stack, evt, endpoint="connect").json() == {"received": True, "duplicate": True}
    own = event("account.updated", account_object(victim_account), account=victim_account)
    assert send(stack, own, endpoint="connect").json() == {"received": True}
    assert charges_enabled(db, victim) is True and charges_enabled(db, owner) is False
