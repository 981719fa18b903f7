#!/usr/bin/env bash
# bench.sh: start a separate, fresh stack (RUN_DIR .run/bench, ports 9443/9080) whose nginx
# rate limits never bind, measure it with bench/measure.py, then the webhook inbox with
# bench/webhooks.py (pgbench ceiling and minimal reference vs signed events through nginx, and the
# Flask peer of bench/peers/ behind the same nginx: gunicorn, started here from .venv and stopped
# on exit, on the app's DATABASE_URL and webhook secret), then the purchase family
# with bench/purchases.py (create-intent against the fake Stripe, GET a payment), then the
# slow-Stripe scenario with bench/slow_stripe.py (the fake at 400 ms per intent: create-intent
# against the fake alone, health and webhook latency meanwhile, the app's PostgreSQL
# connections), and stop it. The app runs with its default settings (WORKERS, STRIPE_WORKERS,
# DATABASE_POOL_SIZE, …; any of them set in the environment overrides it, through run.sh).
# Exits 1 if any measurement misses its acceptance check (all of them always run).
# PEER_WORKERS: the Flask peer's gunicorn workers (default 2 × cores + 1, its gunicorn.conf.py).
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
# The Flask peer (bench/peers/flask_webhook): nginx proxies /peer/flask/api/payments/webhook to it.
peer_socket=$RUN_DIR/peer-flask.sock
export NGINX_BENCH_PEER_FLASK=$peer_socket BENCH_PEER_FLASK_PATH=/peer/flask/api/payments/webhook
stop_peer() { stop_pid "$RUN_DIR/peer-flask.pid" gunicorn TERM 15; }
"$REPO/scripts/venv.sh"               # Flask, gunicorn, stripe, psycopg (bench/peers/requirements.txt)
"$REPO/scripts/stop.sh"              # a stack left over from an interrupted run
stop_peer
rm -rf "$RUN_DIR"                     # nothing in it is worth keeping: start clean
trap 'stop_peer; "$REPO/scripts/stop.sh"' EXIT
"$REPO/scripts/run.sh" >/dev/null
# Only what the peer needs from the app's environment: its database URL and first webhook secret.
(set -a && source "$RUN_DIR/env" && set +a &&
    exec setsid env -i PATH="$PATH" DATABASE_URL="$DATABASE_URL" STRIPE_WEBHOOK_SECRET="${STRIPE_WEBHOOK_SECRETS%%,*}" \
        PEER_BIND="unix:$peer_socket" ${PEER_WORKERS:+PEER_WORKERS="$PEER_WORKERS"} \
        "$REPO/.venv/bin/gunicorn" -c "$REPO/bench/peers/flask_webhook/gunicorn.conf.py" \
        --chdir "$REPO/bench/peers/flask_webhook" app:app) >>"$RUN_DIR/peer-flask.log" 2>&1 </dev/null &
echo $! >"$RUN_DIR/peer-flask.pid"
deadline=$((SECONDS + 20))
until [ -S "$peer_socket" ]; do
    # Alive, not yet "gunicorn": until its exec, the process is this script's subshell.
    kill -0 "$(cat "$RUN_DIR/peer-flask.pid")" 2>/dev/null || { tail -n 20 "$RUN_DIR/peer-flask.log" >&2; die "the Flask peer exited"; }
    [ "$SECONDS" -lt "$deadline" ] || die "the Flask peer did not open $peer_socket in 20 s"
    sleep 0.1
done
log "started the Flask peer (gunicorn pid $(cat "$RUN_DIR/peer-flask.pid")), log in $RUN_DIR/peer-flask.log"
status=0
python3 "$REPO/bench/measure.py" "https://127.0.0.1:$HTTPS_PORT" || status=1
PG_BIN=$PG_BIN python3 "$REPO/bench/webhooks.py" "https://127.0.0.1:$HTTPS_PORT" "$RUN_DIR" || status=1
PG_BIN=$PG_BIN python3 "$REPO/bench/purchases.py" "https://127.0.0.1:$HTTPS_PORT" "$RUN_DIR" || status=1
PG_BIN=$PG_BIN python3 "$REPO/bench/slow_stripe.py" "https://127.0.0.1:$HTTPS_PORT" "$RUN_DIR" || status=1
exit $status
