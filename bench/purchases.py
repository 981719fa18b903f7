"""Measure the purchase family through nginx with wrk: `POST /api/payments/create-intent`
(each request reserves its own listing and creates a PaymentIntent at the fake Stripe) and
`GET /api/payments/{id}`, interleaved, ROUNDS times each; print medians as a markdown table.
Exits 1 on any non-2xx response or socket error.

Usage: python3 bench/purchases.py BASE_URL RUN_DIR   (scripts/bench.sh starts the stack; the
stack's RATE_LIMITS must leave the intent limits out of the way)
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from measure import ROUNDS, WRK, wrk  # noqa: E402
from webhooks import Database, machine, read_env  # noqa: E402

LISTINGS = int(os.environ.get("BENCH_LISTINGS", 40000))
LISTING_ID = "00000000-0000-4000-9000-{:012d}"

# Each wrk thread takes listing numbers thread, thread + threads, …, offset per run, so every
# request reserves a listing nobody else has touched. Nothing is loaded per thread.
CREATE_SCRIPT = """
local counter, step, offset = 0, 1, 0
function setup(thread)
  thread:set("id", __THREAD__)
  __THREAD__ = __THREAD__ + 1
end
function init(args)
  step = tonumber(args[1]); offset = tonumber(args[2]) + id
end
function request()
  local n = offset + counter * step
  counter = counter + 1
  local body = string.format('{"listing_id":"00000000-0000-4000-9000-%012d"}', n)
  return wrk.format("POST", "/api/payments/create-intent",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer __TOKEN__"}, body)
end
"""


def token(secret, subject):
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    now = int(time.time())
    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + \
        b64(json.dumps({"sub": subject, "iat": now, "exp": now + 7200}).encode())
    return signing_input + "." + b64(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())


def onboarded_account(env):
    """An Express account at the fake Stripe whose onboarding is complete."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    base = env["STRIPE_API_BASE"]
    request = urllib.request.Request(base + "/v1/accounts", method="POST",
                                     data=urllib.parse.urlencode({"type": "express", "country": "US"}).encode(),
                                     headers={"Authorization": "Bearer " + env["STRIPE_SECRET_KEY"]})
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        account = json.load(response)["id"]
    done = urllib.request.Request(f"{base}/_control/accounts/{account}/complete_onboarding", method="POST", data=b"")
    urllib.request.urlopen(done, context=context, timeout=30).close()
    return account


def setup(db, account, tag):
    """A seller able to take charges, a buyer, and LISTINGS fresh listings with known ids."""
    db.run(f"""
        INSERT INTO profiles (user_id, roles, stripe_account_id, charges_enabled, payouts_enabled, details_submitted)
        VALUES ('bench-seller-{tag}', '{{seller}}', '{account}', true, true, true),
               ('bench-buyer-{tag}', '{{buyer}}', NULL, false, false, false);
        INSERT INTO listings (id, seller_id, title, price_cents, currency)
        SELECT format('00000000-0000-4000-9000-%s', lpad(i::text, 12, '0'))::uuid,
               (SELECT id FROM profiles WHERE user_id = 'bench-seller-{tag}'), 'Bench listing', 1000 + i % 500, 'usd'
        FROM generate_series(0, {LISTINGS - 1}) AS i;
        ANALYZE listings; ANALYZE payments;
    """)


def run_create(base, script, offset):
    """One wrk run of create-intent starting at listing number `offset`; returns its result."""
    threads = int(WRK[1][2:])
    args = [*WRK, "-s", str(script), base + "/api/payments/create-intent", "--", str(threads), str(offset)]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def main(base, run_dir):
    env = read_env(run_dir)
    db = Database(env["DATABASE_URL"])
    tag = time.strftime("%H%M%S")
    setup(db, onboarded_account(env), tag)
    bearer = token(env["AUTH_JWT_SECRET"], f"bench-buyer-{tag}")
    summary = (Path(__file__).with_name("summary.lua")).read_text()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write("__THREAD__ = 0\n" + CREATE_SCRIPT.replace("__TOKEN__", bearer) + summary)
        script = Path(handle.name)

    offset = 0
    runs = {"POST /api/payments/create-intent": [], "GET /api/payments/{id}": []}
    try:
        for round_number in range(1, ROUNDS + 1):
            created = run_create(base, script, offset)
            offset += created["requests"] + 1000
            payment = db.value(f"SELECT p.id FROM payments p JOIN profiles b ON b.id = p.buyer_id "
                               f"WHERE b.user_id = 'bench-buyer-{tag}' ORDER BY p.created_at DESC LIMIT 1")
            read = wrk(f"{base}/api/payments/{payment}", headers=[f"Authorization: Bearer {bearer}"])
            for name, result in zip(runs, (created, read)):
                runs[name].append(result)
                print(f"round {round_number} {name:34} {result['rps']:8.0f} req/s  p50 {result['p50_us'] / 1000:.2f} ms  "
                      f"p99 {result['p99_us'] / 1000:.2f} ms  errors {result['status_errors']}/{result['socket_errors']}",
                      file=sys.stderr, flush=True)
            if offset + 10 * created["requests"] > LISTINGS:
                break
    finally:
        script.unlink()

    made = int(db.value(f"SELECT count(*) FROM payments p JOIN profiles b ON b.id = p.buyer_id "
                        f"WHERE b.user_id = 'bench-buyer-{tag}' AND p.stripe_payment_intent_id IS NOT NULL"))
    print(f"\n{datetime.date.today().isoformat()} — {machine()}; `{' '.join(WRK)}` over HTTPS through nginx, "
          f"{len(runs['GET /api/payments/{id}'])} interleaved runs per target, medians; "
          f"WORKERS={os.environ.get('WORKERS', 'default')}; create-intent calls the fake Stripe over HTTPS\n")
    print("| target | req/s | p50 ms | p99 ms | non-2xx | socket errors |")
    print("|---|---:|---:|---:|---:|---:|")
    failures = []
    for name, results in runs.items():
        rps = statistics.median(r["rps"] for r in results)
        p50 = statistics.median(r["p50_us"] for r in results) / 1000
        p99 = statistics.median(r["p99_us"] for r in results) / 1000
        bad = sum(r["status_errors"] for r in results)
        socket_errors = sum(r["socket_errors"] for r in results)
        print(f"| {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {bad} | {socket_errors} |")
        if bad or socket_errors:
            failures.append(f"{name}: {bad} non-2xx responses, {socket_errors} socket errors")
    created_total = sum(r["requests"] for r in runs["POST /api/payments/create-intent"])
    print(f"\nDatabase check: {made} payments with an intent for {created_total} create-intent requests "
          f"(requests still in flight when wrk stopped may complete after it counted).")
    if made < created_total - 64:
        failures.append(f"only {made} payments for {created_total} create-intent requests")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
