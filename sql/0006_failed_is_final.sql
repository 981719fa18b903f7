-- 0006: a failed payment stays failed. The app cancels a failed payment's intent at Stripe (so
-- no later card can be authorised on it); the payment_intent.canceled event that follows must
-- not turn 'failed' into 'canceled' or notify anyone again.
CREATE OR REPLACE FUNCTION payment_cancel_atomic(p_intent text, p_created bigint)
RETURNS SETOF payments LANGUAGE plpgsql AS $$
DECLARE
    changed payments;
BEGIN
    UPDATE payments
       SET status = 'canceled', amount_capturable = 0, last_event_created = GREATEST(last_event_created, p_created)
     WHERE stripe_payment_intent_id = p_intent
       AND status IN ('creating', 'requires_payment_method', 'requires_confirmation', 'requires_action',
                      'processing', 'requires_capture')
    RETURNING * INTO changed;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM payment_release_hold(changed);
    RETURN NEXT changed;
END $$;
