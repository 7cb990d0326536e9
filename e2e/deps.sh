#!/usr/bin/env bash
# Install what the e2e cluster needs from Debian's own packages, idempotently.
#
#   e2e/deps.sh            runtime + build dependencies (apt-get only if something is missing)
#   e2e/deps.sh --source   also enable deb-src (deb822 .sources) so `apt-get source kubernetes` works
#   e2e/deps.sh --dev      also install shellcheck (for linting these scripts)
#
# Fast path: when every package is installed (and deb-src is there if asked
# for) it runs no apt command at all and returns in well under a second.
set -euo pipefail

want_source=0
want_dev=0
for arg in "$@"; do
    case "$arg" in
        --source) want_source=1 ;;
        --dev) want_dev=1 ;;
        -h | --help)
            sed -n '2,9p' "$0"
            exit 0
            ;;
        *)
            echo "deps.sh: unknown argument: $arg" >&2
            exit 2
            ;;
    esac
done

log() { echo "deps.sh: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    log "must run as root (it installs Debian packages and later runs containerd and the kubelet)"
    exit 1
fi

packages=(
    # node and control plane
    etcd-server containerd runc containernetworking-plugins
    # building kube-* 1.20.2 and the static pause binary
    golang-go golang-github-modern-go-reflect2-dev dpkg-dev gcc libc6-dev binutils
    # test images
    busybox-static
    # certificates, networking, mounts, json
    openssl iproute2 util-linux mount ca-certificates python3
)
((want_dev)) && packages+=(shellcheck)
# kubectl: use the one on PATH if there is one; Debian's otherwise.
command -v kubectl >/dev/null 2>&1 || packages+=(kubernetes-client)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$p")
done

src_file=/etc/apt/sources.list.d/unroot-e2e-debian-src.sources
need_update=0

# deb-src enabled anywhere already (deb822 Types: or a one-line deb-src entry)?
have_deb_src() {
    grep -rqsE '^[[:space:]]*(Types:.*deb-src|deb-src[[:space:]])' \
        /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null
}

if ((want_source)) && ! have_deb_src; then
    # Copy the deb822 stanzas that serve Debian itself (same URIs, Suites and
    # Signed-By keyring) with Types: deb-src. A plain `deb-src` line in a .list
    # file next to a deb822 entry with Signed-By conflicts and breaks apt.
    debian_sources=/etc/apt/sources.list.d/debian.sources
    if [[ -f $debian_sources ]]; then
        log "enabling deb-src in $src_file (from $debian_sources)"
        sed -E 's/^Types:.*/Types: deb-src/' "$debian_sources" >"$src_file.tmp"
    else
        codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
        log "enabling deb-src in $src_file (deb.debian.org $codename)"
        cat >"$src_file.tmp" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    mv "$src_file.tmp" "$src_file"
    need_update=1
fi

if ((${#missing[@]} == 0 && need_update == 0)); then
    exit 0
fi

# apt-get waiting for a lock another apt holds (a second build, the e2e's
# deps.sh): DPkg::Lock::Timeout covers dpkg's lock; the lists lock of an
# update is retried.
apt_get() {
    local try
    for try in 1 2 3; do
        apt-get -o DPkg::Lock::Timeout=300 "$@" && return 0
        log "apt-get $1 failed (try $try of 4; another apt may hold the lock): retrying in 15 s"
        sleep 15
    done
    apt-get -o DPkg::Lock::Timeout=300 "$@"
}

export DEBIAN_FRONTEND=noninteractive
# An install needs package lists; refresh them when we added a source, or when
# apt has never fetched any (fresh machine), or when the install fails on a stale list.
if ((need_update)) || ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    log "apt-get update"
    apt_get update -qq
    need_update=0
fi
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    if ! apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        log "install failed; refreshing package lists and retrying"
        apt_get update -qq
        apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi
# Debian's containerd package starts a system containerd; the suite runs its
# own (own config, root, state and socket) and does not use it. Leave it be.
