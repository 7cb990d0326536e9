#!/usr/bin/python3
"""The monitoring tests of unroot (run by run.sh; see its header).

  check.py --unroot BIN --out DIR

1. The files: dashboard.json is a Grafana dashboard with targets on the
   ${datasource} variable, prometheusrule.yaml a PrometheusRule whose alerts
   carry a `for`, a severity, a summary, a description and a runbook_url
   (docs/runbooks.md#<anchor>, an anchor that exists there),
   servicemonitor.yaml scrapes the admin port, and the kustomization builds.
   A timestamp gauge is read only where it is > 0, so that a panel or an
   alert shows no data, not 1970, before there is one.
2. promtool: `check rules` on the PrometheusRule's spec, `test rules` on
   alerts.test.yaml, which must hold a firing and a silent case per alert.
3. A real unroot (BIN serve, no cluster, free loopback ports) and a real
   Prometheus scraping it every second:
   - a known mix of admissions goes to the webhook over HTTPS;
   - every metric name in the dashboard and the alerts is in unroot's
     /metrics, external (external-metrics.txt) or pending
     (pending-metrics.txt);
   - Prometheus, queried after a scrape that followed the mix, holds exactly
     the counts the mix drove;
   - every dashboard and alert expression evaluates without error on the
     scraped data, the rules load and evaluate healthy, and a refused policy
     change makes UnrootPolicyReloadFailing fire.

MONITORING_SELFTEST_EXTRA=1 sends one mutate request more than the counts
expect, to see the count check fail.

Python standard library plus PyYAML (Debian python3-yaml).
"""

import argparse
import base64
import copy
import fnmatch
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
MONITORING = os.path.dirname(HERE)
ROOT = os.path.dirname(os.path.dirname(MONITORING))
CONTRACT = "/work/coord/metrics.md"
RUNBOOKS = os.path.join(ROOT, "docs", "runbooks.md")
# The one prefix of every alert's runbook_url (prometheusrule.yaml's header).
RUNBOOK_PREFIX = "docs/runbooks.md#"

passed = 0
failed = 0
skipped = 0


def ok(name):
    global passed
    passed += 1
    print(f"ok    {name}", flush=True)


def fail(name, detail):
    global failed
    failed += 1
    print(f"FAIL  {name}\n      " + str(detail).replace("\n", "\n      "), flush=True)


def skip(name):
    global skipped
    skipped += 1
    print(f"skip  {name}", flush=True)


def check(name, cond, detail=""):
    if cond:
        ok(name)
    else:
        fail(name, detail)
    return cond


# --------------------------------------------------------------------------
# PromQL: metric names of an expression
# --------------------------------------------------------------------------

# Words that are PromQL syntax, not metric names, when not followed by "(".
KEYWORDS = {
    "and", "or", "unless", "bool", "by", "without", "on", "ignoring",
    "group_left", "group_right", "offset", "inf", "nan", "atan2",
    # aggregations written `sum by (x) (...)`: after the label list is dropped
    # they are followed by "(" anyway; listed for `sum without(...)` spacing.
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
    "count_values", "bottomk", "topk", "quantile",
}

