#!/usr/bin/env bash
# The trust bundle and user provisioning on running pods: a non-root pod reads
# the cluster CA at /etc/ssl/certs; a spawner-created pod runs as its user,
# with passwd/group from the identity ConfigMap and a home directory made by
# the vetted init container, which held only the capabilities the policy
# grants; a dry run writes no ConfigMap; a tenant forging an identity is
# denied; under enforce=restricted the provisioned pod is admitted (its init
# container exempt by provenance) and a look-alike with a tagged image is not;
# an operator's label and ephemeral container on that pod are judged without
# blaming the init container; identity ConfigMaps of a denied pod and of a
# deleted pod are collected after the grace period, a mounted one is kept.
# unroot runs in the cluster: the policy is its ConfigMap, and it may write
# identity ConfigMaps only where the platform bound ClusterRole unroot-identity.
# It writes them only for authenticated callers: with the shipped args (no
# --client-ca) a provisioned pod is denied; with --client-ca and
# --client-ca-name the API server presents its webhook client certificate
# (e2e/cluster.sh configures it), and a caller without one, or with one from
# the same CA for another name, is refused at the TLS handshake.
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_unroot_binary

trust=unroot-e2e-trust
hub=unroot-e2e-hub
strict=unroot-e2e-hub-strict
unbound=unroot-e2e-hub-unbound
work=$(mktemp -d)
cleanup() {
    reset_unroot_policy || e2e_log "restoring the shipped policy failed"
    # The manifests' args again (set_unroot_args below changed them).
    install_unroot >/dev/null || e2e_log "restoring unroot's args failed"
    e2e_kubectl delete secret unroot-client-ca -n "$UNROOT_NS" --ignore-not-found >/dev/null 2>&1 || true
    delete_namespace "$trust" "$hub" "$strict" "$unbound"
    rm -rf "$work"
}
trap cleanup EXIT
install_unroot || fail "installing unroot failed"
create_namespace "$trust" unroot.dev/trust-bundle=enabled unroot.dev/enforce=restricted
create_namespace "$hub" unroot.dev/provisioning=enabled unroot.dev/enforce=baseline
create_namespace "$strict" unroot.dev/provisioning=enabled unroot.dev/enforce=restricted
create_namespace "$unbound" unroot.dev/provisioning=enabled unroot.dev/enforce=baseline

# The provisioner image, pinned by the digest containerd recorded at import.
digest=$(e2e_kubectl get node localhost -o jsonpath='{range .status.images[*]}{.names[*]}{"\n"}{end}' |
    tr ' ' '\n' | grep -m1 '^docker.io/unroot-e2e/provisioner@sha256:' || true)
if [[ -z $digest ]]; then
    # The kubelet reports images lazily; containerd has the digest already.
    eval "$("$E2E_DIR/cluster.sh" env)"
    digest="docker.io/unroot-e2e/provisioner@$(ctr --address "$E2E_CONTAINERD_ADDRESS" -n k8s.io images ls |
        awk '$1 == "docker.io/unroot-e2e/provisioner:1" {print $3}')"
fi
assert_contains "the provisioner image is pinned by digest" "$digest" "@sha256:"
python3 - "$E2E_ROOT/webhook-config/policy.yaml" "$work/policy.yaml" "$digest" <<'PY'
import re, sys
src, dst, image = sys.argv[1:]
text = open(src).read()
provisioning = f"""provisioning:
  enabled: true
  namespaceSelector:
    matchLabels:
      unroot.dev/provisioning: enabled
  trustedRequesters: [unroot-e2e-admin]
  uidRange: {{min: 1000, max: 60000}}
  gidRange: {{min: 1000, max: 60000}}
  initContainer:
    name: unroot-provision
    image: {image}
    command: ["/bin/sh", "-c", "grep CapEff /proc/self/status; exec /bin/sh /provision.sh"]
  capabilities: [CHOWN, DAC_OVERRIDE, FOWNER]
  homeVolume:
    name: home
    mountPath: /home
    emptyDir: {{}}
"""
text = re.sub(r"(?ms)^provisioning:\n.*?(?=^webhook:)", provisioning + "\n", text)
open(dst, "w").write(text)
PY
assert_ok "the e2e policy is valid" "$E2E_UNROOT_BINARY" policy validate "$work/policy.yaml"
assert_ok "every replica runs it once it is the policy ConfigMap" set_unroot_policy "$work/policy.yaml"
# Provisioning namespaces only: what the README asks of the platform.
grant_unroot_identity "$hub"
grant_unroot_identity "$strict"

