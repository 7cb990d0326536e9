//! The report in `serve`: a background task builds it every
//! `--report-interval` and whenever `POST /report/run` asks, exports it as
//! metrics, and keeps the latest for `/dashboard` and `GET /report`.
//!
//! It runs once per cluster: only the replica holding the Lease (the one
//! that elects the certificate rotator) builds reports and exports their
//! series. A replica that loses the Lease removes its report series, so
//! the cluster's series always come from one replica, whichever it is.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use prometheus::{GaugeVec, IntCounter, IntGaugeVec, Registry};
use tokio::sync::{Notify, watch};
use tracing::{Instrument as _, debug, info, info_span, warn};

use super::source::ApiPages;
use super::{Builder, Report, build};
use crate::metrics::{names, register};
use crate::namespaces::Namespaces;
use crate::policy::Snapshot;

/// The report's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `unroot_namespace_pods{namespace}`.
    pub pods: IntGaugeVec,
    /// `unroot_namespace_pods_violating{namespace,level}`.
    pub violating: IntGaugeVec,
    /// `unroot_readiness_report_last_run_timestamp_seconds`: when the last
    /// report that completed finished (no series before the first, nor on
    /// a replica that does not hold the Lease; a vector without labels, so
    /// the series can go).
    pub last_run: GaugeVec,
    /// `unroot_readiness_report_duration_seconds`: how long it took (same
    /// presence as `last_run`).
    pub duration: GaugeVec,
    /// `unroot_readiness_report_errors_total`: reports that failed.
    pub errors: IntCounter,
    /// The namespaces with series, so those of deleted namespaces go.
    exported: Arc<Mutex<BTreeSet<String>>>,
}

impl Metrics {
    /// Registers the report's metrics.
    ///
    /// # Panics
    /// Never: constant names, registered once into the server's registry.
    #[must_use]
    #[allow(clippy::missing_panics_doc)]
    pub fn new(registry: &Registry) -> Self {
        let pods = register(
            registry,
            names::NAMESPACE_PODS,
            "Pods evaluated by the last readiness report, by namespace (exported by the replica holding the Lease only).",
            &["namespace"],
        );
        let violating = register(
            registry,
            names::NAMESPACE_PODS_VIOLATING,
            "Pods that would be denied at the level, by namespace, from the last readiness report (exported by the replica holding the Lease only).",
            &["namespace", "level"],
        );
        let last_run = register(
            registry,
            names::REPORT_LAST_RUN,
            "When the last readiness report finished (unix seconds); exported by the replica holding the Lease, once a report finished.",
            &[],
        );
        let duration = register(
            registry,
            names::REPORT_DURATION,
            "How long the last readiness report took; exported as the last run time is.",
            &[],
        );
        let errors = register(
            registry,
            names::REPORT_ERRORS,
            "Readiness reports this replica ran that failed (the previous one stays exported).",
            &[],
        );
        Self {
            pods,
            violating,
            last_run,
            duration,
            errors,
            exported: Arc::default(),
        }
    }

    /// Exports `report`, and removes the series of namespaces it no longer
    /// has (deleted, or now excluded or exempt).
    pub fn export(&self, report: &Report) {
        let Ok(mut exported) = self.exported.lock() else {
            return;
        };
        let mut now = BTreeSet::new();
        for ns in &report.namespaces {
            let name = ns.namespace.as_str();
            self.pods
                .with_label_values(&[name])
                .set(saturating(ns.pods));
            self.violating
                .with_label_values(&[name, "baseline"])
                .set(saturating(ns.baseline.violating));
            self.violating
                .with_label_values(&[name, "restricted"])
                .set(saturating(ns.restricted.violating));
            now.insert(ns.namespace.clone());
        }
        for gone in exported.difference(&now) {
            let _ = self.pods.remove_label_values(&[gone]);
            for level in ["baseline", "restricted"] {
                let _ = self.violating.remove_label_values(&[gone, level]);
            }
        }
        *exported = now;
        // Unix seconds of 2026 are far below 2^53: exact in an f64.
        #[allow(clippy::cast_precision_loss)]
        self.last_run
            .with_label_values(NO_LABELS)
            .set(report.finished_at.as_millisecond() as f64 / 1000.0);
        self.duration
            .with_label_values(NO_LABELS)
            .set(report.duration_seconds);
    }

