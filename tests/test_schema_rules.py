"""The database's own rules on the tables a webhook delivery writes (issue 17, item 3). The one-column
rules are domains (sql/0024) and the rules over a payment's terms a trigger that runs when the terms
are written (sql/0026), because PostgreSQL re-reads table CHECK constraints at every statement. Each
rule still refuses what its CHECK constraint refused, on INSERT and on UPDATE, with check_violation
and nothing written; a payment transition no longer runs the terms' rules."""

import uuid

import psycopg
import pytest
from harness.api import make_listing, make_milestones, make_profile


def purchase(db, **columns) -> str:
    """Inserts a payment (a valid destination purchase unless `columns` say otherwise); its id."""
    buyer, seller = make_profile(db, "buyer"), make_profile(db, "seller")
    row = {"kind": "purchase", "buyer_id": buyer["id"], "seller_id": seller["id"],
           "listing_id": make_listing(db, seller), "stripe_payment_intent_id": f"pi_rules_{uuid.uuid4().hex}",
           "amount_cents": 5000, "application_fee_cents": 500, "currency": "usd", "status": "processing"}
    row.update(columns)
    names = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    return db.execute(f"INSERT INTO payments ({names}) VALUES ({marks}) RETURNING id::text", list(row.values())).fetchone()[0]


def refused(db, sql, params) -> psycopg.errors.CheckViolation:
    with pytest.raises(psycopg.errors.CheckViolation) as raised:
        with db.transaction():
            db.execute(sql, params)
    return raised.value


PAYMENT_VALUES = [("status", "paid"), ("kind", "gift"), ("currency", "USD"), ("amount_cents", 0),
                  ("amount_capturable", -1), ("amount_received", -1), ("amount_refunded", -1),
                  ("stripe_fee_cents", -1), ("action_claim", "steal"), ("description", "x" * 1001),
                  ("charge_model", "indirect")]


@pytest.mark.parametrize("column,value", PAYMENT_VALUES)
def test_a_payment_column_refuses_what_its_rule_refuses(db, column, value):
    payment = purchase(db)
    before = db.execute("SELECT to_jsonb(p) FROM payments p WHERE id = %s", (payment,)).fetchone()[0]
    refused(db, f"UPDATE payments SET {column} = %s WHERE id = %s", (value, payment))
    assert db.execute("SELECT to_jsonb(p) FROM payments p WHERE id = %s", (payment,)).fetchone()[0] == before
    count = db.execute("SELECT count(*) FROM payments").fetchone()[0]
    with pytest.raises(psycopg.errors.CheckViolation):
        with db.transaction():
            purchase(db, **{column: value})
    assert db.execute("SELECT count(*) FROM payments").fetchone()[0] == count


@pytest.mark.parametrize("column,value", [("status", "gone"), ("kind", "car"), ("title", ""), ("title", "x" * 201),
                                          ("currency", "EU"), ("price_cents", 0)])
def test_a_listing_column_refuses_what_its_rule_refuses(db, column, value):
    listing = make_listing(db, make_profile(db, "seller"))
    before = db.execute("SELECT to_jsonb(l) FROM listings l WHERE id = %s", (listing,)).fetchone()[0]
    refused(db, f"UPDATE listings SET {column} = %s WHERE id = %s", (value, listing))
    assert db.execute("SELECT to_jsonb(l) FROM listings l WHERE id = %s", (listing,)).fetchone()[0] == before


@pytest.mark.parametrize("column,value", [("endpoint", "elsewhere"), ("status", "done")])
def test_a_webhook_event_column_refuses_what_its_rule_refuses(db, column, value):
    event = f"evt_rules_{uuid.uuid4().hex}"
    row = {"id": event, "endpoint": "platform", "type": "payment_intent.succeeded", "created": 1,
           "payload": b"{}", "status": "processed", column: value}
    names, marks = ", ".join(row), ", ".join(["%s"] * len(row))
    refused(db, f"INSERT INTO webhook_events ({names}) VALUES ({marks})", list(row.values()))
    assert db.execute("SELECT count(*) FROM webhook_events WHERE id = %s", (event,)).fetchone() == (0,)