# --- trust bundle --------------------------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/ca.key" -out "$work/ca.crt" -days 1 \
    -subj "/CN=unroot e2e proxy CA" >/dev/null 2>&1
e2e_kubectl create configmap trust-bundle -n "$trust" --from-file=ca-certificates.crt="$work/ca.crt" >/dev/null
e2e_kubectl apply -n "$trust" -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: model-server}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: $E2E_IMAGE_ROOT
    imagePullPolicy: Never
    command: ["sh", "-c", "id -u; echo \$SSL_CERT_FILE; cat /etc/ssl/certs/ca-bundle.crt; exec sleep 600"]
YAML
if wait_pod_phase model-server "$trust" Running 60; then
    sleep 1
    logs=$(pod_logs model-server "$trust")
    assert_eq "the model server runs as non-root" 65532 "$(head -n 1 <<<"$logs")"
    assert_eq "SSL_CERT_FILE points into the bundle" /etc/ssl/certs/ca-certificates.crt "$(sed -n 2p <<<"$logs")"
    assert_contains "the non-root user reads the cluster CA at /etc/ssl/certs" "$logs" "$(sed -n 2p "$work/ca.crt")"
else
    fail "the trust-bundle pod did not run"
fi

# --- provisioning --------------------------------------------------------------
notebook() { # NAME USER UID
    cat <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $1
  annotations:
    unroot.dev/user: "$2"
    unroot.dev/uid: "$3"
    unroot.dev/gid: "$3"
    unroot.dev/groups: "research:3001"
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: notebook
    image: $E2E_IMAGE_ROOT
    imagePullPolicy: Never
    command: ["sh", "-c", "whoami; id; stat -c '%u:%g %a' /home/$2; exec sleep 600"]
YAML
}
# --- authenticated callers -------------------------------------------------------
out=$(notebook jupyter-early early 2010 | e2e_kubectl apply -n "$hub" -f - 2>&1 || true)
assert_contains "with the shipped args (no --client-ca) a provisioned pod is denied" "$out" \
    "unroot does not provision pods for unauthenticated callers: writing the identity ConfigMap $hub/unroot-identity-early is a side effect"
assert_fails "and no identity ConfigMap is written" e2e_kubectl get configmap unroot-identity-early -n "$hub"
if [[ -n ${E2E_WEBHOOK_CLIENT_CA:-} ]]; then
    e2e_kubectl create secret generic unroot-client-ca -n "$UNROOT_NS" \
        --from-file=ca.crt="$E2E_WEBHOOK_CLIENT_CA" >/dev/null
    auth_args=(--client-ca=/etc/unroot/client-ca/ca.crt "--client-ca-name=$E2E_WEBHOOK_CLIENT_NAME")
else
    e2e_log "another cluster: its API server's webhook client certificate is unknown; provisioning runs with --unauthenticated-provisioning"
    auth_args=(--unauthenticated-provisioning)
