#!/usr/bin/env bash
# The documented uninstall: the webhook configurations first, then
# `kubectl delete -k`. Nothing of unroot is left behind: namespace, cluster
# roles and bindings, webhook configurations, and what unroot created at run
# time (an identity ConfigMap in a tenant namespace, owned by unroot's
# Namespace, goes with the garbage collector; Events go with the namespace).
# Pods are created (and run unmodified) afterwards. Then, from a new
# install, deleting only the namespace: the garbage collector deletes the
# fail-closed configurations too, so pod creation comes back by itself.
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

require_unroot_binary
ns=unroot-e2e-after
hub=unroot-e2e-uninstall-hub
work=$(mktemp -d)
cleanup() {
    delete_namespace "$ns" "$hub"
    rm -rf "$work"
}
trap cleanup EXIT
install_unroot || fail "installing unroot failed"

# --- something unroot creates at run time: an identity ConfigMap ------------------
# A provisioning policy (the init container never runs: the pod names a
# scheduler that does not exist, so only its admission matters).
python3 - "$E2E_ROOT/webhook-config/policy.yaml" "$work/policy.yaml" <<'PY'
import re, sys
src, dst = sys.argv[1:]
provisioning = """provisioning:
  enabled: true
  namespaceSelector:
    matchLabels:
      unroot.dev/provisioning: enabled
  trustedRequesters: [unroot-e2e-admin]
  initContainer:
    image: docker.io/unroot-e2e/provisioner@sha256:0000000000000000000000000000000000000000000000000000000000000000
  homeVolume:
    name: home
    mountPath: /home
    emptyDir: {}
"""
text = re.sub(r"(?ms)^provisioning:\n.*?(?=^webhook:)", provisioning + "\n", open(src).read())
open(dst, "w").write(text)
PY
assert_ok "a provisioning policy is in force" set_unroot_policy "$work/policy.yaml"
assert_ok "unroot may write identity ConfigMaps for unauthenticated callers" set_unroot_args --unauthenticated-provisioning
create_namespace "$hub" unroot.dev/provisioning=enabled
grant_unroot_identity "$hub"
out=$(e2e_kubectl create -n "$hub" -f - 2>&1 <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: notebook
  annotations: {unroot.dev/user: alice, unroot.dev/uid: "20001", unroot.dev/gid: "20001"}
spec:
  schedulerName: unroot-e2e-nobody
  containers:
  - {name: notebook, image: $E2E_IMAGE_ROOT, imagePullPolicy: Never}
YAML
) || fail "the provisioned pod was not created: $out"
ns_uid=$(e2e_kubectl get namespace "$UNROOT_NS" -o jsonpath='{.metadata.uid}')
assert_eq "unroot wrote the identity ConfigMap, owned by its Namespace" "unroot/Namespace/$UNROOT_NS/$ns_uid" \
    "$(e2e_kubectl get configmap unroot-identity-alice -n "$hub" \
        -o jsonpath='{.metadata.labels.app\.kubernetes\.io/managed-by}/{range .metadata.ownerReferences[*]}{.kind}/{.name}/{.uid}{end}')"

# --- the documented uninstall ---------------------------------------------------------
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
# The garbage collector deletes what the namespace owned once it is gone.
deadline=$((SECONDS + 60))
while left=$(e2e_kubectl get configmaps --all-namespaces -l app.kubernetes.io/managed-by=unroot -o name 2>&1) &&
    [[ -n $left ]] && ((SECONDS < deadline)); do
    sleep 1
done
assert_eq "no ConfigMap unroot wrote at run time is left in any namespace" "" "$left"
assert_eq "no Event of unroot's is left (it records them in its namespace only)" "" \
    "$(e2e_kubectl get events -n "$UNROOT_NS" -o name 2>/dev/null)"

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

# --- deleting only the namespace of a fail-closed install ------------------------------
assert_ok "a new install serves and fails closed" install_unroot
start=$SECONDS
e2e_kubectl delete namespace "$UNROOT_NS" --wait=false >/dev/null
deadline=$((SECONDS + 180))
while e2e_kubectl get namespace "$UNROOT_NS" >/dev/null 2>&1 && ((SECONDS < deadline)); do
    sleep 1
done
assert_fails "the namespace unroot is deleted (kubectl delete namespace unroot)" e2e_kubectl get namespace "$UNROOT_NS"
deadline=$((SECONDS + 60))
while left=$(e2e_kubectl get mutatingwebhookconfigurations,validatingwebhookconfigurations -l "$UNROOT_SELECTOR" -o name 2>&1) &&
    [[ -n $left ]] && ((SECONDS < deadline)); do
    sleep 1
done
assert_eq "the garbage collector deleted the webhook configurations it owned" "" "$left"
echo "    namespace and configurations gone $((SECONDS - start)) s after the delete"
assert_ok "pods are created again without unroot" e2e_kubectl run after-namespace -n "$ns" --image="$E2E_IMAGE_ROOT" \
    --image-pull-policy=Never --restart=Never --dry-run=server
dir=$(unroot_kustomization)
e2e_kubectl delete -k "$dir" --ignore-not-found --wait=false >/dev/null
rm -rf "$dir"
assert_fails "kubectl delete -k takes the cluster roles" e2e_kubectl get clusterrole unroot

e2e_summary
