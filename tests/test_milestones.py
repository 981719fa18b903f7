"""Issue 8, the milestones family end to end through nginx, the real app, PostgreSQL and the
fake Stripe: fund a milestone (a platform PaymentIntent, automatic capture) → the buyer's
browser confirms at the fake → payment_intent.succeeded → funded → release (a Transfer of
amount − fee with source_transaction) → released; disputes block release; Stripe failures
leave the milestone funded; the funding checks; declines; the read routes; a small
401/403/404 matrix of the new routes.

The helpers at the top are shared by tests/test_disputes_{platform,admin}.py and
tests/test_chargebacks.py."""

import concurrent.futures
import subprocess
import random
import uuid
from urllib.parse import urlencode

import pytest
import requests

from harness.api import make_listing, make_milestones, make_profile, onboarded_seller, stripe_calls, table_fingerprint
from harness.assertions import assert_envelope, request_id
from harness.paths import BINARY
from harness.api import wait_for, SourceAddressAdapter

# ------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------

PLATFORM_FEE_BPS = 1000
TRANSFERS = "/v1/transfers"
INTENTS = "/v1/payment_intents"


def fee_for(amount: int) -> int:
    """The documented rule: round half up of amount × bps / 10000, in integers."""
    return (amount * PLATFORM_FEE_BPS + 5000) // 10000


@pytest.fixture(autouse=True)
def fresh_loopback_windows(db):
    """Everything this suite sends from 127.0.0.1 shares the IP-keyed windows (`capture:{ip}`,
    `intent:{ip}`, `admin:*:{ip}`); each test starts with them empty. The limiter itself is
    tested from other loopback addresses (tests/test_disputes_admin.py)."""
    db.execute("DELETE FROM rate_limits WHERE key IN ('intent:127.0.0.1', 'capture:127.0.0.1', "
               "'admin:refund:127.0.0.1', 'admin:resolve:127.0.0.1', 'admin:evidence:127.0.0.1')")
    yield




def one(db, sql, params=()):
    cursor = db.execute(sql, params)
    names = [c.name for c in cursor.description]
    row = cursor.fetchone()
    return dict(zip(names, row)) if row else None


