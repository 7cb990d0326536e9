//! The in-cluster certificate task (`unroot serve --manage-certs`).
//!
//! Every replica watches the Secret through the API server (not a volume
//! mount, so there is no kubelet sync delay) and loads each version with
//! [`Loader`]. The replica holding the Lease also:
//!
//! - decides and carries out rotations ([`rotation`]), writing the Secret
//!   with the `resourceVersion` it read, so a stale leader cannot overwrite
//!   a newer Secret;
//! - keeps `clientConfig.caBundle` of every webhook of the configured
//!   MutatingWebhookConfigurations and ValidatingWebhookConfigurations equal
//!   to the Secret's CAs, by server-side apply as field manager
//!   [`FIELD_MANAGER`] owning nothing else, and puts it back within seconds
//!   when someone overwrites it (the configurations are watched);
//! - restores a Secret that was deleted or broken by hand from the last good
//!   contents it holds in memory;
//! - once every configuration holds the caBundle, runs the serving check
//!   and makes the fail-closed webhooks fail closed, and makes unroot's
//!   Namespace the configurations' owner ([`fail_closed`]).
//!
//! Server-side apply is safe here because `webhooks` is a map list keyed by
//! `name` on every supported API server: Kubernetes 1.20 publishes it with
//! `x-kubernetes-patch-merge-key: name` / `x-kubernetes-patch-strategy:
//! merge` and no list type, which server-side apply reads as a map list (its
//! managed fields say `k:{"name":...}`). An apply naming only
//! `webhooks[name].clientConfig.caBundle` leaves every other field alone,
//! and one naming a webhook that does not exist is refused as invalid
//! instead of adding a half webhook; so only webhooks seen in the live
//! object are named.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource as _;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::json;
use tokio::sync::watch;
use tracing::{Instrument as _, error, info, info_span, warn};

use super::fail_closed;
use super::lease::{Elector, LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD};
use super::metrics::{Cert, Failure, Metrics};
use super::rotation::{self, Decision, Observed, Plan, Policy};
use super::secret::{Contents, Loader};
use super::{Error, Result};

/// The field manager that owns the webhook configurations' caBundle.
pub const FIELD_MANAGER: &str = "unroot-certs";
/// The Lease electing the rotating replica, next to the Secret.
pub const LEASE_NAME: &str = "unroot-certs";
/// The Secret's default name.
pub const DEFAULT_SECRET: &str = "unroot-tls";
/// The webhook configurations' default name.
pub const DEFAULT_WEBHOOK_CONFIGURATION: &str = "unroot";
/// Annotation on the Secret asking the replica holding the Lease to renew a
/// certificate now, due or not: `ca` or `serving` (`unroot certs rotate
/// --force` sets it). Removed with the write that carries the renewal out.
pub const ROTATE_ANNOTATION: &str = "unroot.dev/rotate";

/// What the task manages.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Secret's namespace (the Lease lives there too).
    pub namespace: String,
    /// The Secret's name.
    pub secret: String,
    /// The Lease's name.
    pub lease: String,
    /// This replica's identity in the Lease (the pod name).
    pub identity: String,
    /// Names of the Mutating- and ValidatingWebhookConfigurations whose
    /// webhooks get the caBundle.
    pub webhook_configurations: Vec<String>,
    /// Lifetimes, names and delays.
    pub policy: Policy,
}

/// The namespace unroot runs in: `POD_NAMESPACE`, else the service
/// account's namespace file (inside a pod).
#[must_use]
pub fn own_namespace() -> Option<String> {
    std::env::var("POD_NAMESPACE")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok()
        })
        .map(|ns| ns.trim().to_owned())
        .filter(|ns| !ns.is_empty())
}

/// This replica's identity in the Lease: `POD_NAME`, else the host name.
#[must_use]
pub fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("unroot-{}", std::process::id()))
}

/// Splits `NAMESPACE/NAME`; with no reference, `<own namespace>/default_name`.
pub fn object_reference(
    flag: &str,
    reference: Option<&str>,
    default_name: &str,
) -> std::result::Result<(String, String), String> {
    let Some(reference) = reference else {
        return own_namespace()
            .map(|ns| (ns, default_name.to_owned()))
            .ok_or_else(|| {
                format!(
                    "{flag}: cannot tell unroot's own namespace (set POD_NAMESPACE, or pass {flag} NAMESPACE/NAME)"
                )
            });
    };
    reference
        .split_once('/')
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/'))
        .map(|(ns, n)| (ns.to_owned(), n.to_owned()))
        .ok_or_else(|| format!("{flag} {reference:?}: expected NAMESPACE/NAME"))
}

