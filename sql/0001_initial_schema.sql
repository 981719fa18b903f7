-- 0001: every table of SPEC §4. Money is integer minor units (bigint); never floating point.
-- Applied files are never edited: later changes are new numbered files.

-- Timestamps leave the database as ISO 8601 UTC text: iso8601(created_at) → 2026-01-31T12:00:00.123456Z.
CREATE FUNCTION iso8601(t timestamptz) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TABLE profiles (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id            text NOT NULL UNIQUE,                -- the identity provider's JWT `sub`
    role               text NOT NULL CHECK (role IN ('buyer', 'seller', 'admin')),
    email              text,
    display_name       text,
    stripe_account_id  text UNIQUE,
    charges_enabled    boolean NOT NULL DEFAULT false,
    payouts_enabled    boolean NOT NULL DEFAULT false,
    details_submitted  boolean NOT NULL DEFAULT false,
    requirements_due   jsonb NOT NULL DEFAULT '[]'::jsonb,
    disabled_reason    text,
    account_synced_at  timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE listings (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seller_id       uuid NOT NULL REFERENCES profiles(id),
    title           text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    kind            text NOT NULL DEFAULT 'item' CHECK (kind IN ('item', 'job')),
    price_cents     bigint NOT NULL CHECK (price_cents > 0),
    currency        char(3) NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    status          text NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'payment_pending', 'sold', 'cancelled')),
    reserved_by     uuid REFERENCES profiles(id),
    reserved_until  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'payment_pending') = (reserved_by IS NOT NULL AND reserved_until IS NOT NULL))
);
CREATE INDEX listings_seller_idx ON listings (seller_id);
CREATE INDEX listings_reserved_until_idx ON listings (reserved_until) WHERE status = 'payment_pending';

CREATE TABLE milestones (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    listing_id    uuid NOT NULL REFERENCES listings(id),
    position      int NOT NULL CHECK (position > 0),
    title         text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    amount_cents  bigint NOT NULL CHECK (amount_cents > 0),
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'funding', 'funded', 'released', 'refunded', 'disputed')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (listing_id, position)
);

CREATE TABLE payments (
    id                        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind                      text NOT NULL CHECK (kind IN ('purchase', 'milestone')),
    buyer_id                  uuid NOT NULL REFERENCES profiles(id),
    seller_id                 uuid NOT NULL REFERENCES profiles(id),
    listing_id                uuid NOT NULL REFERENCES listings(id),
    milestone_id              uuid REFERENCES milestones(id),
    stripe_payment_intent_id  text UNIQUE,
    stripe_charge_id          text,
    amount_cents              bigint NOT NULL CHECK (amount_cents > 0),
    application_fee_cents     bigint NOT NULL CHECK (application_fee_cents >= 0 AND application_fee_cents <= amount_cents),
    currency                  char(3) NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    status                    text NOT NULL DEFAULT 'creating'
                              CHECK (status IN ('creating', 'requires_payment_method', 'requires_confirmation',
                                                'requires_action', 'processing', 'requires_capture',
                                                'succeeded', 'canceled', 'failed', 'refunded')),
    transfer_group            text,
    capture_before            timestamptz,
    amount_capturable         bigint NOT NULL DEFAULT 0 CHECK (amount_capturable >= 0),
    amount_received           bigint NOT NULL DEFAULT 0 CHECK (amount_received >= 0),
    amount_refunded           bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    is_disputed               boolean NOT NULL DEFAULT false,
    failure_code              text,
    failure_message           text,
    last_event_created        bigint NOT NULL DEFAULT 0,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'milestone') = (milestone_id IS NOT NULL)),
    CHECK (amount_refunded <= amount_received),
    CHECK (buyer_id <> seller_id)
);
CREATE INDEX payments_buyer_idx ON payments (buyer_id, created_at DESC, id DESC);
CREATE INDEX payments_seller_idx ON payments (seller_id, created_at DESC, id DESC);
CREATE INDEX payments_listing_idx ON payments (listing_id);
CREATE INDEX payments_milestone_idx ON payments (milestone_id) WHERE milestone_id IS NOT NULL;
CREATE INDEX payments_capture_before_idx ON payments (capture_before) WHERE status = 'requires_capture';

CREATE TABLE disputes (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    payment_id          uuid NOT NULL REFERENCES payments(id),
    kind                text NOT NULL CHECK (kind IN ('platform', 'chargeback')),
    -- platform: open → resolved | dismissed; chargeback: Stripe's dispute statuses.
    status              text NOT NULL CHECK (status IN ('open', 'resolved', 'dismissed',
                                                        'warning_needs_response', 'warning_under_review',
                                                        'warning_closed', 'needs_response', 'under_review',
                                                        'won', 'lost')),
    opened_by           uuid REFERENCES profiles(id),
    reason              text NOT NULL,
    details             text,
    stripe_dispute_id   text UNIQUE,
    amount_cents        bigint CHECK (amount_cents >= 0),
    currency            char(3),
    due_by              timestamptz,
    evidence_status     text,
    funds_withdrawn_cents  bigint NOT NULL DEFAULT 0,
    funds_reinstated_cents bigint NOT NULL DEFAULT 0,
    outcome             text CHECK (outcome IN ('refund_buyer', 'release_seller', 'dismiss')),
    resolution_note     text,
    resolved_by         uuid REFERENCES profiles(id),
    resolved_at         timestamptz,
    last_event_created  bigint NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'chargeback') = (stripe_dispute_id IS NOT NULL))
);
-- One open platform dispute per payment.
CREATE UNIQUE INDEX disputes_one_open_platform_idx ON disputes (payment_id) WHERE kind = 'platform' AND status = 'open';
CREATE INDEX disputes_status_idx ON disputes (status, created_at DESC, id DESC);

