#!/usr/bin/env bash
# unroot's own pods, as installed from manifests/: each replica runs the image
# make image built (the digest it printed, as the node reports it; the version
# its labels name; the suite's binary), its process runs under the hardened
# securityContext (checked on the running process, not the spec), reaches the
# API server as its ServiceAccount, and that account can do exactly what
# rbac.yaml grants; the rendered manifests pass a server-side dry run; and the
# peak memory of a replica under a burst of admissions is measured against
# the Deployment's limit.
set -euo pipefail
# shellcheck source=e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ns=unroot-e2e-self
work=$(mktemp -d)
trap 'delete_namespace "$ns"; rm -rf "$work"' EXIT
install_unroot || fail "installing unroot failed"
e2e_cluster_env
create_namespace "$ns" unroot.dev/enforce=privileged
replicas=$(e2e_kubectl get deployment unroot -n unroot -o jsonpath='{.spec.replicas}')

# --- the running processes ------------------------------------------------------
if [[ -z ${E2E_KUBECONFIG:-} ]]; then
    mapfile -t pids < <(unroot_host_pids)
    assert_eq "one unroot process per replica, found through containerd" "$replicas" "${#pids[@]}"
    for pid in "${pids[@]}"; do
        status=$(cat "/proc/$pid/status")
        field() { awk -v f="$1:" '$1 == f {$1 = ""; print substr($0, 2)}' <<<"$status"; } # space-separated
        assert_eq "pid $pid is the unroot binary" /unroot "$(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -d' ' -f1)"
        assert_eq "pid $pid: real, effective, saved and fs uid 65532" "65532 65532 65532 65532" "$(field Uid)"
        assert_eq "pid $pid: gid 65532" "65532 65532 65532 65532" "$(field Gid)"
        assert_eq "pid $pid: no effective capabilities" 0000000000000000 "$(field CapEff)"
        assert_eq "pid $pid: no bounding capabilities (drop ALL)" 0000000000000000 "$(field CapBnd)"
        assert_eq "pid $pid: no new privileges" 1 "$(field NoNewPrivs)"
        assert_eq "pid $pid: seccomp filter mode" 2 "$(field Seccomp)"
        root_opts=$(awk '$5 == "/" {print $6}' "/proc/$pid/mountinfo")
        assert_contains "pid $pid: its root filesystem is mounted read-only" ",$root_opts," ",ro,"
    done
fi

# --- the image: the one make image built from the Containerfile ------------------
# Each replica names the image by the digest make image printed, the node
# reports that digest as the image it runs (imageID), the replica reports the
# version and commit the image's labels name, and its process is the suite's
# binary, E2E_UNROOT_BINARY (make image writes the image's binary for it).
if [[ -z ${E2E_UNROOT_IMAGE:-} && -z ${E2E_KUBECONFIG:-} ]]; then
    printed=$(cat "$E2E_UNROOT_ARCHIVE.digest" 2>/dev/null || echo "none: no $E2E_UNROOT_ARCHIVE.digest")
    want=docker.io/unroot-e2e/unroot@$printed
    labelled=$(python3 - "$E2E_UNROOT_ARCHIVE" <<'PY' || true
import json, sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    blob = lambda digest: json.load(t.extractfile("blobs/sha256/" + digest.split(":")[1]))
    (manifest,) = json.load(t.extractfile("index.json"))["manifests"]
    labels = blob(blob(manifest["digest"])["config"]["digest"])["config"].get("Labels") or {}
revision = labels.get("org.opencontainers.image.revision", "")
print(labels.get("org.opencontainers.image.version", "") + (f" ({revision[:7]})" if revision else ""))
PY
    )
    if [[ -f $E2E_UNROOT_BINARY && -x $E2E_UNROOT_BINARY ]]; then
        assert_eq "the image's labels name the version of the suite's binary (E2E_UNROOT_BINARY)" \
            "$("$E2E_UNROOT_BINARY" --version)" "unroot $labelled"
        binary=$(sha256sum <"$E2E_UNROOT_BINARY" | cut -d' ' -f1)
        for pid in "${pids[@]}"; do
            assert_eq "pid $pid runs the suite's binary, E2E_UNROOT_BINARY" \
                "$binary" "$(sha256sum <"/proc/$pid/exe" | cut -d' ' -f1)"
        done
    else
        fail "no unroot binary at $E2E_UNROOT_BINARY to compare the image's with: set E2E_UNROOT_BINARY"
    fi
    while read -r pod _; do
        assert_eq "$pod names the image by the digest make image printed" "$want" \
            "$(e2e_kubectl get pod "$pod" -n unroot -o jsonpath='{.spec.containers[0].image}')"
        assert_eq "the node runs $pod from that digest (imageID)" "$want" \
            "$(e2e_kubectl get pod "$pod" -n unroot -o jsonpath='{.status.containerStatuses[0].imageID}')"
        assert_contains "$pod reports that version ($labelled)" \
            "$(unroot_metrics "$pod" 2>&1)" "unroot_build_info{version=\"$labelled\"} 1"
    done < <(unroot_pods)