/// The running task.
#[derive(Debug)]
pub struct Handle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    leading: watch::Receiver<bool>,
}

impl Handle {
    /// Whether this replica holds the Lease, as it changes (the readiness
    /// report runs on the holder only).
    #[must_use]
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Stops rotating and releases the Lease (waits at most 5 s).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Where the Secret stands, as the watch sees it.
#[derive(Clone, Debug)]
enum SecretState {
    /// The first list has not completed.
    Unknown,
    /// It does not exist.
    Absent,
    /// It exists.
    Present(Arc<Secret>),
}

/// A caBundle every webhook configuration was seen holding, and since when.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Confirmed {
    bundle: String,
    at: SystemTime,
}

/// Starts the Secret watch (every replica) and the Lease candidate (which
/// rotates and injects while it leads).
#[must_use]
pub fn start(
    client: kube::Client,
    config: Config,
    loader: Arc<Loader>,
    metrics: Metrics,
) -> Handle {
    let (secret_tx, secret_rx) = watch::channel(SecretState::Unknown);
    let (stop, stop_rx) = watch::channel(false);
    let (leading, leading_rx) = watch::channel(false);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "unroot".to_owned(),
            instance: Some(config.identity.clone()),
        },
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
    let source = format!("secret {}/{}", config.namespace, config.secret);
    tokio::spawn(
        watch_secret(
            secrets.clone(),
            config.secret.clone(),
            source.clone(),
            Arc::clone(&loader),
            recorder.clone(),
            secret_tx,
        )
        .instrument(info_span!("cert_secret_watch", %source)),
    );
    let rotator = Leader {
        client,
        secrets,
        config,
        loader,
        metrics,
        recorder,
        leading,
    };
    let task = tokio::spawn(
        async move { rotator.run(secret_rx, stop_rx).await }
            .instrument(info_span!("cert_rotation")),
    );
    Handle {
        stop,
        task,
        leading: leading_rx,
    }
}

async fn watch_secret(
    api: Api<Secret>,
    name: String,
    source: String,
    loader: Arc<Loader>,
    recorder: Recorder,
    tx: watch::Sender<SecretState>,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    let mut seen = false;
    let mut loaded_version = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(secret) | watcher::Event::InitApply(secret)) => {
                seen = true;
                // A re-list delivers the same version again: load (and
                // complain about) each version once.
                if loaded_version != secret.metadata.resource_version {
                    loaded_version.clone_from(&secret.metadata.resource_version);
                    let contents = Contents::from_data(secret.data.as_ref());
                    if let Err(problem) = loader.load(&source, &contents, SystemTime::now()) {
                        let event = KubeEvent {
                            type_: EventType::Warning,
                            reason: "InvalidCertificate".to_owned(),
                            note: Some(format!(
                                "the serving certificate was refused ({problem}); the last good one stays in use"
                            )),
                            action: "Load".to_owned(),
                            secondary: None,
                        };
                        if let Err(e) = recorder.publish(&event, &secret.object_ref(&())).await {
                            warn!(error = %e, "failed to record an Event on the Secret");
                        }
                    }
                }
                tx.send_replace(SecretState::Present(Arc::new(secret)));
            }
            Ok(watcher::Event::Delete(_)) => {
                warn!(%source, "the Secret was deleted; the certificate in use stays");
                loaded_version = None;
                tx.send_replace(SecretState::Absent);
            }
            Ok(watcher::Event::Init) => seen = false,
            Ok(watcher::Event::InitDone) => {
                if !seen {
                    warn!(%source, "the Secret does not exist; no certificate until it does");
                    tx.send_replace(SecretState::Absent);
                }
            }
            Err(e) => warn!(%source, error = %e, "Secret watch failed; retrying with backoff"),
        }
    }
}

/// How a leadership term ended.
enum Ended {
    Lost,
    Stopped,
}

