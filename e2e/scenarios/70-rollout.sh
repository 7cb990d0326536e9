#!/usr/bin/env bash
# Rolling unroot out namespace by namespace, through the real API server and
# kubelet: a namespace moved off -> warn -> on gives an unchanged pod, then a
# pod with warnings and no changes, then a hardened running pod; a tenant
# allowed to label namespaces cannot set warn or off (nor create a namespace
# with them); an IPC_LOCK override namespace runs a non-root pod that keeps
# IPC_LOCK in its bounding set while the same pod elsewhere does not get it;
# invalid labels are refused; and `kubectl label --dry-run=server` of
# enforce=restricted counts the existing pods that would be denied (without
# --client-ca it names none).
#
# unroot runs installed from manifests/ (install_unroot), with the policy
# below in its ConfigMap (set_unroot_policy). Each part is a function.
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ns=unroot-e2e-rollout
hpc=unroot-e2e-hpc
elsewhere=unroot-e2e-elsewhere
tenant_ns=unroot-e2e-tenant-made
rbac=unroot-e2e-namespace-labeller

# The policy: the embedded default, with override on (so a capability that is
# not allowed is removed, not just warned about) and one namespace override.
rollout_policy() {
    cat <<'YAML'
apiVersion: unroot.dev/v1
kind: Policy
securityContext:
  override: true
  namespaceOverrides:
    - namespaceSelector:
        matchLabels:
          unroot.dev/profile: hpc
      allowedCapabilities: [NET_BIND_SERVICE, IPC_LOCK]
YAML
}

# pod NAME [CONTAINER_SECURITY_CONTEXT]: a root image that prints its uid and
# the capability sets of its PID 1, then sleeps.
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
    ${2:+securityContext: $2}
    command: ["sh", "-c", "id -u; grep -E '^Cap(Bnd|Eff):' /proc/1/status; exec sleep 600"]
YAML
}

# status_of NAME NS FIELD: a /proc/1/status line the pod printed.
status_of() {
    pod_logs "$1" "$2" | awk -v f="$3:" '$1 == f {print $2}'
}

uid_of() { pod_logs "$1" "$2" | head -n 1; }

as_tenant() { e2e_kubectl --as=tenant --as-group=system:authenticated "$@"; }

# A tenant who may create and label namespaces, and nothing else.
grant_tenant_namespace_rights() {
    e2e_kubectl apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: $rbac}
rules:
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: $rbac}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: $rbac}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: tenant}
YAML
}

# wait_for_mode NS MODE: until unroot's namespace cache has the label (a
# server-side dry run of a pod shows the mode), at most 10 s.
wait_for_mode() {
    local ns=$1 mode=$2 out deadline=$((SECONDS + 10))
    while :; do
        out=$(pod "probe-$RANDOM" | e2e_kubectl apply -n "$ns" --dry-run=server \
            -o jsonpath='{.spec.securityContext.runAsNonRoot}' -f - 2>&1 || true)
        case $mode in
        on) [[ $out == *true ]] && return 0 ;;
        warn) [[ $out == *"would set"* && $out != *true ]] && return 0 ;;
        off) [[ $out != *"would set"* && $out != *true ]] && return 0 ;;
        esac
        if ((SECONDS >= deadline)); then
            e2e_log "namespace $ns not in mode $mode after 10s: $out"
            return 1
        fi
        sleep 0.3
    done
}

