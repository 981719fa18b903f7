"""Issue 15, item 2 — `payments events backfill --since T`: events Stripe recorded while our
endpoints heard nothing (paused, then the queue discarded, as after an outage longer than
Stripe's retry window) are fetched from the Events API — the platform's and each connected
account's — and applied exactly once; a second run changes nothing."""

import subprocess
import time
import uuid

import requests

from harness.api import make_profile, onboarded_seller, table_fingerprint
from harness.paths import BINARY
from test_milestones import fresh_loopback_windows, seller_account  # noqa: F401  (autouse fixture)
from test_purchase_flow import confirm, created_intent, payment_row

TABLES = ("profiles", "listings", "payments", "refunds", "transfers", "disputes", "payouts", "webhook_events",
          "notifications")


def backfill(stack, *args):
    return subprocess.run([str(BINARY), "events", "backfill", *args], env=stack.app.env, capture_output=True,
                          text=True, timeout=120)


def lost_deliveries(stack, make_events):
    """Runs `make_events` while both endpoints are paused, then drops everything queued."""
    stack.stripe_control("POST", "/_control/webhooks/pause", {})
    try:
        return make_events()
    finally:
        stack.stripe_control("POST", "/_control/webhooks/discard_pending", {})
        stack.stripe_control("POST", "/_control/webhooks/resume", {})


def test_missed_events_are_applied_once_and_a_second_run_changes_nothing(stack, db):
    since = int(time.time()) - 5
    seller = onboarded_seller(stack, db)
    account = seller_account(db, seller)

    def events():
        _, buyer, listing, body = created_intent(stack, db, 6100, seller)
        status, confirmed = confirm(stack, body["payment_intent_id"])
        assert status == 200 and confirmed["status"] == "requires_capture"
        payout = stack.stripe_control("POST", f"/_control/accounts/{account}/payouts", {"amount": 1200})
        return body, payout

    body, payout = lost_deliveries(stack, events)
    payment_id = body["payment_id"]
    # Nothing arrived: our row still waits for the card, and the payout is unknown.
    assert payment_row(db, payment_id)["status"] == "requires_payment_method"
    assert db.execute("SELECT count(*) FROM payouts WHERE stripe_payout_id = %s", (payout["id"],)).fetchone()[0] == 0
    missed = db.execute("SELECT count(*) FROM webhook_events WHERE object_id = %s",
                        (body["payment_intent_id"],)).fetchone()[0]
    assert missed == 0

    first = backfill(stack, "--since", str(since))
    assert first.returncode == 0, (first.stdout, first.stderr)
    lines = dict(line.removeprefix("backfill: ").split(": ", 1) for line in first.stdout.splitlines())
    assert "0 failed" in lines["platform"] and "0 failed" in lines["connect"], lines
    row = payment_row(db, payment_id)
    assert (row["status"], row["amount_capturable"]) == ("requires_capture", 6100), row
    payout_row = db.execute("SELECT status, amount_cents, profile_id::text FROM payouts WHERE stripe_payout_id = %s",
                            (payout["id"],)).fetchone()
    assert payout_row == ("paid", 1200, seller["id"]), payout_row
    # Each event once, stored like a delivery.
    stored = db.execute("SELECT id, count(*) OVER (PARTITION BY id), status FROM webhook_events"
                        " WHERE object_id = %s", (body["payment_intent_id"],)).fetchall()
    assert stored and all(n == 1 for _, n, _ in stored), stored
    audited = db.execute("SELECT count(*) FROM payment_audit_logs WHERE entity_id = %s AND operation = 'payment.authorized'",
                         (payment_id,)).fetchone()[0]
    assert audited == 1

    before = table_fingerprint(db, tables=TABLES)
    second = backfill(stack, "--since", str(since))
    assert second.returncode == 0, (second.stdout, second.stderr)
    assert " 0 applied" in second.stdout, second.stdout
    assert table_fingerprint(db, tables=TABLES) == before


def test_backfill_takes_only_the_handled_types_in_its_range(stack, db):
    seller = onboarded_seller(stack, db)

    def events():
        created_intent(stack, db, 2000, seller)  # payment_intent.created: not a handled type

    since = int(time.time())
    lost_deliveries(stack, events)
    stored_before = db.execute("SELECT count(*) FROM webhook_events WHERE type = 'payment_intent.created'").fetchone()[0]
    result = backfill(stack, "--since", str(since), "--until", str(int(time.time()) + 60))
    assert result.returncode == 0, result.stderr
    asked = [r for r in stack.stripe.received(method="GET", path_prefix="/v1/events")
             if "Stripe-Account" not in r["headers"]]
    assert asked, "the platform's Events API was not asked"
    query = asked[-1]["params"]
    assert "payment_intent.created" not in query["types"] and "payment_intent.succeeded" in query["types"], query
    assert int(query["created"]["gte"]) == since
    stored = db.execute("SELECT count(*) FROM webhook_events WHERE type = 'payment_intent.created'").fetchone()[0]
    assert stored == stored_before  # not a handled type: not fetched, not stored


