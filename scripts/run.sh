#!/usr/bin/env bash
# run.sh: start the local stack in the background — PostgreSQL (RUN_DIR/pg), migrations,
# `payments serve`, nginx on https://127.0.0.1:HTTPS_PORT — and return. Components that are
# already running are reported and left alone, so running it twice starts nothing twice.
# Expects the binary to be built (make run does that). Stop it all with scripts/stop.sh.
# Settings: RUN_DIR (.run), HTTPS_PORT (8443), HTTP_PORT (8080), APP_PROCESSES (1: how many
# `payments serve` processes sit behind nginx's upstreams), WORKERS, STRIPE_WORKERS, CHARGE_MODEL,
# DESTINATION_ON_BEHALF_OF, DIRECT_REFUND_APPLICATION_FEE, PAYOUT_DELAY_DAYS,
# DATABASE_POOL_SIZE, DATABASE_POOL_TIMEOUT_MS, LANE_QUEUE_TIMEOUT_MS, STRIPE_DEADLINE_SECONDS, RATE_LIMITS,
# STRIPE_FAKE_PORT (12111), STRIPE_FAKE_STATE_FILE (RUN_DIR/stripe-state.json; empty: none),
# and the rate settings of render-nginx.sh. Without a real STRIPE_SECRET_KEY in the
# environment, the project's fake Stripe is started too (HTTPS, state kept in RUN_DIR).
set -euo pipefail
source "$(dirname "$0")/common.sh"

# A live key never reaches this stack: it seeds demo data, mints tokens and may start the fake
# Stripe. Checked before anything is created or started.
case ${STRIPE_SECRET_KEY:-} in
    sk_live_* | rk_live_*)
        die "STRIPE_SECRET_KEY is a live key: make run is a local development stack (demo data, the fake Stripe); unset it or use a test key (sk_test_…)" ;;
esac

export HTTPS_PORT=${HTTPS_PORT:-8443} HTTP_PORT=${HTTP_PORT:-8080}
base_url=https://127.0.0.1:$HTTPS_PORT
[ -x "$PAYMENTS_BIN" ] || die "$PAYMENTS_BIN is missing: run 'make build' first"
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
make_traversable "$RUN_DIR"

# Local secrets, generated once and kept: obviously fake, test-mode values.
secrets=$RUN_DIR/secrets.env
if [ ! -s "$secrets" ]; then
    (umask 077 && cat >"$secrets" <<SECRETS
AUTH_JWT_SECRET='$(openssl rand -hex 32)'
STRIPE_SECRET_KEY='sk_test_local_$(openssl rand -hex 12)'
STRIPE_WEBHOOK_SECRETS='whsec_test_$(openssl rand -hex 16)'
STRIPE_CONNECT_WEBHOOK_SECRETS='whsec_test_$(openssl rand -hex 16)'
SECRETS
    )
fi

# Stripe: a real key from the environment is used as is; otherwise the local fake.
"$REPO/scripts/make-cert.sh" "$RUN_DIR/tls"
stripe_env=""
# What the buyer page's Content-Security-Policy lets it reach to confirm a card (render-nginx.sh).
pages_csp=()
if [ -z "${STRIPE_SECRET_KEY:-}" ]; then
    fake_port=${STRIPE_FAKE_PORT:-12111}
    pages_csp=(PAGES_FAKE_STRIPE_ORIGIN="https://127.0.0.1:$fake_port")
    # Its state survives restarts of `make run` unless STRIPE_FAKE_STATE_FILE is set empty.
    fake_state=${STRIPE_FAKE_STATE_FILE-$RUN_DIR/stripe-state.json}
    # The fake takes any pk_test_ key: the buyer page confirms cards at it with this one.
    stripe_env="STRIPE_API_BASE='https://127.0.0.1:$fake_port'
