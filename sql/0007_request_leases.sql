-- Who runs a request whose work can outlive its process, and until when (issue 12).
-- A retry may take over an `in_progress` Idempotency-Key, or a purchase's unfinished create
-- attempt, once the lease has run out or its owner process is gone; the deterministic Stripe
-- keys then make the retry finish the first attempt's work instead of doing it twice.
-- owner is HOST:PID:START (START tells a reused pid apart). stripe_create_key is the
-- idempotency key the payment's PaymentIntent is created under, kept so that any later
-- attempt (a retry, the sweeper) sends exactly the same call.
ALTER TABLE idempotency_keys
    ADD COLUMN owner            text,
    ADD COLUMN lease_expires_at timestamptz;

ALTER TABLE payments
    ADD COLUMN create_attempt_owner      text,
    ADD COLUMN create_attempt_expires_at timestamptz,
    ADD COLUMN stripe_create_key         text;

-- A refund whose Stripe call ended without an outcome keeps its number (so the next attempt
-- sends the same keys: dispute:{id}:refund:{n}, …:reversal:{n}) and is resumed rather than
-- made again; request_key ties it to the Idempotency-Key of the request that made it, so a
-- retry that takes that key over finds it.
ALTER TABLE refunds
    ADD COLUMN dispute_attempt int,
    ADD COLUMN request_key     text,
    ADD COLUMN outcome_unknown boolean NOT NULL DEFAULT false;