# --- off -> warn -> on --------------------------------------------------------
test_off_warn_on() {
    local out stored
    # off: an administrator (system:masters) switches the namespace off.
    e2e_kubectl label namespace "$ns" unroot.dev/harden=off --overwrite >/dev/null
    wait_for_mode "$ns" off || true
    out=$(pod p-off | e2e_kubectl apply -n "$ns" -f - 2>&1 || true)
    assert_not_contains "off: no would-set warnings" "$out" "would set"
    stored=$(e2e_kubectl get pod p-off -n "$ns" -o jsonpath='[{.spec.securityContext.runAsNonRoot}][{.spec.containers[0].securityContext}][{.metadata.annotations.unroot\.dev/mutated}]' || true)
    assert_eq "off: the stored pod is unchanged" "[][][]" "$stored"
    if wait_pod_phase p-off "$ns" Running 60; then
        sleep 1
        assert_eq "off: it runs as the image's root" 0 "$(uid_of p-off "$ns")"
    else
        fail "off: the pod did not run"
    fi

    # warn: raising the mode is no weakening, so the tenant may do it.
    assert_ok "the tenant may raise off to warn" \
        as_tenant label namespace "$ns" unroot.dev/harden=warn --overwrite
    wait_for_mode "$ns" warn || true
    out=$(pod p-warn | e2e_kubectl apply -n "$ns" -f - 2>&1 || true)
    assert_contains "warn: kubectl shows what would be set on the pod" "$out" \
        "Warning: would set securityContext.runAsNonRoot=true on pod"
    assert_contains "warn: and on the container" "$out" \
        'Warning: would set securityContext.allowPrivilegeEscalation=false on container "main"'
    assert_contains "warn: and the pod is created" "$out" "pod/p-warn created"
    stored=$(e2e_kubectl get pod p-warn -n "$ns" -o jsonpath='[{.spec.securityContext.runAsNonRoot}][{.spec.containers[0].securityContext}][{.metadata.annotations.unroot\.dev/mutated}]' || true)
    assert_eq "warn: the stored pod is unchanged" "[][][]" "$stored"
    if wait_pod_phase p-warn "$ns" Running 60; then
        sleep 1
        assert_eq "warn: it still runs as root" 0 "$(uid_of p-warn "$ns")"
    else
        fail "warn: the pod did not run"
    fi

    # on
    assert_ok "the tenant may raise warn to on" \
        as_tenant label namespace "$ns" unroot.dev/harden=on --overwrite
    wait_for_mode "$ns" on || true
    out=$(pod p-on | e2e_kubectl apply -n "$ns" -f - 2>&1 || true)
    assert_not_contains "on: no would-set warnings" "$out" "would set"
    stored=$(e2e_kubectl get pod p-on -n "$ns" -o jsonpath='{.spec.securityContext.runAsNonRoot} {.spec.containers[0].securityContext.allowPrivilegeEscalation} {.metadata.annotations.unroot\.dev/mutated}' || true)
    assert_eq "on: the stored pod is hardened" "true false true" "$stored"
    if wait_pod_phase p-on "$ns" Running 60; then
        sleep 1
        assert_eq "on: it runs as non-root" 65532 "$(uid_of p-on "$ns")"
        assert_eq "on: with no effective capabilities" 0000000000000000 "$(status_of p-on "$ns" CapEff)"
    else
        fail "on: the hardened pod did not run"
    fi
}

# --- a tenant cannot weaken ---------------------------------------------------
test_tenant_cannot_weaken() {
    local out mode
    for weak in warn off; do
        out=$(as_tenant label namespace "$ns" "unroot.dev/harden=$weak" --overwrite 2>&1 || true)
        assert_contains "the tenant cannot set unroot.dev/harden=$weak" "$out" \
            "admission webhook \"validate.namespaces.unroot.dev\" denied the request: namespaces \"$ns\" is forbidden: only the policy's namespaceLabelAdmins may weaken a namespace, and user \"tenant\" is not one: unroot.dev/harden lowers hardening from on to $weak"
    done
    mode=$(e2e_kubectl get namespace "$ns" -o jsonpath='{.metadata.labels.unroot\.dev/harden}' || true)
    assert_eq "the namespace stays on" on "$mode"
    out=$(as_tenant create -f - 2>&1 <<YAML || true
apiVersion: v1
kind: Namespace
metadata:
  name: $tenant_ns
  labels: {unroot.dev/harden: "off"}
YAML
)
    assert_contains "nor create a namespace that is off" "$out" \
        "unroot.dev/harden lowers hardening from on to off"
    assert_fails "which is not created" e2e_kubectl get namespace "$tenant_ns"
    out=$(as_tenant label namespace "$ns" unroot.dev/enforce=privileged 2>&1 || true)
    assert_contains "nor lower enforcement" "$out" \
        "unroot.dev/enforce lowers Pod Security enforcement from baseline:latest to privileged:latest"
    out=$(as_tenant label namespace "$ns" team=a --overwrite 2>&1 || true)
    assert_contains "while other labels stay the tenant's to change" "$out" "labeled"
    out=$(e2e_kubectl label namespace "$ns" unroot.dev/harden=off --overwrite --dry-run=server 2>&1 || true)
    assert_contains "an administrator (system:masters) may set off" "$out" "labeled (server dry run)"
}

# --- IPC_LOCK where the policy allows it --------------------------------------
test_ipc_lock_override() {
    local out
    # IPC_LOCK is outside Pod Security baseline: the namespace pairs the
    # override with enforce=privileged (an administrator's label).
    out=$(pod mpi '{capabilities: {add: [IPC_LOCK]}}' | e2e_kubectl apply -n "$hpc" -f - 2>&1 || true)
    assert_not_contains "in the hpc namespace unroot leaves IPC_LOCK alone" "$out" 'IPC_LOCK" is removed'
    out=$(pod mpi '{capabilities: {add: [IPC_LOCK]}}' | e2e_kubectl apply -n "$elsewhere" -f - 2>&1 || true)
    assert_contains "elsewhere unroot removes IPC_LOCK and says so" "$out" \
        'unroot: spec.containers[0].securityContext.capabilities.add[0] (container "main")="IPC_LOCK" is removed by policy (securityContext.override)'
    if wait_pod_phase mpi "$hpc" Running 60; then
        sleep 1
        assert_eq "the hpc pod runs as non-root" 65532 "$(uid_of mpi "$hpc")"
        assert_eq "and keeps IPC_LOCK (bit 14) in its bounding set" 0000000000004000 "$(status_of mpi "$hpc" CapBnd)"
    else
        fail "the hpc pod did not run"
    fi
    if wait_pod_phase mpi "$elsewhere" Running 60; then
        sleep 1
        assert_eq "the same pod elsewhere runs as non-root" 65532 "$(uid_of mpi "$elsewhere")"
        assert_eq "with an empty bounding set" 0000000000000000 "$(status_of mpi "$elsewhere" CapBnd)"
    else
        fail "the pod elsewhere did not run"
    fi
}

