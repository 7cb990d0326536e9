#!/usr/bin/env python3
"""`make bench`: measure unroot against the null responder and write BENCHMARKS.md.

One run on one machine, every figure next to its ratio to the null responder
(examples/null_responder.rs: unroot's own listener, body checks and runtime,
answering a fixed review). Steps:

1. criterion micro-benchmarks (benches/admission.rs, benches/pss.rs);
2. a load test over TLS, HTTP/1.1 keep-alive, with `oha` (installed by this
   script into a cache directory): the server pinned to CPU 0, the client to
   CPU 1; saturation throughput, latency at fixed open-loop rates, a
   handshake storm (a new connection per request); the servers take turns;
3. the 3 MB review (50,000 minimal containers), alone and with small
   reviews sent while it is decided (how many were shed, the slowest);
4. where the time goes: `perf record -e cpu-clock` of the server under
   saturation, top symbols (skipped without `perf`);
5. memory: idle RSS, peak RSS under twice the measured saturation rate,
   and peak RSS over the load test (the 3 MB reviews included);
6. startup: time from exec to `/readyz` answering 200 in standalone mode.

unroot runs as shipped: `--log-format json`, so the audit log (one line per
review) goes to stdout and the logs to stderr; both are pipes that a reader
drains, as a container runtime's are.

Environment: UNROOT_BENCH_CACHE (default ~/.cache/unroot-bench),
BENCH_QUICK=1 (shorter runs, for trying the script out), BENCH_OUT (default
BENCHMARKS.md), BENCH_SKIP_CRITERION=1 (no micro-benchmarks),
BENCH_UNROOT=PATH (measure that unroot binary instead of building one, e.g.
an older build to compare with).
"""

import csv
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OHA_VERSION = "1.16.0"
CACHE = Path(os.environ.get("UNROOT_BENCH_CACHE", Path.home() / ".cache" / "unroot-bench"))
QUICK = os.environ.get("BENCH_QUICK") == "1"
OUT = ROOT / os.environ.get("BENCH_OUT", "BENCHMARKS.md")

# Load test settings.
CONNECTIONS = 32  # keep-alive connections, like a busy API server
SATURATION_SECONDS = 3 if QUICK else 8
RATE_SECONDS = 3 if QUICK else 10
ROUNDS = 1 if QUICK else 3  # saturation runs per server, taking turns
RATES = [1000, 5000]
OVERLOAD_CONNECTIONS = 512  # open-loop clients at 2x saturation
SERVER_CPU = "0"
CLIENT_CPU = "1"
CONTAINERS = 3  # the load test's review: the 3-container realistic pod

MIB = 1024 * 1024


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(cmd, **kwargs):
    log("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run(cmd, check=True, cwd=ROOT, **kwargs)


def output(cmd):
    return subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True).stdout.strip()


# --- tools ---------------------------------------------------------------

def ensure_oha():
    root = CACHE / f"oha-{OHA_VERSION}"
    binary = root / "bin" / "oha"
    if not binary.exists():
        log(f"installing oha {OHA_VERSION} into {root} (once)")
        run(["cargo", "install", "--locked", "oha", "--version", OHA_VERSION, "--root", str(root)])
    return binary


def target_dir():
    meta = json.loads(output(["cargo", "metadata", "--format-version", "1", "--no-deps"]))
    return Path(meta["target_directory"])


# --- machine -------------------------------------------------------------

