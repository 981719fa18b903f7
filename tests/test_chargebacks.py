"""Issue 9, Stripe chargebacks end to end: the fake's control API opens a dispute on a captured
charge and moves it (charge.dispute.created → funds_withdrawn → updated → funds_reinstated /
closed), which reaches the app as signed webhooks through nginx; the app keeps a `chargeback`
dispute row, marks the payment disputed, tells the admins, blocks release, and lets an admin
stage and submit evidence at Stripe. The life of a chargeback and a lost one run under both
charge models (issue 16): a direct charge's dispute lives on the seller's account, its events
come to the Connect endpoint, its evidence goes there with `Stripe-Account`, and no recovery
from the seller is queued (Stripe took the amount from the seller's balance)."""

import subprocess
from datetime import datetime, timezone

import pytest

from charge_models import stack_by_model, stripe_account_scoped  # noqa: F401  (see charge_models.py)
from harness.api import make_profile, onboarded_seller
from harness.assertions import assert_envelope, request_id
from harness.paths import BINARY
from test_disputes_platform import captured_purchase
from test_milestones import (  # noqa: F401  (the autouse fixture applies here too)
    admin_client, audit, audit_by_request, calls, fake_object, fresh_loopback_windows, funded_job, many, milestone_status,
    notifications, one, open_dispute, payment_row, release, seller_account, settle, transfers_for_charge, wait_for,
)

BOTH_MODELS = pytest.mark.parametrize("stack", ["destination", "direct"], indirect=True)

EVIDENCE = {"product_description": "A 1970s road bike, serial RB-1234.",
            "shipping_tracking_number": "1Z999AA10123456784",
            "uncategorized_text": "Delivered and signed for by the cardholder."}


def open_chargeback(stack, charge, **body):
    return stack.stripe_control("POST", f"/_control/charges/{charge}/dispute", {"reason": "fraudulent", **body})


def chargeback_row(db, stripe_dispute_id):
    return one(db, "SELECT * FROM disputes WHERE stripe_dispute_id = %s", (stripe_dispute_id,))


def wait_chargeback(db, stripe_dispute_id, predicate=lambda row: True, what="the chargeback row"):
    return wait_for(lambda: (row := chargeback_row(db, stripe_dispute_id)) and predicate(row) and row, what=what)


def chargeback_case(stack, db, price=8000):
    seller = onboarded_seller(stack, db)
    buyer = make_profile(db, "buyer")
    admin = admin_client(stack, db)
    purchase = captured_purchase(stack, db, seller, buyer, price)
    settle(stack)
    return {"seller": seller, "buyer": buyer, "admin": admin, **purchase}


def recoveries(db, dispute_id):
    return many(db, "SELECT * FROM chargeback_recoveries WHERE dispute_id = %s", (dispute_id,))