fi
# A short sweep, for the collection at the end (one rollout for both).
sweep_args=(--identity-sweep-interval=2s --identity-grace=5s)
assert_ok "unroot runs with ${auth_args[*]} ${sweep_args[*]}" set_unroot_args "${auth_args[@]}" "${sweep_args[@]}"
if [[ -n ${E2E_WEBHOOK_CLIENT_CA:-} ]]; then
    replica_ip=$(unroot_pods | awk 'NR == 1 {print $2}')
    call() { # CURL-ARGS...: the HTTP status of a POST to a replica's /mutate, 000 for none
        curl -s -k --max-time 5 -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
            -d '{}' "$@" "https://$replica_ip:8443/mutate" || true
    }
    assert_eq "a caller without a client certificate is refused at the TLS handshake, before any HTTP" \
        000 "$(call)"
    assert_eq "one with the API server's webhook client certificate gets an HTTP answer" \
        400 "$(call --cert "$E2E_WEBHOOK_CLIENT_CERT" --key "$E2E_WEBHOOK_CLIENT_KEY")"
    assert_eq "one with a certificate from the same CA for another name is refused at the handshake" \
        000 "$(call --cert "$E2E_WEBHOOK_OTHER_CERT" --key "$E2E_WEBHOOK_OTHER_KEY")"
    refused=0
    while read -r pod _; do
        v=$(unroot_metrics "$pod" | awk '$1 == "unroot_tls_handshake_failures_total{reason=\"unauthenticated\"}" {print $2}')
        v=${v:-0}
        refused=$((refused + ${v%.*}))
    done < <(unroot_pods)
    assert_eq "both refusals are counted as unauthenticated" True "$( ((refused >= 2)) && echo True || echo False)"
fi

notebook jupyter-alice alice 2001 | e2e_kubectl apply -n "$hub" -f - >/dev/null
if wait_pod_phase jupyter-alice "$hub" Running 90; then
    sleep 1
    logs=$(pod_logs jupyter-alice "$hub" notebook)
    assert_eq "whoami prints the user's name" alice "$(sed -n 1p <<<"$logs")"
    assert_contains "id prints the user and its groups" "$(sed -n 2p <<<"$logs")" "uid=2001(alice) gid=2001(alice) groups="
    assert_contains "including the supplementary group" "$(sed -n 2p <<<"$logs")" "3001(research)"
    assert_eq "the home directory was made by the init container, owned by the user, mode 0700" "2001:2001 700" "$(sed -n 3p <<<"$logs")"
    # CHOWN (bit 0), DAC_OVERRIDE (bit 1), FOWNER (bit 3): 0xb, nothing more.
    assert_contains "the init container held only CHOWN, DAC_OVERRIDE and FOWNER" \
        "$(pod_logs jupyter-alice "$hub" unroot-provision)" "CapEff:	000000000000000b"
else
    fail "the provisioned pod did not run"
fi
cm=$(e2e_kubectl get configmap unroot-identity-alice -n "$hub" -o jsonpath='{.data.passwd}{"|"}{.data.group}' 2>&1)
assert_contains "the identity ConfigMap holds the user's passwd line" "$cm" "alice:x:2001:2001:"
assert_contains "and its groups with members" "$cm" "research:x:3001:alice"

out=$(notebook jupyter-bob bob 2002 | e2e_kubectl apply -n "$hub" --dry-run=server -f - 2>&1)
assert_contains "a server-side dry run is admitted" "$out" "created (server dry run)"
assert_fails "and writes no identity ConfigMap" e2e_kubectl get configmap unroot-identity-bob -n "$hub"

out=$(notebook jupyter-dave dave 2005 | e2e_kubectl apply -n "$unbound" -f - 2>&1 || true)
assert_contains "without the unroot-identity RoleBinding in its namespace, a provisioned pod is refused" "$out" \
    "failed to apply the identity ConfigMap $unbound/unroot-identity-dave"
assert_contains "because unroot's RBAC does not reach there" "$out" 'forbidden'

e2e_kubectl create rolebinding tenant-edit -n "$hub" --clusterrole=edit --user=tenant >/dev/null
out=$(notebook forged root-wannabe 2003 | e2e_kubectl apply -n "$hub" --as=tenant -f - 2>&1 || true)
assert_contains "a tenant claiming an identity is denied" "$out" 'identity claim denied: requester "tenant" is not in provisioning.trustedRequesters'

