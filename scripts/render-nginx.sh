#!/usr/bin/env bash
# render-nginx.sh PREFIX: copy nginx/ into PREFIX with its placeholders filled in, ready for
# `nginx -p PREFIX -c PREFIX/nginx.conf -e PREFIX/logs/error.log`.
# Settings (environment): FCGI_SOCKET (required: a socket path or 127.0.0.1:PORT),
# CERT_FILE, KEY_FILE (required), HTTPS_PORT (8443), HTTP_PORT (8080),
# API_RATE (100r/s), API_BURST (200), WEBHOOK_RATE (50r/s), WEBHOOK_BURST (500),
# FASTCGI_READ_TIMEOUT (60s).
set -euo pipefail
source "$(dirname "$0")/common.sh"

prefix=${1:?usage: render-nginx.sh PREFIX}
: "${FCGI_SOCKET:?FCGI_SOCKET is required}" "${CERT_FILE:?CERT_FILE is required}" "${KEY_FILE:?KEY_FILE is required}"
case $FCGI_SOCKET in
    */*) fastcgi_pass="unix:$FCGI_SOCKET" ;;
    *) fastcgi_pass=$FCGI_SOCKET ;;
esac

mkdir -p "$prefix/logs" "$prefix/tmp" "$prefix/static"
cp -R "$REPO/nginx/static/." "$prefix/static/"
for file in "$REPO"/nginx/*.conf; do
    sed -e "s|@HTTPS_PORT@|${HTTPS_PORT:-8443}|g" \
        -e "s|@HTTP_PORT@|${HTTP_PORT:-8080}|g" \
        -e "s|@FASTCGI_PASS@|$fastcgi_pass|g" \
        -e "s|@CERT_FILE@|$CERT_FILE|g" \
        -e "s|@KEY_FILE@|$KEY_FILE|g" \
        -e "s|@API_RATE@|${API_RATE:-100r/s}|g" \
        -e "s|@API_BURST@|${API_BURST:-200}|g" \
        -e "s|@WEBHOOK_RATE@|${WEBHOOK_RATE:-50r/s}|g" \
        -e "s|@WEBHOOK_BURST@|${WEBHOOK_BURST:-500}|g" \
        -e "s|@FASTCGI_READ_TIMEOUT@|${FASTCGI_READ_TIMEOUT:-60s}|g" \
        "$file" >"$prefix/$(basename "$file")"
done
if grep -n '@[A-Z_][A-Z_]*@' "$prefix"/*.conf; then die "unfilled placeholder in $prefix"; fi
