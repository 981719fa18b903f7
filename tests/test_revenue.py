"""Issue 15, item 7 — fees and revenue: the sweeper records Stripe's processing fee of each
captured charge from its balance transaction, and `GET /api/admin/revenue` sums gross,
application fees, Stripe fees and net by day, agreeing with the fake's balance transactions to
the cent."""

import subprocess
import time
from datetime import datetime, timezone

from harness.api import make_profile, onboarded_seller
from harness.assertions import assert_envelope
from harness.paths import BINARY
from test_disputes_platform import captured_purchase
from test_milestones import Client, admin_client, fake_object, fresh_loopback_windows, settle  # noqa: F401
from test_purchase_flow import payment_row


def sweep(stack):
    result = subprocess.run([str(BINARY), "sweep"], env=stack.app.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def test_stripe_fees_are_recorded_and_the_revenue_report_agrees_with_stripe(stack, db):
    # A window that starts after everything earlier tests made.
    since = int(time.time()) + 1
    time.sleep(max(0.0, since - time.time()))
    seller = onboarded_seller(stack, db)
    purchases = [captured_purchase(stack, db, seller, make_profile(db, "buyer"), price) for price in (8000, 1234)]
    settle(stack)
    assert all(payment_row(db, p["payment_id"])["stripe_fee_cents"] is None for p in purchases)
    assert "record_charge_fees: " in sweep(stack)

    transactions = []
    for purchase in purchases:
        row = payment_row(db, purchase["payment_id"])
        txn = fake_object(stack, fake_object(stack, row["stripe_charge_id"])["balance_transaction"])
        assert (row["stripe_fee_cents"], row["stripe_balance_transaction"]) == (txn["fee"], txn["id"])
        transactions.append((row, txn))

    admin = admin_client(stack, db)
    report = admin.get(f"/api/admin/revenue?since={since}&until={int(time.time()) + 5}")
    assert report.status_code == 200, report.text
    (day,) = report.json()["data"]
    assert day["day"] == datetime.now(timezone.utc).strftime("%Y-%m-%d")
    gross = sum(txn["amount"] for _, txn in transactions)
    stripe_fees = sum(txn["fee"] for _, txn in transactions)
    application_fees = sum(row["application_fee_cents"] for row, _ in transactions)
    assert (day["charges"], day["gross"], day["stripe_fees"], day["application_fees"]) == (
        2, gross, stripe_fees, application_fees), day
    assert day["net"] == application_fees - stripe_fees and day["unrecorded_fees"] == 0
    # Recorded once: a second sweep asks Stripe nothing more for these charges.
    asked = len(stack.stripe.received(method="GET", path_prefix="/v1/charges/"))
    sweep(stack)
    assert len(stack.stripe.received(method="GET", path_prefix="/v1/charges/")) == asked


def test_revenue_is_admin_only_and_validates_its_window(stack, db):
    admin = admin_client(stack, db)
    assert_envelope(admin.get("/api/admin/revenue?since=10&until=5"), 400, "invalid_field")
    assert_envelope(admin.get("/api/admin/revenue?since=yesterday"), 400, "invalid_field")
    assert_envelope(Client(stack, make_profile(db, "seller")).get("/api/admin/revenue"), 403, "forbidden")
    assert admin.get("/api/admin/revenue").status_code == 200