def many(db, sql, params=()):
    cursor = db.execute(sql, params)
    names = [c.name for c in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def payment_row(db, payment_id):
    return one(db, "SELECT * FROM payments WHERE id = %s", (payment_id,))


def milestone_row(db, milestone_id):
    return one(db, "SELECT * FROM milestones WHERE id = %s", (milestone_id,))


def listing_row(db, listing_id):
    return one(db, "SELECT * FROM listings WHERE id = %s", (listing_id,))


def dispute_row(db, dispute_id):
    return one(db, "SELECT * FROM disputes WHERE id = %s", (dispute_id,))


def milestone_status(db, milestone_id):
    return milestone_row(db, milestone_id)["status"]


def wait_milestone(db, milestone_id, status, timeout=10.0):
    wait_for(lambda: milestone_status(db, milestone_id) == status, timeout,
             what=f"milestone {milestone_id} to become {status} (is {milestone_status(db, milestone_id)})")


def wait_payment(db, payment_id, status, timeout=10.0):
    return wait_for(lambda: (row := payment_row(db, payment_id)) and row["status"] == status and row, timeout,
                    what=f"payment {payment_id} to become {status} (is {(payment_row(db, payment_id) or {}).get('status')})")


def settle(stack):
    assert stack.stripe.wait_for_webhooks(15), "the fake still has webhooks pending"


def fake_object(stack, object_id):
    return stack.stripe_control("GET", f"/_control/objects/{object_id}")["object"]


def calls(stack, key, path_prefix=None, method="POST", family=False):
    """What the fake received under this key (or, with `family`, one that extends it: see stripe_calls)."""
    return stripe_calls(stack, key, path_prefix=path_prefix, method=method, family=family)


def executed(requests_):
    """Requests the fake executed (2xx, not a replay of a stored response, not a fault; a dropped
    connection's request has no status at all)."""
    return [r for r in requests_ if not r.get("fault") and r.get("status") is not None and 200 <= r["status"] < 300
            and not r.get("idempotent_replayed")]


def transfers_for_charge(stack, charge_id):
    """Every Transfer object at the fake paid from this charge."""
    group = fake_object(stack, charge_id)["transfer_group"]
    assert group, f"charge {charge_id} has no transfer_group"
    listed = stack.stripe_api("GET", "/v1/transfers?" + urlencode({"limit": 100, "transfer_group": group}))
    assert not listed["has_more"], "more than 100 transfers in one group"
    return [t for t in listed["data"] if t["source_transaction"] == charge_id]


def confirm(stack, intent_id, payment_method="pm_card_visa"):
    """The buyer's browser step at the fake (Stripe.js confirmCardPayment): (status, body)."""
    return stack.stripe.confirm_payment_intent(intent_id, payment_method)


def audit(db, entity_type, entity_id):
    return many(db, "SELECT id, operation, entity_type, entity_id, actor_profile_id::text AS actor, actor_role, request_id,"
                    " ip, user_agent, old_values, new_values, success, error_code FROM payment_audit_logs"
                    " WHERE entity_type = %s AND entity_id = %s ORDER BY id", (entity_type, entity_id))


def audit_by_request(db, rid):
    return many(db, "SELECT id, operation, entity_type, entity_id, actor_profile_id::text AS actor, actor_role, request_id,"
                    " ip, user_agent, old_values, new_values, success, error_code FROM payment_audit_logs"
                    " WHERE request_id = %s ORDER BY id", (rid,))


def notifications(db, profile_id, kind=None):
    rows = many(db, "SELECT kind, payload FROM notifications WHERE profile_id = %s ORDER BY created_at, id", (profile_id,))
    return [r for r in rows if kind is None or r["kind"] == kind]


def event_status(db, event_id):
    row = one(db, "SELECT status FROM webhook_events WHERE id = %s", (event_id,))
    return row and row["status"]


def webhook_processed(db, type_, object_id):
    return db.execute("SELECT 1 FROM webhook_events WHERE type = %s AND object_id = %s AND status = 'processed'",
                      (type_, object_id)).fetchone() is not None


# --- milestones ---------------------------------------------------------------------------

def fund(stack, buyer, listing_id, milestone_id, **kwargs):
    return stack.post("/api/payments/milestones/create-intent", json={"listing_id": listing_id, "milestone_id": milestone_id},
                      headers={**buyer["headers"], **kwargs.pop("headers", {})}, **kwargs)


def release(stack, profile, milestone_id, **kwargs):
    return stack.post(f"/api/payments/milestones/{milestone_id}/release", json={},
                      headers={**profile["headers"], **kwargs.pop("headers", {})}, **kwargs)


def new_job(stack, db, amounts=(10000,), seller=None):
    """A ready seller, a fresh buyer, a job listing and its milestones."""
    seller = seller or onboarded_seller(stack, db)
    buyer = make_profile(db, "buyer")
    listing = make_listing(db, seller, price=sum(amounts), kind="job")
    milestones = make_milestones(db, listing, list(amounts))
    return {"seller": seller, "buyer": buyer, "listing": listing, "milestones": milestones}


def fund_and_confirm(stack, db, job, index=0, payment_method="pm_card_visa"):
    """create-intent (201), the browser confirms, the milestone becomes `funded` by webhook.
    Returns the create-intent body plus the charge id."""
    milestone = job["milestones"][index]
    response = fund(stack, job["buyer"], job["listing"], milestone)
    assert response.status_code == 201, response.text
    body = response.json()
    status, confirmed = confirm(stack, body["payment_intent_id"], payment_method)
    assert status == 200 and confirmed["status"] == "succeeded", (status, confirmed)
    wait_milestone(db, milestone, "funded")
    payment = wait_payment(db, body["payment_id"], "succeeded")
    wait_for(lambda: payment_row(db, body["payment_id"])["stripe_charge_id"], what="the charge id stored")
    body["charge_id"] = payment_row(db, body["payment_id"])["stripe_charge_id"]
    assert body["charge_id"] == confirmed["latest_charge"], (payment, confirmed)
    return body


def funded_job(stack, db, amounts=(10000,), funded=1, seller=None):
    job = new_job(stack, db, amounts, seller)
    job["fundings"] = [fund_and_confirm(stack, db, job, i) for i in range(funded)]
    return job


def seller_account(db, seller):
    return one(db, "SELECT stripe_account_id FROM profiles WHERE id = %s", (seller["id"],))["stripe_account_id"]


def open_dispute(stack, profile, payment_id, reason="not_as_described", details="It never arrived.", **kwargs):
    return stack.post(f"/api/payments/{payment_id}/disputes", json={"reason": reason, "details": details},
                      headers={**profile["headers"], **kwargs.pop("headers", {})}, **kwargs)


# --- admin calls from their own loopback address --------------------------------------------



def fresh_loopback_ip():
    return f"127.{random.randint(100, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"


class Client:
    """Requests through nginx from one loopback address with one user agent, so audit rows and
    IP-keyed rate-limit windows can be told apart from every other test's."""

    def __init__(self, stack, profile, ip=None, user_agent=None):
        self.stack, self.profile = stack, profile
        self.ip = ip or fresh_loopback_ip()
        self.user_agent = user_agent or f"disputes-test/{uuid.uuid4().hex[:8]}"
        self.session = requests.Session()
        self.session.mount("https://", SourceAddressAdapter(self.ip))

    def request(self, method, path, **kwargs):
        headers = {"User-Agent": self.user_agent, **(self.profile["headers"] if self.profile else {}),
                   **kwargs.pop("headers", {})}
        return self.session.request(method, self.stack.url(path), headers=headers, verify=False, timeout=60,
                                    allow_redirects=False, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    # The admin routes.
    def refund(self, dispute_id, amount=None, reason="partial refund agreed", **kwargs):
        body = {"reason": reason}
        if amount is not None:
            body["amount"] = amount
        return self.post(f"/api/admin/disputes/{dispute_id}/refund", json=body, **kwargs)

    def resolve(self, dispute_id, outcome, note="settled by the test", **kwargs):
        return self.post(f"/api/admin/disputes/{dispute_id}/resolve", json={"outcome": outcome, "note": note}, **kwargs)

    def evidence(self, dispute_id, evidence, submit, **kwargs):
        return self.post(f"/api/admin/disputes/{dispute_id}/evidence", json={"evidence": evidence, "submit": submit}, **kwargs)

    def dispute(self, dispute_id):
        return self.get(f"/api/admin/disputes/{dispute_id}")


def admin_client(stack, db, **kwargs):
    return Client(stack, make_profile(db, "admin"), **kwargs)


# ------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------

def test_milestones_end_to_end_fund_release_and_dispute_blocks_release(stack, db):
    seller = onboarded_seller(stack, db)
    account = seller_account(db, seller)
    amounts = (10005, 20000)   # 10 % of 10005 is 1000.5: the fee rounds half up to 1001
    job = new_job(stack, db, amounts, seller)
    buyer, listing, (m1, m2) = job["buyer"], job["listing"], job["milestones"]

    # 1. fund milestone 1: a platform PaymentIntent with automatic capture.
    response = fund(stack, buyer, listing, m1)
    assert response.status_code == 201, response.text
    body = response.json()
    payment_id, intent_id = body["payment_id"], body["payment_intent_id"]
    assert intent_id.startswith("pi_")
    assert (body["milestone_id"], body["amount"], body["application_fee"], body["currency"]) == (m1, 10005, 1001, "usd")
    assert fee_for(10005) == 1001
    intent = fake_object(stack, intent_id)
    assert body["client_secret"] == intent["client_secret"]
    assert milestone_status(db, m1) == "funding"
    payment = payment_row(db, payment_id)
    assert (payment["kind"], str(payment["buyer_id"]), str(payment["seller_id"]), str(payment["listing_id"]),
            str(payment["milestone_id"])) == ("milestone", buyer["id"], seller["id"], listing, m1)
    assert (payment["amount_cents"], payment["application_fee_cents"], payment["stripe_payment_intent_id"]) == \
        (10005, 1001, intent_id)

    creates = calls(stack, f"milestone:{m1}:fund")
    assert len(creates) == 1, creates
    assert creates[0]["path"] == INTENTS
    params = creates[0]["params"]
    assert params["amount"] == "10005" and params["currency"] == "usd"
    assert params["capture_method"] == "automatic"
    assert params["transfer_group"] == f"listing:{listing}" == payment["transfer_group"]
    assert "transfer_data" not in params and "application_fee_amount" not in params, params  # a platform charge
    assert params["metadata"] == {"payment_id": payment_id, "milestone_id": m1, "listing_id": listing,
                                  "buyer_id": buyer["id"], "seller_id": seller["id"]}
    funded_audit = [r for r in audit(db, "milestone", m1) if r["operation"] == "milestone.fund"]
    assert len(funded_audit) == 1 and funded_audit[0]["success"] is True, funded_audit
    assert funded_audit[0]["actor"] == buyer["id"] and funded_audit[0]["request_id"] == request_id(response)

    # 2. the browser confirms; payment_intent.succeeded makes the milestone funded.
    status, confirmed = confirm(stack, intent_id)
    assert status == 200 and confirmed["status"] == "succeeded", confirmed
    wait_milestone(db, m1, "funded")
    wait_for(lambda: webhook_processed(db, "payment_intent.succeeded", intent_id), what="payment_intent.succeeded processed")
    payment = payment_row(db, payment_id)
    assert payment["status"] == "succeeded" and payment["amount_received"] == 10005
    charge = payment["stripe_charge_id"]
    assert charge == confirmed["latest_charge"] and charge.startswith("ch_")
    assert transfers_for_charge(stack, charge) == []   # funds stay on the platform until release

    # 3. release: a Transfer of amount − fee to the seller, paid from the milestone's charge.
    released = release(stack, buyer, m1)
    assert released.status_code == 200, released.text
    out = released.json()
    assert (out["milestone_id"], out["status"], out["destination"], out["amount"], out["currency"]) == \
        (m1, "released", account, 10005 - 1001, "usd")
    transfer_id = out["transfer_id"]
    assert transfer_id.startswith("tr_")
    sent = calls(stack, f"milestone:{m1}:release")
    assert len(sent) == 1 and sent[0]["path"] == TRANSFERS and sent[0]["status"] == 200, sent
    tparams = sent[0]["params"]
    assert tparams["amount"] == str(10005 - 1001)
    assert tparams["currency"] == "usd"
    assert tparams["destination"] == account
    assert tparams["source_transaction"] == charge
    assert tparams["transfer_group"] == f"listing:{listing}"
    assert tparams["metadata"] == {"payment_id": payment_id, "milestone_id": m1}
    at_fake = transfers_for_charge(stack, charge)
    assert [(t["id"], t["amount"], t["destination"]) for t in at_fake] == [(transfer_id, 9004, account)]

    assert milestone_status(db, m1) == "released"
    rows = many(db, "SELECT * FROM transfers WHERE milestone_id = %s", (m1,))
    assert len(rows) == 1, rows
    assert (rows[0]["stripe_transfer_id"], str(rows[0]["payment_id"]), rows[0]["destination_account"],
            rows[0]["amount_cents"], rows[0]["currency"], rows[0]["amount_reversed"]) == \
        (transfer_id, payment_id, account, 9004, "usd", 0)
    created_events = [e["id"] for e in stack.stripe.events("transfer.created") if e["data"]["object"]["id"] == transfer_id]
    assert len(created_events) == 1, created_events
    wait_for(lambda: event_status(db, created_events[0]) == "processed", what="transfer.created recorded")
    assert one(db, "SELECT status FROM transfers WHERE stripe_transfer_id = %s", (transfer_id,))["status"] == "created"
    released_audit = [r for r in audit(db, "milestone", m1) if r["operation"] == "milestone.release"]
    assert len(released_audit) == 1, released_audit
    entry = released_audit[0]
    assert entry["success"] is True and entry["actor"] == buyer["id"] and entry["request_id"] == request_id(released)
    assert entry["old_values"] == {"status": "funded"}
    assert entry["new_values"]["status"] == "released" and entry["new_values"]["transfer_id"] == transfer_id
    told = notifications(db, seller["id"], "milestone_released")
    assert [(n["payload"]["milestone_id"], n["payload"]["amount_cents"]) for n in told] == [(m1, 9004)]

    # 4. fund milestone 2; the buyer opens a dispute on its payment; release is refused.
    second = fund_and_confirm(stack, db, job, 1)
    opened = open_dispute(stack, buyer, second["payment_id"])
    assert opened.status_code == 201, opened.text
    refused = release(stack, buyer, m2)
    assert_envelope(refused, 409, "payment_disputed")
    assert milestone_status(db, m2) == "funded"
    assert calls(stack, f"milestone:{m2}:release") == []
    assert transfers_for_charge(stack, second["charge_id"]) == []
    assert many(db, "SELECT 1 FROM transfers WHERE milestone_id = %s", (m2,)) == []
    failed = [r for r in audit(db, "milestone", m2) if r["operation"] == "milestone.release"]
    assert [(r["success"], r["error_code"], r["request_id"]) for r in failed] == [(False, "payment_disputed", request_id(refused))]

    # The milestones as buyer and seller see them.
    for profile in (buyer, seller):
        shown = stack.get(f"/api/listings/{listing}/milestones", headers=profile["headers"])
        assert shown.status_code == 200, shown.text
        assert [(m["id"], m["position"], m["amount"], m["status"], m.get("payment_id")) for m in shown.json()["data"]] == \
            [(m1, 1, 10005, "released", payment_id), (m2, 2, 20000, "funded", second["payment_id"])]


# ------------------------------------------------------------------------------------------
# Release: once, by whom, and when Stripe fails
# ------------------------------------------------------------------------------------------

def test_double_release_sequential_makes_one_transfer(stack, db):
    job = funded_job(stack, db, (5000,))
    buyer, (m1,), charge = job["buyer"], job["milestones"], job["fundings"][0]["charge_id"]
    first = release(stack, buyer, m1)
    second = release(stack, buyer, m1)
    assert first.status_code == 200 and second.status_code == 200, (first.text, second.text)
    assert first.json()["transfer_id"] == second.json()["transfer_id"]
    assert len(transfers_for_charge(stack, charge)) == 1
    assert len(executed(calls(stack, f"milestone:{m1}:release"))) == 1
    assert db.execute("SELECT count(*) FROM transfers WHERE milestone_id = %s", (m1,)).fetchone()[0] == 1
    assert len([r for r in audit(db, "milestone", m1) if r["operation"] == "milestone.release" and r["success"]]) == 1
    assert len(notifications(db, job["seller"]["id"], "milestone_released")) == 1


def test_double_release_concurrent_makes_one_transfer(stack, db):
    job = funded_job(stack, db, (7000,))
    buyer, (m1,), charge = job["buyer"], job["milestones"], job["fundings"][0]["charge_id"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: release(stack, buyer, m1), range(8)))
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    assert len({a.json()["transfer_id"] for a in answers}) == 1
    settle(stack)
    assert len(transfers_for_charge(stack, charge)) == 1
    assert len(executed(calls(stack, f"milestone:{m1}:release"))) == 1
    assert all(r["headers"].get("Idempotency-Key") == f"milestone:{m1}:release" for r in stack.stripe.received(
        method="POST", path_prefix=TRANSFERS) if (r["params"] or {}).get("source_transaction") == charge)
    assert milestone_status(db, m1) == "released"
    assert db.execute("SELECT count(*) FROM transfers WHERE milestone_id = %s", (m1,)).fetchone()[0] == 1
    assert len([r for r in audit(db, "milestone", m1) if r["operation"] == "milestone.release" and r["success"]]) == 1
    assert len(notifications(db, job["seller"]["id"], "milestone_released")) == 1


def test_release_by_seller_is_403_by_a_stranger_404_and_by_an_admin_403(stack, db):
    job = funded_job(stack, db, (5000,))
    (m1,) = job["milestones"]
    stranger = make_profile(db, "buyer")
    admin = make_profile(db, "admin")
    assert_envelope(release(stack, job["seller"], m1), 403, "forbidden")
    assert_envelope(release(stack, stranger, m1), 404, "not_found")
    assert_envelope(release(stack, admin, m1), 403, "forbidden")
    assert_envelope(release(stack, job["buyer"], str(uuid.uuid4())), 404, "not_found")
    assert milestone_status(db, m1) == "funded"
    assert calls(stack, f"milestone:{m1}:release") == []


def test_release_of_an_unfunded_milestone_is_refused(stack, db):
    job = new_job(stack, db, (5000, 6000))
    m1, m2 = job["milestones"]
    funding = fund(stack, job["buyer"], job["listing"], m1)          # funding, not confirmed yet
    assert funding.status_code == 201, funding.text
    for milestone in (m1, m2):                                       # in flight / still pending
        refused = release(stack, job["buyer"], milestone)
        assert refused.status_code in (404, 409), refused.text
        assert_envelope(refused, refused.status_code, "not_found" if refused.status_code == 404 else "milestone_not_funded")
        assert calls(stack, f"milestone:{milestone}:release") == []
    assert (milestone_status(db, m1), milestone_status(db, m2)) == ("funding", "pending")


def test_release_stripe_failure_keeps_milestone_funded_and_a_retry_succeeds_with_the_same_key(stack, db):
    job = funded_job(stack, db, (8000,))
    buyer, (m1,), charge = job["buyer"], job["milestones"], job["fundings"][0]["charge_id"]
    key = f"milestone:{m1}:release"
    try:
        stack.stripe_control("POST", "/_control/faults", {"type": "error", "status": 500, "method": "POST",
                                                          "path_prefix": TRANSFERS, "count": 5})
        failed = release(stack, buyer, m1)
        assert_envelope(failed, 502, "stripe_unavailable")
        assert milestone_status(db, m1) == "funded"
        assert many(db, "SELECT 1 FROM transfers WHERE milestone_id = %s", (m1,)) == []
        assert transfers_for_charge(stack, charge) == []
        attempts = calls(stack, key)
        assert len(attempts) >= 2 and all(r["status"] == 500 for r in attempts), attempts
        audited = [r for r in audit(db, "milestone", m1) if r["operation"] == "milestone.release"]
        assert [(r["success"], r["error_code"], r["request_id"]) for r in audited] == \
            [(False, "stripe_unavailable", request_id(failed))]
        assert notifications(db, job["seller"]["id"], "milestone_released") == []

        # Later (the remaining faults still fire first): the retry succeeds with the same key.
        retried = release(stack, buyer, m1)
        assert retried.status_code == 200, retried.text
    finally:
        stack.stripe_control("DELETE", "/_control/faults")
    attempts = calls(stack, key)
    assert {r["headers"]["Idempotency-Key"] for r in attempts} == {key}
    assert [r["status"] for r in attempts].count(500) == 5 and len(executed(attempts)) == 1, attempts
    assert len(transfers_for_charge(stack, charge)) == 1
    assert milestone_status(db, m1) == "released"
    assert db.execute("SELECT count(*) FROM transfers WHERE milestone_id = %s", (m1,)).fetchone()[0] == 1
    assert retried.json()["amount"] == 8000 - fee_for(8000)


# ------------------------------------------------------------------------------------------
# Funding checks
# ------------------------------------------------------------------------------------------

def fund_creates_for_listing(stack, listing_id):
    return [r for r in stack.stripe.received(method="POST", path_prefix=INTENTS)
            if r["path"] == INTENTS and ((r["params"] or {}).get("metadata") or {}).get("listing_id") == listing_id]


def test_fund_rejections_change_nothing_and_call_no_stripe(stack, db):
    seller = onboarded_seller(stack, db)
    job = new_job(stack, db, (5000, 6000), seller)
    other = new_job(stack, db, (4000,), seller)
    buyer, listing, (m1, m2) = job["buyer"], job["listing"], job["milestones"]
    item = make_listing(db, seller, price=5000, kind="item")
    item_milestone = make_milestones(db, item, [5000])[0]
    # A job whose "seller" is this buyer's own profile.
    own_listing = make_listing(db, buyer, price=3000, kind="job")
    own_milestone = make_milestones(db, own_listing, [3000])[0]
    # A job of a seller who cannot take charges.
    unready = make_profile(db, "seller")
    unready_listing = make_listing(db, unready, price=3000, kind="job")
    unready_milestone = make_milestones(db, unready_listing, [3000])[0]
    settle(stack)
    before = table_fingerprint(db)

    cases = [
        ((str(uuid.uuid4()), m1), 404, "listing_not_found"),
        ((listing, str(uuid.uuid4())), 404, "milestone_not_found"),
        ((listing, other["milestones"][0]), 400, "invalid_field"),
        ((own_listing, own_milestone), 403, "self_purchase"),
        ((unready_listing, unready_milestone), 409, "seller_not_ready"),
        ((item, item_milestone), 409, "listing_unavailable"),
    ]
    for (listing_id, milestone_id), status, code in cases:
        error = assert_envelope(fund(stack, buyer, listing_id, milestone_id), status, code)
        if code == "invalid_field":
            assert "milestone_id" in error["message"], error
    for bad in ({}, {"listing_id": listing}, {"listing_id": "nope", "milestone_id": m1}, {"listing_id": listing, "milestone_id": 7}):
        answer = stack.post("/api/payments/milestones/create-intent", json=bad, headers=buyer["headers"])
        assert_envelope(answer, 400, "invalid_field")
    assert table_fingerprint(db) == before
    for listing_id in (listing, own_listing, unready_listing, item, other["listing"]):
        assert fund_creates_for_listing(stack, listing_id) == []
    assert (milestone_status(db, m1), milestone_status(db, m2)) == ("pending", "pending")


def test_fund_conflicts_not_pending_in_flight_and_another_buyer(stack, db):
    job = new_job(stack, db, (5000, 6000, 7000))
    buyer, listing, (m1, m2, m3) = job["buyer"], job["listing"], job["milestones"]

    # Funding in flight: the second attempt is refused and nothing new reaches Stripe.
    first = fund(stack, buyer, listing, m1)
    assert first.status_code == 201, first.text
    assert_envelope(fund(stack, buyer, listing, m1), 409, "milestone_unavailable")
    assert len(fund_creates_for_listing(stack, listing)) == 1

    # Funded: not pending any more.
    status, _ = confirm(stack, first.json()["payment_intent_id"])
    assert status == 200
    wait_milestone(db, m1, "funded")
    assert_envelope(fund(stack, buyer, listing, m1), 409, "milestone_unavailable")

    # Another buyer cannot fund the job this buyer is funding.
    intruder = make_profile(db, "buyer")
    assert_envelope(fund(stack, intruder, listing, m2), 409, "job_has_other_buyer")
    assert milestone_status(db, m2) == "pending"
    assert db.execute("SELECT count(*) FROM payments WHERE listing_id = %s AND buyer_id = %s",
                      (listing, intruder["id"])).fetchone()[0] == 0
    assert len(fund_creates_for_listing(stack, listing)) == 1

    # The same buyer goes on with the next milestone.
    nxt = fund(stack, buyer, listing, m2)
    assert nxt.status_code == 201, nxt.text
    assert len(calls(stack, f"milestone:{m2}:fund")) == 1
    assert milestone_status(db, m3) == "pending"


def test_concurrent_funding_of_one_milestone_creates_one_intent(stack, db):
    job = new_job(stack, db, (5000,))
    buyer, listing, (m1,) = job["buyer"], job["listing"], job["milestones"]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: fund(stack, buyer, listing, m1), range(6)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [409] * 5, [a.text for a in answers]
    for answer in answers:
        if answer.status_code == 409:
            assert_envelope(answer, 409, "milestone_unavailable")
    assert len(fund_creates_for_listing(stack, listing)) == 1
    assert db.execute("SELECT count(*) FROM payments WHERE milestone_id = %s", (m1,)).fetchone()[0] == 1


def test_declined_funding_returns_to_pending_and_a_new_attempt_works(stack, db):
    job = new_job(stack, db, (6000,))
    buyer, listing, (m1,) = job["buyer"], job["listing"], job["milestones"]
    first = fund(stack, buyer, listing, m1)
    assert first.status_code == 201, first.text
    declined_intent = first.json()["payment_intent_id"]
    status, body = confirm(stack, declined_intent, "pm_card_chargeDeclined")
    assert status == 402 and body["error"]["code"] == "card_declined", body
    wait_payment(db, first.json()["payment_id"], "failed")
    wait_milestone(db, m1, "pending")
    assert payment_row(db, first.json()["payment_id"])["failure_code"] in ("generic_decline", "card_declined")

    second = fund(stack, buyer, listing, m1)
    assert second.status_code == 201, second.text
    assert second.json()["payment_intent_id"] != declined_intent
    assert second.json()["payment_id"] != first.json()["payment_id"]
    assert len(calls(stack, f"milestone:{m1}:fund")) == 1
    retry = calls(stack, f"milestone:{m1}:fund:2")
    assert len(retry) == 1 and retry[0]["status"] == 200, retry
    assert retry[0]["params"]["metadata"]["payment_id"] == second.json()["payment_id"]
    status, confirmed = confirm(stack, second.json()["payment_intent_id"])
    assert status == 200 and confirmed["status"] == "succeeded"
    wait_milestone(db, m1, "funded")
    assert payment_row(db, second.json()["payment_id"])["status"] == "succeeded"
    assert payment_row(db, first.json()["payment_id"])["status"] == "failed"


def test_stripe_failure_on_funding_keeps_it_for_the_retry_under_the_same_key(stack, db):
    """5xx on every attempt: Stripe may hold the intent, so the funding is not failed; the
    milestone stays `funding` for this buyer and the retry resumes the same payment."""
    job = new_job(stack, db, (6000,))
    buyer, listing, (m1,) = job["buyer"], job["listing"], job["milestones"]
    try:
        stack.stripe_control("POST", "/_control/faults", {"type": "error", "status": 500, "method": "POST",
                                                          "path_prefix": INTENTS, "count": 3})
        failed = fund(stack, buyer, listing, m1)
    finally:
        stack.stripe_control("DELETE", "/_control/faults")
    assert_envelope(failed, 502, "stripe_unavailable")
    assert milestone_status(db, m1) == "funding"
    rows = many(db, "SELECT id::text, status FROM payments WHERE milestone_id = %s", (m1,))
    assert [r["status"] for r in rows] == ["creating"]
    again = fund(stack, buyer, listing, m1)
    assert again.status_code == 201, again.text
    assert again.json()["payment_id"] == rows[0]["id"]
    assert len(calls(stack, f"milestone:{m1}:fund")) == 4  # 3 refused, then the retry, one key
    assert milestone_status(db, m1) == "funding"


def test_a_funding_whose_response_was_lost_and_never_retried_is_settled_by_the_sweeper(stack, db):
    job = new_job(stack, db, (6500,))
    buyer, listing, (m1,) = job["buyer"], job["listing"], job["milestones"]
    try:
        stack.stripe_control("POST", "/_control/faults", {"type": "drop", "when": "after", "method": "POST",
                                                          "path_prefix": INTENTS, "count": 3})
        lost = fund(stack, buyer, listing, m1)
    finally:
        stack.stripe_control("DELETE", "/_control/faults")
    assert_envelope(lost, 502, "stripe_unavailable")
    (payment,) = many(db, "SELECT id::text, status, stripe_payment_intent_id FROM payments WHERE milestone_id = %s", (m1,))
    assert (payment["status"], payment["stripe_payment_intent_id"]) == ("creating", None)
    made = [r for r in calls(stack, f"milestone:{m1}:fund") if r["status"] == 200 and not r.get("idempotent_replayed")]
    assert len(made) == 1  # the first attempt made the intent; its answer was lost
    db.execute("UPDATE payments SET created_at = now() - interval '11 minutes' WHERE id = %s", (payment["id"],))
    result = subprocess.run([str(BINARY), "sweep"], env=stack.app.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "settle_unfinished_fundings: 1" in result.stdout, result.stdout + result.stderr
    after = one(db, "SELECT status, stripe_payment_intent_id FROM payments WHERE id = %s", (payment["id"],))
    intent = stack.stripe_control("GET", f"/_control/objects/{after['stripe_payment_intent_id']}")["object"]
    assert after["status"] == "canceled" and intent["status"] == "canceled"
    assert intent["metadata"]["payment_id"] == payment["id"]
    assert milestone_status(db, m1) == "pending"
    assert fund(stack, buyer, listing, m1).status_code == 201


def test_two_buyers_racing_on_two_milestones_of_one_job_one_wins(stack, db):
    """Issue 13: the listing row is locked while a milestone is claimed, so a job has one buyer
    even when two start funding different milestones at the same moment. A trigger slows each
    funding's insert, holding the race open (without the lock both would pass the check)."""
    job = new_job(stack, db, (5000, 6000))
    listing, (m1, m2) = job["listing"], job["milestones"]
    rivals = [job["buyer"], make_profile(db, "buyer")]
    function = f"test_slow_fund_{listing.replace('-', '_')}"
    db.execute(f"""CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN PERFORM pg_sleep(0.5); RETURN NEW; END $$""")
    db.execute(f"""CREATE TRIGGER {function} BEFORE INSERT ON payments FOR EACH ROW
                   WHEN (NEW.listing_id = '{listing}'::uuid) EXECUTE FUNCTION {function}()""")
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda pair: fund(stack, pair[0], listing, pair[1]), zip(rivals, (m1, m2))))
    finally:
        db.execute(f"DROP TRIGGER IF EXISTS {function} ON payments")
        db.execute(f"DROP FUNCTION IF EXISTS {function}()")
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    winner = next(i for i, a in enumerate(answers) if a.status_code == 201)
    assert_envelope(answers[1 - winner], 409, "job_has_other_buyer")
    buyers = many(db, "SELECT DISTINCT buyer_id::text AS buyer FROM payments WHERE listing_id = %s", (listing,))
    assert [b["buyer"] for b in buyers] == [rivals[winner]["id"]]
    assert len(fund_creates_for_listing(stack, listing)) == 1
    assert milestone_status(db, (m1, m2)[1 - winner]) == "pending"