TOKEN = re.compile(
    r"""
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<matchers>\{[^}]*\})
    | (?P<range>\[[^\]]*\])
    | (?P<labels>\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\))
    | (?P<var>\$\{?\w+\}?)
    | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?:ms|[smhdwy])*)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def metric_names(expr):
    """The metric names an expression selects: identifiers that are not
    function calls, keywords, label names (in matchers or label lists),
    durations, numbers or Grafana variables."""
    names = set()
    if "__name__" in expr:
        raise ValueError(f"selects by __name__, which this check cannot follow: {expr}")
    for m in TOKEN.finditer(expr):
        if m.lastgroup != "ident":
            continue
        word = m.group("ident")
        rest = expr[m.end():]
        if re.match(r"\s*\(", rest):  # a function or aggregation call
            continue
        if word in KEYWORDS:
            continue
        names.add(word)
    return names


def self_test_metric_names():
    cases = [
        ('sum by (webhook, outcome) (rate(unroot_x_total{job=~"$job", le="1"}[$__rate_interval]))', {"unroot_x_total"}),
        ("histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m]))) > 1e3", {"a_bucket"}),
        ("count(up{job=~\"u.*\"} == 1) < 2 or absent(up == 1)", {"up"}),
        ("a unless on (namespace) group_left(x) b offset 5m", {"a", "b"}),
        ("sum(a) without (instance) / ignoring(le) b * 14 * 24 * 3600", {"a", "b"}),
        ("time() - max(c_seconds)", {"c_seconds"}),
        ('label_replace(d, "dst", "$1", "src", "(.*)")', {"d"}),
        ("sum without(x)(e) + bool f", {"e", "f"}),
    ]
    bad = [(e, metric_names(e), want) for e, want in cases if metric_names(e) != want]
    check("the PromQL name extractor reads its own examples right", not bad, bad)


def substitute_grafana(expr):
    """A dashboard expression as Prometheus can run it."""
    for var, value in [
        ("$__rate_interval", "1m"), ("$__interval", "15s"), ("$__range", "1h"),
        ("${job}", "unroot"), ("$job", "unroot"), ("${instance}", ".*"), ("$instance", ".*"),
    ]:
        expr = expr.replace(var, value)
    return expr


# --------------------------------------------------------------------------
# 1. The files
# --------------------------------------------------------------------------

def load_files():
    with open(os.path.join(MONITORING, "dashboard.json")) as f:
        dashboard = json.load(f)
    with open(os.path.join(MONITORING, "prometheusrule.yaml")) as f:
        rule = yaml.safe_load(f)
    with open(os.path.join(MONITORING, "servicemonitor.yaml")) as f:
        monitor = yaml.safe_load(f)
    return dashboard, rule, monitor


def dashboard_exprs(dashboard):
    """(where, expr) of every PromQL expression: panel targets and the
    metric part of label_values() variables."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((f"panel {p.get('title')!r} {t.get('refId')}", t.get("expr", "")))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", q)
        if m:
            out.append((f"variable {v['name']}", m.group(1)))
        elif re.fullmatch(r"\s*label_values\(\s*\w+\s*\)\s*", q):
            continue
        else:
            m = re.fullmatch(r"\s*query_result\((.*)\)\s*", q)
            out.append((f"variable {v['name']}", m.group(1) if m else q))
    return out


def rule_exprs(rule):
    return [(f"alert {r.get('alert') or r.get('record')}", r["expr"])
            for g in rule["spec"]["groups"] for r in g["rules"]]


