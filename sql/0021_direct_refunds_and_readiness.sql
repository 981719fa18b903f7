-- 0021 (issue 16, the rest): a direct charge's refund records whether it gives the platform's
-- application fee back (DIRECT_REFUND_APPLICATION_FEE when the refund was reserved), so a refund
-- resumed after the setting changed sends what it was first sent with (its key would otherwise
-- be reused with other parameters). NULL where it does not apply: a platform charge's refund
-- (a milestone), and refunds recorded from Stripe's events; a destination charge's is always
-- true. Refunds reserved before this migration were all made with the fee refunded: NULL reads
-- as true.
ALTER TABLE refunds ADD COLUMN refund_application_fee boolean;

-- Why a pending refund waits, as Stripe reports it (`pending_reason`): `insufficient_funds` when
-- the balance of the account that owns the charge (a direct charge's seller) cannot cover it
-- yet; Stripe completes it when the balance can (charge.refund.updated), or fails it. NULL when
-- the refund is not pending.
ALTER TABLE refunds ADD COLUMN pending_reason text;

-- Readiness on the charge's terms: a destination charge made `on_behalf_of` the seller
-- (DESTINATION_ON_BEHALF_OF) makes the seller the settlement merchant, and Stripe then requires
-- the seller's `card_payments` capability as for a direct charge (known to be active), besides
-- `transfers`. The two-argument form (0020) is the same without on_behalf_of.
CREATE FUNCTION seller_readiness_gaps(s profiles, p_model text, p_on_behalf_of boolean) RETURNS text[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN s.stripe_account_id IS NULL THEN ARRAY['stripe_account']
    ELSE array_remove(ARRAY[
        CASE WHEN NOT s.charges_enabled THEN 'charges_enabled' END,
        CASE WHEN NOT s.payouts_enabled THEN 'payouts_enabled' END,
        CASE WHEN jsonb_array_length(s.requirements_past_due) > 0 THEN 'requirements.past_due' END,
        CASE WHEN p_model = 'destination' AND s.capabilities IS NOT NULL
                  AND s.capabilities->>'transfers' IS DISTINCT FROM 'active'
             THEN 'capabilities.transfers' END,
        CASE WHEN (p_model = 'direct' OR p_on_behalf_of)
                  AND (s.capabilities->>'card_payments') IS DISTINCT FROM 'active'
             THEN 'capabilities.card_payments' END
    ], NULL) END
$$;

CREATE OR REPLACE FUNCTION seller_readiness_gaps(s profiles, p_model text) RETURNS text[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT seller_readiness_gaps(s, p_model, false)
$$;

-- Events refused for their account (`account_mismatch`), counted where the inbox records its
-- decision, so every path that applies an event counts: a live delivery, the sweeper's retries,
-- a replay (admin or CLI), a backfill. The CLI paths run in other processes than /metrics; the
-- stored decision is the one place they all share. A partial index keeps the scrape cheap
-- (`status` is indexed already, so the predicate costs webhook_events no HOT updates).
CREATE INDEX webhook_events_refused_idx ON webhook_events (endpoint)
    WHERE status = 'ignored' AND last_error LIKE 'account_mismatch:%';

CREATE VIEW metrics_webhook_refused AS
    SELECT endpoint, count(*)::bigint AS events
    FROM webhook_events WHERE status = 'ignored' AND last_error LIKE 'account_mismatch:%'
    GROUP BY endpoint;

-- Money at risk split by charge model: in 0022, which redefines that view for its own reason.
