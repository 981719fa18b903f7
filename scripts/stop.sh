#!/usr/bin/env bash
# stop.sh: stop what run.sh started in RUN_DIR (.run), found by its pid files.
set -euo pipefail
source "$(dirname "$0")/common.sh"

[ -d "$RUN_DIR" ] || exit 0
stop_pid "$RUN_DIR/nginx/logs/nginx.pid" nginx QUIT 15
for pid_file in "$RUN_DIR"/app-*.pid "$RUN_DIR"/app.pid; do
    [ -e "$pid_file" ] && stop_pid "$pid_file" "$PAYMENTS_BIN" TERM 15
done
stop_pid "$RUN_DIR/stripe.pid" fake_stripe TERM 10
if [ -f "$RUN_DIR/pg/data/PG_VERSION" ]; then
    "$REPO/scripts/pg-cluster.sh" stop "$RUN_DIR/pg"
fi
