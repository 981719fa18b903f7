"""Issue 6, bad input and access on the intents and capture families: every refusal is a 4xx
envelope and changes nothing (no row, no Stripe call); the read routes show a payment only to
its buyer, its seller and admins, and page through a buyer's payments with a cursor."""

import base64
import json
import uuid

import pytest

from charge_models import stack, stripe_account_scoped  # noqa: F401  (both charge models; see charge_models.py)
from harness.api import make_listing, make_profile, onboarded_seller, table_fingerprint
from harness.assertions import assert_envelope
from test_purchase_flow import (  # noqa: F401  (fresh_ip_rate_windows is an autouse fixture)
    authorised, cancel, capture, create_intent, created_intent, fake_calls, fresh_ip_rate_windows, listing_row,
    payment_row, settle_webhooks)


@pytest.fixture(scope="module")
def seller(stack):
    import psycopg
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        return onboarded_seller(stack, connection)


class Unchanged:
    """Asserts that nothing changed in the domain tables and nothing reached Stripe."""

    def __init__(self, stack, db):
        self.stack, self.db = stack, db

    def __enter__(self):
        settle_webhooks(self.stack)  # late deliveries of earlier tests must not count
        self.before = table_fingerprint(self.db)
        self.stripe_before = len(self.stack.stripe.received(method="POST"))
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            assert table_fingerprint(self.db) == self.before, "a refused request changed data"
            after = self.stack.stripe.received(method="POST")
            assert len(after) == self.stripe_before, after[self.stripe_before:]


def post_raw(stack, profile, path, data, content_type="application/json"):
    return stack.post(path, data=data, headers={**profile["headers"], "Content-Type": content_type})


# ------------------------------------------------------------------------------------------
# create-intent
# ------------------------------------------------------------------------------------------

MALFORMED_LISTING_BODIES = {
    "not_uuid": json.dumps({"listing_id": "not-a-uuid"}),
    "missing": json.dumps({}),
    "null": json.dumps({"listing_id": None}),
    "number": json.dumps({"listing_id": 12345}),
    "array": json.dumps({"listing_id": [str(uuid.uuid4())]}),
    "object": json.dumps({"listing_id": {"id": str(uuid.uuid4())}}),
    "uuid_with_junk": json.dumps({"listing_id": str(uuid.uuid4()) + "'--"}),
    "sql": json.dumps({"listing_id": "' OR 1=1 --"}),
    "empty": json.dumps({"listing_id": ""}),
    "huge": json.dumps({"listing_id": "a" * 20000}),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_LISTING_BODIES))
def test_create_intent_malformed_listing_id(stack, db, case):
    buyer = make_profile(db, "buyer")
    with Unchanged(stack, db):
        response = post_raw(stack, buyer, "/api/payments/create-intent", MALFORMED_LISTING_BODIES[case])
        error = assert_envelope(response, 400, "invalid_field")
        assert "listing_id" in error["message"]


@pytest.mark.parametrize("data,status,code", [
    ("{not json", 400, "invalid_json"),
    ("[]", 400, None),
    ("", 400, None),
])
def test_create_intent_unparseable_body(stack, db, data, status, code):
    buyer = make_profile(db, "buyer")
    with Unchanged(stack, db):
        response = post_raw(stack, buyer, "/api/payments/create-intent", data)
        assert response.status_code == status, response.text
        if code:
            assert_envelope(response, status, code)
        else:
            assert response.json()["error"]["code"] in ("invalid_json", "invalid_field"), response.text


def test_create_intent_body_above_limit(stack, db):
    buyer = make_profile(db, "buyer")
    with Unchanged(stack, db):
        response = post_raw(stack, buyer, "/api/payments/create-intent",
                            json.dumps({"listing_id": str(uuid.uuid4()), "pad": "x" * 40000}))
        assert_envelope(response, 413, "payload_too_large")


