-- 0024 (issue 17, item 3): the one-column rules of the tables a webhook delivery writes become
-- domains. PostgreSQL reads a table's CHECK constraints back from their stored text, plans and
-- compiles them again at every INSERT and UPDATE statement, and tests all of them whichever
-- columns the statement sets: `payments` had 18, so each payment transition re-read 18
-- expressions. A domain's rule is read once per connection (the type cache), and tested only
-- where a value of the domain is written. The rules themselves do not change: the same values
-- are allowed and refused, with the same error (check_violation, 23514), now naming the domain.
-- What it saves per delivery is measured in docs/performance.md (issue 17).
--
-- The rules that tie two columns together stay table constraints. Changing a column's type
-- rewrites the table once, under an exclusive lock (seconds per million payments); the views
-- over these columns are dropped and created again from their own definitions, unchanged, and
-- `hold_expires_at` (0022), which reads `status`, is generated again with its index.

CREATE DOMAIN payment_status AS text CHECK (VALUE IN (
    'creating', 'requires_payment_method', 'requires_confirmation', 'requires_action', 'processing',
    'requires_capture', 'succeeded', 'canceled', 'failed', 'refunded'));
CREATE DOMAIN payment_kind AS text CHECK (VALUE IN ('purchase', 'milestone'));
CREATE DOMAIN payment_action_claim AS text CHECK (VALUE IN ('capture', 'cancel', 'release'));
CREATE DOMAIN payment_description AS text CHECK (length(VALUE) <= 1000);
CREATE DOMAIN charge_model AS text CHECK (VALUE IN ('destination', 'direct'));
CREATE DOMAIN currency_code AS char(3) CHECK (VALUE ~ '^[a-z]{3}$');
-- Amounts in the smallest currency unit.
CREATE DOMAIN cents AS bigint CHECK (VALUE >= 0);
CREATE DOMAIN positive_cents AS bigint CHECK (VALUE > 0);
CREATE DOMAIN listing_status AS text CHECK (VALUE IN ('active', 'payment_pending', 'sold', 'cancelled'));
CREATE DOMAIN listing_kind AS text CHECK (VALUE IN ('item', 'job'));
CREATE DOMAIN listing_title AS text CHECK (length(VALUE) BETWEEN 1 AND 200);
CREATE DOMAIN webhook_endpoint AS text CHECK (VALUE IN ('platform', 'connect'));
CREATE DOMAIN webhook_event_status AS text CHECK (VALUE IN ('received', 'processed', 'parked', 'failed', 'ignored', 'dead'));

-- The views that read these columns, as they are defined now, to be created again below.
CREATE TEMPORARY TABLE views_to_restore ON COMMIT DROP AS
SELECT c.relname AS name, pg_get_viewdef(c.oid) AS definition, obj_description(c.oid, 'pg_class') AS comment
FROM pg_class c
WHERE c.relkind = 'v' AND c.relname IN ('metrics_webhook_backlog', 'metrics_money_at_risk', 'metrics_webhook_refused');
DROP VIEW metrics_webhook_backlog, metrics_money_at_risk, metrics_webhook_refused;

ALTER TABLE payments DROP COLUMN hold_expires_at;  -- with payments_hold_expires_idx
ALTER TABLE payments
    DROP CONSTRAINT payments_status_check,
    DROP CONSTRAINT payments_kind_check,
    DROP CONSTRAINT payments_action_claim_check,
    DROP CONSTRAINT payments_description_check,
    DROP CONSTRAINT payments_charge_model_check,
    DROP CONSTRAINT payments_currency_check,
    DROP CONSTRAINT payments_amount_cents_check,
    DROP CONSTRAINT payments_amount_capturable_check,
    DROP CONSTRAINT payments_amount_received_check,
    DROP CONSTRAINT payments_amount_refunded_check,
    DROP CONSTRAINT payments_stripe_fee_cents_check,
    ALTER COLUMN status TYPE payment_status,
    ALTER COLUMN kind TYPE payment_kind,
    ALTER COLUMN action_claim TYPE payment_action_claim,
    ALTER COLUMN description TYPE payment_description,
    ALTER COLUMN charge_model TYPE charge_model,
    ALTER COLUMN currency TYPE currency_code,
    ALTER COLUMN amount_cents TYPE positive_cents,
    ALTER COLUMN amount_capturable TYPE cents,
    ALTER COLUMN amount_received TYPE cents,
    ALTER COLUMN amount_refunded TYPE cents,
    ALTER COLUMN stripe_fee_cents TYPE cents,
    -- As in 0022.
    ADD COLUMN hold_expires_at timestamptz
        GENERATED ALWAYS AS (CASE WHEN status = 'requires_capture' THEN capture_before END) STORED;
CREATE INDEX payments_hold_expires_idx ON payments (hold_expires_at) WHERE hold_expires_at IS NOT NULL;

ALTER TABLE listings
    DROP CONSTRAINT listings_status_check,
    DROP CONSTRAINT listings_kind_check,
    DROP CONSTRAINT listings_title_check,
    DROP CONSTRAINT listings_currency_check,
    DROP CONSTRAINT listings_price_cents_check,
    ALTER COLUMN status TYPE listing_status,
    ALTER COLUMN kind TYPE listing_kind,
    ALTER COLUMN title TYPE listing_title,
    ALTER COLUMN currency TYPE currency_code,
    ALTER COLUMN price_cents TYPE positive_cents;

ALTER TABLE webhook_events
    DROP CONSTRAINT webhook_events_endpoint_check,
    DROP CONSTRAINT webhook_events_status_check,
    ALTER COLUMN endpoint TYPE webhook_endpoint,
    ALTER COLUMN status TYPE webhook_event_status;

DO $$
DECLARE
    view record;
BEGIN
    FOR view IN SELECT * FROM views_to_restore ORDER BY name LOOP
        EXECUTE format('CREATE VIEW %I AS %s', view.name, view.definition);
        IF view.comment IS NOT NULL THEN
            EXECUTE format('COMMENT ON VIEW %I IS %L', view.name, view.comment);
        END IF;
    END LOOP;
END $$;