struct Leader {
    client: kube::Client,
    secrets: Api<Secret>,
    config: Config,
    loader: Arc<Loader>,
    metrics: Metrics,
    recorder: Recorder,
    /// Whether this replica holds the Lease, for the readiness report.
    leading: watch::Sender<bool>,
}

impl Leader {
    async fn run(
        &self,
        secret_rx: watch::Receiver<SecretState>,
        mut stop_rx: watch::Receiver<bool>,
    ) {
        let leases = Api::namespaced(self.client.clone(), &self.config.namespace);
        let mut elector = Elector::new(
            leases,
            &self.config.lease,
            &self.config.identity,
            LEASE_DURATION,
        );
        let lease = format!("{}/{}", self.config.namespace, self.config.lease);
        let mut last_holder: Option<String> = None;
        while !*stop_rx.borrow() {
            match elector.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(%lease, identity = %self.config.identity, "holding the Lease: this replica rotates certificates");
                    last_holder = None;
                    self.leading.send_replace(true);
                    let ended = self
                        .lead(&mut elector, secret_rx.clone(), &mut stop_rx)
                        .await;
                    self.leading.send_replace(false);
                    if matches!(ended, Ended::Stopped) {
                        match elector.release().await {
                            Ok(()) => info!(%lease, "released the Lease"),
                            Err(e) => warn!(%lease, error = %e, "failed to release the Lease"),
                        }
                        return;
                    }
                    warn!(%lease, "lost the Lease: this replica stops rotating");
                }
                Ok(false) => {
                    let holder = elector.holder().map(str::to_owned);
                    if holder != last_holder {
                        info!(%lease, holder = holder.as_deref().unwrap_or("none"), "another replica holds the Lease");
                        last_holder = holder;
                    }
                }
                Err(e) => {
                    self.metrics.failed(Failure::Lease);
                    warn!(%lease, error = %e, "failed to take the Lease");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(RETRY_PERIOD) => {}
                _ = stop_rx.changed() => {}
            }
        }
    }

    async fn lead(
        &self,
        elector: &mut Elector,
        secret_rx: watch::Receiver<SecretState>,
        stop_rx: &mut watch::Receiver<bool>,
    ) -> Ended {
        let (bundle_tx, bundle_rx) = watch::channel(None::<String>);
        let (confirmed_tx, confirmed_rx) = watch::channel(None::<Confirmed>);
        let metrics = &self.metrics;
        let renew = async {
            let mut renewed = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(RETRY_PERIOD).await;
                match elector.try_acquire_or_renew().await {
                    Ok(true) => renewed = tokio::time::Instant::now(),
                    Ok(false) => return,
                    Err(e) => {
                        metrics.failed(Failure::Lease);
                        warn!(error = %e, "failed to renew the Lease");
                        if renewed.elapsed() > RENEW_DEADLINE {
                            return;
                        }
                    }
                }
            }
        };
        let keeper = Keeper {
            client: self.client.clone(),
            namespace: self.config.namespace.clone(),
            lease: self.config.lease.clone(),
            metrics: self.metrics.clone(),
            recorder: self.recorder.clone(),
            configs: Configurations::default(),
            originals: Vec::new(),
            missing_twins: BTreeSet::new(),
            retry_at: None,
            served: None,
            check_at: None,
            check_backoff: CHECK_BACKOFF.0,
            owner: Owner::Unknown,
            owner_at: None,
        };
        let inject = keeper.run(
            self.config.webhook_configurations.clone(),
            bundle_rx,
            confirmed_tx,
        );
        let rotate = self.rotate(secret_rx, bundle_tx, confirmed_rx);
        tokio::select! {
            () = renew => Ended::Lost,
            () = inject => Ended::Lost,
            () = rotate => Ended::Lost,
            _ = stop_rx.wait_for(|stop| *stop) => Ended::Stopped,
        }
    }

    async fn rotate(
        &self,
        mut secret_rx: watch::Receiver<SecretState>,
        bundle_tx: watch::Sender<Option<String>>,
        mut confirmed_rx: watch::Receiver<Option<Confirmed>>,
    ) {
        loop {
            let state = secret_rx.borrow_and_update().clone();
            let wake = match state {
                SecretState::Unknown => None,
                SecretState::Absent => Some(self.recreate().await),
                SecretState::Present(secret) => {
                    let confirmed = confirmed_rx.borrow_and_update().clone();
                    Some(self.step(&secret, &bundle_tx, confirmed).await)
                }
            };
            // Wake on a new Secret version, a newly confirmed caBundle, or
            // the time the decision asked for (at most 10 minutes, so a
            // clock jump is noticed).
            let delay = wake
                .map_or(Duration::from_secs(600), |at| {
                    at.duration_since(SystemTime::now()).unwrap_or_default()
                })
                .clamp(Duration::from_millis(50), Duration::from_secs(600));
            tokio::select! {
                r = secret_rx.changed() => if r.is_err() { return },
                r = confirmed_rx.changed() => if r.is_err() { return },
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One decision on the Secret as it is; returns when to look again.
    async fn step(
        &self,
        secret: &Secret,
        bundle_tx: &watch::Sender<Option<String>>,
        confirmed: Option<Confirmed>,
    ) -> SystemTime {
        let now = SystemTime::now();
        let policy = &self.config.policy;
        let contents = Contents::from_data(secret.data.as_ref());
        let parsed = contents.parse(now);
        if parsed.ca.is_err()
            && let Some(good) = self
                .loader
                .last_good()
                .filter(|good| *good != contents && good.parse(now).ca.is_ok())
        {
            warn!("the Secret lost its CA; restoring the last good contents this replica holds");
            return self.write(secret, &good, None).await;
        }
        let bundle = parsed.ca_bundle(now);
        // No CA yet: nothing to inject (an empty caBundle would make the API
        // server fall back to its system roots).
        bundle_tx.send_if_modified(|current| {
            let changed = !bundle.is_empty() && current.as_ref() != Some(&bundle);
            if changed {
                *current = Some(bundle.clone());
            }
            changed
        });
        let confirmed_at = confirmed.filter(|c| c.bundle == bundle).map(|c| c.at);
        let observed = Observed::from_parsed(&parsed, &policy.names);
        let asked = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ROTATE_ANNOTATION));
        let decision = match asked.map(String::as_str) {
            None => rotation::decide(&observed, policy, now, confirmed_at),
            Some(which @ ("ca" | "serving")) => {
                info!(
                    annotation = ROTATE_ANNOTATION,
                    which, "renewal asked for on the Secret"
                );
                Decision::Write(rotation::forced(&observed, which == "ca"))
            }
            Some(other) => {
                warn!(
                    annotation = ROTATE_ANNOTATION,
                    value = other,
                    "ignoring a renewal request that is neither \"ca\" nor \"serving\""
                );
                Decision::Write(Plan {
                    ca: None,
                    serving: None,
                    retire: rotation::Retire::Keep,
                })
            }
        };
        match decision {
            Decision::Idle { recheck_at } => recheck_at,
            Decision::AwaitBundle { recheck_at } => {
                recheck_at.unwrap_or(now + Duration::from_secs(600))
            }
            Decision::Write(plan) => {
                match rotation::execute(&contents, &parsed, &plan, policy, now) {
                    Ok(next) => self.write(secret, &next, Some(plan)).await,
                    Err(e) => {
                        self.metrics.failed(Failure::Issue);
                        error!(error = %e, "failed to issue a certificate");
                        now + Duration::from_secs(10)
                    }
                }
            }
        }
    }

    /// Writes `contents` over `secret` (at the version read); returns when
    /// to look again if no new version arrives.
    async fn write(&self, secret: &Secret, contents: &Contents, plan: Option<Plan>) -> SystemTime {
        let mut updated = secret.clone();
        updated.data = Some(contents.to_data());
        updated.string_data = None;
        updated.metadata.managed_fields = None;
        if let Some(annotations) = updated.metadata.annotations.as_mut() {
            annotations.remove(ROTATE_ANNOTATION);
        }
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let written = self
            .secrets
            .replace(&self.config.secret, &params, &updated)
            .await;
        self.after_write(written, contents, plan).await
    }

    /// The Secret is gone: create it from memory (or afresh) when RBAC
    /// allows.
    async fn recreate(&self) -> SystemTime {
        let now = SystemTime::now();
        let (contents, plan) = if let Some(good) = self.loader.last_good() {
            warn!("the Secret is gone; creating it from the last good contents this replica holds");
            (good, None)
        } else {
            let empty = Contents::default();
            let parsed = empty.parse(now);
            let plan = rotation::forced(
                &Observed::from_parsed(&parsed, &self.config.policy.names),
                true,
            );
            match rotation::execute(&empty, &parsed, &plan, &self.config.policy, now) {
                Ok(contents) => (contents, Some(plan)),
                Err(e) => {
                    self.metrics.failed(Failure::Issue);
                    error!(error = %e, "failed to issue a certificate");
                    return now + Duration::from_secs(10);
                }
            }
        };
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.config.secret.clone()),
                namespace: Some(self.config.namespace.clone()),
                labels: Some([("app.kubernetes.io/name".to_owned(), "unroot".to_owned())].into()),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(contents.to_data()),
            ..Secret::default()
        };
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let written = self.secrets.create(&params, &secret).await;
        if let Err(kube::Error::Api(status)) = &written
            && status.is_forbidden()
        {
            self.metrics.failed(Failure::ApplySecret);
            error!(
                secret = %format!("{}/{}", self.config.namespace, self.config.secret),
                "the Secret does not exist and unroot may not create it: create it empty (kubectl apply -k manifests/) and unroot fills it in"
            );
            return now + Duration::from_secs(30);
        }
        self.after_write(written, &contents, plan).await
    }

    async fn after_write(
        &self,
        written: kube::Result<Secret>,
        contents: &Contents,
        plan: Option<Plan>,
    ) -> SystemTime {
        let now = SystemTime::now();
        let secret = format!("{}/{}", self.config.namespace, self.config.secret);
        match written {
            Ok(stored) => {
                let note = describe(contents, plan.as_ref(), now);
                info!(%secret, version = stored.metadata.resource_version.as_deref().unwrap_or(""), "{note}");
                if let Some(plan) = plan {
                    if plan.ca.is_some() {
                        self.metrics.rotated(Cert::Ca);
                    }
                    if plan.serving.is_some() {
                        self.metrics.rotated(Cert::Serving);
                    }
                }
                let event = KubeEvent {
                    type_: EventType::Normal,
                    reason: "CertificateRotated".to_owned(),
                    note: Some(note),
                    action: "Rotate".to_owned(),
                    secondary: None,
                };
                if let Err(e) = self.recorder.publish(&event, &stored.object_ref(&())).await {
                    warn!(error = %e, "failed to record an Event on the Secret");
                }
                // The watch brings the new version; look again in any case.
                now + Duration::from_secs(10)
            }
            Err(kube::Error::Api(status)) if status.is_conflict() => {
                info!(%secret, "the Secret changed meanwhile; deciding again on the new version");
                now + Duration::from_secs(1)
            }
            Err(e) => {
                self.metrics.failed(Failure::ApplySecret);
                error!(%secret, error = %e, "failed to write the Secret");
                now + Duration::from_secs(5)
            }
        }
    }
}

