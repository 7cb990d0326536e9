#!/usr/bin/env bash
# High availability of the in-cluster install: while a client creates a pod
# every 150 ms in a covered namespace, a rolling restart of the Deployment
# (every replica replaced, maxUnavailable 0) and then the deletion of one
# replica lose no admission: every create succeeds, and every created pod is
# hardened. The pods never run (their scheduler does not exist), so the
# stream tests admission alone and the node stays idle.
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ns=unroot-e2e-stream
work=$(mktemp -d)
streamer=
cleanup() {
    [[ -n $streamer ]] && kill "$streamer" 2>/dev/null
    delete_namespace "$ns"
    rm -rf "$work"
}
trap cleanup EXIT
install_unroot || fail "installing unroot failed"
create_namespace "$ns" unroot.dev/enforce=baseline

# The stream: one create every 150 ms (or as soon as the previous one returns),
# until $work/stop exists; one line per create: sequence, HTTP status, the
# returned pod's runAsNonRoot and runAsUser, and the error message if any.
python3 - "$(e2e_kubeconfig)" "$ns" "$E2E_IMAGE_ROOT" "$work/stop" >"$work/stream" 2>"$work/stream.err" <<'PY' &
import http.client, json, os, ssl, sys, time

kubeconfig, ns, image, stop = sys.argv[1:]
text = open(kubeconfig).read()
server = text.split("server: https://")[1].split()[0]
ca = text.split("certificate-authority: ")[1].split()[0]
token = text.split("token: ")[1].split()[0]
host, port = server.rsplit(":", 1)
ctx = ssl.create_default_context(cafile=ca)
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
conn = None
seq = 0
while not os.path.exists(stop):
    started = time.monotonic()
    seq += 1
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"stream-{seq}"},
           "spec": {"schedulerName": "unroot-e2e-nonexistent", "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never",
                                    "command": ["sleep", "600"]}]}}
    try:
        if conn is None:
            conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=20)
        conn.request("POST", f"/api/v1/namespaces/{ns}/pods", json.dumps(pod), headers)
        r = conn.getresponse()
        out = json.loads(r.read() or b"{}")
        sc = (out.get("spec") or {}).get("securityContext") or {}
        msg = "" if r.status == 201 else out.get("message", "")
        print(seq, r.status, sc.get("runAsNonRoot"), sc.get("runAsUser"), msg.replace("\n", " "), flush=True)
    except Exception as e:  # a transport failure is a lost create too
        conn = None
        print(seq, "error", None, None, repr(e), flush=True)
    time.sleep(max(0.0, 0.15 - (time.monotonic() - started)))
PY
streamer=$!
sleep 3

before=$(unroot_pods | awk '{print $1}' | sort)
e2e_kubectl rollout restart deployment/unroot -n unroot >/dev/null
t0=$SECONDS
if e2e_kubectl rollout status deployment/unroot -n unroot --timeout=240s >/dev/null; then
    pass "the rolling restart completed in $((SECONDS - t0)) s"
else
    fail "the rolling restart did not complete: $(e2e_kubectl get pods -n unroot -o wide 2>&1)"
fi
# Until the old replicas have stopped: their shutdown (delay, drain) is part
# of the test. (The kubelet removes a stopped pod from the API some seconds
# later.)
wait_old_gone() {
    local pod deadline=$((SECONDS + 120))
    for pod in "$@"; do
        while unroot_running | grep -qxF "$pod"; do
            ((SECONDS < deadline)) || return 1
            sleep 0.5
        done
    done
}
# shellcheck disable=SC2086 # a list of names
assert_ok "the old replicas stopped" wait_old_gone $before
after=$(unroot_pods | awk '{print $1}' | sort)
assert_eq "every replica was replaced" "" "$(comm -12 <(echo "$before") <(echo "$after"))"
assert_ok "all replicas are Ready again" wait_unroot_ready 120

victim=$(unroot_pods | awk 'NR == 1 {print $1}')
e2e_kubectl delete pod "$victim" -n unroot --wait=false >/dev/null
assert_ok "a deleted replica stopped" wait_old_gone "$victim"
assert_ok "and replaced: all replicas Ready" wait_unroot_ready 120
sleep 3
touch "$work/stop"
wait "$streamer" || true
streamer=

total=$(wc -l <"$work/stream")
created=$(awk '$2 == 201' "$work/stream" | wc -l)
failed=$(awk '$2 != 201' "$work/stream")
echo "    stream: $total creates over the restart and the deletion, $created created"
if ((total >= 100)); then
    pass "the stream sent $total creates (one per 150 ms or less)"
else
    fail "the stream sent only $total creates: $(cat "$work/stream.err")"
fi
if [[ -z $failed ]]; then
    pass "zero lost admissions: every create succeeded"
else
    fail "$(wc -l <<<"$failed") creates failed, e.g.: $(head -n 3 <<<"$failed")"
fi
assert_eq "every create came back hardened" "" "$(awk '$2 == 201 && ($3 != "True" || $4 != 65532)' "$work/stream" | head -n 3)"
stored=$(e2e_kubectl get pods -n "$ns" -o jsonpath='{range .items[*]}{.spec.securityContext.runAsUser}{"\n"}{end}' | sort | uniq -c | awk '{print $1 "x" $2}')
assert_eq "every stored pod is hardened" "${created}x65532" "$stored"

e2e_summary