def test_the_rules_over_a_payments_terms_refuse_on_insert_with_their_constraint_names(db):
    buyer = make_profile(db, "buyer")
    job = make_listing(db, make_profile(db, "seller"), kind="job", price=900)
    [milestone] = make_milestones(db, job, [900])
    cases = {
        "payments_check3": {"seller_id": buyer["id"], "buyer_id": buyer["id"]},
        "payments_check1": {"kind": "milestone"},
        "payments_check": {"application_fee_cents": 5001},
        "payments_direct_has_account": {"charge_model": "direct"},
        "payments_direct_is_purchase": {"kind": "milestone", "milestone_id": milestone, "charge_model": "direct",
                                        "stripe_account": "acct_rules"},
        "payments_on_behalf_of_destination": {"charge_model": "direct", "stripe_account": "acct_rules",
                                              "on_behalf_of": True},
    }
    count = db.execute("SELECT count(*) FROM payments").fetchone()[0]
    for constraint, columns in cases.items():
        with pytest.raises(psycopg.errors.CheckViolation) as raised:
            with db.transaction():
                purchase(db, **columns)
        assert raised.value.diag.constraint_name == constraint, (constraint, str(raised.value))
        assert f'violates check constraint "{constraint}"' in str(raised.value)
    assert db.execute("SELECT count(*) FROM payments").fetchone()[0] == count
    # A negative fee, and each rule's NULL passing as it does in a CHECK constraint.
    with pytest.raises(psycopg.errors.CheckViolation):
        with db.transaction():
            purchase(db, application_fee_cents=-1)
    purchase(db, charge_model="direct", stripe_account="acct_rules")


def test_the_rules_over_a_payments_terms_refuse_on_update_and_a_transition_does_not_run_them(stack, db):
    payment = purchase(db)
    buyer = db.execute("SELECT buyer_id FROM payments WHERE id = %s", (payment,)).fetchone()[0]
    for sql, params, constraint in [
        ("UPDATE payments SET seller_id = %s WHERE id = %s", (buyer, payment), "payments_check3"),
        ("UPDATE payments SET application_fee_cents = amount_cents + 1 WHERE id = %s", (payment,), "payments_check"),
        ("UPDATE payments SET charge_model = 'direct' WHERE id = %s", (payment,), "payments_direct_has_account"),
        ("UPDATE payments SET stripe_account = 'acct_rules' WHERE id = %s", (payment,), "payments_direct_has_account"),
    ]:
        assert refused(db, sql, params).diag.constraint_name == constraint
    # Refunded never exceeds received: a table constraint still, tested at every update.
    assert refused(db, "UPDATE payments SET amount_refunded = 1 WHERE id = %s", (payment,)).diag.constraint_name \
        == "payments_check2"
    assert db.execute("SELECT status, seller_id <> buyer_id, application_fee_cents, charge_model, stripe_account "
                      "FROM payments WHERE id = %s", (payment,)).fetchone() == ("processing", True, 500, "destination",
                                                                               None)
    # Counted in this transaction's function statistics (a superuser's session setting): the
    # terms' trigger runs for a statement that sets a term, and not for a transition.
    with psycopg.connect(stack.pg.url("payments", "postgres")) as owner:
        owner.execute("SET LOCAL track_functions = 'pl'")
        calls = ("SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions "
                 "WHERE funcname = 'payments_check_terms'")
        owner.execute("SELECT payment_complete_atomic(stripe_payment_intent_id, 1, 5000, 'ch_rules') FROM payments "
                      "WHERE id = %s", (payment,))
        assert owner.execute("SELECT status FROM payments WHERE id = %s", (payment,)).fetchone() == ("succeeded",)
        assert owner.execute(calls).fetchone() == (0,)
        owner.execute("UPDATE payments SET application_fee_cents = application_fee_cents WHERE id = %s", (payment,))
        assert owner.execute(calls).fetchone() == (1,)
        owner.rollback()
