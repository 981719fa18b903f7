"""Issue 15, item 1 — `payments reconcile`: our books against Stripe's list endpoints. Each kind
of drift is made on purpose and named exactly; without `--apply` nothing changes; with it only
the safe kinds (a transition Stripe already made, refund totals Stripe holds) are repaired,
audited; a clean window of real flows reports no drift; exit status 0, 1 or 2."""

import json
import subprocess
import time
import uuid

import requests

from charge_models import requests_since
from harness.api import make_listing, make_profile, onboarded_seller, table_fingerprint, wait_for
from harness.paths import BINARY
from security_routes import insert_payment
from test_chargebacks import open_chargeback, wait_chargeback
from test_disputes_platform import captured_purchase
from test_milestones import (  # noqa: F401  (autouse fixture)
    admin_client, fresh_loopback_windows, funded_job, open_dispute, release, seller_account, settle, wait_payment,
)
from test_events_backfill import lost_deliveries
from test_purchase_flow import authorised, confirm, created_intent, payment_row
from test_webhooks_inbox import scrape

TABLES = ("payments", "listings", "milestones", "refunds", "transfers", "disputes", "payouts", "webhook_events",
          "payment_audit_logs", "notifications")


def reconcile(stack, since, *args):
    result = subprocess.run([str(BINARY), "reconcile", "--since", str(since), "--until", str(int(time.time()) + 5),
                             "--format", "json", *args], env=stack.app.env, capture_output=True, text=True,
                            timeout=120)
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result.returncode, report, result.stderr


def found(report):
    return {(d["kind"], d["object"], d["stripe_id"]): d for d in report["drift"]}


def test_a_window_of_real_flows_has_no_drift(stack, db):
    """The integration suite's money flows, each once, in one window: Stripe and our books agree."""
    since = int(time.time()) - 1
    seller, buyer = onboarded_seller(stack, db), make_profile(db, "buyer")
    # A profile whose account Stripe refuses (deleted) is skipped, not an error.
    make_profile(db, "seller", stripe_account=f"acct_gone{uuid.uuid4().hex[:12]}", charges_enabled=True)
    captured_purchase(stack, db, seller, buyer, 5200)
    authorised(stack, db, price=3100, seller=seller)
    # Cancelled before capture.
    _, canceller, _, body = authorised(stack, db, price=1900, seller=seller)
    assert stack.post(f"/api/payments/{body['payment_id']}/cancel", json={},
                      headers=canceller["headers"]).status_code == 200
    # A goodwill refund of part of a sale, by an admin.
    admin = admin_client(stack, db)
    refunded = captured_purchase(stack, db, seller, buyer, 4400)
    assert admin.post(f"/api/admin/payments/{refunded['payment_id']}/refund",
                      json={"amount": 1000, "reason": "goodwill"}).status_code == 201
    # A platform dispute refunded in full, and a chargeback lost.
    disputed = captured_purchase(stack, db, seller, buyer, 2600)
    dispute = open_dispute(stack, buyer, disputed["payment_id"]).json()
    assert admin.refund(dispute["id"], amount=2600).status_code == 201
    charged_back = captured_purchase(stack, db, seller, buyer, 3300)
    chargeback = open_chargeback(stack, charged_back["charge"])
    wait_chargeback(db, chargeback["id"])
    stack.stripe_control("POST", f"/_control/disputes/{chargeback['id']}/close", {"outcome": "lost"})
    wait_chargeback(db, chargeback["id"], lambda row: row["status"] == "lost", what="the chargeback lost")
    # A milestone funded and released to the seller.
    job = funded_job(stack, db, (1500,), seller=seller)
    assert release(stack, job["buyer"], job["milestones"][0]).status_code == 200
    # A buyer who also sells, buying from another seller.
    both = onboarded_seller(stack, db)
    db.execute("UPDATE profiles SET roles = '{buyer,seller}' WHERE id = %s", (both["id"],))
    captured_purchase(stack, db, seller, both, 2100)
    settle(stack)
    code, report, stderr = reconcile(stack, since)
    assert (code, report["drift"] if report else stderr) == (0, []), report
    assert report["counts"] == {}


