#!/usr/bin/env bash
# The readiness report and the audit log through the real API server: pods
# that violate restricted in a warn=restricted namespace are counted by
# `unroot report --namespace` (run from the host with the admin kubeconfig)
# and by the server's background report (unroot_namespace_pods_violating),
# listed page by page, on the replica holding the Lease only; every
# admission decision is one JSON audit line on stdout, marked
# unauthenticated (the shipped install has no --client-ca); /dashboard shows
# the namespace. The dashboard, GET /report and POST /report/run are reached
# through `kubectl port-forward` to the replica's loopback listener (8081):
# its admin port on the pod IP serves only /metrics, /healthz and /readyz,
# and a second POST /report/run within a minute is refused with 429. The
# other replicas export no report series and say where the report runs.
#
# unroot runs installed from manifests/ (install_unroot), its replicas with a
# short report interval and tiny pages (set_unroot_args); the namespace is
# unroot.dev/harden=off, so its pods stay as written (violating).
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ns=unroot-e2e-audit
require_unroot_binary
unroot_bin=$E2E_UNROOT_BINARY

forward_pid=''
dashboard=''
cleanup() {
    if [[ -n $forward_pid ]]; then
        kill "$forward_pid" 2>/dev/null || true
    fi
    rm -rf "${work:-}"
    delete_namespace "$ns"
    # The manifests' args again (set_unroot_args below changed them).
    install_unroot >/dev/null 2>&1 || true
}
trap cleanup EXIT

audit_setup_namespace() {
    # harden=off: unroot's /mutate leaves the pods as written (an
    # administrator, system:masters, may set it).
    create_namespace "$ns" unroot.dev/enforce=privileged unroot.dev/warn=restricted unroot.dev/harden=off
}

# A pod: $1 name, $2 "plain" (root, no securityContext: fails restricted),
# "privileged" (fails baseline too) or "hardened" (passes restricted).
audit_pod() {
    local sc=
    case $2 in
        plain) sc='{}' ;;
        privileged) sc='{privileged: true}' ;;
        hardened) sc='{runAsNonRoot: true, runAsUser: 1000, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, seccompProfile: {type: RuntimeDefault}}' ;;
    esac
    cat <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $1}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: $E2E_IMAGE_ROOT, imagePullPolicy: Never, command: ["sleep", "600"], securityContext: $sc}
YAML
}