/// One line on what a write did, for the log, the Event and `unroot certs
/// rotate`.
#[must_use]
pub fn describe(contents: &Contents, plan: Option<&Plan>, now: SystemTime) -> String {
    let parsed = contents.parse(now);
    let until = |cert: Option<&super::inspect::Certificate>| {
        cert.map(|c| humantime::format_rfc3339_seconds(c.not_after).to_string())
            .unwrap_or_default()
    };
    let Some(plan) = plan else {
        return "restored the Secret from memory".to_owned();
    };
    let mut parts = Vec::new();
    if let Some(reason) = plan.ca {
        parts.push(format!(
            "issued a new CA ({}), valid until {}",
            reason.describe(),
            until(parsed.ca_cert.as_ref())
        ));
    }
    if let Some(reason) = plan.serving {
        parts.push(format!(
            "issued a new serving certificate ({}), valid until {}",
            reason.describe(),
            until(parsed.leaf.as_ref().ok().map(|l| &l.cert))
        ));
    }
    match (plan.retire, parsed.previous.len()) {
        (rotation::Retire::Clear, _) if plan.ca.is_none() => {
            parts
                .push("retired the previous CA: the caBundle holds only the current CA".to_owned());
        }
        (rotation::Retire::SigningCa, n) if n > 0 => {
            parts.push("the caBundle holds the old and the new CA until a serving certificate from the new CA is out".to_owned());
        }
        _ => {}
    }
    if parts.is_empty() {
        return "nothing to renew".to_owned();
    }
    parts.join("; ")
}

