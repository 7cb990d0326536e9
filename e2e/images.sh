#!/usr/bin/env bash
# The e2e test images, built locally as docker-archive tarballs (no registry,
# no docker engine) and imported into containerd's k8s.io namespace.
#
#   e2e/images.sh build              write the tarballs (if stale); print their directory
#   e2e/images.sh import ADDRESS     build, then import into the containerd at ADDRESS (socket)
#   e2e/images.sh names              print the image references, one a line
#   e2e/images.sh unroot [BINARY]    write unroot's image from BINARY (default target/release/unroot);
#                                    print its reference
#   e2e/images.sh import-unroot ADDRESS [BINARY]   the same, imported into that containerd
#
# Images (pods reference them with imagePullPolicy: Never):
#   unroot-e2e/pause:1             static pause from the kubernetes source (containerd's sandbox_image)
#   unroot-e2e/busybox-root:1      Debian busybox-static, user root (no User in the image config)
#   unroot-e2e/busybox-nonroot:1   the same, User 1000:1000 (listed in /etc/passwd and /etc/group as e2e)
#   unroot-e2e/provisioner:1       busybox plus e2e/provisioner/provision.sh (also tagged by digest)
#   unroot-e2e/unroot:<hash>       the unroot binary, the shared libraries ldd lists for it, and
#                                  /etc/passwd and /etc/group naming 65532; User 65532:65532. The tag is
#                                  the layer's sha256 (16 hex digits): a new binary, a new reference.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${UNROOT_E2E_CACHE:-$HOME/.cache/unroot-e2e}
out=$cache/images

PAUSE_IMAGE=docker.io/unroot-e2e/pause:1
ROOT_IMAGE=docker.io/unroot-e2e/busybox-root:1
NONROOT_IMAGE=docker.io/unroot-e2e/busybox-nonroot:1
PROVISIONER_IMAGE=docker.io/unroot-e2e/provisioner:1
PROVISION_SCRIPT=$here/provisioner/provision.sh

log() { echo "images.sh: $*" >&2; }

build() {
    local bindir busybox
    bindir=$("$here/build-k8s.sh")
    busybox=/bin/busybox
    if ! [[ -x $busybox ]] || ! "$busybox" --list-full >/dev/null 2>&1; then
        log "$busybox is missing or is not a multi-call busybox; run e2e/deps.sh"
        return 1
    fi
    file_is_static "$busybox" || {
        log "$busybox is dynamically linked; install busybox-static (e2e/deps.sh)"
        return 1
    }
    mkdir -p "$out"
    # Rebuild only when an input changed (busybox or pause binary, or this script).
    local stamp
    stamp=$(cat "$busybox" "$bindir/pause" "${BASH_SOURCE[0]}" "$here/images.py" "$PROVISION_SCRIPT" | sha256sum | cut -c1-64)
    if [[ -f $out/.stamp && $(cat "$out/.stamp") == "$stamp" ]] &&
        [[ -f $out/pause.tar && -f $out/busybox-root.tar && -f $out/busybox-nonroot.tar && -f $out/provisioner.tar ]]; then
        echo "$out"
        return 0
    fi
    log "building image tarballs in $out"
    python3 "$here/images.py" base "$out" "$busybox" "$bindir/pause" "$PAUSE_IMAGE" "$ROOT_IMAGE" \
        "$NONROOT_IMAGE" "$PROVISIONER_IMAGE" "$PROVISION_SCRIPT"
    echo "$stamp" >"$out/.stamp"
    echo "$out"
}

file_is_static() {
    # A static ELF has no program interpreter (PT_INTERP).
    local headers
    headers=$(LC_ALL=C readelf -l "$1" 2>/dev/null) || return 1
    ! grep -q 'program interpreter' <<<"$headers"
}

