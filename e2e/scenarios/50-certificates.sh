#!/usr/bin/env bash
# unroot manages its own certificates in the cluster, installed from
# manifests/ (--manage-certs, the shipped default), with exactly the RBAC the
# manifests grant (the Secret and the Lease by name, no create):
#
# - the replicas adopt the empty Secret and the holderless Lease, one of
#   them issues a CA and a serving certificate and injects the caBundle into
#   both webhook configurations by server-side apply, owning nothing else;
# - with a 45 s serving certificate and a 135 s CA (set_unroot_args), pods
#   are created continuously across at least two serving-certificate
#   rotations and one CA rotation (old and new CA in every caBundle
#   meanwhile), and none fails;
# - a renewal asked for with `unroot certs rotate` goes to the Lease holder;
#   a serving key deleted by hand is replaced, a Secret deleted by hand is
#   restored from memory once it exists again (empty), a caBundle overwritten
#   by hand is repaired within seconds; the Lease holder deleted mid-load
#   hands over to another replica, with no failed create;
# - every replica serves a chain the stored caBundles verify (openssl, from
#   this host to each pod on the bridge), the Lease is released when the
#   replicas stop, and `unroot certs rotate` carries a CA rotation out alone.
#
# At the end the Secret is emptied and unroot reinstalled with the shipped
# args, so later scenarios run on a fresh one-year CA.
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ns=unroot-e2e-certs
secret_ns=$UNROOT_NS
work=$(mktemp -d "${TMPDIR:-/tmp}/unroot-e2e-certs.XXXXXX")
require_unroot_binary
unroot_bin=$E2E_UNROOT_BINARY

observer=
creator=
stop_background() {
    [[ -f $work/stop ]] || touch "$work/stop"
    for pid in $observer $creator; do wait "$pid" 2>/dev/null || true; done
    observer= creator=
}
cleanup() {
    stop_background
    if ((E2E_FAILED)); then
        e2e_log "last lines of unroot's logs:"
        unroot_logs 2>/dev/null | tail -n 60 >&2 || true
    fi
    python3 "$work/api.py" delete-pods "$ns" >/dev/null 2>&1 || true
    delete_namespace "$ns"
    # Later scenarios: a fresh CA and serving certificate with the shipped
    # lifetimes.
    empty_certificates >/dev/null 2>&1 || true
    install_unroot >/dev/null 2>&1 || e2e_log "reinstalling unroot after the certificate scenario failed"
    rm -rf "$work"
}
trap cleanup EXIT

# ---- API access for the long-running checks (one process, keep-alive) -------

cat >"$work/api.py" <<'PY'
"""Talks to the API server as the e2e admin: create pods continuously, watch
the certificate state, read it once. Usage: api.py MODE ARGS..."""
import base64, hashlib, json, os, ssl, subprocess, sys, tempfile, time, http.client
from urllib.parse import urlsplit

def kubeconfig():
    cmd = os.environ["E2E_KUBECTL_CMD"].split("\x1f") + ["config", "view", "--raw", "--minify", "-o", "json"]
    cfg = json.loads(subprocess.check_output(cmd))
    cluster, user = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]
    ctx = ssl.create_default_context()
    if "certificate-authority-data" in cluster:
        ctx.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    elif "certificate-authority" in cluster:
        ctx.load_verify_locations(cafile=cluster["certificate-authority"])
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if "token" in user:
        headers["Authorization"] = "Bearer " + user["token"]
    if "client-certificate-data" in user:
        d = tempfile.mkdtemp()
        for k, f in (("client-certificate-data", "c"), ("client-key-data", "k")):
            open(os.path.join(d, f), "wb").write(base64.b64decode(user[k]))
        ctx.load_cert_chain(os.path.join(d, "c"), os.path.join(d, "k"))
    u = urlsplit(cluster["server"])
    return u.hostname, u.port or 443, ctx, headers

class Api:
    def __init__(self):
        self.host, self.port, self.ctx, self.headers = kubeconfig()
        self.conn = None
    def call(self, method, path, body=None):
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=30)
                self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=self.headers)
                r = self.conn.getresponse()
                data = r.read()
                return r.status, (json.loads(data) if data else {})
            except (http.client.HTTPException, OSError):
                self.conn = None
                if attempt:
                    raise