/// Which kind of webhook configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// MutatingWebhookConfiguration.
    Mutating,
    /// ValidatingWebhookConfiguration.
    Validating,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mutating => "MutatingWebhookConfiguration",
            Self::Validating => "ValidatingWebhookConfiguration",
        })
    }
}

/// The webhooks of one configuration and their caBundles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Webhooks(pub Vec<(String, Option<Vec<u8>>)>);

impl Webhooks {
    fn of<'a>(webhooks: impl Iterator<Item = (&'a String, &'a WebhookClientConfig)>) -> Self {
        Self(
            webhooks
                .map(|(name, client)| (name.clone(), client.ca_bundle.clone().map(|b| b.0)))
                .collect(),
        )
    }

    /// Whether every webhook carries exactly `bundle`.
    #[must_use]
    pub fn hold(&self, bundle: &str) -> bool {
        self.0
            .iter()
            .all(|(_, b)| b.as_deref() == Some(bundle.as_bytes()))
    }
}

/// One webhook configuration as the task reads it: the caBundles, and what
/// failing closed reads.
#[derive(Debug, Clone, Default, PartialEq)]
struct Live {
    webhooks: Webhooks,
    state: fail_closed::State,
}

impl Live {
    fn of_mutating(config: &MutatingWebhookConfiguration) -> Self {
        let hooks = config.webhooks.iter().flatten();
        Self {
            webhooks: Webhooks::of(hooks.clone().map(|w| (&w.name, &w.client_config))),
            state: fail_closed::State::of(&config.metadata, hooks),
        }
    }

