"""Issue 17, item 4 — the retention policy for stored webhook payloads: after
WEBHOOK_PAYLOAD_RETENTION_DAYS the sweep drops the raw bytes of processed and ignored events,
keeping the row (dedupe still works) and the bytes' SHA-256; events still waiting keep theirs;
an event without its bytes cannot be replayed (409 payload_expired), and nothing else changes."""

import hashlib
import json
import time

from harness.assertions import assert_envelope
from test_milestones import admin_client, fresh_loopback_windows  # noqa: F401  (autouse fixture)
from test_notifications import sweep
from test_webhooks_inbox import cli, deliver, encode, event, new_payment, succeeded, uid

REPLAY = "/api/admin/webhook-events/{}/replay"


def dropped_by_sweep(stack, **env):
    """One sweep; how many payloads its retention task dropped."""
    result = sweep(stack, **env)
    line = next(l for l in result.stdout.splitlines() if l.startswith("sweep: drop_old_webhook_payloads: "))
    return int(line.rsplit(": ", 1)[1])


def stored(db, event_id):
    row = db.execute("SELECT status, attempts, payload, payload_sha256 FROM webhook_events WHERE id = %s",
                     (event_id,)).fetchone()
    return {"status": row[0], "attempts": row[1], "payload": bytes(row[2]) if row[2] is not None else None,
            "sha256": bytes(row[3]) if row[3] is not None else None}


def age(db, days, *event_ids):
    db.execute("UPDATE webhook_events SET received_at = now() - make_interval(days => %s) WHERE id = ANY(%s)",
               (days, list(event_ids)))


def test_old_processed_payloads_are_dropped_keeping_the_row_and_hash(stack, db):
    payment = new_payment(db)
    processed_body = encode(succeeded(payment, int(time.time())))
    ignored_type = "test.retention_" + "".join(chr(ord("a") + int(c, 16)) for c in uid()[:12])  # its own type
    ignored_body = encode(event(ignored_type, {"id": f"cus_{uid()}", "object": "customer"}))
    parked_body = encode(succeeded({**new_payment(db), "intent": f"pi_{uid()}"}, int(time.time())))
    recent_body = encode(event("customer.created", {"id": f"cus_{uid()}", "object": "customer"}))
    ids = {}
    for name, body in (("processed", processed_body), ("ignored", ignored_body), ("parked", parked_body),
                       ("recent", recent_body)):
        assert deliver(stack, body).status_code == 200
        ids[name] = json.loads(body)["id"]
    assert [stored(db, ids[n])["status"] for n in ("processed", "ignored", "parked")] == [
        "processed", "ignored", "parked"]
    age(db, 95, ids["processed"], ids["ignored"], ids["parked"])
    age(db, 30, ids["recent"])

    # Switched off: nothing is dropped.
    assert dropped_by_sweep(stack, WEBHOOK_PAYLOAD_RETENTION_DAYS="0") == 0
    assert stored(db, ids["processed"])["payload"] == processed_body

    assert dropped_by_sweep(stack, WEBHOOK_PAYLOAD_RETENTION_DAYS="90") >= 2
    for name, body in (("processed", processed_body), ("ignored", ignored_body)):
        row = stored(db, ids[name])
        assert (row["payload"], row["sha256"]) == (None, hashlib.sha256(body).digest()), (name, row)
        assert row["status"] == name and row["attempts"] == 1
    # Still waiting, or young: kept whole.
    assert stored(db, ids["parked"])["payload"] == parked_body
    assert stored(db, ids["recent"])["payload"] == recent_body
    assert dropped_by_sweep(stack, WEBHOOK_PAYLOAD_RETENTION_DAYS="90") == 0  # nothing left to drop

    # The row still deduplicates Stripe's retries of the event.
    again = deliver(stack, processed_body)
    assert again.json() == {"received": True, "duplicate": True}, again.text

    # An admin sees the row without a size; a replay is refused and changes nothing.
    admin = admin_client(stack, db)
    listed = admin.get(f"/api/admin/webhook-events?type={ignored_type}").json()["data"]
    assert [(e["id"], e["payload_bytes"]) for e in listed] == [(ids["ignored"], None)], listed
    before = stored(db, ids["processed"])
    assert_envelope(admin.post(REPLAY.format(ids["processed"]), json={}), 409, "payload_expired")
    assert stored(db, ids["processed"]) == before
    replayed = cli(stack, "events", "replay", "--id", ids["processed"], check=False)
    assert replayed.returncode == 1 and "payload dropped" in replayed.stdout, replayed.stdout
    assert stored(db, ids["processed"]) == before