def test_each_drift_kind_is_named_and_only_the_safe_ones_are_repaired(stack, db):
    since = int(time.time()) - 1
    seller = onboarded_seller(stack, db)
    account = seller_account(db, seller)

    # A card authorised while our endpoint heard nothing: Stripe says requires_capture.
    _, _, _, lagging = created_intent(stack, db, 4400, seller)
    lost_deliveries(stack, lambda: confirm(stack, lagging["payment_intent_id"]))
    # A refund made at Stripe (say, in its dashboard) that we never heard of.
    paid = captured_purchase(stack, db, seller, make_profile(db, "buyer"), 6000)
    settle(stack)
    paid_intent = payment_row(db, paid["payment_id"])["stripe_payment_intent_id"]
    lost_deliveries(stack, lambda: stack.stripe_api("POST", "/v1/refunds",
                                                    {"payment_intent": paid_intent, "amount": 1500}))
    # Amount and fee edited on our side.
    edited = captured_purchase(stack, db, seller, make_profile(db, "buyer"), 2500)
    settle(stack)
    edited_intent = payment_row(db, edited["payment_id"])["stripe_payment_intent_id"]
    db.execute("UPDATE payments SET amount_cents = 2600, application_fee_cents = 999 WHERE id = %s",
               (edited["payment_id"],))
    # A row whose intent Stripe never had, an intent that names a payment we lost, and one that
    # names nothing of ours; an Express account without a profile; a payout we never heard of.
    ghost = insert_payment(db, make_profile(db, "buyer"), make_profile(db, "seller"))
    ghost_intent = payment_row(db, ghost)["stripe_payment_intent_id"]
    lost = stack.stripe_api("POST", "/v1/payment_intents", {"amount": 700, "currency": "usd",
                                                            "metadata[payment_id]": str(uuid.uuid4())})["id"]
    stray = stack.stripe_api("POST", "/v1/payment_intents", {"amount": 800, "currency": "usd"})["id"]
    orphan_account = stack.stripe_api("POST", "/v1/accounts", {"type": "express"})["id"]
    payout = lost_deliveries(stack, lambda: stack.stripe_control(
        "POST", f"/_control/accounts/{account}/payouts", {"amount": 300}))["id"]

    before = table_fingerprint(db, tables=TABLES)
    code, report, stderr = reconcile(stack, since)
    assert code == 1, (code, stderr)
    drift = found(report)
    expected = {
        ("status_differs", "payment_intent", lagging["payment_intent_id"]),
        ("refund_sum_differs", "payment_intent", paid_intent),
        ("amount_differs", "payment_intent", edited_intent),
        ("fee_differs", "payment_intent", edited_intent),
        ("missing_at_stripe", "payment_intent", ghost_intent),
        ("missing_here", "payment_intent", lost),
        ("orphan_at_stripe", "payment_intent", stray),
        ("orphan_at_stripe", "account", orphan_account),
        ("missing_here", "payout", payout),
    }
    assert set(drift) == expected, sorted(set(drift) ^ expected)
    assert drift[("status_differs", "payment_intent", lagging["payment_intent_id"])]["stripe"] == "requires_capture"
    assert drift[("refund_sum_differs", "payment_intent", paid_intent)]["stripe"] == "refunded 1500"
    assert drift[("fee_differs", "payment_intent", edited_intent)]["ours"] == "fee 999"
    assert report["counts"]["orphan_at_stripe"] == 2
    # /metrics shows the last run's drift by kind.
    metrics = scrape(stack)
    assert metrics['payments_reconcile_drift{kind="orphan_at_stripe"}'] == report["counts"]["orphan_at_stripe"]
    assert metrics['payments_reconcile_drift{kind="status_differs"}'] == report["counts"]["status_differs"]
    assert abs(metrics["payments_reconcile_last_run_timestamp_seconds"] - time.time()) < 120
    # A report changes nothing but its own run record.
    assert table_fingerprint(db, tables=TABLES) == before

    code, report, _ = reconcile(stack, since, "--apply")
    repaired = {key for key, d in found(report).items() if d["repaired"]}
    assert repaired == {("status_differs", "payment_intent", lagging["payment_intent_id"]),
                        ("refund_sum_differs", "payment_intent", paid_intent)}, repaired
    assert code == 1  # the others need a person
    assert payment_row(db, lagging["payment_id"])["status"] == "requires_capture"
    assert payment_row(db, paid["payment_id"])["amount_refunded"] == 1500
    audited = db.execute("SELECT entity_id, actor_role FROM payment_audit_logs WHERE operation = 'reconcile.repair'"
                         " AND entity_id IN (%s, %s)", (lagging["payment_id"], paid["payment_id"])).fetchall()
    assert sorted(audited) == sorted([(lagging["payment_id"], "system"), (paid["payment_id"], "system")])
    # Repaired drift is gone from the next report; edited rows are untouched.
    code, report, _ = reconcile(stack, since)
    assert not ({("status_differs", "payment_intent", lagging["payment_intent_id"]),
                 ("refund_sum_differs", "payment_intent", paid_intent)} & set(found(report)))
    assert payment_row(db, edited["payment_id"])["amount_cents"] == 2600
    runs = db.execute("SELECT drift_total, repaired FROM reconcile_runs ORDER BY id DESC LIMIT 3").fetchall()
    assert runs[1][1] == 2 and runs[2][1] == 0, runs


