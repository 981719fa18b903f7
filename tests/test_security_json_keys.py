"""Review of the security round: JSON object keys are Swift Strings, hashed (and compared) after
Unicode canonical normalisation, whose reordering of combining marks is quadratic in the length
of a run of them. A 28 KB key of alternating U+0301/U+0316 costs ~0.25 s of CPU against ~0.04 s
for a plain body of the same size, and 4× per doubling (at nginx's 64 KB: ~1.3 s a request, for
any signed-in caller). docs/security.md: "Every decode of bytes from outside is linear"."""
import time
import uuid
import json

from harness.api import make_profile
from test_milestones import fresh_loopback_windows  # noqa: F401


def timed_post(stack, buyer, body: bytes):
    best = None
    for _ in range(3):
        started = time.monotonic()
        r = stack.post(f"/api/payments/{uuid.uuid4()}/disputes", data=body,
                       headers={**buyer["headers"], "Content-Type": "application/json"})
        elapsed = time.monotonic() - started
        best = elapsed if best is None else min(best, elapsed)
    return r, best


def test_review_json_keys_with_combining_marks_cost_quadratic_time(stack, db):
    buyer = make_profile(db, "buyer")
    hostile = json.dumps({"a" + "\u0301\u0316" * 7000: 1, "reason": "x"}, ensure_ascii=False).encode()
    plain = json.dumps({"a" + "\u0301" * 14000: 1, "reason": "x"}, ensure_ascii=False).encode()
    assert len(hostile) == len(plain) < 32768
    r1, hostile_s = timed_post(stack, buyer, hostile)
    r2, plain_s = timed_post(stack, buyer, plain)
    # Both keys are longer than JSONParser.maximumKeyBytes: refused before they are hashed.
    assert r1.status_code == r2.status_code == 400, (r1.text, r2.text)
    assert hostile_s < 3 * plain_s + 0.02, (hostile_s, plain_s)