@BOTH_MODELS
def test_chargeback_life_created_withdrawn_evidence_staged_submitted_won(stack, db):
    case = chargeback_case(stack, db, 8000)
    # A direct charge's dispute is answered on the seller's account; a destination one on the platform.
    owner = seller_account(db, case["seller"]) if stack.is_direct else None
    admin = case["admin"]
    dp = open_chargeback(stack, case["charge"], reason="product_not_received")
    assert dp["status"] == "needs_response" and dp["amount"] == 8000

    # charge.dispute.created and funds_withdrawn arrive: one chargeback row.
    row = wait_chargeback(db, dp["id"], lambda r: r["funds_withdrawn_cents"] == 8000, what="funds withdrawn recorded")
    settle(stack)
    row = chargeback_row(db, dp["id"])
    assert (row["kind"], str(row["payment_id"]), row["status"], row["reason"], row["amount_cents"], row["currency"]) == \
        ("chargeback", case["payment_id"], "needs_response", "product_not_received", 8000, "usd")
    assert row["due_by"] == datetime.fromtimestamp(dp["evidence_details"]["due_by"], timezone.utc)
    assert row["evidence_status"] == "none"
    assert (row["funds_withdrawn_cents"], row["funds_reinstated_cents"]) == (8000, 0)
    assert db.execute("SELECT count(*) FROM disputes WHERE stripe_dispute_id = %s", (dp["id"],)).fetchone()[0] == 1
    assert payment_row(db, case["payment_id"])["is_disputed"] is True
    dispute_id = str(row["id"])
    told = notifications(db, admin.profile["id"], "chargeback_opened")
    assert [(n["payload"]["dispute_id"], n["payload"]["amount_cents"]) for n in told] == [(dispute_id, 8000)]
    assert len(notifications(db, case["seller"]["id"], "chargeback_opened")) == 1
    assert notifications(db, case["buyer"]["id"], "chargeback_opened") == []
    ops = [r["operation"] for r in audit(db, "dispute", dispute_id)]
    assert "charge.dispute.created" in ops and "charge.dispute.funds_withdrawn" in ops, ops

    # The admin sees it with Stripe's reason, due_by and evidence status.
    shown = admin.dispute(dispute_id)
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert (body["kind"], body["status"], body["reason"], body["stripe_dispute_id"], body["amount"], body["evidence_status"],
            body["funds_withdrawn"]) == ("chargeback", "needs_response", "product_not_received", dp["id"], 8000, "none", 8000)
    assert datetime.fromisoformat(body["due_by"].replace("Z", "+00:00")) == row["due_by"]
    assert body["payment"]["buyer_id"] == case["buyer"]["id"] and body["payment"]["seller_id"] == case["seller"]["id"]

    # Evidence staged (submit=false): at the fake the dispute has it, not submitted. Stripe's
    # charge.dispute.updated for it is held back until the API call has answered (Stripe
    # delivers when it delivers).
    # (What that late webhook does to the row: test_staged_evidence_survives_the_late_update_webhook.)
    stack.stripe_control("POST", "/_control/webhooks/pause", {"endpoint": stack.payment_events_endpoint})
    try:
        staged = admin.evidence(dispute_id, EVIDENCE, submit=False)
        row = chargeback_row(db, dp["id"])
        assert (row["status"], row["evidence_status"]) == ("needs_response", "staged")
    finally:
        stack.stripe_control("POST", "/_control/webhooks/resume", {"endpoint": stack.payment_events_endpoint})
    assert staged.status_code == 200, staged.text
    assert (staged.json()["evidence_status"], staged.json()["status"]) == ("staged", "needs_response")
    sent = [r for r in stack.stripe.received(method="POST", path_prefix=f"/v1/disputes/{dp['id']}")]
    assert len(sent) == 1, sent
    key = sent[0]["headers"]["Idempotency-Key"]
    assert key.startswith(f"dispute:{dispute_id}:evidence:") and len(key.rsplit(":", 1)[1]) == 16, key
    assert sent[0]["params"]["evidence"] == EVIDENCE and sent[0]["params"]["submit"] == "false", sent[0]["params"]
    assert sent[0]["headers"].get("Stripe-Account") == owner
    assert body["payment"]["charge_model"] == stack.charge_model and body["payment"]["stripe_account"] == owner
    at_fake = fake_object(stack, dp["id"])
    assert {k: at_fake["evidence"][k] for k in EVIDENCE} == EVIDENCE
    assert (at_fake["status"], at_fake["evidence_details"]["submission_count"], at_fake["evidence_details"]["has_evidence"]) == \
        ("needs_response", 0, True)
    updated = [e["id"] for e in stack.stripe.events("charge.dispute.updated") if e["data"]["object"]["id"] == dp["id"]]
    assert len(updated) == 1, updated
    settle(stack)
    wait_for(lambda: one(db, "SELECT status FROM webhook_events WHERE id = %s", (updated[0],)) == {"status": "processed"},
             what="the staging's charge.dispute.updated applied")
    assert chargeback_row(db, dp["id"])["status"] == "needs_response"
    staged_audit = audit_by_request(db, request_id(staged))
    assert [(r["operation"], r["success"], r["actor"]) for r in staged_audit] == [("dispute.evidence", True, admin.profile["id"])]
    assert staged_audit[0]["new_values"]["evidence_status"] == "staged"
    assert sorted(staged_audit[0]["new_values"]["fields"]) == sorted(EVIDENCE)
    # The same request again is the same Stripe call (same key): nothing new is staged.
    again = admin.evidence(dispute_id, EVIDENCE, submit=False)
    assert again.status_code == 200, again.text
    assert all(r["headers"]["Idempotency-Key"] == key for r in stack.stripe.received(
        method="POST", path_prefix=f"/v1/disputes/{dp['id']}"))

    # Submitted: under review at the fake and here.
    submitted = admin.evidence(dispute_id, {"uncategorized_text": "Signed delivery receipt attached."}, submit=True)
    assert submitted.status_code == 200, submitted.text
    assert (submitted.json()["evidence_status"], submitted.json()["status"]) == ("submitted", "under_review")
    last = stack.stripe.received(method="POST", path_prefix=f"/v1/disputes/{dp['id']}")[-1]
    assert last["params"]["submit"] == "true" and last["headers"]["Idempotency-Key"] != key
    assert last["headers"].get("Stripe-Account") == owner
    at_fake = fake_object(stack, dp["id"])
    assert (at_fake["status"], at_fake["evidence_details"]["submission_count"]) == ("under_review", 1)
    assert at_fake["evidence"]["product_description"] == EVIDENCE["product_description"]
    settle(stack)
    row = chargeback_row(db, dp["id"])
    assert (row["status"], row["evidence_status"]) == ("under_review", "submitted")
    assert payment_row(db, case["payment_id"])["is_disputed"] is True

    # The network decides for the merchant: funds reinstated, closed as won.
    stack.stripe_control("POST", f"/_control/disputes/{dp['id']}/resolve", {"outcome": "won"})
    row = wait_chargeback(db, dp["id"], lambda r: r["status"] == "won", what="won")
    settle(stack)
    row = chargeback_row(db, dp["id"])
    assert (row["status"], row["funds_withdrawn_cents"], row["funds_reinstated_cents"], row["evidence_status"]) == \
        ("won", 8000, 8000, "submitted")
    assert payment_row(db, case["payment_id"])["is_disputed"] is False
    assert len(notifications(db, admin.profile["id"], "chargeback_opened")) == 1     # told once
    ops = [r["operation"] for r in audit(db, "dispute", dispute_id)]
    assert "charge.dispute.funds_reinstated" in ops and "charge.dispute.closed" in ops, ops
    # Closed at Stripe: no more evidence.
    late = admin.evidence(dispute_id, EVIDENCE, submit=True)
    assert late.status_code in (409, 422, 502), late.text
    assert_envelope(late, late.status_code, late.json()["error"]["code"])
    assert chargeback_row(db, dp["id"])["status"] == "won"


