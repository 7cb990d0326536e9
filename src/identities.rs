//! The lifecycle of identity ConfigMaps (`unroot-identity-<user>`).
//!
//! `/mutate` writes a user's ConfigMap before it admits the pod, so the
//! ConfigMap exists before the pod does, and stays if a later admission step
//! denies the pod or the pod is deleted. A sweep collects them: a ConfigMap
//! unroot manages is deleted once no pod in its namespace mounts it and it
//! was last written more than a grace period ago (the annotation
//! [`APPLIED_AT`], refreshed at every write). The grace period covers the
//! time between the write and the pod's creation; a pod of the same user
//! admitted later writes the ConfigMap again. Deletes carry the
//! resourceVersion the sweep saw, so a ConfigMap written in between is kept.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use prometheus::{IntCounter, IntCounterVec, Registry};
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::metrics::{names, register};
use crate::namespaces::Namespaces;
use crate::policy::{Snapshot, selector_matches};

/// Annotation on identity ConfigMaps: when unroot last wrote it (RFC 3339).
pub const APPLIED_AT: &str = "unroot.dev/applied-at";
/// The label selector of the ConfigMaps unroot manages for identities.
pub const SELECTOR: &str = "app.kubernetes.io/managed-by=unroot,unroot.dev/user";

/// Pods listed per request while sweeping a namespace.
const PAGE: u32 = 500;

/// What the sweep decides about one ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collectable {
    /// The ConfigMap's name.
    pub name: String,
    /// The resourceVersion it was seen at (the delete's precondition).
    pub resource_version: Option<String>,
}

/// The ConfigMaps of one namespace that no pod mounts and that were written
/// more than `grace` before `now`. A ConfigMap without [`APPLIED_AT`] counts
/// from its creation; one with neither is kept.
#[must_use]
pub fn collectable(
    config_maps: &[ConfigMap],
    mounted: &BTreeSet<String>,
    now: Timestamp,
    grace: Duration,
) -> Vec<Collectable> {
    let Ok(grace) = jiff_span(grace) else {
        return Vec::new();
    };
    config_maps
        .iter()
        .filter_map(|cm| {
            let name = cm.metadata.name.clone()?;
            if mounted.contains(&name) {
                return None;
            }
            let written = cm
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(APPLIED_AT))
                .and_then(|t| t.parse::<Timestamp>().ok())
                .or_else(|| cm.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
            let expired = written.checked_add(grace).is_ok_and(|until| until < now);
            expired.then(|| Collectable {
                name,
                resource_version: cm.metadata.resource_version.clone(),
            })
        })
        .collect()
}

fn jiff_span(d: Duration) -> Result<k8s_openapi::jiff::SignedDuration, ()> {
    k8s_openapi::jiff::SignedDuration::try_from(d).map_err(|_| ())
}

/// The ConfigMap names a pod mounts as volumes.
pub fn mounted_config_maps(pod: &Pod, into: &mut BTreeSet<String>) {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    for volume in volumes {
        if let Some(cm) = &volume.config_map {
            into.insert(cm.name.clone());
        }
        for source in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            if let Some(cm) = &source.config_map {
                into.insert(cm.name.clone());
            }
        }
    }
}

/// Counters of the sweep.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// ConfigMaps deleted.
    pub collected: IntCounter,
    /// Failures, by step (`list_configmaps`, `list_pods`, `delete`).
    pub errors: IntCounterVec,
}

impl Metrics {
    /// Registers the sweep's metrics.
    ///
    /// # Panics
    /// Never: constant names, registered once into the server's registry.
    #[must_use]
    #[allow(clippy::missing_panics_doc)]
    pub fn new(registry: &Registry) -> Self {
        let collected = register(
            registry,
            names::IDENTITY_CONFIGMAPS_COLLECTED,
            "Identity ConfigMaps deleted because no pod mounts them any more.",
            &[],
        );
        let errors: IntCounterVec = register(
            registry,
            names::IDENTITY_SWEEP_ERRORS,
            "Failures while sweeping identity ConfigMaps, by step (list_configmaps, list_pods, delete); the sweep retries on its next run.",
            &["step"],
        );
        for step in ["list_configmaps", "list_pods", "delete"] {
            errors.with_label_values(&[step]);
        }
        Self { collected, errors }
    }
}

/// Settings of the sweep.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Time between sweeps.
    pub interval: Duration,
    /// How long after its last write an unmounted ConfigMap is kept.
    pub grace: Duration,
}