def test_backfill_refuses_bad_ranges(stack):
    for args in (["--since", "-1"], ["--since", "100", "--until", "50"], []):
        result = backfill(stack, *args)
        assert result.returncode == 64, (args, result.stderr)


def test_an_account_that_revoked_access_does_not_stop_the_backfill(stack, db):
    seller = onboarded_seller(stack, db)
    account = seller_account(db, seller)
    stack.stripe_control("POST", f"/_control/accounts/{account}/deauthorize")
    deadline = time.time() + 10
    while db.execute("SELECT disabled_reason FROM profiles WHERE id = %s", (seller["id"],)).fetchone()[0] \
            != "application_deauthorized":
        assert time.time() < deadline, "the deauthorization did not arrive"
        time.sleep(0.1)
    # And one Stripe does not know at all (deleted): named, skipped, not a failure.
    make_profile(db, "seller", stripe_account=f"acct_gone{uuid.uuid4().hex[:12]}", charges_enabled=True)
    result = backfill(stack, "--since", str(int(time.time()) - 30))
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "skipped" in result.stderr and "0 failed" in result.stdout
    asked = [r for r in stack.stripe.received(method="GET", path_prefix="/v1/events")
             if r["headers"].get("Stripe-Account") == account and r["time"] >= time.time() - 30]
    assert asked == [], "a revoked account was asked for its events"


def test_an_event_listed_for_one_account_but_naming_another_is_skipped_and_reported(stack, db):
    """The backfill lists each connected account's events with its `Stripe-Account`; an event in
    that list whose own `account` is another one (or, in the platform's list, any account) is not
    applied as either: it is skipped, named on stderr and counted."""
    since = int(time.time()) - 5
    listed, named = onboarded_seller(stack, db), onboarded_seller(stack, db)
    listed_account, named_account = seller_account(db, listed), seller_account(db, named)

    def payout(account_):
        return {"id": f"po_{uuid.uuid4().hex[:20]}", "object": "payout", "amount": 700, "currency": "usd",
                "status": "paid", "arrival_date": int(time.time()), "created": int(time.time()),
                "failure_code": None, "destination": None, "metadata": {}}

    foreign = [  # (the event, where the Events API lists it)
        stack.stripe_control("POST", "/_control/events", {"type": "payout.paid", "object": payout(named_account),
                                                           "account": named_account,
                                                           "listed_under": listed_account}),
        stack.stripe_control("POST", "/_control/events", {
            "type": "payment_intent.canceled", "account": named_account, "listed_under": None,
            "object": {"id": f"pi_{uuid.uuid4().hex[:20]}", "object": "payment_intent", "amount": 700,
                       "currency": "usd", "status": "canceled", "metadata": {}}}),
    ]
    # What the fake lists to the listed account really is the other account's event.
    page = requests.get(stack.stripe.url + "/v1/events?type=payout.paid&limit=100", verify=False, timeout=30,
                        headers={"Authorization": "Bearer " + stack.app.env["STRIPE_SECRET_KEY"],
                                 "Stripe-Account": listed_account}).json()
    assert foreign[0]["id"] in [e["id"] for e in page["data"]] and foreign[0]["account"] == named_account

    result = backfill(stack, "--since", str(since))
    assert result.returncode == 0, (result.stdout, result.stderr)
    lines = dict(line.removeprefix("backfill: ").split(": ", 1) for line in result.stdout.splitlines())
    assert lines["connect"].endswith(", 1 from another account skipped"), lines
    assert lines["platform"].endswith(", 1 from another account skipped"), lines
    assert f"{foreign[0]['id']} skipped: listed for {listed_account} but its account is {named_account}" \
        in result.stderr, result.stderr
    assert f"{foreign[1]['id']} skipped: listed for the platform but its account is {named_account}" \
        in result.stderr, result.stderr
    ids = [e["id"] for e in foreign]
    assert db.execute("SELECT count(*) FROM webhook_events WHERE id = ANY(%s)", (ids,)).fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM payouts WHERE stripe_payout_id = %s",
                      (foreign[0]["data"]["object"]["id"],)).fetchone()[0] == 0