def check_dashboard(d):
    problems = []
    if not isinstance(d.get("schemaVersion"), int) or not 36 <= d["schemaVersion"] <= 41:
        problems.append(f"schemaVersion {d.get('schemaVersion')} is not one of Grafana 10/11 (36..41)")
    for key in ("uid", "title"):
        if not d.get(key):
            problems.append(f"no {key}")
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    dsv = variables.get("datasource", {})
    if dsv.get("type") != "datasource" or dsv.get("query") != "prometheus":
        problems.append("no `datasource` variable of type datasource (prometheus)")
    ids, panels, with_targets = set(), [], 0
    for p in d.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))
    for p in panels:
        where = f"panel {p.get('title')!r}"
        if p.get("id") in ids:
            problems.append(f"{where}: duplicate id {p.get('id')}")
        ids.add(p.get("id"))
        if not {"x", "y", "w", "h"} <= set(p.get("gridPos", {})):
            problems.append(f"{where}: no gridPos")
        if p.get("type") == "row":
            continue
        if p.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}:
            problems.append(f"{where}: datasource is not ${{datasource}}")
        targets = p.get("targets") or []
        if not targets:
            problems.append(f"{where}: no targets")
        for t in targets:
            if not t.get("expr") or not t.get("refId"):
                problems.append(f"{where}: a target without expr or refId")
            if t.get("datasource", p.get("datasource")) != p.get("datasource"):
                problems.append(f"{where}: a target on another datasource")
        with_targets += bool(targets)
    if with_targets < 10:
        problems.append(f"only {with_targets} panels with targets")
    check("dashboard.json is a Grafana dashboard: panels with targets on ${datasource}",
          not problems, "\n".join(problems))
    # Each panel the brief asks for, by the metric it shows.
    exprs = " ".join(e for _, e in dashboard_exprs(d))
    wanted = {
        "admissions per outcome": r"unroot_admission_requests_total",
        "p50 latency": r"histogram_quantile\(0\.5,.*unroot_admission_duration_seconds_bucket",
        "p99 latency": r"histogram_quantile\(0\.99,.*unroot_admission_duration_seconds_bucket",
        "denials and warnings by check": r"by \(mode, check\) \(rate\(unroot_pod_security_violations_total",
        "mutations by kind": r"by \(mutation\) \(rate\(unroot_mutations_total",
        "namespaces not ready for restricted": r'unroot_namespace_pods_violating\{[^}]*level="restricted"\}\) > 0',
        "certificate expiry": r"unroot_certificate_expiry_timestamp_seconds.* - time\(\)",
        "policy reload errors": r"unroot_policy_reload_errors_total",
        "policy hash": r"by \(hash\) \(unroot_policy_info",
        "in flight": r"unroot_admission_requests_in_flight",
        "rejected": r"unroot_rejected_requests_total",
        "replicas up": r"count\(up\{",
        "process memory": r"process_resident_memory_bytes",
    }
    missing = [k for k, rx in wanted.items() if not re.search(rx, exprs)]
    check("dashboard.json has every panel the monitoring brief lists", not missing, missing)


def markdown_anchors(path):
    """The anchors GitHub makes of a Markdown file's headings."""
    anchors = set()
    with open(path) as f:
        for line in f:
            m = re.match(r"#{1,6}\s+(.*?)\s*$", line)
            if m:
                text = re.sub(r"[^\w\- ]", "", m.group(1).lower())
                anchors.add(text.replace(" ", "-"))
    return anchors


def check_rule(r):
    anchors = markdown_anchors(RUNBOOKS) if os.path.exists(RUNBOOKS) else set()
    problems = []
    if r.get("apiVersion") != "monitoring.coreos.com/v1" or r.get("kind") != "PrometheusRule":
        problems.append(f"apiVersion/kind is {r.get('apiVersion')}/{r.get('kind')}")
    if not r.get("metadata", {}).get("name"):
        problems.append("no metadata.name")
    groups = (r.get("spec") or {}).get("groups") or []
    if not groups:
        problems.append("no spec.groups")
    alerts = []
    for g in groups:
        for rule in g.get("rules") or []:
            name = rule.get("alert")
            if not name:
                problems.append(f"group {g.get('name')}: a rule that is not an alert")
                continue
            alerts.append(name)
            if rule.get("labels", {}).get("severity") not in ("critical", "warning"):
                problems.append(f"{name}: severity is not critical (page) or warning (next working day)")
            if not rule.get("for"):
                problems.append(f"{name}: no `for`")
            annotations = rule.get("annotations", {})
            for a in ("summary", "description", "runbook_url"):
                if not annotations.get(a):
                    problems.append(f"{name}: no {a} annotation")
            url = annotations.get("runbook_url", "")
            if not url.startswith(RUNBOOK_PREFIX):
                problems.append(f"{name}: runbook_url {url!r} does not start with {RUNBOOK_PREFIX!r}")
            elif url[len(RUNBOOK_PREFIX):] not in anchors:
                problems.append(f"{name}: runbook_url {url!r}: no such heading in docs/runbooks.md")
            if "runbook" in annotations:
                problems.append(f"{name}: advice inline in a `runbook` annotation; it goes in docs/runbooks.md")
            if re.search(r"CPU limit", json.dumps(annotations), re.I):
                problems.append(f"{name}: advises a CPU limit, which the Deployment deliberately does not set")
    if len(alerts) != len(set(alerts)):
        problems.append("duplicate alert names")
    check("prometheusrule.yaml is a PrometheusRule: spec.groups of alerts with for, severity, summary, description, runbook_url to docs/runbooks.md",
          not problems, "\n".join(problems))
    return alerts


