#!/usr/bin/env bash
# The policy ConfigMap through the real API server: an edit changes the uid
# the next pod runs as within seconds, an invalid policy is refused at apply
# time with its errors, and deleting the ConfigMap keeps the last good policy.
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ns=unroot-e2e-policy
cleanup() {
    unregister_webhooks || true
    stop_unroot
    e2e_kubectl delete configmap unroot-policy -n unroot --ignore-not-found >/dev/null 2>&1 || true
    delete_namespace "$ns"
}
trap cleanup EXIT
create_namespace unroot
create_namespace "$ns" unroot.dev/enforce=privileged

# The shipped ConfigMap (webhook-config/ generates it from policy.yaml).
configmap() {
    e2e_kubectl kustomize "$E2E_ROOT/webhook-config" |
        python3 -c 'import re, sys; print("\n---\n".join(d for d in re.split(r"(?m)^---$", sys.stdin.read()) if re.search(r"(?m)^kind: ConfigMap$", d)))'
}
configmap | e2e_kubectl apply -f - >/dev/null

UNROOT_SERVE_ARGS="--policy-configmap unroot/unroot-policy" start_unroot
register_webhooks "$UNROOT_CA" "$UNROOT_URL"
sleep 1

uid_of_next_pod() {
    e2e_kubectl run "probe-$RANDOM" -n "$ns" --image="$E2E_IMAGE_ROOT" --image-pull-policy=Never \
        --restart=Never --dry-run=server -o jsonpath='{.spec.securityContext.runAsUser}' 2>&1
}
assert_eq "the shipped policy runs pods as 65532" 65532 "$(uid_of_next_pod)"

configmap | sed 's/runAsUser: 65532/runAsUser: 10001/' | e2e_kubectl apply -f - >/dev/null
start=$SECONDS
until [[ $(uid_of_next_pod) == 10001 ]] || ((SECONDS - start > 5)); do sleep 0.2; done
assert_eq "after an edit, the next pod is mutated with the new runAsUser within 5 s" 10001 "$(uid_of_next_pod)"
e2e_kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: edited}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: $E2E_IMAGE_ROOT, imagePullPolicy: Never, command: ["sh", "-c", "id -u; exec sleep 600"]}
YAML
if wait_pod_phase edited "$ns" Running 60; then
    sleep 1
    assert_eq "and it runs as that uid" 10001 "$(pod_logs edited "$ns")"
else
    fail "the pod did not run under the edited policy"
fi

out=$(configmap | sed 's/runAsUser: 65532/runAsUser: 0/; s/enforce: baseline/enforce: strict/' | e2e_kubectl apply -f - 2>&1 || true)
assert_contains "an invalid policy is refused at apply time" "$out" 'denied the request: ConfigMap unroot/unroot-policy: invalid unroot policy in data.policy.yaml, 2 error(s)'
assert_contains "naming every error" "$out" 'securityContext.runAsUser: 0 is not allowed'
assert_contains "with its field path" "$out" 'podSecurity.defaults.enforce: "strict" is not one of privileged, baseline, restricted'
assert_eq "the last good policy stays in force" 10001 "$(uid_of_next_pod)"

e2e_kubectl delete configmap unroot-policy -n unroot >/dev/null
sleep 1
assert_eq "with the ConfigMap deleted, admission continues on the last good policy" 10001 "$(uid_of_next_pod)"
assert_contains "and says so" "$(cat "$UNROOT_LOG")" "policy ConfigMap deleted; the last good policy stays in force"
metrics=$(curl -fsS "http://$UNROOT_ADMIN_URL/metrics")
assert_contains "the replica reports the policy it runs" "$metrics" 'unroot_policy_info{hash="'

e2e_summary
