//! The readiness report: would the pods running in each namespace pass
//! Pod Security at `baseline`, and at `restricted`? The answer to "can I
//! turn on restricted here?".
//!
//! One function builds it ([`build`]): the background task of `serve`
//! ([`task`], every `--report-interval` and on `POST /report/run`) and the
//! one-off `unroot report` both call it, over a [`PodPages`] source that
//! lists pods a page at a time, so only one page is in memory at once.
//!
//! Each level is evaluated at the version the namespace pins for it: the
//! version of the first mode (enforce, warn, audit) already at that level,
//! else the enforce version (the version `unroot.dev/enforce=<level>` would
//! use if the label were set today). Unlabelled namespaces use the policy's
//! `podSecurity.defaults`. As at admission, the policy's excluded and exempt
//! namespaces are not evaluated (they are listed as skipped), a pod whose
//! runtime class is exempt counts as a pod that passes, and unroot's own
//! provisioning init container is exempt by provenance (the stored pod
//! vouches for its identity, as on an UPDATE). Exempt users cannot apply:
//! a stored pod does not say who created it.

pub mod source;
pub mod task;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::jiff::{Timestamp, Unit};
use serde::{Serialize, Serializer};

use crate::mutate::{Input, Requester, provenance_index};
use crate::namespaces::Labels;
use crate::policy::Snapshot;
use crate::pss::namespace_policy::{self, Policy as NamespacePolicy};
use crate::pss::{self, Level, LevelVersion, Version};

/// Errors from building a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A page of pods could not be listed.
    #[error("failed to list pods: {0}")]
    ListPods(String),
    /// The namespaces could not be listed or read.
    #[error("failed to read namespaces: {0}")]
    ListNamespaces(String),
    /// The namespace asked for does not exist.
    #[error("namespace {0:?} not found")]
    NamespaceNotFound(String),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Pods listed per API request.
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// Checks shown per namespace in the text report and on the dashboard.
pub const TOP_CHECKS: usize = 3;

/// One page of pods and the token of the next.
#[derive(Debug, Default)]
pub struct Page {
    /// The pods of this page.
    pub pods: Vec<Pod>,
    /// Where the next page starts; `None` (or empty) on the last page.
    pub continue_token: Option<String>,
}

/// Lists pods one page at a time.
pub trait PodPages: Send + Sync {
    /// The page that starts at `continue_token` (`None`: the first page).
    fn page(&self, continue_token: Option<String>) -> BoxFuture<'_, Result<Page>>;
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// When the last page was evaluated (RFC 3339).
    #[serde(serialize_with = "display")]
    pub finished_at: Timestamp,
    /// How long listing and evaluating took.
    pub duration_seconds: f64,
    /// The hash of the policy the report applied.
    pub policy_hash: String,
    /// The evaluated namespaces, by name.
    pub namespaces: Vec<Namespace>,
    /// The namespaces not evaluated, by name.
    pub skipped: Vec<Skipped>,
}

/// One evaluated namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Namespace {
    /// Its name.
    pub namespace: String,
    /// Pods evaluated (all phases).
    pub pods: u64,
    /// Of those, pods exempt by runtime class (they count as passing).
    pub exempt_pods: u64,
    /// At baseline.
    pub baseline: LevelResult,
    /// At restricted.
    pub restricted: LevelResult,
}

/// One level's result in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LevelResult {
    /// The version evaluated (see the module documentation).
    pub version: Version,
    /// Pods that would be denied at this level.
    pub violating: u64,
    /// Pods failing each check, by check ID.
    pub checks: BTreeMap<&'static str, u64>,
}

impl LevelResult {
    fn new(version: Version) -> Self {
        Self {
            version,
            violating: 0,
            checks: BTreeMap::new(),
        }
    }

    /// The checks most pods fail, most first (ties by ID), at most `n`.
    #[must_use]
    pub fn top_checks(&self, n: usize) -> Vec<(&'static str, u64)> {
        let mut checks: Vec<(&'static str, u64)> =
            self.checks.iter().map(|(c, n)| (*c, *n)).collect();
        checks.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        checks.truncate(n);
        checks
    }
}

/// A namespace not evaluated, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Its name.
    pub namespace: String,
    /// `excluded` (the policy's `webhook.excludedNamespaces`) or `exempt`
    /// (`podSecurity.exemptions.namespaces`).
    pub reason: &'static str,
}

