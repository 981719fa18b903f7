"""Review of the security round (commit 53f0f9f): repros of ways around its fixes, through
nginx, the real app, PostgreSQL and the fake Stripe. Each test asserts the documented
behaviour, so each FAILS on that commit.

Run: .venv/bin/python -m pytest -q tests/test_review_security_round.py
"""

import concurrent.futures
import json
import time
import uuid

import requests

from harness.api import jwt, make_profile, onboarded_seller, wait_for
from harness.assertions import assert_envelope
from test_disputes_platform import authorised_purchase
from test_milestones import (  # noqa: F401  (the autouse fixture applies here too)
    admin_client, calls, executed, fresh_loopback_windows, funded_job, many, milestone_status, one, open_dispute,
    payment_row, settle, transfers_for_charge,
)

CAPTURE = "/api/payments/capture"


def claim_of(db, payment_id):
    return one(db, "SELECT action_claim, action_claim_expires_at > now() AS live FROM payments WHERE id = %s",
               (payment_id,))


# ------------------------------------------------------------------------------------------
# Fix 5 bypassed: the refund route ignores the dispute's resolution claim
# ------------------------------------------------------------------------------------------

def disputed_milestone_and_two_admins(stack, db):
    """A funded 10,000 milestone whose buyer opened a dispute, and two admins of their own."""
    job = funded_job(stack, db, (10000,))
    (milestone,), funding = job["milestones"], job["fundings"][0]
    settle(stack)
    opened = open_dispute(stack, job["buyer"], funding["payment_id"])
    assert opened.status_code == 201, opened.text
    return milestone, funding, opened.json()["id"], admin_client(stack, db), admin_client(stack, db)


def test_review_refund_route_ignores_a_release_seller_resolution_in_progress(stack, db, faults):
    """Admin A resolves a milestone dispute `release_seller` (the transfer is on its way at
    Stripe); admin B meanwhile refunds the whole payment through `POST …/refund` on the same
    dispute. The refund route neither looks at `resolving_outcome` nor at the payment's claim,
    so the buyer gets the money back AND the seller gets the transfer (no reversal: the transfer
    was not recorded when the refund started). Expected: B gets 409
    dispute_resolution_in_progress (or payment_action_in_progress)."""
    milestone, funding, dispute_id, admin_a, admin_b = disputed_milestone_and_two_admins(stack, db)

    faults(type="delay", method="POST", path_prefix="/v1/transfers", when="before", delay_ms=2500, count=1)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        resolving = pool.submit(admin_a.resolve, dispute_id, "release_seller")
        wait_for(lambda: one(db, "SELECT resolving_outcome FROM disputes WHERE id = %s",
                             (dispute_id,))["resolving_outcome"] == "release_seller",
                 what="admin A's resolution claim")
        time.sleep(0.5)  # A is now inside its Stripe transfer call
        refunded = admin_b.refund(dispute_id, reason="B refunds in full")
        resolved = resolving.result(timeout=60)
    settle(stack)
    transfers = transfers_for_charge(stack, funding["charge_id"])
    refunds = many(db, "SELECT amount_cents, status FROM refunds WHERE payment_id = %s", (funding["payment_id"],))
    moved = {"resolve": resolved.status_code, "refund": refunded.status_code,
             "transfers": [(t["amount"], t["amount_reversed"]) for t in transfers], "refunds": refunds}
    assert refunded.status_code == 409, moved
    # Whatever the order, the platform must never both refund the buyer in full and pay the seller.
    kept_by_seller = sum(t["amount"] - t["amount_reversed"] for t in transfers)
    refunded_total = sum(r["amount_cents"] for r in refunds if r["status"] in ("succeeded", "pending"))
    assert not (kept_by_seller > 0 and refunded_total >= 10000), moved


def test_review_release_seller_resolution_ignores_a_refund_in_flight(stack, db, faults):
    """The other order: admin B's full refund is at Stripe (slow); admin A resolves the same
    dispute `release_seller`. Nothing ties the refund to the dispute's resolution claim or the
    payment's claim, and the milestone is still `funded`, so A's transfer goes out; then B's
    refund lands. The buyer is refunded in full and the seller keeps the transfer: the platform
    pays twice. Expected: A gets 409 (refund in progress / resolution in progress)."""
    milestone, funding, dispute_id, admin_a, admin_b = disputed_milestone_and_two_admins(stack, db)

    faults(type="delay", method="POST", path_prefix="/v1/refunds", when="before", delay_ms=2500, count=1)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        refunding = pool.submit(admin_b.refund, dispute_id, None, "B refunds in full")
        wait_for(lambda: one(db, "SELECT 1 AS x FROM refunds WHERE payment_id = %s", (funding["payment_id"],)),
                 what="admin B's refund reservation")
        time.sleep(0.3)
        resolved = admin_a.resolve(dispute_id, "release_seller")
        refunded = refunding.result(timeout=60)
    settle(stack)
    transfers = transfers_for_charge(stack, funding["charge_id"])
    refunds = many(db, "SELECT amount_cents, status FROM refunds WHERE payment_id = %s", (funding["payment_id"],))
    moved = {"resolve": (resolved.status_code, resolved.text[:200]), "refund": refunded.status_code,
             "transfers": [(t["amount"], t["amount_reversed"]) for t in transfers], "refunds": refunds,
             "milestone": milestone_status(db, milestone)}
    kept_by_seller = sum(t["amount"] - t["amount_reversed"] for t in transfers)
    refunded_total = sum(r["amount_cents"] for r in refunds if r["status"] in ("succeeded", "pending"))
    assert not (kept_by_seller > 0 and refunded_total >= 10000), moved
    assert resolved.status_code == 409, moved


