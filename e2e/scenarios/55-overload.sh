#!/usr/bin/env bash
# Load shedding as the real API server meets it: every replica's request-body
# budget is taken (the shipped --max-buffered-bytes, 32 MiB, held by a client
# on this host that announces four 8 MiB bodies to each replica and sends none
# of them), so each review the API server sends is refused with 429 and
# Retry-After. The API
# server retries it (client-go honours Retry-After on 429), and once the
# budget is free again the pod is created: shedding delays a pod create, it
# does not fail it.
#
# Heavy reviews do not crowd out small ones: forty reviews of a
# 10,000-container pod sent at once to one replica are decided on threads
# of their own, and the small reviews sent meanwhile are all answered.
#
# Needs the pods' addresses from this host (the local cluster).
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ns=unroot-e2e-overload
work=$(mktemp -d)
holder=
cleanup() {
    [[ -n $holder ]] && kill "$holder" 2>/dev/null || true
    delete_namespace "$ns"
    rm -rf "$work"
}
trap cleanup EXIT

if [[ -z ${E2E_BRIDGE_IP:-} ]]; then
    e2e_log "skipped: the pods' addresses are reachable only on the local cluster"
    exit 0
fi

install_unroot || fail "installing unroot failed"
create_namespace "$ns"
mapfile -t ips < <(unroot_pods | awk '{print $2}')
mapfile -t pods < <(unroot_pods | awk '{print $1}')

# overloaded: the reviews all replicas shed so far.
overloaded() {
    local pod total=0 n
    for pod in "${pods[@]}"; do
        n=$(unroot_metrics "$pod" | awk '/^unroot_rejected_requests_total\{reason="overloaded"/ {s += $2} END {print s + 0}')
        total=$((total + n))
    done
    echo "$total"
}

# Announces four 8 MiB bodies to every replica (its whole budget), sends
# none of them for 6 s, then hangs up; writes "held" once every replica has
# the headers.
python3 - "$work/held" 6 "${ips[@]}" <<'PY' &
import socket, ssl, sys, time
flag, hold, ips = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
conns = []
for ip in ips * 4:
    s = ctx.wrap_socket(socket.create_connection((ip, 8443), timeout=5))
    s.sendall(b"POST /mutate HTTP/1.1\r\nhost: unroot\r\ncontent-type: application/json\r\n"
              b"content-length: 8388608\r\n\r\n")
    conns.append(s)
time.sleep(0.5)
open(flag, "w").write("held\n")
time.sleep(hold)
for s in conns:
    s.close()
PY
holder=$!
for _ in $(seq 50); do [[ -s $work/held ]] && break; sleep 0.1; done
assert_eq "a client holds every replica's body budget" held "$(cat "$work/held" 2>/dev/null)"
code=$(curl -s -k --max-time 5 -o "$work/shed.json" -D "$work/shed.headers" -w '%{http_code}' \
    -H 'content-type: application/json' -d '{}' "https://${ips[0]}:8443/mutate" || true)
assert_eq "meanwhile a replica sheds a review with 429" 429 "$code"
assert_contains "and Retry-After" "$(tr -d '\r' <"$work/shed.headers")" "retry-after: 1"
before=$(overloaded)

started=$SECONDS
out=$(e2e_kubectl run shed -n "$ns" --image="$E2E_IMAGE_ROOT" --image-pull-policy=Never \
    --restart=Never --command -- sleep 600 2>&1) || true
took=$((SECONDS - started))
assert_contains "the pod create sent while every replica sheds succeeds" "$out" "pod/shed created"
after=$(overloaded)
e2e_log "the API server's reviews were shed $((after - before)) times; the create took ${took}s"
if ((after > before)); then
    pass "the API server's reviews were shed with 429 and retried"
else
    fail "no review of the API server was shed ($before before, $after after)"
fi
hardened=$(e2e_kubectl get pod shed -n "$ns" -o jsonpath='{.spec.securityContext.runAsNonRoot}' 2>&1)
assert_eq "and the retried review hardened the pod" true "$hardened"
wait "$holder" 2>/dev/null || true
holder=

