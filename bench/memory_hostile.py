#!/usr/bin/env python3
"""Peak RSS of the release binary at 2x saturation plus hostile inputs.

    python3 bench/memory_hostile.py RATE [SECONDS]

RATE is twice the /mutate saturation throughput (BENCHMARKS.md). Needs
`cargo build --release --bin unroot --example bench_review` and oha in
~/.cache/unroot-bench (what `make bench` installs). The server runs on CPU
0, every client on CPU 1. Alongside oha's open-loop load (512 connections)
it sends, in a loop: bodies just under 8 MiB (an 8 MiB string), 9 MiB
bodies written whole before reading (413), the 3 MB 50,000-container review,
10,000-deep nesting, and it holds idle keep-alive and slowloris
connections. It prints the peak RSS (VmHWM) and what each client got.
"""

import collections
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
OHA = Path.home() / ".cache" / "unroot-bench" / "oha-1.16.0" / "bin" / "oha"
MIB = 1024 * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def review(obj):
    return json.dumps({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-a", "operation": "CREATE",
            "userInfo": {"username": "alice"}, "object": obj,
        },
    }).encode()


def main():
    rate = int(sys.argv[1])
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    work = Path(tempfile.mkdtemp(prefix="unroot-mem-"))
    body = work / "review.json"
    with body.open("wb") as f:
        subprocess.run([RELEASE / "examples" / "bench_review", "--containers", "3"], check=True, stdout=f)
    big = subprocess.run([RELEASE / "examples" / "bench_review", "--small-containers", "50000"],
                         check=True, capture_output=True).stdout
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "a", "image": "x"}]}}
    huge_string = review({**pod, "metadata": {"name": "p", "annotations": {"x": "a" * (8 * MIB - 4096)}}})
    assert len(huge_string) < 8 * MIB
    deep = b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":' \
        + b"[" * 10000 + b"]" * 10000 + b"}}"
    too_big = b" " * (9 * MIB)

    port, admin = free_port(), free_port()
    server = subprocess.Popen(
        ["taskset", "-c", "0", RELEASE / "unroot", "serve", "--standalone",
         "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
         "--dashboard-listen", "127.0.0.1:0",
         "--ca-cert-out", work / "ca.crt", "--log-format", "json", "--audit-log", "off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.sched_setaffinity(0, {1})
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    idle_rss = status(server.pid, "VmRSS")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    stop = time.monotonic() + seconds
    results = collections.defaultdict(collections.Counter)
    lock = threading.Lock()

    def connect():
        return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30))

    def post(kind, payload):
        while time.monotonic() < stop:
            try:
                s = connect()
                s.sendall(b"POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                          + f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode())
                s.sendall(payload)
                reply = s.recv(64).split(b" ")
                code = reply[1].decode() if len(reply) > 1 else "empty"
                s.close()
            except OSError as e:
                code = type(e).__name__
            with lock:
                results[kind][code] += 1

    def hold(kind, trickle):
        socks = []
        for _ in range(100):
            try:
                socks.append(connect())
            except OSError as e:
                with lock:
                    results[kind][type(e).__name__] += 1
        while time.monotonic() < stop:
            for s in list(socks):
                try:
                    s.send(b"X" if trickle else b"")
                except OSError:
                    socks.remove(s)
                    with lock:
                        results[kind]["closed by server"] += 1
            time.sleep(0.5)
        with lock:
            results[kind]["still open"] += len(socks)

    threads = [threading.Thread(target=post, args=("8 MiB string", huge_string)) for _ in range(6)]
    threads += [threading.Thread(target=post, args=("9 MiB (413)", too_big)) for _ in range(4)]
    threads += [threading.Thread(target=post, args=("50,000 containers", big)) for _ in range(2)]
    threads += [threading.Thread(target=post, args=("10,000-deep nesting", deep))]
    threads += [threading.Thread(target=hold, args=("idle keep-alive", False)) for _ in range(3)]
    threads += [threading.Thread(target=hold, args=("slowloris", True))]
    # MEMORY_ONLY="50,000 containers" (say) keeps one kind of hostile client.
    only = os.environ.get("MEMORY_ONLY")
    if only is not None:
        threads = [t for t in threads if t._args[0] == only]
    oha = subprocess.Popen(
        [OHA, "--no-tui", "--output-format", "json", "--insecure", "--http-version", "1.1",
         "--worker-threads", "1", "-m", "POST", "-T", "application/json", "-D", body,
         "-z", f"{seconds}s", "-c", "512", "-q", str(rate), "--latency-correction",
         f"https://127.0.0.1:{port}/mutate"],
        stdout=subprocess.PIPE, text=True)
    for t in threads:
        t.start()
    peak_seen = 0.0
    while time.monotonic() < stop:
        peak_seen = max(peak_seen, status(server.pid, "VmRSS"))
        time.sleep(0.1)
    load = json.loads(oha.communicate()[0])
    for t in threads:
        t.join()
    hwm = status(server.pid, "VmHWM")
    server.terminate()
    server.wait()
    print(json.dumps({
        "idle_rss_mib": round(idle_rss, 1),
        "peak_rss_mib_vmhwm": round(hwm, 1),
        "oha": {"rate": rate, "codes": load.get("statusCodeDistribution"),
                "errors": load.get("errorDistribution"),
                "slowest_s": load["summary"]["slowest"],
                "p99_s": load.get("latencyPercentiles", {}).get("p99")},
        "hostile": {k: dict(v) for k, v in results.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
