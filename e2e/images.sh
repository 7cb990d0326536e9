#!/usr/bin/env bash
# The e2e test images, built locally as docker-archive tarballs (no registry,
# no docker engine) and imported into containerd's k8s.io namespace.
#
#   e2e/images.sh build              write the tarballs (if stale); print their directory
#   e2e/images.sh import ADDRESS     build, then import into the containerd at ADDRESS (socket)
#   e2e/images.sh names              print the image references, one a line
#   e2e/images.sh import-unroot ADDRESS ARCHIVE   import unroot's image, the OCI archive `make image`
#                                    wrote (target/image/unroot.oci.tar), into that containerd; print
#                                    its reference, docker.io/unroot-e2e/unroot@<the archive's digest>
#
# Images (pods reference them with imagePullPolicy: Never):
#   unroot-e2e/pause:1             static pause from the kubernetes source (containerd's sandbox_image)
#   unroot-e2e/busybox-root:1      Debian busybox-static, user root (no User in the image config)
#   unroot-e2e/busybox-nonroot:1   the same, User 1000:1000 (listed in /etc/passwd and /etc/group as e2e)
#   unroot-e2e/provisioner:1       busybox plus e2e/provisioner/provision.sh (also tagged by digest)
#   unroot-e2e/unroot@sha256:...   the image make image built from the Containerfile (image/build.sh),
#                                  named by the digest of its manifest
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

# unroot's own image: the OCI archive `make image` wrote from the Containerfile
# (image/build.sh), imported as it is and named by its manifest's digest, the
# one make image printed (ARCHIVE.digest). Pods that name
# docker.io/unroot-e2e/unroot@that-digest run exactly that image.
UNROOT_REPO=docker.io/unroot-e2e/unroot

# The digest of the one manifest in an OCI archive's index.json.
archive_digest() {
    python3 -c '
import json, sys, tarfile
try:
    with tarfile.open(sys.argv[1]) as t:
        manifests = json.load(t.extractfile("index.json"))["manifests"]
except (OSError, KeyError, TypeError, ValueError, tarfile.TarError) as e:
    sys.exit(f"images.sh: {sys.argv[1]} is not an OCI archive (index.json): {e}")
if len(manifests) != 1:
    sys.exit(f"images.sh: {sys.argv[1]} holds {len(manifests)} manifests, not one")
print(manifests[0]["digest"])
' "$1"
}

import_unroot() {
    local address=$1 archive=$2 digest printed ref existing target
    [[ -S $address ]] || {
        log "no containerd socket at $address"
        return 1
    }
    [[ -f $archive ]] || {
        log "no image archive at $archive: make image writes it (make image-dev the dev-profile one)"
        return 1
    }
    digest=$(archive_digest "$archive") || return 1
    if [[ -f $archive.digest ]]; then
        printed=$(cat "$archive.digest")
        [[ $printed == "$digest" ]] || {
            log "$archive holds $digest, but make image printed $printed ($archive.digest): a stale file; run make image again"
            return 1
        }
    fi
    ref=$UNROOT_REPO@$digest
    # The list first, then grep: `ctr ... | grep -q` fails under pipefail
    # whenever grep stops reading before ctr is done writing.
    existing=$(ctr --address "$address" -n k8s.io images ls -q) || return 1
    if ! grep -qxF "$ref" <<<"$existing"; then
        # --digests names the image REPO@<manifest digest>; the archive's own
        # ref (the version) becomes REPO:<version>.
        ctr --address "$address" -n k8s.io images import --base-name "$UNROOT_REPO" --digests \
            --snapshotter overlayfs "$archive" >/dev/null || {
            log "ctr images import $archive failed"
            return 1
        }
    fi
    # What containerd holds under that name is the archive's manifest.
    target=$(ctr --address "$address" -n k8s.io images ls | awk -v ref="$ref" '$1 == ref {print $3}') || return 1
    [[ $target == "$digest" ]] || {
        log "$ref is not in containerd after importing $archive (found: ${target:-nothing})"
        return 1
    }
    echo "$ref"
}

case "${1:-}" in
    build) build ;;
    import-unroot)
        [[ $# -eq 3 ]] || {
            echo "usage: $0 import-unroot CONTAINERD_SOCKET ARCHIVE" >&2
            exit 2
        }
        import_unroot "$2" "$3"
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
        sed -n '2,18p' "$0" >&2
        exit 2
        ;;
esac