def test_create_intent_wrong_content_type(stack, db, seller):
    buyer = make_profile(db, "buyer")
    listing = make_listing(db, seller)
    with Unchanged(stack, db):
        response = post_raw(stack, buyer, "/api/payments/create-intent", f"listing_id={listing}",
                            content_type="application/x-www-form-urlencoded")
        assert_envelope(response, 415, "unsupported_media_type")


def test_create_intent_unknown_listing(stack, db):
    buyer = make_profile(db, "buyer")
    with Unchanged(stack, db):
        response = create_intent(stack, buyer, str(uuid.uuid4()))
        assert_envelope(response, 404, response.json()["error"]["code"])
        assert response.json()["error"]["code"] in ("listing_not_found", "not_found")


def test_create_intent_by_a_seller_is_forbidden(stack, db, seller):
    other_seller = make_profile(db, "seller")
    listing = make_listing(db, seller)
    with Unchanged(stack, db):
        for who in (seller, other_seller):  # neither its own seller nor another seller may buy
            assert_envelope(create_intent(stack, who, listing), 403, "forbidden")
    assert listing_row(db, listing)["status"] == "active"


def test_create_intent_by_an_admin_is_forbidden(stack, db, seller):
    admin = make_profile(db, "admin")
    listing = make_listing(db, seller)
    with Unchanged(stack, db):
        assert_envelope(create_intent(stack, admin, listing), 403, "forbidden")


def test_create_intent_without_a_token(stack, db, seller):
    listing = make_listing(db, seller)
    with Unchanged(stack, db):
        response = stack.post("/api/payments/create-intent", json={"listing_id": listing})
        assert_envelope(response, 401, "unauthenticated")


def test_create_intent_for_own_listing_is_self_purchase(stack, db):
    """A buyer profile that also owns a listing (seller_id = itself) cannot buy it."""
    buyer = make_profile(db, "buyer")
    listing = make_listing(db, buyer)
    with Unchanged(stack, db):
        assert_envelope(create_intent(stack, buyer, listing), 403, "self_purchase")
    # …and even when that profile can take charges.
    db.execute("UPDATE profiles SET charges_enabled = true, stripe_account_id = %s WHERE id = %s",
               (f"acct_selfbuy{uuid.uuid4().hex[:10]}", buyer["id"]))
    with Unchanged(stack, db):
        assert_envelope(create_intent(stack, buyer, listing), 403, "self_purchase")


@pytest.mark.parametrize("status", ["sold", "cancelled"])
def test_create_intent_listing_not_active(stack, db, seller, status):
    buyer = make_profile(db, "buyer")
    listing = make_listing(db, seller)
    db.execute("UPDATE listings SET status = %s WHERE id = %s", (status, listing))
    with Unchanged(stack, db):
        assert_envelope(create_intent(stack, buyer, listing), 409, "listing_unavailable")


def test_create_intent_listing_reserved_by_another_buyer(stack, db, seller):
    _, first, listing, body = created_intent(stack, db, seller=seller)
    second = make_profile(db, "buyer")
    with Unchanged(stack, db):
        assert_envelope(create_intent(stack, second, listing), 409, "listing_unavailable")
    assert str(listing_row(db, listing)["reserved_by"]) == first["id"]


def test_create_intent_job_listing_is_not_a_purchase(stack, db, seller):
    buyer = make_profile(db, "buyer")
    listing = make_listing(db, seller, kind="job")
    with Unchanged(stack, db):
        assert_envelope(create_intent(stack, buyer, listing), 409, "listing_unavailable")


@pytest.mark.parametrize("state", ["charges_disabled", "no_account"])
def test_create_intent_seller_not_ready(stack, db, state):
    if state == "charges_disabled":
        seller = make_profile(db, "seller", stripe_account=f"acct_notready{uuid.uuid4().hex[:10]}", charges_enabled=False)
    else:
        seller = make_profile(db, "seller", charges_enabled=True)
    buyer = make_profile(db, "buyer")
    listing = make_listing(db, seller)
    with Unchanged(stack, db):
        assert_envelope(create_intent(stack, buyer, listing), 409, "seller_not_ready")
    assert listing_row(db, listing)["status"] == "active"