fn display<T: std::fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// The version a namespace pins for `level`: that of the first mode already
/// at `level` (enforce, then warn, the mode a namespace stages a level in,
/// then audit), else the enforce version.
#[must_use]
pub fn pinned_version(policy: &NamespacePolicy, level: Level) -> Version {
    [policy.enforce, policy.warn, policy.audit]
        .iter()
        .find(|lv| lv.level == level)
        .map_or(policy.enforce.version, |lv| lv.version)
}

/// A namespace being evaluated.
struct Evaluating {
    labels: Labels,
    result: Namespace,
}

/// Gathers a report one pod at a time; pure and synchronous.
pub struct Builder<'a> {
    policy: &'a Snapshot,
    evaluating: BTreeMap<String, Evaluating>,
    skipped: BTreeMap<String, &'static str>,
    /// Pods only from this namespace (pods of others are ignored).
    only: Option<String>,
}

impl<'a> Builder<'a> {
    /// A report over `namespaces` (name and labels) under `policy`. Pods of
    /// a namespace not listed here (created since) are evaluated with the
    /// policy's defaults.
    pub fn new(
        policy: &'a Snapshot,
        namespaces: impl IntoIterator<Item = (String, Labels)>,
    ) -> Self {
        let mut builder = Self {
            policy,
            evaluating: BTreeMap::new(),
            skipped: BTreeMap::new(),
            only: None,
        };
        for (name, labels) in namespaces {
            builder.insert(name, labels);
        }
        builder
    }

    /// A report over the one namespace `name`.
    #[must_use]
    pub fn single(policy: &'a Snapshot, name: String, labels: Labels) -> Self {
        let mut builder = Self::new(policy, [(name.clone(), labels)]);
        builder.only = Some(name);
        builder
    }

    fn insert(&mut self, name: String, labels: Labels) -> Option<&mut Evaluating> {
        let exemptions = &self.policy.pod_security.exemptions;
        if self.policy.is_excluded_namespace(&name) {
            self.skipped.insert(name, "excluded");
            return None;
        }
        if exemptions.namespaces.contains(&name) {
            self.skipped.insert(name, "exempt");
            return None;
        }
        let (ns_policy, _label_errors) =
            namespace_policy::policy_from_labels(Some(&labels), self.policy.pod_security_defaults);
        let result = Namespace {
            namespace: name.clone(),
            pods: 0,
            exempt_pods: 0,
            baseline: LevelResult::new(pinned_version(&ns_policy, Level::Baseline)),
            restricted: LevelResult::new(pinned_version(&ns_policy, Level::Restricted)),
        };
        Some(
            self.evaluating
                .entry(name)
                .or_insert(Evaluating { labels, result }),
        )
    }

    /// Evaluates one pod.
    pub fn add(&mut self, pod: &Pod) {
        let Some(name) = pod.metadata.namespace.as_deref() else {
            return;
        };
        if self.only.as_deref().is_some_and(|only| only != name) || self.skipped.contains_key(name)
        {
            return;
        }
        let policy = self.policy;
        let entry = if self.evaluating.contains_key(name) {
            self.evaluating.get_mut(name)
        } else {
            self.insert(name.to_owned(), Labels::new())
        };
        let Some(entry) = entry else {
            return;
        };
        let result = &mut entry.result;
        result.pods += 1;
        let empty = PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&empty);
        let exempt_class = spec.runtime_class_name.as_deref().is_some_and(|class| {
            policy
                .pod_security
                .exemptions
                .runtime_class_names
                .iter()
                .any(|r| r == class)
        });
        if exempt_class {
            result.exempt_pods += 1;
            return;
        }
        let input = Input {
            policy,
            namespace_labels: &entry.labels,
            requester: "",
        };
        let skip = provenance_index(pod, &input, Requester::StoredPod);
        for (level, out) in [
            (Level::Baseline, &mut result.baseline),
            (Level::Restricted, &mut result.restricted),
        ] {
            let lv = LevelVersion {
                level,
                version: out.version,
            };
            let violations = pss::evaluate_excluding_init(&pod.metadata, spec, lv, skip);
            if !violations.is_empty() {
                out.violating += 1;
                for v in &violations {
                    *out.checks.entry(v.check).or_default() += 1;
                }
            }
        }
    }

    /// The report, finished at `finished_at` after `duration`.
    #[must_use]
    pub fn finish(self, finished_at: Timestamp, duration: Duration) -> Report {
        Report {
            finished_at: finished_at.round(Unit::Millisecond).unwrap_or(finished_at),
            duration_seconds: duration.as_secs_f64(),
            policy_hash: self.policy.hash.clone(),
            namespaces: self.evaluating.into_values().map(|e| e.result).collect(),
            skipped: self
                .skipped
                .into_iter()
                .map(|(namespace, reason)| Skipped { namespace, reason })
                .collect(),
        }
    }
}

