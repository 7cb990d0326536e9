//! The Lease term of the rotating replica: taking and renewing the Lease,
//! and one rotation decision per Secret version (written by
//! [`super::secret_write`]) while the [`Keeper`] keeps the configurations.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::events::Recorder;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::keeper::Keeper;
use super::{Config, Confirmed, ROTATE_ANNOTATION, SecretState};
use crate::certs::lease::{Elector, LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD};
use crate::certs::metrics::{Failure, Metrics};
use crate::certs::rotation::{self, Decision, Observed, Plan};
use crate::certs::secret::{Contents, Loader};

/// How a leadership term ended.
pub(super) enum Ended {
    Lost,
    Stopped,
}

pub(super) struct Leader {
    pub(super) client: kube::Client,
    pub(super) secrets: Api<Secret>,
    pub(super) config: Config,
    pub(super) loader: Arc<Loader>,
    pub(super) metrics: Metrics,
    pub(super) recorder: Recorder,
    /// Whether this replica holds the Lease, for the readiness report.
    pub(super) leading: watch::Sender<bool>,
}

impl Leader {
    pub(super) async fn run(
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
        let keeper = Keeper::new(
            self.client.clone(),
            self.config.namespace.clone(),
            self.config.lease.clone(),
            self.metrics.clone(),
            self.recorder.clone(),
        );
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
}
