-- 0023 (issue 17, item 3): the payment_intent delivery in fewer statements. Each SQL statement a
-- PL/pgSQL function runs costs an executor start-up, the largest single item in PostgreSQL's
-- profile of a delivery (docs/performance.md). The effect (0020) writes its audit row and its
-- notifications in one statement; a new delivery (0020) takes its advisory lock and calls the
-- effect as expressions. Same meaning, same outcomes: only how the work is sent changes.

CREATE OR REPLACE FUNCTION webhook_apply_payment_intent(
    p_event text, p_type text, p_created bigint, p_account text, p_intent text, p_intent_created bigint, p_amount bigint,
    p_charge text, p_failure_code text, p_failure_message text,
    p_actor_role text, p_request_id text, p_ip text, p_user_agent text,
    OUT outcome text, OUT cancel_payment uuid)
LANGUAGE plpgsql AS $$
DECLARE
    prior payments;
    changed payments;
    v_operation text;
    recipients uuid[];
    v_kind text;
BEGIN
    SELECT * INTO prior FROM payments WHERE stripe_payment_intent_id = p_intent FOR UPDATE;
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

CREATE OR REPLACE FUNCTION webhook_receive_payment_intent(
    p_event text, p_endpoint text, p_type text, p_created bigint, p_account text, p_payload bytea,
    p_intent text, p_intent_created bigint, p_amount bigint, p_charge text, p_failure_code text,
    p_failure_message text, p_actor_role text, p_request_id text, p_ip text, p_user_agent text,
    p_max_parked_attempts integer,
    OUT outcome text, OUT cancel_payment uuid, OUT parked_waiting boolean)
LANGUAGE plpgsql AS $$
DECLARE
    stored text;
    applied record;
    mismatch constant text := 'account_mismatch: event.account is not the account of the object it concerns';
BEGIN
    parked_waiting := false;
    -- The lock and the effect's call are PL/pgSQL expressions, not statements: no executor
    -- start-up each (the lock is void, so the test is only there to make it an expression).
    IF pg_advisory_xact_lock(hashtextextended(p_event, 0)) IS NULL THEN NULL; END IF;
    SELECT status INTO stored FROM webhook_events WHERE id = p_event FOR UPDATE;
    IF FOUND AND stored NOT IN ('parked', 'failed') THEN
        outcome := 'duplicate';
        RETURN;
    END IF;
    applied := webhook_apply_payment_intent(p_event, p_type, p_created, p_account, p_intent, p_intent_created, p_amount,
                                      p_charge, p_failure_code, p_failure_message, p_actor_role, p_request_id, p_ip,
                                      p_user_agent);
    outcome := applied.outcome;
    cancel_payment := applied.cancel_payment;
    IF stored IS NULL THEN
        INSERT INTO webhook_events (id, endpoint, type, created, account, object_id, payload, status, attempts,
                                    processed_at, next_attempt_at, last_error)
        VALUES (p_event, p_endpoint, p_type, p_created, p_account, p_intent, p_payload,
                CASE outcome WHEN 'parked' THEN 'parked' WHEN 'refused' THEN 'ignored' ELSE 'processed' END, 1,
                CASE WHEN outcome = 'parked' THEN NULL ELSE now() END,
                CASE WHEN outcome = 'parked' THEN now() + interval '1 minute' END,
                CASE WHEN outcome = 'refused' THEN mismatch END);
    ELSIF outcome = 'parked' THEN
        UPDATE webhook_events
           SET status = CASE WHEN attempts + 1 >= p_max_parked_attempts THEN 'dead' ELSE 'parked' END,
               attempts = attempts + 1, last_error = NULL,
               next_attempt_at = now() + least(interval '1 minute' * power(2, attempts), interval '6 hours')
         WHERE id = p_event;
    ELSE
        UPDATE webhook_events SET status = CASE WHEN outcome = 'refused' THEN 'ignored' ELSE 'processed' END,
               attempts = attempts + 1, processed_at = now(), next_attempt_at = NULL,
               last_error = CASE WHEN outcome = 'refused' THEN mismatch END
         WHERE id = p_event;
    END IF;
    IF outcome = 'processed' AND p_type = 'payment_intent.succeeded' AND p_charge IS NOT NULL THEN
        parked_waiting := EXISTS (SELECT 1 FROM webhook_events WHERE object_id = p_charge AND status = 'parked');
    END IF;
END $$;