def pems(text):
    out, cur = [], None
    for line in (text or "").splitlines():
        if line.startswith("-----BEGIN CERTIFICATE"):
            cur = []
        elif line.startswith("-----END CERTIFICATE") and cur is not None:
            out.append(hashlib.sha256(base64.b64decode("".join(cur))).hexdigest()[:12])
            cur = None
        elif cur is not None:
            cur.append(line.strip())
    return out

def state(api, secret_ns):
    s, secret = api.call("GET", f"/api/v1/namespaces/{secret_ns}/secrets/unroot-tls")
    data = secret.get("data") or {} if s == 200 else {}
    dec = lambda k: base64.b64decode(data.get(k, "")).decode()
    bundles = {}
    for kind in ("mutating", "validating"):
        s, cfg = api.call("GET", f"/apis/admissionregistration.k8s.io/v1/{kind}webhookconfigurations/unroot")
        for w in (cfg.get("webhooks") or []) if s == 200 else []:
            bundles[w["name"]] = pems(base64.b64decode(w["clientConfig"].get("caBundle", "")).decode(errors="replace"))
    s, lease = api.call("GET", f"/apis/coordination.k8s.io/v1/namespaces/{secret_ns}/leases/unroot-certs")
    return {
        "exists": s != 404 and bool(secret),
        "keys": sorted(data),
        "type": secret.get("type"),
        "ca": pems(dec("ca.crt")),
        "tls": pems(dec("tls.crt")),
        "previous": pems(dec("ca-previous.crt")),
        "bundles": bundles,
        "holder": ((lease.get("spec") or {}).get("holderIdentity") if s == 200 else None),
    }

def create(ns, image, stop, out):
    """Creates pods until the stop file exists: every other one for real
    (bound to a node that does not exist, so nothing runs), the others with
    dryRun=All. Each must be created and hardened by the webhook."""
    api, n, ok, failed, t0 = Api(), 0, 0, [], time.time()
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "rotating-"},
           "spec": {"nodeName": "unroot-e2e-nowhere", "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never", "command": ["sleep", "1"]}]}}
    while not os.path.exists(stop):
        n += 1
        path = f"/api/v1/namespaces/{ns}/pods" + ("" if n % 2 else "?dryRun=All")
        try:
            s, body = api.call("POST", path, pod)
        except Exception as e:  # a failed create, whatever the cause
            s, body = 0, {"message": repr(e)}
        uid = ((body.get("spec") or {}).get("securityContext") or {}).get("runAsUser")
        if s == 201 and uid == 65532:
            ok += 1
        else:
            failed.append({"t": round(time.time() - t0, 1), "status": s, "runAsUser": uid, "message": body.get("message")})
        time.sleep(0.15)
    json.dump({"ok": ok, "failed": failed, "seconds": round(time.time() - t0)}, open(out, "w"))

def observe(secret_ns, stop, out):
    """Polls the certificate state every second and logs each change."""
    api, t0, last, log = Api(), time.time(), None, []
    while not os.path.exists(stop):
        cur = state(api, secret_ns)
        key = json.dumps([cur["ca"], cur["tls"], cur["previous"], cur["bundles"], cur["holder"]])
        if key != last:
            last = key
            entry = {"t": round(time.time() - t0, 1), **{k: cur[k] for k in ("ca", "tls", "previous", "holder")},
                     "bundle_sizes": sorted({len(v) for v in cur["bundles"].values()})}
            log.append(entry)
            with open(out, "w") as f:
                json.dump(log, f)
        time.sleep(1)

def delete_pods(ns):
    s, _ = Api().call("DELETE", f"/api/v1/namespaces/{ns}/pods", {"gracePeriodSeconds": 0})
    print(s)

mode = sys.argv[1]
if mode == "create":
    create(*sys.argv[2:6])
elif mode == "observe":
    observe(*sys.argv[2:5])
elif mode == "state":
    print(json.dumps(state(Api(), sys.argv[2])))
elif mode == "delete-pods":
    delete_pods(sys.argv[2])
PY
# How api.py runs kubectl: e2e_kubectl's command line, unit-separated.
if [[ -n ${E2E_KUBECONFIG:-} ]]; then
    E2E_KUBECTL_CMD="${KUBECTL:-kubectl}"$'\x1f'--kubeconfig$'\x1f'"$E2E_KUBECONFIG"
