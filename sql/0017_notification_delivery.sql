-- Notifications reach people (issue 19, item 3). `payments sweep` delivers each notification on
-- every configured channel (a signed webhook to the marketplace application, an email over
-- SMTP): one row per notification and channel, each with its own state, so one channel can be
-- delivered while the other retries.
--
--   pending    due at next_attempt_at (also the lease of the sweeper that claimed it: while it
--              delivers, next_attempt_at lies past its timeout, so no other sweeper takes it)
--   delivered  the receiver acknowledged it (2xx, SMTP 250); never sent again
--   dead       NOTIFY_MAX_ATTEMPTS failed attempts, or a failure no retry can mend (no email
--              template, a malformed address); shown to admins, who may retry it
--   skipped    nothing to deliver to (a profile without an email address)

-- When the notification first reached its recipient on some channel.
ALTER TABLE notifications ADD COLUMN delivered_at timestamptz;

-- The sweeper looks for recent notifications without a delivery row of a channel.
CREATE INDEX notifications_created_idx ON notifications (created_at);

CREATE TABLE notification_deliveries (
    id               bigserial PRIMARY KEY,
    notification_id  uuid NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
    channel          text NOT NULL CHECK (channel IN ('webhook', 'email')),
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead', 'skipped')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz,
    last_attempt_at  timestamptz,
    last_error       text,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (notification_id, channel),
    CHECK ((state = 'pending') = (next_attempt_at IS NOT NULL)),
    CHECK ((state = 'delivered') = (delivered_at IS NOT NULL))
);

-- The sweeper's queue: due rows only.
CREATE INDEX notification_deliveries_due_idx ON notification_deliveries (channel, next_attempt_at)
    WHERE state = 'pending';
-- Scrape-time gauges and the admin's list: the rows that still need something, never the
-- (ever growing) delivered ones.
CREATE INDEX notification_deliveries_open_idx ON notification_deliveries (state, channel, created_at)
    WHERE state IN ('pending', 'dead');

-- `payments_notification_deliveries_total{channel,outcome}`: the sweeper is a process of its own,
-- so its counters live here (like sweep_runs), bumped in the transaction that records the outcome.
CREATE TABLE notification_delivery_totals (
    channel  text NOT NULL CHECK (channel IN ('webhook', 'email')),
    outcome  text NOT NULL CHECK (outcome IN ('delivered', 'failed', 'dead', 'skipped')),
    total    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (channel, outcome)
);
INSERT INTO notification_delivery_totals (channel, outcome)
SELECT c, o FROM unnest(ARRAY['webhook', 'email']) AS c, unnest(ARRAY['delivered', 'failed', 'dead', 'skipped']) AS o;
