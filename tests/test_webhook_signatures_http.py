"""Stripe-Signature outcomes at `POST /api/payments/webhook`, through nginx (issue 4, §8).

The verifier's vectors are unit-tested (Tests/PaymentsCoreTests/StripeTests.swift); here the
whole path is: nginx passes the exact bytes, the app verifies them with the platform secret
(`STRIPE_WEBHOOK_SECRETS`), answers `400 signature_invalid` naming the reason, and stores
nothing for a rejected event.

Run: .venv/bin/python -m pytest -q tests/test_webhook_signatures_http.py
"""

import hashlib
import hmac
import time
import uuid

import pytest

from harness.assertions import assert_envelope
from harness.stack import CONNECT_SECRET, PLATFORM_SECRET

WEBHOOK = "/api/payments/webhook"
TOLERANCE = 300  # WEBHOOK_TOLERANCE_SECONDS default


def event_body(event_id=None):
    """A Stripe event with CRLF line breaks and non-ASCII UTF-8: any re-encoding or newline
    normalisation on the way would break the signature."""
    event_id = event_id or f"evt_{uuid.uuid4().hex}"
    text = (
        "{\r\n"
        f'  "id": "{event_id}",\r\n'
        '  "object": "event",\r\n'
        '  "type": "customer.created",\r\n'
        f'  "created": {int(time.time())},\r\n'
        '  "livemode": false,\r\n'
        '  "data": {"object": {"id": "cus_1", "object": "customer",\r\n'
        '    "name": "Zoë Åström — 東京 ✓ \U0001F600", "description": "tab\there\\r\\n"}}\r\n'
        "}\r\n"
    )
    body = text.encode("utf-8")
    assert b"\r\n" in body and any(byte > 0x7F for byte in body)
    return event_id, body


def v1(body: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def deliver(stack, body: bytes, signature=None):
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return stack.post(WEBHOOK, data=body, headers=headers)


def stored(db, event_id):
    return db.execute("SELECT endpoint, type, payload, status FROM webhook_events WHERE id = %s",
                      (event_id,)).fetchone()


def test_valid_signature_over_exact_bytes_is_accepted_and_stored_verbatim(stack, db):
    event_id, body = event_body()
    response = deliver(stack, body, stack.sign_webhook(body))
    assert response.status_code == 200, response.text
    assert response.json()["received"] is True, response.text
    row = stored(db, event_id)
    assert row is not None, "the accepted event was not stored"
    endpoint, type_, payload, status = row
    assert (endpoint, type_) == ("platform", "customer.created")
    assert bytes(payload) == body  # byte for byte: CRLF and UTF-8 intact
    assert status == "ignored"  # SPEC §8: other types are stored and ignored

    # Stripe's redelivery of the same event: 200, a duplicate, nothing new.
    again = deliver(stack, body, stack.sign_webhook(body))
    assert again.status_code == 200, again.text
    assert again.json().get("duplicate") is True, again.text
    assert db.execute("SELECT count(*) FROM webhook_events WHERE id = %s", (event_id,)).fetchone()[0] == 1


def test_timestamp_just_inside_the_tolerance_is_accepted(stack, db):
    for offset in (-(TOLERANCE - 10), TOLERANCE - 10):
        event_id, body = event_body()
        response = deliver(stack, body, stack.sign_webhook(body, timestamp=int(time.time()) + offset))
        assert response.status_code == 200, (offset, response.text)
        assert stored(db, event_id) is not None


def lf_only(body: bytes) -> bytes:
    return body.replace(b"\r\n", b"\n")


def _bad_headers():
    """(case name, header builder(body, now) → header or None, reason)."""
    return [
        ("missing", lambda body, now: None, "missing"),
        ("empty", lambda body, now: "", "missing"),
        ("garbage", lambda body, now: "not a signature", "malformed"),
        ("no_timestamp", lambda body, now: f"v1={v1(body, PLATFORM_SECRET, now)}", "malformed"),
        ("non_numeric_timestamp", lambda body, now: f"t=abc,v1={v1(body, PLATFORM_SECRET, now)}", "malformed"),
        ("no_v1", lambda body, now: f"t={now}", "malformed"),
        ("only_v0", lambda body, now: f"t={now},v0={v1(body, PLATFORM_SECRET, now)}", "malformed"),
        ("wrong_secret", lambda body, now: f"t={now},v1={v1(body, 'whsec_not_ours_0123456789', now)}", "no_match"),
        ("connect_secret_on_platform", lambda body, now: f"t={now},v1={v1(body, CONNECT_SECRET, now)}", "no_match"),
        ("uppercase_hex", lambda body, now: f"t={now},v1={v1(body, PLATFORM_SECRET, now).upper()}", "no_match"),
        ("signed_other_timestamp", lambda body, now: f"t={now},v1={v1(body, PLATFORM_SECRET, now - 1)}", "no_match"),
        ("body_newlines_normalised",
         lambda body, now: f"t={now},v1={v1(lf_only(body), PLATFORM_SECRET, now)}", "no_match"),
        ("too_old", lambda body, now: f"t={now - TOLERANCE - 60},v1={v1(body, PLATFORM_SECRET, now - TOLERANCE - 60)}",
         "outside_tolerance"),
        ("too_new", lambda body, now: f"t={now + TOLERANCE + 60},v1={v1(body, PLATFORM_SECRET, now + TOLERANCE + 60)}",
         "outside_tolerance"),
    ]


@pytest.mark.parametrize("case,build,reason", _bad_headers(), ids=[c[0] for c in _bad_headers()])
def test_bad_signature_is_rejected_naming_the_reason_and_stores_nothing(stack, db, case, build, reason):
    event_id, body = event_body()
    header = build(body, int(time.time()))
    error = assert_envelope(deliver(stack, body, header), 400, "signature_invalid")
    assert reason in error["message"], (case, error)
    # The expected signature is never reported back.
    expected = v1(body, PLATFORM_SECRET, int(time.time()))
    assert expected not in error["message"]
    assert stored(db, event_id) is None, f"{case}: a rejected event was stored"


def test_rotation_two_v1_one_from_an_unknown_secret_still_passes(stack, db):
    for order in ("unknown_first", "unknown_last"):
        event_id, body = event_body()
        now = int(time.time())
        good, unknown = v1(body, PLATFORM_SECRET, now), v1(body, "whsec_rotated_out_or_unknown", now)
        signatures = [unknown, good] if order == "unknown_first" else [good, unknown]
        header = f"t={now}," + ",".join(f"v1={s}" for s in signatures) + f",v0={'0' * 64}"
        response = deliver(stack, body, header)
        assert response.status_code == 200, (order, response.text)
        assert stored(db, event_id) is not None, order


def test_tolerance_is_checked_after_the_signature(stack, db):
    """An old timestamp with a wrong signature is `no_match` (Stripe's order of checks)."""
    event_id, body = event_body()
    old = int(time.time()) - TOLERANCE - 60
    error = assert_envelope(deliver(stack, body, f"t={old},v1={v1(body, 'whsec_wrong', old)}"), 400,
                            "signature_invalid")
    assert "no_match" in error["message"], error
    assert stored(db, event_id) is None