else
    E2E_KUBECTL_CMD="${KUBECTL:-kubectl}"$'\x1f'--kubeconfig$'\x1f'"$E2E_RUN/admin.kubeconfig"
fi
export E2E_KUBECTL_CMD

cert_state() { python3 "$work/api.py" state "$secret_ns"; }
# jq-free field access: cert_field JSON EXPR (a Python expression on `s`).
cert_field() { python3 -c "import json,sys; s=json.loads(sys.argv[1]); print($2)" "$1"; }

# Waits until the Python condition COND on the state `s` holds; prints the
# seconds it took, or fails after TIMEOUT seconds.
wait_state() {
    local cond=$1 timeout=$2 start=$SECONDS st
    while :; do
        st=$(cert_state)
        if [[ $(cert_field "$st" "bool($cond)") == True ]]; then
            echo $((SECONDS - start))
            return 0
        fi
        if ((SECONDS - start >= timeout)); then
            e2e_log "wait_state: '$cond' still false after ${timeout}s: $st"
            return 1
        fi
        sleep 0.5
    done
}

# Every webhook's caBundle equals the Secret's CAs (current, then retiring).
bundles_match='s["bundles"] and all(b == s["ca"] + s["previous"] for b in s["bundles"].values())'


# empty_certificates: no replica runs, the Secret is as the manifests ship it
# (no data) and the Lease has no holder.
empty_certificates() {
    unroot_down || return 1
    if [[ -n $(e2e_kubectl get secret unroot-tls -n "$secret_ns" -o jsonpath='{.data}' 2>/dev/null) ]]; then
        e2e_kubectl patch secret unroot-tls -n "$secret_ns" --type=json -p '[{"op":"remove","path":"/data"}]' >/dev/null || return 1
    fi
    e2e_kubectl patch lease unroot-certs -n "$secret_ns" --type=merge -p '{"spec":{"holderIdentity":null}}' >/dev/null
}

# Sums one sample over every replica's /metrics.
metric_sum() {
    local pod _ total=0 v
    while read -r pod _; do
        v=$(unroot_metrics "$pod" | awk -v s="$1" 'index($0, s " ") == 1 { print $2 }')
        total=$(python3 -c "print(int($total + float('${v:-0}')))")
    done < <(unroot_pods)
    echo "$total"
}

current_pods() { unroot_pods | awk '{print $1}' | sort | tr '\n' ' '; }

# ---- unroot as installed -------------------------------------------------------

install_unroot
create_namespace "$ns" unroot.dev/enforce=privileged
sa=system:serviceaccount:$secret_ns:unroot
assert_fails "unroot's service account may not create Secrets (so it adopts the shipped one)" \
    e2e_kubectl --as "$sa" create secret generic unroot-probe -n "$secret_ns"
assert_ok "it may read the one Secret by name (fieldSelector, resourceNames)" \
    e2e_kubectl --as "$sa" get secrets -n "$secret_ns" --field-selector metadata.name=unroot-tls -o name
assert_fails "but not list Secrets" e2e_kubectl --as "$sa" get secrets -n "$secret_ns"

# ---- from an empty Secret: adopt, issue, inject ------------------------------

empty_certificates
assert_eq "with every replica stopped, the Lease is released" None "$(cert_field "$(cert_state)" 's["holder"]')"
assert_eq "and the Secret is empty, as shipped" "[]" "$(cert_field "$(cert_state)" 'str(s["keys"])')"
started=$SECONDS
set_unroot_args --serving-cert-lifetime=45s --ca-lifetime=135s --cert-propagation-delay=5s
pass "from an empty Secret, unroot answered through the API server $((SECONDS - started)) s after the scale-up"
st=$(cert_state)
assert_eq "it filled the empty Secret" "['ca.crt', 'ca.key', 'tls.crt', 'tls.key']" "$(cert_field "$st" 'str(s["keys"])')"
assert_eq "which stays of type Opaque" Opaque "$(cert_field "$st" 's["type"]')"
assert_eq "every caBundle holds its CA" True "$(cert_field "$st" "bool($bundles_match)")"
holder=$(cert_field "$st" 's["holder"]')
assert_contains "a current replica holds the Lease unroot-certs" " $(current_pods)" " $holder "
assert_ok "unroot certs inspect finds the Secret usable" \
    "$unroot_bin" certs inspect --secret "$secret_ns/unroot-tls" --kubeconfig "$(e2e_kubeconfig)"