/// Starts the sweep: every `interval`, each namespace that the policy in
/// force selects for provisioning is swept.
pub fn spawn(
    client: kube::Client,
    namespaces: Namespaces,
    policy: Arc<ArcSwap<Snapshot>>,
    settings: Settings,
    metrics: Metrics,
) {
    tokio::spawn(
        async move {
            let mut tick = tokio::time::interval(settings.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let policy = policy.load_full();
                if !policy.provisioning.enabled {
                    continue;
                }
                for (namespace, labels) in namespaces.all() {
                    if selector_matches(&policy.provisioning.namespace_selector, &labels) {
                        sweep(&client, &namespace, settings.grace, &metrics).await;
                    }
                }
            }
        }
        .instrument(info_span!("identity_sweep")),
    );
}

/// Sweeps one namespace.
async fn sweep(client: &kube::Client, namespace: &str, grace: Duration, metrics: &Metrics) {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let listed = match config_maps
        .list(&ListParams::default().labels(SELECTOR))
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            metrics.errors.with_label_values(&["list_configmaps"]).inc();
            warn!(namespace, error = %e, "failed to list identity ConfigMaps (is the unroot-identity ClusterRole bound in this namespace?)");
            return;
        }
    };
    if listed.is_empty() {
        return;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut mounted = BTreeSet::new();
    let listed_pods = crate::cluster::list_all_pages(&pods, PAGE, |page| {
        for pod in &page {
            mounted_config_maps(pod, &mut mounted);
        }
    })
    .await;
    if let Err(e) = listed_pods {
        metrics.errors.with_label_values(&["list_pods"]).inc();
        warn!(namespace, error = %e, "failed to list pods; no identity ConfigMap is deleted");
        return;
    }
    for cm in collectable(&listed, &mounted, Timestamp::now(), grace) {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: cm.resource_version.clone(),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        match config_maps.delete(&cm.name, &params).await {
            Ok(_) => {
                metrics.collected.inc();
                info!(namespace, configmap = %cm.name, "identity ConfigMap deleted: no pod mounts it");
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                debug!(namespace, configmap = %cm.name, "identity ConfigMap changed or gone since the sweep saw it; kept");
            }
            Err(e) => {
                metrics.errors.with_label_values(&["delete"]).inc();
                warn!(namespace, configmap = %cm.name, error = %e, "failed to delete an identity ConfigMap");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use std::collections::BTreeMap;

    fn cm(name: &str, applied: Option<&str>, created: Option<&str>) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                resource_version: Some(format!("rv-{name}")),
                annotations: applied
                    .map(|t| BTreeMap::from([(APPLIED_AT.to_owned(), t.to_owned())])),
                creation_timestamp: created.map(|t| Time(t.parse().unwrap())),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    #[test]
    fn only_unmounted_configmaps_past_their_grace_are_collected() {
        let now: Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        let grace = Duration::from_secs(600);
        let maps = [
            cm(
                "unroot-identity-mounted",
                Some("2026-11-28T10:00:00Z"),
                None,
            ),
            cm("unroot-identity-old", Some("2026-11-28T11:49:59Z"), None),
            cm("unroot-identity-fresh", Some("2026-11-28T11:55:00Z"), None),
            cm(
                "unroot-identity-at-the-edge",
                Some("2026-11-28T11:50:00Z"),
                None,
            ),
            cm(
                "unroot-identity-created-old",
                None,
                Some("2026-11-27T00:00:00Z"),
            ),
            cm("unroot-identity-no-time", None, None),
            cm(
                "unroot-identity-bad-time",
                Some("yesterday"),
                Some("2026-11-28T11:59:00Z"),
            ),
        ];
        let mounted = BTreeSet::from(["unroot-identity-mounted".to_owned()]);
        let names: Vec<String> = collectable(&maps, &mounted, now, grace)
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            ["unroot-identity-old", "unroot-identity-created-old"]
        );
        let first = &collectable(&maps, &mounted, now, grace)[0];
        assert_eq!(
            first.resource_version.as_deref(),
            Some("rv-unroot-identity-old")
        );
    }

    #[test]
    fn mounts_are_found_in_volumes_and_projections() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {"containers": [], "volumes": [
            {"name": "a", "configMap": {"name": "unroot-identity-alice"}},
            {"name": "b", "projected": {"sources": [{"configMap": {"name": "unroot-identity-bob"}}]}},
            {"name": "c", "emptyDir": {}},
        ]}}))
        .unwrap();
        let mut mounted = BTreeSet::new();
        mounted_config_maps(&pod, &mut mounted);
        assert_eq!(
            mounted.into_iter().collect::<Vec<_>>(),
            ["unroot-identity-alice", "unroot-identity-bob"]
        );
    }
}
