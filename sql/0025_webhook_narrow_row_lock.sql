-- 0025 (issue 17, item 3): the payment_intent effect (0023) locks its payment reading only the
-- columns it uses. `SELECT *` of a `payments` row (40 columns) built a 40-column row
-- descriptor at every delivery, a type look-up per column: about 4% of PostgreSQL's
-- instructions per delivery (docs/performance.md). Nothing else changes.

CREATE OR REPLACE FUNCTION webhook_apply_payment_intent(
    p_event text, p_type text, p_created bigint, p_account text, p_intent text, p_intent_created bigint, p_amount bigint,
    p_charge text, p_failure_code text, p_failure_message text,
    p_actor_role text, p_request_id text, p_ip text, p_user_agent text,
    OUT outcome text, OUT cancel_payment uuid)
LANGUAGE plpgsql AS $$
DECLARE
    prior record;  -- the columns the effect reads, not the whole row
    changed payments;
    v_operation text;
    recipients uuid[];
    v_kind text;
BEGIN
    SELECT id, status, stripe_account, buyer_id, seller_id, capture_before INTO prior
    FROM payments WHERE stripe_payment_intent_id = p_intent FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'parked';
        RETURN;
    END IF;
    IF prior.stripe_account IS DISTINCT FROM p_account THEN
        outcome := 'refused';
        RETURN;
    END IF;
    outcome := 'processed';
    CASE p_type
    WHEN 'payment_intent.amount_capturable_updated' THEN
        SELECT * INTO changed FROM payment_capturable_atomic(
            p_intent, p_created, p_amount, COALESCE(prior.capture_before, to_timestamp(p_intent_created + 7 * 86400)));
        v_operation := 'payment.authorized';
        recipients := ARRAY[prior.seller_id];
        v_kind := 'payment_authorized';
    WHEN 'payment_intent.succeeded' THEN
        SELECT * INTO changed FROM payment_complete_atomic(p_intent, p_created, p_amount, p_charge);
        v_operation := 'payment.succeeded';
        recipients := ARRAY[prior.buyer_id, prior.seller_id];
        v_kind := 'payment_succeeded';
    WHEN 'payment_intent.payment_failed' THEN
        SELECT * INTO changed FROM payment_fail_atomic(p_intent, p_created, p_failure_code, p_failure_message);
        v_operation := 'payment.failed';
        recipients := ARRAY[prior.buyer_id];
        v_kind := 'payment_failed';
    WHEN 'payment_intent.canceled' THEN
        SELECT * INTO changed FROM payment_cancel_atomic(p_intent, p_created);
        v_operation := 'payment.canceled';
        recipients := ARRAY[prior.buyer_id, prior.seller_id];
        v_kind := 'payment_canceled';
    ELSE
        RAISE EXCEPTION 'webhook_apply_payment_intent: % is not a payment_intent event it applies', p_type;
    END CASE;
    IF changed.id IS NOT NULL THEN
        -- The audit row and the notifications in one statement.
        WITH audit AS (INSERT INTO payment_audit_logs (operation, entity_type, entity_id, actor_profile_id, actor_role, request_id, ip,
                                        user_agent, old_values, new_values, success, error_code, metadata)
        VALUES (v_operation, 'payment', changed.id::text, NULL, p_actor_role, p_request_id, p_ip, p_user_agent,
                jsonb_build_object('status', prior.status),
                jsonb_build_object('status', changed.status, 'amount_received', changed.amount_received,
                                   'amount_refunded', changed.amount_refunded),
                true, NULL, jsonb_build_object('event_id', p_event, 'event_type', p_type)))
        INSERT INTO notifications (profile_id, kind, payload)
        SELECT profile, v_kind, jsonb_build_object('payment_id', changed.id, 'status', changed.status,
                                                 'amount_cents', changed.amount_cents)
        FROM unnest(recipients) AS profile;
    END IF;
    IF p_type = 'payment_intent.payment_failed' AND changed.id IS NOT NULL THEN
        cancel_payment := changed.id;
    ELSIF p_type = 'payment_intent.amount_capturable_updated' THEN
        SELECT id INTO cancel_payment FROM payments
        WHERE stripe_payment_intent_id = p_intent AND status IN ('failed', 'canceled');
    END IF;
END $$;