    fn of_validating(config: &ValidatingWebhookConfiguration) -> Self {
        let hooks = config.webhooks.iter().flatten();
        Self {
            webhooks: Webhooks::of(hooks.clone().map(|w| (&w.name, &w.client_config))),
            state: fail_closed::State::of(&config.metadata, hooks),
        }
    }
}

/// The server-side apply body that sets `caBundle` of `webhooks` (and
/// nothing else) in the configuration `kind`/`name`.
#[must_use]
pub fn apply_body(kind: Kind, name: &str, webhooks: &[String], bundle: &str) -> serde_json::Value {
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(bundle);
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind.to_string(),
        "metadata": {"name": name},
        "webhooks": webhooks
            .iter()
            .map(|w| json!({"name": w, "clientConfig": {"caBundle": ca_bundle}}))
            .collect::<Vec<_>>(),
    })
}

/// Server-side-applies `body` (`what` it sets, for the error) to the
/// configuration `kind`/`name` as field manager `manager`, forced: those
/// fields are unroot's. Returns the configuration as stored.
async fn apply_as(
    client: &kube::Client,
    kind: Kind,
    name: &str,
    body: &serde_json::Value,
    manager: &str,
    what: &str,
) -> Result<Live> {
    let params = PatchParams::apply(manager).force();
    let failed = |source| Error::Kube {
        action: format!("apply {what} to {kind} {name}"),
        source,
    };
    match kind {
        Kind::Mutating => Api::<MutatingWebhookConfiguration>::all(client.clone())
            .patch(name, &params, &Patch::Apply(body))
            .await
            .map(|c| Live::of_mutating(&c))
            .map_err(failed),
        Kind::Validating => Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .patch(name, &params, &Patch::Apply(body))
            .await
            .map(|c| Live::of_validating(&c))
            .map_err(failed),
    }
}

/// Writes `bundle` into every webhook of the configuration `kind`/`name`
/// (server-side apply, field manager [`FIELD_MANAGER`], forced: the
/// caBundle is unroot's); returns the webhooks as stored.
pub async fn apply_ca_bundle(
    client: &kube::Client,
    kind: Kind,
    name: &str,
    webhooks: &[String],
    bundle: &str,
) -> Result<Webhooks> {
    let body = apply_body(kind, name, webhooks, bundle);
    apply_as(client, kind, name, &body, FIELD_MANAGER, "the caBundle")
        .await
        .map(|live| live.webhooks)
}