def on_account(stack, account, method, path, params):
    """A call to the fake's API on a connected account (`Stripe-Account`), as a dashboard makes it."""
    response = requests.request(method, stack.stripe.url + path, data=params, verify=False, timeout=30,
                                headers={"Authorization": "Bearer " + stack.app.env["STRIPE_SECRET_KEY"],
                                         "Stripe-Account": account})
    response.raise_for_status()
    return response.json()


def test_direct_charges_are_reconciled_on_the_sellers_account(stack, db):
    """Issue 16, item 7: a direct charge's intent and refunds live on the seller's connected
    account. Reconcile lists them there, with `Stripe-Account`: a direct charge in step with
    Stripe is no drift (not `missing_at_stripe`), and its drift is found and repaired like a
    platform charge's. The platform's own list still finds nothing of the direct charges."""
    # The window opens on the next whole second: the drift the test before made stays out of it.
    since = int(time.time()) + 1
    time.sleep(since - time.time())
    seller = onboarded_seller(stack, db)
    account = seller_account(db, seller)
    buyers = [make_profile(db, "buyer") for _ in range(3)]
    with stack.other_apps(CHARGE_MODEL="direct") as direct:
        wait_for(lambda: direct.get("/api/health").status_code == 200, 15, what="the direct-charge app")

        def buy(buyer, price):
            created = direct.post("/api/payments/create-intent", json={"listing_id": make_listing(db, seller, price=price)},
                                  headers=buyer["headers"])
            assert created.status_code == 201 and created.json()["stripe_account"] == account, created.text
            return created.json()

        # In step: authorised, and seen so.
        in_step = buy(buyers[0], 3000)
        assert confirm(stack, in_step["payment_intent_id"])[1]["status"] == "requires_capture"
        wait_payment(db, in_step["payment_id"], "requires_capture")
        # Authorised while our Connect endpoint heard nothing.
        lagging = buy(buyers[1], 4400)
        lost_deliveries(stack, lambda: confirm(stack, lagging["payment_intent_id"]))
        # Captured, then partly refunded in the seller's dashboard; we never heard of the refund.
        paid = buy(buyers[2], 6000)
        confirm(stack, paid["payment_intent_id"])
        wait_payment(db, paid["payment_id"], "requires_capture")
        captured = direct.post("/api/payments/capture", json={"payment_id": paid["payment_id"]},
                               headers=buyers[2]["headers"])
        assert captured.status_code == 200, captured.text
        settle(stack)
        lost_deliveries(stack, lambda: on_account(stack, account, "POST", "/v1/refunds",
                                                  {"payment_intent": paid["payment_intent_id"], "amount": 1500}))
    assert {r[0] for r in db.execute("SELECT charge_model FROM payments WHERE id IN (%s, %s, %s)",
                                     (in_step["payment_id"], lagging["payment_id"], paid["payment_id"]))} == {"direct"}

    started = time.time()
    code, report, stderr = reconcile(stack, since)
    assert code == 1, (code, stderr)
    expected = {("status_differs", "payment_intent", lagging["payment_intent_id"]),
                ("refund_sum_differs", "payment_intent", paid["payment_intent_id"])}
    assert set(found(report)) == expected, sorted(set(found(report)) ^ expected)
    assert found(report)[("refund_sum_differs", "payment_intent", paid["payment_intent_id"])]["stripe"] == \
        "refunded 1500"
    # The seller's account was read with its header: intents, refunds and disputes.
    listed = {r["path"].split("?")[0] for r in requests_since(stack, started)
              if r["method"] == "GET" and r["headers"].get("Stripe-Account") == account}
    assert {"/v1/payment_intents", "/v1/refunds", "/v1/disputes"} <= listed, listed

    code, report, _ = reconcile(stack, since, "--apply")
    assert {key for key, d in found(report).items() if d["repaired"]} == expected
    assert code == 0, report
    assert payment_row(db, lagging["payment_id"])["status"] == "requires_capture"
    assert payment_row(db, paid["payment_id"])["amount_refunded"] == 1500
    code, report, _ = reconcile(stack, since)
    assert (code, report["drift"]) == (0, [])


def test_text_report_and_exit_status_2_on_error(stack, db):
    since = int(time.time()) + 2  # a window with nothing in it
    result = subprocess.run([str(BINARY), "reconcile", "--since", str(since), "--until", str(since + 1)],
                            env=stack.app.env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("reconcile: 0 drifts"), result.stdout
    broken = subprocess.run([str(BINARY), "reconcile"], env={**stack.app.env, "STRIPE_API_BASE": "http://127.0.0.1:9"},
                            capture_output=True, text=True, timeout=120)
    assert broken.returncode == 2, (broken.returncode, broken.stderr)
    assert broken.stderr.startswith("payments: ")
    misuse = subprocess.run([str(BINARY), "reconcile", "--format", "xml"], env=stack.app.env,
                            capture_output=True, text=True, timeout=60)
    assert misuse.returncode == 64
