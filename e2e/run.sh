#!/usr/bin/env bash
# Run e2e test scripts against a cluster: bring the local one up first (unless
# E2E_KUBECONFIG names another cluster), run each script, always tear down.
#
#   e2e/run.sh                 e2e/smoke.sh, then every e2e/scenarios/*.sh (sorted)
#   e2e/run.sh SCRIPT...       just those
#
# Each script sources e2e/lib.sh and ends with e2e_summary ("N passed, N failed").
# The last line printed here is the sum over all scripts; a script that exits
# non-zero without such a line counts as one failure. Exit status: 0 only when
# nothing failed and something passed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

scripts=("$@")
if ((${#scripts[@]} == 0)); then
    scripts=("$here/smoke.sh")
    for f in "$here"/scenarios/*.sh; do
        [[ -f $f ]] && scripts+=("$f")
    done
fi

# One binary for the whole suite: E2E_UNROOT_BINARY (lib.sh). A script that
# names a path to an unroot binary, or a variable of its own for one, would run
# another binary than the target it was started from names: refuse to start.
own_binary=$(grep -nE '(target|debug|release)/unroot\b|\bUNROOT_BIN(ARY)?\b' "${scripts[@]}" || true)
if [[ -n $own_binary ]]; then
    echo "run.sh: these scripts name an unroot binary of their own; use E2E_UNROOT_BINARY (lib.sh):" >&2
    echo "$own_binary" >&2
    exit 2
fi

teardown() {
    if [[ -z ${E2E_KUBECONFIG:-} && -z ${E2E_KEEP_CLUSTER:-} ]]; then
        "$here/cluster.sh" down || echo "run.sh: cluster.sh down failed" >&2
    fi
}

if [[ -z ${E2E_KUBECONFIG:-} ]]; then
    trap teardown EXIT
    trap 'exit 130' INT TERM
    "$here/cluster.sh" up
    eval "$("$here/cluster.sh" env)"
fi

passed=0
failed=0
out=$(mktemp)
for s in "${scripts[@]}"; do
    echo "=== $s"
    rc=0
    started=$SECONDS
    bash "$s" 2>&1 | tee "$out" || rc=$? # pipefail: the script's status
    echo "=== $(basename "$s"): $((SECONDS - started)) s"
    if line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1); then
        read -r p _ f _ <<<"$line"
        passed=$((passed + p))
        failed=$((failed + f))
        if ((rc != 0 && f == 0)); then
            echo "run.sh: $s exited $rc" >&2
            failed=$((failed + 1))
        fi
    else
        echo "run.sh: $s exited $rc without a 'N passed, N failed' line" >&2
        failed=$((failed + 1))
    fi
done
rm -f "$out"

echo "$passed passed, $failed failed"
((failed == 0 && passed > 0))
