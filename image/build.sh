#!/usr/bin/env bash
# make image: build the Containerfile with podman into an OCI archive and
# print the archive's digest.
#
#   image/build.sh [release|dev]     the cargo profile (default release)
#
# Writes target/image/unroot.oci.tar (dev: unroot-dev.oci.tar): one image,
# gzip layers, tagged with the version in Cargo.toml. Prints the digest of
# its manifest, sha256:..., as the last line on stdout, and writes it next to
# the archive (ARCHIVE.digest). A registry serves that digest when the
# archive is copied there as it is (skopeo copy oci-archive:...), and the e2e
# suite runs it (e2e/lib.sh imports the archive into the cluster's
# containerd). The image's binary goes to target/image/unroot (dev:
# unroot-dev), which the e2e suite runs on the host. Building the last
# build's sources again gives the same binary, podman's cached layers and
# so the same digest.
#
# Bases. No container registry is reachable from this machine or CI, so the
# Containerfile's default bases (pinned by digest) are replaced by bases
# made here from Debian packages and passed as BUILDER_IMAGE and
# RUNTIME_IMAGE:
#   runtime  what distroless cc-debian12 holds (image/rootfs.py: glibc,
#            libgcc, libstdc++, libssl, CA certificates, tzdata, passwd and
#            group naming nonroot 65532; no shell), user 65532
#   builder  Debian minbase with gcc and libc6-dev (mmdebstrap), plus this
#            machine's Rust toolchain at the same path as here, and
#            CARGO_HOME as here
# Both stay in this script's podman storage under $UNROOT_IMAGE_CACHE
# (default ~/.cache/unroot-image), tagged with a hash of what they hold (the
# Debian versions apt offers for their packages, the toolchain's
# `rustc -vV`, how they are made): they are made again only when that
# changes, and the older ones are removed then.
#
# The build reaches no network (podman build --network none). cargo builds
# offline from this machine's cargo registry (mounted read-only; `cargo
# fetch` fills it first), in this machine's target directory mounted at the
# same path as an overlay: the build reads what is there, and its writes go
# to an upper directory under the cache, kept for the next build, never to
# target/. Same rustc, same paths: the dependencies compiled here or by an
# earlier build are not compiled again; the crate itself is (the
# Containerfile says why). The commit is UNROOT_GIT_COMMIT if set, else
# `git rev-parse HEAD`.
#
# Podman (this machine: root, cgroup v1, no CAP_SYS_RESOURCE): storage of
# its own (overlay driver) under the cache, runc, cgroupfs, events to a
# file, no short-name lookups. The settings are files under the cache that
# only this script's podman reads (CONTAINERS_STORAGE_CONF, CONTAINERS_CONF,
# CONTAINERS_REGISTRIES_CONF); nothing of the user's podman changes.
# Installs the Debian packages podman and mmdebstrap when missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
profile=${1:-release}
case $profile in
    release | dev) ;;
    *)
        echo "usage: $0 [release|dev]" >&2
        exit 2
        ;;
esac

cache=${UNROOT_IMAGE_CACHE:-$HOME/.cache/unroot-image}
target=${CARGO_TARGET_DIR:-$root/target}
cargo_home=${CARGO_HOME:-$HOME/.cargo}
out=$target/image
archive=$out/unroot.oci.tar
binary=$out/unroot
if [[ $profile != release ]]; then
    archive=$out/unroot-$profile.oci.tar
    binary=$out/unroot-$profile
fi
# The runtime base: distroless cc-debian12's packages (GoogleContainerTools/
# distroless: static, base and cc).
RUNTIME_PACKAGES=(base-files netbase tzdata media-types libc6 libssl3 libgcc-s1 libgomp1 libstdc++6 gcc-12-base ca-certificates)
# The builder base: what links the binary, on top of minbase.
BUILDER_PACKAGES=(gcc libc6-dev)
# The builder's cache key: the packages that make the binary.
BUILDER_KEY_PACKAGES=(libc6 libc6-dev libgcc-12-dev gcc-12 binutils-x86-64-linux-gnu)

log() { echo "image/build.sh: $*" >&2; }

# ---- tools --------------------------------------------------------------------

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

ensure_packages() {
    local p status missing=()
    # A fresh machine has no package lists: the bases are made from them.
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null && [[ $(id -u) -eq 0 ]]; then
        log "apt-get update"
        apt_get update -qq
    fi
    for p in podman mmdebstrap; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        [[ $status == installed ]] || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    if [[ $(id -u) -ne 0 ]]; then
        log "missing Debian packages: ${missing[*]} (apt-get install ${missing[*]})"
        return 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
        apt_get update -qq
        apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    }
}

# podman with this script's settings only.
conf=$cache/conf
if [[ -w /run ]]; then
    run=/run/unroot-image
else
    run=${XDG_RUNTIME_DIR:-/tmp}/unroot-image-$(id -u)
fi

