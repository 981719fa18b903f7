-- pgbench script: the SQL the app runs for ONE payment_intent.succeeded delivery — since issue 17,
-- one prepared statement (WebhookInbox.receivePaymentIntent → webhook_receive_payment_intent,
-- sql/0018), which stores, applies and marks the event in its own transaction. So
-- `pgbench -M prepared` (the app prepares it once per connection) measures the PostgreSQL
-- ceiling of the webhook endpoint. bench/webhooks.py runs it:
--
--   pgbench -n -M prepared -c 32 -j 2 -T 10 -D run=R -D k=0 -f bench/webhook_tx.sql DATABASE_URL
--
-- Every transaction uses a new event id and a new, pre-created payment: client C's K-th
-- transaction completes the payment whose intent is pi_R_C_K (bench/webhooks.py creates
-- them). `k` lives as long as the client, so it counts that client's transactions. If a
-- payment is missing or already succeeded, the outcome is not `processed`, the \gset finds no
-- row and pgbench reports a failed transaction: the ceiling cannot be inflated by no-ops.
\set k :k + 1
SELECT outcome FROM webhook_receive_payment_intent(
    'evt_' || :run::text || '_' || :client_id::text || '_' || :k::text, 'platform', 'payment_intent.succeeded',
    extract(epoch FROM now())::bigint, NULL,
    convert_to(format('{"id":"evt_%1$s_%2$s_%3$s","object":"event","api_version":"2024-06-20","created":%4$s,'
                      '"livemode": false,"type":"payment_intent.succeeded","data":{"object":{"id":"pi_%1$s_%2$s_%3$s",'
                      '"object":"payment_intent","amount":5000,"amount_capturable":0,"amount_received":5000,'
                      '"currency":"usd","status":"succeeded","created":%4$s,"capture_method":"manual",'
                      '"latest_charge":"ch_%1$s_%2$s_%3$s","last_payment_error": null,'
                      '"metadata":{"listing_id":"00000000-0000-0000-0000-000000000000"}}}}',
                      :run::text, :client_id::text, :k::text, extract(epoch FROM now())::bigint), 'UTF8'),
    'pi_' || :run::text || '_' || :client_id::text || '_' || :k::text, extract(epoch FROM now())::bigint - 30, 5000,
    'ch_' || :run::text || '_' || :client_id::text || '_' || :k::text, NULL, NULL,
    'stripe', md5(:run::text || :client_id::text || :k::text), '127.0.0.1', 'Stripe/1.0 (+https://stripe.com/docs/webhooks)', 14)
WHERE outcome = 'processed' \gset
