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
