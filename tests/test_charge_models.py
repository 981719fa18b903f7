"""Issue 16: charge models. The purchase, capture, cancel and refund suites run under both models
(tests/charge_models.py, imported by test_purchase_flow, test_disputes_platform and
test_admin_money_tools); this file covers what only the two side by side show:

- switching CHARGE_MODEL between two purchases leaves each on its own model through to its refund;
- every Stripe request for a direct-charge payment carries its seller's `Stripe-Account`;
- a direct-charge event from another account (or from none) changes nothing and is counted;
- a seller must have `card_payments` active for a direct charge (`409 seller_not_ready`)."""

import subprocess
import time

import pytest

from charge_models import misdirected_requests, requests_for, requests_since
from harness.api import make_listing, make_profile, onboarded_seller, table_fingerprint, wait_for
from harness.assertions import assert_envelope
from harness.paths import BINARY
from harness.processes import run
from test_milestones import admin_client, confirm, fresh_loopback_windows, payment_row, settle, wait_payment  # noqa: F401
from test_webhooks_inbox import encode, event, event_row, scrape, deliver
from test_webhooks_routing import REJECTIONS, delta
from test_events_backfill import backfill, lost_deliveries

DIRECT = {"CHARGE_MODEL": "direct"}
REFUSED = 'payments_webhook_events_refused{endpoint="%s",reason="account_mismatch"}'


@pytest.fixture(scope="module")
def direct_app(stack):
    """An app serving CHARGE_MODEL=direct beside the session's (destination) app: same database,
    same fake Stripe; switching the setting is sending the next request to the other one."""
    with stack.other_apps(**DIRECT) as apps:
        wait_for(lambda: apps.get("/api/health").status_code == 200, 15, what="the direct-charge app")
        yield apps


def buy_and_authorise(stack, app, db, seller, buyer, price):
    """create-intent through `app` (the session's or the direct-charge one), confirmed at the fake."""
    listing = make_listing(db, seller, price=price)
    created = app.post("/api/payments/create-intent", json={"listing_id": listing}, headers=buyer["headers"])
    assert created.status_code == 201, created.text
    body = created.json()
    status, confirmed = confirm(stack, body["payment_intent_id"])
    assert status == 200 and confirmed["status"] == "requires_capture", confirmed
    wait_payment(db, body["payment_id"], "requires_capture")
    return body


def account_of(db, profile):
    return db.execute("SELECT stripe_account_id FROM profiles WHERE id = %s", (profile["id"],)).fetchone()[0]


