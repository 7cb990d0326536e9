#!/usr/bin/env bash
# Pods unroot hardens actually run: a root image with no securityContext runs
# as non-root with no capabilities, no new privileges and seccomp; without
# the webhook the same pod runs as root; no combination of image user and
# runAsUser yields a pod the kubelet refuses; controllers' pods are hardened;
# a server-side dry run returns the mutated pod and stores nothing.
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ns=unroot-e2e-harden
trap 'delete_namespace "$ns"' EXIT
# The baseline needs no webhook at all: uninstall unroot if an earlier
# script left it installed.
if unroot_installed; then
    uninstall_unroot || fail "uninstalling unroot for the baseline failed"
fi
create_namespace "$ns" unroot.dev/enforce=privileged unroot.dev/warn=privileged unroot.dev/audit=privileged

# pod NAME IMAGE [POD_SECURITY_CONTEXT_JSON] [CONTAINER_SECURITY_CONTEXT_JSON]
pod() {
    local name=$1 image=$2 psc=${3:-} csc=${4:-}
    cat <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $name}
spec:
  terminationGracePeriodSeconds: 1
  ${psc:+securityContext: $psc}
  containers:
  - name: main
    image: $image
    imagePullPolicy: Never
    ${csc:+securityContext: $csc}
    command: ["sh", "-c", "id -u; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; exec sleep 600"]
YAML
}

status_of() { # NAME FIELD: the value of a /proc/self/status line the pod printed
    pod_logs "$1" "$ns" | awk -v f="$2:" '$1 == f {print $2}'
}

# --- without the webhook -----------------------------------------------------
pod plain-root "$E2E_IMAGE_ROOT" | e2e_kubectl apply -n "$ns" -f - >/dev/null
if wait_pod_phase plain-root "$ns" Running 60; then
    sleep 1
    assert_eq "without unroot, a root image runs as uid 0" 0 "$(pod_logs plain-root "$ns" | head -n 1)"
else
    fail "without unroot, the root pod did not run"
fi
pod refused "$E2E_IMAGE_ROOT" "" "{runAsNonRoot: true}" | e2e_kubectl apply -n "$ns" -f - >/dev/null
assert_ok "runAsNonRoot on a root image without runAsUser is refused by the kubelet" \
    wait_pod_waiting_reason refused "$ns" CreateContainerConfigError 60

# --- with the webhook (installed in the cluster from manifests/) --------------
assert_ok "kubectl apply -k installs unroot; every replica becomes Ready and answers" install_unroot

pod hardened "$E2E_IMAGE_ROOT" | e2e_kubectl apply -n "$ns" -f - >/dev/null
stored=$(e2e_kubectl get pod hardened -n "$ns" -o jsonpath='{.spec.securityContext.runAsNonRoot} {.spec.securityContext.runAsUser} {.spec.securityContext.seccompProfile.type} {.spec.containers[0].securityContext.allowPrivilegeEscalation} {.spec.containers[0].securityContext.capabilities.drop}')
assert_eq "the stored pod carries the hardened securityContext" 'true 65532 RuntimeDefault false ["ALL"]' "$stored"
if wait_pod_phase hardened "$ns" Running 60; then
    sleep 1
    assert_eq "the hardened pod runs as a non-zero uid" 65532 "$(pod_logs hardened "$ns" | head -n 1)"
    assert_eq "it has no effective capabilities" 0000000000000000 "$(status_of hardened CapEff)"
    assert_eq "it cannot gain privileges" 1 "$(status_of hardened NoNewPrivs)"
    assert_eq "it runs under seccomp filtering" 2 "$(status_of hardened Seccomp)"
else
    fail "the hardened pod did not reach Running"
fi

# Every combination of image user and runAsUser at pod and container level.
i=0
for image in "$E2E_IMAGE_ROOT" "$E2E_IMAGE_NONROOT"; do
    for psc in "" "{runAsUser: 2000}"; do
        for csc in "" "{runAsUser: 3000}"; do
            i=$((i + 1))
            pod "combo-$i" "$image" "$psc" "$csc" | e2e_kubectl apply -n "$ns" -f - >/dev/null
        done
    done
done
for n in $(seq "$i"); do
    assert_ok "combination $n (image, pod runAsUser, container runAsUser) reaches Running" wait_pod_phase "combo-$n" "$ns" Running 90
done

# Controllers' pods: created by the ReplicaSet controller with generateName.
e2e_kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: web, image: $E2E_IMAGE_ROOT, imagePullPolicy: Never, command: ["sleep", "600"]}
YAML
if e2e_kubectl rollout status deployment/web -n "$ns" --timeout=90s >/dev/null 2>&1; then
    pass "a Deployment's pods run"
else
    fail "the Deployment did not roll out: $(e2e_kubectl get pods -n "$ns" -l app=web -o wide 2>&1)"
fi
users=$(e2e_kubectl get pods -n "$ns" -l app=web -o jsonpath='{range .items[*]}{.spec.securityContext.runAsUser}{" "}{end}')
assert_eq "the Deployment's pods were hardened" "65532 65532 " "$users"

# A server-side dry run returns the mutated pod and stores nothing.
dry=$(pod dry-run "$E2E_IMAGE_ROOT" | e2e_kubectl apply -n "$ns" --dry-run=server -o jsonpath='{.spec.securityContext.runAsNonRoot}' -f -)
assert_eq "kubectl apply --dry-run=server returns the mutated pod" true "$dry"
assert_fails "and stores nothing" e2e_kubectl get pod dry-run -n "$ns"

e2e_summary