assert_contains "the serving certificate names the Service" \
    "$("$unroot_bin" certs inspect --secret "$secret_ns/unroot-tls" --kubeconfig "$(e2e_kubeconfig)")" \
    "names:       unroot.unroot.svc, unroot.unroot.svc.cluster.local"

# The leaf fields a manager owns ("." and the list key `name` only mark the
# path), as dotted paths.
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
for m in o["metadata"]["managedFields"]:
    if m["manager"] == sys.argv[1]:
        print(" ".join(".".join(p) for p in leaves(m["fieldsV1"], [])))
' "$1"
}
assert_eq "in the MutatingWebhookConfiguration, the field manager unroot-certs owns only caBundle" \
    'f:webhooks.k:{"name":"mutate.pods.unroot.dev"}.f:clientConfig.f:caBundle' \
    "$(e2e_kubectl get mutatingwebhookconfiguration unroot -o json --show-managed-fields | owned unroot-certs)"
words_sorted() { tr ' ' '\n' | sed '/^$/d' | sort | tr '\n' ' '; }
assert_eq "and in the ValidatingWebhookConfiguration, each webhook's caBundle" \
    "$(e2e_kubectl get validatingwebhookconfiguration unroot -o jsonpath='{range .webhooks[*]}f:webhooks.k:{"{"}"name":"{.name}"{"}"}.f:clientConfig.f:caBundle {end}' | words_sorted)" \
    "$(e2e_kubectl get validatingwebhookconfiguration unroot -o json --show-managed-fields | owned unroot-certs | words_sorted)"

# ---- rotations under load ----------------------------------------------------

python3 "$work/api.py" observe "$secret_ns" "$work/stop" "$work/timeline.json" &
observer=$!
python3 "$work/api.py" create "$ns" "$E2E_IMAGE_ROOT" "$work/stop" "$work/creates.json" &
creator=$!

# Done when the serving certificate changed twice and a CA rotation is over
# (a new CA, then no CA left to retire).
rotated() {
    python3 - "$work/timeline.json" <<'PY'
import json, sys
try:
    log = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    sys.exit(1)
tls = {tuple(e["tls"]) for e in log}
cas = [e["ca"] for e in log]
ca_done = any(a != cas[0] for a in cas) and log[-1]["previous"] == []
sys.exit(0 if len(tls) >= 3 and ca_done else 1)
PY
}
rotation_start=$SECONDS
deadline=$((SECONDS + 240))
until rotated || ((SECONDS > deadline)); do sleep 2; done
if rotated; then
    pass "two serving and one CA rotation happened under load ($((SECONDS - rotation_start)) s)"
else
    fail "the rotations did not happen within 4 minutes"
fi
assert_eq "the replicas count CA rotations" True "$(python3 -c "print($(metric_sum 'unroot_certificate_rotations_total{cert="ca"}') >= 1)")"
assert_eq "and serving ones" True "$(python3 -c "print($(metric_sum 'unroot_certificate_rotations_total{cert="serving"}') >= 2)")"
assert_contains "rotations are recorded as Events on the Secret" \
    "$(e2e_kubectl get events -n "$secret_ns" -o jsonpath='{range .items[*]}{.reason}{"\n"}{end}' 2>/dev/null || true)" \
    CertificateRotated

# A renewal asked for by hand goes to the replica holding the Lease.
before=$(cert_field "$(cert_state)" 's["tls"]')
out=$("$unroot_bin" certs rotate --force serving --secret "$secret_ns/unroot-tls" --kubeconfig "$(e2e_kubeconfig)" 2>&1 || true)
assert_contains "unroot certs rotate --force asks the Lease holder" "$out" "which holds the Lease, to renew the serving certificate"
if took=$(wait_state "str(s['tls']) != \"$before\"" 20); then
    pass "which renewed the serving certificate in ${took} s"
else
    fail "the forced renewal did not happen"
fi
assert_eq "and removed the request" "" \
    "$(e2e_kubectl get secret unroot-tls -n "$secret_ns" -o jsonpath='{.metadata.annotations.unroot\.dev/rotate}')"

# Recovery while the pods keep coming: a serving key deleted by hand...
before=$(cert_field "$(cert_state)" 's["tls"]')
e2e_kubectl patch secret unroot-tls -n "$secret_ns" --type=json -p '[{"op":"remove","path":"/data/tls.key"}]' >/dev/null
if took=$(wait_state "'tls.key' in s['keys'] and str(s['tls']) != \"$before\"" 20); then
    pass "a serving key deleted by hand was replaced by a new pair in ${took} s"
