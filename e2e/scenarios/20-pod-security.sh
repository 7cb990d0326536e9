#!/usr/bin/env bash
# Pod Security through the real API server: enforce denies with the upstream
# message, warn admits with warnings, workloads are warned not denied, a
# privileged ephemeral container is refused (and, without --client-ca, any
# 1.20 ephemeral container: judging it needs the stored pod), and with
# unroot down pods in covered namespaces fail closed while kube-system keeps
# working.
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

strict=unroot-e2e-strict
warn=unroot-e2e-warn
cleanup() {
    install_unroot >/dev/null || e2e_log "bringing unroot back up failed"
    delete_namespace "$strict" "$warn"
}
trap cleanup EXIT
install_unroot || fail "installing unroot failed"
create_namespace "$strict" unroot.dev/enforce=restricted
create_namespace "$warn" unroot.dev/enforce=privileged unroot.dev/warn=restricted
label_namespace_name kube-system

privileged_pod() {
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
    command: ["sleep", "600"]
    securityContext: {privileged: true}
YAML
}

out=$(privileged_pod priv | e2e_kubectl apply -n "$strict" -f - 2>&1 || true)
assert_contains "a privileged pod is denied in an enforce=restricted namespace" "$out" \
    'pods "priv" is forbidden: violates PodSecurity "restricted:latest": privileged (container "main" must not set securityContext.privileged=true)'
assert_fails "and not stored" e2e_kubectl get pod priv -n "$strict"

out=$(privileged_pod priv | e2e_kubectl apply -n "$warn" -f - 2>&1)
assert_contains "in a warn=restricted namespace it is created" "$out" "pod/priv created"
assert_contains "and the client sees the warning" "$out" \
    'Warning: would violate PodSecurity "restricted:latest": privileged (container "main" must not set securityContext.privileged=true)'

out=$(e2e_kubectl apply -n "$strict" -f - 2>&1 <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: privileged-template}
spec:
  replicas: 0
  selector: {matchLabels: {app: p}}
  template:
    metadata: {labels: {app: p}}
    spec:
      containers:
      - {name: main, image: $E2E_IMAGE_ROOT, securityContext: {privileged: true}}
YAML
)
assert_contains "a Deployment with a privileged template is created" "$out" "deployment.apps/privileged-template created"
assert_contains "with a warning, not a deny" "$out" 'Warning: would violate PodSecurity "restricted:latest": privileged'

# Ephemeral containers (1.20: the subresource carries an EphemeralContainers list).
e2e_kubectl apply -n "$strict" -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: target}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: $E2E_IMAGE_ROOT, imagePullPolicy: Never, command: ["sleep", "600"]}
YAML
assert_ok "a hardened pod runs in the restricted namespace" wait_pod_phase target "$strict" Running 60
ephemeral() {
    cat <<JSON
{"apiVersion": "v1", "kind": "EphemeralContainers", "metadata": {"name": "target", "namespace": "$strict"},
 "ephemeralContainers": [{"name": "$1", "image": "$E2E_IMAGE_ROOT", "imagePullPolicy": "Never",
   "command": ["sleep", "600"], "terminationMessagePolicy": "File"$2}]}
JSON
}
out=$(ephemeral debug ', "securityContext": {"privileged": true}' |
    e2e_kubectl replace --raw "/api/v1/namespaces/$strict/pods/target/ephemeralcontainers" -f - 2>&1 || true)
# 1.20 itself forbids a securityContext on ephemeral containers.
assert_contains "adding a privileged ephemeral container is denied" "$out" 'Forbidden'
assert_not_contains "unroot did not add fields 1.20 forbids" "$out" 'Warning: unroot'
out=$(ephemeral debug2 '' |
    e2e_kubectl replace --raw "/api/v1/namespaces/$strict/pods/target/ephemeralcontainers" -f - 2>&1 || true)
# 1.20's review holds only the ephemeral containers; unroot reads the stored
# pod only for an authenticated caller (40-trust-and-identity.sh runs that
# with --client-ca), and the shipped install has no --client-ca.
assert_contains "a plain one is refused: judging it needs the stored pod, which unroot reads for no unauthenticated caller" "$out" \
    'unroot cannot judge ephemeral containers for pod "target" from an unauthenticated caller'
assert_eq "no ephemeral container was added" "" \
    "$(e2e_kubectl get pod target -n "$strict" -o jsonpath='{.spec.ephemeralContainers[*].name}')"

# unroot down (no replica, so the Service has no Endpoints): covered
# namespaces fail closed, kube-system still works.
assert_ok "unroot scaled to 0: no replica running, no Endpoint" unroot_down
out=$(privileged_pod down | sed 's/privileged: true/privileged: false/' | e2e_kubectl apply -n "$warn" -f - 2>&1 || true)
assert_contains "with unroot down, pod creation in a covered namespace fails" "$out" 'failed calling webhook "mutate.pods.unroot.dev"'
out=$(e2e_kubectl run unroot-e2e-probe -n kube-system --image="$E2E_IMAGE_ROOT" --image-pull-policy=Never --restart=Never --dry-run=server -o name 2>&1)
assert_eq "kube-system, excluded, still admits pods" "pod/unroot-e2e-probe" "$out"
assert_ok "unroot comes back (its own namespace is excluded too)" install_unroot
out=$(privileged_pod back | sed 's/privileged: true/privileged: false/' | e2e_kubectl apply -n "$warn" --dry-run=server -f - 2>&1 || true)
assert_contains "and covered namespaces admit pods again" "$out" "pod/back created (server dry run)"

e2e_summary
