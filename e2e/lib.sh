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
#   register_webhooks CA_FILE URL_BASE [DIR]   apply DIR/*.yaml (default webhook-config/) with each
#                                          webhook's clientConfig replaced by {url: URL_BASE+path, caBundle}
#   unregister_webhooks [DIR]              delete the webhook configurations those files define
#   start_unroot [BINARY]                  start `unroot serve` (default target/debug/unroot) on free
#                                          ports, wait for /readyz on the admin port; sets UNROOT_PID,
#                                          UNROOT_URL (https://127.0.0.1:PORT), UNROOT_ADMIN_URL (127.0.0.1:PORT),
#                                          UNROOT_CA (its CA, PEM), UNROOT_LOG, UNROOT_DIR (holds both)
#   stop_unroot                            stop it (by its PID) and remove UNROOT_DIR
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

# ---- webhooks ----------------------------------------------------------------

# Print DIR's webhook configurations as one JSON List, clientConfig swapped.
_webhook_objects() {
    local ca_file=$1 url_base=$2 dir=$3 f docs json
    local -a files=()
    for f in "$dir"/*.yaml "$dir"/*.yml; do
        [[ -f $f && $(basename "$f") != kustomization.* ]] && files+=("$f")
    done
    if ((${#files[@]} == 0)); then
        e2e_log "no webhook configuration files in $dir"
        return 1
    fi
    # Keep only the YAML documents whose top-level kind is a webhook
    # configuration (the directory also holds other kinds, e.g. a Policy whose
    # CRD this cluster lacks), then let kubectl parse them: no YAML module needed.
    docs=$(python3 -c '
import re, sys
keep = []
for path in sys.argv[1:]:
    text = open(path).read()
    for doc in re.split(r"(?m)^---[ \t]*$", text):
        if re.search(r"(?m)^kind:[ \t]*[\x22\x27]?(Mutating|Validating)WebhookConfiguration\b", doc):
            keep.append(doc.strip("\n") + "\n")
print("---\n".join(keep), end="")
' "${files[@]}") || return 1
    if [[ -z $docs ]]; then
        e2e_log "no MutatingWebhookConfiguration or ValidatingWebhookConfiguration in ${files[*]}"
        return 1
    fi
    json=$(e2e_kubectl create --dry-run=client -o json -f - <<<"$docs") || {
        e2e_log "kubectl could not parse the webhook configurations in ${files[*]}"
        return 1
    }
    python3 -c '
import base64, json, sys

ca_file, url_base = sys.argv[1], sys.argv[2].rstrip("/")
ca = base64.b64encode(open(ca_file, "rb").read()).decode()
dec, text, objs = json.JSONDecoder(), sys.stdin.read(), []
i = 0
while True:
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        break
    obj, i = dec.raw_decode(text, i)
    objs.extend(obj.get("items", []) if obj.get("kind") == "List" else [obj])
out = []
for o in objs:
    if o.get("kind") not in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        continue
    for w in o.get("webhooks") or []:
        cc = w.get("clientConfig") or {}
        path = (cc.get("service") or {}).get("path")
        if path is None:
            path = "/"
            if cc.get("url"):
                from urllib.parse import urlsplit
                path = urlsplit(cc["url"]).path or "/"
        w["clientConfig"] = {"url": url_base + path, "caBundle": ca}
    out.append(o)
if not out:
    sys.exit("no MutatingWebhookConfiguration or ValidatingWebhookConfiguration found")
json.dump({"apiVersion": "v1", "kind": "List", "items": out}, sys.stdout)
' "$ca_file" "$url_base" <<<"$json"
}

register_webhooks() {
    local ca_file=$1 url_base=$2 dir=${3:-$E2E_ROOT/webhook-config} objs
    [[ -s $ca_file ]] || {
        e2e_log "register_webhooks: CA file $ca_file is missing or empty"
        return 1
    }
    objs=$(_webhook_objects "$ca_file" "$url_base" "$dir") || return 1
    e2e_kubectl apply -f - <<<"$objs" >/dev/null
}

unregister_webhooks() {
    local dir=${1:-$E2E_ROOT/webhook-config} objs ca
    ca=$(mktemp)
    echo x >"$ca"
    objs=$(_webhook_objects "$ca" "https://127.0.0.1" "$dir") || {
        rm -f "$ca"
        return 1
    }
    rm -f "$ca"
    e2e_kubectl delete --ignore-not-found -f - <<<"$objs" >/dev/null
}

# ---- the unroot server -------------------------------------------------------

start_unroot() {
    local binary=${1:-$E2E_ROOT/target/debug/unroot} port admin deadline
    [[ -x $binary ]] || {
        e2e_log "start_unroot: $binary is not built (cargo build)"
        return 1
    }
    port=$(free_port)
    admin=$(free_port)
    while [[ $admin == "$port" ]]; do admin=$(free_port); done
    UNROOT_DIR=$(mktemp -d "${TMPDIR:-/tmp}/unroot-e2e-server.XXXXXX")
    UNROOT_LOG=$UNROOT_DIR/unroot.log
    UNROOT_CA=$UNROOT_DIR/ca.pem
    # shellcheck disable=SC2086 # UNROOT_SERVE_ARGS is a list of flags
    "$binary" serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
        --ca-cert-out "$UNROOT_CA" --kubeconfig "$(e2e_kubeconfig)" ${UNROOT_SERVE_ARGS:-} >"$UNROOT_LOG" 2>&1 </dev/null &
    UNROOT_PID=$!
    UNROOT_URL="https://127.0.0.1:$port"
    UNROOT_ADMIN_URL="127.0.0.1:$admin"
    deadline=$((SECONDS + 60))
    until [[ -s $UNROOT_CA ]] && { curl -fsk "https://$UNROOT_ADMIN_URL/readyz" >/dev/null 2>&1 ||
        curl -fs "http://$UNROOT_ADMIN_URL/readyz" >/dev/null 2>&1; }; do
        if ! kill -0 "$UNROOT_PID" 2>/dev/null; then
            e2e_log "unroot serve exited; last lines of $UNROOT_LOG:"
            tail -n 30 "$UNROOT_LOG" >&2
            UNROOT_PID=
            stop_unroot
            return 1
        fi
        if ((SECONDS >= deadline)); then
            e2e_log "unroot serve not ready after 60s; last lines of $UNROOT_LOG:"
            tail -n 30 "$UNROOT_LOG" >&2
            stop_unroot
            return 1
        fi
        sleep 0.2
    done
    export UNROOT_PID UNROOT_URL UNROOT_CA UNROOT_ADMIN_URL UNROOT_LOG UNROOT_DIR
}

stop_unroot() {
    if [[ -n ${UNROOT_PID:-} ]] && kill -0 "$UNROOT_PID" 2>/dev/null; then
        kill "$UNROOT_PID" 2>/dev/null || true
        local _
        for _ in $(seq 50); do
            kill -0 "$UNROOT_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$UNROOT_PID" 2>/dev/null && kill -9 "$UNROOT_PID" 2>/dev/null
        wait "$UNROOT_PID" 2>/dev/null || true
    fi
    UNROOT_PID=
    if [[ -n ${UNROOT_DIR:-} && -d $UNROOT_DIR ]]; then
        rm -rf "$UNROOT_DIR"
    fi
    UNROOT_DIR=
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
