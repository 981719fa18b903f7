"""Issue 19, item 2 — the two API routes the pages need besides the existing ones:

- GET /api/config (public) says what the pages need to talk to Stripe (the publishable key,
  the fake or Stripe, the fake's origin) and never the secret key;
- GET /api/listings (signed in) lists active listings only, newest first, filtered and paged,
  with whether each seller can be paid yet."""

from harness.api import make_profile, onboarded_seller, token
from harness.assertions import assert_envelope
from harness.stack import PUBLISHABLE_KEY


# --- GET /api/config ----------------------------------------------------------------------

def test_config_is_public_and_names_the_fake(stack):
    response = stack.get("/api/config")
    assert response.status_code == 200, response.text
    assert response.json() == {"stripe": {"backend": "fake", "publishable_key": PUBLISHABLE_KEY,
                                          "fake_api_base": stack.stripe.url}}
    assert stack.app.env["STRIPE_SECRET_KEY"] not in response.text and "sk_" not in response.text
    assert "whsec_" not in response.text
    with_token = stack.get("/api/config", headers={"Authorization": f"Bearer {token('nobody')}"})
    assert with_token.json() == response.json()


# --- GET /api/listings --------------------------------------------------------------------

def test_listings_show_what_can_be_bought(stack, db):
    ready = onboarded_seller(stack, db)
    waiting = make_profile(db, "seller")
    buyer = make_profile(db, "buyer")
    marker = f"pages-{make_profile(db, 'buyer')['id'][:8]}"

    def listing(seller, title, kind="item", status="active"):
        row = db.execute("INSERT INTO listings (seller_id, title, kind, price_cents, currency) VALUES (%s, %s, %s, 1500,"
                         " 'usd') RETURNING id::text", (seller["id"], f"{marker} {title}", kind)).fetchone()[0]
        if status != "active":
            db.execute("UPDATE listings SET status = %s WHERE id = %s", (status, row))
        return row

    chair = listing(ready, "chair")
    stool = listing(waiting, "stool")
    job = listing(ready, "garden job", kind="job")
    listing(ready, "sold lamp", status="sold")
    listing(ready, "cancelled rug", status="cancelled")

    def walk(query):
        found, cursor = [], None
        while True:
            page = stack.get(f"/api/listings?{query}" + (f"&cursor={cursor}" if cursor else ""),
                             headers=buyer["headers"]).json()
            found += page["data"]
            cursor = page["next_cursor"]
            if not cursor:
                return [item for item in found if item["title"].startswith(marker)]

    every = walk("limit=2")
    assert [item["id"] for item in every] == [job, stool, chair], every  # newest first, active only
    by_id = {item["id"]: item for item in every}
    assert by_id[chair] == {"id": chair, "title": f"{marker} chair", "kind": "item", "price": 1500, "currency": "usd",
                            "seller_id": ready["id"], "seller_can_be_paid": True,
                            "created_at": by_id[chair]["created_at"]}
    assert by_id[stool]["seller_can_be_paid"] is False
    assert [item["id"] for item in walk("kind=item&limit=100")] == [stool, chair]
    assert [item["id"] for item in walk("kind=job")] == [job]
    assert_envelope(stack.get("/api/listings"), 401, "unauthenticated")
    assert_envelope(stack.get("/api/listings?kind=car", headers=buyer["headers"]), 400, "invalid_field")
    assert_envelope(stack.get("/api/listings?limit=0", headers=buyer["headers"]), 400, "invalid_field")
    assert_envelope(stack.get("/api/listings?cursor=forged", headers=buyer["headers"]), 400, "invalid_field")
