#!/usr/bin/env bash
# nginx-check.sh: render the nginx config into a scratch prefix and run `nginx -t` on it.
set -euo pipefail
source "$(dirname "$0")/common.sh"

prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
"$REPO/scripts/make-cert.sh" "$prefix/tls"
FCGI_SOCKET=$prefix/app.sock CERT_FILE=$prefix/tls/cert.pem KEY_FILE=$prefix/tls/key.pem \
    "$REPO/scripts/render-nginx.sh" "$prefix"
"$NGINX_BIN" -t -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log"
