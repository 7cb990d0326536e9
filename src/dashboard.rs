//! `/dashboard` on the loopback-only dashboard listener: one server-rendered
//! HTML page for clusters without Grafana. No external assets (inline CSS,
//! one tiny inline script that shows times in the browser's zone), works
//! offline, reloads itself every [`REFRESH_SECONDS`].
//!
//! Everything on it comes from the metrics registry (the same numbers as
//! `/metrics`), the audit log's ring of recent denied or warned decisions,
//! and the latest readiness report. Pod names, namespaces and user names
//! come from requests and are attacker-controlled: every text and attribute
//! is escaped, and the Content-Security-Policy allows no script but ours
//! (by hash), so markup that slipped through could not run either.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use k8s_openapi::jiff::Timestamp;
use prometheus::proto::{MetricFamily, MetricType};
use sha2::{Digest as _, Sha256};

use crate::audit::Record;
use crate::metrics::names;
use crate::report::{Report, TOP_CHECKS};

/// Seconds between automatic reloads.
pub const REFRESH_SECONDS: u32 = 10;

/// The page's only script: show `<time>` elements in the browser's zone.
const SCRIPT: &str = "for(const t of document.querySelectorAll('time[datetime]')){const d=new Date(t.getAttribute('datetime'));if(!isNaN(d)){t.title=t.textContent;t.textContent=d.toLocaleString();t.dataset.local='1';}}";

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.6em 0 .4em}\
table{border-collapse:collapse;background:#fff;margin-bottom:.5em}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
#recent td{max-width:22em;overflow-wrap:anywhere}#recent td.caller{white-space:nowrap}\
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#eee}\
.meta{color:#555}.bad{color:#a00;font-weight:600}.ok{color:#070}\
code{font-size:.95em}.grid{display:flex;flex-wrap:wrap;gap:2em}";

/// What the page shows.
#[derive(Debug)]
pub struct View<'a> {
    /// The registry's metrics, as gathered for `/metrics`.
    pub families: &'a [MetricFamily],
    /// The last denied or warned decisions, newest first.
    pub recent: &'a [Arc<Record>],
    /// The latest readiness report.
    pub report: Option<&'a Report>,
    /// Whether a report task runs (a cluster is connected).
    pub report_running: bool,
    /// Whether this replica builds the reports (it holds the Lease).
    pub report_leading: bool,
    /// Why the last report failed, if it did.
    pub report_error: Option<&'a str>,
    /// The hash of the policy in force.
    pub policy_hash: &'a str,
    /// When the page is rendered.
    pub now: Timestamp,
}

/// The `Content-Security-Policy` of the page: inline style, our script by
/// its hash, nothing else.
pub fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT));
        format!(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
    })
}

/// Escapes text for HTML content and quoted attributes.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The samples of the family `name`: label set and value (counters and
/// gauges).
fn samples<'a>(families: &'a [MetricFamily], name: &str) -> Vec<(BTreeMap<&'a str, &'a str>, f64)> {
    let Some(family) = families.iter().find(|f| f.name() == name) else {
        return Vec::new();
    };
    family
        .get_metric()
        .iter()
        .map(|m| {
            let labels = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            let value = match family.get_field_type() {
                MetricType::COUNTER => m.get_counter().get_value(),
                MetricType::GAUGE => m.get_gauge().get_value(),
                _ => 0.0,
            };
            (labels, value)
        })
        .collect()
}

/// The sum of `name`'s samples grouped by the values of `keys`.
fn sum_by(families: &[MetricFamily], name: &str, keys: &[&str]) -> BTreeMap<Vec<String>, f64> {
    let mut out = BTreeMap::new();
    for (labels, value) in samples(families, name) {
        let key = keys
            .iter()
            .map(|k| labels.get(k).copied().unwrap_or_default().to_owned())
            .collect();
        *out.entry(key).or_insert(0.0) += value;
    }
    out
}

/// A number as Prometheus prints it (integers without a fraction).
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        value.to_string()
    }
}

fn cell(out: &mut String, id: &str, value: f64) {
    let _ = write!(
        out,
        r#"<td class="n" id="{}">{}</td>"#,
        escape(id),
        number(value)
    );
}