def check_no_data_before_data(dashboard, rule):
    """A timestamp gauge is 0 or absent before its first value: read where
    it is > 0, a panel shows "no data", not 56 years or a negative expiry."""
    bad = []
    for where, expr in dashboard_exprs(dashboard) + rule_exprs(rule):
        for m in re.finditer(r"\w+_timestamp_seconds(\{[^}]*\})?", expr):
            if not re.match(r"\s*>\s*0\b", expr[m.end():]):
                bad.append(f"{where}: {m.group(0)} not followed by > 0")
    check("every timestamp gauge in the dashboard and the alerts is read only where it is > 0",
          not bad, "\n".join(bad))


def check_service_monitor(m):
    with open(os.path.join(ROOT, "manifests", "service.yaml")) as f:
        services = [d for d in yaml.safe_load_all(f) if d and d.get("kind") == "Service"]
    svc = services[0] if services else {}
    problems = []
    if m.get("apiVersion") != "monitoring.coreos.com/v1" or m.get("kind") != "ServiceMonitor":
        problems.append(f"apiVersion/kind is {m.get('apiVersion')}/{m.get('kind')}")
    spec = m.get("spec", {})
    want = spec.get("selector", {}).get("matchLabels", {})
    have = svc.get("metadata", {}).get("labels", {})
    if not want or any(have.get(k) != v for k, v in want.items()):
        problems.append(f"selector {want} does not select the Service's labels {have}")
    if svc.get("metadata", {}).get("namespace") not in spec.get("namespaceSelector", {}).get("matchNames", []):
        problems.append("namespaceSelector does not name the Service's namespace")
    ports = [p.get("name") for p in svc.get("spec", {}).get("ports", [])]
    eps = spec.get("endpoints") or []
    if [e.get("port") for e in eps] != ["admin"] or "admin" not in ports:
        problems.append(f"endpoints {eps} are not the one admin port of the Service (ports {ports})")
    check("servicemonitor.yaml scrapes the admin port of Service unroot/unroot", not problems, "\n".join(problems))


def check_kustomization(dashboard_text):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        skip("kubectl kustomize manifests/monitoring (no kubectl on this machine)")
        return
    res = subprocess.run([kubectl, "kustomize", MONITORING], capture_output=True, text=True)
    if not check("kubectl kustomize manifests/monitoring builds", res.returncode == 0, res.stderr):
        return
    docs = [d for d in yaml.safe_load_all(res.stdout) if d]
    kinds = sorted(d["kind"] for d in docs)
    cms = [d for d in docs if d["kind"] == "ConfigMap"]
    problems = []
    if kinds != ["ConfigMap", "PrometheusRule", "ServiceMonitor"]:
        problems.append(f"kinds {kinds}")
    if len(cms) != 1 or cms[0]["metadata"].get("labels", {}).get("grafana_dashboard") != "1":
        problems.append("no ConfigMap labelled grafana_dashboard: \"1\"")
    elif list(cms[0].get("data", {}).values()) != [dashboard_text]:
        problems.append("the ConfigMap does not hold dashboard.json as is")
    if any(d["metadata"].get("namespace") != "unroot" for d in docs):
        problems.append("not everything is in namespace unroot")
    check("the kustomization ships the rule, the ServiceMonitor and the dashboard ConfigMap for the Grafana sidecar",
          not problems, "\n".join(problems))


# --------------------------------------------------------------------------
# 2. promtool
# --------------------------------------------------------------------------

