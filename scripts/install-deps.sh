#!/usr/bin/env bash
# Install the Debian packages the project needs, only those that are missing.
set -euo pipefail

packages=(libfcgi-dev libpq-dev libcurl4-openssl-dev libssl-dev nginx postgresql wrk
          pkg-config openssl curl python3-venv
          # promtool (tests/test_deploy.py checks deploy/prometheus/alerts.yml), systemd-analyze (the units)
          prometheus systemd
          # the browser tests (tests/test_connect_browser.py): headless Chromium, its driver, a font
          chromium chromium-driver fonts-dejavu-core)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q </dev/null
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
