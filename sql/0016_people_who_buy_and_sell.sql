-- Issue 15, items 6 and 8: one profile may both buy and sell; a seller's readiness names what is
-- missing; intents carry a description and a receipt email; a sale's funds have an expected
-- availability date.

-- Roles become a set. An admin stays separate (an admin is never also a buyer or a seller);
-- the sets are spelled in one order, so that equal sets are equal arrays.
ALTER TABLE profiles ADD COLUMN roles text[];
UPDATE profiles SET roles = ARRAY[role];
ALTER TABLE profiles
    ALTER COLUMN roles SET NOT NULL,
    ADD CONSTRAINT profiles_roles_check CHECK (roles IN ('{admin}', '{buyer}', '{seller}', '{buyer,seller}'));
ALTER TABLE profiles DROP COLUMN role;
CREATE INDEX profiles_admins_idx ON profiles (id) WHERE roles = '{admin}';

-- What Stripe says of the seller's account beyond charges_enabled: requirements already past
-- due, and the capabilities' states. NULL capabilities: not mirrored since this migration
-- (the next account.updated or onboarding return writes them).
ALTER TABLE profiles
    ADD COLUMN requirements_past_due jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN capabilities jsonb;

-- What keeps a seller from being paid, as names a client can show ('{}' when ready): a connected
-- account; charges and payouts enabled; nothing past due; the capability a destination charge
-- needs (`transfers`) active. The one definition of readiness, used by create-intent, milestone
-- funding, the listings page and the seller's status.
CREATE FUNCTION seller_readiness_gaps(s profiles) RETURNS text[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN s.stripe_account_id IS NULL THEN ARRAY['stripe_account']
    ELSE array_remove(ARRAY[
        CASE WHEN NOT s.charges_enabled THEN 'charges_enabled' END,
        CASE WHEN NOT s.payouts_enabled THEN 'payouts_enabled' END,
        CASE WHEN jsonb_array_length(s.requirements_past_due) > 0 THEN 'requirements.past_due' END,
        CASE WHEN s.capabilities IS NOT NULL AND s.capabilities->>'transfers' IS DISTINCT FROM 'active'
             THEN 'capabilities.transfers' END
    ], NULL) END
$$;

-- What the intent is created with, fixed when the payment row is written: every retry of the
-- create call sends the same parameters under the same key, whatever is edited meanwhile.
-- NULL on payments made before this migration (their create calls never sent them).
ALTER TABLE payments
    ADD COLUMN description text CHECK (length(description) <= 1000),
    ADD COLUMN receipt_email text,
    ADD COLUMN succeeded_at timestamptz;
-- Payments that succeeded before this migration: their last update is the closest known time.
UPDATE payments SET succeeded_at = updated_at WHERE status IN ('succeeded', 'refunded');

-- Money received: as in 0002, and the time it happened (for the expected availability date).
CREATE OR REPLACE FUNCTION payment_complete_atomic(p_intent text, p_created bigint, p_amount_received bigint,
                                                   p_charge text)
RETURNS SETOF payments LANGUAGE plpgsql AS $$
DECLARE
    changed payments;
BEGIN
    UPDATE payments
       SET status = 'succeeded', amount_received = GREATEST(amount_received, p_amount_received),
           amount_capturable = 0, stripe_charge_id = COALESCE(p_charge, stripe_charge_id),
           last_event_created = GREATEST(last_event_created, p_created),
           succeeded_at = COALESCE(succeeded_at, now())
     WHERE stripe_payment_intent_id = p_intent
       AND status IN ('creating', 'requires_payment_method', 'requires_confirmation', 'requires_action',
                      'processing', 'requires_capture')
    RETURNING * INTO changed;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF changed.kind = 'purchase' THEN
        UPDATE listings SET status = 'sold', reserved_by = NULL, reserved_until = NULL
         WHERE id = changed.listing_id AND status IN ('active', 'payment_pending');
    ELSE
        UPDATE milestones SET status = 'funded' WHERE id = changed.milestone_id AND status IN ('pending', 'funding');
    END IF;
    RETURN NEXT changed;
END $$;
