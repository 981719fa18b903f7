-- Chargeback recovery (CHARGEBACK_LIABILITY=seller): when Stripe withdraws a destination
-- charge's disputed amount from the platform, the sweeper reverses the seller's transfer for it
-- (key dispute:{id}:recovery). A reversal Stripe refuses (the seller's balance is too low) is a
-- debt, retried with backoff and shown to admins; a chargeback won after its recovery is undone
-- with a transfer back to the seller (key dispute:{id}:recovery:undo).
CREATE TABLE chargeback_recoveries (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    dispute_id           uuid NOT NULL UNIQUE REFERENCES disputes(id),
    payment_id           uuid NOT NULL REFERENCES payments(id),
    seller_id            uuid NOT NULL REFERENCES profiles(id),
    stripe_transfer_id   text NOT NULL,
    destination_account  text NOT NULL,
    amount_cents         bigint NOT NULL CHECK (amount_cents > 0),
    currency             char(3) NOT NULL,
    -- due → recovered | debt (refused, retried) → recovered; won: recovered → undo_due → undone,
    -- due | debt → waived.
    status               text NOT NULL DEFAULT 'due'
                         CHECK (status IN ('due', 'debt', 'recovered', 'undo_due', 'undone', 'waived')),
    attempts             int NOT NULL DEFAULT 0,
    -- The last Stripe call's outcome is unknown (a lost answer): the money may have moved, so a
    -- won chargeback does not waive it; the retry under the same key says what happened.
    outcome_unknown      boolean NOT NULL DEFAULT false,
    last_error           text,
    stripe_reversal_id   text,
    stripe_undo_transfer_id text,
    next_attempt_at      timestamptz NOT NULL DEFAULT now(),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chargeback_recoveries_due_idx ON chargeback_recoveries (next_attempt_at)
    WHERE status IN ('due', 'debt', 'undo_due');
CREATE TRIGGER chargeback_recoveries_updated_at BEFORE UPDATE ON chargeback_recoveries
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
