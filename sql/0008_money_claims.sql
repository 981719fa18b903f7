-- 0008: claims that make "no dispute is open" and "this action may move the money" one
-- decision under the payment's row lock (issue 13).
--
-- An action that moves a payment's money (capture, cancel, milestone release) first claims the
-- payment: one UPDATE that checks its status and that no dispute is open, and records the
-- action, its owner (one request) and a lease, before any Stripe call. Opening a dispute locks
-- the same row and is refused while a claim is live, so a dispute either comes first (and the
-- action is refused) or after (and the money has moved). A claim ends when its owner settles
-- it, or at its lease's end (an owner whose process died, or whose Stripe call's outcome is
-- unknown). The same action may join a live claim without owning it (a double click, a retry
-- under the same Stripe key); another action may not until the claim ends.
ALTER TABLE payments
    ADD COLUMN action_claim            text CHECK (action_claim IN ('capture', 'cancel', 'release')),
    ADD COLUMN action_claim_owner      text,
    ADD COLUMN action_claim_expires_at timestamptz;

-- The one list of dispute statuses that block moving a payment's money: an open platform
-- dispute, or a chargeback Stripe has not closed. `p_except_platform`: the caller is resolving
-- the payment's platform dispute, which then does not count (a chargeback still does).
CREATE FUNCTION payment_has_open_dispute(p_id uuid, p_except_platform boolean DEFAULT false)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM disputes
                   WHERE payment_id = p_id
                     AND status IN ('open', 'warning_needs_response', 'warning_under_review', 'needs_response',
                                    'under_review')
                     AND NOT (p_except_platform AND kind = 'platform'))
$$;

-- `is_disputed` is on the locked row, so it is re-checked when the UPDATE waited for a
-- dispute's transaction; the EXISTS covers disputes committed before the statement began.
CREATE FUNCTION payment_claim_action(p_id uuid, p_action text, p_owner text, p_allowed text[],
                                     p_resolving_dispute boolean, p_lease_seconds int)
RETURNS SETOF payments LANGUAGE sql AS $$
    UPDATE payments
       SET action_claim = p_action,
           action_claim_owner = CASE WHEN action_claim = p_action AND action_claim_expires_at > now()
                                     THEN action_claim_owner ELSE p_owner END,
           action_claim_expires_at = CASE WHEN action_claim = p_action AND action_claim_expires_at > now()
                                          THEN action_claim_expires_at
                                          ELSE now() + make_interval(secs => p_lease_seconds) END
     WHERE id = p_id
       AND status = ANY(p_allowed)
       AND (p_resolving_dispute OR NOT is_disputed)
       AND NOT payment_has_open_dispute(p_id, p_resolving_dispute)
       AND (action_claim IS NULL OR action_claim = p_action OR action_claim_expires_at <= now())
    RETURNING *
$$;

CREATE FUNCTION payment_settle_action(p_id uuid, p_owner text) RETURNS void LANGUAGE sql AS $$
    UPDATE payments SET action_claim = NULL, action_claim_owner = NULL, action_claim_expires_at = NULL
     WHERE id = p_id AND action_claim_owner = p_owner
$$;

-- An admin's resolution claims its platform dispute (which stays open, so it keeps blocking the
-- parties' own captures and releases) before any Stripe call: a second admin's resolution is
-- refused while the claim is live, and once it has lapsed only the same outcome may resume it
-- (under the same Stripe keys), so two outcomes can never both move money.
ALTER TABLE disputes
    ADD COLUMN resolving_outcome    text CHECK (resolving_outcome IN ('refund_buyer', 'release_seller', 'dismiss')),
    ADD COLUMN resolving_expires_at timestamptz;

-- Operators can shut a profile out without deleting it; the auth resolver refuses its tokens.
ALTER TABLE profiles ADD COLUMN disabled_at timestamptz;