else
    fail "the deleted serving key was not replaced"
fi
assert_eq "and counted as an invalid Secret" True \
    "$(python3 -c "print($(metric_sum 'unroot_certificate_errors_total{reason="invalid_secret"}') >= 1)")"
# ...and the Secret deleted by hand: unroot may not create it, says so, and
# restores it from memory (same CA) once it exists again, empty.
ca_before=$(cert_field "$(cert_state)" 's["ca"]')
e2e_kubectl delete secret unroot-tls -n "$secret_ns" >/dev/null
sleep 4
assert_contains "with the Secret gone, unroot says how to recover" "$(unroot_logs)" \
    "the Secret does not exist and unroot may not create it: create it empty"
e2e_kubectl create secret generic unroot-tls -n "$secret_ns" >/dev/null
e2e_kubectl label secret unroot-tls -n "$secret_ns" app.kubernetes.io/name=unroot >/dev/null
if took=$(wait_state "str(s['ca']) == \"$ca_before\" and 'tls.key' in s['keys']" 20); then
    pass "re-created empty, the Secret was restored from memory with the same CA in ${took} s"
else
    fail "the Secret was not restored"
fi

# The Lease holder goes away mid-load: another replica takes over.
holder=$(cert_field "$(cert_state)" 's["holder"]')
e2e_kubectl delete pod "$holder" -n "$secret_ns" --wait=false >/dev/null
if took=$(wait_state "s['holder'] not in (None, \"$holder\")" 45); then
    pass "with the Lease holder deleted, another replica held the Lease ${took} s later"
else
    fail "no other replica took the Lease over"
fi
before=$(cert_field "$(cert_state)" 's["tls"]')
if took=$(wait_state "str(s['tls']) != \"$before\"" 45); then
    pass "and renews the serving certificate ${took} s later"
else
    fail "the new Lease holder did not renew"
fi
sleep 2
stop_background

python3 - "$work/timeline.json" "$work/creates.json" <<'PY'
import json, sys
log, creates = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
names = {}
def name(kind, fp):
    names.setdefault((kind, fp), f"{kind}{sum(1 for k in names if k[0] == kind) + 1}")
    return names[(kind, fp)]
print("timeline (s since the observer started; bundle = CAs per webhook caBundle):")
for e in log:
    ca = ",".join(name("CA", f) for f in e["ca"])
    prev = ",".join(name("CA", f) for f in e["previous"]) or "-"
    tls = ",".join(name("leaf", f) for f in e["tls"])
    print(f"  t={e['t']:6.1f}  ca.crt={ca:5} ca-previous={prev:5} tls.crt={tls:7} bundle={e['bundle_sizes']} lease={e['holder']}")
print(f"creates: {creates['ok']} ok, {len(creates['failed'])} failed over {creates['seconds']} s")
for f in creates["failed"][:10]:
    print("  failed:", f)
PY
creates=$(cat "$work/creates.json")
assert_eq "no pod create failed across the rotations, the recoveries and the handover" 0 \
    "$(cert_field "$creates" 'len(s["failed"])')"
assert_eq "and pods were created all along" True "$(cert_field "$creates" 's["ok"] > 300')"
timeline=$(cat "$work/timeline.json")
assert_eq "during the CA rotation every caBundle held both CAs" True \
    "$(cert_field "$timeline" 'any(e["bundle_sizes"] == [2] and e["previous"] for e in s)')"
assert_eq "and ca-previous.crt held the old CA" True \
    "$(cert_field "$timeline" 'any(e["previous"] and e["previous"][0] == s[0]["ca"][0] for e in s)')"

# ---- caBundle overwritten by hand --------------------------------------------

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/foreign.key" \
    -out "$work/foreign.crt" -subj /CN=foreign -days 1 2>/dev/null
foreign=$(base64 -w0 "$work/foreign.crt")
e2e_kubectl patch mutatingwebhookconfiguration unroot --type=json \
    -p "[{\"op\":\"replace\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$foreign\"}]" >/dev/null
if took=$(wait_state "$bundles_match" 15); then
    pass "a caBundle overwritten by hand was repaired in ${took} s"