fi

# --- the API server, as its ServiceAccount ---------------------------------------
logs=$(unroot_logs)
assert_eq "every replica connected with the in-cluster service account" "$replicas" \
    "$(grep -c 'from":"the in-cluster service account' <<<"$logs" || true)"
assert_eq "every replica synced its namespace cache through the API server" "$replicas" \
    "$(grep -c 'namespace cache synced' <<<"$logs" || true)"
assert_not_contains "no replica's watch failed (e.g. forbidden)" "$logs" 'watch failed'
while read -r pod _; do
    assert_contains "$pod serves /metrics on its admin port, reached from the host" \
        "$(unroot_metrics "$pod" 2>&1)" 'unroot_policy_info{hash="'
done < <(unroot_pods)

sa=system:serviceaccount:unroot:unroot
can() { e2e_kubectl auth can-i --as="$sa" "$@" 2>/dev/null || true; }
for q in "list namespaces" "watch namespaces" "get pods -n $ns" "watch pods --all-namespaces" \
    "get configmaps/unroot-policy -n unroot" "watch configmaps/unroot-policy -n unroot" \
    "get secrets/unroot-tls -n unroot" "update secrets/unroot-tls -n unroot" \
    "update leases.coordination.k8s.io/unroot-certs -n unroot" \
    "patch mutatingwebhookconfigurations/unroot" "patch validatingwebhookconfigurations/unroot" \
    "patch mutatingwebhookconfigurations/unroot-fail-closed" "patch validatingwebhookconfigurations/unroot-fail-closed" \
    "create events.events.k8s.io -n unroot"; do
    # shellcheck disable=SC2086 # q is a list of words
    assert_eq "unroot may: $q" yes "$(can $q)"
done
for q in "list secrets --all-namespaces" "get secrets -n unroot" "get secrets/other -n unroot" \
    "list secrets -n unroot" "get configmaps -n unroot" "get configmaps/other -n unroot" \
    "list configmaps --all-namespaces" "create configmaps -n $ns" "patch configmaps -n $ns" \
    "create secrets -n unroot" "delete secrets/unroot-tls -n unroot" "create pods -n $ns" \
    "delete pods -n $ns" "update namespaces" "patch mutatingwebhookconfigurations/other" \
    "delete mutatingwebhookconfigurations/unroot" "delete validatingwebhookconfigurations/unroot-fail-closed" \
    "create mutatingwebhookconfigurations" "create events.events.k8s.io -n $ns" \
    "create leases.coordination.k8s.io -n unroot" "get nodes"; do
    # shellcheck disable=SC2086
    assert_eq "unroot may not: $q" no "$(can $q)"
done
assert_eq "unroot may not: anything on anything (* *)" no "$(can '*' '*' --all-namespaces)"
# A list or watch is authorized by resourceNames only through a metadata.name
# field selector, which is how unroot watches its policy ConfigMap.
assert_ok "unroot may list its policy ConfigMap with fieldSelector metadata.name" \
    e2e_kubectl get --raw "/api/v1/namespaces/unroot/configmaps?fieldSelector=metadata.name%3Dunroot-policy" --as="$sa"
assert_fails "but not the namespace's ConfigMaps" \
    e2e_kubectl get --raw "/api/v1/namespaces/unroot/configmaps" --as="$sa"
assert_eq "no identity ConfigMaps where the platform did not bind unroot-identity" no "$(can create configmaps -n "$ns")"
grant_unroot_identity "$ns"
for verb in create patch list delete; do
    assert_eq "$verb once it did" yes "$(can "$verb" configmaps -n "$ns")"