# ------------------------------------------------------------------------------------------
# capture and cancel
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    {},
    {"payment_id": "nope"},
    {"payment_id": 7},
    {"amount_to_capture": 100},
])
def test_capture_malformed_payment_id(stack, db, body):
    buyer = make_profile(db, "buyer")
    with Unchanged(stack, db):
        error = assert_envelope(stack.post("/api/payments/capture", json=body, headers=buyer["headers"]),
                                400, "invalid_field")
        assert "payment_id" in error["message"]


@pytest.fixture(scope="module")
def authorised_payment(stack):
    """One authorised purchase that the bad-input tests below try (and fail) to capture."""
    import psycopg
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        connection.execute("DELETE FROM rate_limits WHERE key IN ('intent:127.0.0.1', 'capture:127.0.0.1')")
        seller_, buyer, listing, body = authorised(stack, connection)
    return {"seller": seller_, "buyer": buyer, "listing": listing, **body}


@pytest.mark.parametrize("amount", [0, -1, "100", 1.5, True, 10 ** 15])
def test_capture_malformed_amount(stack, db, authorised_payment, amount):
    with Unchanged(stack, db):
        response = capture(stack, authorised_payment["buyer"], authorised_payment["payment_id"], amount_to_capture=amount)
        error = assert_envelope(response, 400, "invalid_field")
        assert "amount_to_capture" in error["message"]
    assert fake_calls(stack, f"payment:{authorised_payment['payment_id']}:capture") == []


def test_capture_by_seller_or_stranger_is_not_found(stack, db, authorised_payment):
    stranger = make_profile(db, "buyer")
    with Unchanged(stack, db):
        assert_envelope(capture(stack, stranger, authorised_payment["payment_id"]), 404, "not_found")
        assert_envelope(capture(stack, authorised_payment["seller"], authorised_payment["payment_id"]), 403, "forbidden")
        assert_envelope(capture(stack, stranger, str(uuid.uuid4())), 404, "not_found")
    assert fake_calls(stack, f"payment:{authorised_payment['payment_id']}:capture") == []


def test_cancel_by_seller_or_stranger_changes_nothing(stack, db, authorised_payment):
    stranger = make_profile(db, "buyer")
    payment_id = authorised_payment["payment_id"]
    with Unchanged(stack, db):
        assert_envelope(cancel(stack, stranger, payment_id), 404, "not_found")
        assert_envelope(cancel(stack, authorised_payment["seller"], payment_id), 403, "forbidden")
        assert_envelope(cancel(stack, stranger, "not-a-uuid"), 400, "invalid_field")
    assert fake_calls(stack, f"payment:{payment_id}:cancel") == []
    assert payment_row(db, payment_id)["status"] == "requires_capture"


# ------------------------------------------------------------------------------------------
# GET /api/payments/{id} and GET /api/payments
# ------------------------------------------------------------------------------------------

def test_show_payment_visibility(stack, db, authorised_payment):
    payment_id = authorised_payment["payment_id"]
    for who in (authorised_payment["buyer"], authorised_payment["seller"], make_profile(db, "admin")):
        response = stack.get(f"/api/payments/{payment_id}", headers=who["headers"])
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["id"], body["status"], body["amount"], body["payment_intent_id"]) == \
            (payment_id, "requires_capture", 5000, authorised_payment["payment_intent_id"])
        assert body["buyer_id"] == authorised_payment["buyer"]["id"]
        assert "client_secret" not in body
    for stranger in (make_profile(db, "buyer"), make_profile(db, "seller")):
        assert_envelope(stack.get(f"/api/payments/{payment_id}", headers=stranger["headers"]), 404, "not_found")
    assert_envelope(stack.get(f"/api/payments/{uuid.uuid4()}", headers=authorised_payment["buyer"]["headers"]),
                    404, "not_found")
    assert_envelope(stack.get("/api/payments/not-a-uuid", headers=authorised_payment["buyer"]["headers"]),
                    400, "invalid_field")
    assert_envelope(stack.get(f"/api/payments/{payment_id}"), 401, "unauthenticated")