    /// Removes every report series (the Lease went to another replica,
    /// which exports its own).
    pub fn clear(&self) {
        let Ok(mut exported) = self.exported.lock() else {
            return;
        };
        self.pods.reset();
        self.violating.reset();
        self.last_run.reset();
        self.duration.reset();
        exported.clear();
    }
}

/// The label values of a family without labels.
const NO_LABELS: &[&str] = &[];

fn saturating(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The latest report and how to ask for a new one; cheap to clone. The
/// default handle has no task behind it (no cluster).
#[derive(Clone, Default)]
pub struct Handle {
    latest: Arc<ArcSwapOption<Report>>,
    last_error: Arc<ArcSwapOption<String>>,
    trigger: Option<Arc<Notify>>,
    /// Whether this replica holds the Lease (none: always, as in tests).
    leading: Option<watch::Receiver<bool>>,
    /// When a run was last asked for (`POST /report/run`).
    last_request: Arc<Mutex<Option<Instant>>>,
}

/// Least time between two runs asked for with `POST /report/run`: a report
/// lists every pod of the cluster, so it is not to be had on every request.
pub const RUN_REQUEST_INTERVAL: Duration = Duration::from_secs(60);

/// The answer to a request for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunRequest {
    /// A run is queued (it coalesces with one already pending).
    Queued,
    /// A run was asked for less than [`RUN_REQUEST_INTERVAL`] ago; ask
    /// again after this long.
    TooSoon(Duration),
    /// No task runs (no cluster).
    NoTask,
    /// This replica does not hold the Lease: the report runs on the one
    /// that does.
    NotLeading,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("report::Handle")
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// A handle whose report is `report` and that runs nothing (tests, and
    /// a server shown a report it did not build).
    #[must_use]
    pub fn fixed(report: Report) -> Self {
        let handle = Self::default();
        handle.latest.store(Some(Arc::new(report)));
        handle
    }

    /// The latest report that completed.
    #[must_use]
    pub fn latest(&self) -> Option<Arc<Report>> {
        self.latest.load_full()
    }

    /// Why the last report failed, if it did.
    #[must_use]
    pub fn last_error(&self) -> Option<Arc<String>> {
        self.last_error.load_full()
    }

    /// Whether a task builds reports (only with a cluster).
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.trigger.is_some()
    }

    /// Whether this replica builds the reports: it runs the task and holds
    /// the Lease.
    #[must_use]
    pub fn is_leading(&self) -> bool {
        self.is_running() && self.leading.as_ref().is_none_or(|l| *l.borrow())
    }

    /// A handle with no task behind it whose run requests notify
    /// `trigger` (tests: the requests a task would have seen).
    #[must_use]
    pub fn with_trigger(trigger: Arc<Notify>) -> Self {
        Self {
            trigger: Some(trigger),
            ..Self::default()
        }
    }

    /// Asks for a report now: at most one request per
    /// [`RUN_REQUEST_INTERVAL`] is taken, and a request made while a run
    /// is pending coalesces with it.
    #[must_use]
    pub fn request_run(&self) -> RunRequest {
        self.request_run_at(Instant::now())
    }

    fn request_run_at(&self, now: Instant) -> RunRequest {
        let Some(trigger) = &self.trigger else {
            return RunRequest::NoTask;
        };
        if !self.is_leading() {
            return RunRequest::NotLeading;
        }
        let Ok(mut last) = self.last_request.lock() else {
            return RunRequest::TooSoon(RUN_REQUEST_INTERVAL);
        };
        if let Some(at) = *last {
            let since = now.saturating_duration_since(at);
            if let Some(left) = RUN_REQUEST_INTERVAL
                .checked_sub(since)
                .filter(|d| !d.is_zero())
            {
                return RunRequest::TooSoon(left);
            }
        }
        *last = Some(now);
        trigger.notify_one();
        RunRequest::Queued
    }
}