write_podman_conf() {
    mkdir -p "$conf" "$run"
    cat >"$conf/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$cache/storage"
runroot = "$run/storage"
EOF
    cat >"$conf/containers.conf" <<EOF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$run/events.log"
runtime = "runc"
tmp_dir = "$run/libpod"
EOF
    cat >"$conf/registries.conf" <<EOF
unqualified-search-registries = []
EOF
}

podman_() {
    CONTAINERS_STORAGE_CONF=$conf/storage.conf CONTAINERS_CONF=$conf/containers.conf \
        CONTAINERS_REGISTRIES_CONF=$conf/registries.conf TMPDIR=$cache/tmp podman "$@"
}

# ---- bases ----------------------------------------------------------------------

# "name=version" of each package, as apt would install it now.
candidates() {
    local found
    found=$(apt-cache show --no-all-versions "$@" 2>/dev/null | awk '/^Package:/ {p = $2} /^Version:/ {print p "=" $2}')
    if (($(grep -c . <<<"$found") != $#)); then
        log "apt has no version of some of: $* (found: ${found//$'\n'/ }); run apt-get update"
        return 1
    fi
    echo "$found"
}

key_of() { sha256sum | cut -c1-16; }

# The runtime base from Debian packages: image/rootfs.py.
make_runtime_base() {
    local ref=$1 tmp
    tmp=$(mktemp -d "$cache/tmp/runtime.XXXXXX")
    (
        cd "$tmp"
        # shellcheck disable=SC2046 # one word per package
        apt-get download -q -o APT::Sandbox::User=root $(candidates "${RUNTIME_PACKAGES[@]}") >/dev/null
    ) || {
        rm -rf "$tmp"
        log "apt-get download of the runtime packages failed (apt-get update, then try again)"
        return 1
    }
    python3 "$here/rootfs.py" "$tmp"/*.deb >"$tmp/rootfs.tar" || {
        rm -rf "$tmp"
        return 1
    }
    local rc=0
    podman_ import -q \
        --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        "$tmp/rootfs.tar" "$ref" >/dev/null || rc=$?
    rm -rf "$tmp"
    return "$rc"
}

# The builder base: mmdebstrap from this machine's apt sources (same Debian
# release and mirrors), then this machine's toolchain at the same path.
make_builder_base() {
    local ref=$1 sysroot=$2 suite tmp
    # shellcheck source=/dev/null
    suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
    tmp=$(mktemp -d "$cache/tmp/builder.XXXXXX")
    if ! mmdebstrap --quiet --variant=minbase --include="$(
        IFS=,
        echo "${BUILDER_PACKAGES[*]}"
    )" \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --customize-hook="mkdir -p \"\$1$sysroot\" \"\$1$cargo_home\" && tar -C '$sysroot' --exclude=./share/doc -cf - . | tar -C \"\$1$sysroot\" -xf -" \
        "$suite" "$tmp/rootfs.tar" >&2; then
        rm -rf "$tmp"
        log "mmdebstrap failed (see above)"
        return 1
    fi
    local rc=0
    podman_ import -q \
        --change "ENV PATH=$sysroot/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --change "ENV CARGO_HOME=$cargo_home" \
        "$tmp/rootfs.tar" "$ref" >/dev/null || rc=$?
    rm -rf "$tmp"
    return "$rc"
}

# ensure_base NAME KEY MAKER ARGS...: localhost/unroot-base/NAME:KEY, made by
# MAKER unless the storage has it; older tags of NAME are removed.
ensure_base() {
    local name=$1 key=$2 maker=$3 ref old started
    shift 3
    ref=localhost/unroot-base/$name:$key
    if ! podman_ image exists "$ref"; then
        log "making the $name base $ref (once for these packages)"
        started=$SECONDS
        "$maker" "$ref" "$@" || return 1
        log "made the $name base in $((SECONDS - started)) s"
        for old in $(podman_ images --format '{{.Repository}}:{{.Tag}}' "localhost/unroot-base/$name"); do
            [[ $old == "$ref" ]] || podman_ rmi -f "$old" >/dev/null || true
        done
    fi
    echo "$ref"
}

# ---- the build --------------------------------------------------------------------

ensure_packages
mkdir -p "$cache/tmp" "$out" "$target"
write_podman_conf
# One build at a time per cache: the bases and the storage are shared.
exec 9>"$cache/build.lock"
flock 9

sysroot=$(cd "$root" && rustc --print sysroot)
# A toolchain of its own directory (rustup's), with its cargo: it is copied
# into the builder whole.
case $sysroot in
    / | /usr | /usr/local)
        log "rustc's sysroot is $sysroot (a distribution's toolchain): make image copies a toolchain directory such as rustup's into its builder; install one with rustup, or build with the Containerfile's own bases (podman build .)"
        exit 1
        ;;
esac
[[ -x $sysroot/bin/cargo && -x $sysroot/bin/rustc ]] || {
    log "no cargo and rustc in $sysroot/bin (rustc --print sysroot): install the toolchain's cargo (rustup component add cargo)"
    exit 1
}
runtime_key=$(
    {
        declare -f make_runtime_base
        sha256sum "$here/rootfs.py"
        candidates "${RUNTIME_PACKAGES[@]}"
    } | key_of
)
builder_key=$(
    {
        declare -f make_builder_base
        echo "${BUILDER_PACKAGES[*]} $sysroot $cargo_home"
        (cd "$root" && rustc -vV)
        candidates "${BUILDER_KEY_PACKAGES[@]}"
    } | key_of
)
runtime_image=$(ensure_base runtime "$runtime_key" make_runtime_base)
builder_image=$(ensure_base builder "$builder_key" make_builder_base "$sysroot")

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
commit=${UNROOT_GIT_COMMIT:-$(git -C "$root" rev-parse HEAD 2>/dev/null || true)}
if [[ -n $commit ]]; then
    if [[ -n $(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
        log "the working tree has uncommitted changes: the image is built from them, its revision label names $commit"
    fi
fi
# The source label: origin's https URL without credentials, if there is one.
source_url=$(git -C "$root" remote get-url origin 2>/dev/null || true)
[[ $source_url == https://* ]] && source_url=$(sed -E 's#^https://[^@/]*@#https://#' <<<"$source_url") || source_url=

# Every crate in the registry, for the offline build.
(cd "$root" && cargo fetch --locked --quiet)

# The build's writes to target/: one upper directory per target directory
# and builder (a new toolchain starts a new one; the older ones go).
overlay=$cache/overlay/$(printf %s "$target" | key_of)
mkdir -p "$overlay-$builder_key/upper" "$overlay-$builder_key/work"
for old in "$overlay"-*; do
    [[ $old == "$overlay-$builder_key" ]] || rm -rf "$old"
done
overlay=$overlay-$builder_key

log "podman build ($profile profile, bases $builder_image and $runtime_image)"
started=$SECONDS
iid=$(mktemp "$cache/tmp/iid.XXXXXX")
registry_mounts=(-v "$cargo_home/registry:$cargo_home/registry:ro")
[[ -d $cargo_home/git ]] && registry_mounts+=(-v "$cargo_home/git:$cargo_home/git:ro")
podman_ build --pull=never --network=none --isolation=oci --layers \
    --build-arg BUILDER_IMAGE="$builder_image" \
    --build-arg RUNTIME_IMAGE="$runtime_image" \
    --build-arg PROFILE="$profile" \
    --build-arg VERSION="$version" \
    --build-arg UNROOT_GIT_COMMIT="$commit" \
    --build-arg SOURCE_URL="$source_url" \
    --build-arg CARGO_NET_OFFLINE=true \
    --build-arg CARGO_TARGET_DIR="$target" \
    "${registry_mounts[@]}" -v "$target:$target:O,upperdir=$overlay/upper,workdir=$overlay/work" \
    --iidfile "$iid" -f "$root/Containerfile" "$root" >&2
image_id=$(cat "$iid")
rm -f "$iid"
podman_ tag "$image_id" "localhost/unroot:$profile"
log "built $image_id in $((SECONDS - started)) s"

# The archive: the image with gzip layers, named by its version (a tag, as
# OCI archives name images; `ctr images import --base-name REPO` adds the rest).
rm -f "$archive.tmp"
podman_ push -q --compression-format gzip "$image_id" "oci-archive:$archive.tmp:$version" >&2
# Its digest, and the binary in it (BINARY: for the e2e suite, which runs
# the image's binary on the host too).
digest=$(python3 - "$archive.tmp" "$binary.tmp" <<'PY'
import json, os, sys, tarfile
archive, binary = sys.argv[1:]
with tarfile.open(archive) as t:
    blob = lambda digest: t.extractfile("blobs/sha256/" + digest.split(":")[1])
    (manifest,) = json.load(t.extractfile("index.json"))["manifests"]
    for layer in reversed(json.load(blob(manifest["digest"]))["layers"]):
        with tarfile.open(fileobj=blob(layer["digest"]), mode="r|*") as files:
            found = next((f for f in files if f.name.lstrip("./") == "unroot"), None)
            if found:
                with open(binary, "wb") as out:
                    out.write(files.extractfile(found).read())
                os.chmod(binary, 0o755)
                break
    else:
        sys.exit(f"image/build.sh: no /unroot in {archive}")
print(manifest["digest"])
PY
)
mv "$archive.tmp" "$archive"
mv "$binary.tmp" "$binary"
echo "$digest" >"$archive.digest"
# Earlier builds' images and layers, no longer tagged.
podman_ image prune -f >/dev/null || true
log "wrote $archive ($(du -h "$archive" | cut -f1)): unroot $version${commit:+ (${commit:0:7})}, $profile profile; its binary: $binary"
echo "$digest"