STRIPE_CA_BUNDLE='$RUN_DIR/tls/cert.pem'
STRIPE_PUBLISHABLE_KEY='pk_test_local_fake_stripe'"
    fake_pid=$(pid_of "$RUN_DIR/stripe.pid" fake_stripe)
    if [ -n "$fake_pid" ]; then
        log "fake Stripe is already running (pid $fake_pid)"
    else
        set -a && source "$secrets" && set +a
        (cd "$REPO" && exec setsid python3 -m tests.fake_stripe --port "$fake_port" \
            --tls-cert "$RUN_DIR/tls/cert.pem" --tls-key "$RUN_DIR/tls/key.pem" \
            --platform-webhook-url "$base_url/api/payments/webhook" \
            --connect-webhook-url "$base_url/api/payments/webhook/connect" \
            --platform-secret "$STRIPE_WEBHOOK_SECRETS" --connect-secret "$STRIPE_CONNECT_WEBHOOK_SECRETS" \
            --public-url "https://127.0.0.1:$fake_port" ${fake_state:+--state-file "$fake_state"}) \
            >>"$RUN_DIR/stripe.log" 2>&1 </dev/null &
        echo $! >"$RUN_DIR/stripe.pid"
        log "started the fake Stripe (pid $(cat "$RUN_DIR/stripe.pid")) on https://127.0.0.1:$fake_port, log in $RUN_DIR/stripe.log"
    fi
else
    pages_csp=(PAGES_STRIPE_JS=1)
    stripe_env="STRIPE_SECRET_KEY='$STRIPE_SECRET_KEY'
STRIPE_API_BASE='${STRIPE_API_BASE:-https://api.stripe.com}'
${STRIPE_PUBLISHABLE_KEY:+STRIPE_PUBLISHABLE_KEY='$STRIPE_PUBLISHABLE_KEY'}"
fi

"$REPO/scripts/pg-cluster.sh" init "$RUN_DIR/pg"
"$REPO/scripts/pg-cluster.sh" start "$RUN_DIR/pg"
"$REPO/scripts/pg-cluster.sh" createdb "$RUN_DIR/pg" payments

# The app serves as `payments_app` (DML only); migrations run as the owner `payments` and grant
# `payments_app` its privileges (docs/security.md, "Database roles").
owner_url=$("$REPO/scripts/pg-cluster.sh" url "$RUN_DIR/pg" payments)
# The sockets are 0660: when we run as root nginx's workers drop to nobody:nogroup
# (nginx.conf), so the sockets belong to that group; otherwise the workers run as us.
socket_group=""
[ "$(id -u)" = 0 ] && socket_group=nogroup

(umask 077 && cat >"$RUN_DIR/env" <<ENV
# Written by scripts/run.sh: the environment of the local \`payments serve\`. Local values only.
DATABASE_URL='$("$REPO/scripts/pg-cluster.sh" url "$RUN_DIR/pg" payments payments_app)'
FCGI_SOCKET_MODE='0660'
${socket_group:+FCGI_SOCKET_GROUP='$socket_group'}
MIGRATIONS_DIR='$REPO/sql'
PUBLIC_BASE_URL='$base_url'
APP_RETURN_URL='$base_url/marketplace/'
${WORKERS:+WORKERS='$WORKERS'}
${STRIPE_WORKERS:+STRIPE_WORKERS='$STRIPE_WORKERS'}
${CHARGE_MODEL:+CHARGE_MODEL='$CHARGE_MODEL'}
${DESTINATION_ON_BEHALF_OF:+DESTINATION_ON_BEHALF_OF='$DESTINATION_ON_BEHALF_OF'}
${DIRECT_REFUND_APPLICATION_FEE:+DIRECT_REFUND_APPLICATION_FEE='$DIRECT_REFUND_APPLICATION_FEE'}
${PAYOUT_DELAY_DAYS:+PAYOUT_DELAY_DAYS='$PAYOUT_DELAY_DAYS'}
${DATABASE_POOL_SIZE:+DATABASE_POOL_SIZE='$DATABASE_POOL_SIZE'}
${DATABASE_POOL_TIMEOUT_MS:+DATABASE_POOL_TIMEOUT_MS='$DATABASE_POOL_TIMEOUT_MS'}
${LANE_QUEUE_TIMEOUT_MS:+LANE_QUEUE_TIMEOUT_MS='$LANE_QUEUE_TIMEOUT_MS'}
${STRIPE_DEADLINE_SECONDS:+STRIPE_DEADLINE_SECONDS='$STRIPE_DEADLINE_SECONDS'}
${RATE_LIMITS:+RATE_LIMITS='$RATE_LIMITS'}
$(cat "$secrets")
$stripe_env
ENV
)

