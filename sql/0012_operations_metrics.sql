-- Metrics that outlive a process (issue 18, item 4).
--
-- `payments sweep` runs as its own short process, so what it did cannot live in the memory of
-- `payments serve`: each task's last run and running totals are kept here, one row per task,
-- and /metrics reads them at scrape time.
CREATE TABLE sweep_runs (
    task              text PRIMARY KEY,
    runs              bigint NOT NULL DEFAULT 0 CHECK (runs >= 0),
    failures          bigint NOT NULL DEFAULT 0 CHECK (failures >= 0),   -- items and whole-task failures
    rows_touched      bigint NOT NULL DEFAULT 0 CHECK (rows_touched >= 0),
    last_started_at   timestamptz NOT NULL,
    last_finished_at  timestamptz NOT NULL,
    last_rows         bigint NOT NULL CHECK (last_rows >= 0),
    last_failures     bigint NOT NULL CHECK (last_failures >= 0),
    last_success_at   timestamptz                                        -- the last run without a failure
);

-- Scrape-time queries must stay cheap however large the tables grow: each view below reads
-- only through a partial index that holds just the rows it counts (tests/test_metrics.py
-- checks the plans with sequential scans disabled).
CREATE INDEX webhook_events_backlog_idx ON webhook_events (status, type) WHERE status IN ('parked', 'failed', 'dead');
CREATE INDEX refunds_pending_idx ON refunds (currency) WHERE status IN ('creating', 'pending', 'requires_action');
CREATE INDEX disputes_open_idx ON disputes (payment_id)
    WHERE status IN ('open', 'warning_needs_response', 'warning_under_review', 'needs_response', 'under_review');

-- The inbox backlog: events waiting for a retry (parked, failed) and the ones given up on (dead).
CREATE VIEW metrics_webhook_backlog AS
    SELECT status, type, count(*)::bigint AS events
    FROM webhook_events WHERE status IN ('parked', 'failed', 'dead')
    GROUP BY status, type;

-- Money at risk, per kind and currency: authorisations whose hold lapses within 24 hours (the
-- capturable amount), open disputes (Stripe's disputed amount, or the payment's unrefunded
-- amount for a platform dispute) and refunds not yet settled.
CREATE VIEW metrics_money_at_risk AS
    SELECT 'authorizations_expiring'::text AS kind, currency::text AS currency,
           count(*)::bigint AS items, sum(amount_capturable)::bigint AS amount
    FROM payments
    WHERE status = 'requires_capture' AND capture_before < now() + interval '24 hours'
    GROUP BY currency
    UNION ALL
    SELECT 'disputes_open', coalesce(d.currency, p.currency)::text,
           count(*), sum(coalesce(d.amount_cents, p.amount_cents - p.amount_refunded))::bigint
    FROM disputes d JOIN payments p ON p.id = d.payment_id
    WHERE d.status IN ('open', 'warning_needs_response', 'warning_under_review', 'needs_response', 'under_review')
    GROUP BY 2
    UNION ALL
    SELECT 'refunds_pending', currency::text, count(*), sum(amount_cents)::bigint
    FROM refunds WHERE status IN ('creating', 'pending', 'requires_action')
    GROUP BY currency;
