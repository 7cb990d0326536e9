#!/usr/bin/env bash
# A real one-node Kubernetes v1.20.2 cluster on this machine, for the e2e suite.
#
#   e2e/cluster.sh up       start etcd, kube-apiserver, kube-controller-manager,
#                           kube-scheduler, containerd and the kubelet; wait until
#                           the node is Ready and untainted and default/default exists
#   e2e/cluster.sh down     stop everything and remove every trace (processes,
#                           mounts, network namespaces, bridge, cgroups, run dir)
#   e2e/cluster.sh status   print each component's state; exit 0 only when all are up
#   e2e/cluster.sh env      print `export KUBECONFIG=...` and friends (eval it)
#
# With E2E_KUBECONFIG set, the suite uses that cluster instead: up and down do
# nothing, env exports KUBECONFIG=$E2E_KUBECONFIG.
#
# Environment: UNROOT_E2E_RUN (run dir, default /tmp/unroot-e2e-run),
# UNROOT_E2E_CACHE (binaries and images, default ~/.cache/unroot-e2e),
# UNROOT_E2E_POD_SUBNET (default 172.29.77.0/24: the node's own bridge, never
# routed anywhere; the host holds its first address, where the API server listens),
# UNROOT_E2E_KEEP_LOGS=DIR (down copies the component logs there first).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUN=${UNROOT_E2E_RUN:-/tmp/unroot-e2e-run}
CACHE=${UNROOT_E2E_CACHE:-$HOME/.cache/unroot-e2e}
POD_SUBNET=${UNROOT_E2E_POD_SUBNET:-172.29.77.0/24}
SERVICE_CIDR=10.255.254.0/24 # virtual: no kube-proxy, so ClusterIPs lead nowhere
SERVICE_IP=10.255.254.1
FEATURE_GATES=EphemeralContainers=true

# The host's address on the pod bridge (the subnet's first address) and its
# prefix length; pods get addresses from the second one on (host-local IPAM).
# Pods reach the host address on-link, with no default route; the API server
# listens only there.
read -r BRIDGE_IP POD_PREFIX POD_RANGE_START < <(python3 - "$POD_SUBNET" <<'PY'
import ipaddress, sys
try:
    net = ipaddress.ip_network(sys.argv[1])
except ValueError as e:
    sys.exit(f"cluster.sh: UNROOT_E2E_POD_SUBNET: {e}")
if net.version != 4 or net.prefixlen > 29:
    sys.exit(f"cluster.sh: UNROOT_E2E_POD_SUBNET={sys.argv[1]}: need an IPv4 subnet of /29 or larger")
print(net.network_address + 1, net.prefixlen, net.network_address + 2)
PY
)
[[ -n ${BRIDGE_IP:-} ]] || exit 2

