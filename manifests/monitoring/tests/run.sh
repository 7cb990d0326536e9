#!/usr/bin/env bash
# The monitoring tests (`make monitoring`, part of `make test`): the Grafana
# dashboard, the PrometheusRule and the ServiceMonitor in manifests/monitoring/
# against promtool and against a real unroot scraped by a real Prometheus.
# What is checked: check.py's header. Generated files, /metrics and the logs of
# the last run go to target/monitoring/.
#
# Installs its Debian packages itself (prometheus for promtool and the server,
# python3-yaml), only when one is missing. Never starts or touches the system
# Prometheus service: the test runs its own on a free loopback port.
set -euo pipefail

root=$(cd "$(dirname "$0")/../../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out=$target/monitoring

packages=(prometheus python3-yaml)
missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "monitoring: missing Debian packages ${missing[*]}; install them (as root: apt-get install ${missing[*]})" >&2
        exit 1
    fi
    echo "monitoring: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || apt-get -o DPkg::Lock::Timeout=300 update -qq
    if ! apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        apt-get -o DPkg::Lock::Timeout=300 update -qq
        apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

(cd "$root" && ${CARGO:-cargo} build --quiet --bin unroot)
echo "monitoring: $(promtool --version 2>&1 | head -1)"
# Debian's python3 (where python3-yaml is), whatever python3 is first on PATH.
exec /usr/bin/python3 "$root/manifests/monitoring/tests/check.py" \
    --unroot "$target/debug/unroot" --out "$out"
