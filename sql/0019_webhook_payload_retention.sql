-- 0019 (issue 17): a retention policy for stored webhook payloads. After
-- WEBHOOK_PAYLOAD_RETENTION_DAYS, `payments sweep` drops the raw bytes of processed and ignored
-- events, keeping the row (id, type, status, times: the dedupe key and the history) and the
-- SHA-256 of the bytes that were dropped. Events still waiting (received, parked, failed, dead)
-- keep their bytes: they may be applied again.
ALTER TABLE webhook_events
    ALTER COLUMN payload DROP NOT NULL,
    ADD COLUMN payload_sha256 bytea,
    ADD CONSTRAINT webhook_events_payload_or_hash CHECK (payload IS NOT NULL OR payload_sha256 IS NOT NULL);

-- How far the policy has gone, in (received_at, id) order: each run continues after it, so a
-- run reads only rows it has not seen (never the millions it already emptied).
CREATE TABLE webhook_payload_retention (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    through_at      timestamptz NOT NULL DEFAULT '-infinity',
    through_id      text NOT NULL DEFAULT ''
);
INSERT INTO webhook_payload_retention DEFAULT VALUES;

-- One batch: the next `p_batch` rows older than `p_days` days after the watermark. `dropped`:
-- the payloads it emptied; `more`: the batch was full, so there may be more to read. Rows still
-- waiting when the mark passes them keep their bytes for good. Concurrent sweepers queue on the
-- watermark's row.
CREATE FUNCTION webhook_drop_old_payloads(p_days integer, p_batch integer, OUT dropped integer, OUT more boolean)
LANGUAGE plpgsql AS $$
DECLARE
    mark webhook_payload_retention;
    last_at timestamptz;
    last_id text;
    seen integer;
BEGIN
    SELECT * INTO mark FROM webhook_payload_retention FOR UPDATE;
    WITH batch AS (
        SELECT id, received_at FROM webhook_events
        WHERE (received_at, id) > (mark.through_at, mark.through_id)
          AND received_at < now() - make_interval(days => p_days)
        ORDER BY received_at, id
        LIMIT p_batch
    ), emptied AS (
        UPDATE webhook_events e SET payload_sha256 = sha256(e.payload), payload = NULL
        FROM batch b
        WHERE e.id = b.id AND e.payload IS NOT NULL AND e.status IN ('processed', 'ignored')
        RETURNING e.id
    )
    SELECT (SELECT count(*) FROM emptied), (SELECT count(*) FROM batch),
           (SELECT received_at FROM batch ORDER BY received_at DESC, id DESC LIMIT 1),
           (SELECT id FROM batch ORDER BY received_at DESC, id DESC LIMIT 1)
    INTO dropped, seen, last_at, last_id;
    more := seen = p_batch;
    IF last_at IS NOT NULL THEN
        UPDATE webhook_payload_retention SET through_at = last_at, through_id = last_id;
    END IF;
END $$;