# --- invalid labels -----------------------------------------------------------
test_invalid_labels_refused() {
    local out
    out=$(e2e_kubectl label namespace "$ns" unroot.dev/enforce=strict 2>&1 || true)
    assert_contains "an invalid enforce level is refused, even for an administrator" "$out" \
        "Namespace \"$ns\" is invalid: metadata.labels[unroot.dev/enforce]: Invalid value: \"strict\": must be one of privileged, baseline, restricted"
    out=$(e2e_kubectl label namespace "$ns" unroot.dev/harden=maybe --overwrite 2>&1 || true)
    assert_contains "an invalid hardening mode is refused" "$out" \
        'metadata.labels[unroot.dev/harden]: Invalid value: "maybe": must be one of on, warn, off'
    assert_eq "neither is stored" "[][on]" \
        "$(e2e_kubectl get namespace "$ns" -o jsonpath='[{.metadata.labels.unroot\.dev/enforce}][{.metadata.labels.unroot\.dev/harden}]')"
}

# --- the server-side dry run of enforce=restricted ----------------------------
test_enforce_dry_run() {
    local out
    # The shipped install has no --client-ca: the API server's review is
    # unauthenticated, so the dry run counts the pods without naming them (a
    # forged review must not list another tenant's pods).
    out=$(as_tenant label namespace "$ns" unroot.dev/enforce=restricted --dry-run=server 2>&1 || true)
    assert_contains "the dry run counts the unhardened pods, names the namespace and level, and gives the reasons" "$out" \
        "Warning: 2 existing pods in namespace \"$ns\" violate the new PodSecurity enforce level \"restricted:latest\": allowPrivilegeEscalation != false, runAsNonRoot != true, seccompProfile, unrestricted capabilities (pods are named only to callers authenticated with --client-ca)"
    assert_not_contains "without naming a pod" "$out" "p-off"
    assert_not_contains "the hardened pod is not counted" "$out" "p-on"
    assert_contains "nothing is changed" "$out" "(server dry run)"
    assert_eq "the label is not set" "" \
        "$(e2e_kubectl get namespace "$ns" -o jsonpath='{.metadata.labels.unroot\.dev/enforce}')"

    # For real: the tenant may raise enforcement; new pods are hardened and
    # admitted.
    out=$(as_tenant label namespace "$ns" unroot.dev/enforce=restricted 2>&1 || true)
    assert_contains "raising enforce warns the same way" "$out" "Warning: 2 existing pods in namespace \"$ns\" violate"
    out=$(pod p-restricted | e2e_kubectl apply -n "$ns" -f - 2>&1 || true)
    assert_contains "under enforce=restricted a hardened pod is admitted" "$out" "pod/p-restricted created"
    assert_ok "and runs" wait_pod_phase p-restricted "$ns" Running 60
}

cleanup() {
    reset_unroot_policy >/dev/null 2>&1 || true
    delete_namespace "$ns" "$hpc" "$elsewhere" "$tenant_ns"
    e2e_kubectl delete clusterrolebinding,clusterrole "$rbac" --ignore-not-found >/dev/null 2>&1 || true
    [[ -n ${policy_dir:-} ]] && rm -rf "$policy_dir"
}
trap cleanup EXIT

policy_dir=$(mktemp -d "${TMPDIR:-/tmp}/unroot-e2e-rollout.XXXXXX")
rollout_policy >"$policy_dir/policy.yaml"
install_unroot
set_unroot_policy "$policy_dir/policy.yaml" >/dev/null
create_namespace "$ns"
create_namespace "$hpc" unroot.dev/profile=hpc unroot.dev/enforce=privileged
create_namespace "$elsewhere" unroot.dev/enforce=privileged
label_namespace_name kube-system
grant_tenant_namespace_rights

test_off_warn_on
test_tenant_cannot_weaken
test_ipc_lock_override
test_invalid_labels_refused
test_enforce_dry_run
e2e_summary
