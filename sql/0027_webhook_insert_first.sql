-- 0027 (issue 17, item 3): a new payment_intent delivery stores its event first, as the inbox does
-- for every other event (docs/webhooks.md): `INSERT … ON CONFLICT (id) DO NOTHING`, already marked
-- `processed`, in the same transaction as its effect; an effect that parks or refuses the event
-- corrects the mark before the commit. The advisory lock and the look-up that came first (0023)
-- go: a concurrent delivery of the same event now waits on the primary key until the first
-- commits, then sees it. A delivery of a stored event reads its status without locking it, so a
-- duplicate writes nothing (no row lock, no WAL to flush at its commit); a parked or failed event
-- is locked and read again before it is applied. Same outcomes, same rows.

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
    -- Stored as processed: what most deliveries are (a parked or refused effect corrects it below).
    INSERT INTO webhook_events (id, endpoint, type, created, account, object_id, payload, status, attempts,
                                processed_at)
    VALUES (p_event, p_endpoint, p_type, p_created, p_account, p_intent, p_payload, 'processed', 1, now())
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT status INTO stored FROM webhook_events WHERE id = p_event;
        IF stored IN ('parked', 'failed') THEN  -- worth another attempt: lock it, and read it again
            SELECT status INTO stored FROM webhook_events WHERE id = p_event FOR UPDATE;
        END IF;
        IF stored NOT IN ('parked', 'failed') THEN
            outcome := 'duplicate';
            RETURN;
        END IF;
    END IF;
    applied := webhook_apply_payment_intent(p_event, p_type, p_created, p_account, p_intent, p_intent_created, p_amount,
                                      p_charge, p_failure_code, p_failure_message, p_actor_role, p_request_id, p_ip,
                                      p_user_agent);
    outcome := applied.outcome;
    cancel_payment := applied.cancel_payment;
    IF stored IS NULL THEN  -- the row inserted above
        IF outcome = 'parked' THEN
            UPDATE webhook_events SET status = 'parked', processed_at = NULL, next_attempt_at = now() + interval '1 minute'
             WHERE id = p_event;
        ELSIF outcome = 'refused' THEN
            UPDATE webhook_events SET status = 'ignored', last_error = mismatch WHERE id = p_event;
        END IF;
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