def test_switching_the_model_between_two_purchases_keeps_each_on_its_own_through_its_refund(stack, db, direct_app):
    seller, buyer = onboarded_seller(stack, db), make_profile(db, "buyer")
    account = account_of(db, seller)
    admin = admin_client(stack, db)
    started = time.time()

    # One purchase under `direct`, then the setting is switched back: the next one is `destination`.
    direct = buy_and_authorise(stack, direct_app, db, seller, buyer, 6000)
    destination = buy_and_authorise(stack, stack, db, seller, buyer, 4000)
    assert (direct["charge_model"], direct["stripe_account"]) == ("direct", account)
    assert (destination["charge_model"], destination["stripe_account"]) == ("destination", None)

    # Each is captured and refunded through the app of the OTHER setting: the row decides.
    for body, app in ((direct, stack), (destination, direct_app)):
        captured = app.post("/api/payments/capture", json={"payment_id": body["payment_id"]}, headers=buyer["headers"])
        assert captured.status_code == 200 and captured.json()["status"] == "succeeded", captured.text
    settle(stack)
    direct_admin = admin_client(stack, db)
    direct_admin.stack = direct_app  # the admin's requests go to the direct-charge app
    for body, client in ((direct, admin), (destination, direct_admin)):
        partial = client.post(f"/api/admin/payments/{body['payment_id']}/refund", json={"amount": 1000,
                                                                                       "reason": "part"})
        assert partial.status_code == 201, partial.text
        rest = client.post(f"/api/admin/payments/{body['payment_id']}/refund", json={"reason": "the rest"})
        assert rest.status_code == 201, rest.text
    settle(stack)
    for body, amount in ((direct, 6000), (destination, 4000)):
        row = wait_payment(db, body["payment_id"], "refunded")
        assert (row["amount_refunded"], row["amount_received"]) == (amount, amount)
    rows = {r[0]: r[1:] for r in db.execute(
        "SELECT id::text, charge_model, stripe_account FROM payments WHERE id IN (%s, %s)",
        (direct["payment_id"], destination["payment_id"])).fetchall()}
    assert rows == {direct["payment_id"]: ("direct", account), destination["payment_id"]: ("destination", None)}

    # At Stripe: every call for the direct charge on the seller's account, none for the other.
    made = requests_since(stack, started)
    assert misdirected_requests(db, made) == []
    direct_calls = requests_for((direct["payment_id"], direct["payment_intent_id"], None), made)
    assert {(r["method"], r["path"].split("?")[0].rsplit("/", 1)[-1]) for r in direct_calls} >= {
        ("POST", "payment_intents"), ("POST", "capture"), ("POST", "refunds")}
    assert all(r["headers"].get("Stripe-Account") == account for r in direct_calls)
    # The check the parametrised suites run after every test can fail: one call without the header.
    stripped = {**direct_calls[0], "headers": {k: v for k, v in direct_calls[0]["headers"].items()
                                               if k != "Stripe-Account"}}
    assert [(w[0], w[3], w[4]) for w in misdirected_requests(db, [stripped])] == [(direct["payment_id"], None, account)]
    refunds = [r for r in made if r["path"] == "/v1/refunds"]
    by_payment = {p: [r["params"] for r in refunds if r["params"]["metadata"]["payment_id"] == p]
                  for p in (direct["payment_id"], destination["payment_id"])}
    assert [(p["amount"], p.get("reverse_transfer"), p["refund_application_fee"]) for p in
            by_payment[direct["payment_id"]]] == [("1000", None, "true"), ("5000", None, "true")]
    assert [(p["amount"], p["reverse_transfer"], p["refund_application_fee"]) for p in
            by_payment[destination["payment_id"]]] == [("1000", "true", "true"), ("3000", "true", "true")]
    # The fee came back to the platform in proportion, on the platform's fee object.
    direct_intent = stack.stripe_control("GET", f"/_control/objects/{direct['payment_intent_id']}")["object"]
    charge = stack.stripe_control("GET", f"/_control/objects/{direct_intent['latest_charge']}")["object"]
    fee = stack.stripe_control("GET", f"/_control/objects/{charge['application_fee']}")["object"]
    assert (fee["account"], fee["amount"], fee["amount_refunded"]) == (account, 600, 600)
    assert charge["transfer"] is None

    # The revenue report's Stripe fee: the platform's for the destination charge (read from its
    # balance transaction), none for the direct one (the seller pays it; Stripe is not asked).
    swept = time.time()
    result = subprocess.run([str(BINARY), "sweep"], env=stack.app.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    fees = dict(db.execute("SELECT id::text, stripe_fee_cents FROM payments WHERE id IN (%s, %s)",
                           (direct["payment_id"], destination["payment_id"])).fetchall())
    assert fees[direct["payment_id"]] == 0 and fees[destination["payment_id"]] == 30 + round(4000 * 0.029), fees
    assert not [r for r in requests_since(stack, swept) if r["path"].startswith(f"/v1/charges/{charge['id']}")]
    assert misdirected_requests(db, requests_since(stack, swept)) == []


def direct_payment_for_events(stack, db, direct_app):
    """A direct-charge purchase authorised through the fake, with its row and seller account."""
    seller, buyer = onboarded_seller(stack, db), make_profile(db, "buyer")
    body = buy_and_authorise(stack, direct_app, db, seller, buyer, 5000)
    settle(stack)
    return body, account_of(db, seller)


def intent_event(type_, body, status, *, account, amount_received=0, amount_capturable=0, charge=None):
    return event(type_, {"id": body["payment_intent_id"], "object": "payment_intent", "amount": 5000,
                         "amount_capturable": amount_capturable, "amount_received": amount_received,
                         "currency": "usd", "status": status, "capture_method": "manual",
                         "created": 1_800_000_000, "latest_charge": charge, "last_payment_error": None,
                         "metadata": {"payment_id": body["payment_id"]}}, account=account)


@pytest.mark.parametrize("sender", ["another_account", "no_account"])
def test_a_direct_charge_event_from_another_account_changes_nothing_and_is_counted(stack, db, direct_app, sender):
    body, account = direct_payment_for_events(stack, db, direct_app)
    charge = payment_row(db, body["payment_id"])["stripe_charge_id"]
    intruder = onboarded_seller(stack, db)
    other = account_of(db, intruder) if sender == "another_account" else None
    # Without an account, an event comes to the platform endpoint (the Connect one refuses none).
    endpoint = "connect" if other else "platform"
    events = [
        intent_event("payment_intent.canceled", body, "canceled", account=other),
        intent_event("payment_intent.succeeded", body, "succeeded", account=other, amount_received=5000,
                     charge=charge),
        event("charge.refunded", {"id": charge or "ch_unknown", "object": "charge", "amount": 5000,
                                  "amount_captured": 5000, "amount_refunded": 5000, "refunded": True,
                                  "captured": True, "payment_intent": body["payment_intent_id"],
                                  "currency": "usd", "status": "succeeded"}, account=other),
    ]
    fingerprint = table_fingerprint(db, tables=("payments", "listings", "refunds", "notifications"))
    metric = REJECTIONS % (endpoint, "account_mismatch")
    before = scrape(stack)
    for evt in events:
        response = deliver(stack, encode(evt), endpoint=endpoint)
        # 200: Stripe would retry a 4xx or 5xx for days, and no retry can make the account right.
        assert response.status_code == 200, response.text
        assert response.json() == {"received": True, "status": "ignored"}
        row = event_row(db, evt["id"])
        assert (row["status"], row["endpoint"], row["account"]) == ("ignored", endpoint, other)
        assert row["last_error"].startswith("account_mismatch"), row["last_error"]
    after = scrape(stack)
    assert delta(before, after, metric) == len(events)
    assert delta(before, after, REFUSED % endpoint) == len(events)
    assert table_fingerprint(db, tables=("payments", "listings", "refunds", "notifications")) == fingerprint
    assert payment_row(db, body["payment_id"])["status"] == "requires_capture"
    assert db.execute("SELECT count(*) FROM payment_audit_logs WHERE entity_id = %s AND metadata->>'event_id' = ANY(%s)",
                      (body["payment_id"], [e["id"] for e in events])).fetchone()[0] == 0

    # A redelivery is a duplicate; the same event from the payment's own account applies.
    assert deliver(stack, encode(events[0]), endpoint=endpoint).json() == {"received": True, "duplicate": True}
    own = intent_event("payment_intent.canceled", body, "canceled", account=account)
    response = deliver(stack, encode(own), endpoint="connect")
    assert response.status_code == 200 and response.json() == {"received": True}, response.text
    assert event_row(db, own["id"])["status"] == "processed"
    assert payment_row(db, body["payment_id"])["status"] == "canceled"


def test_a_destination_charge_event_from_a_connected_account_is_refused(stack, db):
    """The rule is the row's account either way: a destination payment's objects are the
    platform's, so an event for it that names an account changes nothing."""
    seller, buyer = onboarded_seller(stack, db), make_profile(db, "buyer")
    body = buy_and_authorise(stack, stack, db, seller, buyer, 5000)
    settle(stack)
    evt = intent_event("payment_intent.canceled", body, "canceled", account=account_of(db, seller))
    response = deliver(stack, encode(evt), endpoint="connect")
    assert response.status_code == 200 and response.json()["status"] == "ignored", response.text
    assert payment_row(db, body["payment_id"])["status"] == "requires_capture"


def test_a_direct_charge_needs_card_payments_active(stack, db, direct_app):
    seller, buyer = onboarded_seller(stack, db), make_profile(db, "buyer")
    listing = make_listing(db, seller, price=5000)
    for capabilities, missing in (('{"transfers": "active", "card_payments": "inactive"}', True),
                                  ('{"transfers": "active"}', True), (None, True),
                                  ('{"transfers": "active", "card_payments": "active"}', False)):
        db.execute("UPDATE profiles SET capabilities = %s::jsonb WHERE id = %s", (capabilities, seller["id"]))
        listed = {item["id"]: item for item in direct_app.get("/api/listings?kind=item&limit=100",
                                                               headers=buyer["headers"]).json()["data"]}
        if missing:
            counts = table_fingerprint(db, tables=("payments", "listings"))
            refused = direct_app.post("/api/payments/create-intent", json={"listing_id": listing},
                                      headers=buyer["headers"])
            assert_envelope(refused, 409, "seller_not_ready")
            assert "capabilities.card_payments" in refused.json()["error"]["message"]
            assert table_fingerprint(db, tables=("payments", "listings")) == counts
            assert listed[listing]["seller_can_be_paid"] is False
            # A destination charge does not need it (the seller is paid by transfer).
            shown = {item["id"]: item for item in stack.get("/api/listings?kind=item&limit=100",
                                                            headers=buyer["headers"]).json()["data"]}
            assert shown[listing]["seller_can_be_paid"] is True
        else:
            assert listed[listing]["seller_can_be_paid"] is True
            created = direct_app.post("/api/payments/create-intent", json={"listing_id": listing},
                                      headers=buyer["headers"])
            assert created.status_code == 201 and created.json()["charge_model"] == "direct", created.text
    # The seller's own status names the gap under the configured model.
    db.execute("UPDATE profiles SET capabilities = '{\"transfers\": \"active\"}' WHERE id = %s", (seller["id"],))
    status = direct_app.get("/api/connect/status", headers=seller["headers"]).json()
    assert status["ready_to_sell"] is False and status["missing"] == ["capabilities.card_payments"], status
    assert stack.get("/api/connect/status", headers=seller["headers"]).json()["ready_to_sell"] is True


def test_a_payout_delay_changed_at_stripe_is_set_again(stack, db):
    """Item 5: PAYOUT_DELAY_DAYS (7 here) is set when the account is created, and set again when
    an account.updated shows another delay; the fix's own account.updated changes nothing more."""
    def delay():
        return stack.stripe_api("GET", f"/v1/accounts/{account}")["settings"]["payouts"]["schedule"]["delay_days"]

    def fixes():
        return [r for r in stack.stripe.received(method="POST", path_prefix=f"/v1/accounts/{account}")
                if r["headers"].get("Idempotency-Key", "").startswith(f"account:{account.lower()}:payout_delay:")]

    def fixes_for(events):
        """The fixes made for these account.updated events (each fix's key names its event)."""
        ids = {e["id"].lower() for e in events}
        return [r for r in fixes() if r["headers"]["Idempotency-Key"].rsplit(":", 1)[-1] in ids]

    def account_updates(delay_days):
        return [e for e in stack.stripe.events("account.updated") if e.get("account") == account
                and e["data"]["object"]["settings"]["payouts"]["schedule"]["delay_days"] == delay_days]

    seller = onboarded_seller(stack, db)
    account = account_of(db, seller)
    # The harness made this account at the fake with its default delay (2); the onboarding's
    # account.updated may or may not have been corrected by now: the assertions below name the
    # events they are about, so a late correction of those cannot confuse them.
    settle(stack)
    stack.stripe_api("POST", f"/v1/accounts/{account}", {"settings[payouts][schedule][delay_days]": "3"})
    changed = account_updates(3)[-1]
    wait_for(lambda: delay() == 7, 15, what="the payout delay set back to 7")
    settle(stack)
    made = fixes_for([changed])
    assert len(made) == 1, made
    assert made[0]["headers"]["Idempotency-Key"] == f"account:{account.lower()}:payout_delay:7:{changed['id'].lower()}"
    assert made[0]["params"] == {"settings": {"payouts": {"schedule": {"delay_days": "7"}}}}
    assert "Stripe-Account" not in made[0]["headers"]
    # An account.updated that shows the configured delay (the fix's own, among them) asks for nothing.
    assert account_updates(7) and fixes_for(account_updates(7)) == []
    # A drift whose delivery was lost, applied by `payments events backfill` (as the sweeper's
    # retries and replays apply stored events, outside the live request): checked the same way,
    # and fixed under that event's key. (A replay of `changed` itself may or may not ask again:
    # once the fix's own account.updated is applied in a later second, `changed` is stale.)
    since = int(time.time()) - 2
    lost_deliveries(stack, lambda: stack.stripe_api(
        "POST", f"/v1/accounts/{account}", {"settings[payouts][schedule][delay_days]": "4"}))
    drift = account_updates(4)[-1]
    assert fixes_for([drift]) == []
    backfilled = backfill(stack, "--since", str(since))
    assert backfilled.returncode == 0, backfilled.stderr
    wait_for(lambda: delay() == 7, 15, what="the backfilled drift set back to 7")
    again = fixes_for([drift])
    assert [r["headers"]["Idempotency-Key"] for r in again] == [
        f"account:{account.lower()}:payout_delay:7:{drift['id'].lower()}"], again


def test_a_bad_charge_model_setting_stops_start_up_naming_it(stack, tmp_path):
    for settings, name in (({"CHARGE_MODEL": "separate"}, "CHARGE_MODEL"),
                           ({"CHARGE_MODEL": "DIRECT"}, "CHARGE_MODEL"),
                           ({"CHARGE_MODEL": "direct", "DESTINATION_ON_BEHALF_OF": "true"}, "DESTINATION_ON_BEHALF_OF"),
                           ({"DESTINATION_ON_BEHALF_OF": "maybe"}, "DESTINATION_ON_BEHALF_OF"),
                           ({"DIRECT_REFUND_APPLICATION_FEE": "sometimes"}, "DIRECT_REFUND_APPLICATION_FEE")):
        socket_path = tmp_path / "model.sock"
        env = {**stack.app.env, "FCGI_SOCKET": str(socket_path), **settings}
        result = run([str(BINARY), "serve"], env=env, timeout=15)
        assert result.returncode == 1, result
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and name in lines[0], result.stderr
        assert not socket_path.exists()


def test_destination_on_behalf_of_makes_the_seller_the_settlement_merchant(stack, db):
    seller, buyer = onboarded_seller(stack, db), make_profile(db, "buyer")
    with stack.other_apps(DESTINATION_ON_BEHALF_OF="true") as app:
        wait_for(lambda: app.get("/api/health").status_code == 200, 15, what="the on_behalf_of app")
        body = buy_and_authorise(stack, app, db, seller, buyer, 5000)
    create = [r for r in stack.stripe.received(method="POST", path_prefix="/v1/payment_intents")
              if r["headers"].get("Idempotency-Key") == f"payment:{body['payment_id']}:create"]
    assert len(create) == 1, create
    params = create[0]["params"]
    assert params["on_behalf_of"] == params["transfer_data"]["destination"] == account_of(db, seller)
    assert "Stripe-Account" not in create[0]["headers"]
    row = payment_row(db, body["payment_id"])
    assert (row["charge_model"], row["on_behalf_of"], row["stripe_account"]) == ("destination", True, None)
    # The setting is the row's from now on: the session's app (without it) captures it as made.
    captured = stack.post("/api/payments/capture", json={"payment_id": body["payment_id"]}, headers=buyer["headers"])
    assert captured.status_code == 200 and captured.json()["status"] == "succeeded", captured.text


def test_destination_on_behalf_of_needs_card_payments_active(stack, db):
    """With on_behalf_of the seller is the settlement merchant, and Stripe requires its
    card_payments capability: without it, `409 seller_not_ready` names it (transfers alone is
    enough for a plain destination charge)."""
    seller, buyer = onboarded_seller(stack, db), make_profile(db, "buyer")
    listing = make_listing(db, seller, price=5000)
    with stack.other_apps(DESTINATION_ON_BEHALF_OF="true") as app:
        wait_for(lambda: app.get("/api/health").status_code == 200, 15, what="the on_behalf_of app")
        for capabilities in ('{"transfers": "active", "card_payments": "inactive"}', '{"transfers": "active"}'):
            db.execute("UPDATE profiles SET capabilities = %s::jsonb WHERE id = %s", (capabilities, seller["id"]))
            counts = table_fingerprint(db, tables=("payments", "listings"))
            refused = app.post("/api/payments/create-intent", json={"listing_id": listing}, headers=buyer["headers"])
            assert_envelope(refused, 409, "seller_not_ready")
            assert "capabilities.card_payments" in refused.json()["error"]["message"], refused.text
            assert table_fingerprint(db, tables=("payments", "listings")) == counts
            listed = {item["id"]: item for item in app.get("/api/listings?kind=item&limit=100",
                                                           headers=buyer["headers"]).json()["data"]}
            assert listed[listing]["seller_can_be_paid"] is False
            status = app.get("/api/connect/status", headers=seller["headers"]).json()
            assert status["missing"] == ["capabilities.card_payments"], status
            # Without on_behalf_of, the same seller can be paid by a destination charge.
            assert stack.get("/api/connect/status", headers=seller["headers"]).json()["ready_to_sell"] is True
        db.execute("UPDATE profiles SET capabilities = '{\"transfers\": \"active\", \"card_payments\": \"active\"}' "
                   "WHERE id = %s", (seller["id"],))
        created = app.post("/api/payments/create-intent", json={"listing_id": listing}, headers=buyer["headers"])
        assert created.status_code == 201, created.text
        assert payment_row(db, created.json()["payment_id"])["on_behalf_of"] is True


def test_an_event_refused_when_applied_again_off_the_live_path_is_counted(stack, db, direct_app):
    """The sweeper's retries, replays and backfills apply stored events too: a refusal there is
    counted like a live one, where the inbox records it (`payments_webhook_events_refused`)."""
    body, account = direct_payment_for_events(stack, db, direct_app)
    intruder = account_of(db, onboarded_seller(stack, db))
    evt = intent_event("payment_intent.canceled", body, "canceled", account=intruder)
    # Stored as its first application left it when that failed (as after an effect error): to be retried.
    db.execute("INSERT INTO webhook_events (id, endpoint, type, created, account, object_id, payload, status, "
               "attempts, last_error, next_attempt_at) VALUES (%s, 'connect', %s, %s, %s, %s, %s, 'failed', 1, "
               "'an earlier failure', now())",
               (evt["id"], evt["type"], evt["created"], intruder, body["payment_intent_id"], encode(evt)))
    before = scrape(stack)
    replayed = run([str(BINARY), "events", "replay", "--id", evt["id"]], env=stack.app.env, timeout=60)
    assert replayed.returncode == 0 and replayed.stdout.split() == [evt["id"], "refused"], replayed
    row = event_row(db, evt["id"])
    assert row["status"] == "ignored" and row["last_error"].startswith("account_mismatch"), row
    after = scrape(stack)
    assert delta(before, after, REFUSED % "connect") == 1
    # The live counter is this process's deliveries only: a replay in another process is not in it.
    assert delta(before, after, REJECTIONS % ("connect", "account_mismatch")) == 0
    assert payment_row(db, body["payment_id"])["status"] == "requires_capture"


def payout_delay_fixes(stack, account, events):
    """The payout-delay fixes the app asked for these account.updated events (a fix's key names its event)."""
    ids = {e["id"].lower() for e in events}
    return [r for r in stack.stripe.received(method="POST", path_prefix=f"/v1/accounts/{account}")
            if r["headers"].get("Idempotency-Key", "").startswith(f"account:{account.lower()}:payout_delay:")
            and r["headers"]["Idempotency-Key"].rsplit(":", 1)[-1] in ids]


def account_updated(stack, account, delay_days, created):
    obj = stack.stripe_api("GET", f"/v1/accounts/{account}")
    obj["settings"]["payouts"]["schedule"]["delay_days"] = delay_days
    return event("account.updated", obj, created=created, account=account)


def test_an_older_account_updated_applied_late_asks_for_no_payout_delay_fix(stack, db):
    """Item 6 (a): an account.updated older than the view the profile holds shows a delay that may
    long have been fixed: it changes nothing and asks for nothing. A newer one showing the same
    drift is fixed (the control that the check can see a fix)."""
    seller = onboarded_seller(stack, db)
    account = account_of(db, seller)
    settle(stack)
    now = int(time.time())
    newest = account_updated(stack, account, 7, now + 100)     # the configured delay: nothing to fix
    older = account_updated(stack, account, 3, now + 50)       # older than `newest`, a drift
    later = account_updated(stack, account, 3, now + 200)      # newer, the same drift
    for evt in (newest, older, later):
        response = deliver(stack, encode(evt), endpoint="connect")
        assert response.status_code == 200 and response.json() == {"received": True}, response.text
    wait_for(lambda: payout_delay_fixes(stack, account, [later]), 15, what="the newer drift's fix")
    settle(stack)
    assert payout_delay_fixes(stack, account, [newest, older]) == []
    assert db.execute("SELECT account_event_created FROM profiles WHERE id = %s",
                      (seller["id"],)).fetchone()[0] == now + 200


def test_two_distinct_payout_delay_drifts_are_both_fixed(stack, db):
    """Item 6 (c): each fix's key names its event, so a second drift after a first was fixed is
    fixed too (a key made of the account and the days alone would replay the first answer)."""
    seller = onboarded_seller(stack, db)
    account = account_of(db, seller)
    settle(stack)

    def delay():
        return stack.stripe_api("GET", f"/v1/accounts/{account}")["settings"]["payouts"]["schedule"]["delay_days"]

    drifts = []
    for days in (3, 4):
        started = time.time()
        stack.stripe_api("POST", f"/v1/accounts/{account}", {"settings[payouts][schedule][delay_days]": str(days)})
        drifts += [e for e in stack.stripe.events("account.updated") if e.get("account") == account
                   and e["created"] >= int(started) - 1
                   and e["data"]["object"]["settings"]["payouts"]["schedule"]["delay_days"] == days][-1:]
        wait_for(lambda: delay() == 7, 15, what=f"the payout delay set back to 7 after {days}")
        settle(stack)
    assert len(drifts) == 2
    fixes = payout_delay_fixes(stack, account, drifts)
    assert sorted(r["headers"]["Idempotency-Key"] for r in fixes) == sorted(
        f"account:{account.lower()}:payout_delay:7:{e['id'].lower()}" for e in drifts), fixes
    assert all(r["status"] == 200 and not r.get("idempotent_replayed") for r in fixes), fixes
