#!/usr/bin/env bash
# venv.sh: create .venv and install tests/requirements.txt and bench/peers/requirements.txt (the
# benchmark's Flask peer: Flask, gunicorn, stripe, psycopg, psycopg-pool) into it, again only when
# one of those files (or one they include) changes.
set -euo pipefail
source "$(dirname "$0")/common.sh"

venv=$REPO/.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
stamp=$venv/.requirements.sha256
wanted=$( (find "$REPO/tests" -maxdepth 2 -name requirements.txt; echo "$REPO/bench/peers/requirements.txt") \
    | sort | xargs cat | sha256sum)
[ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && exit 0
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$REPO/tests/requirements.txt" \
    -r "$REPO/bench/peers/requirements.txt" </dev/null
echo "$wanted" >"$stamp"
