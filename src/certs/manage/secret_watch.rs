//! The Secret watch every replica runs: each version of the Secret is loaded
//! into the resolver once, a refused one is reported as an Event, and the
//! Lease holder is told where the Secret stands.

use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::Resource as _;
use kube::api::Api;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::sync::watch;
use tracing::warn;

use super::SecretState;
use crate::certs::secret::{Contents, Loader};

pub(super) async fn watch_secret(
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