def test_an_unpaid_funding_is_expired_by_the_sweeper_and_the_job_is_free_again(stack, db):
    """Issue 13: a buyer who starts funding and never pays no longer blocks the job: after
    RESERVATION_MINUTES `payments sweep` cancels the intent at Stripe (the payment's cancel key),
    the payment, and puts the milestone back to `pending` — audited, both parties told."""
    job = new_job(stack, db, (7000, 3000))
    buyer, seller, listing, (m1, m2) = job["buyer"], job["seller"], job["listing"], job["milestones"]
    started = fund(stack, buyer, listing, m1)
    assert started.status_code == 201, started.text
    payment_id, intent_id = started.json()["payment_id"], started.json()["payment_intent_id"]
    other = new_job(stack, db, (4000,))  # a funding still within its time stays as it is
    fresh = fund(stack, other["buyer"], other["listing"], other["milestones"][0])
    assert fresh.status_code == 201, fresh.text

    # Nothing is due yet; then the buyer is gone past RESERVATION_MINUTES (10 in the harness).
    assert "expire_fundings: " in sweep(stack)
    assert payment_row(db, payment_id)["status"] == "requires_payment_method"
    db.execute("UPDATE payments SET created_at = now() - interval '11 minutes' WHERE id = %s", (payment_id,))
    # The canceled event waits until the sweep is done (else it may cancel the payment first).
    stack.stripe_control("POST", "/_control/webhooks/pause", {"endpoint": "platform"})
    try:
        assert "expire_fundings: 1" in sweep(stack)
    finally:
        stack.stripe_control("POST", "/_control/webhooks/resume", {"endpoint": "platform"})

    assert payment_row(db, payment_id)["status"] == "canceled"
    assert milestone_status(db, m1) == "pending"
    assert fake_object(stack, intent_id)["status"] == "canceled"
    cancels = executed(calls(stack, f"payment:{payment_id}:cancel", f"{INTENTS}/{intent_id}/cancel", family=True))
    assert len(cancels) == 1, cancels
    operations = [r["operation"] for r in audit(db, "payment", payment_id)]
    assert "milestone.funding_expired" in operations, operations
    told = many(db, "SELECT profile_id::text AS profile FROM notifications WHERE kind = 'funding_expired'"
                    " AND payload->>'payment_id' = %s ORDER BY 1", (payment_id,))
    assert [t["profile"] for t in told] == sorted([buyer["id"], seller["id"]])
    settle(stack)  # the payment_intent.canceled event changes nothing more
    assert [r["operation"] for r in audit(db, "payment", payment_id)] == operations
    assert payment_row(db, fresh.json()["payment_id"])["status"] == "requires_payment_method"

    # A second sweep has nothing left to do, and the job is free: another buyer funds it.
    assert "expire_fundings: 0" in sweep(stack)
    newcomer = make_profile(db, "buyer")
    again = fund(stack, newcomer, listing, m1)
    assert again.status_code == 201, again.text
    assert again.json()["payment_intent_id"] != intent_id
    status, confirmed = confirm(stack, again.json()["payment_intent_id"])
    assert status == 200 and confirmed["status"] == "succeeded"
    wait_milestone(db, m1, "funded")
    assert_envelope(fund(stack, buyer, listing, m2), 409, "job_has_other_buyer")