else
    fail "the overwritten caBundle was not repaired"
fi
e2e_kubectl patch validatingwebhookconfiguration unroot --type=json \
    -p "[{\"op\":\"replace\",\"path\":\"/webhooks/1/clientConfig/caBundle\",\"value\":\"$foreign\"}]" >/dev/null
if took=$(wait_state "$bundles_match" 15); then
    pass "in the ValidatingWebhookConfiguration too, in ${took} s"
else
    fail "the overwritten validating caBundle was not repaired"
fi

# ---- what every replica serves -------------------------------------------------

# The host reaches each pod on the node's bridge; the certificate names the
# Service, as the API server asks for it.
for kind in mutating validating; do
    e2e_kubectl get "${kind}webhookconfiguration" unroot -o jsonpath='{.webhooks[0].clientConfig.caBundle}' |
        base64 -d >"$work/$kind-bundle.pem"
done
if [[ -z ${E2E_KUBECONFIG:-} ]] && e2e_cluster_env; then
    verified=0 replicas=0
    while read -r pod ip; do
        replicas=$((replicas + 1))
        for kind in mutating validating; do
            out=$(openssl s_client -connect "$ip:8443" -servername unroot.unroot.svc -CAfile "$work/$kind-bundle.pem" \
                -verify_return_error -verify_hostname unroot.unroot.svc </dev/null 2>&1 || true)
            if [[ $out == *"Verify return code: 0 (ok)"* ]]; then
                verified=$((verified + 1))
            else
                e2e_log "$pod ($ip), $kind caBundle: $(grep -i verify <<<"$out" | head -n 3)"
            fi
        done
    done < <(unroot_pods)
    assert_eq "the stored caBundles verify the chain every replica serves (openssl)" "$((replicas * 2))" "$verified"
    read -r _ ip < <(unroot_pods)
    out=$(openssl s_client -connect "$ip:8443" -servername unroot.unroot.svc -CAfile "$work/foreign.crt" \
        -verify_return_error </dev/null 2>&1 || true)
    assert_not_contains "(and a foreign CA does not)" "$out" "Verify return code: 0 (ok)"
fi
assert_eq "the serving certificate's expiry lies ahead on every replica" True \
    "$(while read -r pod _; do unroot_metrics "$pod"; done < <(unroot_pods) | python3 -c '
import re, sys, time
v = [float(x) for x in re.findall(r"unroot_certificate_expiry_timestamp_seconds\{cert=\"serving\"\} (\S+)", sys.stdin.read())]
print(bool(v) and all(x > time.time() for x in v))')"

# ---- no replica running --------------------------------------------------------

unroot_down
assert_eq "every replica stopped: the Lease is released" None "$(cert_field "$(cert_state)" 's["holder"]')"

# With no replica running, `unroot certs rotate` (a Job's command) takes the
# Lease and carries a whole CA rotation out itself.
# A fresh serving certificate first: the replicas' last one lives 45 s, and
# one that expired while they stopped takes the short path (a serving
# certificate straight from the new CA) instead of the overlap shown here.
"$unroot_bin" certs rotate --force serving --secret "$secret_ns/unroot-tls" \
    --kubeconfig "$(e2e_kubeconfig)" --propagation-delay 2s >/dev/null 2>&1 ||
    fail "unroot certs rotate --force serving failed"
ca_before=$(cert_field "$(cert_state)" 's["ca"]')
out=$("$unroot_bin" certs rotate --force ca --secret "$secret_ns/unroot-tls" \
    --kubeconfig "$(e2e_kubeconfig)" --propagation-delay 2s 2>&1) && rc=0 || rc=$?
assert_eq "unroot certs rotate --force ca with no replica running exits 0" 0 "$rc"
assert_contains "it issued a new CA" "$out" "issued a new CA (forced)"
assert_contains "then a serving certificate from it" "$out" "issued a new serving certificate (signed by the CA being retired)"
assert_contains "then retired the old CA" "$out" "retired the previous CA"
st=$(cert_state)
assert_eq "the Secret ends with a new CA and none being retired" True \
    "$(cert_field "$st" "str(s['ca']) != \"$ca_before\" and s['previous'] == []")"
assert_eq "every caBundle follows it" True "$(cert_field "$st" "bool($bundles_match)")"
assert_eq "and the Lease is released again" None "$(cert_field "$st" 's["holder"]')"

e2e_summary
