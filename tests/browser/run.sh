#!/usr/bin/env bash
# The dashboard in a real browser (`make dashboard-browser`, part of `make
# test`): installs Debian's chromium when it is missing (apt only then), and
# runs tests/dashboard_browser.rs, which loads /dashboard (from the
# loopback-only dashboard listener, --dashboard-listen) in headless
# Chromium, compares the rendered DOM with /metrics and writes
# target/dashboard.png.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)

if ! status=$(dpkg-query -W -f='${db:Status-Status}' chromium 2>/dev/null) || [[ $status != installed ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "dashboard-browser: Debian's chromium is missing; install it (as root: apt-get install chromium)" >&2
        exit 1
    fi
    echo "dashboard-browser: installing chromium" >&2
    export DEBIAN_FRONTEND=noninteractive
    compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || apt-get update -qq
    if ! apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends chromium >/dev/null
    fi
fi

cd "$root"
exec ${CARGO:-cargo} test --test integration dashboard_browser:: -- --ignored --nocapture
