#!/usr/bin/env bash
# The documented uninstall: the webhook configurations first, then
# `kubectl delete -k`. Nothing of unroot is left behind (namespace, cluster
# roles and bindings, webhook configurations), and pods are created (and run
# unmodified) afterwards.
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ns=unroot-e2e-after
trap 'delete_namespace "$ns"' EXIT
install_unroot || fail "installing unroot failed"

start=$SECONDS
assert_ok "uninstall: webhook configurations, then kubectl delete -k; the namespace is gone" uninstall_unroot
echo "    uninstalled in $((SECONDS - start)) s"

for object in namespace/unroot clusterrole/unroot clusterrole/unroot-identity clusterrolebinding/unroot \
    mutatingwebhookconfiguration/unroot validatingwebhookconfiguration/unroot; do
    assert_fails "$object is gone" e2e_kubectl get "$object"
done
# "No resources found" goes to stderr; a failing query fails the check.
if left=$(e2e_kubectl get namespaces,clusterroles,clusterrolebindings,mutatingwebhookconfigurations,validatingwebhookconfigurations \
    -l app.kubernetes.io/name=unroot -o name 2>/dev/null) &&
    left+=$(e2e_kubectl get all,configmaps,secrets,serviceaccounts,roles,rolebindings,leases,networkpolicies,poddisruptionbudgets \
        --all-namespaces -l app.kubernetes.io/name=unroot -o name 2>/dev/null); then
    assert_eq "no object labelled app.kubernetes.io/name=unroot is left anywhere" "" "$left"
else
    fail "listing what is left of unroot failed"
fi

create_namespace "$ns"
e2e_kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: after}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: $E2E_IMAGE_ROOT, imagePullPolicy: Never, command: ["sh", "-c", "id -u; exec sleep 600"]}
YAML
if wait_pod_phase after "$ns" Running 60; then
    sleep 1
    assert_eq "a pod is created and runs, unmodified (as the image's root), after the uninstall" 0 "$(pod_logs after "$ns")"
else
    fail "pod creation does not work after the uninstall"
fi
assert_eq "nothing was mutated" "" "$(e2e_kubectl get pod after -n "$ns" -o jsonpath='{.spec.securityContext.runAsUser}')"

e2e_summary