notebook jupyter-carol carol 2004 | e2e_kubectl apply -n "$strict" -f - >/dev/null 2>"$work/err" ||
    fail "the provisioned pod was not admitted under enforce=restricted: $(cat "$work/err")"
assert_ok "under enforce=restricted the provisioned pod runs, its init container exempt by provenance" \
    wait_pod_phase jupyter-carol "$strict" Running 90
e2e_kubectl get pod jupyter-carol -n "$strict" -o json | python3 -c '
import json, sys
pod = json.load(sys.stdin)
for key in ("uid", "resourceVersion", "creationTimestamp", "selfLink", "managedFields"):
    pod["metadata"].pop(key, None)
pod.pop("status", None)
pod["metadata"]["name"] = "look-alike"
pod["spec"].pop("nodeName", None)
pod["spec"]["initContainers"][0]["image"] = "docker.io/unroot-e2e/provisioner:1"
json.dump(pod, sys.stdout)' >"$work/look-alike.json"
out=$(e2e_kubectl create -n "$strict" -f "$work/look-alike.json" 2>&1 || true)
assert_contains "the same pod with the init container's image as a tag is denied" "$out" "denied the request"
assert_contains "naming that container" "$out" 'unroot-provision'

# --- an operator at work on the provisioned pod ---------------------------------
# Provenance is read from the pod and the policy, not from who sends the
# request: the admin here is not a trusted requester for this pod's update.
out=$(e2e_kubectl label pod jupyter-carol -n "$strict" unroot-e2e/debugged=true 2>&1 || true)
assert_contains "an operator may label the provisioned pod under enforce=restricted" "$out" "pod/jupyter-carol labeled"
out=$(e2e_kubectl replace --raw "/api/v1/namespaces/$strict/pods/jupyter-carol/ephemeralcontainers" -f - 2>&1 <<JSON || true
{"apiVersion": "v1", "kind": "EphemeralContainers", "metadata": {"name": "jupyter-carol", "namespace": "$strict"},
 "ephemeralContainers": [{"name": "debug", "image": "$E2E_IMAGE_ROOT", "imagePullPolicy": "Never",
   "command": ["sleep", "600"], "terminationMessagePolicy": "File"}]}
JSON
)
# 1.20 forbids a securityContext on ephemeral containers, so restricted
# denies every one there; the denial must name only the debug container.
assert_contains "an operator's ephemeral container is judged on its own fields" "$out" '(container "debug" must set securityContext.allowPrivilegeEscalation=false)'
assert_not_contains "while the init container keeps its provenance exemption" "$out" 'unroot-provision'

# --- identity ConfigMaps are collected (sweep_args) ------------------------------
out=$({
    notebook jupyter-erin erin 2006
    echo "    securityContext: {privileged: true}"
} | e2e_kubectl apply -n "$strict" -f - 2>&1 || true)
assert_contains "a privileged provisioned pod is denied under enforce=restricted" "$out" 'violates PodSecurity "restricted:latest"'
e2e_kubectl delete pod jupyter-alice -n "$hub" --wait=true --timeout=60s >/dev/null
gone() { # NS NAME TIMEOUT: until the ConfigMap no longer exists
    local deadline=$((SECONDS + $3))
    while e2e_kubectl get configmap "$2" -n "$1" >/dev/null 2>&1; do
        ((SECONDS >= deadline)) && return 1
        sleep 1
    done
}
assert_ok "the identity ConfigMap of the denied pod is collected after the grace period" \
    gone "$strict" unroot-identity-erin 40
assert_ok "and that of the deleted pod" gone "$hub" unroot-identity-alice 40
assert_ok "while that of the running pod stays" e2e_kubectl get configmap unroot-identity-carol -n "$strict"
collected=0
while read -r pod _; do
    v=$(unroot_metrics "$pod" | awk '$1 == "unroot_identity_configmaps_collected_total" {print $2}')
    collected=$((collected + ${v%.*}))
done < <(unroot_pods)
assert_eq "the replicas count what they collected" True "$( ((collected >= 2)) && echo True || echo False)"

e2e_summary
