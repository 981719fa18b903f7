#!/usr/bin/env bash
# render-nginx.sh PREFIX: copy nginx/ into PREFIX with its placeholders filled in, ready for
# `nginx -p PREFIX -c PREFIX/nginx.conf -e PREFIX/logs/error.log`.
# Settings (environment): APP_SOCKETS (required: the core-lane socket of every app process,
# space-separated; each a socket path or HOST:PORT; FCGI_SOCKET is taken when APP_SOCKETS is
# unset), APP_STRIPE_SOCKETS (their Stripe-lane sockets, same order; default: beside each, as the
# app derives FCGI_STRIPE_SOCKET), CERT_FILE, KEY_FILE (required), HTTPS_PORT (8443),
# HTTP_PORT (8080), LISTEN_ADDRESS (127.0.0.1; a real host: 0.0.0.0 or its public address),
# SERVER_NAME (_: any; a real host: its name), NGINX_USER ("nobody nogroup": the user and group
# nginx's workers run as, whose group FCGI_SOCKET_GROUP must name; Debian's is www-data), API_RATE (100r/s), API_BURST (200), WEBHOOK_RATE (50r/s), WEBHOOK_BURST (500),
# FASTCGI_READ_TIMEOUT (core lane, 30s), STRIPE_DEADLINE_SECONDS (20: the Stripe lane's read
# timeout is that plus 10 s, so the app's 504 stripe_timeout always comes first).
# Switches, off unless set to 1: NGINX_ALLOW_DIAGNOSTICS (let /api/_diag/ reach the app; the test
# harness only — otherwise nginx answers it 404 whatever DIAGNOSTICS_ENABLED says).
# NGINX_TRUSTED_PROXIES: the addresses or CIDR blocks of load balancers in front of nginx,
# space- or comma-separated; when set, the client address comes from their X-Forwarded-For
# (trusted-proxies.conf). Unset: X-Forwarded-For is ignored.
# PAGES_STRIPE_JS (switch): the buyer page may load Stripe.js and the Payment Element from Stripe's
# origins (a real Stripe key). PAGES_FAKE_STRIPE_ORIGIN: the fake Stripe's origin
# (scheme://host:port) the buyer page confirms cards at. At most one of the two; neither: the
# buyer page reaches this origin only (nginx/buyer-page-headers.conf).
# NGINX_STRIPE_WEBHOOK_IPS (switch): admit only Stripe's webhook addresses to the two webhook
# locations, from nginx/stripe-webhook-ips.conf or the file NGINX_STRIPE_WEBHOOK_IPS_FILE (both
# written by scripts/stripe-webhook-ips.py).
# NGINX_BENCH_PEER_FLASK: `make bench` only (scripts/bench.sh): the address (socket path or
# HOST:PORT) of the Flask peer's gunicorn (bench/peers/); when set, nginx also proxies
# /peer/flask/api/payments/webhook to it (nginx/bench/flask-peer.conf). Unset: no such location.
set -euo pipefail
source "$(dirname "$0")/common.sh"

prefix=${1:?usage: render-nginx.sh PREFIX}
APP_SOCKETS=${APP_SOCKETS:-${FCGI_SOCKET:-}}
: "${APP_SOCKETS:?APP_SOCKETS (or FCGI_SOCKET) is required}" "${CERT_FILE:?CERT_FILE is required}" "${KEY_FILE:?KEY_FILE is required}"

