-- 0022 (issue 17, item 3): payment updates that can be HOT. An update that changes no indexed
-- column (and no column of a partial index's predicate) is written as a heap-only tuple: the
-- new row version goes on the same page and no index gets an entry. `status` changes in most
-- payment updates, and two indexes named it, so none could be HOT: each delivery of a payment
-- event wrote a new entry into all nine of `payments`' indexes. What it saves per delivery is
-- measured in docs/performance.md (issue 17).

-- Room on each page for the next version of its rows (new pages; old ones as they are rewritten).
ALTER TABLE payments SET (fillfactor = 80);

-- The authorisations still held, by when their hold lapses: `capture_before` while the payment
-- is `requires_capture`, else NULL. A generated column (PostgreSQL keeps it in step with every
-- update), so the index of held payments names this column alone: a transition between two
-- other statuses leaves it NULL, which the index does not hold, and the update can be HOT. It
-- replaces the partial index `WHERE status = 'requires_capture'` of 0001. Adding the column
-- rewrites the table once, under an exclusive lock (seconds per million payments).
ALTER TABLE payments
    ADD COLUMN hold_expires_at timestamptz
        GENERATED ALWAYS AS (CASE WHEN status = 'requires_capture' THEN capture_before END) STORED;
DROP INDEX payments_capture_before_idx;
CREATE INDEX payments_hold_expires_idx ON payments (hold_expires_at) WHERE hold_expires_at IS NOT NULL;

-- The admin's payment search by status walks `payments_created_idx` (newest first, as it
-- answers) and filters on status: a page of 50 reads about 50 / (the status' share) rows. The
-- status index it could use instead cost every payment update its HOT chance.
DROP INDEX payments_status_created_idx;

-- The money at risk (0012), reading the held payments through the new index, and split by charge
-- model (`charge_model` as its last column): an operator running both models sees whose balance
-- a disputed or refunded amount comes from. Two values, so the families stay small. Milestone
-- fundings (platform charges) read `destination`, as on their rows.
CREATE OR REPLACE VIEW metrics_money_at_risk AS
    SELECT 'authorizations_expiring'::text AS kind, currency::text AS currency,
           count(*)::bigint AS items, sum(amount_capturable)::bigint AS amount, charge_model
    FROM payments
    WHERE hold_expires_at < now() + interval '24 hours'
    GROUP BY currency, charge_model
    UNION ALL
    SELECT 'disputes_open', coalesce(d.currency, p.currency)::text,
           count(*), sum(coalesce(d.amount_cents, p.amount_cents - p.amount_refunded))::bigint, p.charge_model
    FROM disputes d JOIN payments p ON p.id = d.payment_id
    WHERE d.status IN ('open', 'warning_needs_response', 'warning_under_review', 'needs_response', 'under_review')
    GROUP BY 2, p.charge_model
    UNION ALL
    SELECT 'refunds_pending', r.currency::text, count(*), sum(r.amount_cents)::bigint, p.charge_model
    FROM refunds r JOIN payments p ON p.id = r.payment_id
    WHERE r.status IN ('creating', 'pending', 'requires_action')
    GROUP BY r.currency, p.charge_model;
