-- Each `payments reconcile` run: its window and its drift counts by kind, for /metrics and for
-- operators who want to see when the books last agreed with Stripe.
CREATE TABLE reconcile_runs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    finished_at   timestamptz NOT NULL DEFAULT now(),
    since         timestamptz NOT NULL,
    until         timestamptz NOT NULL,
    drift_counts  jsonb NOT NULL,
    drift_total   int NOT NULL,
    repaired      int NOT NULL
);
