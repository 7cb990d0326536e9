#!/usr/bin/env bash
# The e2e test images, built locally as docker-archive tarballs (no registry,
# no docker engine) and imported into containerd's k8s.io namespace.
#
#   e2e/images.sh build              write the tarballs (if stale); print their directory
#   e2e/images.sh import ADDRESS     build, then import into the containerd at ADDRESS (socket)
#   e2e/images.sh names              print the image references, one a line
#
# Images (pods reference them with imagePullPolicy: Never):
#   unroot-e2e/pause:1             static pause from the kubernetes source (containerd's sandbox_image)
#   unroot-e2e/busybox-root:1      Debian busybox-static, user root (no User in the image config)
#   unroot-e2e/busybox-nonroot:1   the same, User 1000:1000 (listed in /etc/passwd and /etc/group as e2e)
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
    stamp=$(cat "$busybox" "$bindir/pause" "${BASH_SOURCE[0]}" "$PROVISION_SCRIPT" | sha256sum | cut -c1-64)
    if [[ -f $out/.stamp && $(cat "$out/.stamp") == "$stamp" ]] &&
        [[ -f $out/pause.tar && -f $out/busybox-root.tar && -f $out/busybox-nonroot.tar && -f $out/provisioner.tar ]]; then
        echo "$out"
        return 0
    fi
    log "building image tarballs in $out"
    python3 - "$out" "$busybox" "$bindir/pause" "$PAUSE_IMAGE" "$ROOT_IMAGE" "$NONROOT_IMAGE" "$PROVISIONER_IMAGE" "$PROVISION_SCRIPT" <<'PY'
import hashlib, io, json, os, subprocess, sys, tarfile

out, busybox, pause, pause_ref, root_ref, nonroot_ref, provisioner_ref, provision_script = sys.argv[1:]
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Layer:
    """A deterministic uncompressed layer tar (mtime 0, owned by root)."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.dirs = set()

    def _info(self, name, type_, mode):
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = type_, mode, 0, 0, 0, "root", "root"
        return ti

    def dir(self, name, mode=0o755):
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in self.dirs:
                self.dirs.add(d)
                self.tar.addfile(self._info(d, tarfile.DIRTYPE, mode if i == len(parts) else 0o755))

    def file(self, name, data, mode=0o644):
        self.dir(os.path.dirname(name)) if "/" in name else None
        ti = self._info(name, tarfile.REGTYPE, mode)
        ti.size = len(data)
        self.tar.addfile(ti, io.BytesIO(data))

    def symlink(self, name, target):
        self.dir(os.path.dirname(name)) if "/" in name else None
        ti = self._info(name, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.tar.addfile(ti)

    def bytes(self):
        self.tar.close()
        return self.buf.getvalue()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def write_archive(path, ref, layer_bytes, config):
    diff_id = sha(layer_bytes)
    config = dict(config)
    config["rootfs"] = {"type": "layers", "diff_ids": ["sha256:" + diff_id]}
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_name = sha(config_bytes) + ".json"
    # docker save names images without the docker.io/ prefix
    tag = ref[len("docker.io/"):] if ref.startswith("docker.io/") else ref
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": [diff_id + "/layer.tar"]}]
    repo, _, version = tag.rpartition(":")
    repositories = {repo: {version: diff_id}}
    files = [
        (diff_id + "/VERSION", b"1.0"),
        (diff_id + "/layer.tar", layer_bytes),
        (config_name, config_bytes),
        ("manifest.json", json.dumps(manifest).encode()),
        ("repositories", json.dumps(repositories).encode()),
    ]
    tmp = path + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as t:
        t.addfile(_dir(diff_id))
        for name, data in files:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
            t.addfile(ti, io.BytesIO(data))
    os.replace(tmp, path)


def _dir(name):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 0
    return ti


def image_config(user, entrypoint, cmd):
    cfg = {"Env": [PATH], "WorkingDir": "/"}
    if user:
        cfg["User"] = user
    if entrypoint:
        cfg["Entrypoint"] = entrypoint
    if cmd:
        cfg["Cmd"] = cmd
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": cfg,
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "unroot e2e/images.sh"}],
    }


# pause
layer = Layer()
layer.file("pause", open(pause, "rb").read(), 0o755)
write_archive(os.path.join(out, "pause.tar"), pause_ref, layer.bytes(),
              image_config("65535:65535", ["/pause"], None))

# busybox: one binary, a symlink per applet, a minimal /etc
bb = open(busybox, "rb").read()
applets = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True).stdout.split()


def busybox_layer(user=None, extra=()):
    """user: (name, uid, gid) of a non-root user to list in /etc/passwd and /etc/group."""
    layer = Layer()
    for d in ("dev", "proc", "sys", "etc", "root", "home", "var", "usr/bin", "usr/sbin", "sbin"):
        layer.dir(d, 0o700 if d == "root" else 0o755)
    layer.dir("tmp", 0o1777)
    layer.file("bin/busybox", bb, 0o755)
    for a in sorted(set(applets)):
        if a != "bin/busybox":
            layer.symlink(a, "/bin/busybox")
    passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    group = "root:x:0:\nnogroup:x:65534:\n"
    if user:
        name, uid, gid = user
        passwd += f"{name}:x:{uid}:{gid}:{name}:/tmp:/bin/sh\n"
        group += f"{name}:x:{gid}:\n"
    layer.file("etc/passwd", passwd.encode())
    layer.file("etc/group", group.encode())
    for path, data in extra:
        layer.file(path, data, 0o755)
    return layer.bytes()


write_archive(os.path.join(out, "busybox-root.tar"), root_ref, busybox_layer(),
              image_config(None, None, ["sh"]))
write_archive(os.path.join(out, "busybox-nonroot.tar"), nonroot_ref, busybox_layer(("e2e", 1000, 1000)),
              image_config("1000:1000", None, ["sh"]))
# the reference provisioning init container: busybox plus e2e/provisioner/provision.sh
write_archive(os.path.join(out, "provisioner.tar"), provisioner_ref,
              busybox_layer(extra=(("provision.sh", open(provision_script, "rb").read()),)),
              image_config(None, ["/bin/sh", "/provision.sh"], None))
PY
    echo "$stamp" >"$out/.stamp"
    echo "$out"
}

file_is_static() {
    # A static ELF has no program interpreter (PT_INTERP).
    ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'program interpreter'
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

case "${1:-}" in
    build) build ;;
    import)
        [[ $# -eq 2 ]] || {
            echo "usage: $0 import CONTAINERD_SOCKET" >&2
            exit 2
        }
        import "$2"
        ;;
    names) printf '%s\n' "$PAUSE_IMAGE" "$ROOT_IMAGE" "$NONROOT_IMAGE" ;;
    *)
        sed -n '2,13p' "$0" >&2
        exit 2
        ;;
esac