# Creates 2 plain, 1 privileged and 1 hardened pod; prints kubectl's output.
audit_create_pods() {
    local name kind name_kind
    for name_kind in plain-1:plain plain-2:plain priv:privileged ok:hardened; do
        name=${name_kind%%:*} kind=${name_kind#*:}
        audit_pod "$name" "$kind" | e2e_kubectl apply -n "$ns" -f - 2>&1
    done
}

# `unroot report` from the host, with the admin kubeconfig.
audit_cli() {
    "$unroot_bin" report --kubeconfig "$(e2e_kubeconfig)" "$@"
}

# The admin port of the replica that runs the report, from this host on the
# node's bridge: /metrics, /healthz and /readyz only.
audit_admin_url() {
    echo "http://$(audit_replica_ip):8080"
}

# The replica looked at: the one holding the Lease, which runs the report
# (waits until the holder is a ready replica); and its pod IP. (All of
# unroot_pods is read: a reader that stops early breaks its pipe.)
audit_replica() {
    local holder deadline=$((SECONDS + 60))
    while :; do
        holder=$(e2e_kubectl -n "$UNROOT_NS" get lease unroot-certs -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)
        if [[ -n $holder ]] && unroot_pods | awk -v h="$holder" '$1 == h {found = 1} END {exit !found}'; then
            echo "$holder"
            return 0
        fi
        if ((SECONDS >= deadline)); then
            e2e_log "no ready replica holds the Lease unroot-certs (holder: '${holder}')"
            return 1
        fi
        sleep 1
    done
}
audit_replica_ip() {
    local replica
    replica=$(audit_replica) || return 1
    unroot_pods | awk -v r="$replica" '$1 == r {print $2}'
}

# Forwards a local port to replica $1's loopback dashboard listener (8081)
# with kubectl port-forward, as an administrator reaches it (ending the
# forward before); sets dashboard to its URL once it answers.
audit_forward_dashboard() {
    local port deadline
    if [[ -n $forward_pid ]]; then
        kill "$forward_pid" 2>/dev/null || true
    fi
    port=$(free_port)
    e2e_kubectl -n "$UNROOT_NS" port-forward "pod/$1" "$port:8081" >"$work/forward.log" 2>&1 &
    forward_pid=$!
    deadline=$((SECONDS + 30))
    until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/metrics" 2>/dev/null; do
        if ((SECONDS >= deadline)) || ! kill -0 "$forward_pid" 2>/dev/null; then
            e2e_log "kubectl port-forward to the dashboard listener did not answer: $(cat "$work/forward.log")"
            return 1
        fi
        sleep 0.5
    done
    dashboard="http://127.0.0.1:$port"
}

# The value of one sample of that replica's /metrics (empty when absent).
audit_metric() {
    curl -fsS "$(audit_admin_url)/metrics" | awk -v s="$1" 'index($0, s " ") == 1 { print $2 }'
}

audit_admin() {
    curl -sS -o /dev/null -w '%{http_code}' "$@"
}

# The audit lines of every replica (JSON on stdout, --log-format=json).
audit_log_lines() {
    unroot_logs | grep -F '"audit":"admission"' || true
}

# Waits until $1 has the value $2 (at most $3 seconds).
audit_wait_metric() {
    local deadline=$((SECONDS + $3)) value
    while :; do
        value=$(audit_metric "$1")
        [[ $value == "$2" ]] && return 0
        ((SECONDS >= deadline)) && {
            e2e_log "$1 is '${value}', not $2, after $3 s"
            return 1
        }
        sleep 0.5
    done
}

work=$(mktemp -d)
audit_setup_namespace
# A short interval and tiny pages: the report runs often, and needs several
# pages (continue tokens) of the real API server.
install_unroot
set_unroot_args --report-interval=3s --report-page-size=2
admin=$(audit_admin_url)
audit_forward_dashboard "$(audit_replica)" || fail "kubectl port-forward to the dashboard listener failed"

out=$(audit_create_pods)
assert_contains "the pods are created" "$out" "pod/priv created"
assert_contains "with the warn=restricted warning" "$out" \
    'Warning: would violate PodSecurity "restricted:latest": privileged (container "main" must not set securityContext.privileged=true)'

json=$(audit_cli --namespace "$ns" --format json)
counts=$(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
n = r["namespaces"][0]
print(n["namespace"], n["pods"], n["baseline"]["violating"], n["restricted"]["violating"], n["restricted"]["version"])
' "$json")
assert_eq "unroot report --namespace counts 4 pods, 1 violating baseline, 3 violating restricted" \
    "$ns 4 1 3 latest" "$counts"
text=$(audit_cli --namespace "$ns")
echo "$text"
assert_contains "the text report is a table" "$text" "NAMESPACE"
assert_contains "with the namespace's row" "$text" "$ns"
assert_contains "and its top checks" "$text" "allowPrivilegeEscalation=3"

all=$(audit_cli)
echo "$all"
assert_contains "the whole-cluster report has the namespace" "$all" "$ns"
assert_contains "and skips the excluded kube-system" "$all" "skipped: kube-system (excluded)"
old=$("$unroot_bin" audit --kubeconfig "$(e2e_kubeconfig)" --namespace "$ns" --format json)
assert_eq "unroot audit, the old name, still prints the same report" "$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["namespaces"])' "$json")" \
    "$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["namespaces"])' "$old")"

rc=0
audit_cli --namespace no-such-namespace >/dev/null 2>&1 || rc=$?
assert_eq "an unknown namespace exits 2" 2 "$rc"
rc=0
"$unroot_bin" audit --kubeconfig /nonexistent/kubeconfig >/dev/null 2>&1 || rc=$?
assert_eq "an unreadable kubeconfig exits 2" 2 "$rc"

# The pod IP's admin port serves the metrics and probes, nothing else.
assert_eq "the admin port on the pod IP serves /metrics" 200 "$(audit_admin "$admin/metrics")"
assert_eq "but not the dashboard" 404 "$(audit_admin "$admin/dashboard")"
assert_eq "nor the readiness report" 404 "$(audit_admin "$admin/report")"
assert_eq "nor POST /report/run" 404 "$(audit_admin -X POST "$admin/report/run")"
assert_eq "the dashboard listener is not on the pod IP" 000 \
    "$(curl -sS -o /dev/null -w '%{http_code}' --max-time 3 "http://$(audit_replica_ip):8081/dashboard" 2>/dev/null || true)"

assert_eq "POST /report/run through kubectl port-forward is accepted" 202 "$(audit_admin -X POST "$dashboard/report/run")"
assert_eq "a second one within a minute is refused" 429 "$(audit_admin -X POST "$dashboard/report/run")"
if audit_wait_metric "unroot_namespace_pods_violating{level=\"restricted\",namespace=\"$ns\"}" 3 30; then
    pass "the server's report exports 3 pods violating restricted"
else
    fail "the server's report does not show the pods"
fi
assert_eq "and 1 violating baseline" 1 "$(audit_metric "unroot_namespace_pods_violating{level=\"baseline\",namespace=\"$ns\"}")"
assert_eq "of 4 pods" 4 "$(audit_metric "unroot_namespace_pods{namespace=\"$ns\"}")"
assert_eq "excluded namespaces have no series" "" "$(audit_metric 'unroot_namespace_pods{namespace="kube-system"}')"
last=$(audit_metric unroot_readiness_report_last_run_timestamp_seconds)
assert_ok "the report's timestamp is recent" python3 -c "import sys, time; sys.exit(0 if abs(time.time() - float('$last')) < 60 else 1)"
report=$(curl -fsS "$dashboard/report")
assert_contains "GET /report has the namespace" "$report" "\"namespace\":\"$ns\""
assert_contains "and so does GET /audit/report, its old name" "$(curl -fsS "$dashboard/audit/report")" "\"namespace\":\"$ns\""

# The report runs once per cluster: only the Lease holder exports its series.
leader=$(audit_replica)
exporting=0 others=''
while read -r pod _; do
    if unroot_metrics "$pod" | grep -F 'unroot_readiness_report_last_run_timestamp_seconds ' >/dev/null; then
        exporting=$((exporting + 1))
        [[ $pod == "$leader" ]] || e2e_log "$pod exports the report but does not hold the Lease ($leader does)"
    elif [[ -z $others ]]; then
        others=$pod
    fi
done < <(unroot_pods)
assert_eq "one replica, the Lease holder, exports the report's series" 1 "$exporting"
if [[ -n $others ]]; then
    assert_eq "another replica exports no namespace series" "" \
        "$(unroot_metrics "$others" | grep -F "unroot_namespace_pods{namespace=\"$ns\"}" || true)"
    audit_forward_dashboard "$others" || fail "kubectl port-forward to another replica's dashboard listener failed"
    other=$(curl -sS "$dashboard/report")
    assert_contains "and its GET /report says the report runs on the Lease holder" "$other" "runs on the replica holding the Lease"
    assert_eq "and POST /report/run there is refused" 503 "$(audit_admin -X POST "$dashboard/report/run")"
    audit_forward_dashboard "$leader" || fail "kubectl port-forward to the dashboard listener failed"
else
    fail "only one ready replica: cannot look at one that does not hold the Lease"
fi

page=$(curl -fsS "$dashboard/dashboard")
assert_contains "the dashboard has the namespace's readiness row" "$page" "id=\"readiness-$ns-restricted\" title=\"restricted:latest\">3<"
# The replica that answered a warned review lists it: its row is marked.
warned=
while read -r pod _; do
    # No grep -q: under pipefail, a reader that stops early fails the pipe.
    if [[ -z $warned ]] && e2e_kubectl logs "$pod" -n "$UNROOT_NS" | grep -F '"audit":"admission"' |
        grep -F '"warnings":1' >/dev/null; then
        warned=$pod
    fi
done < <(unroot_pods)
if [[ -n $warned ]] && audit_forward_dashboard "$warned"; then
    page=$(curl -fsS "$dashboard/dashboard")
    assert_contains "the dashboard marks the reviews of callers without a client certificate" "$page" \
        '<td class="caller bad" title="no client certificate: possibly forged">unauthenticated</td>'
    assert_not_contains "and holds none of an authenticated caller (no --client-ca)" "$page" '<td class="caller">authenticated</td>'
else
    fail "no replica's audit log holds the warned review, or its dashboard could not be reached"
fi

lines=$(audit_log_lines)
priv=$(grep -F "\"name\":\"priv\"" <<<"$lines" | grep -F '"webhook":"validate"' | head -n 1 || true)
echo "audit line: $priv"
assert_contains "the privileged pod's validation is one audit line" "$priv" '"outcome":"allowed"'
assert_contains "with the warn checks" "$priv" '{"mode":"warn","level":"restricted","version":"latest","allowed":false,"checks":["privileged","allowPrivilegeEscalation","capabilities_restricted","runAsNonRoot","seccompProfile_restricted"]}'
assert_contains "and the warning count" "$priv" '"warnings":1'
assert_contains "and who asked" "$priv" '"user":"unroot-e2e-admin"'
assert_contains "marked as from a caller without a client certificate (no --client-ca)" "$priv" '"authenticated":false'
validate_lines=$(grep -F "\"namespace\":\"$ns\"" <<<"$lines" | grep -F '"kind":"Pod"' | grep -cF '"webhook":"validate"' || true)
assert_eq "one validation audit line per pod created" 4 "$validate_lines"
off=$(grep -F "\"name\":\"priv\"" <<<"$lines" | grep -F '"webhook":"mutate"' | head -n 1 || true)
assert_contains "the mutation of a pod in a harden=off namespace is audited too" "$off" '"outcome":"allowed"'
assert_contains "with no mutation" "$off" '"mutations":[]'
assert_contains "and the namespace's mode" "$off" '"harden":"off"' 
assert_not_contains "no object content in the audit log" "$lines" "sleep"

e2e_summary
