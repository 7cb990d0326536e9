# shellcheck shell=bash
# Helpers for the e2e scenarios. Source it: `. e2e/lib.sh`.
#
# Cluster selection: E2E_KUBECONFIG (any cluster; e2e/cluster.sh then does
# nothing) or else the local cluster of e2e/cluster.sh in $UNROOT_E2E_RUN.
#
#   e2e_kubeconfig                         path of the kubeconfig in use
#   e2e_kubectl ARGS...                    kubectl against it ($KUBECTL overrides the binary)
#   free_port                              a free TCP port on 127.0.0.1
#   label_namespace_name NS...             set kubernetes.io/metadata.name=NS (what 1.21+ does itself)
#   create_namespace NS [KEY=VALUE...]     create (or reuse) NS with those labels + the name label,
#                                          and wait for its `default` ServiceAccount
#   delete_namespace NS...                 delete, without waiting
#   wait_default_sa NS [TIMEOUT_S]
#   wait_pod_phase NAME NS PHASE TIMEOUT_S PHASE may be "Running|Succeeded"; fails early on a
#                                          terminal phase not asked for; prints the pod's state on failure
#   wait_pod_waiting_reason NAME NS REASON TIMEOUT_S   e.g. CreateContainerConfigError
#   pod_state NAME NS                      one line: phase and each container's state/reason/message
#   pod_logs NAME NS [CONTAINER]           kubectl logs
#   select_kinds KIND...                   keep the documents of a YAML stream (stdin) of those kinds
#
# unroot in the cluster (manifests/ through the test overlay e2e/overlay/):
#   unroot_kustomization [COMPONENT...]    a new dir with the kustomization install_unroot applies
#                                          (plus those components, e.g. manifests/overlays/observe)
#   require_unroot_binary                  end the scenario (failed, with its summary) unless
#                                          E2E_UNROOT_BINARY is an executable: the suite's one binary
#   install_unroot                         import the image make image wrote (E2E_UNROOT_ARCHIVE, default
#                                          target/image/unroot.oci.tar), kubectl apply -k (and the manifests'
#                                          args and replicas, if a scenario changed them), wait until
#                                          every replica is Ready and an Endpoint, the webhook answers,
#                                          and the webhooks fail closed (this install has served)
#   uninstall_unroot                       webhook configurations first, then kubectl delete -k; waits
#                                          until namespace unroot is gone
#   unroot_installed                       true if any of it exists
#   unroot_down                            scale to 0 and wait until no pod and no Endpoint is left
#   unroot_fail_closed_state               per configuration: served annotation, each webhook's failurePolicy,
#                                          which are off (copied to unroot-fail-closed); then "fail-closed: yes|no"
#   unroot_serves_fail_closed              this install has served: named webhooks off, their copies Fail
#   wait_unroot_fail_closed [TIMEOUT_S]    until unroot_serves_fail_closed
#   wait_unroot_ready [TIMEOUT_S]          rolled out, all replicas Ready and in the Endpoints
#   wait_unroot_answers [TIMEOUT_S] [N]    N admissions in a row answered through the API server
#   unroot_pods                            "NAME IP" per Ready, not terminating replica
#   unroot_metrics POD                     GET /metrics on the replica's admin port
#   unroot_logs                            the logs of every current replica
#   unroot_host_pids                       host PIDs of the replicas' unroot processes (local cluster)
#   policy_hash FILE                       the hash unroot reports for that policy
#   set_unroot_policy FILE                 apply FILE as the ConfigMap unroot/unroot-policy, wait until
#                                          every replica runs it
#   reset_unroot_policy                    the shipped webhook-config/policy.yaml again
#   grant_unroot_identity NS               RoleBinding to ClusterRole unroot-identity in NS
#   set_unroot_args ARG...                 run every replica with the manifests' args plus ARG...
#                                          (rolls the Deployment; install_unroot puts the manifests'
#                                          args and replicas back)
#   pass MSG / fail MSG                    count a result (fail also prints MSG to stderr)
#   assert_eq WHAT EXPECTED ACTUAL
#   assert_contains WHAT HAYSTACK NEEDLE / assert_not_contains WHAT HAYSTACK NEEDLE
#   assert_ok WHAT CMD... / assert_fails WHAT CMD...
#   e2e_summary                            print "N passed, N failed"; non-zero if any failed or none passed

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_ROOT=$(cd "$E2E_DIR/.." && pwd)
E2E_RUN=${UNROOT_E2E_RUN:-/tmp/unroot-e2e-run}
E2E_CACHE=${UNROOT_E2E_CACHE:-$HOME/.cache/unroot-e2e}
export E2E_DIR E2E_ROOT E2E_RUN E2E_CACHE
E2E_PASSED=${E2E_PASSED:-0}
E2E_FAILED=${E2E_FAILED:-0}

