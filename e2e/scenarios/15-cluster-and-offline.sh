#!/usr/bin/env bash
# How unroot finds its cluster, and offline verdicts that equal the cluster's:
# - `unroot serve` with only KUBECONFIG in its environment reads the real
#   namespace labels (a privileged namespace admits a privileged pod, a
#   restricted one denies it naming restricted), logs where the cluster came
#   from, and is not ready while the cluster cannot be reached;
# - `unroot check FILE` gives the same verdict as `unroot check` on what the
#   API server stores for FILE (`kubectl create --dry-run=server`), i.e. the
#   API server's defaulting is applied offline.
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

require_unroot_binary
binary=$E2E_UNROOT_BINARY
open=unroot-e2e-open
strict=unroot-e2e-locked
work=$(mktemp -d)
pid=
cleanup() {
    [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
    delete_namespace "$open" "$strict"
}
trap cleanup EXIT
create_namespace "$open" unroot.dev/enforce=privileged
create_namespace "$strict" unroot.dev/enforce=restricted

# --- the cluster from KUBECONFIG -------------------------------------------------

# serve_with_env ENV... : start `unroot serve` with only those variables
# (no --kubeconfig), on free ports; sets port, admin, log.
serve_with_env() {
    port=$(free_port)
    admin=$(free_port)
    log=$work/serve.log
    env -i PATH="$PATH" "$@" "$binary" serve --listen "127.0.0.1:$port" \
        --admin-listen "127.0.0.1:$admin" --dashboard-listen 127.0.0.1:0 --ca-cert-out "$work/ca.crt" >"$log" 2>&1 &
    pid=$!
}

review() { # NAMESPACE -> an AdmissionReview for a privileged pod there
    cat <<JSON
{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-$1",
 "kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},
 "name":"priv","namespace":"$1","operation":"CREATE","userInfo":{"username":"tenant"},
 "object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"priv","namespace":"$1"},
   "spec":{"containers":[{"name":"main","image":"x","securityContext":{"privileged":true}}]}}}}
JSON
}

ready_within() { # SECONDS
    local deadline=$((SECONDS + $1))
    until curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

serve_with_env KUBECONFIG="$(e2e_kubeconfig)"
if ready_within 30; then pass "with KUBECONFIG only, unroot becomes ready"; else
    fail "with KUBECONFIG only, unroot is not ready: $(tail -n 5 "$log")"
fi
assert_contains "the log names where the cluster came from" "$(cat "$log")" "from=KUBECONFIG=$(e2e_kubeconfig)"
validate() {
    curl -sS --cacert "$work/ca.crt" -H 'Content-Type: application/json' \
        --data "$(review "$1")" "https://localhost:$port/validate"
}
out=$(validate "$open")
assert_contains "a privileged namespace's label is read: the privileged pod is allowed" "$out" '"allowed":true'
out=$(validate "$strict")
assert_contains "a restricted namespace's label is read: the pod is denied at restricted" "$out" \
    'violates PodSecurity \"restricted:latest\": privileged'
kill "$pid" && wait "$pid" 2>/dev/null || true
pid=

# A cluster that cannot be reached: not ready, and the log says why.
cat >"$work/unreachable.kubeconfig" <<EOF2
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:$(free_port)", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
EOF2
serve_with_env KUBECONFIG="$work/unreachable.kubeconfig"
sleep 3
out=$(curl -s "http://127.0.0.1:$admin/readyz" || true)
assert_contains "an unreachable cluster keeps /readyz not ready" "$out" "not ready: namespaces"
assert_contains "and the log says why" "$(cat "$log")" "namespace watch failed"
kill "$pid" && wait "$pid" 2>/dev/null || true
pid=

# --- offline verdicts equal the cluster's -----------------------------------------

# The stored pods are in kube-system, which the embedded policy excludes:
# judge both with a policy that excludes nothing.
printf 'apiVersion: unroot.dev/v1\nkind: Policy\nwebhook: {excludedNamespaces: []}\n' >"$work/policy.yaml"
verdict() {
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["allowed"], [v["check"] for v in d["violations"]])'
}

# Pods are created (dry run) in kube-system, which unroot's webhooks exclude,
# so what comes back is the API server's defaulting alone.
for fixture in "$E2E_ROOT"/tests/fixtures/check/defaulted.yaml; do
    while IFS= read -r name; do
        [[ -n $name ]] || continue
        doc=$(python3 - "$fixture" "$name" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
for doc in re.split(r"(?m)^---\s*$", text):
    if re.search(r"name:\s*" + re.escape(sys.argv[2]) + r"\b", doc):
        print(doc)
PY
)
        for level in baseline restricted; do
            # exit 1 means "violations": the verdict is in the JSON.
            offline=$({ "$binary" check --policy "$work/policy.yaml" --level "$level" --format json - <<<"$doc" || true; } | verdict)
            stored=$(e2e_kubectl create -n kube-system --dry-run=server -o json -f - <<<"$doc" |
                { "$binary" check --policy "$work/policy.yaml" --level "$level" --format json - || true; } | verdict)
            assert_eq "pod $name at $level: unroot check on the manifest equals unroot check on what the API server stores" "$stored" "$offline"
        done
    done < <(grep -oP '(?<=metadata: \{name: )[a-z-]+|(?<=^  name: )[a-z-]+' "$fixture")
done

e2e_summary
