//! The Lease holder's work on the webhook configurations: the caBundle
//! kept equal to the Secret's CAs, the serving check and failing closed,
//! and the owner reference to unroot's Namespace.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use tokio::sync::watch;
use tracing::{info, warn};

use super::Confirmed;
use super::FIELD_MANAGER;
use super::ca_bundle::{Kind, apply_as, apply_body};
use super::configurations::{Configurations, Key, WatchEvent, watch_configuration};
use crate::certs::Error;
use crate::certs::fail_closed;
use crate::certs::metrics::{Failure, Metrics};

/// What the Lease holder knows of the Namespace that owns the
/// configurations.
enum Owner {
    /// Not read yet (or reading failed: tried again later).
    Unknown,
    /// Its uid.
    Known(String),
    /// The cluster refused the owner reference; not tried again this term.
    Refused,
}

/// The Lease holder's work on the webhook configurations: keep every
/// webhook's caBundle equal to the wanted bundle and report when all
/// configurations hold it, run the serving check and then keep the
/// fail-closed webhooks failing closed ([`fail_closed`]), and keep the
/// configurations owned by unroot's Namespace.
pub(super) struct Keeper {
    client: kube::Client,
    /// unroot's namespace: the Lease's and the owner's.
    namespace: String,
    lease: String,
    metrics: Metrics,
    recorder: Recorder,
    configs: Configurations,
    /// The configurations the manifests ship with the webhooks (`unroot`),
    /// each next to its [`fail_closed::twin_name`].
    originals: Vec<Key>,
    /// The twin configurations found missing (warned about once).
    missing_twins: BTreeSet<Key>,
    /// When to retry a failed caBundle or failing-closed write.
    retry_at: Option<tokio::time::Instant>,
    /// When this install first served (known: it fails closed).
    served: Option<String>,
    /// When the next serving check may run, and the wait after it fails.
    check_at: Option<tokio::time::Instant>,
    check_backoff: Duration,
    owner: Owner,
    owner_at: Option<tokio::time::Instant>,
}

/// The first wait after an unanswered serving check, and the longest.
const CHECK_BACKOFF: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(30));

impl Keeper {
    pub(super) fn new(
        client: kube::Client,
        namespace: String,
        lease: String,
        metrics: Metrics,
        recorder: Recorder,
    ) -> Self {
        Self {
            client,
            namespace,
            lease,
            metrics,
            recorder,
            configs: Configurations::default(),
            originals: Vec::new(),
            missing_twins: BTreeSet::new(),
            retry_at: None,
            served: None,
            check_at: None,
            check_backoff: CHECK_BACKOFF.0,
            owner: Owner::Unknown,
            owner_at: None,
        }
    }

