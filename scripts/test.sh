#!/usr/bin/env bash
# test.sh: the linter (scripts/lint.sh), unit tests (swift test), then the integration suite (pytest on tests/), which
# starts its own PostgreSQL, app and nginx. Expects the release binary (make test builds it).
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$REPO"

"$REPO/scripts/lint.sh"
"$REPO/scripts/venv.sh"
swift test
"$REPO/.venv/bin/python" -m pytest "$@"
