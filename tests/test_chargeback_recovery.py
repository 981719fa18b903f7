"""Issue 15, item 5 — chargeback recovery on destination charges. Under
`CHARGEBACK_LIABILITY=seller` the sweeper takes a chargeback's amount back from the seller's
transfer once Stripe has withdrawn it (one reversal, key `dispute:{id}:recovery`); a reversal
Stripe refuses is a debt, shown to admins and retried until it succeeds; a chargeback won after
its recovery is undone with a transfer back. Under `platform` (the default) nothing is recovered."""

import subprocess

from harness.api import stripe_calls
from harness.paths import BINARY
from test_chargebacks import chargeback_case, open_chargeback, wait_chargeback
from test_milestones import fake_object, fresh_loopback_windows, seller_account, settle  # noqa: F401

SELLER = {"CHARGEBACK_LIABILITY": "seller"}


def sweep(stack, **settings):
    result = subprocess.run([str(BINARY), "sweep"], env={**stack.app.env, **settings}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def withdrawn_chargeback(stack, db, price=8000):
    case = chargeback_case(stack, db, price)
    dp = open_chargeback(stack, case["charge"])
    row = wait_chargeback(db, dp["id"], lambda r: r["funds_withdrawn_cents"] > 0, "funds withdrawn")
    return case, dp, row


def recovery(db, dispute_id):
    cursor = db.execute("SELECT * FROM chargeback_recoveries WHERE dispute_id = %s", (dispute_id,))
    names = [c.name for c in cursor.description]
    row = cursor.fetchone()
    return dict(zip(names, row)) if row else None


def seller_transfer(db, payment_id):
    return db.execute("SELECT stripe_transfer_id, amount_cents FROM transfers WHERE payment_id = %s"
                      " ORDER BY created_at LIMIT 1", (payment_id,)).fetchone()


def notified(db, profile_id, kind, dispute_id):
    return db.execute("SELECT count(*) FROM notifications WHERE profile_id = %s AND kind = %s"
                      " AND payload->>'dispute_id' = %s", (profile_id, kind, dispute_id)).fetchone()[0]


def test_a_lost_chargeback_is_recovered_from_the_seller_once(stack, db):
    case, dp, row = withdrawn_chargeback(stack, db, 8000)
    dispute_id = str(row["id"])
    stack.stripe_control("POST", f"/_control/disputes/{dp['id']}/close", {"outcome": "lost"})
    wait_chargeback(db, dp["id"], lambda r: r["status"] == "lost", "the chargeback lost")
    transfer_id, transferred = seller_transfer(db, case["payment_id"])

    sweep(stack, **SELLER)
    sweep(stack, **SELLER)  # a second run (or host) moves nothing more
    reversals = stripe_calls(stack, f"dispute:{dispute_id}:recovery", path_prefix="/v1/transfers/")
    assert [(r["path"], r["params"]["amount"], r["status"]) for r in reversals] == [
        (f"/v1/transfers/{transfer_id}/reversals", str(transferred), 200)], reversals
    # The seller received 8 000 less the platform's fee: all of that comes back, never more.
    assert transferred < row["amount_cents"] == 8000
    assert fake_object(stack, transfer_id)["amount_reversed"] == transferred
    done = recovery(db, dispute_id)
    assert (done["status"], done["amount_cents"], done["attempts"]) == ("recovered", transferred, 1), done
    assert done["stripe_reversal_id"].startswith("trr_")
    assert notified(db, case["seller"]["id"], "chargeback_recovered", dispute_id) == 1
    ops = [r[0] for r in db.execute("SELECT operation FROM payment_audit_logs WHERE entity_id = %s", (dispute_id,))]
    assert ops.count("chargeback.recovered") == 1, ops
    # Admins see it on the dispute.
    detail = case["admin"].get(f"/api/admin/disputes/{dispute_id}").json()
    assert detail["recovery"]["status"] == "recovered" and detail["recovery"]["amount"] == transferred


def test_a_refused_reversal_is_a_debt_retried_until_it_succeeds(stack, db):
    case, dp, row = withdrawn_chargeback(stack, db, 5000)
    dispute_id = str(row["id"])
    try:
        stack.stripe_control("POST", "/_control/faults", {
            "type": "error", "status": 400, "method": "POST", "path_prefix": "/v1/transfers/", "count": 1,
            "error": {"type": "invalid_request_error", "code": "balance_insufficient",
                      "message": "Insufficient funds in the connected account."}})
        sweep(stack, **SELLER)
    finally:
        stack.stripe_control("DELETE", "/_control/faults")
    debt = recovery(db, dispute_id)
    assert (debt["status"], debt["last_error"], debt["attempts"]) == ("debt", "balance_insufficient", 1), debt
    admins = db.execute("SELECT count(*) FROM notifications n JOIN profiles p ON p.id = n.profile_id"
                        " WHERE p.roles = '{admin}' AND n.kind = 'seller_debt' AND n.payload->>'dispute_id' = %s",
                        (dispute_id,)).fetchone()[0]
    assert admins >= 1
    assert notified(db, case["seller"]["id"], "seller_debt", dispute_id) == 1
    # Not retried before its time…
    sweep(stack, **SELLER)
    assert recovery(db, dispute_id)["status"] == "debt"
    # …then retried under the same key, and settled.
    db.execute("UPDATE chargeback_recoveries SET next_attempt_at = now() WHERE dispute_id = %s", (dispute_id,))
    sweep(stack, **SELLER)
    settled = recovery(db, dispute_id)
    assert (settled["status"], settled["attempts"]) == ("recovered", 2), settled
    keys = {r["headers"].get("Idempotency-Key") for r in stripe_calls(stack, f"dispute:{dispute_id}:recovery",
                                                                       path_prefix="/v1/transfers/")}
    assert keys == {f"dispute:{dispute_id}:recovery"}
    assert notified(db, case["seller"]["id"], "seller_debt", dispute_id) == 1  # told once


def test_a_chargeback_won_after_its_recovery_is_given_back(stack, db):
    case, dp, row = withdrawn_chargeback(stack, db, 6000)
    dispute_id = str(row["id"])
    sweep(stack, **SELLER)  # recovered early: when Stripe withdrew the funds
    recovered = recovery(db, dispute_id)
    assert recovered["status"] == "recovered"
    stack.stripe_control("POST", f"/_control/disputes/{dp['id']}/resolve", {"outcome": "won"})
    wait_chargeback(db, dp["id"], lambda r: r["status"] == "won", "the chargeback won")
    sweep(stack, **SELLER)
    undone = recovery(db, dispute_id)
    assert undone["status"] == "undone", undone
    (call,) = stripe_calls(stack, f"dispute:{dispute_id}:recovery:undo", path_prefix="/v1/transfers")
    assert (call["params"]["amount"], call["params"]["destination"]) == (
        str(recovered["amount_cents"]), seller_account(db, case["seller"]))
    assert fake_object(stack, undone["stripe_undo_transfer_id"])["amount"] == recovered["amount_cents"]
    assert notified(db, case["seller"]["id"], "chargeback_recovery_returned", dispute_id) == 1


def test_under_platform_liability_nothing_is_recovered(stack, db):
    case, dp, row = withdrawn_chargeback(stack, db, 4000)
    sweep(stack)
    assert recovery(db, str(row["id"])) is None
    assert stripe_calls(stack, f"dispute:{row['id']}:recovery", path_prefix="/v1/transfers/") == []


def test_a_bad_liability_setting_is_refused(stack):
    result = subprocess.run([str(BINARY), "sweep"], env={**stack.app.env, "CHARGEBACK_LIABILITY": "buyer"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "CHARGEBACK_LIABILITY must be platform or seller" in result.stderr


def test_a_won_chargeback_whose_recovery_answer_was_lost_is_settled_not_waived(stack, db):
    """The reversal happened at Stripe but its answer was lost; then the chargeback is won. The
    recovery is not waived blindly: the retry under the same key learns the reversal happened,
    and the money goes back to the seller — once."""
    case, dp, row = withdrawn_chargeback(stack, db, 7000)
    dispute_id = str(row["id"])
    try:
        stack.stripe_control("POST", "/_control/faults", {"type": "drop", "when": "after", "method": "POST",
                                                          "path_prefix": "/v1/transfers/", "count": 10})
        sweep(stack, **SELLER)
    finally:
        stack.stripe_control("DELETE", "/_control/faults")
    lost = recovery(db, dispute_id)
    assert (lost["status"], lost["outcome_unknown"]) == ("due", True), lost
    transfer_id, transferred = seller_transfer(db, case["payment_id"])
    assert fake_object(stack, transfer_id)["amount_reversed"] == transferred  # it did happen

    stack.stripe_control("POST", f"/_control/disputes/{dp['id']}/resolve", {"outcome": "won"})
    wait_chargeback(db, dp["id"], lambda r: r["status"] == "won", "the chargeback won")
    sweep(stack, **SELLER)  # the retry learns the reversal happened
    sweep(stack, **SELLER)  # and gives it back
    assert recovery(db, dispute_id)["status"] == "undone"
    executed = [r for r in stripe_calls(stack, f"dispute:{dispute_id}:recovery", path_prefix="/v1/transfers/")
                if r["status"] == 200 and not r.get("idempotent_replayed")]
    assert len(executed) == 1, executed
    assert len(stripe_calls(stack, f"dispute:{dispute_id}:recovery:undo", path_prefix="/v1/transfers")) == 1
