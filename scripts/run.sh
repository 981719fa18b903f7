#!/usr/bin/env bash
# run.sh: start the local stack in the background — PostgreSQL (RUN_DIR/pg), migrations,
# `payments serve`, nginx on https://127.0.0.1:HTTPS_PORT — and return. Components that are
# already running are reported and left alone, so running it twice starts nothing twice.
# Expects the binary to be built (make run does that). Stop it all with scripts/stop.sh.
# Settings: RUN_DIR (.run), HTTPS_PORT (8443), HTTP_PORT (8080), WORKERS, and the rate
# settings of render-nginx.sh.
set -euo pipefail
source "$(dirname "$0")/common.sh"

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

"$REPO/scripts/pg-cluster.sh" init "$RUN_DIR/pg"
"$REPO/scripts/pg-cluster.sh" start "$RUN_DIR/pg"
"$REPO/scripts/pg-cluster.sh" createdb "$RUN_DIR/pg" payments

(umask 077 && cat >"$RUN_DIR/env" <<ENV
# Written by scripts/run.sh: the environment of the local \`payments serve\`. Local values only.
DATABASE_URL='$("$REPO/scripts/pg-cluster.sh" url "$RUN_DIR/pg" payments)'
FCGI_SOCKET='$RUN_DIR/app.sock'
FCGI_SOCKET_MODE='0666'
MIGRATIONS_DIR='$REPO/sql'
PUBLIC_BASE_URL='$base_url'
APP_RETURN_URL='$base_url/marketplace/'
${WORKERS:+WORKERS='$WORKERS'}
$(cat "$secrets")
ENV
)

load_env() { set -a && source "$RUN_DIR/env" && set +a; }

(load_env && exec "$PAYMENTS_BIN" migrate)

app_pid=$(pid_of "$RUN_DIR/app.pid" "$PAYMENTS_BIN")
if [ -n "$app_pid" ]; then
    log "payments is already running (pid $app_pid)"
else
    # One subshell that execs (via setsid, detached from the terminal) into the app, so
    # $! is the app's own pid.
    (load_env && exec setsid "$PAYMENTS_BIN" serve) >>"$RUN_DIR/app.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/app.pid"
    deadline=$((SECONDS + 15))
    until [ -S "$RUN_DIR/app.sock" ] && [ -n "$(pid_of "$RUN_DIR/app.pid" "$PAYMENTS_BIN")" ]; do
        [ -n "$(pid_of "$RUN_DIR/app.pid" "$PAYMENTS_BIN")" ] || { tail -n 20 "$RUN_DIR/app.log" >&2; die "payments serve exited"; }
        [ "$SECONDS" -lt "$deadline" ] || die "payments serve did not open its socket in 15 s"
        sleep 0.1
    done
    log "started payments serve (pid $(cat "$RUN_DIR/app.pid")), log in $RUN_DIR/app.log"
fi

nginx_prefix=$RUN_DIR/nginx
nginx_pid=$(pid_of "$nginx_prefix/logs/nginx.pid" nginx)
if [ -n "$nginx_pid" ]; then
    log "nginx is already running (pid $nginx_pid)"
else
    "$REPO/scripts/make-cert.sh" "$RUN_DIR/tls"
    FCGI_SOCKET=$RUN_DIR/app.sock CERT_FILE=$RUN_DIR/tls/cert.pem KEY_FILE=$RUN_DIR/tls/key.pem \
        "$REPO/scripts/render-nginx.sh" "$nginx_prefix"
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

cat <<EOF_MSG

Payments is running:
  API          $base_url/api/  (http://127.0.0.1:$HTTP_PORT redirects here)
  environment  $RUN_DIR/env
  logs         $RUN_DIR/app.log, $nginx_prefix/logs/
Try:
  curl -sk $base_url/api/health
  curl -sk $base_url/api/ready
Stop it with: make stop
EOF_MSG