/// Settings of the task.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Time between the end of a report and the start of the next; zero
    /// builds reports only when asked.
    pub interval: Duration,
    /// Pods listed per API request.
    pub page_size: u32,
}

/// Starts the task: while `leading` says this replica holds the Lease, a
/// first report as soon as the namespace cache has synced, then one every
/// `settings.interval` and one per request; when the Lease goes, the
/// report's series and the latest report go with it.
pub fn spawn(
    client: kube::Client,
    namespaces: Namespaces,
    policy: Arc<ArcSwap<Snapshot>>,
    settings: Settings,
    metrics: Metrics,
    mut leading: watch::Receiver<bool>,
) -> Handle {
    let trigger = Arc::new(Notify::new());
    let handle = Handle {
        leading: Some(leading.clone()),
        ..Handle::with_trigger(Arc::clone(&trigger))
    };
    let task_handle = handle.clone();
    let pages = ApiPages::all(client, settings.page_size);
    tokio::spawn(
        async move {
            loop {
                if leading.wait_for(|l| *l).await.is_err() {
                    return;
                }
                info!("holding the Lease: this replica runs the readiness report");
                tokio::select! {
                    () = run_while_leading(&namespaces, &policy, &pages, settings, &metrics, &task_handle, &trigger) => {}
                    () = lost(&mut leading) => {
                        metrics.clear();
                        task_handle.latest.store(None);
                        task_handle.last_error.store(None);
                        info!("lost the Lease: the readiness report runs on the replica that holds it; this one's report series are removed");
                    }
                }
            }
        }
        .instrument(info_span!("readiness_report")),
    );
    handle
}

