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

//!
//! | module | owns |
//! |---|---|
//! | [`secret_watch`] | the Secret watch every replica runs, loading each version |
//! | [`leader`] | the Lease term: renewing it, and deciding rotations on each Secret version |
//! | [`secret_write`] | writing and recreating the Secret, and the line that describes a write |
//! | [`ca_bundle`] | the webhook configurations as read and applied: the caBundle's apply body |
//! | [`configurations`] | the configuration watches and what they have shown |
//! | [`keeper`] | the Lease holder's work on the configurations: caBundle, failing closed, owner |

mod ca_bundle;
mod configurations;
mod keeper;
mod leader;
mod secret_watch;
mod secret_write;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::watch;
use tracing::{Instrument as _, info_span};

use self::leader::Leader;
use super::metrics::Metrics;
use super::rotation::Policy;
use super::secret::Loader;
use super::{Error, Result};

pub use self::ca_bundle::{Kind, Webhooks, apply_body, apply_ca_bundle, read_webhooks};
pub use self::secret_write::describe;

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
/// The error names `flag` and says what to give.
pub fn object_reference(
    flag: &str,
    reference: Option<&str>,
    default_name: &str,
) -> Result<(String, String)> {
    let Some(reference) = reference else {
        return own_namespace()
            .map(|ns| (ns, default_name.to_owned()))
            .ok_or_else(|| {
                Error::Settings(format!(
                    "{flag}: cannot tell unroot's own namespace (set POD_NAMESPACE, or pass {flag} NAMESPACE/NAME)"
                ))
            });
    };
    reference
        .split_once('/')
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/'))
        .map(|(ns, n)| (ns.to_owned(), n.to_owned()))
        .ok_or_else(|| Error::Settings(format!("{flag} {reference:?}: expected NAMESPACE/NAME")))
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
        secret_watch::watch_secret(
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