[[ $RUN == /* && $RUN != / ]] || {
    echo "cluster.sh: UNROOT_E2E_RUN must be an absolute path other than /" >&2
    exit 2
}
RUN=${RUN%/}

# Names derived from the run dir, so `down` can clean up even without state.
run_hash=$(printf '%s' "$RUN" | sha256sum | cut -c1-8)
BRIDGE=ue2e${run_hash:0:8}   # <= 15 chars
CNI_NETWORK=unroot-e2e-$run_hash
CGROUP_ROOT=unroot-e2e-$run_hash
CTR_SOCK=$RUN/containerd/containerd.sock
PKI=$RUN/pki
LOGS=$RUN/logs
PIDS=$RUN/pids
STATE=$RUN/cluster.env

# Host paths a component may create outside the run dir although we point
# everything we can into it: removed by `down` only if `up` found them absent.
HOST_DIRS=(/run/containerd /var/lib/cni /var/lib/kubelet /var/log/pods /var/log/containers
    /run/netns /var/run/kubernetes /etc/cni /opt/cni /opt/containerd /usr/libexec/kubernetes)

log() { echo "cluster.sh: $*" >&2; }

kubectl_admin() {
    "${KUBECTL:-kubectl}" --kubeconfig "$RUN/admin.kubeconfig" --cache-dir "$RUN/kubectl-cache" \
        --request-timeout=20s "$@"
}

# ---- processes (tracked by PID + start time, never by name) ------------------

proc_starttime() {
    # field 22 of /proc/PID/stat, counted after the ")" that ends the comm field
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    awk '{print $20}' <<<"$stat"
}

# pid_of NAME: print the recorded PID if that very process is still alive.
pid_of() {
    local f=$PIDS/$1 pid start now
    [[ -f $f ]] || return 1
    read -r pid start <"$f" || return 1
    now=$(proc_starttime "$pid") || return 1
    [[ $now == "$start" ]] || return 1
    echo "$pid"
}

start_proc() {
    local name=$1 pid
    shift
    # setsid: own session, so a Ctrl-C or the caller's job control doesn't reach it.
    # (A background child of a script is no process-group leader, so setsid
    # execs in place and $! is the component's own PID.)
    # 8>&-: the components must not inherit (and so hold) our lock.
    setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null 8>&- &
    pid=$!
    echo "$pid $(proc_starttime "$pid")" >"$PIDS/$name"
    CURRENT=$name
}

stop_proc() {
    local name=$1 timeout=${2:-15} pid i
    if pid=$(pid_of "$name"); then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < timeout * 10; i++)); do
            pid_of "$name" >/dev/null || break
            sleep 0.1
        done
        if pid_of "$name" >/dev/null; then
            log "$name (pid $pid) ignored SIGTERM for ${timeout}s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                pid_of "$name" >/dev/null || break
                sleep 0.1
            done
        fi
    fi
    rm -f "$PIDS/$name"
}

# ---- failure reporting ---------------------------------------------------------

CURRENT=
UP_RUNNING=0

show_log() {
    local name=$1
    [[ -f $LOGS/$name.log ]] || return 0
    log "last lines of $LOGS/$name.log:"
    tail -n 40 "$LOGS/$name.log" | sed 's/^/    /' >&2
}

die() {
    log "ERROR: $*"
    [[ -n $CURRENT ]] && show_log "$CURRENT"
    exit 1
}

# wait_until COMPONENT DESCRIPTION TIMEOUT_S CMD...: poll CMD; fail fast if the component died.
wait_until() {
    local comp=$1 desc=$2 timeout=$3 deadline
    shift 3
    CURRENT=$comp
    deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        pid_of "$comp" >/dev/null || die "$comp exited while waiting for $desc"
        ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $desc"
        sleep 0.3
    done
}

# ---- up ------------------------------------------------------------------------

free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

check_subnet() {
    python3 - "$POD_SUBNET" <<'PY' || die "pod subnet $POD_SUBNET overlaps a network of this machine; set UNROOT_E2E_POD_SUBNET"
import ipaddress, subprocess, sys
net = ipaddress.ip_network(sys.argv[1])
out = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "all"], capture_output=True, text=True).stdout
for line in out.splitlines():
    dst = line.split()[0]
    if dst in ("default", "local", "broadcast", "unreachable", "blackhole", "prohibit"):
        dst = line.split()[1] if dst != "default" else ""
    try:
        other = ipaddress.ip_network(dst, strict=False)
    except ValueError:
        continue
    if other.prefixlen > 0 and net.overlaps(other):
        sys.exit(1)
PY
}

gen_certs() {
    mkdir -p "$PKI"
    (
        cd "$PKI"
        umask 077
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 7 \
            -subj "/CN=unroot-e2e-ca" >/dev/null 2>&1
        openssl genrsa -out sa.key 2048 >/dev/null 2>&1
        openssl rsa -in sa.key -pubout -out sa.pub >/dev/null 2>&1
        # name, subject, extended key usage, subjectAltName
        local spec name subj eku san
        for spec in \
            "apiserver|/CN=kube-apiserver|serverAuth|DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$BRIDGE_IP,IP:$SERVICE_IP" \
            "apiserver-kubelet-client|/O=system:masters/CN=kube-apiserver-kubelet-client|clientAuth|" \
            "kubelet|/CN=localhost|serverAuth|DNS:localhost,IP:127.0.0.1"; do
            IFS='|' read -r name subj eku san <<<"$spec"
            {
                echo "basicConstraints=critical,CA:FALSE"
                echo "keyUsage=critical,digitalSignature,keyEncipherment"
                echo "extendedKeyUsage=$eku"
                [[ -n $san ]] && echo "subjectAltName=$san"
            } >"$name.ext"
            openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" \
                -subj "$subj" >/dev/null 2>&1
            openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
                -days 7 -extfile "$name.ext" -out "$name.crt" >/dev/null 2>&1
            rm -f "$name.csr" "$name.ext"
        done
        # The API server's client certificate for calling webhooks (mTLS):
        # its own CA, so that unroot's --client-ca trusts this one client,
        # not every certificate the cluster CA ever signed.
        openssl req -x509 -newkey rsa:2048 -nodes -keyout webhook-client-ca.key \
            -out webhook-client-ca.crt -days 7 -subj "/CN=unroot-e2e-webhook-client-ca" >/dev/null 2>&1
        printf '%s\n' "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=clientAuth" >webhook-client.ext
        # Named kube-apiserver-webhook-client (unroot's --client-ca-name); a
        # second certificate from the same CA under another name plays a
        # client the CA signed for something else (a kubelet, on a kubeadm
        # cluster CA), which unroot must refuse.
        local client cn
        for client in webhook-client:kube-apiserver-webhook-client webhook-client-other:system:node:intruder; do
            cn=${client#*:} client=${client%%:*}
            openssl req -newkey rsa:2048 -nodes -keyout "$client.key" -out "$client.csr" \
                -subj "/CN=$cn" >/dev/null 2>&1
            openssl x509 -req -in "$client.csr" -CA webhook-client-ca.crt \
                -CAkey webhook-client-ca.key -CAcreateserial -days 7 -extfile webhook-client.ext \
                -out "$client.crt" >/dev/null 2>&1
            rm -f "$client.csr"
        done
        rm -f webhook-client.ext
        chmod 644 ./*.crt
    ) || die "generating certificates with openssl failed"
}

write_kubeconfig() {
    local file=$1 user=$2 token=$3
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: unroot-e2e
  cluster:
    server: https://$BRIDGE_IP:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $user
  user:
    token: $token
contexts:
- name: unroot-e2e
  context:
    cluster: unroot-e2e
    user: $user
    namespace: default
current-context: unroot-e2e
EOF
    chmod 600 "$file"
}

write_configs() {
    local admin_token kcm_token sched_token kubelet_token
    admin_token=$(openssl rand -hex 24)
    kcm_token=$(openssl rand -hex 24)
    sched_token=$(openssl rand -hex 24)
    kubelet_token=$(openssl rand -hex 24)
    (
        umask 077
        cat >"$PKI/tokens.csv" <<EOF
$admin_token,unroot-e2e-admin,unroot-e2e-admin,"system:masters"
$kcm_token,system:kube-controller-manager,system:kube-controller-manager
$sched_token,system:kube-scheduler,system:kube-scheduler
$kubelet_token,system:node:localhost,system:node:localhost,"system:nodes"
EOF
    )
    write_kubeconfig "$RUN/admin.kubeconfig" unroot-e2e-admin "$admin_token"
    write_kubeconfig "$RUN/controller-manager.kubeconfig" system:kube-controller-manager "$kcm_token"
    write_kubeconfig "$RUN/scheduler.kubeconfig" system:kube-scheduler "$sched_token"
    write_kubeconfig "$RUN/kubelet.kubeconfig" system:node:localhost "$kubelet_token"
    # The API server presents $PKI/webhook-client.crt to webhooks served by
    # a Service in the unroot namespace (docs/hardening.md, "mTLS from the API server");
    # unroot asks for it only when started with --client-ca.
    local plugin
    {
        echo "apiVersion: apiserver.config.k8s.io/v1"
        echo "kind: AdmissionConfiguration"
        echo "plugins:"
        for plugin in ValidatingAdmissionWebhook MutatingAdmissionWebhook; do
            echo "  - name: $plugin"
            echo "    configuration:"
            # 1.20 knows WebhookAdmission only as v1alpha1.
            echo "      apiVersion: apiserver.config.k8s.io/v1alpha1"
            echo "      kind: WebhookAdmission"
            echo "      kubeConfigFile: $RUN/webhook-client.kubeconfig"
        done
    } >"$RUN/admission.yaml"
    cat >"$RUN/webhook-client.kubeconfig" <<EOF
apiVersion: v1
kind: Config
users:
- name: "*.unroot.svc"
  user:
    client-certificate: $PKI/webhook-client.crt
    client-key: $PKI/webhook-client.key
EOF
    chmod 600 "$RUN/webhook-client.kubeconfig"

    mkdir -p "$RUN/cni/net.d" "$RUN/cni/ipam" "$RUN/containerd/root" "$RUN/containerd/state"
    cat >"$RUN/cni/net.d/10-$CNI_NETWORK.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_SUBNET", "rangeStart": "$POD_RANGE_START"}]],
        "dataDir": "$RUN/cni/ipam"
      }
    }
  ]
}
EOF
    cat >"$RUN/containerd/config.toml" <<EOF
version = 2
root = "$RUN/containerd/root"
state = "$RUN/containerd/state"
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "$CTR_SOCK"

[ttrpc]
  address = "$CTR_SOCK.ttrpc"

[debug]
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/unroot-e2e/pause:1"
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_tls_streaming = false
  max_container_log_line_size = 16384

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUN/containerd/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/cni/net.d"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$RUN/containerd/certs.d"
EOF
}

# The pod bridge, made here rather than by the CNI plugin so that it carries the
# host's address before the API server binds to it. The bridge plugin
# (isGateway: false) adopts it as it is: it adds no address, no route and no
# masquerading, so pods have only their on-link subnet route: they reach the
# host's bridge address and each other, and nothing beyond this machine.
make_bridge() {
    ip link add name "$BRIDGE" type bridge || die "creating bridge $BRIDGE failed"
    ip addr add "$BRIDGE_IP/$POD_PREFIX" dev "$BRIDGE" || die "adding $BRIDGE_IP/$POD_PREFIX to $BRIDGE failed"
    ip link set "$BRIDGE" up || die "bringing $BRIDGE up failed"
}

# The kubelet insists that --cgroup-root exists in every hierarchy.
make_cgroup_root() {
    local h
    for h in /sys/fs/cgroup/*/; do
        [[ -f $h/cgroup.procs ]] || continue
        mkdir -p "$h$CGROUP_ROOT"
        if [[ -f $h/cpuset.cpus && ! -s $h$CGROUP_ROOT/cpuset.cpus ]] || [[ -f $h/cpuset.cpus && -z $(tr -d '\n' <"$h$CGROUP_ROOT/cpuset.cpus") ]]; then
            cat "$h/cpuset.cpus" >"$h$CGROUP_ROOT/cpuset.cpus"
            cat "$h/cpuset.mems" >"$h$CGROUP_ROOT/cpuset.mems"
        fi
    done
}

components_alive() {
    local c
    for c in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet; do
        pid_of "$c" >/dev/null || return 1
    done
}

node_ready() {
    local out
    out=$(kubectl_admin get node localhost \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.spec.taints[*].key}') || return 1
    [[ $out == True* && $out != *node.kubernetes.io/not-ready* && $out != *node.kubernetes.io/unreachable* ]]
}

cluster_healthy() {
    components_alive && kubectl_admin get --raw /readyz >/dev/null 2>&1 && node_ready
}

on_up_exit() {
    local rc=$?
    if ((UP_RUNNING && rc != 0)); then
        trap - EXIT INT TERM
        log "up failed; tearing down"
        do_down || true
    fi
    exit "$rc"
}

do_up() {
    if [[ -f $STATE ]] && cluster_healthy; then
        log "already up ($RUN)"
        return 0
    fi
    if [[ -e $RUN ]]; then
        log "found a stale or partial cluster in $RUN; tearing it down first"
        do_down
    fi
    local t0=$SECONDS bindir
    "$here/deps.sh"
    bindir=$("$here/build-k8s.sh")
    "$here/images.sh" build >/dev/null
    check_subnet

    UP_RUNNING=1
    trap on_up_exit EXIT
    trap 'exit 130' INT TERM
    mkdir -p "$RUN" "$LOGS" "$PIDS"
    chmod 700 "$RUN"
    local d
    : >"$RUN/created-host-dirs"
    for d in "${HOST_DIRS[@]}"; do
        [[ -e $d ]] || echo "$d" >>"$RUN/created-host-dirs"
    done

    read -r ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT SCHED_PORT KUBELET_PORT KUBELET_HEALTHZ_PORT \
        <<<"$(free_ports 7)"
    cat >"$STATE" <<EOF
KUBE_BIN=$bindir
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
API_PORT=$API_PORT
KCM_PORT=$KCM_PORT
SCHED_PORT=$SCHED_PORT
KUBELET_PORT=$KUBELET_PORT
KUBELET_HEALTHZ_PORT=$KUBELET_HEALTHZ_PORT
BRIDGE=$BRIDGE
BRIDGE_IP=$BRIDGE_IP
POD_SUBNET=$POD_SUBNET
CGROUP_ROOT=$CGROUP_ROOT
EOF
    gen_certs
    write_configs
    make_bridge

    # etcd: loopback only
    start_proc etcd etcd --name unroot-e2e --data-dir "$RUN/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "unroot-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster-state new --log-level warn
    wait_until etcd "etcd /health" 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

    # The API server listens on the host's bridge address only (pods reach it
    # there; so does everything on this host). There is no kube-proxy, so
    # --enable-aggregator-routing makes it call webhook Services at one of
    # their ready endpoints (pod IPs, kept by the endpoints controller in
    # kube-controller-manager) instead of their ClusterIP: admission webhooks
    # use the same service resolver as aggregated APIs.
    start_proc kube-apiserver "$bindir/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address "$BRIDGE_IP" --advertise-address "$BRIDGE_IP" \
        --secure-port "$API_PORT" --insecure-port 0 \
        --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
        --client-ca-file "$PKI/ca.crt" --token-auth-file "$PKI/tokens.csv" \
        --authorization-mode Node,RBAC \
        --enable-admission-plugins NodeRestriction,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
        --admission-control-config-file "$RUN/admission.yaml" \
        --allow-privileged=true \
        --service-account-key-file "$PKI/sa.pub" \
        --service-account-signing-key-file "$PKI/sa.key" \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority "$PKI/ca.crt" \
        --kubelet-preferred-address-types Hostname \
        --endpoint-reconciler-type none \
        --enable-aggregator-routing=true \
        --feature-gates "$FEATURE_GATES" \
        --cert-dir "$PKI/apiserver-generated" \
        --profiling=false --v 1
    wait_until kube-apiserver "kube-apiserver /readyz" 90 kubectl_admin get --raw /readyz

    start_proc kube-controller-manager "$bindir/kube-controller-manager" \
        --kubeconfig "$RUN/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$RUN/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$RUN/controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --port 0 \
        --cert-dir "$PKI/controller-manager-generated" \
        --leader-elect=false --use-service-account-credentials=true \
        --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
        --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
        --controllers '*,-bootstrapsigner,-tokencleaner,-nodeipam,-cloud-node-lifecycle,-route,-service,-attachdetach,-persistentvolume-binder,-persistentvolume-expander,-pvc-protection,-pv-protection' \
        --node-monitor-period 2s --node-monitor-grace-period 20s \
        --feature-gates "$FEATURE_GATES" --profiling=false --v 1

    start_proc kube-scheduler "$bindir/kube-scheduler" \
        --kubeconfig "$RUN/scheduler.kubeconfig" \
        --authentication-kubeconfig "$RUN/scheduler.kubeconfig" \
        --authorization-kubeconfig "$RUN/scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --port 0 \
        --cert-dir "$PKI/scheduler-generated" \
        --leader-elect=false --feature-gates "$FEATURE_GATES" --profiling=false --v 1

    start_proc containerd containerd --config "$RUN/containerd/config.toml"
    wait_until containerd "containerd to answer on $CTR_SOCK" 30 ctr --address "$CTR_SOCK" version
    CURRENT=containerd
    "$here/images.sh" import "$CTR_SOCK" || die "importing the e2e images into containerd failed"

    make_cgroup_root
    mkdir -p "$RUN/kubelet"
    start_proc kubelet "$bindir/kubelet" \
        --kubeconfig "$RUN/kubelet.kubeconfig" \
        --container-runtime remote \
        --container-runtime-endpoint "unix://$CTR_SOCK" \
        --hostname-override localhost \
        --address 127.0.0.1 --port "$KUBELET_PORT" --read-only-port 0 \
        --healthz-bind-address 127.0.0.1 --healthz-port "$KUBELET_HEALTHZ_PORT" \
        --tls-cert-file "$PKI/kubelet.crt" --tls-private-key-file "$PKI/kubelet.key" \
        --client-ca-file "$PKI/ca.crt" --anonymous-auth=false \
        --authentication-token-webhook=false --authorization-mode Webhook \
        --root-dir "$RUN/kubelet" --cert-dir "$RUN/kubelet/pki" \
        --volume-plugin-dir "$RUN/kubelet/volume-plugins" \
        --cgroup-driver cgroupfs --cgroup-root "/$CGROUP_ROOT" \
        --fail-swap-on=false \
        --make-iptables-util-chains=false \
        --pod-infra-container-image docker.io/unroot-e2e/pause:1 \
        --image-gc-high-threshold 100 --image-gc-low-threshold 99 \
        --eviction-hard 'memory.available<50Mi,nodefs.available<1%,imagefs.available<1%' \
        --serialize-image-pulls=false \
        --resolv-conf /etc/resolv.conf \
        --feature-gates "$FEATURE_GATES" --v 1
    wait_until kubelet "node localhost to be Ready and untainted" 120 node_ready
    CURRENT=kube-controller-manager
    wait_until kube-controller-manager "the default ServiceAccount in namespace default" 60 \
        kubectl_admin get serviceaccount default -n default
    pid_of kube-scheduler >/dev/null || {
        CURRENT=kube-scheduler
        die "kube-scheduler exited"
    }

    # 1.21+ labels every namespace with its name; 1.20 does not. Do it for the built-in ones.
    local ns
    for ns in default kube-system kube-public kube-node-lease; do
        kubectl_admin label namespace "$ns" "kubernetes.io/metadata.name=$ns" --overwrite >/dev/null ||
            die "labelling namespace $ns failed"
    done

    UP_RUNNING=0
    trap - EXIT INT TERM
    log "up in $((SECONDS - t0)) s: $(print_env | grep KUBECONFIG)"
}

# ---- down ----------------------------------------------------------------------

ctr_k8s() { ctr --address "$CTR_SOCK" -n k8s.io "$@"; }

# Unmount everything at or below $RUN, innermost (most recently mounted) first.
unmount_run() {
    local i mp
    for ((i = 0; i < 20; i++)); do
        mp=$(awk -v run="$RUN" '
            function unescape(s) { gsub(/\\040/, " ", s); return s }
            { p = unescape($5); if (p == run || index(p, run "/") == 1) last = p }
            END { if (last != "") print last }' /proc/self/mountinfo)
        [[ -n $mp ]] || return 0
        umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
        if ((i == 19)); then log "could not unmount $mp"; fi
        # keep going: each pass removes the innermost remaining mount
        if ! grep -qF " $mp " /proc/self/mountinfo; then i=0; fi
    done
    return 1
}

cgroup_procs() {
    local h
    for h in /sys/fs/cgroup/*/"$CGROUP_ROOT"; do
        [[ -d $h ]] && find "$h" -name cgroup.procs -exec cat {} + 2>/dev/null
    done | sort -un
}

do_down() {
    if [[ ! -e $RUN ]] && ! ip link show "$BRIDGE" >/dev/null 2>&1 &&
        ! compgen -G "/sys/fs/cgroup/*/$CGROUP_ROOT" >/dev/null; then
        return 0
    fi
    log "tearing down $RUN"

    # 1. No new pods: stop the controllers and the scheduler, then delete every
    #    pod through the API while the kubelet still runs, so it stops them cleanly
    #    (CNI DEL, unmounts).
    stop_proc kube-controller-manager
    stop_proc kube-scheduler
    if pid_of kube-apiserver >/dev/null && pid_of kubelet >/dev/null; then
        kubectl_admin delete pods --all --all-namespaces --grace-period=1 --wait=true --timeout=60s \
            >/dev/null 2>&1 || log "deleting pods through the API did not finish; continuing"
        local i
        for ((i = 0; i < 100; i++)); do
            [[ -z $(ctr_k8s tasks ls -q 2>/dev/null) ]] && break
            sleep 0.2
        done
    fi
    stop_proc kubelet 20

    # 2. Whatever is left, through containerd.
    if pid_of containerd >/dev/null; then
        local id
        for id in $(ctr_k8s tasks ls -q 2>/dev/null); do
            ctr_k8s tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
        done
        for id in $(ctr_k8s tasks ls -q 2>/dev/null); do
            ctr_k8s tasks rm -f "$id" >/dev/null 2>&1 || true
        done
        for id in $(ctr_k8s containers ls -q 2>/dev/null); do
            ctr_k8s containers rm "$id" >/dev/null 2>&1 || true
        done
    fi
    stop_proc containerd 20

    # 3. containerd-shim processes outlive containerd: find ours through the
    #    state dir (shim.pid) and check each really serves our socket.
    local f pid cmd
    for f in "$RUN"/containerd/state/io.containerd.runtime.v2.task/*/*/shim.pid; do
        [[ -f $f ]] || continue
        pid=$(cat "$f")
        [[ $pid =~ ^[0-9]+$ ]] || continue
        cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
        if [[ $cmd == *containerd-shim* && $cmd == *"$CTR_SOCK"* ]]; then
            log "killing leftover shim $pid"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    # ... and any container process still in the kubelet's cgroup tree.
    local pids
    for ((i = 0; i < 50; i++)); do
        pids=$(cgroup_procs)
        [[ -z $pids ]] && break
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.1
    done

    # 4. The control plane.
    stop_proc kube-apiserver
    stop_proc etcd
    for f in "$PIDS"/*; do
        [[ -f $f ]] && stop_proc "$(basename "$f")"
    done

    # 5. Mounts, network namespaces, bridge, CNI cache, cgroups.
    if [[ -d $RUN/containerd/state/io.containerd.grpc.v1.cri/netns ]]; then
        for f in "$RUN"/containerd/state/io.containerd.grpc.v1.cri/netns/*; do
            [[ -e $f ]] && umount "$f" 2>/dev/null
        done
    fi
    unmount_run || log "WARNING: mounts left under $RUN"
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link delete "$BRIDGE" || log "WARNING: could not delete bridge $BRIDGE"
    fi
    rm -f /var/lib/cni/results/"$CNI_NETWORK"-* 2>/dev/null || true
    local h
    for h in /sys/fs/cgroup/*/"$CGROUP_ROOT"; do
        [[ -d $h ]] && find "$h" -depth -type d -exec rmdir {} + 2>/dev/null
        [[ -d $h ]] && log "WARNING: could not remove cgroup $h"
    done

    # 6. Host directories the components created (only those absent before up).
    if [[ -f $RUN/created-host-dirs ]]; then
        while read -r d; do
            [[ -n $d && -d $d ]] || continue
            if [[ $d == /var/lib/kubelet ]] && ! grep -qF " $d" /proc/self/mountinfo; then
                # only device-plugins/ (socket, checkpoint, DEPRECATION) lands here: the root dir is ours
                rm -rf --one-file-system /var/lib/kubelet
                continue
            fi
            find "$d" -depth -type d -empty -delete 2>/dev/null || true
            [[ -e $d ]] && log "WARNING: $d is left (not empty)"
        done <"$RUN/created-host-dirs"
    fi

    # 7. The run dir itself, unless something is still mounted below it.
    if grep -qF " $RUN" /proc/self/mountinfo; then
        log "WARNING: mounts remain under $RUN; leaving it in place"
        return 1
    fi
    if [[ -n ${UNROOT_E2E_KEEP_LOGS:-} && -d $LOGS ]]; then
        mkdir -p "$UNROOT_E2E_KEEP_LOGS"
        cp -a "$LOGS"/. "$UNROOT_E2E_KEEP_LOGS"/
    fi
    rm -rf --one-file-system "$RUN"
    log "down"
}

# ---- status / env --------------------------------------------------------------

print_env() {
    if [[ -n ${E2E_KUBECONFIG:-} ]]; then
        echo "export KUBECONFIG=$E2E_KUBECONFIG"
        return 0
    fi
    [[ -f $STATE ]] || {
        log "no cluster in $RUN (run: e2e/cluster.sh up)"
        return 1
    }
    # shellcheck disable=SC1090
    . "$STATE"
    echo "export KUBECONFIG=$RUN/admin.kubeconfig"
    echo "export UNROOT_E2E_RUN=$RUN"
    echo "export E2E_APISERVER=https://$BRIDGE_IP:$API_PORT"
    echo "export E2E_BRIDGE_IP=$BRIDGE_IP"
    echo "export E2E_API_PORT=$API_PORT"
    echo "export E2E_POD_SUBNET=$POD_SUBNET"
    echo "export E2E_CA_FILE=$PKI/ca.crt"
    # The API server's client certificate for webhooks, and its CA.
    echo "export E2E_WEBHOOK_CLIENT_CA=$PKI/webhook-client-ca.crt"
    echo "export E2E_WEBHOOK_CLIENT_CERT=$PKI/webhook-client.crt"
    echo "export E2E_WEBHOOK_CLIENT_KEY=$PKI/webhook-client.key"
    echo "export E2E_WEBHOOK_CLIENT_NAME=kube-apiserver-webhook-client"
    # Same CA, another name: refused at the handshake.
    echo "export E2E_WEBHOOK_OTHER_CERT=$PKI/webhook-client-other.crt"
    echo "export E2E_WEBHOOK_OTHER_KEY=$PKI/webhook-client-other.key"
    echo "export KUBECACHEDIR=$RUN/kubectl-cache"
    echo "export E2E_CONTAINERD_ADDRESS=$CTR_SOCK"
    echo "export E2E_KUBE_BIN=$KUBE_BIN"
}

do_status() {
    if [[ -n ${E2E_KUBECONFIG:-} ]]; then
        echo "external cluster (E2E_KUBECONFIG=$E2E_KUBECONFIG)"
        "${KUBECTL:-kubectl}" --kubeconfig "$E2E_KUBECONFIG" get --raw /readyz >/dev/null && echo "readyz: ok"
        return
    fi
    if [[ ! -e $RUN ]]; then
        echo "down ($RUN does not exist)"
        return 1
    fi
    local c pid all=0
    for c in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet; do
        if pid=$(pid_of "$c"); then
            printf '%-24s running (pid %s, rss %s MiB)\n' "$c" "$pid" \
                "$(awk '/^VmRSS/ {printf "%d", $2/1024}' "/proc/$pid/status")"
        else
            printf '%-24s not running\n' "$c"
            all=1
        fi
    done
    if node_ready; then echo "node localhost: Ready"; else
        echo "node localhost: not ready"
        all=1
    fi
    return "$all"
}

# One up/down at a time per run dir.
lock() {
    mkdir -p "$CACHE"
    exec 8>"$CACHE/cluster-$run_hash.lock"
    if ! flock -n 8; then
        log "waiting for another cluster.sh up/down on $RUN to finish"
        flock -w 300 8 || {
            log "ERROR: $CACHE/cluster-$run_hash.lock still held after 300 s"
            exit 1
        }
    fi
}

case "${1:-}" in
    up)
        if [[ -n ${E2E_KUBECONFIG:-} ]]; then
            log "E2E_KUBECONFIG is set: using that cluster, not starting one"
            exit 0
        fi
        [[ $(id -u) -eq 0 ]] || {
            log "must run as root (containerd, the kubelet, mounts, network)"
            exit 1
        }
        lock
        do_up
        ;;
    down)
        if [[ -n ${E2E_KUBECONFIG:-} ]]; then exit 0; fi
        lock
        do_down
        ;;
    status) do_status ;;
    env) print_env ;;
    *)
        sed -n '2,19p' "$0" >&2
        exit 2
        ;;
esac