def machine():
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / MIB:.0f} GiB"
    except OSError:
        pass
    load = os.getloadavg()
    return {
        "nproc": output(["nproc"]),
        "cpu": model,
        "memory": memory,
        "kernel": platform.release(),
        "rustc": output(["rustc", "--version"]),
        # The file this run rewrites does not make the tree dirty.
        "commit": output(["git", "rev-parse", "--short", "HEAD"]) + (" (dirty)" if output(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", f":(exclude){OUT.relative_to(ROOT)}"]) else ""),
        "load": f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}",
    }


# --- criterion -------------------------------------------------------------

def criterion(target):
    run(["cargo", "bench", "--bench", "admission", "--bench", "pss"])
    results = {}
    base = target / "criterion"
    for estimates in base.glob("**/new/estimates.json"):
        name = str(estimates.parent.parent.relative_to(base))
        data = json.loads(estimates.read_text())
        results[name] = data["median"]["point_estimate"]  # ns
    return results


# --- processes -------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid, field="VmRSS"):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def drain(stream, counts, key):
    """Reads `stream` to its end, counting lines: a pipe's reader."""
    for _ in stream:
        counts[key] += 1


class Server:
    def __init__(self, name, cmd, port, ready):
        self.name, self.port = name, port
        started = time.monotonic()
        # stdout (unroot's audit log) and stderr (its logs) are pipes read
        # as fast as they come, as a container runtime reads them.
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *cmd], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.lines = {"stdout": 0, "stderr": 0}
        self.readers = [
            threading.Thread(target=drain, args=(self.proc.stdout, self.lines, "stdout"), daemon=True),
            threading.Thread(target=drain, args=(self.proc.stderr, self.lines, "stderr"), daemon=True),
        ]
        for reader in self.readers:
            reader.start()
        deadline = started + 30
        while not ready():
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: {name} exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"bench: {name} did not become ready")
            time.sleep(0.005)
        self.ready_seconds = time.monotonic() - started

    def url(self, path):
        return f"https://127.0.0.1:{self.port}{path}"

    def rss(self):
        return rss_kib(self.proc.pid) / 1024

    def peak(self):
        return rss_kib(self.proc.pid, "VmHWM") / 1024

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for reader in self.readers:
            reader.join(timeout=5)


def accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def ready_http(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=0.5) as r:
            return r.status == 200
    except OSError:
        return False


def start_null(binary, work):
    port = free_port()
    cmd = [binary, "--listen", f"127.0.0.1:{port}", "--ca-cert-out", work / "null-ca.crt"]
    return Server("null responder", cmd, port, lambda: accepts(port))


def start_unroot(binary, work, policy):
    port, admin = free_port(), free_port()
    cmd = [
        binary, "serve", "--standalone", "--policy", policy,
        "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
        "--dashboard-listen", "127.0.0.1:0",
        "--ca-cert-out", work / "unroot-ca.crt", "--log-format", "json",
    ]
    server = Server("unroot", cmd, port, lambda: ready_http(admin))
    server.admin = admin
    return server


# --- load ----------------------------------------------------------------

def oha(oha_bin, url, body, seconds, connections=CONNECTIONS, rate=None, keepalive=True):
    cmd = [
        "taskset", "-c", CLIENT_CPU, oha_bin, "--no-tui", "--output-format", "json",
        "--insecure", "--http-version", "1.1", "--worker-threads", "1",
        "-m", "POST", "-T", "application/json", "-D", body,
        "-z", f"{seconds}s", "-c", str(connections), url,
    ]
    if rate:
        cmd += ["-q", str(rate), "--latency-correction"]
    if not keepalive:
        cmd += ["--disable-keepalive"]
    result = json.loads(subprocess.run(
        [str(c) for c in cmd], check=True, capture_output=True, text=True).stdout)
    codes = result.get("statusCodeDistribution", {})
    errors = result.get("errorDistribution", {})
    pct = result.get("latencyPercentiles", {})
    return {
        "rps": codes.get("200", 0) / result["summary"]["total"],
        "ok": codes.get("200", 0),
        "codes": codes,
        "errors": errors,
        "p50": pct.get("p50"),
        "p99": pct.get("p99"),
        "p999": pct.get("p99.9"),
        "max": result["summary"]["slowest"],
    }


def oha_n(oha_bin, url, body, n):
    """`n` requests one after the other: the slowest answer."""
    cmd = [
        "taskset", "-c", CLIENT_CPU, oha_bin, "--no-tui", "--output-format", "json",
        "--insecure", "--http-version", "1.1", "--worker-threads", "1",
        "-m", "POST", "-T", "application/json", "-D", body, "-n", str(n), "-c", "1", url,
    ]
    result = json.loads(subprocess.run(
        [str(c) for c in cmd], check=True, capture_output=True, text=True).stdout)
    return {"max": result["summary"]["slowest"], "codes": result.get("statusCodeDistribution", {}),
            "errors": result.get("errorDistribution", {}), "size": body.stat().st_size}


