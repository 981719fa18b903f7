-- Hold expiry (HOLD_EXPIRY_ACTION): when buyer and seller were warned that an uncaptured
-- authorisation is about to be cancelled or captured, and when admins were alerted that an open
-- dispute blocks its automatic capture. Each is set once by a guarded update, so sweepers
-- running at the same time notify once.
ALTER TABLE payments
    ADD COLUMN hold_warned_at  timestamptz,
    ADD COLUMN hold_blocked_at timestamptz;