def sweep(stack):
    result = subprocess.run([str(BINARY), "sweep"], env=stack.app.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# ------------------------------------------------------------------------------------------
# The read routes
# ------------------------------------------------------------------------------------------

def test_payment_routes_show_milestone_payments(stack, db):
    job = funded_job(stack, db, (5000, 6000), funded=2)
    buyer, seller = job["buyer"], job["seller"]
    ids = [f["payment_id"] for f in job["fundings"]]
    for profile in (buyer, seller):
        shown = stack.get(f"/api/payments/{ids[0]}", headers=profile["headers"])
        assert shown.status_code == 200, shown.text
        body = shown.json()
        assert (body["id"], body["kind"], body["status"], body["milestone_id"], body["listing_id"], body["amount"],
                body["application_fee"], body["amount_received"]) == \
            (ids[0], "milestone", "succeeded", job["milestones"][0], job["listing"], 5000, 500, 5000)
    stranger = make_profile(db, "buyer")
    assert_envelope(stack.get(f"/api/payments/{ids[0]}", headers=stranger["headers"]), 404, "not_found")

    as_buyer = stack.get("/api/payments?as=buyer", headers=buyer["headers"])
    assert as_buyer.status_code == 200, as_buyer.text
    assert [(p["id"], p["kind"], p["milestone_id"]) for p in as_buyer.json()["data"]] == \
        [(ids[1], "milestone", job["milestones"][1]), (ids[0], "milestone", job["milestones"][0])]
    as_seller = stack.get("/api/payments?as=seller", headers=seller["headers"])
    assert as_seller.status_code == 200, as_seller.text
    assert [p["id"] for p in as_seller.json()["data"]] == [ids[1], ids[0]]
    assert stack.get("/api/payments?as=buyer", headers=stranger["headers"]).json()["data"] == []


def test_listing_milestones_visible_to_buyer_and_seller_only(stack, db):
    job = funded_job(stack, db, (5000, 6000), funded=1)
    listing, (m1, m2) = job["listing"], job["milestones"]
    expected = [(m1, 1, "Milestone 1", 5000, "funded", job["fundings"][0]["payment_id"]),
                (m2, 2, "Milestone 2", 6000, "pending", None)]
    for profile in (job["buyer"], job["seller"], make_profile(db, "admin")):
        shown = stack.get(f"/api/listings/{listing}/milestones", headers=profile["headers"])
        assert shown.status_code == 200, shown.text
        assert [(m["id"], m["position"], m["title"], m["amount"], m["status"], m.get("payment_id"))
                for m in shown.json()["data"]] == expected
    for stranger in (make_profile(db, "buyer"), make_profile(db, "seller")):
        assert_envelope(stack.get(f"/api/listings/{listing}/milestones", headers=stranger["headers"]), 404, "not_found")
    assert_envelope(stack.get(f"/api/listings/{uuid.uuid4()}/milestones", headers=job["buyer"]["headers"]), 404, "not_found")
    assert_envelope(stack.get(f"/api/listings/{listing}/milestones"), 401, "unauthenticated")


# ------------------------------------------------------------------------------------------
# 401 / 403 / 404 matrix of the milestone routes
# ------------------------------------------------------------------------------------------

def test_milestone_routes_auth_matrix(stack, db):
    job = funded_job(stack, db, (5000, 6000), funded=1)
    listing, (m1, m2) = job["listing"], job["milestones"]
    admin = make_profile(db, "admin")
    stranger = make_profile(db, "buyer")
    routes = [
        ("POST", "/api/payments/milestones/create-intent", {"listing_id": listing, "milestone_id": m2}),
        ("POST", f"/api/payments/milestones/{m1}/release", {}),
        ("GET", f"/api/listings/{listing}/milestones", None),
    ]
    settle(stack)
    before = table_fingerprint(db)
    for method, path, body in routes:
        kwargs = {"json": body} if body is not None else {}
        # No token, a bad token, an expired one: 401.
        assert_envelope(stack.request(method, path, **kwargs), 401, "unauthenticated")
        assert_envelope(stack.request(method, path, headers={"Authorization": "Bearer not.a.token"}, **kwargs),
                        401, "unauthenticated")
        if method == "POST":
            # Sellers and admins cannot fund or release: 403.
            for profile in (job["seller"], admin):
                assert_envelope(stack.request(method, path, headers=profile["headers"], **kwargs), 403, "forbidden")
    # Strangers: the release and the list are 404 (existence does not leak).
    assert_envelope(release(stack, stranger, m1), 404, "not_found")
    assert_envelope(stack.get(f"/api/listings/{listing}/milestones", headers=stranger["headers"]), 404, "not_found")
    assert table_fingerprint(db) == before
    assert (milestone_status(db, m1), milestone_status(db, m2)) == ("funded", "pending")
    assert calls(stack, f"milestone:{m1}:release") == [] and calls(stack, f"milestone:{m2}:fund") == []


def test_release_replays_with_the_same_idempotency_key(stack, db):
    job = funded_job(stack, db, (5000,))
    buyer, (m1,) = job["buyer"], job["milestones"]
    key = f"release-{uuid.uuid4().hex}"
    first = release(stack, buyer, m1, headers={"Idempotency-Key": key})
    again = release(stack, buyer, m1, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert len(executed(calls(stack, f"milestone:{m1}:release"))) == 1
    assert len(calls(stack, f"milestone:{m1}:release")) == 1


def test_release_retried_with_the_same_idempotency_key_after_a_stripe_outage_succeeds(stack, db):
    """A 502 `stripe_unavailable` says "retry shortly" (Retry-After): it is transient, like the
    503s and 429s whose keys are released, so the client's retry with the same Idempotency-Key
    must run again rather than replay the outage for the key's lifetime."""
    job = funded_job(stack, db, (5000,))
    buyer, (m1,) = job["buyer"], job["milestones"]
    key = f"release-{uuid.uuid4().hex}"
    try:
        stack.stripe_control("POST", "/_control/faults", {"type": "error", "status": 500, "method": "POST",
                                                          "path_prefix": TRANSFERS, "count": 3})
        failed = release(stack, buyer, m1, headers={"Idempotency-Key": key})
    finally:
        stack.stripe_control("DELETE", "/_control/faults")
    assert_envelope(failed, 502, "stripe_unavailable")
    assert failed.headers.get("Retry-After")
    retried = release(stack, buyer, m1, headers={"Idempotency-Key": key})
    assert retried.status_code == 200, (retried.status_code, retried.headers.get("Idempotent-Replayed"), retried.text)
    assert milestone_status(db, m1) == "released"
    assert len(executed(calls(stack, f"milestone:{m1}:release"))) == 1