# Image references for pods (imagePullPolicy: Never). Against another cluster,
# load $E2E_CACHE/images/*.tar into it first (e.g. `kind load image-archive`).
E2E_IMAGE_ROOT=${E2E_IMAGE_ROOT:-unroot-e2e/busybox-root:1}
E2E_IMAGE_NONROOT=${E2E_IMAGE_NONROOT:-unroot-e2e/busybox-nonroot:1}

e2e_log() { echo "e2e: $*" >&2; }

e2e_kubeconfig() {
    if [[ -n ${E2E_KUBECONFIG:-} ]]; then
        echo "$E2E_KUBECONFIG"
    else
        echo "$E2E_RUN/admin.kubeconfig"
    fi
}

e2e_kubectl() {
    if [[ -n ${E2E_KUBECONFIG:-} ]]; then
        "${KUBECTL:-kubectl}" --kubeconfig "$E2E_KUBECONFIG" "$@"
    else
        # keep kubectl's discovery cache in the run dir, so `down` removes it
        "${KUBECTL:-kubectl}" --kubeconfig "$E2E_RUN/admin.kubeconfig" --cache-dir "$E2E_RUN/kubectl-cache" "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- namespaces --------------------------------------------------------------

label_namespace_name() {
    local ns
    for ns in "$@"; do
        e2e_kubectl label namespace "$ns" "kubernetes.io/metadata.name=$ns" --overwrite >/dev/null
    done
}

wait_default_sa() {
    local ns=$1 timeout=${2:-60} deadline
    deadline=$((SECONDS + timeout))
    until e2e_kubectl get serviceaccount default -n "$ns" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            e2e_log "namespace $ns: no default ServiceAccount after ${timeout}s"
            return 1
        fi
        sleep 0.5
    done
}

create_namespace() {
    local ns=$1 phase deadline
    shift
    # A namespace of the same name still terminating (an earlier run) must go first.
    deadline=$((SECONDS + 120))
    while phase=$(e2e_kubectl get namespace "$ns" -o jsonpath='{.status.phase}' 2>/dev/null) &&
        [[ $phase == Terminating ]]; do
        if ((SECONDS >= deadline)); then
            e2e_log "namespace $ns still Terminating after 120s"
            return 1
        fi
        sleep 0.5
    done
    if [[ -z $phase ]]; then
        e2e_kubectl create namespace "$ns" >/dev/null
    fi
    label_namespace_name "$ns"
    if (($#)); then
        e2e_kubectl label namespace "$ns" "$@" --overwrite >/dev/null
    fi
    wait_default_sa "$ns" 60
}

delete_namespace() {
    e2e_kubectl delete namespace "$@" --ignore-not-found --wait=false >/dev/null
}

# ---- pods --------------------------------------------------------------------

pod_state() {
    # shellcheck disable=SC2016 # a go-template, not shell
    e2e_kubectl get pod "$1" -n "$2" -o go-template='phase={{.status.phase}}{{range .status.initContainerStatuses}} init:{{.name}}={{range $k, $v := .state}}{{$k}}{{with $v.reason}}/{{.}}{{end}}{{with $v.message}} ({{.}}){{end}}{{end}}{{end}}{{range .status.containerStatuses}} {{.name}}={{range $k, $v := .state}}{{$k}}{{with $v.reason}}/{{.}}{{end}}{{with $v.message}} ({{.}}){{end}}{{end}}{{end}}{{range .status.conditions}}{{if eq .status "False"}} {{.type}}=False{{with .reason}}/{{.}}{{end}}{{with .message}} ({{.}}){{end}}{{end}}{{end}}' 2>&1
}

wait_pod_phase() {
    local name=$1 ns=$2 want=$3 timeout=$4 deadline phase
    deadline=$((SECONDS + timeout))
    while :; do
        phase=$(e2e_kubectl get pod "$name" -n "$ns" -o jsonpath='{.status.phase}' 2>/dev/null || true)
        if [[ -n $phase && "|$want|" == *"|$phase|"* ]]; then
            return 0
        fi
        if [[ $phase == Succeeded || $phase == Failed ]]; then
            e2e_log "pod $ns/$name is $phase, wanted $want: $(pod_state "$name" "$ns")"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            e2e_log "pod $ns/$name not $want after ${timeout}s: $(pod_state "$name" "$ns")"
            return 1
        fi
        sleep 0.5
    done
}

wait_pod_waiting_reason() {
    local name=$1 ns=$2 want=$3 timeout=$4 deadline reasons
    deadline=$((SECONDS + timeout))
    while :; do
        reasons=$(e2e_kubectl get pod "$name" -n "$ns" \
            -o jsonpath='{range .status.initContainerStatuses[*]}{.state.waiting.reason}{"\n"}{end}{range .status.containerStatuses[*]}{.state.waiting.reason}{"\n"}{end}' 2>/dev/null || true)
        if grep -qxF "$want" <<<"$reasons"; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            e2e_log "pod $ns/$name has no container waiting with $want after ${timeout}s: $(pod_state "$name" "$ns")"
            return 1
        fi
        sleep 0.5
    done
}

pod_logs() {
    if (($# > 2)); then
        e2e_kubectl logs "$1" -n "$2" -c "$3"
    else
        e2e_kubectl logs "$1" -n "$2"
    fi
}

# ---- unroot, installed in the cluster from manifests/ ------------------------

UNROOT_NS=unroot
UNROOT_SELECTOR=app.kubernetes.io/name=unroot
# The suite's one unroot binary, the one in the image: scenarios that run
# unroot on the host run it, and 50-self.sh checks that the replicas do.
# make image writes it next to the archive: `make e2e` sets target/image/unroot,
# `make e2e-dev` target/image/unroot-dev; no scenario names a path of its own
# (run.sh refuses one that does).
E2E_UNROOT_BINARY=${E2E_UNROOT_BINARY:-${CARGO_TARGET_DIR:-$E2E_ROOT/target}/image/unroot}
# unroot's image: the OCI archive make image wrote from the Containerfile
# (image/build.sh), with the digest it printed next to it (ARCHIVE.digest).
# `make e2e` sets the release one, `make e2e-dev` the dev-profile one; the
# binary is the one in it.
E2E_UNROOT_ARCHIVE=${E2E_UNROOT_ARCHIVE:-${CARGO_TARGET_DIR:-$E2E_ROOT/target}/image/unroot.oci.tar}

# require_unroot_binary: return when E2E_UNROOT_BINARY is an executable file;
# otherwise count a failure naming the variable to set, print the summary and
# end the scenario.
require_unroot_binary() {
    [[ -f $E2E_UNROOT_BINARY && -x $E2E_UNROOT_BINARY ]] && return 0
    fail "no unroot binary at $E2E_UNROOT_BINARY: set E2E_UNROOT_BINARY to one (make e2e sets target/image/unroot, make e2e-dev target/image/unroot-dev: the binary of the image make image built)"
    e2e_summary || true
    exit 1
}

# The local cluster's addresses (cluster.sh env), unless run.sh exported them
# already or another cluster is in use.
e2e_cluster_env() {
    if [[ -z ${E2E_KUBECONFIG:-} && -z ${E2E_BRIDGE_IP:-} ]]; then
        eval "$("$E2E_DIR/cluster.sh" env)" || return 1
    fi
}

# Print the documents of a multi-document YAML stream (stdin) whose top-level
# kind is one of the arguments.
select_kinds() {
    python3 -c '
import re, sys
kinds = "|".join(map(re.escape, sys.argv[1:]))
docs = re.split(r"(?m)^---[ \t]*$", sys.stdin.read())
keep = [d.strip("\n") + "\n" for d in docs if re.search(r"(?m)^kind:[ \t]*(" + kinds + r")[ \t]*$", d)]
print("---\n".join(keep), end="")
' "$@"
}

# The image reference unroot runs from: E2E_UNROOT_IMAGE if set (another
# cluster, image loaded by you), else the archive E2E_UNROOT_ARCHIVE imported
# into the local cluster's containerd, by its digest
# (docker.io/unroot-e2e/unroot@sha256:...).
unroot_image() {
    if [[ -n ${E2E_UNROOT_IMAGE:-} ]]; then
        echo "$E2E_UNROOT_IMAGE"
        return 0
    fi
    if [[ -n ${E2E_KUBECONFIG:-} ]]; then
        e2e_log "set E2E_UNROOT_IMAGE to an unroot image that cluster has (make image writes target/image/unroot.oci.tar)"
        return 1
    fi
    e2e_cluster_env || return 1
    "$E2E_DIR/images.sh" import-unroot "$E2E_CONTAINERD_ADDRESS" "$E2E_UNROOT_ARCHIVE"
}

# Write, into DIR, the kustomization that installs unroot here: the test
# overlay (e2e/overlay/) plus what is known only now: the image (by digest,
# or by tag for an E2E_UNROOT_IMAGE that has none) and, on
# the local cluster (no kube-proxy), the API server's address for unroot's
# in-cluster client. COMPONENT... (paths from the repository, e.g.
# manifests/overlays/observe) are layered over it.
write_unroot_kustomization() {
    local dir=$1 image=$2 rel c
    shift 2
    rel=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$E2E_DIR/overlay" "$dir")
    {
        echo "apiVersion: kustomize.config.k8s.io/v1beta1"
        echo "kind: Kustomization"
        echo "resources: [$rel]"
        if (($#)); then
            echo "components:"
            for c in "$@"; do
                echo "  - $(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$E2E_ROOT/$c" "$dir")"
            done
        fi
        echo "images:"
        if [[ $image == *@* ]]; then
            echo "  - {name: docker.io/unroot-e2e/unroot, newName: ${image%@*}, digest: ${image#*@}}"
        else
            echo "  - {name: docker.io/unroot-e2e/unroot, newName: ${image%:*}, newTag: ${image##*:}}"
        fi
        if [[ -n ${E2E_BRIDGE_IP:-} ]]; then
            cat <<YAML
patches:
  # No kube-proxy: the kubelet's KUBERNETES_SERVICE_HOST (the kubernetes
  # Service's ClusterIP) leads nowhere. A container's own env wins over it.
  - target: {kind: Deployment, name: unroot}
    patch: |-
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {name: KUBERNETES_SERVICE_HOST, value: "$E2E_BRIDGE_IP"}
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {name: KUBERNETES_SERVICE_PORT, value: "$E2E_API_PORT"}
YAML
        fi
    } >"$dir/kustomization.yaml"
}

# The Deployment's args, replicas and maxSurge as the kustomization in DIR
# renders them, as JSON: {"args": [...], "replicas": N, "maxSurge": M}.
unroot_deployment_spec() {
    e2e_kubectl kustomize "$1" | select_kinds Deployment |
        e2e_kubectl create --dry-run=client -o json -f - | python3 -c '
import json, sys
spec = json.load(sys.stdin)["spec"]
print(json.dumps({"args": spec["template"]["spec"]["containers"][0]["args"], "replicas": spec.get("replicas", 1),
                  "maxSurge": spec["strategy"]["rollingUpdate"]["maxSurge"]}))
'
}

# unroot_patch_deployment WANT: patch the live Deployment's args and replicas
# to WANT (unroot_deployment_spec's JSON) where they differ, and wait until
# unroot runs with them. `kubectl apply` alone would not: a field equal to its
# last-applied value is left as it is live.
#
# A scenario's own args are set up and taken back quickly: such a rollout
# surges every replica at once (maxSurge 100%, never fewer Ready replicas than
# asked for, as shipped), then the manifests' maxSurge is put back, which
# rolls nothing. 60-rollout.sh tests the shipped one-at-a-time rollout.
unroot_patch_deployment() {
    local want=$1 patch
    patch=$(e2e_kubectl get deployment unroot -n "$UNROOT_NS" -o json | python3 -c '
import json, sys
want, live = json.loads(sys.argv[1]), json.load(sys.stdin)["spec"]
ops = []
if live["template"]["spec"]["containers"][0].get("args") != want["args"]:
    ops.append({"op": "replace", "path": "/spec/strategy/rollingUpdate/maxSurge", "value": "100%"})
    ops.append({"op": "replace", "path": "/spec/template/spec/containers/0/args", "value": want["args"]})
if live.get("replicas") != want["replicas"]:
    ops.append({"op": "replace", "path": "/spec/replicas", "value": want["replicas"]})
print(json.dumps(ops) if ops else "")
' "$want") || return 1
    if [[ -n $patch ]]; then
        e2e_kubectl patch deployment unroot -n "$UNROOT_NS" --type=json -p "$patch" >/dev/null || return 1
    fi
    wait_unroot_ready 180 || return 1
    patch=$(e2e_kubectl get deployment unroot -n "$UNROOT_NS" -o json | python3 -c '
import json, sys
want, live = json.loads(sys.argv[1]), json.load(sys.stdin)["spec"]
if live["strategy"]["rollingUpdate"]["maxSurge"] != want["maxSurge"]:
    print(json.dumps([{"op": "replace", "path": "/spec/strategy/rollingUpdate/maxSurge", "value": want["maxSurge"]}]))
' "$want") || return 1
    if [[ -n $patch ]]; then
        e2e_kubectl patch deployment unroot -n "$UNROOT_NS" --type=json -p "$patch" >/dev/null || return 1
    fi
}

# set_unroot_args ARG...: every replica runs with the manifests' args plus
# ARG... (a later flag wins); rolls the Deployment and waits until it answers.
set_unroot_args() {
    local dir want
    dir=$(unroot_kustomization) || return 1
    want=$(unroot_deployment_spec "$dir" | python3 -c '
import json, sys
w = json.load(sys.stdin)
w["args"] += sys.argv[1:]
print(json.dumps(w))
' "$@") || {
        rm -rf "$dir"
        return 1
    }
    rm -rf "$dir"
    unroot_patch_deployment "$want" && wait_unroot_answers 90
}


# Wait until the Deployment has rolled out and exactly its replicas are
# Ready, not terminating, and listed as ready Endpoints of the Service.
wait_unroot_ready() {
    local timeout=${1:-180} deadline want ready endpoints all
    deadline=$((SECONDS + timeout))
    if ! e2e_kubectl rollout status deployment/unroot -n "$UNROOT_NS" --timeout="${timeout}s" >/dev/null; then
        e2e_log "unroot did not roll out: $(e2e_kubectl get pods -n "$UNROOT_NS" -o wide 2>&1)"
        return 1
    fi
    want=$(e2e_kubectl get deployment unroot -n "$UNROOT_NS" -o jsonpath='{.spec.replicas}')
    while :; do
        ready=$(unroot_pods | wc -l)
        endpoints=$(e2e_kubectl get endpoints unroot -n "$UNROOT_NS" \
            -o jsonpath='{range .subsets[*].addresses[*]}{.ip}{"\n"}{end}' 2>/dev/null | grep -c . || true)
        # Replaced replicas stopped too: one still draining may answer a
        # request whose log line then leaves with it.
        all=$(unroot_running | wc -l)
        if ((ready == want && endpoints == want && all == want)); then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            e2e_log "unroot: $ready of $want replicas ready, $endpoints endpoints, $all pods, after ${timeout}s: $(e2e_kubectl get pods -n "$UNROOT_NS" -o wide 2>&1)"
            return 1
        fi
        sleep 0.5
    done
}

# Succeeds once N admissions in a row went through the API server to unroot
# (a dry-run pod in namespace default comes back hardened).
wait_unroot_answers() {
    local timeout=${1:-60} need=${2:-5} deadline ok=0 out
    deadline=$((SECONDS + timeout))
    while ((ok < need)); do
        out=$(e2e_kubectl run "unroot-e2e-ping-$RANDOM" -n default --image="$E2E_IMAGE_ROOT" \
            --image-pull-policy=Never --restart=Never --dry-run=server \
            -o jsonpath='{.spec.securityContext.runAsNonRoot}' 2>&1) || true
        if [[ $out == true ]]; then
            ok=$((ok + 1))
            continue
        fi
        ok=0
        if ((SECONDS >= deadline)); then
            e2e_log "unroot does not answer through the API server after ${timeout}s: $out"
            return 1
        fi
        sleep 0.5
    done
}

# unroot_kustomization [COMPONENT...]: a new directory holding the
# kustomization that installs unroot here (write_unroot_kustomization), with
# those components; prints its path. The caller removes it.
# shellcheck disable=SC2120 # most callers want no component
unroot_kustomization() {
    local image dir
    image=$(unroot_image) || return 1
    e2e_cluster_env || return 1
    dir=$(mktemp -d)
    write_unroot_kustomization "$dir" "$image" "$@"
    echo "$dir"
}

# unroot_fail_closed_state: one line per webhook configuration of unroot's:
# KIND/NAME, served=<the unroot.dev/served annotation, or ->, then
# NAME=failurePolicy for each webhook, with * on those unroot.dev/fail-closed
# names and (off) on those turned off (their failing-closed copy is in
# unroot-fail-closed). The last line is "fail-closed: yes" once this install
# has served as far as the configurations say: the originals record
# unroot.dev/served, and each named webhook is off with a copy failing closed.
unroot_fail_closed_state() {
    e2e_kubectl get mutatingwebhookconfigurations,validatingwebhookconfigurations -l "$UNROOT_SELECTOR" \
        -o json 2>/dev/null | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
off = {"matchExpressions": [{"key": "unroot.dev/fails-closed-elsewhere", "operator": "Exists"},
                            {"key": "unroot.dev/fails-closed-elsewhere", "operator": "DoesNotExist"}]}
by = {(c["kind"], c["metadata"]["name"]): c for c in items}
ok = bool(items)
for (kind, name), c in sorted(by.items()):
    a = c["metadata"].get("annotations") or {}
    listed = [n.strip() for n in a.get("unroot.dev/fail-closed", "").split(",") if n.strip()]
    hooks = c.get("webhooks") or []
    print(f"{kind}/{name}", "served=" + a.get("unroot.dev/served", "-"), " ".join(
        w["name"] + ("*" if w["name"] in listed else "") + "=" + w.get("failurePolicy", "")
        + ("(off)" if w.get("objectSelector") == off else "") for w in hooks))
    if name == "unroot":
        twins = {w["name"]: w for w in by.get((kind, "unroot-fail-closed"), {}).get("webhooks") or []}
        ok = ok and "unroot.dev/served" in a and all(
            w.get("objectSelector") == off and twins.get(w["name"], {}).get("failurePolicy") == "Fail"
            for w in hooks if w["name"] in listed)
print("fail-closed:", "yes" if ok else "no")
'
}

# unroot_serves_fail_closed: true once unroot_fail_closed_state says
# "fail-closed: yes".
unroot_serves_fail_closed() {
    [[ $(unroot_fail_closed_state) == *"fail-closed: yes" ]]
}

# wait_unroot_fail_closed [TIMEOUT_S]: wait for unroot_serves_fail_closed.
wait_unroot_fail_closed() {
    local timeout=${1:-60} deadline
    deadline=$((SECONDS + timeout))
    until unroot_serves_fail_closed; do
        if ((SECONDS >= deadline)); then
            e2e_log "unroot has not switched its webhooks to fail closed after ${timeout}s: $(unroot_fail_closed_state)"
            return 1
        fi
        sleep 0.5
    done
}

# install_unroot: kubectl apply -k of the test overlay (the image from
# unroot_image), the manifests' args and replicas where a scenario changed
# them, then wait until every replica is Ready and in the Service's Endpoints
# and the webhook answers through the API server. Idempotent: when unroot runs
# already with the same image and settings, it returns quickly.
install_unroot() {
    local dir out want
    dir=$(unroot_kustomization) || return 1
    # unroot issues its serving certificate into the (empty) Secret it ships
    # and injects the CA into the webhook configurations (--manage-certs):
    # until it has, the webhooks fail open and pods come back unhardened,
    # which wait_unroot_answers waits out.
    if ! out=$(e2e_kubectl apply -k "$dir" 2>&1) ||
        ! want=$(unroot_deployment_spec "$dir"); then
        e2e_log "install_unroot: applying the manifests failed: $out"
        rm -rf "$dir"
        return 1
    fi
    rm -rf "$dir"
    # The webhooks fail open until a replica has answered the serving check;
    # scenarios count on them failing closed.
    unroot_patch_deployment "$want" && wait_unroot_answers 90 && wait_unroot_fail_closed 90
}

unroot_installed() {
    e2e_kubectl get namespace "$UNROOT_NS" >/dev/null 2>&1 ||
        e2e_kubectl get mutatingwebhookconfiguration unroot >/dev/null 2>&1 ||
        e2e_kubectl get validatingwebhookconfiguration unroot >/dev/null 2>&1
}

# uninstall_unroot: the documented order. The webhook configurations first
# (once unroot's pods are gone, a configuration left behind would fail every
# pod create in the namespaces it covers), then `kubectl delete -k`; wait
# until the namespace is gone.
uninstall_unroot() {
    local dir deadline
    dir=$(unroot_kustomization) || return 1
    if ! e2e_kubectl delete mutatingwebhookconfiguration,validatingwebhookconfiguration \
        -l "$UNROOT_SELECTOR" --ignore-not-found >/dev/null ||
        ! e2e_kubectl delete -k "$dir" --ignore-not-found --wait=false >/dev/null; then
        rm -rf "$dir"
        return 1
    fi
    rm -rf "$dir"
    deadline=$((SECONDS + 120))
    while e2e_kubectl get namespace "$UNROOT_NS" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            e2e_log "namespace $UNROOT_NS still exists 120 s after kubectl delete -k"
            return 1
        fi
        sleep 0.5
    done
}

# unroot_down: no replica serves (Deployment scaled to 0, its processes and
# Endpoints gone), the webhook configurations stay. install_unroot brings it
# back.
unroot_down() {
    local deadline
    e2e_kubectl scale deployment unroot -n "$UNROOT_NS" --replicas=0 >/dev/null || return 1
    deadline=$((SECONDS + 90))
    while [[ -n $(unroot_running) ||
        -n $(e2e_kubectl get endpoints unroot -n "$UNROOT_NS" -o jsonpath='{.subsets[*].addresses[*].ip}' 2>/dev/null) ]]; do
        if ((SECONDS >= deadline)); then
            e2e_log "unroot's pods still run 90 s after scaling to 0"
            return 1
        fi
        sleep 0.5
    done
}

# unroot_pods: "NAME IP" of each Ready, not terminating replica, one a line.
unroot_pods() {
    e2e_kubectl get pods -n "$UNROOT_NS" -l "$UNROOT_SELECTOR" -o json 2>/dev/null | python3 -c '
import json, sys
for p in json.load(sys.stdin)["items"]:
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))
    if ready and not p["metadata"].get("deletionTimestamp") and p["status"].get("podIP"):
        print(p["metadata"]["name"], p["status"]["podIP"])
'
}

# unroot_running: the name of each replica whose process may still run, one
# a line: every pod but those being deleted with no container left running
# (the kubelet removes such a pod from the API some seconds later).
unroot_running() {
    e2e_kubectl get pods -n "$UNROOT_NS" -l "$UNROOT_SELECTOR" -o json 2>/dev/null | python3 -c '
import json, sys
for p in json.load(sys.stdin)["items"]:
    statuses = p.get("status", {}).get("containerStatuses") or []
    if not p["metadata"].get("deletionTimestamp") or any("running" in c.get("state", {}) for c in statuses):
        print(p["metadata"]["name"])
'
}

# unroot_metrics POD: the /metrics of one replica, from its admin port: on the
# local cluster straight from this host to the pod's address on the bridge,
# elsewhere through the API server's pod proxy.
unroot_metrics() {
    local pod=$1 ip
    if [[ -n ${E2E_BRIDGE_IP:-} ]]; then
        ip=$(e2e_kubectl get pod "$pod" -n "$UNROOT_NS" -o jsonpath='{.status.podIP}') || return 1
        curl -fsS --max-time 5 "http://$ip:8080/metrics"
    else
        e2e_kubectl get --raw "/api/v1/namespaces/$UNROOT_NS/pods/$pod:8080/proxy/metrics"
    fi
}

# unroot_logs: the logs of every current replica, concatenated.
unroot_logs() {
    local pod _
    while read -r pod _; do
        e2e_kubectl logs "$pod" -n "$UNROOT_NS"
    done < <(unroot_pods)
}

# policy_hash FILE: the hash unroot reports for that policy (unroot_policy_info).
policy_hash() {
    "$E2E_UNROOT_BINARY" policy validate "$1" | sed -n 's/.*: valid (hash \([0-9a-f]*\))$/\1/p'
}

# set_unroot_policy FILE: make FILE unroot's policy (the ConfigMap
# unroot/unroot-policy, labelled as webhook-config/ generates it), then wait
# until every replica reports that policy in force. Prints kubectl's output.
set_unroot_policy() {
    local file=$1 hash deadline pod _ all metrics
    hash=$(policy_hash "$file") || hash=
    if [[ -z $hash ]]; then
        e2e_log "set_unroot_policy: $file is not a valid policy"
        return 1
    fi
    python3 - "$file" "$UNROOT_NS" <<'PY' | e2e_kubectl apply -f - || return 1
import json, sys
path, ns = sys.argv[1:]
print(json.dumps({
    "apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "unroot-policy", "namespace": ns,
                 "labels": {"unroot.dev/policy": "true", "app.kubernetes.io/name": "unroot"}},
    "data": {"policy.yaml": open(path).read()},
}))
PY
    deadline=$((SECONDS + 15))
    while :; do
        all=1
        while read -r pod _; do
            metrics=$(unroot_metrics "$pod" 2>/dev/null) || metrics=
            grep -qF "unroot_policy_info{hash=\"$hash\"} 1" <<<"$metrics" || all=0
        done < <(unroot_pods)
        ((all)) && return 0
        if ((SECONDS >= deadline)); then
            e2e_log "not every unroot replica runs policy $hash 15 s after the ConfigMap changed"
            return 1
        fi
        sleep 0.3
    done
}

# reset_unroot_policy: back to the shipped policy (webhook-config/policy.yaml).
reset_unroot_policy() {
    set_unroot_policy "$E2E_ROOT/webhook-config/policy.yaml" >/dev/null
}

# grant_unroot_identity NS: let unroot write identity ConfigMaps in NS (the
# RoleBinding the README tells platforms to create where provisioning is allowed).
grant_unroot_identity() {
    e2e_kubectl create rolebinding unroot-identity -n "$1" --clusterrole=unroot-identity \
        --serviceaccount="$UNROOT_NS:unroot" --dry-run=client -o yaml | e2e_kubectl apply -f - >/dev/null
}

# unroot_host_pids: the host PID of the unroot process of each current replica
# (through containerd: the container's task), one a line. Local cluster only.
unroot_host_pids() {
    local id
    e2e_cluster_env || return 1
    for id in $(e2e_kubectl get pods -n "$UNROOT_NS" -l "$UNROOT_SELECTOR" \
        -o jsonpath='{range .items[*]}{.status.containerStatuses[0].containerID}{"\n"}{end}'); do
        ctr --address "$E2E_CONTAINERD_ADDRESS" -n k8s.io tasks ls |
            awk -v id="${id#containerd://}" '$1 == id {print $2}'
    done
}

# ---- assertions --------------------------------------------------------------

pass() {
    E2E_PASSED=$((E2E_PASSED + 1))
    echo "ok - $*"
}

fail() {
    E2E_FAILED=$((E2E_FAILED + 1))
    echo "FAIL - $*"
    echo "FAIL - $*" >&2
}

assert_eq() {
    if [[ $3 == "$2" ]]; then pass "$1"; else fail "$1: expected '$2', got '$3'"; fi
}

assert_contains() {
    if [[ $2 == *"$3"* ]]; then pass "$1"; else fail "$1: '$3' not in: $2"; fi
}

assert_not_contains() {
    if [[ $2 != *"$3"* ]]; then pass "$1"; else fail "$1: '$3' unexpectedly in: $2"; fi
}

assert_ok() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then pass "$what"; else fail "$what: '$*' failed: $out"; fi
}

assert_fails() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then fail "$what: '$*' unexpectedly succeeded: $out"; else pass "$what"; fi
}

e2e_summary() {
    echo "$E2E_PASSED passed, $E2E_FAILED failed"
    ((E2E_FAILED == 0 && E2E_PASSED > 0))
}