# ------------------------------------------------------------------------------------------
# Fix 3 bypassed: a refused request ends another request's claim
# ------------------------------------------------------------------------------------------

def test_review_refused_admin_capture_ends_the_buyers_live_capture_claim(stack, db, faults):
    """Claims belong to an action, not to a request: `PaymentClaims.settle` after an error clears
    any live claim of that action. The buyer's capture claims the payment and waits on Stripe;
    an admin's capture of more than was authorised is refused (400) — after claiming — and its
    error path settles the claim the buyer's request still relies on. A dispute can then be
    opened while the buyer's capture is at Stripe (the race fix 3 is meant to close), and the
    refused request changed data."""
    seller, buyer = onboarded_seller(stack, db), make_profile(db, "buyer")
    purchase = authorised_purchase(stack, db, seller, buyer, price=10000)
    admin = admin_client(stack, db)

    faults(type="delay", method="POST", path_prefix=f"/v1/payment_intents/{purchase['intent']}/capture",
           when="before", delay_ms=2500, count=1)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        capturing = pool.submit(stack.post, CAPTURE, json={"payment_id": purchase["payment_id"]}, headers=buyer["headers"])
        wait_for(lambda: claim_of(db, purchase["payment_id"])["live"] is True, what="the buyer's capture claim")
        refused = admin.post(CAPTURE, json={"payment_id": purchase["payment_id"], "amount_to_capture": 10001,
                                            "reason": "typo"})
        assert_envelope(refused, 400, "invalid_field")
        claim_after_refusal = claim_of(db, purchase["payment_id"])
        dispute = open_dispute(stack, seller, purchase["payment_id"])
        captured = capturing.result(timeout=60)
    assert claim_after_refusal["action_claim"] == "capture" and claim_after_refusal["live"], \
        f"a refused request ended the buyer's live claim: {claim_after_refusal}"
    assert_envelope(dispute, 409, "payment_action_in_progress")
    assert captured.status_code == 200, captured.text


# ------------------------------------------------------------------------------------------
# A resolution overrides chargebacks too
# ------------------------------------------------------------------------------------------

def test_review_release_seller_resolution_pays_out_during_an_open_chargeback(stack, db):
    """Before the fix, `allowDisputed: true` (a platform dispute's resolution) skipped every open dispute, chargebacks
    included: with the bank's chargeback open on the milestone's charge, resolving the platform
    dispute `release_seller` transfers the money to the seller. docs/disputes.md: while a
    chargeback is open, release answers 409 payment_disputed."""
    job = funded_job(stack, db, (10000,))
    (milestone,), funding = job["milestones"], job["fundings"][0]
    settle(stack)
    opened = open_dispute(stack, job["seller"], funding["payment_id"], reason="buyer_unresponsive")
    assert opened.status_code == 201, opened.text
    chargeback = stack.stripe_control("POST", f"/_control/charges/{funding['charge_id']}/dispute", {"reason": "fraudulent"})
    wait_for(lambda: one(db, "SELECT 1 AS x FROM disputes WHERE stripe_dispute_id = %s", (chargeback["id"],)),
             what="the chargeback row")
    settle(stack)
    resolved = admin_client(stack, db).resolve(opened.json()["id"], "release_seller")
    transfers = transfers_for_charge(stack, funding["charge_id"])
    assert not transfers, (resolved.status_code, resolved.text, transfers)
    assert_envelope(resolved, 409, "payment_disputed")


# ------------------------------------------------------------------------------------------
# Token lifetime limit bypassed by a future `iat`
# ------------------------------------------------------------------------------------------

def test_review_token_lifetime_limit_is_bypassed_by_a_future_iat(stack, db):
    """docs/security.md: a token may live at most AUTH_MAX_TOKEN_LIFETIME_SECONDS (one day). The
    check is `exp − max(iat ?? now, now − leeway)`, so an `iat` in the future shrinks the measured
    lifetime: a token valid from now for ten years passes when it claims iat = exp − 1 h."""
    buyer = make_profile(db, "buyer")
    now = int(time.time())
    exp = now + 10 * 365 * 86_400
    decade = jwt({"sub": buyer["user_id"], "iat": exp - 3600, "exp": exp})
    response = stack.get("/api/payments?as=buyer", headers={"Authorization": f"Bearer {decade}"})
    assert_envelope(response, 401, "unauthenticated")