# The small reviews sent while the 3 MB review is decided, as an API server
# keeps sending them: a fixed rate over a few keep-alive connections.
SMALL_RATE = 50
SMALL_CONNECTIONS = 4


def big_with_small(oha_bin, url, big_body, body, seconds):
    """The 3 MB review sent once while small reviews go on at SMALL_RATE a
    second: the big answer, and how the small ones sent while it was being
    answered fared (their connections are open by then: a handshake at the
    start is not counted)."""
    cmd = [
        "taskset", "-c", CLIENT_CPU, oha_bin, "--no-tui", "--output-format", "csv",
        "--insecure", "--http-version", "1.1", "--worker-threads", "1",
        "-m", "POST", "-T", "application/json", "-D", body,
        "-z", f"{seconds:.1f}s", "-c", str(SMALL_CONNECTIONS), "-q", str(SMALL_RATE),
        "--latency-correction", url,
    ]
    started = time.monotonic()
    small = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, text=True)
    time.sleep(1)  # the small reviews are flowing on open connections
    sent = time.monotonic() - started
    big = oha_n(oha_bin, url, big_body, 1)
    answered = time.monotonic() - started
    rows = list(csv.DictReader(small.communicate()[0].splitlines()))
    during = [r for r in rows if sent <= float(r["request-start"]) <= answered]
    times = sorted(float(r["request-duration"]) for r in during)
    codes = {}
    for r in during:
        codes[r["status"]] = codes.get(r["status"], 0) + 1
    return {
        "big": big["max"],
        "big_codes": big["codes"],
        "sent": len(during),
        "shed": codes.get("429", 0),
        "codes": codes,
        "slowest": times[-1] if times else 0.0,
        "p99": times[min(len(times) - 1, int(len(times) * 0.99))] if times else None,
    }