    pub(super) async fn run(
        mut self,
        names: Vec<String>,
        mut bundle_rx: watch::Receiver<Option<String>>,
        confirmed_tx: watch::Sender<Option<Confirmed>>,
    ) {
        // Each configuration and the one its failing-closed copies go to.
        let keys: Vec<Key> = names
            .iter()
            .flat_map(|name| [name.clone(), fail_closed::twin_name(name)])
            .flat_map(|name| [(Kind::Mutating, name.clone()), (Kind::Validating, name)])
            .collect();
        self.originals = names
            .iter()
            .flat_map(|name| {
                [
                    (Kind::Mutating, name.clone()),
                    (Kind::Validating, name.clone()),
                ]
            })
            .collect();
        let streams: Vec<_> = keys
            .iter()
            .map(|(kind, name)| watch_configuration(&self.client, *kind, name))
            .collect();
        let total = streams.len();
        let mut events = futures::stream::select_all(streams);
        let originals = self.originals.clone();
        // The last bundle every configuration held.
        let mut injected: Option<String> = None;
        loop {
            let wake = [self.retry_at, self.check_at, self.owner_at]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                event = events.next() => {
                    let Some((key, change)) = event else { return };
                    self.configs.record(key, change);
                }
                r = bundle_rx.changed() => if r.is_err() { return },
                () = sleep_until(wake) => {}
            }
            let now = tokio::time::Instant::now();
            for at in [&mut self.retry_at, &mut self.check_at, &mut self.owner_at] {
                if at.is_some_and(|t| t <= now) {
                    *at = None;
                }
            }
            let Some(bundle) = bundle_rx.borrow().clone() else {
                continue;
            };
            // The caBundle goes to the originals; their failing-closed
            // copies follow them (fail_closed), so that one field manager
            // owns each copy whole.
            self.inject(&bundle, injected.as_deref(), &originals).await;
            if !self.configs.all_hold(&bundle, &originals) {
                continue;
            }
            injected = Some(bundle.clone());
            self.fail_closed().await;
            self.own().await;
            if !self.configs.all_hold(&bundle, &keys) {
                continue;
            }
            let already = confirmed_tx
                .borrow()
                .as_ref()
                .is_some_and(|c| c.bundle == bundle);
            if !already {
                info!(
                    configurations = total,
                    "every webhook configuration holds the caBundle"
                );
                confirmed_tx.send_replace(Some(Confirmed {
                    bundle,
                    at: SystemTime::now(),
                }));
            }
        }
    }

    /// Writes `bundle` to those of `keys` that lack it.
    async fn inject(&mut self, bundle: &str, injected: Option<&str>, keys: &[Key]) {
        // A configuration whose first list has not completed (or cannot be
        // watched) is not written yet; the others are.
        for ((kind, name), webhooks) in self.configs.lacking(bundle, keys) {
            if self.retry_at.is_some() {
                break;
            }
            // Someone else's bundle (not empty, not one unroot wrote) is
            // worth a warning; following the Secret is routine.
            let foreign = webhooks.0.iter().any(|(_, b)| {
                b.as_ref().is_some_and(|b| {
                    !b.is_empty() && injected.is_none_or(|i| i.as_bytes() != b.as_slice())
                })
            });
            let hooks: Vec<String> = webhooks.0.iter().map(|(n, _)| n.clone()).collect();
            let body = apply_body(kind, &name, &hooks, bundle);
            match apply_as(
                &self.client,
                kind,
                &name,
                &body,
                FIELD_MANAGER,
                "the caBundle",
            )
            .await
            {
                Ok(stored) => {
                    if foreign {
                        warn!(%kind, %name, webhooks = hooks.len(), "a caBundle that is not the Secret's CAs was found; restored");
                    } else {
                        info!(%kind, %name, webhooks = hooks.len(), "caBundle set to the Secret's CAs");
                    }
                    self.configs
                        .record((kind, name), WatchEvent::Object(Some(stored)));
                }
                Err(e) => {
                    self.metrics.failed(Failure::InjectCaBundle);
                    warn!(error = %e, "failed to inject the caBundle; retrying in 5 s");
                    self.retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(5));
                }
            }
        }
    }

    /// With every caBundle in place: runs the serving check until it is
    /// answered, then keeps the named webhooks failing closed.
    async fn fail_closed(&mut self) {
        // Every configuration deleted (the recovery command): what they
        // recorded goes with them, and a re-applied install fails open until
        // it has served again.
        if self.configs.all_absent(&self.originals) {
            if self.served.take().is_some() {
                info!(
                    "every webhook configuration is gone; re-applied ones fail open until a replica has served again"
                );
            }
            self.check_backoff = CHECK_BACKOFF.0;
            return;
        }
        if self.served.is_none() {
            self.served = self.configs.served(&self.originals);
        }
        if self.served.is_none() && self.check_at.is_none() {
            self.check_serving().await;
        }
        for original in self.originals.clone() {
            if self.retry_at.is_some() {
                break;
            }
            self.keep_pair(original).await;
        }
    }

    /// Brings one configuration and its twin to what failing closed wants:
    /// once served, a failing-closed copy of each webhook the annotation
    /// names in the twin, and the original turned off, the copy first; a
    /// webhook no longer named gets its original back, then loses its copy.
    async fn keep_pair(&mut self, (kind, name): Key) {
        let twin_key = (kind, fail_closed::twin_name(&name));
        let Some(original) = self
            .configs
            .get(&(kind, name.clone()))
            .map(|l| l.state.clone())
        else {
            return;
        };
        let want: Vec<String> = if self.served.is_some() {
            original.fail_closed.clone()
        } else {
            Vec::new()
        };
        // Give back the originals no longer wanted off (or whose copy is
        // gone), then write the copies, then turn off the ones whose copy is
        // in force.
        self.keep_originals(kind, &name, &want).await;
        let Some(twins) = self.configs.get(&twin_key).map(|l| l.state.clone()) else {
            if !want.is_empty() && self.missing_twins.insert(twin_key.clone()) {
                warn!(%kind, name = %twin_key.1, "this configuration is missing, so the webhooks cannot fail closed: apply the manifests again (it ships empty)");
            }
            return;
        };
        self.missing_twins.remove(&twin_key);
        let desired: Vec<serde_json::Value> = want
            .iter()
            .filter_map(|w| original.webhook(w).map(fail_closed::twin_of))
            .collect();
        let ours = |n: &str| original.webhook(n).is_some();
        let stale = twins.webhooks.iter().any(|t| {
            t["name"]
                .as_str()
                .is_some_and(|n| ours(n) && !want.iter().any(|w| w == n))
        });
        let behind = desired
            .iter()
            .any(|d| d["name"].as_str().and_then(|n| twins.webhook(n)) != Some(d));
        if (stale || behind) && self.retry_at.is_none() {
            let body = fail_closed::twins_body(kind, &twin_key.1, &desired);
            if self
                .write(
                    kind,
                    &twin_key.1,
                    &body,
                    fail_closed::FIELD_MANAGER,
                    "the failing-closed webhooks",
                )
                .await
            {
                info!(%kind, name = %twin_key.1, webhooks = ?want, "failing-closed copies in force");
            }
        }
        self.keep_originals(kind, &name, &want).await;
    }

    /// Turns off the originals in `want` whose failing-closed copy is in
    /// force, gives back the others, and records when this install served.
    async fn keep_originals(&mut self, kind: Kind, name: &str, want: &[String]) {
        if self.retry_at.is_some() {
            return;
        }
        let key = (kind, name.to_owned());
        let twin_key = (kind, fail_closed::twin_name(name));
        let (Some(original), twins) = (
            self.configs.get(&key).map(|l| l.state.clone()),
            self.configs.get(&twin_key).map(|l| l.state.clone()),
        ) else {
            return;
        };
        let in_force = |w: &str| {
            twins
                .as_ref()
                .and_then(|t| t.webhook(w))
                .is_some_and(|t| t["failurePolicy"] == "Fail")
        };
        let off: Vec<String> = want.iter().filter(|w| in_force(w)).cloned().collect();
        let differs = original.served.as_deref() != self.served.as_deref()
            || original.webhooks.iter().any(|w| {
                w["name"]
                    .as_str()
                    .is_some_and(|n| original.is_disabled(n) != off.iter().any(|o| o == n))
            });
        if !differs {
            return;
        }
        let body = fail_closed::originals_body(kind, name, &off, self.served.as_deref());
        if self
            .write(
                kind,
                name,
                &body,
                fail_closed::FIELD_MANAGER,
                "failing closed",
            )
            .await
        {
            info!(%kind, %name, off = ?off, served = self.served.as_deref().unwrap_or("not yet"), "failing-open originals turned off where their copy is in force");
        }
    }

    /// One server-side apply; records the stored configuration, or counts
    /// the failure and retries in 5 s.
    async fn write(
        &mut self,
        kind: Kind,
        name: &str,
        body: &serde_json::Value,
        manager: &str,
        what: &str,
    ) -> bool {
        match apply_as(&self.client, kind, name, body, manager, what).await {
            Ok(stored) => {
                self.configs
                    .record((kind, name.to_owned()), WatchEvent::Object(Some(stored)));
                true
            }
            Err(e) => {
                self.metrics.failed(Failure::FailClosed);
                warn!(error = %e, what, "failed to write a webhook configuration; retrying in 5 s");
                self.retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(5));
                false
            }
        }
    }

    /// One serving check; on an answer, this install has served.
    async fn check_serving(&mut self) {
        let lease = format!("{}/{}", self.namespace, self.lease);
        match fail_closed::check_serving(&self.client, &self.namespace, &self.lease).await {
            Ok(fail_closed::Check::Answered) => {
                let served = fail_closed::served_now();
                info!(%lease, %served, "a replica answered the serving check through the API server: the fail-closed webhooks fail closed from now on");
                let event = KubeEvent {
                    type_: EventType::Normal,
                    reason: "Served".to_owned(),
                    note: Some("a replica answered a review from the API server; the webhooks named in unroot.dev/fail-closed fail closed from now on".to_owned()),
                    action: "FailClosed".to_owned(),
                    secondary: None,
                };
                let reference = k8s_openapi::api::core::v1::ObjectReference {
                    api_version: Some("coordination.k8s.io/v1".to_owned()),
                    kind: Some("Lease".to_owned()),
                    name: Some(self.lease.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..Default::default()
                };
                if let Err(e) = self.recorder.publish(&event, &reference).await {
                    warn!(error = %e, "failed to record an Event on the Lease");
                }
                self.served = Some(served);
                self.check_backoff = CHECK_BACKOFF.0;
            }
            Ok(fail_closed::Check::Unanswered) => {
                info!(%lease, retry_in = ?self.check_backoff, "the serving check went unanswered (no replica reached through the API server yet); the webhooks stay fail-open");
                self.check_later();
            }
            Err(e) => {
                self.metrics.failed(Failure::FailClosed);
                warn!(error = %e, retry_in = ?self.check_backoff, "failed to run the serving check; the webhooks stay fail-open");
                self.check_later();
            }
        }
    }

    fn check_later(&mut self) {
        self.check_at = Some(tokio::time::Instant::now() + self.check_backoff);
        self.check_backoff = (self.check_backoff * 2).min(CHECK_BACKOFF.1);
    }

    /// Makes unroot's Namespace the owner of every configuration.
    async fn own(&mut self) {
        if self.owner_at.is_some() {
            return;
        }
        let uid = match &self.owner {
            Owner::Refused => return,
            Owner::Known(uid) => uid.clone(),
            Owner::Unknown => {
                match fail_closed::namespace_uid(&self.client, &self.namespace).await {
                    Ok(uid) => {
                        self.owner = Owner::Known(uid.clone());
                        uid
                    }
                    Err(e) => {
                        self.metrics.failed(Failure::FailClosed);
                        warn!(error = %e, "failed to read unroot's Namespace to own the webhook configurations; retrying in 30 s");
                        self.owner_at = Some(tokio::time::Instant::now() + Duration::from_secs(30));
                        return;
                    }
                }
            }
        };
        let unowned: Vec<Key> = self
            .configs
            .present()
            .filter(|(_, live)| !live.state.is_owned_by(&uid))
            .map(|(k, _)| k.clone())
            .collect();
        for (kind, name) in unowned {
            let body = fail_closed::owner_body(kind, &name, &self.namespace, &uid);
            match apply_as(
                &self.client,
                kind,
                &name,
                &body,
                fail_closed::OWNER_MANAGER,
                "the owner reference",
            )
            .await
            {
                Ok(stored) => {
                    info!(%kind, %name, namespace = %self.namespace, "owned by unroot's Namespace: deleting the namespace deletes it");
                    self.configs
                        .record((kind, name), WatchEvent::Object(Some(stored)));
                }
                Err(Error::Kube {
                    source: kube::Error::Api(status),
                    ..
                }) if status.is_forbidden() || status.code == 422 => {
                    self.metrics.failed(Failure::FailClosed);
                    warn!(%kind, %name, message = %status.message, "the cluster refused the owner reference (OwnerReferencesPermissionEnforcement?); delete the webhook configurations before the namespace when uninstalling");
                    self.owner = Owner::Refused;
                    return;
                }
                Err(e) => {
                    self.metrics.failed(Failure::FailClosed);
                    warn!(error = %e, "failed to write the owner reference; retrying in 30 s");
                    self.owner_at = Some(tokio::time::Instant::now() + Duration::from_secs(30));
                    return;
                }
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
