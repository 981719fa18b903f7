-- 0003: what the purchase flow keeps beside the intent.
-- The client secret is returned again to the same buyer (a repeated create-intent) without a
-- second Stripe call; it is never logged and never shown to anyone but the buyer.
ALTER TABLE payments ADD COLUMN client_secret text;
-- Seller readiness is checked on every purchase.
CREATE INDEX profiles_stripe_account_idx ON profiles (stripe_account_id) WHERE stripe_account_id IS NOT NULL;
