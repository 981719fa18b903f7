-- Connect onboarding `state` values are single-use at the refresh endpoint (issue 13): the first
-- refresh records the state's nonce, and a reused state is refused before any Stripe call.
-- expires_at is the state's own expiry; past it the state is refused anyway, so
-- `payments sweep` deletes the row (with an hour's margin for clocks that disagree).
-- (0008 and 0009 are taken by other changes.)
CREATE TABLE onboarding_state_nonces (
    nonce      text        PRIMARY KEY,
    profile_id uuid        NOT NULL,
    used_at    timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE INDEX onboarding_state_nonces_expires_at ON onboarding_state_nonces (expires_at);