done
assert_eq "but no get there, and nothing on Secrets" "no no" \
    "$(can get configmaps -n "$ns") $(can list secrets -n "$ns")"
rules=$(e2e_kubectl get clusterrole unroot unroot-identity -o json && e2e_kubectl get role unroot -n unroot -o json)
assert_not_contains "the installed roles name no wildcard" "$rules" '"*"'

# --- a server-side dry run of the rendered manifests ----------------------------
# The product as shipped, but for its PodDisruptionBudget (policy/v1 needs 1.21).
out=$(e2e_kubectl kustomize "$E2E_ROOT/manifests" |
    python3 -c 'import re, sys; print("\n---\n".join(d for d in re.split(r"(?m)^---$", sys.stdin.read()) if not re.search(r"(?m)^kind: PodDisruptionBudget$", d)))' |
    e2e_kubectl apply --dry-run=server -f - 2>&1) && rc=0 || rc=$?
if ((rc == 0)); then
    pass "kubectl apply --dry-run=server of manifests/ succeeds"
else
    fail "kubectl apply --dry-run=server of manifests/ failed: $out"
fi
assert_contains "it covers the Deployment" "$out" 'deployment.apps/unroot configured (server dry run)'
assert_contains "and the webhook configurations" "$out" 'mutatingwebhookconfiguration.admissionregistration.k8s.io/unroot'
dir=$(unroot_kustomization)
assert_ok "and of the test overlay as installed here" e2e_kubectl apply --dry-run=server -k "$dir"
rm -rf "$dir"

# --- memory under a burst of admissions -------------------------------------------
# 8 clients send pod creates (server-side dry runs: both webhooks run, nothing
# is stored) as fast as the API server takes them for 20 s; then the peak RSS
# (VmHWM) of every replica is compared with the Deployment's memory limit.
if [[ -z ${E2E_KUBECONFIG:-} ]]; then
    python3 - "$(e2e_kubeconfig)" "$ns" "$E2E_IMAGE_ROOT" 20 8 >"$work/burst" <<'PY' || true
import http.client, json, ssl, sys, threading, time

kubeconfig, ns, image, seconds, clients = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
text = open(kubeconfig).read()
server = text.split("server: https://")[1].split()[0]
ca = text.split("certificate-authority: ")[1].split()[0]
token = text.split("token: ")[1].split()[0]
host, port = server.rsplit(":", 1)
ctx = ssl.create_default_context(cafile=ca)
body = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "burst-"},
                   "spec": {"containers": [{"name": "main", "image": image, "command": ["sleep", "1"]}]}})
counts = {"ok": 0, "failed": 0}
lock = threading.Lock()
deadline = time.monotonic() + seconds

def run():
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=15)
    while time.monotonic() < deadline:
        try:
            conn.request("POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", body,
                         {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            key = "ok" if r.status == 201 else "failed"
        except Exception:
            conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=15)
            key = "failed"
        with lock:
            counts[key] += 1

threads = [threading.Thread(target=run) for _ in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(counts["ok"], counts["failed"], f"{(counts['ok'] + counts['failed']) / seconds:.0f}")
PY
    read -r ok failed rate <"$work/burst" || true
    assert_eq "the burst's admissions all succeeded" 0 "${failed:-missing}"
    limit=$(e2e_kubectl get deployment unroot -n unroot -o jsonpath='{.spec.template.spec.containers[0].resources.limits.memory}')
    limit_kib=$(($(numfmt --from=iec-i <<<"${limit}") / 1024))
    peak=0
    for pid in $(unroot_host_pids); do
        hwm=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$pid/status")
        rss=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$pid/status")
        echo "    unroot pid $pid: VmRSS $((rss / 1024)) MiB, VmHWM $((hwm / 1024)) MiB"
        ((hwm > peak)) && peak=$hwm
    done
    echo "    burst: ${ok:-?} admissions in 20 s (${rate:-?}/s over 8 clients), peak RSS $((peak / 1024)) MiB, limit $limit"
    if ((peak > 0 && peak * 2 <= limit_kib)); then
        pass "peak RSS under the burst ($((peak / 1024)) MiB) is at most half the memory limit ($limit)"
    else
        fail "peak RSS under the burst ($((peak / 1024)) MiB) exceeds half the memory limit ($limit)"
    fi
fi

e2e_summary