@BOTH_MODELS
def test_a_seller_answers_the_chargebacks_of_its_direct_charges(stack, db):
    """Issue 16, item 3: a direct charge's chargeback is the seller's, so the seller stages and
    submits its evidence (`POST /api/disputes/{id}/evidence`), on its own account. A destination
    charge's is the platform's: the seller is refused (403) and Stripe is not called. Another
    seller does not learn that the dispute exists (404)."""
    case = chargeback_case(stack, db, 4500)
    dp = open_chargeback(stack, case["charge"], reason="product_not_received")
    dispute_id = str(wait_chargeback(db, dp["id"], lambda r: r["funds_withdrawn_cents"] == 4500)["id"])
    settle(stack)

    def answer(profile, submit=False):
        return stack.post(f"/api/disputes/{dispute_id}/evidence", json={"evidence": EVIDENCE, "submit": submit},
                          headers=profile["headers"])

    def sent():
        return stack.stripe.received(method="POST", path_prefix=f"/v1/disputes/{dp['id']}")

    assert_envelope(answer(onboarded_seller(stack, db)), 404, "not_found")
    assert_envelope(answer(case["buyer"]), 403, "forbidden")
    if not stack.is_direct:
        refused = answer(case["seller"])
        assert_envelope(refused, 403, "forbidden")
        assert "platform's to answer" in refused.json()["error"]["message"]
        assert sent() == [] and chargeback_row(db, dp["id"])["evidence_status"] == "none"
        return
    staged = answer(case["seller"])
    assert staged.status_code == 200, staged.text
    assert (staged.json()["evidence_status"], staged.json()["status"]) == ("staged", "needs_response")
    submitted = answer(case["seller"], submit=True)
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["status"] == "under_review"
    calls_made = sent()
    assert [c["params"]["submit"] for c in calls_made] == ["false", "true"]
    assert {c["headers"].get("Stripe-Account") for c in calls_made} == {seller_account(db, case["seller"])}
    assert fake_object(stack, dp["id"])["evidence_details"]["submission_count"] == 1
    settle(stack)
    assert (chargeback_row(db, dp["id"])["status"], chargeback_row(db, dp["id"])["evidence_status"]) == \
        ("under_review", "submitted")
    audited = audit_by_request(db, request_id(submitted))
    assert [(r["operation"], r["success"], r["actor"]) for r in audited] == \
        [("dispute.evidence", True, case["seller"]["id"])]