/// Reads the configuration `kind`/`name` (`None`: it does not exist).
pub async fn read_webhooks(
    client: &kube::Client,
    kind: Kind,
    name: &str,
) -> Result<Option<Webhooks>> {
    let failed = |source| Error::Kube {
        action: format!("read {kind} {name}"),
        source,
    };
    let live = match kind {
        Kind::Mutating => Api::<MutatingWebhookConfiguration>::all(client.clone())
            .get_opt(name)
            .await
            .map(|c| c.as_ref().map(Live::of_mutating)),
        Kind::Validating => Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .get_opt(name)
            .await
            .map(|c| c.as_ref().map(Live::of_validating)),
    };
    live.map(|l| l.map(|l| l.webhooks)).map_err(failed)
}

/// A change seen by a configuration watch.
enum Seen {
    /// The configuration as it is now (`None`: deleted).
    Object(Option<Live>),
    /// A (re)list starts.
    Listing,
    /// A (re)list ended.
    Listed,
}

type Key = (Kind, String);

fn watch_configuration(
    client: &kube::Client,
    kind: Kind,
    name: &str,
) -> BoxStream<'static, (Key, Seen)> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let key = (kind, name.to_owned());
    match kind {
        Kind::Mutating => watch_one(client, config, key, Live::of_mutating),
        Kind::Validating => watch_one(client, config, key, Live::of_validating),
    }
}

/// One webhook configuration's changes, read into [`Live`].
fn watch_one<K>(
    client: &kube::Client,
    config: watcher::Config,
    key: Key,
    read: fn(&K) -> Live,
) -> BoxStream<'static, (Key, Seen)>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + fmt::Debug
        + Send
        + 'static,
{
    watcher(Api::<K>::all(client.clone()), config)
        .default_backoff()
        .filter_map(move |e| {
            let key = key.clone();
            async move { seen(e, read).map(|s| (key, s)) }
        })
        .boxed()
}

fn seen<K>(event: watcher::Result<watcher::Event<K>>, read: fn(&K) -> Live) -> Option<Seen> {
    match event {
        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
            Some(Seen::Object(Some(read(&o))))
        }
        Ok(watcher::Event::Delete(_)) => Some(Seen::Object(None)),
        Ok(watcher::Event::Init) => Some(Seen::Listing),
        Ok(watcher::Event::InitDone) => Some(Seen::Listed),
        Err(e) => {
            warn!(error = %e, "webhook configuration watch failed; retrying with backoff");
            None
        }
    }
}

/// One configuration, as its watch has shown it.
enum Shown {
    /// Its first list has not completed.
    Listing,
    /// It does not exist.
    Absent,
    /// It exists, like this.
    Present(Live),
}

/// What the configuration watches have shown.
#[derive(Default)]
struct Configurations {
    seen: BTreeMap<Key, Shown>,
    listing: BTreeSet<Key>,
}

impl Configurations {
    fn record(&mut self, key: Key, seen: Seen) {
        match seen {
            Seen::Listing => {
                self.listing.insert(key.clone());
                self.seen.entry(key).or_insert(Shown::Listing);
            }
            // Listed without an object: it does not exist.
            Seen::Listed => {
                if self.listing.remove(&key) {
                    self.seen.insert(key, Shown::Absent);
                }
            }
            Seen::Object(object) => {
                self.listing.remove(&key);
                self.seen
                    .insert(key, object.map_or(Shown::Absent, Shown::Present));
            }
        }
    }

    /// The configurations that exist.
    fn present(&self) -> impl Iterator<Item = (&Key, &Live)> {
        self.seen.iter().filter_map(|(k, v)| match v {
            Shown::Present(live) => Some((k, live)),
            _ => None,
        })
    }

    /// Those of `keys` that exist and do not hold `bundle`.
    fn lacking(&self, bundle: &str, keys: &[Key]) -> Vec<(Key, Webhooks)> {
        keys.iter()
            .filter_map(|k| self.get(k).map(|live| (k, live)))
            .filter(|(_, live)| !live.webhooks.hold(bundle))
            .map(|(k, live)| (k.clone(), live.webhooks.clone()))
            .collect()
    }

    /// Whether all of `keys` are known and hold `bundle` (or do not exist).
    fn all_hold(&self, bundle: &str, keys: &[Key]) -> bool {
        keys.iter().all(|k| match self.seen.get(k) {
            None | Some(Shown::Listing) => false,
            Some(Shown::Absent) => true,
            Some(Shown::Present(live)) => live.webhooks.hold(bundle),
        })
    }