def profile(work, server, oha_bin, url, body, name):
    """`perf record -e cpu-clock` of `server` while `url` is saturated: the
    top symbols and the split between unroot, the kernel and libc (shares
    of the samples), or None without perf."""
    perf = shutil.which("perf")
    if not perf:
        log("no perf: skipping the profile")
        return None
    data = work / f"perf-{name}.data"
    seconds = SATURATION_SECONDS
    record = subprocess.Popen(
        [perf, "record", "-e", "cpu-clock", "-F", "999", "-o", str(data),
         "-p", str(server.proc.pid), "--", "sleep", str(seconds)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    oha(oha_bin, url, body, seconds + 1)
    if record.wait() != 0 or not data.exists():
        log("perf record failed: skipping the profile")
        return None

    def shares(sort):
        text = subprocess.run(
            [perf, "report", "-i", str(data), "--no-children", "--sort", sort,
             "--stdio", "-g", "none"],
            capture_output=True, text=True).stdout
        rows = []
        for line in text.splitlines():
            fields = line.split()
            if not fields or line.startswith("#") or not fields[0].endswith("%"):
                continue
            name = " ".join(f for f in fields[1:] if f != "-")
            rows.append((float(fields[0].rstrip("%")), name))
        return rows

    return {"symbols": shares("symbol")[:15], "dsos": shares("dso")[:5]}


def settings(oha_bin):
    return output([str(oha_bin), "--version"])


def main():
    work = Path(tempfile.mkdtemp(prefix="unroot-bench-"))
    try:
        report(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(work):
    oha_bin = ensure_oha()
    target = target_dir()
    run(["cargo", "build", "--release", "--bin", "unroot",
         "--example", "null_responder", "--example", "bench_review"])
    release = target / "release"
    unroot_bin = Path(os.environ["BENCH_UNROOT"]) if os.environ.get("BENCH_UNROOT") else release / "unroot"
    null_bin = release / "examples" / "null_responder"

    body = work / "review.json"
    with body.open("wb") as f:
        subprocess.run([release / "examples" / "bench_review", "--containers", str(CONTAINERS)],
                       check=True, stdout=f)
    big_body = work / "review-3mb.json"
    with big_body.open("wb") as f:
        subprocess.run([release / "examples" / "bench_review", "--small-containers", "50000"],
                       check=True, stdout=f)
    # The embedded policy with the trust bundle selecting every namespace,
    # so the load test runs every mutation the micro-benchmarks run.
    policy_text = (ROOT / "webhook-config" / "policy.yaml").read_text()
    selector = "  namespaceSelector:\n    matchLabels:\n      unroot.dev/trust-bundle: enabled\n"
    assert selector in policy_text, "the trust bundle selector moved: update bench/run.py"
    policy = work / "policy.yaml"
    policy.write_text(policy_text.replace(selector, "  namespaceSelector: {}\n", 1))

    facts = machine()
    micro = {} if os.environ.get("BENCH_SKIP_CRITERION") == "1" else criterion(target)

    # Startup and idle memory: fresh processes, nothing sent yet.
    starts = []
    for _ in range(3):
        s = start_unroot(unroot_bin, work, policy)
        starts.append(s.ready_seconds)
        s.stop()
    null = start_null(null_bin, work)
    unroot = start_unroot(unroot_bin, work, policy)
    time.sleep(1)
    idle = {"null": null.rss(), "unroot": unroot.rss()}

    targets = {
        "null": null.url("/mutate"),
        "mutate": unroot.url("/mutate"),
        "validate": unroot.url("/validate"),
    }
    # Warm up (TLS session setup, allocator, caches).
    for url in targets.values():
        oha(oha_bin, url, body, 1)
    saturation = {k: [] for k in targets}
    for _ in range(ROUNDS):
        for name, url in targets.items():
            saturation[name].append(oha(oha_bin, url, body, SATURATION_SECONDS))
    fixed = {}
    for rate in RATES:
        for name, url in targets.items():
            fixed[(name, rate)] = oha(oha_bin, url, body, RATE_SECONDS, rate=rate)
    storm = {}
    for name, url in targets.items():
        storm[name] = oha(oha_bin, url, body, SATURATION_SECONDS, keepalive=False)
    # The 3 MB review (50,000 minimal containers), one at a time.
    big = {}
    for name, url in targets.items():
        big[name] = oha_n(oha_bin, url, big_body, 3)
    # And with small reviews sent while it is decided, for as long as it
    # took alone and a bit more.
    big_small = {}
    for name, url in targets.items():
        seconds = max(3.0, big[name]["max"] * 1.5 + 1)
        big_small[name] = big_with_small(oha_bin, url, big_body, body, seconds)
    profiles = {}
    for name in ["mutate", "validate"]:
        profiles[name] = profile(work, unroot, oha_bin, targets[name], body, name)
    load_peak = {"null": null.peak(), "unroot": unroot.peak()}
    null.stop()
    unroot.stop()
    audit_lines = unroot.lines["stdout"]

    # Peak memory: fresh processes under twice the saturation rate of
    # /mutate, with enough connections that the client never waits.
    def best(runs):
        return max(r["rps"] for r in runs)

    overload = {}
    peak = {}
    for name in ["null", "mutate"]:
        server = start_null(null_bin, work) if name == "null" else start_unroot(unroot_bin, work, policy)
        rate = 2 * best(saturation[name])
        overload[name] = oha(oha_bin, server.url("/mutate"), body, RATE_SECONDS,
                             connections=OVERLOAD_CONNECTIONS, rate=rate)
        overload[name]["rate"] = rate
        peak[name] = server.peak()
        server.stop()

    write(facts, settings(oha_bin), body.stat().st_size, micro, starts, idle,
          saturation, fixed, storm, overload, peak, big, big_small, profiles, load_peak,
          audit_lines)


# --- report --------------------------------------------------------------

def us(seconds):
    return f"{seconds * 1e6:,.0f} µs" if seconds is not None else "n/a"


def ns_text(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:,.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:,.1f} µs"
    return f"{ns:,.0f} ns"


def verdict(ok):
    return "met" if ok else "**not met**"


def write(facts, oha_version, body_size, micro, starts, idle, saturation, fixed, storm,
          overload, peak, big, big_small, profiles, load_peak, audit_lines):
    lines = []
    add = lines.append
    add("# Benchmarks")
    add("")
    add("Written by `make bench` (`bench/run.py`); do not edit by hand. The")
    add("machine is shared and noisy: compare the figures of one run with each")
    add("other (the ratios to the null responder), not across runs.")
    add("")
    add(f"- Command: `make bench` at commit {facts['commit']}, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    add(f"- Machine: {facts['nproc']} CPUs ({facts['cpu']}), {facts['memory']}, Linux {facts['kernel']}, {facts['rustc']}; load average at the start {facts['load']}")
    add(f"- Load generator: {oha_version} (crates.io, `cargo install --locked`), "
        f"HTTP/1.1 over TLS, `--worker-threads 1`, pinned to CPU {CLIENT_CPU}; servers pinned to CPU {SERVER_CPU}")
    add(f"- Input: the AdmissionReview of a realistic {CONTAINERS}-container pod "
        f"({body_size:,} bytes: defaults, managedFields, the service-account volume; "
        "`benches/support/review.rs`), the same body for every server")
    add("- unroot: `unroot serve --standalone --log-format json`, as shipped: the audit log "
        "(a line per review) on stdout and the logs on stderr, both pipes drained by a reader "
        f"({audit_lines:,} audit lines read); the embedded policy with the "
        "trust bundle selecting every namespace (so `/mutate` hardens and mounts the bundle); "
        "`/validate` evaluates the same (unmutated) pod: allowed at baseline, audit and warn "
        "restricted violations recorded")
    add("- Null responder: `examples/null_responder.rs`, unroot's listener and body checks "
        "answering a fixed allowed review")
    add("")

    def m(name):
        return micro.get(name)

    if micro:
        add("## Micro-benchmarks (criterion, medians)")
        add("")
        add("Bytes in → bytes out without the network: decode the review, decide, encode the answer.")
        add("")
        add("| Benchmark | 1 container | 3 containers | 10 containers | Target |")
        add("|---|---|---|---|---|")
        rows = [
            ("Full admission `/mutate` (decode, mutate, encode)", "admission/mutate/{}", "≤ 25 µs at 3"),
            ("Full admission `/validate` (decode, evaluate, encode)", "admission/validate/{}", ""),
            ("Mutate only (decoded request → answer)", "mutate_only/{}", ""),
            ("PSS `restricted:latest` only (decoded pod)", "pss_restricted/{}", "≤ 2 µs at 3"),
        ]
        for title, key, target in rows:
            cells = [ns_text(m(key.format(n))) if m(key.format(n)) is not None else "n/a" for n in (1, 3, 10)]
            add(f"| {title} | {' | '.join(cells)} | {target} |")
        add("")
        add("Review sizes: " + ", ".join(
            f"{n} container{'s' if n > 1 else ''} ≈ {review_size(n)}" for n in (1, 3, 10)))
        add("")
        if any(k.startswith("decide/") for k in micro):
            add("### By stage (3 containers)")
            add("")
            add("| Stage | `/mutate` | `/validate` |")
            add("|---|---|---|")
            for stage, what in [("decode", "bytes → decoded review"),
                                ("decide", "decoded review → answer"),
                                ("encode", "answer → bytes")]:
                cells = [ns_text(m(f"{stage}/{hook}/3")) if m(f"{stage}/{hook}/3") is not None
                         else "n/a" for hook in ("mutate", "validate")]
                add(f"| {stage} ({what}) | {' | '.join(cells)} |")
            add("")
        hop = m("offload/hop")
        if hop is not None:
            add("### A large review on a thread of its own")
            add("")
            add(f"The hop (a thread started, the review driven there, the answer sent back) costs "
                f"{ns_text(hop)}. `/mutate` of minimal containers, the review that costs most per byte:")
            add("")
            add("| Containers | Review | Time | Hop / time |")
            add("|---|---|---|---|")
            for n in (100, 1000, 3000):
                t = m(f"offload/small/{n}")
                if t is not None:
                    add(f"| {n:,} | {small_review_size(n)} | {ns_text(t)} | {hop / t:.1%} |")
            add("")
        add("### Scaling (`/mutate`, bytes in → bytes out)")
        add("")
        add("| Containers | Time | Time per container | Per container vs 10 |")
        add("|---|---|---|---|")
        base = None
        for n in (10, 100, 1000, 10000):
            t = m(f"scaling/mutate/{n}")
            if t is None:
                continue
            per = t / n
            base = base or per
            add(f"| {n:,} | {ns_text(t)} | {ns_text(per)} | {per / base:.2f}× |")
        add("")
        pss_rows = [(k, v) for k, v in sorted(micro.items()) if k.startswith("pss_evaluate/")]
        if pss_rows:
            add("### Pod Security evaluator on hand-written pods (`benches/pss.rs`)")
            add("")
            add("| Case | Time |")
            add("|---|---|")
            for k, v in pss_rows:
                add(f"| {k.removeprefix('pss_evaluate/')} | {ns_text(v)} |")
            add("")

    add("## Load test (TLS, HTTP/1.1 keep-alive)")
    add("")
    add(f"Saturation: {CONNECTIONS} connections, closed loop, {ROUNDS} × {SATURATION_SECONDS} s per "
        "server taking turns, the best round. Fixed rates: open loop (`-q R --latency-correction`: "
        f"latency counts from when the request was due), {RATE_SECONDS} s, {CONNECTIONS} connections. "
        f"Handshake storm: a new TLS connection per request, {CONNECTIONS} at a time.")
    add("")
    add("| Figure | null responder | unroot `/mutate` | ratio | unroot `/validate` | ratio | Target |")
    add("|---|---|---|---|---|---|---|")
    sat = {k: max(r["rps"] for r in v) for k, v in saturation.items()}
    add(f"| Saturation throughput | {sat['null']:,.0f} req/s | {sat['mutate']:,.0f} req/s | "
        f"{sat['mutate'] / sat['null']:.0%} | {sat['validate']:,.0f} req/s | "
        f"{sat['validate'] / sat['null']:.0%} | ≥ 60% |")
    for rate in RATES:
        n, mu, v = fixed[("null", rate)], fixed[("mutate", rate)], fixed[("validate", rate)]
        for label, key in [("p50", "p50"), ("p99", "p99"), ("p99.9", "p999")]:
            target = "≤ null + 250 µs" if key == "p99" else ""
            add(f"| {rate:,} req/s {label} | {us(n[key])} | {us(mu[key])} | "
                f"+{us(mu[key] - n[key])} | {us(v[key])} | +{us(v[key] - n[key])} | {target} |")
        add(f"| {rate:,} req/s achieved | {n['rps']:,.0f} | {mu['rps']:,.0f} | | {v['rps']:,.0f} | | |")
    add(f"| Handshake storm | {storm['null']['rps']:,.0f} req/s | {storm['mutate']['rps']:,.0f} req/s | "
        f"{storm['mutate']['rps'] / storm['null']['rps']:.0%} | {storm['validate']['rps']:,.0f} req/s | "
        f"{storm['validate']['rps'] / storm['null']['rps']:.0%} | |")
    add("")
    def failed(r):
        # Requests still in flight when a timed run ends are aborted by oha:
        # not an error of the server.
        errors = {e for e in r["errors"] if e != "aborted due to deadline"}
        return errors or set(r["codes"]) - {"200"}

    failures = [f"{k}: {r['codes']} {r['errors']}" for k, runs in saturation.items() for r in runs if failed(r)]
    failures += [f"{k}: {r['codes']} {r['errors']}" for k, r in list(fixed.items()) + list(storm.items()) if failed(r)]
    if failures:
        add("Non-200 answers or errors: " + "; ".join(failures))
        add("")

    add("## Memory and startup")
    add("")
    add("| Figure | null responder | unroot | ratio | Target |")
    add("|---|---|---|---|---|")
    add(f"| Idle RSS | {idle['null']:.1f} MiB | {idle['unroot']:.1f} MiB | {idle['unroot'] / idle['null']:.1f}× | ≤ 20 MiB |")
    add(f"| Peak RSS over the load test (the 3 MB reviews included) | {load_peak['null']:.1f} MiB | "
        f"{load_peak['unroot']:.1f} MiB | {load_peak['unroot'] / load_peak['null']:.1f}× | |")
    add(f"| Peak RSS at 2× saturation (`/mutate`, {OVERLOAD_CONNECTIONS} connections, open loop) | "
        f"{peak['null']:.1f} MiB | {peak['mutate']:.1f} MiB | {peak['mutate'] / peak['null']:.1f}× | ≤ 64 MiB |")
    o_n, o_m = overload["null"], overload["mutate"]
    add(f"| … offered / answered 200 | {o_n['rate']:,.0f} / {o_n['rps']:,.0f} req/s | "
        f"{o_m['rate']:,.0f} / {o_m['rps']:,.0f} req/s | | |")
    add(f"| … answers by status, client errors | {o_n['codes']} {o_n['errors']} | {o_m['codes']} {o_m['errors']} | | |")
    add(f"| … slowest answer (from when it was due) | {o_n['max']:.2f} s | {o_m['max']:.2f} s | | < 10 s webhook timeout |")
    add(f"| Ready after exec (standalone, `/readyz` 200), best of 3 | | {min(starts) * 1000:,.0f} ms | | ≤ 1 s |")
    add("")
    add(f"## The 3 MB review ({big['null']['size']:,} bytes, 50,000 minimal containers)")
    add("")
    add(f"Alone: the slowest of 3, one at a time. With small reviews: the realistic review sent "
        f"{SMALL_RATE} times a second over {SMALL_CONNECTIONS} keep-alive connections (open loop, "
        "latency from when each was due) while the 3 MB review is sent once; the small reviews "
        "counted are those sent between the 3 MB review's request and its answer.")
    add("")
    add("| Figure | null responder | unroot `/mutate` | unroot `/validate` | Target |")
    add("|---|---|---|---|---|")
    add(f"| Alone | {big['null']['max'] * 1000:,.0f} ms | {big['mutate']['max'] * 1000:,.0f} ms | "
        f"{big['validate']['max'] * 1000:,.0f} ms | < 1 s |")
    b = big_small
    add(f"| With small reviews | {b['null']['big'] * 1000:,.0f} ms | {b['mutate']['big'] * 1000:,.0f} ms | "
        f"{b['validate']['big'] * 1000:,.0f} ms | |")
    add(f"| … small reviews shed (429) / sent | {b['null']['shed']} / {b['null']['sent']} | "
        f"{b['mutate']['shed']} / {b['mutate']['sent']} | {b['validate']['shed']} / {b['validate']['sent']} | none |")
    add(f"| … slowest small answer | {b['null']['slowest'] * 1000:,.0f} ms | {b['mutate']['slowest'] * 1000:,.0f} ms | "
        f"{b['validate']['slowest'] * 1000:,.0f} ms | < 100 ms |")
    add(f"| … small answers p99 | {us(b['null']['p99'])} | {us(b['mutate']['p99'])} | {us(b['validate']['p99'])} | |")
    odd = [f"{k}: {r['codes']} (3 MB: {r['big_codes']})" for k, r in b.items()
           if set(r["codes"]) - {"200", "429"} or set(r["big_codes"]) - {"200"}]
    if odd:
        add("")
        add("Other answers or errors: " + "; ".join(odd))
    add("")

    if any(profiles.values()):
        add("## Where the time goes")
        add("")
        add(f"`perf record -e cpu-clock` of unroot while each webhook is saturated ({SATURATION_SECONDS} s), "
            "shares of the samples (`[k]`: the kernel, mostly TCP).")
        add("")
        for hook, prof in profiles.items():
            if not prof:
                continue
            split = ", ".join(f"{name} {share:.0f}%" for share, name in prof["dsos"])
            add(f"`/{hook}`: {split}.")
            add("")
            add("| Share | Symbol |")
            add("|---|---|")
            for share, name in prof["symbols"]:
                add(f"| {share:.1f}% | `{name.replace('|', '/')}` |")
            add("")

    # Targets, from the figures above.
    add("## Targets")
    add("")
    add("| Target | Measured | Status |")
    add("|---|---|---|")
    if micro:
        t = m("admission/mutate/3")
        add(f"| Full admission, 3-container pod, ≤ 25 µs | {ns_text(t)} | {verdict(t <= 25e3)} |")
        t = m("pss_restricted/3")
        add(f"| PSS restricted evaluation ≤ 2 µs | {ns_text(t)} | {verdict(t <= 2e3)} |")
        per = [m(f"scaling/mutate/{n}") / n for n in (10, 10000) if m(f"scaling/mutate/{n}")]
        if len(per) == 2:
            add(f"| Time per container flat 10 → 10,000 (within 1.5×) | {per[1] / per[0]:.2f}× | {verdict(per[1] / per[0] <= 1.5)} |")
    for hook in ["mutate", "validate"]:
        r = sat[hook] / sat["null"]
        add(f"| Saturation `/{hook}` ≥ 60% of null | {r:.0%} | {verdict(r >= 0.6)} |")
        for rate in RATES:
            d = fixed[(hook, rate)]["p99"] - fixed[("null", rate)]["p99"]
            add(f"| p99 `/{hook}` at {rate:,} req/s ≤ null + 250 µs | +{us(d)} | {verdict(d <= 250e-6)} |")
    worst = max(big["mutate"]["max"], big["validate"]["max"])
    add(f"| 3 MB review < 1 s | {worst * 1000:,.0f} ms | {verdict(worst < 1)} |")
    shed = b["mutate"]["shed"] + b["validate"]["shed"]
    slowest = max(b["mutate"]["slowest"], b["validate"]["slowest"])
    add(f"| Small reviews while a 3 MB review is decided: none shed, each < 100 ms | "
        f"{shed} shed, slowest {slowest * 1000:,.0f} ms | {verdict(shed == 0 and slowest < 0.1)} |")
    add(f"| Idle RSS ≤ 20 MiB | {idle['unroot']:.1f} MiB | {verdict(idle['unroot'] <= 20)} |")
    clean = not failed(o_m)
    ok = peak["mutate"] <= 64 and o_m["max"] < 10
    add(f"| Peak RSS ≤ 64 MiB at 2× saturation, every answer < 10 s | {peak['mutate']:.1f} MiB, slowest {o_m['max']:.2f} s"
        f"{'' if clean else ', non-200 answers: ' + str(o_m['codes']) + ' ' + str(o_m['errors'])} | {verdict(ok)} |")
    add(f"| Ready within 1 s (standalone) | {min(starts) * 1000:,.0f} ms | {verdict(min(starts) <= 1)} |")
    add("")
    # What the targets missed leave, and why: prose kept beside this script
    # (bench/gaps.md), read against the figures above when they change.
    gaps = ROOT / "bench" / "gaps.md"
    if gaps.exists():
        add("## What is left, and why")
        add("")
        add(gaps.read_text().strip())
        add("")
    OUT.write_text("\n".join(lines) + "\n")
    log(f"wrote {OUT}")


def small_review_size(n):
    path = Path(tempfile.gettempdir()) / f"unroot-bench-small-{n}.json"
    binary = target_dir() / "release" / "examples" / "bench_review"
    with path.open("wb") as f:
        subprocess.run([binary, "--small-containers", str(n)], check=True, stdout=f)
    size = path.stat().st_size
    path.unlink()
    return f"{size / 1024:.0f} KiB"


def review_size(n):
    path = Path(tempfile.gettempdir()) / f"unroot-bench-size-{n}.json"
    binary = target_dir() / "release" / "examples" / "bench_review"
    with path.open("wb") as f:
        subprocess.run([binary, "--containers", str(n)], check=True, stdout=f)
    size = path.stat().st_size
    path.unlink()
    return f"{size / 1024:.0f} KiB"


if __name__ == "__main__":
    main()
