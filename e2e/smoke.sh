#!/usr/bin/env bash
# Smoke test of the e2e cluster itself (no webhook involved): pods from both
# test images reach Running, run as the image's user, and `kubectl logs` and
# `kubectl exec` work through the API server to the kubelet. On the local
# cluster, also the network: every component listens on loopback or the
# host's bridge address only, and a pod has no route but its subnet's, and
# reaches the API server at the bridge address.
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

# --- the local cluster's network ---------------------------------------------
if [[ -z ${E2E_KUBECONFIG:-} ]]; then
    e2e_cluster_env
    # Every socket the cluster's processes listen on (TCP and UDP, v4 and v6).
    pids=$(cat "$E2E_RUN"/pids/* 2>/dev/null | awk '{print $1}' | sort -u | paste -sd'|')
    listeners=$(ss -H -lntup 2>/dev/null | grep -E "pid=($pids)," | awk '{print $5}' | sort -u)
    bad=$(grep -vE "^(127\.0\.0\.1|\[::1\]|${E2E_BRIDGE_IP//./\\.}):[0-9]+$" <<<"$listeners" || true)
    if [[ -n $listeners && -z $bad ]]; then
        pass "the cluster listens only on loopback and the bridge address $E2E_BRIDGE_IP: $(tr '\n' ' ' <<<"$listeners")"
    else
        fail "the cluster listens beyond loopback and $E2E_BRIDGE_IP: ${bad:-nothing found}"
    fi
    # /proc/net/route: destination and mask in little-endian hex.
    routes=$(e2e_kubectl exec -n "$ns" smoke-root -- cat /proc/net/route 2>&1 | awk 'NR > 1 {print $2 "/" $8}')
    subnet=$(python3 -c '
import ipaddress, socket, struct, sys
n = ipaddress.ip_network(sys.argv[1])
le = lambda a: "%08X" % struct.unpack("<I", socket.inet_aton(str(a)))[0]
print(le(n.network_address) + "/" + le(n.netmask))' "$E2E_POD_SUBNET")
    assert_eq "a pod's only route is its on-link subnet (no default route)" "$subnet" "$routes"
    out=$(e2e_kubectl exec -n "$ns" smoke-root -- nc -w 3 "$E2E_BRIDGE_IP" "$E2E_API_PORT" </dev/null 2>&1 && echo connected) || true
    assert_contains "a pod reaches the API server at $E2E_BRIDGE_IP:$E2E_API_PORT" "$out" connected
fi

start=$SECONDS
if e2e_kubectl delete pod -n "$ns" smoke-root smoke-nonroot --wait=true --timeout=60s >/dev/null; then
    pass "pods deleted in $((SECONDS - start)) s"
else
    fail "deleting the smoke pods"
fi

e2e_summary
