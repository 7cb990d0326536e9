#!/usr/bin/env bash
# A first install that cannot stop the cluster. manifests/ applied with an
# image the node does not have: for 60 s pods and namespaces are created in
# ordinary namespaces as if unroot were not there, and every webhook fails
# open. The image becomes available, the replicas go Ready, one answers the
# serving check, and from then on pods are hardened and the pod and
# namespace webhooks fail closed (failing-closed copies in
# unroot-fail-closed, the originals off): a client-side re-apply and a
# server-side apply leave that alone. A pod with a populated volume starts under fsGroupChangePolicy.
# With every replica stopped, pod and namespace creates fail closed; the
# recovery command gives the cluster back at once.
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ns=unroot-e2e-first
work=$(mktemp -d)
created_namespaces=()
cleanup() {
    install_unroot >/dev/null 2>&1 || e2e_log "reinstalling unroot after the first-install scenario failed"
    delete_namespace "$ns" "${created_namespaces[@]}"
    rm -rf "$work"
}
trap cleanup EXIT

if unroot_installed; then
    uninstall_unroot || fail "uninstalling unroot for a first install failed"
fi
create_namespace "$ns"

# A pod nothing ever starts (a scheduler that does not exist): creating it
# is all that is asked of the API server.
unscheduled_pod() {
    cat <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $1}
spec:
  schedulerName: unroot-e2e-nobody
  containers:
  - {name: main, image: $E2E_IMAGE_ROOT, imagePullPolicy: Never}
YAML
}

# --- the image cannot be pulled -----------------------------------------------
real=$(unroot_image) || fail "no unroot image"
# The same repository, a tag the node does not have (the image is named by
# its digest, REPO@sha256:..., or by a tag, REPO:TAG).
if [[ $real == *@* ]]; then repo=${real%@*}; else repo=${real%:*}; fi
missing="$repo:not-pulled-$RANDOM$RANDOM"
e2e_cluster_env
write_unroot_kustomization "$work" "$missing"
out=$(e2e_kubectl apply -k "$work" 2>&1) || fail "kubectl apply -k of manifests/ failed: $out"
pod=$(e2e_kubectl get pods -n "$UNROOT_NS" -l "$UNROOT_SELECTOR" -o jsonpath='{.items[0].metadata.name}')
assert_ok "the replicas cannot start: their image is not on the node ($missing)" \
    wait_pod_waiting_reason "$pod" "$UNROOT_NS" ErrImageNeverPull 60

start=$SECONDS
creates=0
failures=()
while ((SECONDS - start < 60)); do
    creates=$((creates + 1))
    if ! out=$(unscheduled_pod "p$creates" | e2e_kubectl create -n "$ns" -f - 2>&1); then
        failures+=("pod $creates: $out")
    fi
    created_namespaces+=("unroot-e2e-first-$creates")
    if ! out=$(e2e_kubectl create namespace "unroot-e2e-first-$creates" 2>&1); then
        failures+=("namespace $creates: $out")
    fi
    sleep 2
done
assert_eq "for 60 s, $creates pod and $creates namespace creates in ordinary namespaces succeed" "" "${failures[*]}"
assert_eq "and the pods are stored as sent" "" \
    "$(e2e_kubectl get pods -n "$ns" -o jsonpath='{.items[*].spec.securityContext.runAsNonRoot}')"
state=$(unroot_fail_closed_state)
assert_not_contains "every webhook still fails open" "$state" "=Fail"
assert_contains "and nothing records that this install served" "$state" "fail-closed: no"
assert_not_contains "nothing is turned off" "$state" "(off)"

# --- the image becomes available ------------------------------------------------
if [[ -z ${E2E_KUBECONFIG:-} ]]; then
    ctr --address "$E2E_CONTAINERD_ADDRESS" -n k8s.io images tag "$real" "$missing" >/dev/null
else
    e2e_kubectl set image deployment/unroot -n "$UNROOT_NS" "unroot=$real" >/dev/null