# What `payments migrate` (and operators, benchmarks) use instead: the owner's URL and the role to grant.
(umask 077 && cat >"$RUN_DIR/migrate.env" <<ENV
DATABASE_URL='$owner_url'
DATABASE_APP_ROLE='payments_app'
ENV
)

load_env() { set -a && source "$RUN_DIR/env" && set +a; }

(load_env && set -a && source "$RUN_DIR/migrate.env" && set +a && exec "$PAYMENTS_BIN" migrate)
(load_env && exec "$PAYMENTS_BIN" seed-demo)

# App processes 1…APP_PROCESSES, each with its own pair of lane sockets (app-N.sock for the
# core lane, app-N-stripe.sock for the Stripe lane), pid file and log.
processes=${APP_PROCESSES:-1}
[[ "$processes" =~ ^[1-9][0-9]?$ ]] || die "APP_PROCESSES must be a number from 1 to 99"
app_sockets=()
for n in $(seq 1 "$processes"); do
    socket=$RUN_DIR/app-$n.sock
    app_sockets+=("$socket")
    pid_file=$RUN_DIR/app-$n.pid
    app_pid=$(pid_of "$pid_file" "$PAYMENTS_BIN")
    if [ -n "$app_pid" ]; then
        log "payments $n is already running (pid $app_pid)"
        continue
    fi
    # One subshell that execs (via setsid, detached from the terminal) into the app, so
    # $! is the app's own pid.
    (load_env && FCGI_SOCKET=$socket INSTANCE_NAME="$(hostname)/app-$n" exec setsid "$PAYMENTS_BIN" serve) \
        >>"$RUN_DIR/app-$n.log" 2>&1 </dev/null &
    echo $! >"$pid_file"
    deadline=$((SECONDS + 15))
    until [ -S "$socket" ] && [ -n "$(pid_of "$pid_file" "$PAYMENTS_BIN")" ]; do
        # Alive is enough here: until its exec the process is this script's subshell (or
        # setsid), whose command line does not name the binary yet.
        kill -0 "$(cat "$pid_file")" 2>/dev/null || { tail -n 20 "$RUN_DIR/app-$n.log" >&2; die "payments serve $n exited"; }
        [ "$SECONDS" -lt "$deadline" ] || die "payments serve $n did not open its socket in 15 s"
        sleep 0.1
    done
    log "started payments serve $n (pid $(cat "$pid_file")), log in $RUN_DIR/app-$n.log"
done

nginx_prefix=$RUN_DIR/nginx
nginx_pid=$(pid_of "$nginx_prefix/logs/nginx.pid" nginx)
if [ -n "$nginx_pid" ]; then
    log "nginx is already running (pid $nginx_pid)"
else
    "$REPO/scripts/make-cert.sh" "$RUN_DIR/tls"
    # The test-only /api/_diag/ routes stay denied at nginx, whatever the caller's environment says.
    env "${pages_csp[@]}" APP_SOCKETS="${app_sockets[*]}" CERT_FILE=$RUN_DIR/tls/cert.pem KEY_FILE=$RUN_DIR/tls/key.pem \
        NGINX_ALLOW_DIAGNOSTICS=0 "$REPO/scripts/render-nginx.sh" "$nginx_prefix"
    nginx_args=(-p "$nginx_prefix" -c "$nginx_prefix/nginx.conf" -e "$nginx_prefix/logs/error.log")
    "$NGINX_BIN" -t -q "${nginx_args[@]}"
    "$NGINX_BIN" "${nginx_args[@]}"
    log "started nginx (pid $(cat "$nginx_prefix/logs/nginx.pid"))"
