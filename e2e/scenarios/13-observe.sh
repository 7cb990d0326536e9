#!/usr/bin/env bash
# The observe overlay (manifests/overlays/observe, a Component over
# manifests/): unroot changes nothing and says what it would change. A root
# pod runs as root, with one warning per field unroot would set; a privileged
# pod is admitted with Pod Security's restricted warning; the dashboard lists
# the warned pods; even once unroot has served, nothing fails closed (every
# replica stopped, pods are still created). Then the base install applied
# over it: the shipped policy hardens pods, and the pod and namespace
# webhooks fail closed at once, since this install has served already; and
# observe applied again gives the failing-open webhooks back.
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ns=unroot-e2e-observe
cleanup() {
    install_unroot >/dev/null 2>&1 || e2e_log "reinstalling unroot after the observe scenario failed"
    delete_namespace "$ns"
}
trap cleanup EXIT

if unroot_installed; then
    uninstall_unroot || fail "uninstalling unroot for a fresh observe install failed"
fi
create_namespace "$ns"

pod() {
    cat <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $1}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: $E2E_IMAGE_ROOT
    imagePullPolicy: Never
    command: ["sh", "-c", "id -u; exec sleep 600"]
    ${2:+securityContext: $2}
YAML
}

dir=$(unroot_kustomization manifests/overlays/observe) || fail "no kustomization for the observe overlay"
out=$(e2e_kubectl apply -k "$dir" 2>&1) || fail "kubectl apply -k of the observe overlay failed: $out"
rm -rf "$dir"
assert_ok "the observe overlay installs; every replica becomes Ready" wait_unroot_ready 180
# Answered through the API server: a dry run comes back warned, not changed.
deadline=$((SECONDS + 90))
until out=$(pod probe | e2e_kubectl create -n "$ns" --dry-run=server -o jsonpath='{.spec.securityContext.runAsNonRoot}' -f - 2>&1) &&
    [[ $out == *"would set securityContext.runAsNonRoot=true on pod"* ]]; do
    if ((SECONDS >= deadline)); then
        fail "unroot does not answer through the API server in observe mode: $out"
        break
    fi
    sleep 1
done
assert_ok "it serves: the configurations record it" wait_unroot_fail_closed 90
state=$(unroot_fail_closed_state)
echo "    ${state//$'\n'/$'\n'    }"
assert_not_contains "and no webhook fails closed" "$state" "=Fail"
assert_not_contains "none is named to" "$state" "*="

out=$(pod root | e2e_kubectl apply -n "$ns" -f - 2>&1)
assert_contains "a root pod is created" "$out" "pod/root created"
for field in 'runAsNonRoot=true' 'runAsUser=65532' 'fsGroup=65532' 'fsGroupChangePolicy="OnRootMismatch"' \
    'seccompProfile.type="RuntimeDefault"'; do
    assert_contains "with a warning that unroot would set $field" "$out" "Warning: would set securityContext.$field on pod"
done
assert_contains "and one for its container" "$out" \
    'Warning: would set securityContext.allowPrivilegeEscalation=false on container "main"'
assert_eq "the pod is stored as sent" "" \
    "$(e2e_kubectl get pod root -n "$ns" -o jsonpath='{.spec.securityContext.runAsNonRoot}{.spec.securityContext.runAsUser}{.spec.containers[0].securityContext}')"
if wait_pod_phase root "$ns" Running 60; then
    sleep 1
    assert_eq "and runs as root" 0 "$(pod_logs root "$ns")"
else
    fail "the root pod did not run"
fi
out=$(pod privileged "{privileged: true}" | e2e_kubectl apply -n "$ns" -f - 2>&1)
assert_contains "a privileged pod is admitted (enforce: privileged)" "$out" "pod/privileged created"
assert_contains "with Pod Security's restricted warning (warn stays on)" "$out" \
    'Warning: would violate PodSecurity "restricted:latest": privileged (container "main" must not set securityContext.privileged=true)'

# dashboard_of POD: its /dashboard, as an administrator reaches it: kubectl
# port-forward to the loopback listener (8081), ended afterwards.
dashboard_of() {
    local port pid page='' deadline
    port=$(free_port)
    e2e_kubectl -n "$UNROOT_NS" port-forward "pod/$1" "$port:8081" >/dev/null 2>&1 &
    pid=$!
    deadline=$((SECONDS + 20))
    until page=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/dashboard" 2>/dev/null); do
        if ((SECONDS >= deadline)) || ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.5
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$page"
}

# What an operator sees on the replicas' dashboards and metrics.
dashboards='' warned=0
while read -r replica _; do
    dashboards+=$(dashboard_of "$replica")
    n=$(unroot_metrics "$replica" 2>/dev/null | awk '$1 == "unroot_hardening_pods_total{mode=\"warn\"}" {print $2}')
    warned=$((warned + ${n:-0}))
done < <(unroot_pods)
assert_contains "the dashboard lists the warned root pod" "$dashboards" "<td>$ns</td><td>root</td>"
if ((warned >= 2)); then
    pass "unroot_hardening_pods_total{mode=\"warn\"} counts the pods left unhardened ($warned)"
else
    fail "unroot_hardening_pods_total{mode=\"warn\"} is $warned"
fi

assert_ok "unroot scaled to 0" unroot_down
out=$(pod down | e2e_kubectl create -n "$ns" --dry-run=server -f - 2>&1 || true)
assert_contains "with every replica stopped, pods are still created (nothing fails closed)" "$out" "pod/down created (server dry run)"

# --- switching to the base install --------------------------------------------------
start=$SECONDS
assert_ok "applying the base install over it: pods are hardened, the webhooks fail closed" install_unroot
echo "    $((SECONDS - start)) s, rollout included"
assert_ok "failing closed at once: this install had served" unroot_serves_fail_closed
assert_eq "the policy ConfigMap is the shipped one" "$(cat "$E2E_ROOT/webhook-config/policy.yaml")" \
    "$(e2e_kubectl get configmap unroot-policy -n "$UNROOT_NS" -o jsonpath='{.data.policy\.yaml}')"
out=$(pod hardened | e2e_kubectl apply -n "$ns" -f - 2>&1)
assert_not_contains "a pod is no longer warned about" "$out" "would set"
assert_eq "it is hardened" "true 65532 OnRootMismatch" \
    "$(e2e_kubectl get pod hardened -n "$ns" -o jsonpath='{.spec.securityContext.runAsNonRoot} {.spec.securityContext.runAsUser} {.spec.securityContext.fsGroupChangePolicy}')"

# --- and back to observe: the originals are back on, the copies gone -----------------
dir=$(unroot_kustomization manifests/overlays/observe) || fail "no kustomization for the observe overlay"
out=$(e2e_kubectl apply -k "$dir" 2>&1) || fail "kubectl apply -k of the observe overlay failed: $out"
rm -rf "$dir"
deadline=$((SECONDS + 30))
until state=$(unroot_fail_closed_state) && [[ $state != *"=Fail"* && $state != *"(off)"* ]]; do
    if ((SECONDS >= deadline)); then
        break
    fi
    sleep 0.5
done
assert_not_contains "applying observe again: nothing fails closed" "$state" "=Fail"
assert_not_contains "and every original is back on" "$state" "(off)"

e2e_summary
