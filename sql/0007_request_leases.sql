-- Who runs a request whose work can outlive its process, and until when (issue 12).
-- A retry may take over an `in_progress` Idempotency-Key, or a purchase's unfinished create
-- attempt, once the lease has run out or its owner process is gone; the deterministic Stripe
-- keys then make the retry finish the first attempt's work instead of doing it twice.
-- owner is HOST:PID:START (START tells a reused pid apart).
ALTER TABLE idempotency_keys
    ADD COLUMN owner            text,
    ADD COLUMN lease_expires_at timestamptz;

ALTER TABLE payments
    ADD COLUMN create_attempt_owner      text,
    ADD COLUMN create_attempt_expires_at timestamptz;