/// Waits until `leading` says the Lease is gone; forever once nothing can
/// change it any more (its last value stands).
async fn lost(leading: &mut watch::Receiver<bool>) {
    if leading.wait_for(|l| !*l).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Builds reports, every `settings.interval` and when `trigger` asks, until
/// dropped.
async fn run_while_leading(
    namespaces: &Namespaces,
    policy: &ArcSwap<Snapshot>,
    pages: &ApiPages,
    settings: Settings,
    metrics: &Metrics,
    task_handle: &Handle,
    trigger: &Notify,
) {
    // Wait for the namespace cache's first full list by looking at
    // it, not with `Store::wait_until_ready`: in kube-runtime 5.0 that
    // wakes only the last of several waiters, and /readyz already
    // waits on it. The reflector swaps the first list in whole, and
    // every cluster has a namespace, so non-empty means synced.
    while namespaces.all().is_empty() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    loop {
        let policy = policy.load_full();
        let builder = Builder::new(&policy, namespaces.all());
        match build(builder, pages).await {
            Ok(report) => {
                metrics.export(&report);
                info!(
                    namespaces = report.namespaces.len(),
                    pods = report.namespaces.iter().map(|n| n.pods).sum::<u64>(),
                    not_restricted_ready = report
                        .namespaces
                        .iter()
                        .filter(|n| n.restricted.violating > 0)
                        .count(),
                    seconds = report.duration_seconds,
                    "readiness report done"
                );
                task_handle.latest.store(Some(Arc::new(report)));
                task_handle.last_error.store(None);
            }
            Err(e) => {
                metrics.errors.inc();
                warn!(error = %e, "readiness report failed; the previous one stays exported");
                task_handle.last_error.store(Some(Arc::new(e.to_string())));
            }
        }
        if settings.interval.is_zero() {
            trigger.notified().await;
        } else {
            tokio::select! {
                () = tokio::time::sleep(settings.interval) => {}
                () = trigger.notified() => debug!("readiness report requested"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespaces::Labels;
    use crate::policy::Document;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::jiff::Timestamp;

    fn report(pods: &[(&str, &str)]) -> Report {
        let snapshot = Snapshot::new(Document::embedded());
        let mut builder = Builder::new(&snapshot, std::iter::empty::<(String, Labels)>());
        for (namespace, name) in pods {
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"containers": [{"name": "c", "image": "i"}]}
            }))
            .unwrap();
            builder.add(&pod);
        }
        builder.finish(
            Timestamp::from_second(1_800_000_000).unwrap(),
            Duration::from_millis(250),
        )
    }

    #[test]
    fn series_of_namespaces_that_are_gone_are_removed() {
        let registry = Registry::new();
        let metrics = Metrics::new(&registry);
        let text = || {
            let mut out = Vec::new();
            prometheus::Encoder::encode(
                &prometheus::TextEncoder::new(),
                &registry.gather(),
                &mut out,
            )
            .unwrap();
            String::from_utf8(out).unwrap()
        };
        // No report yet: no time of one (a 0 would read as 1970).
        assert!(
            !text().contains("unroot_readiness_report_last_run_timestamp_seconds "),
            "{}",
            text()
        );
        metrics.export(&report(&[("a", "1"), ("a", "2"), ("b", "1")]));
        let first = text();
        for line in [
            "unroot_namespace_pods{namespace=\"a\"} 2\n",
            "unroot_namespace_pods{namespace=\"b\"} 1\n",
            "unroot_namespace_pods_violating{level=\"restricted\",namespace=\"a\"} 2\n",
            "unroot_namespace_pods_violating{level=\"baseline\",namespace=\"a\"} 0\n",
            "unroot_readiness_report_last_run_timestamp_seconds 1800000000\n",
            "unroot_readiness_report_duration_seconds 0.25\n",
        ] {
            assert!(first.contains(line), "{line} not in\n{first}");
        }
        metrics.export(&report(&[("a", "1")]));
        let second = text();
        assert!(second.contains("unroot_namespace_pods{namespace=\"a\"} 1\n"));
        assert!(!second.contains("namespace=\"b\""), "{second}");
    }

    #[test]
    fn a_replica_that_loses_the_lease_exports_no_report_series() {
        let registry = Registry::new();
        let metrics = Metrics::new(&registry);
        metrics.export(&report(&[("a", "1")]));
        metrics.clear();
        let mut out = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        for name in [
            "unroot_namespace_pods{",
            "unroot_namespace_pods_violating{",
            "unroot_readiness_report_last_run_timestamp_seconds ",
            "unroot_readiness_report_duration_seconds ",
        ] {
            assert!(!text.contains(name), "{name} in\n{text}");
        }
        assert!(
            text.contains("unroot_readiness_report_errors_total 0\n"),
            "{text}"
        );
        // And exports again once it holds the Lease again.
        metrics.export(&report(&[("a", "1")]));
        assert_eq!(metrics.pods.with_label_values(&["a"]).get(), 1);
    }

    #[test]
    fn a_replica_without_the_lease_refuses_run_requests() {
        let (tx, rx) = watch::channel(false);
        let handle = Handle {
            leading: Some(rx),
            ..Handle::with_trigger(Arc::new(Notify::new()))
        };
        assert!(handle.is_running());
        assert!(!handle.is_leading());
        assert_eq!(handle.request_run(), RunRequest::NotLeading);
        tx.send_replace(true);
        assert!(handle.is_leading());
        assert_eq!(handle.request_run(), RunRequest::Queued);
    }

    #[test]
    fn a_handle_without_a_task_runs_nothing() {
        let handle = Handle::default();
        assert!(!handle.is_running());
        assert_eq!(handle.request_run(), RunRequest::NoTask);
        assert!(handle.latest().is_none());
    }

    #[test]
    fn at_most_one_run_request_a_minute_is_taken() {
        let handle = Handle::with_trigger(Arc::new(Notify::new()));
        let start = Instant::now();
        assert_eq!(handle.request_run_at(start), RunRequest::Queued);
        assert_eq!(
            handle.request_run_at(start + Duration::from_secs(20)),
            RunRequest::TooSoon(Duration::from_secs(40))
        );
        assert_eq!(
            handle.request_run_at(start + RUN_REQUEST_INTERVAL),
            RunRequest::Queued
        );
    }
}
