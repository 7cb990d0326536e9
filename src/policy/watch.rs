//! Live reload: a policy file or ConfigMap is watched, a valid change is
//! swapped in atomically, and an invalid one never replaces the last good
//! policy.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Resource as _;
use kube::api::Api;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt as _, watcher};
use prometheus::{IntCounter, IntGaugeVec, Registry};

use crate::metrics::{self, names};
use tracing::{Instrument as _, error, info, info_span, warn};

use super::{Document, Error, Snapshot};
use crate::readiness::Readiness;

pub use super::{CONFIGMAP_KEY, CONFIGMAP_LABEL};
/// Readiness condition: a valid policy was loaded from the configured source.
pub const READY_CONDITION: &str = "policy";

/// Metrics of policy loading.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Reloads refused because the new policy was invalid or unreadable.
    pub reload_errors: IntCounter,
    /// `1` for the hash of the policy in force (one series).
    pub info: IntGaugeVec,
}

impl Metrics {
    /// Registers the policy metrics.
    #[must_use]
    pub fn new(registry: &Registry) -> Self {
        Self {
            reload_errors: metrics::register(
                registry,
                names::POLICY_RELOAD_ERRORS,
                "Policy changes refused (invalid or unreadable); the last good policy stays in force.",
                &[],
            ),
            info: metrics::register(
                registry,
                names::POLICY_INFO,
                "The policy in force, by content hash (always 1).",
                &["hash"],
            ),
        }
    }
}

/// Swaps policies in: the one place that decides whether a new text becomes
/// the policy in force.
#[derive(Clone, Debug)]
pub struct Reloader {
    current: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
    readiness: Arc<Readiness>,
}

impl Reloader {
    /// A reloader over the server's shared policy.
    #[must_use]
    pub fn new(
        current: Arc<ArcSwap<Snapshot>>,
        metrics: Metrics,
        readiness: Arc<Readiness>,
    ) -> Self {
        metrics.info.reset();
        metrics
            .info
            .with_label_values(&[&current.load().hash])
            .set(1);
        Self {
            current,
            metrics,
            readiness,
        }
    }

    /// Parses and validates `text` from `source`; when valid, makes it the
    /// policy in force (if it differs) and returns its hash. When invalid the
    /// last good policy stays, the error is logged and counted.
    pub fn apply(&self, source: &str, version: &str, text: &str) -> Result<String, Error> {
        match Document::from_yaml(text) {
            Ok(document) => {
                let snapshot = Snapshot::new(document);
                let hash = snapshot.hash.clone();
                let previous = self.current.load().hash.clone();
                if previous == hash {
                    info!(source, version, %hash, "policy unchanged");
                } else {
                    self.current.store(Arc::new(snapshot));
                    self.metrics.info.reset();
                    self.metrics.info.with_label_values(&[&hash]).set(1);
                    info!(source, version, %hash, %previous, "policy applied");
                }
                self.readiness.set(READY_CONDITION, true);
                Ok(hash)
            }
            Err(e) => {
                self.refuse(source, version, &e.to_string());
                Err(e)
            }
        }
    }

    /// Records a refused change (invalid or unreadable).
    pub fn refuse(&self, source: &str, version: &str, why: &str) {
        self.metrics.reload_errors.inc();
        let kept = self.current.load().hash.clone();
        error!(source, version, kept = %kept, errors = %why, "policy change refused; the last good policy stays in force");
    }

    /// The hash of the policy in force.
    #[must_use]
    pub fn current_hash(&self) -> String {
        self.current.load().hash.clone()
    }
}

/// Polls `path` every `interval` and applies its content when it changes.
/// Polling (rather than inotify) also follows the symlink swaps of a mounted
/// ConfigMap volume.
pub fn watch_file(path: PathBuf, interval: Duration, reloader: Reloader, initial: String) {
    let source = path.display().to_string();
    let span = info_span!("policy_watch", source = %source);
    tokio::spawn(
        async move {
            let mut last = Some(initial);
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match tokio::fs::read_to_string(&path).await {
                    Ok(text) if last.as_deref() != Some(text.as_str()) => {
                        let _ = reloader.apply(&source, "file", &text);
                        last = Some(text);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // Say so once per disappearance, not every tick.
                        if last.take().is_some() {
                            reloader.refuse(&source, "file", &format!("failed to read: {e}"));
                        }
                    }
                }
            }
        }
        .instrument(span),
    );
}

