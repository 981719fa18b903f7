#!/usr/bin/env bash
# bench.sh: start a separate, fresh stack (RUN_DIR .run/bench, ports 9443/9080) whose nginx
# rate limits never bind, measure it with bench/measure.py, and stop it again.
set -euo pipefail
source "$(dirname "$0")/common.sh"

export RUN_DIR=$REPO/.run/bench
export HTTPS_PORT=${BENCH_HTTPS_PORT:-9443} HTTP_PORT=${BENCH_HTTP_PORT:-9080}
export API_RATE=100000r/s API_BURST=100000   # limit_req stays in the path, but never rejects
"$REPO/scripts/stop.sh"              # a stack left over from an interrupted run
rm -rf "$RUN_DIR"                     # nothing in it is worth keeping: start clean
trap '"$REPO/scripts/stop.sh"' EXIT
"$REPO/scripts/run.sh" >/dev/null
python3 "$REPO/bench/measure.py" "https://127.0.0.1:$HTTPS_PORT"