class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the expressions) as | blocks, as written."""


_BlockDumper.add_representer(
    str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def write_rules(rule, out):
    spec = rule["spec"]
    with open(os.path.join(out, "rules.yaml"), "w") as f:
        yaml.dump(spec, f, Dumper=_BlockDumper, sort_keys=False)
    unit = copy.deepcopy(spec)
    for g in unit["groups"]:
        for r in g["rules"]:
            r["annotations"] = {"summary": r["annotations"]["summary"]}
    with open(os.path.join(out, "rules.unit.yaml"), "w") as f:
        yaml.dump(unit, f, Dumper=_BlockDumper, sort_keys=False)
    return os.path.join(out, "rules.yaml")


def run_promtool(rules_file, alerts, out):
    res = subprocess.run(["promtool", "check", "rules", rules_file], capture_output=True, text=True)
    check("promtool check rules (the PrometheusRule's spec)", res.returncode == 0, res.stdout + res.stderr)

    test_src = os.path.join(HERE, "alerts.test.yaml")
    test_file = os.path.join(out, "alerts.test.yaml")
    shutil.copyfile(test_src, test_file)
    res = subprocess.run(["promtool", "test", "rules", test_file], capture_output=True, text=True)
    check("promtool test rules alerts.test.yaml", res.returncode == 0, res.stdout + res.stderr)

    with open(test_src) as f:
        tests = yaml.safe_load(f)["tests"]
    fires, silent = set(), set()
    for t in tests:
        for a in t.get("alert_rule_test", []):
            (fires if a.get("exp_alerts") else silent).add(a["alertname"])
    missing = [f"{a}: no firing case" for a in alerts if a not in fires]
    missing += [f"{a}: no silent case" for a in alerts if a not in silent]
    missing += [f"{a}: tested but not in the rule" for a in (fires | silent) - set(alerts)]
    check(f"every alert ({len(alerts)}) has a firing and a silent unit test", not missing, "\n".join(missing))


# --------------------------------------------------------------------------
# 3. A real unroot and a real Prometheus
# --------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def wait_for(what, fn, timeout, procs=()):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for name, p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited ({p.returncode}) while waiting for {what}")
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} (last error: {last})")


def review(uid, operation, pod, namespace="default"):
    return {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace, "operation": operation,
            "userInfo": {"username": "monitoring-test"},
            "object": pod,
        },
    }


def pod(name, container_sc=None, pod_sc=None):
    c = {"name": "app", "image": "registry.example/app:1"}
    if container_sc is not None:
        c["securityContext"] = container_sc
    spec = {"containers": [c]}
    if pod_sc is not None:
        spec["securityContext"] = pod_sc
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


ROOT_POD = pod("root")
PRIVILEGED_POD = pod("privileged", {"privileged": True})
RESTRICTED_POD = pod(
    "restricted",
    {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
)

# The mix: (count, webhook, body, what the answer must be)
N_PATCHED, M_DENIED, K_ALLOWED, W_WARNED = 5, 3, 4, 2


class Webhook:
    def __init__(self, port, cafile):
        self.port = port
        self.ctx = ssl.create_default_context(cafile=cafile)
        self.sent = 0

    def post(self, path, body):
        conn = http.client.HTTPSConnection("localhost", self.port, context=self.ctx, timeout=10)
        try:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            conn.request("POST", path, data, {"Content-Type": "application/json"})
            r = conn.getresponse()
            self.sent += 1
            return r.status, r.read()
        finally:
            conn.close()


def drive_mix(hook, patched, denied, allowed, warned, malformed):
    """Sends part of the mix; returns the problems with the answers (as a
    person calling the webhook would see them)."""
    problems = []

    def answer(path, body):
        status, raw = hook.post(path, body)
        if status != 200:
            problems.append(f"{path}: HTTP {status}: {raw[:200]!r}")
            return {}
        return json.loads(raw)["response"]

    for i in range(patched):
        r = answer("/mutate", review(f"m-{i}", "CREATE", ROOT_POD))
        if not (r.get("allowed") and r.get("patchType") == "JSONPatch" and json.loads(base64.b64decode(r["patch"]))):
            problems.append(f"mutate of a root pod was not patched: {r}")
    for i in range(denied):
        r = answer("/validate", review(f"d-{i}", "CREATE", PRIVILEGED_POD))
        if r.get("allowed") is not False or "privileged" not in r.get("status", {}).get("message", ""):
            problems.append(f"validate of a privileged pod was not denied: {r}")
    for i in range(allowed):
        r = answer("/validate", review(f"a-{i}", "CREATE", RESTRICTED_POD))
        if r.get("allowed") is not True or r.get("warnings"):
            problems.append(f"validate of a restricted pod was not allowed without warnings: {r}")
    for i in range(warned):
        r = answer("/validate", review(f"w-{i}", "CREATE", ROOT_POD))
        if r.get("allowed") is not True or not r.get("warnings"):
            problems.append(f"validate of a root pod under warn=restricted was not allowed with warnings: {r}")
    for _ in range(malformed):
        status, raw = hook.post("/mutate", b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionRev')
        if status != 400:
            problems.append(f"a malformed body got HTTP {status}, not 400: {raw[:200]!r}")
    if malformed and os.environ.get("MONITORING_SELFTEST_EXTRA") == "1":
        print("note  MONITORING_SELFTEST_EXTRA=1: one mutate request more than the counts expect")
        answer("/mutate", review("extra", "CREATE", ROOT_POD))
    return problems


EXPECTED = {
    # query -> {label tuple: value}; zero-valued series are ignored, every
    # non-zero one must be listed.
    "sum by (webhook, outcome) (unroot_admission_requests_total)": {
        ("mutate", "patched"): N_PATCHED,
        ("validate", "denied"): M_DENIED,
        ("validate", "allowed"): K_ALLOWED + W_WARNED,
    },
    "sum by (webhook, reason) (unroot_rejected_requests_total)": {
        ("mutate", "malformed"): 1,
    },
    "sum by (webhook) (unroot_admission_warnings_total)": {
        ("validate",): W_WARNED,
    },
    "sum by (webhook) (unroot_admission_duration_seconds_count)": {
        ("mutate",): N_PATCHED,
        ("validate",): M_DENIED + K_ALLOWED + W_WARNED,
    },
    # the labels the dashboard's Pod Security and mutation panels sum by
    'sum by (mode, check) (unroot_pod_security_violations_total{mode="enforce"})': {
        ("enforce", "privileged"): M_DENIED,
    },
    "sum by (mutation) (unroot_mutations_total)": {
        ("security_context",): N_PATCHED,
    },
}


def exported_names(text):
    names = set()
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            name, kind = m.groups()
            names.add(name)
            if kind == "histogram":
                names |= {name + "_bucket", name + "_sum", name + "_count"}
            elif kind == "summary":
                names |= {name + "_sum", name + "_count"}
        elif line and not line.startswith("#"):
            names.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    return names


def read_list(name):
    with open(os.path.join(HERE, name)) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]


def check_names(used, exported):
    """used: name -> [where]."""
    external = read_list("external-metrics.txt")
    pending = read_list("pending-metrics.txt")
    unknown, stale = [], []
    for name, where in sorted(used.items()):
        if name in exported or any(fnmatch.fnmatchcase(name, p) for p in external):
            continue
        if name not in pending:
            unknown.append(f"{name}  (used by {', '.join(sorted(set(where)))})")
    for name in pending:
        if name in exported:
            stale.append(f"{name}: now in /metrics, remove it from pending-metrics.txt")
        elif name not in used:
            stale.append(f"{name}: used by nothing, remove it from pending-metrics.txt")
    check("every metric name in the dashboard and the alerts is in /metrics, external or pending",
          not unknown, "neither exported, external nor pending:\n" + "\n".join(unknown))
    check("pending-metrics.txt lists only names that are used and not yet exported", not stale, "\n".join(stale))
    if os.path.exists(CONTRACT):
        with open(CONTRACT) as f:
            contract = f.read()
        outside = [n for n in pending if not re.search(r"\b" + re.escape(n) + r"\b", contract)]
        check(f"every pending name is in the metrics contract ({CONTRACT})", not outside, outside)
    else:
        skip(f"pending names against {CONTRACT} (not on this machine)")
    pending_used = sorted(n for n in used if n in pending)
    print(f"note  pending (contracted, not in this /metrics): {', '.join(pending_used) or 'none'}")


class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def api(self, path, **params):
        url = f"{self.base}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            body = http_get(url)
        except urllib.error.HTTPError as e:
            body = e.read().decode()
        return json.loads(body)

    def query(self, expr, **params):
        return self.api("query", query=expr, **params)


def vector(result, labels):
    out = {}
    for s in result["data"]["result"]:
        v = float(s["value"][1])
        if v != 0:
            out[tuple(s["metric"].get(label, "") for label in labels)] = v
    return out


def live(args, dashboard, rule, rules_file):
    tmp = tempfile.mkdtemp(prefix="unroot-monitoring-")
    procs, logs = [], []

    def start(name, argv, log):
        f = open(os.path.join(tmp, log), "w")
        logs.append(f)
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith("UNROOT_") or k in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST"))}
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        procs.append((name, p))
        return p

    def stop_all():
        for _, p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for _, p in reversed(procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    try:
        hook_port, admin_port, prom_port = free_port(), free_port(), free_port()
        cafile = os.path.join(tmp, "ca.crt")
        policy = os.path.join(tmp, "policy.yaml")
        shutil.copyfile(os.path.join(ROOT, "webhook-config", "policy.yaml"), policy)
        start("unroot", [args.unroot, "serve", "--standalone",
                         "--listen", f"127.0.0.1:{hook_port}", "--admin-listen", f"127.0.0.1:{admin_port}",
                         "--dashboard-listen", "127.0.0.1:0",
                         "--ca-cert-out", cafile, "--policy", policy, "--policy-poll-interval", "200ms"],
              "unroot.log")
        admin = f"http://127.0.0.1:{admin_port}"
        wait_for("unroot /readyz", lambda: http_get(f"{admin}/readyz") and os.path.exists(cafile), 30, procs)

        shutil.copyfile(rules_file, os.path.join(tmp, "rules.yaml"))
        with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
            json.dump({
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": ["rules.yaml"],
                "scrape_configs": [{"job_name": "unroot", "static_configs": [{"targets": [f"127.0.0.1:{admin_port}"]}]}],
            }, f)
        start("prometheus", ["prometheus", f"--config.file={tmp}/prometheus.yml",
                             f"--storage.tsdb.path={tmp}/data", f"--web.listen-address=127.0.0.1:{prom_port}",
                             "--log.level=warn"], "prometheus.log")
        prom = Prometheus(prom_port)
        wait_for("Prometheus to scrape unroot", lambda: vector(prom.query('up{job="unroot"}'), ["job"]), 30, procs)

        # The mix in two rounds with a scrape between them: the first creates
        # the series, so that increase() over the second sees them grow as it
        # would in a cluster (a counter born non-zero shows no increase).
        hook = Webhook(hook_port, cafile)
        problems = drive_mix(hook, 1, 1, 1, 1, 0)
        first_done = time.time()
        wait_for("a scrape after the first round",
                 lambda: float(prom.query('timestamp(up{job="unroot"})')["data"]["result"][0]["value"][1]) > first_done + 0.05,
                 15, procs)
        problems += drive_mix(hook, N_PATCHED - 1, M_DENIED - 1, K_ALLOWED - 1, W_WARNED - 1, 1)
        check(f"the webhook answers the mix as a client sees it ({hook.sent} requests over HTTPS)",
              not problems, "\n".join(problems))
        mix_done = time.time()

        metrics_text = http_get(f"{admin}/metrics")
        with open(os.path.join(args.out, "metrics.txt"), "w") as f:
            f.write(metrics_text)
        used = {}
        for where, expr in dashboard_exprs(dashboard) + rule_exprs(rule):
            for name in metric_names(expr):
                used.setdefault(name, []).append(where)
        check_names(used, exported_names(metrics_text))

        # A scrape that started after the mix.
        wait_for("a scrape after the mix",
                 lambda: float(prom.query('timestamp(up{job="unroot"})')["data"]["result"][0]["value"][1]) > mix_done + 0.05,
                 15, procs)
        wrong = []
        for q, want in EXPECTED.items():
            labels = re.match(r"sum by \(([^)]*)\)", q).group(1).replace(" ", "").split(",")
            got = vector(prom.query(q), labels)
            if got != {k: float(v) for k, v in want.items()}:
                wrong.append(f"{q}\n  want {want}\n  got  {got}")
        check("Prometheus' instant queries return the admission counts the mix drove",
              not wrong, "\n".join(wrong) + f"\n(unroot's own /metrics: {args.out}/metrics.txt)")

        # rate() needs two samples of the series the mix created.
        wait_for("a second scrape after the mix",
                 lambda: float(prom.query('timestamp(up{job="unroot"})')["data"]["result"][0]["value"][1]) > mix_done + 1.1,
                 15, procs)
        exported = exported_names(metrics_text)
        errors, empty = [], []
        for where, expr in dashboard_exprs(dashboard):
            r = prom.query(substitute_grafana(expr))
            if r.get("status") != "success":
                errors.append(f"{where}: {r.get('error')}")
            elif not r["data"]["result"] and metric_names(expr) <= exported:
                empty.append(where)
        check("every dashboard expression runs on Prometheus over the scraped data", not errors, "\n".join(errors))
        check("every dashboard expression on exported metrics returns data after the mix", not empty, "\n".join(empty))

        def rules_evaluated():
            groups = prom.api("rules")["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return rules if rules and all(not r["lastEvaluation"].startswith("0001") for r in rules) else None

        rules = wait_for("the alert rules to be evaluated", rules_evaluated, 15, procs)
        bad = [f"{r['name']}: {r['health']} {r.get('lastError', '')}" for r in rules if r["health"] != "ok"]
        check(f"Prometheus loads the {len(rules)} alert rules and evaluates them healthy on unroot's series",
              len(rules) == len(rule_exprs(rule)) and not bad, "\n".join(bad) or f"{len(rules)} rules loaded")

        def alert_states():
            return {a["labels"]["alertname"]: a["state"] for a in prom.api("alerts")["data"]["alerts"]}

        states = alert_states()
        check("with one replica scraped and no kube-state-metrics, UnrootReplicasUnavailable is pending (fewer than the fallback 2)",
              states.get("UnrootReplicasUnavailable") == "pending", states)
        check("no alert fires on a healthy unroot", "firing" not in states.values(), states)

        # Pending: its `for` (1m) is promtool's to test, not worth a minute here.
        with open(policy, "w") as f:
            f.write("podSecurity:\n  defaults:\n    enforce: not-a-level\n")
        try:
            wait_for("UnrootPolicyReloadFailing to be pending",
                     lambda: alert_states().get("UnrootPolicyReloadFailing") in ("pending", "firing"), 20, procs)
            ok("a refused policy change makes UnrootPolicyReloadFailing pending in the real Prometheus")
        except RuntimeError as e:
            fail("a refused policy change makes UnrootPolicyReloadFailing pending in the real Prometheus",
                 f"{e}\nunroot_policy_reload_errors_total: "
                 + str(vector(prom.query("unroot_policy_reload_errors_total"), ["job"])))
    except (RuntimeError, OSError, KeyboardInterrupt) as e:
        fail("the live test ran to its end", e)
    finally:
        stop_all()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for f in logs:
            f.close()
        for name, _ in procs:
            shutil.copyfile(os.path.join(tmp, f"{name}.log"), os.path.join(args.out, f"{name}.log"))
        shutil.rmtree(tmp, ignore_errors=True)
        if failed:
            print(f"note  logs of this run: {args.out}/unroot.log, {args.out}/prometheus.log")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--unroot", required=True, help="the unroot binary")
    parser.add_argument("--out", required=True, help="directory for generated files (under target/)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    start = time.monotonic()

    self_test_metric_names()
    dashboard, rule, monitor = load_files()
    check_dashboard(dashboard)
    alerts = check_rule(rule)
    check_no_data_before_data(dashboard, rule)
    check_service_monitor(monitor)
    with open(os.path.join(MONITORING, "dashboard.json")) as f:
        check_kustomization(f.read())
    rules_file = write_rules(rule, args.out)
    run_promtool(rules_file, alerts, args.out)
    live(args, dashboard, rule, rules_file)

    print(f"note  {time.monotonic() - start:.1f}s")
    print(f"monitoring: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
