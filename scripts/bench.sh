#!/usr/bin/env bash
# bench.sh: start a separate, fresh stack (RUN_DIR .run/bench, ports 9443/9080) whose nginx
# rate limits never bind, measure it with bench/measure.py, then the webhook inbox with
# bench/webhooks.py (pgbench ceiling vs signed events through nginx), then the purchase family
# with bench/purchases.py (create-intent against the fake Stripe, GET a payment), then the
# slow-Stripe scenario with bench/slow_stripe.py (the fake at 400 ms per intent: create-intent
# against the fake alone, health and webhook latency meanwhile, the app's PostgreSQL
# connections), and stop it. The app runs with its default settings (WORKERS, STRIPE_WORKERS,
# DATABASE_POOL_SIZE, …; any of them set in the environment overrides it, through run.sh).
# Exits 1 if any measurement misses its acceptance check (all of them always run).
set -euo pipefail
source "$(dirname "$0")/common.sh"

export RUN_DIR=$REPO/.run/bench
export HTTPS_PORT=${BENCH_HTTPS_PORT:-9443} HTTP_PORT=${BENCH_HTTP_PORT:-9080}
export API_RATE=100000r/s API_BURST=100000   # limit_req stays in the path, but never rejects
export WEBHOOK_RATE=100000r/s WEBHOOK_BURST=100000
export STRIPE_FAKE_PORT=${BENCH_STRIPE_PORT:-12112}  # beside a `make run` stack's fake
export STRIPE_FAKE_STATE_FILE=""  # the fake would rewrite its whole state file on every call
# The purchase benchmarks send many create-intents per buyer from one address: the app's
# per-buyer and per-address intent limits are switched off (nginx's limit_req stays, see above).
export RATE_LIMITS=intent=100000000/60,intent-ip=100000000/60
"$REPO/scripts/stop.sh"              # a stack left over from an interrupted run
rm -rf "$RUN_DIR"                     # nothing in it is worth keeping: start clean
trap '"$REPO/scripts/stop.sh"' EXIT
"$REPO/scripts/run.sh" >/dev/null
status=0
python3 "$REPO/bench/measure.py" "https://127.0.0.1:$HTTPS_PORT" || status=1
PG_BIN=$PG_BIN python3 "$REPO/bench/webhooks.py" "https://127.0.0.1:$HTTPS_PORT" "$RUN_DIR" || status=1
PG_BIN=$PG_BIN python3 "$REPO/bench/purchases.py" "https://127.0.0.1:$HTTPS_PORT" "$RUN_DIR" || status=1
PG_BIN=$PG_BIN python3 "$REPO/bench/slow_stripe.py" "https://127.0.0.1:$HTTPS_PORT" "$RUN_DIR" || status=1
exit $status