def insert_payments(db, buyer, seller, count, same_time=3):
    """`count` payments of `buyer`; the first `same_time` share one created_at (the cursor must
    break ties by id)."""
    listing = make_listing(db, seller)
    ids = []
    for n in range(count):
        created = "2030-01-01T00:00:00Z" if n < same_time else f"2030-01-0{2 + n}T00:00:00Z"
        ids.append(str(db.execute(
            "INSERT INTO payments (kind, buyer_id, seller_id, listing_id, amount_cents, application_fee_cents, currency,"
            " status, created_at) VALUES ('purchase', %s, %s, %s, %s, 0, 'usd', 'canceled', %s) RETURNING id",
            (buyer["id"], seller["id"], listing, 100 + n, created)).fetchone()[0]))
    return ids


def walk(stack, profile, role, limit):
    seen, pages, cursor = [], 0, None
    while True:
        query = f"/api/payments?as={role}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        response = stack.get(query, headers=profile["headers"])
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["data"]) <= limit
        seen.extend(body["data"])
        pages += 1
        cursor = body.get("next_cursor")  # absent or null on the last page
        assert pages < 50
        if cursor is None:
            return seen, pages


def test_list_payments_pagination(stack, db):
    seller = make_profile(db, "seller")
    buyer = make_profile(db, "buyer")
    ids = insert_payments(db, buyer, seller, 7)

    seen, pages = walk(stack, buyer, "buyer", 2)
    assert pages == 4
    got = [p["id"] for p in seen]
    assert len(got) == len(set(got)), got
    assert set(got) == set(ids)
    keys = [(p["created_at"], p["id"]) for p in seen]
    assert keys == sorted(keys, reverse=True), keys

    # The same through the seller's side; the buyer has no sales and the seller no purchases.
    seen, _ = walk(stack, seller, "seller", 3)
    assert sorted(p["id"] for p in seen) == sorted(ids)
    for profile, role in ((buyer, "seller"), (seller, "buyer")):
        response = stack.get(f"/api/payments?as={role}", headers=profile["headers"])
        assert response.status_code == 200 and response.json()["data"] == [], response.text
        assert response.json().get("next_cursor") is None

    # Exactly one page when the limit covers everything.
    response = stack.get("/api/payments?as=buyer&limit=7", headers=buyer["headers"])
    assert len(response.json()["data"]) == 7 and response.json().get("next_cursor") is None


@pytest.mark.parametrize("query", [
    "as=buyer&cursor=not-a-cursor",
    "as=buyer&cursor=" + base64.urlsafe_b64encode(b"123|not-a-uuid").decode().rstrip("="),
    "as=buyer&cursor=" + base64.urlsafe_b64encode(b"-5|" + str(uuid.uuid4()).encode()).decode().rstrip("="),
    "as=buyer&cursor=%27%20OR%201%3D1",
    "as=admin",
    "as=buyer&limit=0",
    "as=buyer&limit=101",
    "as=buyer&limit=abc",
])
def test_list_payments_bad_query(stack, db, query):
    buyer = make_profile(db, "buyer")
    response = stack.get(f"/api/payments?{query}", headers=buyer["headers"])
    assert_envelope(response, 400, "invalid_field")


def test_list_payments_shows_only_ones_own(stack, db, authorised_payment):
    stranger = make_profile(db, "buyer")
    response = stack.get("/api/payments?as=buyer", headers=stranger["headers"])
    assert response.status_code == 200 and response.json()["data"] == []
    mine = stack.get("/api/payments?as=buyer", headers=authorised_payment["buyer"]["headers"]).json()["data"]
    assert [p["id"] for p in mine] == [authorised_payment["payment_id"]]
