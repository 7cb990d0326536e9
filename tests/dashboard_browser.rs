//! `/dashboard` in a real browser: headless Chromium (Debian `chromium`)
//! loads the page from the loopback dashboard listener after the known mix
//! of admissions, and the numbers in the rendered DOM must be those of
//! `/metrics`. A screenshot is kept at `target/dashboard.png` for a person
//! to look at.
//!
//! Ignored by plain `cargo test` (it needs Chromium); `make dashboard-browser`
//! (part of `make test`) installs Chromium and runs it with `--ignored`.
//! Run by hand, it fails when Chromium is missing rather than passing.

use crate::mix;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The browser binary: `$CHROMIUM`, else `chromium` on PATH.
fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

/// Runs headless Chromium on `url` with `extra` flags; returns stdout.
fn browse(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): install Debian's chromium (make dashboard-browser does)",
                chromium()
            )
        });
    assert!(
        output.status.success(),
        "chromium failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The text of the element with `id` in the serialized DOM.
fn text_of(dom: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no element {id} in the DOM:\n{dom}"));
    let rest = &dom[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap();
    rest[start..start + end].to_owned()
}

/// The count in the element with `id`.
fn number_of(dom: &str, id: &str) -> u64 {
    let text = text_of(dom, id);
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{id}: {text:?}: {e}"))
}

/// Every sample of `/metrics`: name with labels → value.
fn samples(metrics: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap();
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels, value.parse().unwrap())
        })
        .collect()
}

/// The sum of `name`'s samples whose labels include every pair of `want`
/// (counters: whole numbers).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn sum(
    samples: &[(String, BTreeMap<String, String>, f64)],
    name: &str,
    want: &[(&str, &str)],
) -> u64 {
    let total: f64 = samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum();
    assert!(total >= 0.0 && total.fract() == 0.0, "{name}: {total}");
    total as u64
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    )
}

/// Compares every counter the page shows with `/metrics`; returns how many.
fn compare_counters(dom: &str, samples: &[(String, BTreeMap<String, String>, f64)]) -> usize {
    let mut compared = 0;
    for webhook in ["mutate", "validate"] {
        for outcome in ["allowed", "patched", "denied", "error"] {
            let want = sum(
                samples,
                "unroot_admission_requests_total",
                &[("webhook", webhook), ("outcome", outcome)],
            );
            assert_eq!(
                number_of(dom, &format!("admissions-{webhook}-{outcome}")),
                want,
                "{webhook} {outcome}"
            );
            compared += 1;
        }
        let want = sum(
            samples,
            "unroot_admission_warnings_total",
            &[("webhook", webhook)],
        );
        assert_eq!(number_of(dom, &format!("warnings-{webhook}")), want);
        compared += 1;
    }
    for mutation in [
        "security_context",
        "trust_bundle",
        "provisioning",
        "identity_configmap",
    ] {
        let want = sum(samples, "unroot_mutations_total", &[("mutation", mutation)]);
        assert_eq!(
            number_of(dom, &format!("mutations-{mutation}")),
            want,
            "{mutation}"
        );
        compared += 1;
    }
    let checks: std::collections::BTreeSet<&str> = samples
        .iter()
        .filter(|(n, _, _)| n == "unroot_pod_security_violations_total")
        .map(|(_, l, _)| l["check"].as_str())
        .collect();
    assert!(checks.len() >= 5, "{checks:?}");
    for check in &checks {
        for mode in ["enforce", "warn", "audit"] {
            let want = sum(
                samples,
                "unroot_pod_security_violations_total",
                &[("check", check), ("mode", mode)],
            );
            assert_eq!(
                number_of(dom, &format!("violations-{mode}-{check}")),
                want,
                "{mode} {check}"
            );
            compared += 1;
        }
    }
    assert_eq!(
        number_of(dom, "audit-dropped"),
        sum(samples, "unroot_audit_records_dropped_total", &[])
    );
    assert_eq!(
        number_of(dom, "audit-dropped"),
        sum(samples, "unroot_audit_records_dropped_total", &[])
    );
    compared + 1
}

#[tokio::test]
#[ignore = "needs Chromium: make dashboard-browser"]
async fn the_rendered_dashboard_shows_the_numbers_of_metrics() {
    let (server, _sink) = mix::start(unroot::report::task::Handle::fixed(mix::report())).await;
    mix::register_certificates(&server, 10);
    mix::drive(&server).await;
    let url = format!("http://{}/dashboard", server.dashboard_addr.unwrap());
    let dom = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || browse(&url, &["--dump-dom".to_owned()]))
            .await
            .unwrap()
    };
    let metrics = String::from_utf8(server.admin_get("/metrics").await.body).unwrap();
    let samples = samples(&metrics);

    // The DOM is the browser's, not our bytes: the page's script ran and
    // rewrote every time into the browser's zone.
    assert!(dom.contains("data-local=\"1\""), "{dom}");
    // ... and nothing the requests carried ran or became an element.
    assert!(!dom.contains("data-pwned"), "injected script ran:\n{dom}");
    assert!(!dom.contains("<img"), "injected element:\n{dom}");
    assert_eq!(dom.matches("<script").count(), 1, "{dom}");

    let compared = compare_counters(&dom, &samples);
    // The mix's absolute numbers, so a page and a /metrics both at zero fail.
    assert_eq!(number_of(&dom, "admissions-mutate-patched"), 2);
    assert_eq!(number_of(&dom, "admissions-validate-denied"), 1);
    assert_eq!(number_of(&dom, "warnings-validate"), 1);
    assert_eq!(number_of(&dom, "violations-enforce-privileged"), 1);

    // The ring: the denial and the warning, newest first, escaped.
    assert_eq!(number_of(&dom, "recent-count"), 2);
    let recent = &dom[dom.find("id=\"recent\"").unwrap()..];
    let warned = recent.find("x\"&gt;&lt;script&gt;").expect("escaped name");
    let denied = recent.find("root-shell").unwrap();
    assert!(warned < denied, "newest first");
    assert!(recent.contains("&lt;img src=x onerror="), "escaped user");
    assert!(recent.contains("enforce: privileged, allowPrivilegeEscalation"));
    // The mix's callers presented no client certificate: each row says so.
    assert_eq!(
        recent.matches(">unauthenticated</td>").count(),
        2,
        "unauthenticated rows are marked"
    );

    // Readiness, from the report; the policy hash; the certificate.
    assert_eq!(number_of(&dom, "readiness-team-a-pods"), 3);
    assert_eq!(number_of(&dom, "readiness-team-a-baseline"), 1);
    assert_eq!(number_of(&dom, "readiness-team-a-restricted"), 3);
    assert_eq!(number_of(&dom, "readiness-team-b-restricted"), 0);
    let hash = server.state.as_ref().unwrap().policy.load().hash.clone();
    assert_eq!(text_of(&dom, "policy-hash"), hash);
    let days: f64 = text_of(&dom, "cert-days-serving").parse().unwrap();
    assert!((9.9..=10.0).contains(&days), "{days}");
    eprintln!("compared {compared} numbers of the rendered dashboard with /metrics");

    // A screenshot for a person.
    let png = target_dir().join("dashboard.png");
    let shot = png.clone();
    tokio::task::spawn_blocking(move || {
        browse(
            &url,
            &[
                format!("--screenshot={}", shot.display()),
                "--window-size=1280,1600".to_owned(),
            ],
        )
    })
    .await
    .unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG"),
        "not a PNG: {}",
        png.display()
    );
    eprintln!("screenshot: {}", png.display());
    server.shutdown().await;
}
