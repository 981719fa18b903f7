-- pgbench script: the SQL the app runs for ONE payment_intent.succeeded delivery
-- (WebhookInbox.receive + WebhookEffects.transition, sql/0002), statement for statement, so
-- that `pgbench -M extended` (the app sends every statement with PQexecParams) measures the
-- PostgreSQL ceiling of the webhook endpoint. bench/webhooks.py runs it:
--
--   pgbench -n -M extended -c 32 -j 2 -T 10 -D run=R -D k=0 -f bench/webhook_tx.sql DATABASE_URL
--
-- Every transaction uses a new event id and a new, pre-created payment: client C's K-th
-- transaction completes the payment whose intent is pi_R_C_K (bench/webhooks.py creates
-- them). `k` lives as long as the client, so it counts that client's transactions. If a
-- payment is missing or already succeeded, the \gset after payment_complete_atomic finds no
-- row and pgbench reports a failed transaction: the ceiling cannot be inflated by no-ops.
\set k :k + 1
BEGIN;
-- 1. The inbox row: the exact raw bytes (bytea, as the app binds them), deduplicated on the id.
INSERT INTO webhook_events (id, endpoint, type, created, account, object_id, payload, status)
VALUES ('evt_' || :run::text || '_' || :client_id::text || '_' || :k::text, 'platform', 'payment_intent.succeeded',
        extract(epoch FROM now())::bigint, NULL, 'pi_' || :run::text || '_' || :client_id::text || '_' || :k::text,
        convert_to(format('{"id":"evt_%1$s_%2$s_%3$s","object":"event","api_version":"2024-06-20","created":%4$s,'
                          '"livemode": false,"type":"payment_intent.succeeded","data":{"object":{"id":"pi_%1$s_%2$s_%3$s",'
                          '"object":"payment_intent","amount":5000,"amount_capturable":0,"amount_received":5000,'
                          '"currency":"usd","status":"succeeded","created":%4$s,"capture_method":"manual",'
                          '"latest_charge":"ch_%1$s_%2$s_%3$s","last_payment_error": null,'
                          '"metadata":{"listing_id":"00000000-0000-0000-0000-000000000000"}}}}',
                          :run::text, :client_id::text, :k::text, extract(epoch FROM now())::bigint), 'UTF8'),
        'received')
ON CONFLICT (id) DO NOTHING;
-- 2. The guarded transition (WebhookEffects.transition), one statement: the payment row is
--    locked, then payment_complete_atomic runs (lateral), which also marks the listing sold.
SELECT c.id AS p_id, c.buyer_id AS p_buyer, c.seller_id AS p_seller, c.status AS p_status, c.amount_cents AS p_amount,
       c.amount_received AS p_received, c.amount_refunded AS p_refunded, b.status AS old_status
FROM (SELECT stripe_payment_intent_id AS intent, status FROM payments
      WHERE stripe_payment_intent_id = 'pi_' || :run::text || '_' || :client_id::text || '_' || :k::text FOR UPDATE) b
LEFT JOIN LATERAL payment_complete_atomic(b.intent, extract(epoch FROM now())::bigint, 5000,
                                          'ch_' || :run::text || '_' || :client_id::text || '_' || :k::text) c ON true
WHERE c.id IS NOT NULL \gset
-- 3. The audit row and the notification of buyer and seller (one statement), only on a real change.
INSERT INTO payment_audit_logs (operation, entity_type, entity_id, actor_profile_id, actor_role, request_id, ip,
                                user_agent, old_values, new_values, success, error_code, metadata)
VALUES ('payment.succeeded', 'payment', :p_id::text, NULL, 'stripe', md5(:run::text || :client_id::text || :k::text), '127.0.0.1',
        'Stripe/1.0 (+https://stripe.com/docs/webhooks)', '{"status":"processing"}'::jsonb,
        ('{"status":"' || :p_status::text || '","amount_received":' || :p_received::text || ',"amount_refunded":' || :p_refunded::text
         || '}')::jsonb, true, NULL,
        ('{"event_id":"evt_' || :run::text || '_' || :client_id::text || '_' || :k::text
         || '","event_type":"payment_intent.succeeded"}')::jsonb);
INSERT INTO notifications (profile_id, kind, payload)
SELECT profile, 'payment_succeeded',
       ('{"amount_cents":' || :p_amount::text || ',"payment_id":"' || :p_id::text || '","status":"succeeded"}')::jsonb
FROM unnest(('{' || :p_buyer::text || ',' || :p_seller::text || '}')::uuid[]) AS profile;
-- 4. Mark the event processed.
UPDATE webhook_events SET status = 'processed', attempts = attempts + 1, processed_at = now(),
       next_attempt_at = NULL, last_error = NULL
WHERE id = 'evt_' || :run::text || '_' || :client_id::text || '_' || :k::text;
COMMIT;
-- 5. After the commit: parked events waiting for the charge (WebhookInbox.applyParked).
SELECT id FROM webhook_events WHERE object_id = 'ch_' || :run::text || '_' || :client_id::text || '_' || :k::text AND status = 'parked'
ORDER BY created, id;