/// Watches the ConfigMap `namespace/name` and applies its `policy.yaml` on
/// every change; records a Kubernetes Event on the ConfigMap when a change
/// is refused.
pub fn watch_configmap(client: kube::Client, namespace: &str, name: &str, reloader: Reloader) {
    let source = format!("configmap {namespace}/{name}");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: "unroot".to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    tokio::spawn(
        async move {
            let stream = watcher(api, config).default_backoff();
            futures::pin_mut!(stream);
            let mut seen = false;
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) => {
                        seen = true;
                        apply_configmap(&reloader, &recorder, &source, &cm).await;
                    }
                    Ok(watcher::Event::Delete(_)) => {
                        seen = false;
                        warn!(%source, kept = %reloader.current_hash(), "policy ConfigMap deleted; the last good policy stays in force");
                    }
                    Ok(watcher::Event::Init) => seen = false,
                    Ok(watcher::Event::InitDone) => {
                        if !seen {
                            warn!(%source, kept = %reloader.current_hash(), "policy ConfigMap not found; keeping the policy in force until it exists");
                        }
                    }
                    Err(e) => warn!(%source, error = %e, "policy watch failed; retrying with backoff"),
                }
            }
        }
        .instrument(info_span!("policy_watch")),
    );
}

async fn apply_configmap(reloader: &Reloader, recorder: &Recorder, source: &str, cm: &ConfigMap) {
    let version = cm.metadata.resource_version.clone().unwrap_or_default();
    let outcome = if let Some(text) = cm.data.as_ref().and_then(|d| d.get(CONFIGMAP_KEY)) {
        reloader
            .apply(source, &version, text)
            .map_err(|e| e.to_string())
    } else {
        let why = format!("the ConfigMap has no {CONFIGMAP_KEY:?} key");
        reloader.refuse(source, &version, &why);
        Err(why)
    };
    let event = match &outcome {
        Ok(hash) => KubeEvent {
            type_: EventType::Normal,
            reason: "PolicyApplied".to_owned(),
            note: Some(format!("policy {hash} is in force")),
            action: "Reload".to_owned(),
            secondary: None,
        },
        Err(why) => KubeEvent {
            type_: EventType::Warning,
            reason: "InvalidPolicy".to_owned(),
            // Event notes are limited to 1 kB.
            note: Some(truncate(
                &format!(
                    "refused, policy {} stays in force: {why}",
                    reloader.current_hash()
                ),
                1000,
            )),
            action: "Reload".to_owned(),
            secondary: None,
        },
    };
    if let Err(e) = recorder.publish(&event, &cm.object_ref(&())).await {
        warn!(error = %e, "failed to record an Event on the policy ConfigMap");
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reloader() -> (Reloader, Arc<ArcSwap<Snapshot>>, Registry) {
        let registry = Registry::new();
        let current = Arc::new(ArcSwap::from_pointee(Snapshot::new(Document::embedded())));
        let readiness = Arc::new(Readiness::new(&[READY_CONDITION]));
        (
            Reloader::new(Arc::clone(&current), Metrics::new(&registry), readiness),
            current,
            registry,
        )
    }

    #[test]
    fn valid_change_is_swapped_in_and_invalid_one_is_refused() {
        let (r, current, _) = reloader();
        let before = current.load().hash.clone();
        let text = super::super::DEFAULT_YAML.replace("runAsUser: 65532", "runAsUser: 4000");
        let hash = r.apply("test", "1", &text).unwrap();
        assert_ne!(hash, before);
        assert_eq!(current.load().security_context.run_as_user, 4000);
        let bad = text.replace("runAsUser: 4000", "runAsUser: 0");
        assert!(r.apply("test", "2", &bad).is_err());
        assert_eq!(current.load().hash, hash, "the last good policy stays");
        assert_eq!(r.metrics.reload_errors.get(), 1);
        assert_eq!(r.metrics.info.with_label_values(&[&hash]).get(), 1);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("ééé", 3), "é…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
