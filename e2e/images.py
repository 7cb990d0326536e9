"""Docker-archive image tarballs for the e2e suite, written by hand.

    images.py base OUT BUSYBOX PAUSE PAUSE_REF ROOT_REF NONROOT_REF PROVISIONER_REF PROVISION_SCRIPT

No registry and no container engine: a layer is a tar written with
deterministic metadata (mtime 0, owner root), so rebuilding unchanged inputs
yields byte-identical archives.
"""

import hashlib, io, json, os, subprocess, sys, tarfile

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


def build_base(out, busybox, pause, pause_ref, root_ref, nonroot_ref, provisioner_ref, provision_script):
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


def main(argv):
    if len(argv) == 9 and argv[0] == "base":
        build_base(*argv[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