def test_staged_evidence_survives_the_late_update_webhook(stack, db):
    """Staging evidence makes Stripe emit charge.dispute.updated (evidence set, nothing
    submitted). Delivered after the API call answered, it must not turn `staged` back into
    `none`: the dispute at Stripe has evidence (`has_evidence`)."""
    case = chargeback_case(stack, db, 6000)
    dp = open_chargeback(stack, case["charge"])
    dispute_id = str(wait_chargeback(db, dp["id"], lambda r: r["funds_withdrawn_cents"] == 6000)["id"])
    settle(stack)
    stack.stripe_control("POST", "/_control/webhooks/pause", {"endpoint": "platform"})
    try:
        staged = case["admin"].evidence(dispute_id, EVIDENCE, submit=False)
        assert staged.status_code == 200, staged.text
        assert chargeback_row(db, dp["id"])["evidence_status"] == "staged"
    finally:
        stack.stripe_control("POST", "/_control/webhooks/resume", {"endpoint": "platform"})
    updated = [e["id"] for e in stack.stripe.events("charge.dispute.updated") if e["data"]["object"]["id"] == dp["id"]]
    assert len(updated) == 1, updated
    settle(stack)
    wait_for(lambda: one(db, "SELECT status FROM webhook_events WHERE id = %s", (updated[0],)) == {"status": "processed"},
             what="charge.dispute.updated applied")
    assert fake_object(stack, dp["id"])["evidence_details"]["has_evidence"] is True
    row = chargeback_row(db, dp["id"])
    assert (row["status"], row["evidence_status"]) == ("needs_response", "staged")
    shown = case["admin"].dispute(dispute_id).json()
    assert shown["evidence_status"] == "staged", shown


@BOTH_MODELS
def test_chargeback_lost_is_closed_and_unblocks_nothing_twice(stack, db):
    case = chargeback_case(stack, db, 5000)
    dp = open_chargeback(stack, case["charge"], reason="fraudulent")
    wait_chargeback(db, dp["id"], lambda r: r["funds_withdrawn_cents"] == 5000)
    stack.stripe_control("POST", f"/_control/disputes/{dp['id']}/close", {"outcome": "lost"})
    row = wait_chargeback(db, dp["id"], lambda r: r["status"] == "lost", what="lost")
    settle(stack)
    row = chargeback_row(db, dp["id"])
    assert (row["status"], row["funds_withdrawn_cents"], row["funds_reinstated_cents"]) == ("lost", 5000, 0)
    assert payment_row(db, case["payment_id"])["is_disputed"] is False
    # Redelivering every event of the dispute (duplicates) changes nothing.
    events = [e["id"] for e in stack.stripe.events() if e["type"].startswith("charge.dispute.")
              and e["data"]["object"]["id"] == dp["id"]]
    assert len(events) == 3, events       # created, funds_withdrawn, closed
    before = chargeback_row(db, dp["id"])
    stack.stripe_control("POST", "/_control/webhooks/redeliver", {"event_ids": events})
    settle(stack)
    assert chargeback_row(db, dp["id"]) == before
    assert len(notifications(db, case["admin"].profile["id"], "chargeback_opened")) == 1
    assert len(notifications(db, case["seller"]["id"], "chargeback_opened")) == 1
    # The events came from the account that owns the charge, to its endpoint.
    stored = many(db, "SELECT endpoint, account, status FROM webhook_events WHERE id = ANY(%s)", (events,))
    owner = seller_account(db, case["seller"]) if stack.is_direct else None
    assert {(r["endpoint"], r["account"], r["status"]) for r in stored} == \
        {(stack.payment_events_endpoint, owner, "processed")}
    if stack.is_direct:
        # Stripe took the amount from the seller's balance: nothing to recover from the seller.
        sweep = subprocess.run([str(BINARY), "sweep"], env=stack.app.env, capture_output=True, text=True, timeout=60)
        assert sweep.returncode == 0, sweep.stderr
        assert recoveries(db, row["id"]) == []


