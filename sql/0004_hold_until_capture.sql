-- 0004: once a purchase is authorised, its listing stays held until the capture deadline
-- (the reservation window only bounds how long the buyer may take to pay).
CREATE OR REPLACE FUNCTION payment_capturable_atomic(p_intent text, p_created bigint, p_amount_capturable bigint,
                                                     p_capture_before timestamptz)
RETURNS SETOF payments LANGUAGE plpgsql AS $$
DECLARE
    changed payments;
BEGIN
    UPDATE payments
       SET status = 'requires_capture', amount_capturable = p_amount_capturable,
           capture_before = COALESCE(p_capture_before, capture_before), last_event_created = p_created
     WHERE stripe_payment_intent_id = p_intent
       AND status IN ('creating', 'requires_payment_method', 'requires_confirmation', 'requires_action', 'processing')
       AND last_event_created <= p_created
    RETURNING * INTO changed;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF changed.kind = 'purchase' THEN
        UPDATE listings SET reserved_until = GREATEST(reserved_until, changed.capture_before)
         WHERE id = changed.listing_id AND status = 'payment_pending' AND reserved_by = changed.buyer_id;
    END IF;
    RETURN NEXT changed;
END $$;
