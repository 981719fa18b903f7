"""The Flask peer of `POST /api/payments/webhook` (issue 17, item 5): the same unit of work as the
app's webhook path, written the way a Flask team would write it, so that `make bench` can show
what users would otherwise run (bench/webhooks.py, docs/performance.md "The Flask peer").

One delivery of a signed `payment_intent.succeeded`:
  1. `stripe.Webhook.construct_event` checks `Stripe-Signature` over the raw body and parses it
     (400 on a bad signature or payload);
  2. ONE transaction on a connection from this worker's `psycopg_pool.ConnectionPool`, with the
     statements the app runs (bench/webhook_tx.sql, statements 1–4): the inbox row with the exact
     raw bytes (`ON CONFLICT (id) DO NOTHING`: an event already stored answers 200 as a duplicate
     and is not applied again, unless it is parked or failed); the payment row locked and
     `payment_complete_atomic` called in one statement; the audit row; the buyer's and the
     seller's notification; the processed mark.
Any other event type is stored and marked `ignored`; an intent we do not know is `parked`
(retried later by a job this peer does not have). Unlike the app, the peer does not look up
parked events after the commit (bench/webhook_tx.sql, statement 5): it parks nothing that waits
for a charge. That can only make the peer faster, so the ratio against it is conservative.

Run (scripts/bench.sh does it, behind the bench stack's nginx at /peer/flask/api/payments/webhook):
    DATABASE_URL=… STRIPE_WEBHOOK_SECRET=whsec_… PEER_BIND=unix:/path/peer.sock \
        gunicorn -c bench/peers/flask_webhook/gunicorn.conf.py --chdir bench/peers/flask_webhook app:app
Settings: DATABASE_URL, STRIPE_WEBHOOK_SECRET (required), PEER_POOL_SIZE (connections per worker, 2:
a sync worker runs one request at a time).
"""

import os

import stripe
from flask import Flask, jsonify, request
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from werkzeug.middleware.proxy_fix import ProxyFix

app = Flask(__name__)
# nginx sets X-Forwarded-For (and X-Request-Id); trust exactly one proxy hop.
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)

WEBHOOK_SECRET = os.environ["STRIPE_WEBHOOK_SECRET"]

# gunicorn imports this module in every worker (no --preload), so each worker has its own pool.
pool = ConnectionPool(
    os.environ["DATABASE_URL"],
    min_size=1,
    max_size=int(os.environ.get("PEER_POOL_SIZE", "2")),
    kwargs={"row_factory": dict_row, "application_name": "flask-peer"},  # the app's own is `payments`
    name="flask-peer",
    open=True,
)


@app.post("/api/payments/webhook")
def stripe_webhook():
    payload = request.get_data()
    try:
        event = stripe.Webhook.construct_event(payload, request.headers.get("Stripe-Signature", ""), WEBHOOK_SECRET)
    except ValueError:
        return jsonify(error={"code": "invalid_event", "message": "The payload is not a Stripe event."}), 400
    except stripe.SignatureVerificationError:
        return jsonify(error={"code": "signature_invalid", "message": "The Stripe-Signature header is invalid."}), 400

    with pool.connection() as conn:  # one transaction: committed when the block ends, rolled back on error
        inserted = conn.execute(
            """
            INSERT INTO webhook_events (id, endpoint, type, created, account, object_id, payload, status)
            VALUES (%s, 'platform', %s, %s, %s, %s, %s, 'received')
            ON CONFLICT (id) DO NOTHING
            """,
            (event.id, event.type, event.created, getattr(event, "account", None), event.data.object.id, payload),
        ).rowcount == 1
        if not inserted:
            stored = conn.execute("SELECT status FROM webhook_events WHERE id = %s FOR UPDATE", (event.id,)).fetchone()
            if stored["status"] not in ("parked", "failed"):
                return jsonify(received=True, duplicate=True)

        if event.type == "payment_intent.succeeded":
            status = complete_payment(conn, event)
        else:
            status = "ignored"

        if status == "parked":
            conn.execute(
                """
                UPDATE webhook_events SET status = 'parked', attempts = attempts + 1, last_error = NULL,
                       next_attempt_at = now() + least(interval '1 minute' * power(2, attempts), interval '6 hours')
                WHERE id = %s
                """,
                (event.id,),
            )
            return jsonify(received=True, status="parked")
        conn.execute(
            """
            UPDATE webhook_events SET status = %s, attempts = attempts + 1, processed_at = now(),
                   next_attempt_at = NULL, last_error = NULL
            WHERE id = %s
            """,
            (status, event.id),
        )
    return jsonify(received=True) if status == "processed" else jsonify(received=True, status=status)


def complete_payment(conn, event):
    """The guarded transition: lock the payment, then `payment_complete_atomic` (which also marks
    the listing sold), in one statement; on a real change, the audit row and the notifications."""
    intent = event.data.object
    row = conn.execute(
        """
        SELECT c.id, c.buyer_id, c.seller_id, c.status, c.amount_cents, c.amount_received, c.amount_refunded,
               b.status AS old_status
        FROM (SELECT stripe_payment_intent_id AS intent, status FROM payments
              WHERE stripe_payment_intent_id = %s FOR UPDATE) b
        LEFT JOIN LATERAL payment_complete_atomic(b.intent, %s, %s, %s) c ON true
        """,
        (intent.id, event.created, getattr(intent, "amount_received", None) or intent.amount,
         getattr(intent, "latest_charge", None)),
    ).fetchone()
    if row is None:
        return "parked"  # not our payment yet: the intent may still be being created
    if row["id"] is None:
        return "processed"  # already succeeded (or in a state it cannot leave this way): nothing to do

    conn.execute(
        """
        INSERT INTO payment_audit_logs (operation, entity_type, entity_id, actor_profile_id, actor_role, request_id,
                                        ip, user_agent, old_values, new_values, success, error_code, metadata)
        VALUES ('payment.succeeded', 'payment', %s, NULL, 'stripe', %s, %s, %s, %s, %s, true, NULL, %s)
        """,
        (
            str(row["id"]),
            request.headers.get("X-Request-Id"),
            request.remote_addr,
            request.user_agent.string,
            Jsonb({"status": row["old_status"]}),
            Jsonb({"status": row["status"], "amount_received": row["amount_received"],
                   "amount_refunded": row["amount_refunded"]}),
            Jsonb({"event_id": event.id, "event_type": event.type}),
        ),
    )
    notification = Jsonb({"payment_id": str(row["id"]), "status": row["status"], "amount_cents": row["amount_cents"]})
    conn.execute(
        """
        INSERT INTO notifications (profile_id, kind, payload)
        VALUES (%s, 'payment_succeeded', %s), (%s, 'payment_succeeded', %s)
        """,
        (row["buyer_id"], notification, row["seller_id"], notification),
    )
    return "processed"
