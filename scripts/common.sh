# Shared settings and helpers, sourced by the other scripts (not run on its own).
# shellcheck shell=bash

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${RUN_DIR:-$REPO/.run}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PAYMENTS_BIN=${PAYMENTS_BIN:-$REPO/.build/release/payments}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}

# stripe_socket_beside ADDRESS: the Stripe-lane socket the app derives from FCGI_SOCKET when
# FCGI_STRIPE_SOCKET is unset (Configuration.swift): app.sock → app-stripe.sock; HOST:PORT → HOST:PORT+1.
stripe_socket_beside() {
    case $1 in
        */*.sock) printf '%s' "${1%.sock}-stripe.sock" ;;
        */*) printf '%s' "$1-stripe" ;;
        *) printf '%s:%s' "${1%:*}" "$((${1##*:} + 1))" ;;
    esac
}

log() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# pid_of PIDFILE PROGRAM: print the pid recorded in PIDFILE if that process is alive and
# runs PROGRAM (guards against a recycled pid); print nothing otherwise.
pid_of() {
    local pid
    [ -r "$1" ] || return 0
    pid=$(head -n1 "$1" 2>/dev/null) || return 0
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" || return 0
    echo "$pid"
}

# wait_gone PID SECONDS: wait until PID has exited; false if it is still there.
wait_gone() {
    local deadline=$((SECONDS + $2))
    while kill -0 "$1" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# stop_pid PIDFILE PROGRAM SIGNAL SECONDS: signal the process, wait, then SIGKILL it.
stop_pid() {
    local pid
    pid=$(pid_of "$1" "$2")
    if [ -n "$pid" ]; then
        kill "-$3" "$pid" 2>/dev/null || true
        wait_gone "$pid" "$4" || { log "$2 (pid $pid) did not stop in $4 s: killing it"; kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" 5 || true; }
        log "stopped $2 (pid $pid)"
    fi
    rm -f "$1"
}

# as_postgres CMD...: PostgreSQL refuses to run as root, so root runs it as `postgres`.
as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# make_traversable DIR: let the postgres user and nginx's workers (nobody) reach files
# below DIR by adding o+x to DIR and every parent that lacks it.
make_traversable() {
    local d
    d=$(cd "$1" && pwd)
    while [ "$d" != / ]; do
        if [ -z "$(find "$d" -maxdepth 0 -perm -o=x)" ]; then
            log "note: adding o+x to $d so postgres and nginx workers can reach .run"
            chmod o+x "$d"
        fi
        d=$(dirname "$d")
    done
}
