-- 0020 (issue 16): charge models. A purchase is a destination charge (the platform is the
-- merchant of record) or a direct charge (created on the seller's connected account, which is
-- the merchant of record; the platform takes its application fee). The model is chosen by the
-- operator (CHARGE_MODEL) and fixed on each payment when it is made, so that changing the
-- setting never alters a payment already made: every later Stripe call and every event of a
-- payment follows its row. Also: readiness per model, and the rule that a payment's events are
-- applied only from the account that owns it.

-- `charge_model`: how the payment's intent was created. `stripe_account`: the connected account
-- that owns the payment's Stripe objects (a direct charge's seller account; sent as
-- `Stripe-Account` on every call for it, and the `account` its events must carry), NULL for the
-- platform's own objects. `on_behalf_of`: a destination charge made with `on_behalf_of` = the
-- seller's account (DESTINATION_ON_BEHALF_OF), kept so that a resumed create call sends the same
-- parameters. Milestone payments are platform charges (separate charges and transfers) under
-- either setting, recorded as 'destination'. Payments made before this migration: destination.
ALTER TABLE payments
    ADD COLUMN charge_model text NOT NULL DEFAULT 'destination'
        CONSTRAINT payments_charge_model_check CHECK (charge_model IN ('destination', 'direct')),
    ADD COLUMN stripe_account text,
    ADD COLUMN on_behalf_of boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT payments_direct_has_account CHECK ((charge_model = 'direct') = (stripe_account IS NOT NULL)),
    ADD CONSTRAINT payments_direct_is_purchase CHECK (charge_model = 'destination' OR kind = 'purchase'),
    ADD CONSTRAINT payments_on_behalf_of_destination CHECK (NOT on_behalf_of OR charge_model = 'destination');

-- Readiness, model-aware, still one definition: what keeps a seller from being paid under
-- `p_model`. Both models need a connected account, charges and payouts enabled and nothing past
-- due. A destination charge pays the seller by transfer (`transfers` active, when the
-- capabilities have been mirrored); a direct charge is made on the seller's account, so its
-- `card_payments` capability must be known to be active.
CREATE FUNCTION seller_readiness_gaps(s profiles, p_model text) RETURNS text[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN s.stripe_account_id IS NULL THEN ARRAY['stripe_account']
    ELSE array_remove(ARRAY[
        CASE WHEN NOT s.charges_enabled THEN 'charges_enabled' END,
        CASE WHEN NOT s.payouts_enabled THEN 'payouts_enabled' END,
        CASE WHEN jsonb_array_length(s.requirements_past_due) > 0 THEN 'requirements.past_due' END,
        CASE WHEN p_model = 'destination' AND s.capabilities IS NOT NULL
                  AND s.capabilities->>'transfers' IS DISTINCT FROM 'active'
             THEN 'capabilities.transfers' END,
        CASE WHEN p_model = 'direct' AND (s.capabilities->>'card_payments') IS DISTINCT FROM 'active'
             THEN 'capabilities.card_payments' END
    ], NULL) END
$$;

-- The one-argument form (0016) is the destination model's readiness.
CREATE OR REPLACE FUNCTION seller_readiness_gaps(s profiles) RETURNS text[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT seller_readiness_gaps(s, 'destination')
$$;

-- The one rule for a payment's events (intent and charge events, on either endpoint): an event
-- is applied only when its `account` is the account that owns the payment's objects
-- (`payments.stripe_account`; NULL — the platform's — for destination and platform charges).
-- An event from another account (or from none) is refused: stored `ignored` with the reason in
-- `last_error`, never retried, nothing else changed. The owner is written with the payment and
-- never changes; an event whose payment is not known yet is parked, and checked when applied.
--
-- For the payment_intent events the effect checks it itself, on the payment row it locks
-- anyway: no statement more on the one-round-trip path (issue 17). Its signature gains the
-- event's account.
DROP FUNCTION webhook_apply_payment_intent(text, text, bigint, text, bigint, bigint, text, text, text, text, text,
                                           text, text);

CREATE FUNCTION webhook_apply_payment_intent(
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
        INSERT INTO payment_audit_logs (operation, entity_type, entity_id, actor_profile_id, actor_role, request_id, ip,
                                        user_agent, old_values, new_values, success, error_code, metadata)
        VALUES (v_operation, 'payment', changed.id::text, NULL, p_actor_role, p_request_id, p_ip, p_user_agent,
                jsonb_build_object('status', prior.status),
                jsonb_build_object('status', changed.status, 'amount_received', changed.amount_received,
                                   'amount_refunded', changed.amount_refunded),
                true, NULL, jsonb_build_object('event_id', p_event, 'event_type', p_type));
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

-- The charge and dispute events (applied in Swift) ask the same question before their effect.
CREATE FUNCTION payment_event_from_other_account(p_intent text, p_account text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM payments
                   WHERE stripe_payment_intent_id = p_intent AND stripe_account IS DISTINCT FROM p_account)
$$;

-- A new delivery (0018), passing the event's account to the effect; a refused event is stored
-- `ignored`, with the reason in `last_error`, and never retried.
CREATE OR REPLACE FUNCTION webhook_receive_payment_intent(
    p_event text, p_endpoint text, p_type text, p_created bigint, p_account text, p_payload bytea,
    p_intent text, p_intent_created bigint, p_amount bigint, p_charge text, p_failure_code text,
    p_failure_message text, p_actor_role text, p_request_id text, p_ip text, p_user_agent text,
    p_max_parked_attempts integer,
    OUT outcome text, OUT cancel_payment uuid, OUT parked_waiting boolean)
LANGUAGE plpgsql AS $$
DECLARE
    stored text;
    mismatch constant text := 'account_mismatch: event.account is not the account of the object it concerns';
BEGIN
    parked_waiting := false;
    PERFORM pg_advisory_xact_lock(hashtextextended(p_event, 0));
    SELECT status INTO stored FROM webhook_events WHERE id = p_event FOR UPDATE;
    IF FOUND AND stored NOT IN ('parked', 'failed') THEN
        outcome := 'duplicate';
        RETURN;
    END IF;
    SELECT a.outcome, a.cancel_payment INTO outcome, cancel_payment
    FROM webhook_apply_payment_intent(p_event, p_type, p_created, p_account, p_intent, p_intent_created, p_amount,
                                      p_charge, p_failure_code, p_failure_message, p_actor_role, p_request_id, p_ip,
                                      p_user_agent) a;
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