    /// Whether every one of `keys` is known not to exist.
    fn all_absent(&self, keys: &[Key]) -> bool {
        keys.iter()
            .all(|k| matches!(self.seen.get(k), Some(Shown::Absent)))
    }

    /// The configuration `key`, when it exists.
    fn get(&self, key: &Key) -> Option<&Live> {
        match self.seen.get(key) {
            Some(Shown::Present(live)) => Some(live),
            _ => None,
        }
    }

    /// When this install first served, as one of `keys` records it.
    fn served(&self, keys: &[Key]) -> Option<String> {
        fail_closed::served_of(
            keys.iter()
                .filter_map(|k| self.get(k))
                .map(|live| &live.state),
        )
    }
}

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
struct Keeper {
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
    async fn run(
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
                    let Some((key, seen)) = event else { return };
                    self.configs.record(key, seen);
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
                        .record((kind, name), Seen::Object(Some(stored)));
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
                    .record((kind, name.to_owned()), Seen::Object(Some(stored)));
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
                        .record((kind, name), Seen::Object(Some(stored)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_body_names_only_the_ca_bundle_of_each_webhook() {
        let body = apply_body(
            Kind::Validating,
            "unroot",
            &["a.unroot.dev".to_owned(), "b.unroot.dev".to_owned()],
            "PEM",
        );
        assert_eq!(
            body,
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "unroot"},
                "webhooks": [
                    {"name": "a.unroot.dev", "clientConfig": {"caBundle": "UEVN"}},
                    {"name": "b.unroot.dev", "clientConfig": {"caBundle": "UEVN"}},
                ]
            })
        );
    }

    #[test]
    fn webhooks_hold_a_bundle_only_when_every_one_carries_it() {
        let hooks = |bundles: &[Option<&str>]| {
            Webhooks(
                bundles
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (format!("w{i}"), b.map(|b| b.as_bytes().to_vec())))
                    .collect(),
            )
        };
        assert!(hooks(&[Some("X"), Some("X")]).hold("X"));
        assert!(!hooks(&[Some("X"), None]).hold("X"));
        assert!(!hooks(&[Some("X"), Some("Y")]).hold("X"));
        assert!(hooks(&[]).hold("X"), "no webhooks: nothing to verify");
    }

    #[test]
    fn a_bundle_is_confirmed_only_when_every_configuration_is_known_and_holds_it() {
        let hooks = |b: &str| Live {
            webhooks: Webhooks(vec![("w".to_owned(), Some(b.as_bytes().to_vec()))]),
            state: fail_closed::State::default(),
        };
        let m = (Kind::Mutating, "unroot".to_owned());
        let v = (Kind::Validating, "unroot".to_owned());
        let both = [m.clone(), v.clone()];
        let mut c = Configurations::default();
        c.record(m.clone(), Seen::Listing);
        c.record(v.clone(), Seen::Listing);
        assert!(!c.all_hold("X", &both), "still listing");
        c.record(m.clone(), Seen::Object(Some(hooks("old"))));
        c.record(m.clone(), Seen::Listed);
        c.record(v.clone(), Seen::Listed);
        assert!(
            !c.all_hold("X", &both),
            "the mutating one holds another bundle"
        );
        assert_eq!(c.lacking("X", &both).len(), 1);
        c.record(m.clone(), Seen::Object(Some(hooks("X"))));
        assert!(c.all_hold("X", &both), "the validating one does not exist");
        assert!(c.lacking("X", &both).is_empty());
        c.record(v.clone(), Seen::Object(Some(hooks("Y"))));
        assert!(
            !c.all_hold("X", &both),
            "a new one appears with a foreign bundle"
        );
        c.record(m, Seen::Object(None));
        assert_eq!(c.lacking("X", &both).len(), 1);
        assert!(!c.all_absent(&both), "the validating one exists");
        c.record(v, Seen::Object(None));
        assert!(c.all_absent(&both), "both deleted: the recovery command");
        assert!(
            !c.all_absent(&[(Kind::Mutating, "unroot-fail-closed".to_owned())]),
            "one never seen is not known to be gone"
        );
    }
}
