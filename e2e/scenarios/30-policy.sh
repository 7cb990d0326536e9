#!/usr/bin/env bash
# The policy ConfigMap unroot/unroot-policy through the real API server, read
# by every replica of the in-cluster install: an edit changes the uid the next
# pod runs as within seconds, an invalid policy is refused at apply time with
# its errors, and deleting the ConfigMap keeps the last good policy.
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ns=unroot-e2e-policy
work=$(mktemp -d)
cleanup() {
    # The shipped policy again, for the scripts after this one.
    reset_unroot_policy || e2e_log "restoring the shipped policy failed"
    delete_namespace "$ns"
    rm -rf "$work"
}
trap cleanup EXIT
install_unroot || fail "installing unroot failed"
create_namespace "$ns" unroot.dev/enforce=privileged

# The shipped ConfigMap (webhook-config/ generates it from policy.yaml).
configmap() {
    e2e_kubectl kustomize "$E2E_ROOT/webhook-config" | select_kinds ConfigMap
}
configmap | e2e_kubectl apply -f - >/dev/null

uid_of_next_pod() {
    e2e_kubectl run "probe-$RANDOM" -n "$ns" --image="$E2E_IMAGE_ROOT" --image-pull-policy=Never \
        --restart=Never --dry-run=server -o jsonpath='{.spec.securityContext.runAsUser}' 2>&1
}
# Every replica: the API server picks one at random for each call.
uid_of_next_pods() {
    local i out=""
    for i in 1 2 3 4 5 6; do out+="$(uid_of_next_pod) "; done
    echo "${out% }"
}
replicas_policy_hashes() {
    local pod _
    while read -r pod _; do
        unroot_metrics "$pod" | sed -n 's/^unroot_policy_info{hash="\([0-9a-f]*\)"} 1$/\1/p'
    done < <(unroot_pods) | sort | uniq -c | awk '{print $1 "x" $2}'
}
replicas=$(e2e_kubectl get deployment unroot -n unroot -o jsonpath='{.spec.replicas}')
shipped=$(policy_hash "$E2E_ROOT/webhook-config/policy.yaml")
assert_eq "every replica runs the shipped policy" "${replicas}x$shipped" "$(replicas_policy_hashes)"
assert_eq "the shipped policy runs pods as 65532" "65532 65532 65532 65532 65532 65532" "$(uid_of_next_pods)"

sed 's/runAsUser: 65532/runAsUser: 10001/' "$E2E_ROOT/webhook-config/policy.yaml" >"$work/edited.yaml"
edited=$(policy_hash "$work/edited.yaml")
configmap | sed 's/runAsUser: 65532/runAsUser: 10001/' | e2e_kubectl apply -f - >/dev/null
start=$SECONDS
until [[ $(replicas_policy_hashes) == "${replicas}x$edited" ]] || ((SECONDS - start > 5)); do sleep 0.2; done
assert_eq "after an edit, every replica runs the new policy within 5 s" "${replicas}x$edited" "$(replicas_policy_hashes)"
assert_eq "and the next pods are mutated with the new runAsUser" "10001 10001 10001 10001 10001 10001" "$(uid_of_next_pods)"
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
assert_eq "the last good policy stays in force" "10001 10001 10001 10001 10001 10001" "$(uid_of_next_pods)"

e2e_kubectl delete configmap unroot-policy -n unroot >/dev/null
sleep 1
assert_eq "with the ConfigMap deleted, admission continues on the last good policy" \
    "10001 10001 10001 10001 10001 10001" "$(uid_of_next_pods)"
logs=$(unroot_logs)
assert_eq "and every replica says so" "$replicas" \
    "$(grep -c 'policy ConfigMap deleted; the last good policy stays in force' <<<"$logs" || true)"
assert_eq "every replica still reports the policy it runs" "${replicas}x$edited" "$(replicas_policy_hashes)"

e2e_summary