fi
start=$SECONDS
assert_ok "the image is there: every replica becomes Ready (the kubelet retries on its own)" wait_unroot_ready 180
echo "    Ready $((SECONDS - start)) s after the image appeared"
assert_ok "a replica answers the serving check: the pod and namespace webhooks fail closed" wait_unroot_fail_closed 90
echo "    failing closed $((SECONDS - start)) s after the image appeared"
state=$(unroot_fail_closed_state)
echo "    ${state//$'\n'/$'\n'    }"
assert_contains "mutate.pods has a failing-closed copy" "$state" \
    "MutatingWebhookConfiguration/unroot-fail-closed served=- mutate.pods.unroot.dev=Fail"
assert_contains "and so do validate.pods and validate.namespaces" "$state" \
    "ValidatingWebhookConfiguration/unroot-fail-closed served=- validate.pods.unroot.dev=Fail validate.namespaces.unroot.dev=Fail"
assert_contains "their failing-open originals are off; the advisory checks and the serving check still fail open" "$state" \
    "validate.pods.unroot.dev*=Ignore(off) validate.namespaces.unroot.dev*=Ignore(off) validate.workloads.unroot.dev=Ignore validate.policy.unroot.dev=Ignore serving-check.unroot.dev=Ignore"
assert_ok "pods are hardened through the API server" wait_unroot_answers 30
events=$(e2e_kubectl get events -n "$UNROOT_NS" --field-selector reason=Served -o jsonpath='{.items[*].involvedObject.name}' 2>&1)
assert_contains "an Event on the Lease says when" "$events" "unroot-certs"
ns_uid=$(e2e_kubectl get namespace "$UNROOT_NS" -o jsonpath='{.metadata.uid}')
for object in {mutating,validating}webhookconfiguration/{unroot,unroot-fail-closed}; do
    assert_eq "$object is owned by the namespace unroot (deleting it deletes them)" "Namespace/$UNROOT_NS/$ns_uid" \
        "$(e2e_kubectl get "$object" -o jsonpath='{range .metadata.ownerReferences[*]}{.kind}/{.name}/{.uid}{end}')"
done

# The fields a manager owns ("." and list keys only mark the path).
owned() {
    python3 -c '
import json, sys
def leaves(node, path):
    keys = [k for k in node if k not in (".", "f:name")]
    if not keys:
        yield path
    for k in keys:
        yield from leaves(node[k], path + [k])
o = json.load(sys.stdin)
print(" ".join(sorted(".".join(p) for m in o["metadata"]["managedFields"] if m["manager"] == sys.argv[1]
                        for p in leaves(m["fieldsV1"], []))))
' "$1"
}
served_fields=$(e2e_kubectl get validatingwebhookconfiguration unroot -o json --show-managed-fields | owned unroot-served)
assert_eq "in unroot, the field manager unroot-served owns the served annotation and the objectSelector of the originals it turned off, nothing else" \
    'f:metadata.f:annotations.f:unroot.dev/served f:webhooks.k:{"name":"validate.namespaces.unroot.dev"}.f:objectSelector f:webhooks.k:{"name":"validate.pods.unroot.dev"}.f:objectSelector' \
    "$(tr ' ' '\n' <<<"$served_fields" | sed -E 's/(f:objectSelector).*/\1/' | sort -u | tr '\n' ' ' | sed 's/ $//')"
assert_contains "in unroot-fail-closed, the copies' failurePolicy" \
    "$(e2e_kubectl get validatingwebhookconfiguration unroot-fail-closed -o json --show-managed-fields | owned unroot-served)" \
    'f:webhooks.k:{"name":"validate.pods.unroot.dev"}.f:failurePolicy'

# --- upgrades never go back to fail-open ------------------------------------------
# A client-side apply (kubectl apply -k, what the README documents) sets every
# field the manifests name to their value: none of what unroot changed is one.
# The API server counts every change of a configuration's webhooks in its
# generation, so a change undone by unroot meanwhile would still show.
generations() {
    e2e_kubectl get mutatingwebhookconfigurations,validatingwebhookconfigurations -l "$UNROOT_SELECTOR" \
        -o jsonpath='{range .items[*]}{.kind}/{.metadata.name}={.metadata.generation} {end}'
}
before=$(generations)
out=$(e2e_kubectl apply -k "$work" 2>&1)
for object in {mutating,validating}webhookconfiguration.admissionregistration.k8s.io/{unroot,unroot-fail-closed}; do
    assert_contains "a re-apply of the same manifests leaves $object unchanged" "$out" "$object unchanged"