def test_an_inquiry_warning_is_tracked_without_funds_withdrawn(stack, db):
    case = chargeback_case(stack, db, 4000)
    dp = open_chargeback(stack, case["charge"], status="warning_needs_response", reason="general")
    row = wait_chargeback(db, dp["id"])
    settle(stack)
    row = chargeback_row(db, dp["id"])
    assert (row["kind"], row["status"], row["funds_withdrawn_cents"]) == ("chargeback", "warning_needs_response", 0)
    assert payment_row(db, case["payment_id"])["is_disputed"] is True
    stack.stripe_control("POST", f"/_control/disputes/{dp['id']}/resolve", {"outcome": "warning_closed"})
    wait_chargeback(db, dp["id"], lambda r: r["status"] == "warning_closed", what="warning_closed")
    settle(stack)
    assert payment_row(db, case["payment_id"])["is_disputed"] is False


def test_a_chargeback_on_a_funded_milestone_blocks_its_release(stack, db):
    job = funded_job(stack, db, (9000,))
    (milestone,), funding = job["milestones"], job["fundings"][0]
    settle(stack)
    dp = open_chargeback(stack, funding["charge_id"], reason="fraudulent")
    wait_chargeback(db, dp["id"], lambda r: r["status"] == "needs_response")
    assert payment_row(db, funding["payment_id"])["is_disputed"] is True
    assert_envelope(release(stack, job["buyer"], milestone), 409, "payment_disputed")
    assert milestone_status(db, milestone) == "funded"
    assert calls(stack, f"milestone:{milestone}:release") == []
    assert transfers_for_charge(stack, funding["charge_id"]) == []


def test_evidence_is_for_chargebacks_only_and_validated(stack, db):
    case = chargeback_case(stack, db, 3000)
    admin = case["admin"]
    platform = open_dispute(stack, case["buyer"], case["payment_id"])
    assert platform.status_code == 201, platform.text
    before = len(stack.stripe.received(method="POST", path_prefix="/v1/disputes"))
    refused = admin.evidence(platform.json()["id"], EVIDENCE, submit=False)
    assert_envelope(refused, 409, "not_a_chargeback")
    assert len(stack.stripe.received(method="POST", path_prefix="/v1/disputes")) == before
    rows = audit_by_request(db, request_id(refused))
    assert [(r["operation"], r["success"], r["error_code"]) for r in rows] == [("dispute.evidence", False, "not_a_chargeback")]

    dp = open_chargeback(stack, case["charge"])
    dispute_id = str(wait_chargeback(db, dp["id"])["id"])
    for evidence, field in (({}, "evidence"), ({"product_description": 5}, "product_description"),
                            ({"Not-A-Field": "x"}, "Not-A-Field"), ({"uncategorized_text": "x" * 20001}, "uncategorized_text")):
        error = assert_envelope(admin.evidence(dispute_id, evidence, submit=False), 400, "invalid_field")
        assert field in error["message"], error
    # A field Stripe does not know is Stripe's to refuse: a 502 envelope, nothing staged here.
    unknown = admin.evidence(dispute_id, {"favourite_colour": "blue"}, submit=False)
    assert unknown.status_code in (400, 502), unknown.text
    assert chargeback_row(db, dp["id"])["evidence_status"] == "none"
    assert len(stack.stripe.received(method="POST", path_prefix="/v1/disputes")) <= before + 1


def test_admin_list_filters_chargebacks(stack, db):
    case = chargeback_case(stack, db, 3500)
    admin = case["admin"]
    dp = open_chargeback(stack, case["charge"])
    dispute_id = str(wait_chargeback(db, dp["id"], lambda r: r["status"] == "needs_response")["id"])
    platform = open_dispute(stack, case["seller"], case["payment_id"]).json()["id"]

    def ids(query):
        found, cursor = [], None
        while True:
            answer = admin.get(f"/api/admin/disputes?{query}" + (f"&cursor={cursor}" if cursor else ""))
            assert answer.status_code == 200, answer.text
            found += answer.json()["data"]
            cursor = answer.json().get("next_cursor")
            if not cursor:
                return found

    chargebacks = ids("kind=chargeback")
    assert dispute_id in [d["id"] for d in chargebacks] and platform not in [d["id"] for d in chargebacks]
    assert all(d["kind"] == "chargeback" for d in chargebacks)
    needs = ids("kind=chargeback&status=needs_response")
    assert dispute_id in [d["id"] for d in needs] and all(d["status"] == "needs_response" for d in needs)
    assert dispute_id not in [d["id"] for d in ids("status=open")]
    mine = [d for d in chargebacks if d["id"] == dispute_id][0]
    assert (mine["stripe_dispute_id"], mine["amount"], mine["reason"], mine["payment_id"]) == \
        (dp["id"], 3500, "fraudulent", case["payment_id"])
    assert mine["due_by"]