CREATE TABLE refunds (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    payment_id          uuid NOT NULL REFERENCES payments(id),
    dispute_id          uuid REFERENCES disputes(id),
    sequence            int NOT NULL CHECK (sequence > 0),
    stripe_refund_id    text UNIQUE,
    amount_cents        bigint NOT NULL CHECK (amount_cents > 0),
    currency            char(3) NOT NULL,
    reason              text,
    status              text NOT NULL DEFAULT 'creating'
                        CHECK (status IN ('creating', 'pending', 'requires_action', 'succeeded', 'failed', 'canceled')),
    failure_reason      text,
    created_by          uuid REFERENCES profiles(id),
    last_event_created  bigint NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (payment_id, sequence)
);

CREATE TABLE transfers (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    payment_id           uuid NOT NULL REFERENCES payments(id),
    milestone_id         uuid REFERENCES milestones(id),
    stripe_transfer_id   text UNIQUE,
    destination_account  text NOT NULL,
    amount_cents         bigint NOT NULL CHECK (amount_cents > 0),
    amount_reversed      bigint NOT NULL DEFAULT 0 CHECK (amount_reversed >= 0),
    currency             char(3) NOT NULL,
    status               text NOT NULL DEFAULT 'creating'
                         CHECK (status IN ('creating', 'created', 'partially_reversed', 'reversed', 'failed')),
    last_event_created   bigint NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (amount_reversed <= amount_cents)
);
CREATE UNIQUE INDEX transfers_one_per_milestone_idx ON transfers (milestone_id) WHERE milestone_id IS NOT NULL;

CREATE TABLE webhook_events (
    id               text PRIMARY KEY,                      -- Stripe's evt_… id
    endpoint         text NOT NULL CHECK (endpoint IN ('platform', 'connect')),
    type             text NOT NULL,
    created          bigint NOT NULL,                       -- Stripe's event timestamp (unix seconds)
    account          text,                                  -- connected account, for Connect events
    object_id        text,                                  -- data.object.id, to find parked events
    payload          bytea NOT NULL,                        -- the exact raw bytes that were signed
    status           text NOT NULL DEFAULT 'received'
                     CHECK (status IN ('received', 'processed', 'parked', 'failed', 'ignored', 'dead')),
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    last_error       text,
    received_at      timestamptz NOT NULL DEFAULT now(),
    processed_at     timestamptz
);
CREATE INDEX webhook_events_retry_idx ON webhook_events (next_attempt_at) WHERE status IN ('parked', 'failed');
CREATE INDEX webhook_events_object_idx ON webhook_events (object_id) WHERE status = 'parked';
CREATE INDEX webhook_events_type_created_idx ON webhook_events (type, created);

-- Exactly these columns (SPEC §4); the limits themselves live in code.
CREATE TABLE rate_limits (
    key           text NOT NULL,
    window_start  timestamptz NOT NULL,
    count         int NOT NULL,
    PRIMARY KEY (key, window_start)
);

CREATE TABLE payment_audit_logs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at       timestamptz NOT NULL DEFAULT now(),
    operation         text NOT NULL,
    entity_type       text NOT NULL,
    entity_id         text,
    actor_profile_id  uuid,
    actor_role        text,
    request_id        text,
    ip                text,
    user_agent        text,
    old_values        jsonb,
    new_values        jsonb,
    success           boolean NOT NULL,
    error_code        text,
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX payment_audit_logs_entity_idx ON payment_audit_logs (entity_type, entity_id, occurred_at);

-- Append-only: rows can be inserted, never changed or removed.
CREATE FUNCTION payment_audit_logs_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payment_audit_logs is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER payment_audit_logs_no_update_delete
    BEFORE UPDATE OR DELETE ON payment_audit_logs
    FOR EACH ROW EXECUTE FUNCTION payment_audit_logs_reject_change();
CREATE TRIGGER payment_audit_logs_no_truncate
    BEFORE TRUNCATE ON payment_audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION payment_audit_logs_reject_change();

CREATE TABLE notifications (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    profile_id  uuid NOT NULL REFERENCES profiles(id),
    kind        text NOT NULL,
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    read_at     timestamptz
);
CREATE INDEX notifications_profile_idx ON notifications (profile_id, created_at DESC);

CREATE TABLE idempotency_keys (
    profile_id       uuid NOT NULL REFERENCES profiles(id),
    key              text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    route            text NOT NULL,
    request_hash     text NOT NULL,
    status           text NOT NULL CHECK (status IN ('in_progress', 'completed')),
    response_status  int,
    response_body    bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (profile_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

CREATE TRIGGER profiles_updated_at BEFORE UPDATE ON profiles FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER listings_updated_at BEFORE UPDATE ON listings FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER milestones_updated_at BEFORE UPDATE ON milestones FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER payments_updated_at BEFORE UPDATE ON payments FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER disputes_updated_at BEFORE UPDATE ON disputes FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER refunds_updated_at BEFORE UPDATE ON refunds FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER transfers_updated_at BEFORE UPDATE ON transfers FOR EACH ROW EXECUTE FUNCTION set_updated_at();