# ---- heavy reviews on a replica's own threads ---------------------------------
# Forty reviews of a 10,000-container pod (about 600 KiB each) sent at once to
# one replica. A review over 64 KiB is decided on a thread of its own at lower
# priority, as many at a time as the replica has CPUs; the others wait for a
# place until their deadline, then are shed with 429. Meanwhile the small
# reviews an API server sends on its keep-alive connection are all answered
# (the async workers never fall --max-lag behind), and quickly. Shedding when
# the CPU falls behind is held by tests/edges_lag.rs.
python3 - "${ips[0]}" 40 10000 >"$work/cpu" 2>"$work/small" <<'PY'
import http.client, json, ssl, sys, threading, time
ip, n, containers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def review(uid, count):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "wide", "namespace": "default"},
           "spec": {"containers": [{"name": f"c{i}", "image": "busybox"} for i in range(count)]}}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": "default",
        "operation": "CREATE", "userInfo": {"username": "e2e"}, "object": pod}})
body = review("UID", containers)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
results = [None] * n
def send(i):
    try:
        c = http.client.HTTPSConnection(ip, 8443, context=ctx, timeout=120)
        c.request("POST", "/mutate", body.replace("UID", f"cpu-{i}"), {"Content-Type": "application/json"})
        r = c.getresponse()
        results[i] = (r.status, json.loads(r.read() or b"{}").get("message", ""))
    except Exception as e:  # no answer is a failure of its own
        results[i] = (0, repr(e))
small, answers, done = review("small", 1), [], threading.Event()
def send_small():
    c = http.client.HTTPSConnection(ip, 8443, context=ctx, timeout=30)
    while not done.is_set():
        asked = time.monotonic()
        try:
            c.request("POST", "/mutate", small, {"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            answers.append((r.status, time.monotonic() - asked))
        except Exception as e:
            answers.append((0, time.monotonic() - asked))
            c = http.client.HTTPSConnection(ip, 8443, context=ctx, timeout=30)
        time.sleep(0.05)
threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
meanwhile = threading.Thread(target=send_small)
meanwhile.start()
for t in threads:
    t.start()
for t in threads:
    t.join()
done.set()
meanwhile.join()
for status, message in results:
    print(status, message)
for status, took in answers:
    print(status, f"{took * 1000:.0f}", file=sys.stderr)
PY
decided=$(awk '$1 == 200' "$work/cpu" | wc -l)
shed=$(awk '$1 == 429' "$work/cpu" | wc -l)
e2e_log "40 reviews of a 10,000-container pod at once: $decided decided, $shed shed"
assert_eq "every one of them was answered, decided or shed" 40 "$((decided + shed))"
assert_eq "some were decided" True "$( ((decided > 0)) && echo True || echo False)"
if ((shed > 0)); then
    assert_contains "a shed one waited for a large review's place" "$(awk '$1 == 429' "$work/cpu" | head -n 1)" \
        "every place for reviews over 64 KiB"
fi
small_total=$(wc -l <"$work/small")
small_ok=$(awk '$1 == 200' "$work/small" | wc -l)
slowest=$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}' "$work/small")
e2e_log "meanwhile $small_total small reviews, $small_ok answered 200, the slowest in $slowest ms"
assert_eq "small reviews went on meanwhile" True "$( ((small_total >= 5)) && echo True || echo False)"
assert_eq "and every one was decided, none shed" "$small_total" "$small_ok"
assert_eq "each within the shipped --max-lag (500 ms)" True "$( ((slowest < 500)) && echo True || echo False)"
out=$(e2e_kubectl run after-cpu -n "$ns" --image="$E2E_IMAGE_ROOT" --image-pull-policy=Never \
    --restart=Never --dry-run=server -o jsonpath='{.spec.securityContext.runAsNonRoot}' --command -- sleep 600 2>&1) || true
assert_eq "afterwards a pod create is hardened as usual" true "$out"
e2e_summary
