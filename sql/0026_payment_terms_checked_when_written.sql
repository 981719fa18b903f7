-- 0026 (issue 17, item 3): the rules over a payment's terms — who buys and sells, what kind of
-- payment it is, its charge model and account, its fee — are checked when those columns are
-- written, not at every update. They were CHECK constraints, which PostgreSQL re-reads and tests
-- at every UPDATE of `payments` whatever it sets: six expressions per payment transition, about
-- 11% of PostgreSQL's instructions per webhook delivery (docs/performance.md). A trigger
-- `BEFORE INSERT OR UPDATE OF` those columns runs only on a statement that sets one of them, with
-- the same rules, the same error (check_violation, 23514) and the same constraint names.
-- `amount_refunded <= amount_received` (payments_check2) stays a CHECK constraint: transitions
-- change both amounts.

ALTER TABLE payments
    DROP CONSTRAINT payments_check3,
    DROP CONSTRAINT payments_check1,
    DROP CONSTRAINT payments_direct_is_purchase,
    DROP CONSTRAINT payments_check,
    DROP CONSTRAINT payments_direct_has_account,
    DROP CONSTRAINT payments_on_behalf_of_destination;

CREATE FUNCTION payments_check_terms() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    broken text;
BEGIN
    -- As CHECK constraints do, a rule that evaluates to NULL passes (IF takes NULL as false).
    IF NOT (NEW.buyer_id <> NEW.seller_id) THEN
        broken := 'payments_check3';
    ELSIF NOT ((NEW.kind = 'milestone') = (NEW.milestone_id IS NOT NULL)) THEN
        broken := 'payments_check1';
    ELSIF NOT (NEW.application_fee_cents >= 0 AND NEW.application_fee_cents <= NEW.amount_cents) THEN
        broken := 'payments_check';
    ELSIF NOT ((NEW.charge_model = 'direct') = (NEW.stripe_account IS NOT NULL)) THEN
        broken := 'payments_direct_has_account';
    ELSIF NOT (NEW.charge_model = 'destination' OR NEW.kind = 'purchase') THEN
        broken := 'payments_direct_is_purchase';
    ELSIF NOT (NOT NEW.on_behalf_of OR NEW.charge_model = 'destination') THEN
        broken := 'payments_on_behalf_of_destination';
    END IF;
    IF broken IS NOT NULL THEN
        RAISE check_violation USING
            MESSAGE = format('new row for relation "payments" violates check constraint "%s"', broken),
            CONSTRAINT = broken, TABLE = 'payments';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER payments_check_terms
    BEFORE INSERT OR UPDATE OF buyer_id, seller_id, kind, milestone_id, application_fee_cents, amount_cents,
                               charge_model, stripe_account, on_behalf_of
    ON payments FOR EACH ROW EXECUTE FUNCTION payments_check_terms();
