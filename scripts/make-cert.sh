#!/usr/bin/env bash
# make-cert.sh DIR: a self-signed certificate for 127.0.0.1/localhost in DIR/cert.pem and
# DIR/key.pem, for local runs and tests only; kept if already there. Never committed.
set -euo pipefail
dir=${1:?usage: make-cert.sh DIR}
mkdir -p "$dir"
[ -s "$dir/cert.pem" ] && [ -s "$dir/key.pem" ] && exit 0
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
chmod 600 "$dir/key.pem"