fn time(out: &mut String, at: Timestamp) {
    let _ = write!(out, r#"<time datetime="{at}">{at}</time>"#);
}

/// Renders the page.
#[must_use]
pub fn render(view: &View<'_>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{REFRESH_SECONDS}"><meta name="viewport" content="width=device-width"><title>unroot dashboard</title><style>{STYLE}</style></head><body>"#
    );
    header(&mut out, view);
    out.push_str(r#"<div class="grid">"#);
    admissions(&mut out, view.families);
    mutations(&mut out, view.families);
    out.push_str("</div>");
    violations(&mut out, view.families);
    recent(&mut out, view.recent);
    readiness(&mut out, view);
    let _ = write!(out, "<script>{SCRIPT}</script></body></html>");
    out
}

fn header(out: &mut String, view: &View<'_>) {
    let _ = write!(
        out,
        r#"<h1>unroot</h1><p class="meta">version <span id="version">{}</span> · policy <code id="policy-hash">{}</code> · rendered "#,
        escape(crate::VERSION),
        escape(view.policy_hash),
    );
    time(out, view.now);
    let _ = write!(
        out,
        " · reloads every {REFRESH_SECONDS} s · <a href=\"/metrics\">/metrics</a></p>"
    );
    out.push_str(r"<h2>Certificates</h2><table><tr><th>certificate</th><th>expires</th><th>days left</th></tr>");
    let certs = samples(view.families, names::CERTIFICATE_EXPIRY);
    if certs.is_empty() {
        out.push_str(
            r#"<tr><td>ca, serving</td><td id="cert-expiry" colspan="2">unknown</td></tr>"#,
        );
    }
    for (labels, value) in certs {
        let name = labels.get("cert").copied().unwrap_or("certificate");
        let _ = write!(out, "<tr><td>{}</td><td>", escape(name));
        // Expiry timestamps are whole seconds well inside i64.
        #[allow(clippy::cast_possible_truncation)]
        match Timestamp::from_second(value as i64) {
            Ok(at) => time(out, at),
            Err(_) => out.push_str("unknown"),
        }
        #[allow(clippy::cast_precision_loss)] // unix seconds: exact below 2^53
        let days = (value - view.now.as_second() as f64) / 86_400.0;
        let class = if days < 14.0 { "n bad" } else { "n" };
        let _ = write!(
            out,
            r#"</td><td class="{class}" id="cert-days-{}">{days:.1}</td></tr>"#,
            escape(name)
        );
    }
    out.push_str("</table>");
}

fn admissions(out: &mut String, families: &[MetricFamily]) {
    const OUTCOMES: [&str; 4] = ["allowed", "patched", "denied", "error"];
    let by = sum_by(families, names::ADMISSION_REQUESTS, &["webhook", "outcome"]);
    let warnings = sum_by(families, names::ADMISSION_WARNINGS, &["webhook"]);
    let rejected = sum_by(families, names::REJECTED_REQUESTS, &["webhook"]);
    out.push_str("<section><h2>Admissions</h2><table><tr><th>webhook</th>");
    for outcome in OUTCOMES {
        let _ = write!(out, "<th>{outcome}</th>");
    }
    out.push_str("<th>total</th><th>warnings</th><th>refused before review</th></tr>");
    for webhook in ["mutate", "validate"] {
        let _ = write!(out, "<tr><th>{webhook}</th>");
        let mut total = 0.0;
        for outcome in OUTCOMES {
            let value = by
                .get(&vec![webhook.to_owned(), outcome.to_owned()])
                .copied()
                .unwrap_or_default();
            total += value;
            cell(out, &format!("admissions-{webhook}-{outcome}"), value);
        }
        cell(out, &format!("admissions-{webhook}-total"), total);
        let key = vec![webhook.to_owned()];
        cell(
            out,
            &format!("warnings-{webhook}"),
            warnings.get(&key).copied().unwrap_or_default(),
        );
        cell(
            out,
            &format!("rejected-{webhook}"),
            rejected.get(&key).copied().unwrap_or_default(),
        );
        out.push_str("</tr>");
    }
    out.push_str("</table><table>");
    for (label, id, name) in [
        (
            "in flight",
            "in-flight",
            names::ADMISSION_REQUESTS_IN_FLIGHT,
        ),
        (
            "policy reload errors",
            "policy-reload-errors",
            names::POLICY_RELOAD_ERRORS,
        ),
        (
            "audit records dropped",
            "audit-dropped",
            names::AUDIT_RECORDS_DROPPED,
        ),
        (
            "TLS handshakes failed",
            "tls-handshake-failures",
            names::TLS_HANDSHAKE_FAILURES,
        ),
    ] {
        // Summed from +0.0: an empty f64 sum is -0.0, which prints "-0".
        let value = samples(families, name)
            .iter()
            .fold(0.0, |total, (_, v)| total + v);
        let _ = write!(out, "<tr><th>{label}</th>");
        cell(out, id, value);
        out.push_str("</tr>");
    }
    out.push_str("</table></section>");
}

fn mutations(out: &mut String, families: &[MetricFamily]) {
    out.push_str("<section><h2>Mutations</h2><table><tr><th>mutation</th><th>applied</th></tr>");
    for (key, value) in sum_by(families, names::MUTATIONS, &["mutation"]) {
        let _ = write!(out, "<tr><td>{}</td>", escape(&key[0]));
        cell(out, &format!("mutations-{}", key[0]), value);
        out.push_str("</tr>");
    }
    out.push_str("</table></section>");
}

fn violations(out: &mut String, families: &[MetricFamily]) {
    const MODES: [(&str, &str); 3] = [
        ("enforce", "denials (enforce)"),
        ("warn", "warnings (warn)"),
        ("audit", "audit annotations (audit)"),
    ];
    let by = sum_by(families, names::POD_SECURITY_VIOLATIONS, &["check", "mode"]);
    let mut checks: Vec<&str> = by.keys().map(|k| k[0].as_str()).collect();
    checks.dedup();
    out.push_str("<h2>Pod Security violations by check</h2>");
    if checks.is_empty() {
        out.push_str(r#"<p id="violations-none">No violation since start.</p>"#);
        return;
    }
    out.push_str(r#"<table id="violations"><tr><th>check</th>"#);
    for (_, title) in MODES {
        let _ = write!(out, "<th>{title}</th>");
    }
    out.push_str("</tr>");
    for check in checks {
        let _ = write!(out, "<tr><td><code>{}</code></td>", escape(check));
        for (mode, _) in MODES {
            let value = by
                .get(&vec![check.to_owned(), mode.to_owned()])
                .copied()
                .unwrap_or_default();
            cell(out, &format!("violations-{mode}-{check}"), value);
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

fn recent(out: &mut String, records: &[Arc<Record>]) {
    let _ = write!(
        out,
        r#"<h2>Recent denied or warned admissions (<span id="recent-count">{}</span>, newest first, at most {} per kind of caller)</h2>"#,
        records.len(),
        crate::audit::RECENT
    );
    out.push_str(r#"<p class="meta">A caller is <em>authenticated</em> when it presented a client certificate <code>--client-ca</code> accepts; anyone who reaches the webhook port could have sent an <em>unauthenticated</em> review, its user name included.</p>"#);
    out.push_str(r#"<table id="recent"><tr><th>time</th><th>webhook</th><th>outcome</th><th>caller</th><th>namespace</th><th>name</th><th>user</th><th>checks</th><th>warnings</th></tr>"#);
    for r in records {
        let (row, caller) = if r.authenticated {
            ("", r#"<td class="caller">authenticated</td>"#)
        } else {
            (
                r#" class="unauthenticated""#,
                r#"<td class="caller bad" title="no client certificate: possibly forged">unauthenticated</td>"#,
            )
        };
        let _ = write!(out, "<tr{row}><td>");
        time(out, r.time);
        let outcome_class = if r.allowed { "" } else { " class=\"bad\"" };
        let _ = write!(
            out,
            "</td><td>{}</td><td{outcome_class}>{}</td>{caller}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            escape(r.webhook),
            escape(r.outcome),
            escape(&r.namespace),
            escape(&r.name),
            escape(&r.user),
            escape(&r.failed_checks().join("; ")),
            r.warnings,
        );
    }
    out.push_str("</table>");
}

fn readiness(out: &mut String, view: &View<'_>) {
    out.push_str("<h2>Namespace readiness (existing pods)</h2>");
    let Some(report) = view.report else {
        let why = if view.report_running && !view.report_leading {
            "The readiness report runs on the replica holding the Lease, and this one does not: port-forward to that one (kubectl -n unroot get lease unroot-certs names it)."
        } else if view.report_running {
            "The first readiness report has not finished yet."
        } else {
            "No readiness report: unroot runs without a cluster."
        };
        let _ = write!(out, r#"<p id="readiness-none">{why}</p>"#);
        if let Some(error) = view.report_error {
            let _ = write!(
                out,
                r#"<p class="bad">Last report failed: {}</p>"#,
                escape(error)
            );
        }
        return;
    };
    out.push_str(r#"<p class="meta">Report of "#);
    time(out, report.finished_at);
    let _ = write!(
        out,
        " in {:.2} s under policy <code>{}</code>. A namespace is ready for a level when no pod violates it.</p>",
        report.duration_seconds,
        escape(&report.policy_hash)
    );
    if let Some(error) = view.report_error {
        let _ = write!(
            out,
            r#"<p class="bad">The last report failed (this one is older): {}</p>"#,
            escape(error)
        );
    }
    out.push_str(r#"<table id="readiness"><tr><th>namespace</th><th>pods</th><th>violating baseline</th><th>violating restricted</th><th>top checks (restricted)</th></tr>"#);
    for ns in &report.namespaces {
        let name = escape(&ns.namespace);
        let _ = write!(out, "<tr><td>{name}</td>");
        #[allow(clippy::cast_precision_loss)]
        cell(
            out,
            &format!("readiness-{}-pods", ns.namespace),
            ns.pods as f64,
        );
        for (level, result) in [("baseline", &ns.baseline), ("restricted", &ns.restricted)] {
            let class = if result.violating > 0 {
                "n bad"
            } else {
                "n ok"
            };
            let _ = write!(
                out,
                r#"<td class="{class}" id="readiness-{name}-{level}" title="{level}:{version}">{}</td>"#,
                result.violating,
                version = result.version,
            );
        }
        let top: Vec<String> = ns
            .restricted
            .top_checks(TOP_CHECKS)
            .iter()
            .map(|(c, n)| format!("{c}={n}"))
            .collect();
        let _ = write!(out, "<td>{}</td></tr>", escape(&top.join(", ")));
    }
    out.push_str("</table>");
    if !report.skipped.is_empty() {
        let skipped: Vec<String> = report
            .skipped
            .iter()
            .map(|s| format!("{} ({})", s.namespace, s.reason))
            .collect();
        let _ = write!(
            out,
            r#"<p class="meta">Not evaluated: {}</p>"#,
            escape(&skipped.join(", "))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<img src=x onerror="alert('x')">&"#),
            "&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;"
        );
    }

    #[test]
    fn the_policy_allows_exactly_our_script() {
        let csp = content_security_policy();
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT));
        assert!(
            csp.contains(&format!("script-src 'sha256-{hash}'")),
            "{csp}"
        );
        assert!(csp.starts_with("default-src 'none'"));
    }

    #[test]
    fn request_strings_are_escaped_on_the_page() {
        let request: crate::admission::Request<'_> = serde_json::from_str(
            r#"{"uid":"u","name":"<script>alert(1)</script>","namespace":"ns",
            "userInfo":{"username":"\"><img src=x onerror=alert(2)>"}}"#,
        )
        .unwrap();
        let decision = crate::admission::Decision::from(crate::admission::Response::deny(
            "u",
            403,
            "Forbidden",
            "no",
        ));
        let record = Arc::new(Record::new(
            "validate",
            &request,
            &decision,
            "h",
            Duration::ZERO,
        ));
        let page = render(&View {
            families: &[],
            recent: &[record],
            report: None,
            report_running: false,
            report_leading: false,
            report_error: None,
            policy_hash: "h",
            now: Timestamp::UNIX_EPOCH,
        });
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains(r#"id="cert-expiry" colspan="2">unknown"#));
        assert!(
            page.contains(r#"<tr class="unauthenticated">"#),
            "a record starts unauthenticated: {page}"
        );
    }
}
