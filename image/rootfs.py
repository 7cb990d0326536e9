#!/usr/bin/env python3
"""The root filesystem of make image's runtime base, as one tar on stdout.

    rootfs.py DEB...

The same contents as distroless cc-debian12 (GoogleContainerTools/distroless:
static + base + cc): the files of the given Debian packages (base-files,
netbase, tzdata, media-types, libc6, libssl3, libgcc-s1, libgomp1,
libstdc++6, gcc-12-base), of ca-certificates only the bundle
/etc/ssl/certs/ca-certificates.crt (its certificates concatenated, as
distroless does) and its copyright, and distroless's own files: /etc/passwd
and /etc/group with root, nobody and nonroot (65532), /etc/nsswitch.conf,
/tmp (1777), /root and /home/nonroot. No maintainer script runs, and the
result has no shell: the script fails if one got in.

Owners are root (nonroot's home 65532), modification times those of the
packages (0 for the files made here), entries sorted: the same packages
give the same bytes.
"""

import io
import subprocess
import sys
import tarfile

NONROOT = 65532
PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = f"root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:{NONROOT}:\n"
NSSWITCH = """passwd:         compat
group:          compat
shadow:         compat
gshadow:        files

hosts:          files dns
networks:       files

protocols:      db files
services:       db files
ethers:         db files
rpc:            db files

netgroup:       nis
"""
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
SHELLS = {"bin/sh", "bin/bash", "bin/dash", "usr/bin/sh", "usr/bin/bash", "usr/bin/dash", "bin/busybox"}


def deb_members(deb):
    """(TarInfo, bytes or None) for each entry of a .deb's data, names without './'.
    A hard link comes back as a copy of its target, so that the order of the
    entries no longer matters."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], check=True, capture_output=True).stdout
    contents = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for info in tar:
            name = info.name.removeprefix("./").rstrip("/")
            if name in ("", "."):
                continue
            if info.islnk():
                content = contents[info.linkname.removeprefix("./")]
                info.type, info.linkname, info.size = tarfile.REGTYPE, "", len(content)
            else:
                content = tar.extractfile(info).read() if info.isreg() else None
            contents[name] = content
            info.name = name
            yield info, content


def made(name, text=None, mode=0o644, uid=0, directory=False):
    info = tarfile.TarInfo(name)
    info.mode, info.uid, info.gid, info.mtime = mode, uid, uid, 0
    info.uname = info.gname = "nonroot" if uid == NONROOT else "root"
    if directory:
        info.type = tarfile.DIRTYPE
        return info, None
    data = text.encode()
    info.size = len(data)
    return info, data


def main(debs):
    entries = {}
    certs = []
    for deb in debs:
        ca = "/ca-certificates_" in f"/{deb.rsplit('/', 1)[-1]}"
        for info, content in deb_members(deb):
            if ca:
                # Only the bundle made from its certificates (below), and its licence.
                if info.name.startswith("usr/share/ca-certificates/") and info.name.endswith(".crt"):
                    certs.append((info.name, content))
                if info.name != "usr/share/doc/ca-certificates/copyright":
                    continue
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            entries.setdefault(info.name, (info, content))
    bundle = "".join(c.decode() if c.endswith(b"\n") else c.decode() + "\n" for _, c in sorted(certs))
    for info, content in [
        made("etc", directory=True, mode=0o755),
        made("etc/ssl", directory=True, mode=0o755),
        made("etc/ssl/certs", directory=True, mode=0o755),
    ]:
        entries.setdefault(info.name, (info, content))
    for info, content in [
        made(CA_BUNDLE, bundle),
        made("etc/passwd", PASSWD),
        made("etc/group", GROUP),
        made("etc/nsswitch.conf", NSSWITCH),
        made("tmp", directory=True, mode=0o1777),
        made("root", directory=True, mode=0o700),
        made("home", directory=True, mode=0o755),
        made("home/nonroot", directory=True, mode=0o700, uid=NONROOT),
    ]:
        # Ours win over a package's (base-files ships /tmp and /root too).
        entries[info.name] = (info, content)
    if not certs:
        sys.exit("rootfs.py: no certificates found: is ca-certificates among the packages?")
    shells = sorted(SHELLS & entries.keys())
    if shells:
        sys.exit(f"rootfs.py: the runtime base must have no shell, found: {', '.join(shells)}")
    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT) as out:
        for name in sorted(entries):
            info, content = entries[name]
            out.addfile(info, io.BytesIO(content) if content is not None else None)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