import() {
    local address=$1 dir ref name
    [[ -S $address ]] || {
        log "no containerd socket at $address"
        return 1
    }
    dir=$(build)
    local existing
    existing=$(ctr --address "$address" -n k8s.io images ls -q)
    for name in pause busybox-root busybox-nonroot provisioner; do
        case $name in
            pause) ref=$PAUSE_IMAGE ;;
            busybox-root) ref=$ROOT_IMAGE ;;
            busybox-nonroot) ref=$NONROOT_IMAGE ;;
            provisioner) ref=$PROVISIONER_IMAGE ;;
        esac
        if grep -qxF "$ref" <<<"$existing"; then
            continue
        fi
        ctr --address "$address" -n k8s.io images import --snapshotter overlayfs "$dir/$name.tar" >/dev/null ||
            {
                log "ctr images import $dir/$name.tar failed"
                return 1
            }
    done
    # Pods pin the provisioner by digest (unroot requires it); an imported
    # archive has no registry digest, so name the image by its digest too.
    local digest
    digest=$(ctr --address "$address" -n k8s.io images ls | awk -v ref="$PROVISIONER_IMAGE" '$1 == ref {print $3}')
    if [[ -n $digest ]] && ! grep -qxF "${PROVISIONER_IMAGE%:*}@$digest" <<<"$existing"; then
        ctr --address "$address" -n k8s.io images tag "$PROVISIONER_IMAGE" "${PROVISIONER_IMAGE%:*}@$digest" >/dev/null ||
            log "tagging $PROVISIONER_IMAGE by its digest failed"
    fi
    local missing=0
    existing=$(ctr --address "$address" -n k8s.io images ls -q)
    for ref in "$PAUSE_IMAGE" "$ROOT_IMAGE" "$NONROOT_IMAGE" "$PROVISIONER_IMAGE"; do
        grep -qxF "$ref" <<<"$existing" || {
            log "$ref is not in containerd after import"
            missing=1
        }
    done
    return "$missing"
}

# unroot's own image, from the release binary (the e2e installs it with
# manifests/). Python does the work; the tarball is kept only for the last few
# binaries.
UNROOT_REPO=docker.io/unroot-e2e/unroot

unroot_image() {
    local binary=${1:-$here/../target/release/unroot}
    [[ -x $binary ]] || {
        log "$binary is not built (cargo build --release --bin unroot)"
        return 1
    }
    file_is_static "$binary" || command -v ldd >/dev/null || {
        log "ldd is needed to find the shared libraries of $binary"
        return 1
    }
    mkdir -p "$out"
    python3 "$here/images.py" unroot "$out" "$binary" "$UNROOT_REPO"
}

import_unroot() {
    local address=$1 ref tar
    [[ -S $address ]] || {
        log "no containerd socket at $address"
        return 1
    }
    ref=$(unroot_image "${2:-}") || return 1
    # The list first, then grep: `ctr ... | grep -q` fails under pipefail
    # whenever grep stops reading before ctr is done writing.
    local existing
    existing=$(ctr --address "$address" -n k8s.io images ls -q) || return 1
    if ! grep -qxF "$ref" <<<"$existing"; then
        tar=$out/$(basename "${ref//:/-}").tar
        ctr --address "$address" -n k8s.io images import --snapshotter overlayfs "$tar" >/dev/null || {
            log "ctr images import $tar failed"
            return 1
        }
        existing=$(ctr --address "$address" -n k8s.io images ls -q) || return 1
        grep -qxF "$ref" <<<"$existing" || {
            log "$ref is not in containerd after import"
            return 1
        }
    fi
    echo "$ref"
}

case "${1:-}" in
    build) build ;;
    unroot)
        [[ $# -le 2 ]] || {
            echo "usage: $0 unroot [BINARY]" >&2
            exit 2
        }
        unroot_image "${2:-}"
        ;;
    import-unroot)
        [[ $# -eq 2 || $# -eq 3 ]] || {
            echo "usage: $0 import-unroot CONTAINERD_SOCKET [BINARY]" >&2
            exit 2
        }
        import_unroot "$2" "${3:-}"
        ;;
    import)
        [[ $# -eq 2 ]] || {
            echo "usage: $0 import CONTAINERD_SOCKET" >&2
            exit 2
        }
        import "$2"
        ;;
    names) printf '%s\n' "$PAUSE_IMAGE" "$ROOT_IMAGE" "$NONROOT_IMAGE" ;;
    *)
        sed -n '2,22p' "$0" >&2
        exit 2
        ;;
esac
