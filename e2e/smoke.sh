#!/usr/bin/env bash
# Smoke test of the e2e cluster itself (no webhook involved): pods from both
# test images reach Running, run as the image's user, and `kubectl logs` and
# `kubectl exec` work through the API server to the kubelet.
#
#   e2e/smoke.sh     (the cluster must be up: e2e/cluster.sh up, or E2E_KUBECONFIG)
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ns=unroot-e2e-smoke
cleanup() { delete_namespace "$ns"; }
trap cleanup EXIT

create_namespace "$ns"
assert_eq "namespace $ns carries kubernetes.io/metadata.name" "$ns" \
    "$(e2e_kubectl get namespace "$ns" -o jsonpath='{.metadata.labels.kubernetes\.io/metadata\.name}')"

run_pod() {
    local name=$1 image=$2
    e2e_kubectl apply -n "$ns" -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $name
spec:
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  containers:
  - name: main
    image: $image
    imagePullPolicy: Never
    command: ["sh", "-c", "id; grep -E '^(Uid|Gid|CapEff|NoNewPrivs|Seccomp):' /proc/self/status; echo smoke-ready; exec sleep 600"]
EOF
}

check_pod() {
    local name=$1 want_uid=$2 start logs out i
    start=$SECONDS
    if wait_pod_phase "$name" "$ns" Running 60; then
        pass "$name: Running after $((SECONDS - start)) s"
    else
        fail "$name: did not reach Running"
        return 0
    fi
    for ((i = 0; i < 40; i++)); do
        logs=$(pod_logs "$name" "$ns" 2>&1 || true)
        [[ $logs == *smoke-ready* ]] && break
        sleep 0.25
    done
    assert_contains "$name: kubectl logs shows the container's output" "$logs" smoke-ready
    assert_contains "$name: runs as uid $want_uid (id)" "$logs" "uid=$want_uid"
    assert_contains "$name: /proc/self/status is readable" "$logs" "CapEff:"
    echo "    $name output: $(tr '\n' ';' <<<"$logs")"
    out=$(e2e_kubectl exec -n "$ns" "$name" -- id -u 2>&1) || true
    assert_eq "$name: kubectl exec runs in the container" "$want_uid" "$out"
    # shellcheck disable=SC2016 # expanded by the container's sh
    out=$(e2e_kubectl exec -n "$ns" "$name" -- sh -c 'echo $((6*7)) >/tmp/x && cat /tmp/x' 2>&1) || true
    assert_eq "$name: kubectl exec through sh, writable /tmp" "42" "$out"
}

run_pod smoke-root "$E2E_IMAGE_ROOT"
run_pod smoke-nonroot "$E2E_IMAGE_NONROOT"
check_pod smoke-root 0
check_pod smoke-nonroot 1000

start=$SECONDS
if e2e_kubectl delete pod -n "$ns" smoke-root smoke-nonroot --wait=true --timeout=60s >/dev/null; then
    pass "pods deleted in $((SECONDS - start)) s"
else
    fail "deleting the smoke pods"
fi

e2e_summary