done
# A server-side apply of the configurations meets no field of unroot's.
e2e_kubectl kustomize "$work" | select_kinds MutatingWebhookConfiguration ValidatingWebhookConfiguration >"$work/webhooks.yaml"
out=$(e2e_kubectl apply --server-side -f "$work/webhooks.yaml" 2>&1) || true
assert_contains "a server-side apply of the configurations succeeds, with no conflict" "$out" \
    "validatingwebhookconfiguration.admissionregistration.k8s.io/unroot-fail-closed serverside-applied"
assert_ok "and the install still fails closed" unroot_serves_fail_closed
assert_eq "neither apply changed a webhook (generations)" "$before" "$(generations)"

# --- fsGroupChangePolicy on a real node -----------------------------------------------
# A ConfigMap of 200 files as the pod's volume: the kubelet sets it up group-owned
# by the fsGroup unroot adds, with the OnRootMismatch policy unroot adds next to it.
python3 -c '
import json
print(json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "files"},
                  "data": {f"f{i:03}": "x" * 100 for i in range(200)}}))' | e2e_kubectl apply -n "$ns" -f - >/dev/null
e2e_kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: volume}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {name: data, emptyDir: {}}
  - {name: files, configMap: {name: files}}
  initContainers:
  - name: fill
    image: $E2E_IMAGE_ROOT
    imagePullPolicy: Never
    command: ["sh", "-c", "for i in \$(seq 200); do echo x > /data/f\$i; done"]
    volumeMounts: [{name: data, mountPath: /data}]
  containers:
  - name: main
    image: $E2E_IMAGE_ROOT
    imagePullPolicy: Never
    command: ["sh", "-c", "ls /data | wc -l; stat -c %g /data /files; exec sleep 600"]
    volumeMounts: [{name: data, mountPath: /data}, {name: files, mountPath: /files}]
YAML
assert_eq "the stored pod has fsGroup 65532 with fsGroupChangePolicy OnRootMismatch" "65532 OnRootMismatch" \
    "$(e2e_kubectl get pod volume -n "$ns" -o jsonpath='{.spec.securityContext.fsGroup} {.spec.securityContext.fsGroupChangePolicy}')"
if wait_pod_phase volume "$ns" Running 60; then
    sleep 1
    assert_eq "it starts: its populated volumes are group-owned by 65532" "200 65532 65532" "$(pod_logs volume "$ns" | tr '\n' ' ' | sed 's/ $//')"
else
    fail "the pod with volumes under fsGroupChangePolicy did not start"
fi

# --- every replica stopped: fail closed, then the recovery command -------------------
assert_ok "unroot scaled to 0: no replica running, no Endpoint" unroot_down
out=$(unscheduled_pod down | e2e_kubectl create -n "$ns" -f - 2>&1 || true)
assert_contains "pod creation in an ordinary namespace fails closed" "$out" 'failed calling webhook "mutate.pods.unroot.dev"'
created_namespaces+=(unroot-e2e-first-down)
out=$(e2e_kubectl create namespace unroot-e2e-first-down 2>&1 || true)
assert_contains "and so does namespace creation" "$out" 'failed calling webhook "validate.namespaces.unroot.dev"'
# The recovery command (README.md, "Install"): unroot down for good, the cluster back.
out=$(e2e_kubectl delete mutatingwebhookconfiguration,validatingwebhookconfiguration -l app.kubernetes.io/name=unroot 2>&1)
assert_contains "the recovery command deletes the configurations" "$out" 'validatingwebhookconfiguration.admissionregistration.k8s.io "unroot-fail-closed" deleted'
assert_ok "pods are created again at once" e2e_kubectl create -n "$ns" -f <(unscheduled_pod after)
assert_ok "and namespaces" e2e_kubectl create namespace unroot-e2e-first-down

# Re-applied, unroot fails open until it has served again, then closed.
assert_ok "a re-install serves and fails closed again" install_unroot

e2e_summary