/// Builds the report: every page of `pages` goes through `builder`, one
/// page in memory at a time.
pub async fn build(mut builder: Builder<'_>, pages: &dyn PodPages) -> Result<Report> {
    let started = Instant::now();
    let mut token = None;
    loop {
        let page = pages.page(token).await?;
        for pod in &page.pods {
            builder.add(pod);
        }
        match page.continue_token.filter(|t| !t.is_empty()) {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    Ok(builder.finish(Timestamp::now(), started.elapsed()))
}

/// The report as a table: namespace, pods, pods violating baseline and
/// restricted, the checks most pods fail at restricted; then the skipped
/// namespaces.
#[must_use]
pub fn render_text(report: &Report) -> String {
    let header = [
        "NAMESPACE",
        "PODS",
        "BASELINE",
        "RESTRICTED",
        "TOP CHECKS (restricted)",
    ];
    let rows: Vec<[String; 5]> = report
        .namespaces
        .iter()
        .map(|ns| {
            let level = |r: &LevelResult| format!("{} ({})", r.violating, r.version);
            let top = ns
                .restricted
                .top_checks(TOP_CHECKS)
                .iter()
                .map(|(c, n)| format!("{c}={n}"))
                .collect::<Vec<_>>()
                .join(", ");
            [
                ns.namespace.clone(),
                ns.pods.to_string(),
                level(&ns.baseline),
                level(&ns.restricted),
                if top.is_empty() { "-".to_owned() } else { top },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 5]| {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        );
    };
    line(header);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    for skipped in &report.skipped {
        let _ = writeln!(out, "skipped: {} ({})", skipped.namespace, skipped.reason);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::policy::Document;

    fn pod(namespace: &str, name: &str, spec: &serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }))
        .unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Passes restricted.
    fn hardened() -> serde_json::Value {
        serde_json::json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "i", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
        })
    }

    /// Passes baseline, fails restricted on four checks.
    fn plain() -> serde_json::Value {
        serde_json::json!({"containers": [{"name": "c", "image": "i"}]})
    }

    /// Fails baseline (privileged) and restricted.
    fn privileged() -> serde_json::Value {
        serde_json::json!({"containers": [{"name": "c", "image": "i",
            "securityContext": {"privileged": true}}]})
    }

    /// The default policy with `extra` (YAML mapping lines) laid over it.
    fn policy(extra: &str) -> Snapshot {
        let yaml = format!("apiVersion: unroot.dev/v1\nkind: Policy\n{extra}");
        Snapshot::new(Document::from_yaml(&yaml).unwrap())
    }

    /// Name, labels, expected baseline and restricted versions.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Version, Version);

    #[test]
    fn pinned_versions_follow_the_modes_then_enforce() {
        let defaults = policy("").pod_security_defaults;
        let cases: [Case<'_>; 4] = [
            (
                "no labels: the defaults",
                &[],
                Version::Latest,
                Version::Latest,
            ),
            (
                "warn pins restricted, enforce pins baseline",
                &[
                    ("unroot.dev/enforce", "baseline"),
                    ("unroot.dev/enforce-version", "v1.22"),
                    ("unroot.dev/warn", "restricted"),
                    ("unroot.dev/warn-version", "v1.20"),
                ],
                Version::Minor(22),
                Version::Minor(20),
            ),
            (
                "no mode at a level: the enforce version",
                &[
                    ("unroot.dev/enforce", "privileged"),
                    ("unroot.dev/enforce-version", "v1.23"),
                    ("unroot.dev/audit", "privileged"),
                    ("unroot.dev/warn", "privileged"),
                ],
                Version::Minor(23),
                Version::Minor(23),
            ),
            (
                "warn before audit",
                &[
                    ("unroot.dev/enforce", "privileged"),
                    ("unroot.dev/audit", "restricted"),
                    ("unroot.dev/audit-version", "v1.25"),
                    ("unroot.dev/warn", "restricted"),
                    ("unroot.dev/warn-version", "v1.21"),
                ],
                Version::Latest,
                Version::Minor(21),
            ),
        ];
        for (name, pairs, baseline, restricted) in cases {
            let (p, errors) = namespace_policy::policy_from_labels(Some(&labels(pairs)), defaults);
            assert!(errors.is_empty(), "{name}");
            assert_eq!(
                (
                    pinned_version(&p, Level::Baseline),
                    pinned_version(&p, Level::Restricted)
                ),
                (baseline, restricted),
                "{name}"
            );
        }
    }

    #[test]
    fn pods_are_counted_per_namespace_and_level() {
        let snapshot = policy(
            "podSecurity:\n  exemptions:\n    namespaces: [legacy]\n    runtimeClassNames: [kata]\n",
        );
        let mut builder = Builder::new(
            &snapshot,
            [
                (
                    "team".to_owned(),
                    labels(&[("unroot.dev/warn", "restricted")]),
                ),
                ("empty".to_owned(), Labels::new()),
                ("kube-system".to_owned(), Labels::new()),
                ("legacy".to_owned(), Labels::new()),
            ],
        );
        let mut kata = plain();
        kata["runtimeClassName"] = "kata".into();
        for (namespace, name, spec) in [
            ("team", "ok", hardened()),
            ("team", "plain", plain()),
            ("team", "priv", privileged()),
            ("team", "kata", kata),
            ("kube-system", "x", privileged()),
            ("legacy", "x", privileged()),
            ("new", "x", plain()),
        ] {
            builder.add(&pod(namespace, name, &spec));
        }
        let report = builder.finish(Timestamp::UNIX_EPOCH, Duration::ZERO);
        let summary: Vec<(&str, u64, u64, u64, u64)> = report
            .namespaces
            .iter()
            .map(|n| {
                (
                    n.namespace.as_str(),
                    n.pods,
                    n.exempt_pods,
                    n.baseline.violating,
                    n.restricted.violating,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("empty", 0, 0, 0, 0),
                ("new", 1, 0, 0, 1),
                ("team", 4, 1, 1, 2)
            ]
        );
        let team = &report.namespaces[2];
        assert_eq!(team.baseline.checks, BTreeMap::from([("privileged", 1)]));
        assert_eq!(
            team.restricted.top_checks(3),
            [
                ("allowPrivilegeEscalation", 2),
                ("capabilities_restricted", 2),
                ("runAsNonRoot", 2)
            ]
        );
        assert_eq!(
            report.skipped,
            [
                Skipped {
                    namespace: "kube-system".to_owned(),
                    reason: "excluded"
                },
                Skipped {
                    namespace: "legacy".to_owned(),
                    reason: "exempt"
                },
            ]
        );
    }

    #[test]
    fn a_pinned_version_changes_the_verdict() {
        // seccompProfile_restricted and the others exist at v1.0; at v1.0
        // restricted did not yet require capabilities to be dropped (v1.22).
        let snapshot = policy("");
        let verdict = |version: &str| {
            let mut builder = Builder::single(
                &snapshot,
                "ns".to_owned(),
                labels(&[
                    ("unroot.dev/warn", "restricted"),
                    ("unroot.dev/warn-version", version),
                ]),
            );
            builder.add(&pod("ns", "p", &plain()));
            let report = builder.finish(Timestamp::UNIX_EPOCH, Duration::ZERO);
            report.namespaces[0]
                .restricted
                .checks
                .keys()
                .copied()
                .collect::<Vec<_>>()
        };
        let latest = verdict("latest");
        let old = verdict("v1.0");
        assert!(latest.contains(&"capabilities_restricted"), "{latest:?}");
        assert_ne!(latest, old);
    }

    /// A fake API server: fixed pages, and the tokens it was asked for.
    struct Pages {
        list: Vec<Vec<Pod>>,
        asked: Mutex<Vec<Option<String>>>,
        fail_at: Option<usize>,
    }

    impl PodPages for Pages {
        fn page(&self, token: Option<String>) -> BoxFuture<'_, Result<Page>> {
            Box::pin(async move {
                self.asked.lock().unwrap().push(token.clone());
                let index = token.map_or(0, |t| t.trim_start_matches("after-").parse().unwrap());
                if self.fail_at == Some(index) {
                    return Err(Error::ListPods(
                        "410 Gone: the continue token expired".to_owned(),
                    ));
                }
                let last = index + 1 == self.list.len();
                Ok(Page {
                    pods: self.list[index].clone(),
                    continue_token: (!last).then(|| format!("after-{}", index + 1)),
                })
            })
        }
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn every_page_is_read_by_its_continue_token() {
        let snapshot = policy("");
        let pages = Pages {
            list: vec![
                vec![pod("a", "1", &plain()), pod("a", "2", &hardened())],
                vec![pod("a", "3", &privileged())],
                vec![pod("b", "1", &plain())],
            ],
            asked: Mutex::new(Vec::new()),
            fail_at: None,
        };
        let builder = Builder::new(&snapshot, [("a".to_owned(), Labels::new())]);
        let report = run(build(builder, &pages)).unwrap();
        assert_eq!(
            *pages.asked.lock().unwrap(),
            [None, Some("after-1".to_owned()), Some("after-2".to_owned())]
        );
        let pods: Vec<(&str, u64, u64)> = report
            .namespaces
            .iter()
            .map(|n| (n.namespace.as_str(), n.pods, n.restricted.violating))
            .collect();
        assert_eq!(pods, [("a", 3, 2), ("b", 1, 1)]);
    }

    #[test]
    fn a_failed_page_fails_the_report() {
        let snapshot = policy("");
        let pages = Pages {
            list: vec![vec![pod("a", "1", &plain())], vec![pod("a", "2", &plain())]],
            asked: Mutex::new(Vec::new()),
            fail_at: Some(1),
        };
        let err = run(build(Builder::new(&snapshot, []), &pages)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to list pods: 410 Gone: the continue token expired"
        );
    }

    #[test]
    fn a_single_namespace_report_ignores_other_pods() {
        let snapshot = policy("");
        let mut builder = Builder::single(&snapshot, "a".to_owned(), Labels::new());
        builder.add(&pod("a", "1", &plain()));
        builder.add(&pod("b", "1", &plain()));
        let report = builder.finish(Timestamp::UNIX_EPOCH, Duration::ZERO);
        assert_eq!(report.namespaces.len(), 1);
        assert_eq!(report.namespaces[0].pods, 1);
    }

    #[test]
    fn the_text_report_is_a_table() {
        let snapshot = policy("");
        let mut builder = Builder::new(
            &snapshot,
            [
                ("team-a".to_owned(), Labels::new()),
                ("kube-system".to_owned(), Labels::new()),
            ],
        );
        builder.add(&pod("team-a", "1", &plain()));
        builder.add(&pod("team-a", "2", &privileged()));
        let text = render_text(&builder.finish(Timestamp::UNIX_EPOCH, Duration::ZERO));
        assert_eq!(
            text,
            "\
NAMESPACE  PODS  BASELINE    RESTRICTED  TOP CHECKS (restricted)
team-a     2     1 (latest)  2 (latest)  allowPrivilegeEscalation=2, capabilities_restricted=2, runAsNonRoot=2
skipped: kube-system (excluded)
"
        );
    }
}
