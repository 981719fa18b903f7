-- pgbench script: the minimal transaction for one payment_intent.succeeded delivery (issue 17, item
-- 5), the reference for "what PostgreSQL alone can do here": insert the event (the raw bytes, as
-- bytea, deduplicated on the id), update the payment, mark the event processed. Nothing else: no
-- row lock taken apart from the update's own, no listing, no audit row, no notifications, no
-- look-up after the commit. bench/webhooks.py runs it in every round beside bench/webhook_tx.sql:
--
--   pgbench -n -M prepared -c 32 -j 2 -T 10 -D run=R -D k=0 -f bench/webhook_minimal.sql DATABASE_URL
--
-- `-M prepared`: each statement is parsed and planned once per connection, then only bound and
-- executed. That is the cheapest way PostgreSQL can be sent this work (and how the app is to send
-- its hot queries, issue 17 item 2), so the reference is an upper bound and "≥ 40% of it" does not
-- get easier because of how pgbench talks to the server.
--
-- As in webhook_tx.sql, client C's K-th transaction uses event evt_R_C_K and completes the
-- pre-created payment pi_R_C_K (bench/webhooks.py creates them); the \gset after the update finds
-- no row and fails the transaction if that payment is missing or already succeeded, so no-op
-- transactions cannot inflate the reference.
\set k :k + 1
BEGIN;
-- 1. Insert the event.
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
-- 2. Update the payment (guarded: only a payment still waiting for its money changes).
UPDATE payments SET status = 'succeeded', amount_received = 5000, amount_capturable = 0,
       stripe_charge_id = 'ch_' || :run::text || '_' || :client_id::text || '_' || :k::text,
       last_event_created = extract(epoch FROM now())::bigint
WHERE stripe_payment_intent_id = 'pi_' || :run::text || '_' || :client_id::text || '_' || :k::text
  AND status IN ('creating', 'requires_payment_method', 'requires_confirmation', 'requires_action', 'processing',
                 'requires_capture')
RETURNING id AS p_id \gset
-- 3. Mark the event processed.
UPDATE webhook_events SET status = 'processed', attempts = attempts + 1, processed_at = now()
WHERE id = 'evt_' || :run::text || '_' || :client_id::text || '_' || :k::text;
COMMIT;
