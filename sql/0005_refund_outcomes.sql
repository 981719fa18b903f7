-- 0005: a fully refunded purchase puts its listing back on sale and a fully refunded
-- milestone payment marks the milestone refunded, whichever path (API or charge.refunded)
-- records the refund first.
CREATE OR REPLACE FUNCTION payment_refund_atomic(p_intent text, p_created bigint, p_amount_captured bigint,
                                                 p_amount_refunded bigint)
RETURNS SETOF payments LANGUAGE plpgsql AS $$
DECLARE
    changed payments;
BEGIN
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
    RETURNING * INTO changed;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM payment_after_full_refund(changed);
    RETURN NEXT changed;
END $$;

CREATE FUNCTION payment_after_full_refund(p payments) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p.status <> 'refunded' THEN
        RETURN;
    END IF;
    IF p.kind = 'purchase' THEN
        UPDATE listings SET status = 'active', reserved_by = NULL, reserved_until = NULL
         WHERE id = p.listing_id AND status IN ('sold', 'payment_pending');
    ELSE
        UPDATE milestones SET status = 'refunded' WHERE id = p.milestone_id AND status IN ('funded', 'released');
    END IF;
END $$;
