-- Admin and seller money tools (issue 15): goodwill refunds, admin lists, seller payouts.

-- Admins refund without a dispute (goodwill refunds). A refund the app makes is numbered within
-- its scope, a dispute or (without one) its payment, and that number keys its Stripe calls
-- (dispute:{id}:refund:{n}, payment:{id}:refund:{n}, …:reversal:{n}); refunds recorded from
-- Stripe's events have none.
ALTER TABLE refunds RENAME COLUMN dispute_attempt TO attempt;
CREATE INDEX refunds_payment_idx ON refunds (payment_id);

-- Admin searches: payments by status, buyer, seller or listing, newest first.
CREATE INDEX payments_status_created_idx ON payments (status, created_at DESC, id DESC);
CREATE INDEX payments_created_idx ON payments (created_at DESC, id DESC);

-- The inbox backlog, newest first. received_at is written once, so this index never stops an
-- update of the row from being HOT; a status filter reads it in order and skips other rows.
CREATE INDEX webhook_events_received_idx ON webhook_events (received_at DESC, id DESC);

-- A seller's payouts, newest first (GET /api/connect/payouts).
CREATE INDEX payouts_profile_created_idx ON payouts (profile_id, created_at DESC, id DESC);