fi

deadline=$((SECONDS + 20))
until curl -skf -o /dev/null "$base_url/api/health"; do
    [ "$SECONDS" -lt "$deadline" ] || die "$base_url/api/health did not answer 200 in 20 s"
    sleep 0.2
done

token_for() { (load_env && exec "$PAYMENTS_BIN" token --user "$1" --ttl 86400); }
buyer=$(token_for demo-buyer)
seller=$(token_for demo-seller)
admin=$(token_for demo-admin)

fake_url=""
if [ -n "${fake_port:-}" ]; then
    fake_url="https://127.0.0.1:$fake_port"
    # The demo seller finishes Connect onboarding at the fake (as a seller would on Stripe's
    # hosted pages), so that the examples below can buy at once. Both calls are idempotent.
    account=$(curl -sk -X POST -H "Authorization: Bearer $seller" -H 'Content-Type: application/json' -d '{}' \
        "$base_url/api/connect/accounts" | python3 -c 'import json, sys; print(json.load(sys.stdin)["account_id"])') \
        || die "could not create the demo seller's Connect account"
    curl -skf -o /dev/null -X POST "$fake_url/_control/accounts/$account/complete_onboarding" \
        || die "the fake Stripe did not complete the demo seller's onboarding"
    deadline=$((SECONDS + 20))
    until curl -sk -H "Authorization: Bearer $seller" "$base_url/api/connect/status" | grep -q '"charges_enabled":true'; do
        [ "$SECONDS" -lt "$deadline" ] || die "the demo seller's onboarding did not reach the app in 20 s"
        sleep 0.2
    done
    log "the demo seller is onboarded ($account)"
fi
# What `make demo` needs to find this stack.
(umask 077 && printf '{"base_url": "%s", "fake_url": "%s", "payments_bin": "%s"}\n' \
    "$base_url" "$fake_url" "$PAYMENTS_BIN" >"$RUN_DIR/demo.json")

cat <<EOF_MSG

Payments is running:
  API          $base_url/api/  (http://127.0.0.1:$HTTP_PORT redirects here)
  pages        $base_url/buyer/  $base_url/seller/  $base_url/admin/  (sign in with a token below)
  environment  $RUN_DIR/env
  logs         $RUN_DIR/app-N.log ($processes process(es)), $nginx_prefix/logs/${stripe_env:+, $RUN_DIR/stripe.log}
Demo data: buyer, seller and admin profiles (demo-buyer, demo-seller, demo-admin), listings
00000000-0000-4000-8000-000000000101 and …102 (items), …103 (a job with three milestones).
Tokens below are valid for 24 h; mint more with: (set -a; . $RUN_DIR/env; $PAYMENTS_BIN token --user demo-buyer)

Try:
  curl -sk $base_url/api/health
  curl -sk $base_url/api/ready
  curl -sk -H 'Authorization: Bearer $buyer' $base_url/api/me
  curl -sk -H 'Authorization: Bearer $seller' $base_url/api/payments?as=seller
  curl -sk -H 'Authorization: Bearer $admin' $base_url/api/admin/audit-logs
  curl -sk -X POST -H 'Authorization: Bearer $buyer' -H 'Content-Type: application/json' \\
       -H 'Idempotency-Key: demo-1' -d '{"listing_id":"00000000-0000-4000-8000-000000000101"}' \\
       $base_url/api/payments/create-intent
The whole story (purchase, capture, dispute and refund, milestones, declined and 3-D Secure
cards), step by step: make demo
Stop it with: make stop
EOF_MSG