# upstream_servers ADDRESS...: one `server` line per address (nginx spells unix sockets unix:PATH).
upstream_servers() {
    local address
    for address in "$@"; do
        case $address in
            */*) printf 'server unix:%s; ' "$address" ;;
            *) printf 'server %s; ' "$address" ;;
        esac
    done
}

read -r -a core_sockets <<<"$APP_SOCKETS"
if [ -n "${APP_STRIPE_SOCKETS:-}" ]; then
    read -r -a stripe_sockets <<<"$APP_STRIPE_SOCKETS"
else
    stripe_sockets=()
    for address in "${core_sockets[@]}"; do stripe_sockets+=("$(stripe_socket_beside "$address")"); done
fi
[ ${#stripe_sockets[@]} -eq ${#core_sockets[@]} ] || die "APP_STRIPE_SOCKETS must name one socket per APP_SOCKETS entry"
core_servers=$(upstream_servers "${core_sockets[@]}")
stripe_servers=$(upstream_servers "${stripe_sockets[@]}")
deadline=${STRIPE_DEADLINE_SECONDS:-20}
[[ "${LISTEN_ADDRESS:-127.0.0.1}" =~ ^([0-9.]+|\[[0-9A-Fa-f:]+\])$ ]] || die "LISTEN_ADDRESS must be an IPv4 address or [IPv6]"
[[ "${SERVER_NAME:-_}" =~ ^[A-Za-z0-9._\ -]+$ ]] || die "SERVER_NAME must be host names (letters, digits, . - _)"
[[ "${NGINX_USER:-nobody nogroup}" =~ ^[a-z_][a-z0-9_-]*( [a-z_][a-z0-9_-]*)?$ ]] || die "NGINX_USER must be 'USER' or 'USER GROUP'"
[[ "$deadline" =~ ^[0-9]+$ ]] || die "STRIPE_DEADLINE_SECONDS must be a whole number of seconds"

# switch NAME: true when the render-time switch NAME is 1 (unset or 0: false).
switch() {
    case ${!1:-0} in
        1) return 0 ;;
        0) return 1 ;;
        *) die "$1 must be 1 or 0" ;;
    esac
}
diagnostics="include diagnostics-denied.conf;"
if switch NGINX_ALLOW_DIAGNOSTICS; then
    diagnostics="# NGINX_ALLOW_DIAGNOSTICS=1: the app's test-only /api/_diag/ routes are reachable"
fi
trusted_proxies="# NGINX_TRUSTED_PROXIES unset: X-Forwarded-For is ignored"
set_real_ip_from="# (not included: NGINX_TRUSTED_PROXIES is unset)"
if [ -n "${NGINX_TRUSTED_PROXIES:-}" ]; then
    set_real_ip_from=""
    read -r -a proxies <<<"${NGINX_TRUSTED_PROXIES//,/ }"
    for proxy in "${proxies[@]}"; do
        [[ "$proxy" =~ ^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$ ]] || die "NGINX_TRUSTED_PROXIES: '$proxy' is not an address or CIDR block"
        set_real_ip_from+="set_real_ip_from $proxy; "
    done
    [ -n "$set_real_ip_from" ] || die "NGINX_TRUSTED_PROXIES names no address"
    trusted_proxies="include trusted-proxies.conf;"
fi
webhook_sources="# NGINX_STRIPE_WEBHOOK_IPS unset: any source address (the signature is checked)"
webhook_ips_file=${NGINX_STRIPE_WEBHOOK_IPS_FILE:-$REPO/nginx/stripe-webhook-ips.conf}
if switch NGINX_STRIPE_WEBHOOK_IPS; then
    grep -qx 'deny all;' "$webhook_ips_file" || die "$webhook_ips_file has no 'deny all;': write it with scripts/stripe-webhook-ips.py"
    webhook_sources="include stripe-webhook-ips.conf;"
fi

bench_peers="# NGINX_BENCH_PEER_FLASK unset: no benchmark peer (scripts/bench.sh renders one)"
bench_peer_flask=""
if [ -n "${NGINX_BENCH_PEER_FLASK:-}" ]; then
    case $NGINX_BENCH_PEER_FLASK in
        /*) [[ "$NGINX_BENCH_PEER_FLASK" =~ ^/[A-Za-z0-9._/-]+$ ]] && bench_peer_flask="http://unix:$NGINX_BENCH_PEER_FLASK:" ;;
        *) [[ "$NGINX_BENCH_PEER_FLASK" =~ ^[0-9.]+:[0-9]{1,5}$ ]] && bench_peer_flask="http://$NGINX_BENCH_PEER_FLASK" ;;
    esac
    [ -n "$bench_peer_flask" ] || die "NGINX_BENCH_PEER_FLASK must be an absolute socket path or IPv4:PORT"
    bench_peers="include bench-flask-peer.conf;"
fi

# The buyer page's Content-Security-Policy additions (empty: this origin only).
pages_script_src="" pages_img_src="" pages_connect_src="" pages_frame_src="'none'"
if switch PAGES_STRIPE_JS; then
    [ -z "${PAGES_FAKE_STRIPE_ORIGIN:-}" ] || die "PAGES_STRIPE_JS=1 and PAGES_FAKE_STRIPE_ORIGIN exclude each other"
    pages_script_src=" https://js.stripe.com https://*.js.stripe.com"
    pages_img_src=" https://*.stripe.com"
    pages_connect_src=" https://api.stripe.com"
    pages_frame_src="https://js.stripe.com https://*.js.stripe.com https://hooks.stripe.com"
elif [ -n "${PAGES_FAKE_STRIPE_ORIGIN:-}" ]; then
    [[ "$PAGES_FAKE_STRIPE_ORIGIN" =~ ^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$ ]] \
        || die "PAGES_FAKE_STRIPE_ORIGIN must be an origin such as https://127.0.0.1:12111 (no path)"
    pages_connect_src=" $PAGES_FAKE_STRIPE_ORIGIN"
fi

mkdir -p "$prefix/logs" "$prefix/tmp" "$prefix/static"
cp -R "$REPO/nginx/static/." "$prefix/static/"
cp "$REPO/nginx/ffdhe2048.pem" "$prefix/"
# render SOURCE DEST: SOURCE with every placeholder filled in.
render() {
    sed -e "s|@HTTPS_PORT@|${HTTPS_PORT:-8443}|g" \
        -e "s|@HTTP_PORT@|${HTTP_PORT:-8080}|g" \
        -e "s|@LISTEN_ADDRESS@|${LISTEN_ADDRESS:-127.0.0.1}|g" \
        -e "s|@SERVER_NAME@|${SERVER_NAME:-_}|g" \
        -e "s|@NGINX_USER@|${NGINX_USER:-nobody nogroup}|g" \
        -e "s|@CORE_SERVERS@|$core_servers|g" \
        -e "s|@STRIPE_SERVERS@|$stripe_servers|g" \
        -e "s|@STRIPE_READ_TIMEOUT@|$((deadline + 10))s|g" \
        -e "s|@CERT_FILE@|$CERT_FILE|g" \
        -e "s|@KEY_FILE@|$KEY_FILE|g" \
        -e "s|@API_RATE@|${API_RATE:-100r/s}|g" \
        -e "s|@API_BURST@|${API_BURST:-200}|g" \
        -e "s|@WEBHOOK_RATE@|${WEBHOOK_RATE:-50r/s}|g" \
        -e "s|@WEBHOOK_BURST@|${WEBHOOK_BURST:-500}|g" \
        -e "s|@FASTCGI_READ_TIMEOUT@|${FASTCGI_READ_TIMEOUT:-30s}|g" \
        -e "s|@DIAGNOSTICS@|$diagnostics|g" \
        -e "s|@TRUSTED_PROXIES@|$trusted_proxies|g" \
        -e "s|@SET_REAL_IP_FROM@|$set_real_ip_from|g" \
        -e "s|@STRIPE_WEBHOOK_SOURCES@|$webhook_sources|g" \
        -e "s|@PAGES_SCRIPT_SRC@|$pages_script_src|g" \
        -e "s|@PAGES_IMG_SRC@|$pages_img_src|g" \
        -e "s|@PAGES_CONNECT_SRC@|$pages_connect_src|g" \
        -e "s|@PAGES_FRAME_SRC@|$pages_frame_src|g" \
        -e "s|@BENCH_PEERS@|$bench_peers|g" \
        -e "s|@BENCH_PEER_FLASK@|$bench_peer_flask|g" \
        "$1" >"$2"
}
for file in "$REPO"/nginx/*.conf; do
    render "$file" "$prefix/$(basename "$file")"
done
if [ -n "$bench_peer_flask" ]; then
    render "$REPO/nginx/bench/flask-peer.conf" "$prefix/bench-flask-peer.conf"
else
    rm -f "$prefix/bench-flask-peer.conf"  # left by an earlier render into the same prefix
fi
if [ "$webhook_ips_file" != "$REPO/nginx/stripe-webhook-ips.conf" ]; then
    cp "$webhook_ips_file" "$prefix/stripe-webhook-ips.conf"
fi
if grep -n '@[A-Z_][A-Z_]*@' "$prefix"/*.conf; then die "unfilled placeholder in $prefix"; fi
