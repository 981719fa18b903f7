-- Stripe's processing fee of each captured charge and its balance transaction, recorded by the
-- sweeper (task record_charge_fees) from GET /v1/charges/{id}?expand[]=balance_transaction, for
-- the admin's revenue report. `unavailable`: Stripe has no such charge (not asked again).
ALTER TABLE payments
    ADD COLUMN stripe_fee_cents            bigint CHECK (stripe_fee_cents >= 0),
    ADD COLUMN stripe_balance_transaction  text;
