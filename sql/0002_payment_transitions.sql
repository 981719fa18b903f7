-- 0002: the guarded payment-lifecycle transitions that webhook events (and the purchase
-- family) apply, plus payouts. Each transition is one UPDATE … WHERE status IN (allowed
-- previous states) AND last_event_created <= the event's created: a repeated or stale event
-- changes nothing and returns no row, so callers notify and audit only on a real change.

CREATE TABLE payouts (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    stripe_payout_id    text NOT NULL UNIQUE,
    account             text NOT NULL,            -- connected account the payout belongs to
    profile_id          uuid REFERENCES profiles(id),
    amount_cents        bigint NOT NULL,
    currency            char(3) NOT NULL,
    status              text NOT NULL,            -- Stripe's payout status
    arrival_date        bigint,
    failure_code        text,
    last_event_created  bigint NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER payouts_updated_at BEFORE UPDATE ON payouts FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Authorised and waiting for capture (payment_intent.amount_capturable_updated).
CREATE FUNCTION payment_capturable_atomic(p_intent text, p_created bigint, p_amount_capturable bigint,
                                          p_capture_before timestamptz)
RETURNS SETOF payments LANGUAGE sql AS $$
    UPDATE payments
       SET status = 'requires_capture', amount_capturable = p_amount_capturable,
           capture_before = COALESCE(p_capture_before, capture_before), last_event_created = p_created
     WHERE stripe_payment_intent_id = p_intent
       AND status IN ('creating', 'requires_payment_method', 'requires_confirmation', 'requires_action', 'processing')
       AND last_event_created <= p_created
    RETURNING *
$$;

-- Money received (payment_intent.succeeded): the purchase's listing is sold, the milestone funded.
CREATE FUNCTION payment_complete_atomic(p_intent text, p_created bigint, p_amount_received bigint, p_charge text)
RETURNS SETOF payments LANGUAGE plpgsql AS $$
DECLARE
    changed payments;
BEGIN
    UPDATE payments
       SET status = 'succeeded', amount_received = GREATEST(amount_received, p_amount_received),
           amount_capturable = 0, stripe_charge_id = COALESCE(p_charge, stripe_charge_id),
           last_event_created = GREATEST(last_event_created, p_created)
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

-- The attempt failed (payment_intent.payment_failed): the reservation or funding slot is released.
CREATE FUNCTION payment_fail_atomic(p_intent text, p_created bigint, p_code text, p_message text)
RETURNS SETOF payments LANGUAGE plpgsql AS $$
DECLARE
    changed payments;
BEGIN
    UPDATE payments
       SET status = 'failed', failure_code = p_code, failure_message = left(p_message, 500),
           amount_capturable = 0, last_event_created = p_created
     WHERE stripe_payment_intent_id = p_intent
       AND status IN ('creating', 'requires_payment_method', 'requires_confirmation', 'requires_action', 'processing')
       AND last_event_created <= p_created
    RETURNING * INTO changed;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM payment_release_hold(changed);
    RETURN NEXT changed;
END $$;

-- Cancelled before capture (payment_intent.canceled): the reservation or funding slot is released.
CREATE FUNCTION payment_cancel_atomic(p_intent text, p_created bigint)
RETURNS SETOF payments LANGUAGE plpgsql AS $$
DECLARE
    changed payments;
BEGIN
    UPDATE payments
       SET status = 'canceled', amount_capturable = 0, last_event_created = GREATEST(last_event_created, p_created)
     WHERE stripe_payment_intent_id = p_intent
       AND status IN ('creating', 'requires_payment_method', 'requires_confirmation', 'requires_action',
                      'processing', 'requires_capture', 'failed')
    RETURNING * INTO changed;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM payment_release_hold(changed);
    RETURN NEXT changed;
END $$;

-- Refunds (charge.refunded): Stripe's charge carries the cumulative amounts, so the stored
-- totals only ever grow; fully refunded payments become 'refunded'.
CREATE FUNCTION payment_refund_atomic(p_intent text, p_created bigint, p_amount_captured bigint, p_amount_refunded bigint)
RETURNS SETOF payments LANGUAGE sql AS $$
    UPDATE payments
       SET amount_received = GREATEST(amount_received, p_amount_captured),
           amount_refunded = GREATEST(amount_refunded, LEAST(p_amount_refunded, GREATEST(amount_received, p_amount_captured))),
           status = CASE WHEN p_amount_refunded >= GREATEST(amount_received, p_amount_captured)
                              AND GREATEST(amount_received, p_amount_captured) > 0
                         THEN 'refunded' ELSE status END,
           last_event_created = GREATEST(last_event_created, p_created)
     WHERE stripe_payment_intent_id = p_intent
       AND status IN ('succeeded', 'refunded')
       AND (amount_refunded < p_amount_refunded OR amount_received < p_amount_captured)
    RETURNING *
$$;

-- Releases what a payment that will not complete was holding.
CREATE FUNCTION payment_release_hold(p payments) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p.kind = 'purchase' THEN
        UPDATE listings SET status = 'active', reserved_by = NULL, reserved_until = NULL
         WHERE id = p.listing_id AND status = 'payment_pending' AND reserved_by = p.buyer_id;
    ELSE
        UPDATE milestones SET status = 'pending' WHERE id = p.milestone_id AND status = 'funding';
    END IF;
END $$;

-- account.updated events are applied in `created` order, like payment events.
ALTER TABLE profiles ADD COLUMN account_event_created bigint NOT NULL DEFAULT 0;
