//! Leader election on a `coordination.k8s.io/v1` Lease, the protocol of
//! client-go's `leaderelection` (kube 5.0 has none):
//!
//! - a candidate takes the Lease when it has no holder, or when its record
//!   has not changed for `leaseDurationSeconds` as measured on the
//!   candidate's own clock (so clock skew between replicas does not matter);
//! - the holder renews it every [`RETRY_PERIOD`] and steps down when it
//!   could not renew for [`RENEW_DEADLINE`];
//! - every write carries the `resourceVersion` it read, so of two candidates
//!   racing, the API server lets exactly one win (the other gets 409);
//! - on shutdown the holder releases it (no holder, 1 s duration), so the
//!   next replica takes over at once.
//!
//! The shipped manifests create the Lease with no holder (RBAC cannot grant
//! `create` for one name only); when it is missing and RBAC allows, it is
//! created.

use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

use super::{Error, Result};

/// How long a Lease holds without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long the holder keeps leading while renewals fail.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often candidates try and the holder renews.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// The parts of the Lease that say who holds it; any change means the
/// holder is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    duration_seconds: Option<i32>,
    acquire_time: Option<MicroTime>,
    renew_time: Option<MicroTime>,
    transitions: Option<i32>,
}

impl Record {
    fn of(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        Self {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            duration_seconds: spec.lease_duration_seconds,
            acquire_time: spec.acquire_time,
            renew_time: spec.renew_time,
            transitions: spec.lease_transitions,
        }
    }
}

/// One candidate for the Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    observed: Option<(Record, Instant)>,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

fn micro_time(time: SystemTime) -> Option<MicroTime> {
    k8s_openapi::jiff::Timestamp::try_from(time)
        .ok()
        .map(MicroTime)
}

fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX).max(1)
}

impl Elector {
    /// A candidate named `identity` for the Lease `name` (in `api`'s
    /// namespace), holding it for `duration` per renewal.
    #[must_use]
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            observed: None,
        }
    }

    /// This candidate's identity.
    #[must_use]
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Who held the Lease when last read (`None`: nobody).
    #[must_use]
    pub fn holder(&self) -> Option<&str> {
        self.observed
            .as_ref()
            .and_then(|(record, _)| record.holder.as_deref())
    }

    fn failed(&self, verb: &str, source: kube::Error) -> Error {
        Error::Kube {
            action: format!("{verb} Lease {}", self.name),
            source,
        }
    }

    /// Takes the Lease if it is free or expired, renews it if it is ours.
    /// `Ok(true)`: this candidate holds it now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let now = SystemTime::now();
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.failed("read", e))?
        else {
            return self.create(now).await;
        };
        let record = Record::of(&lease);
        let observed_at = match &self.observed {
            Some((seen, at)) if *seen == record => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((record.clone(), at));
                at
            }
        };
        let mine = record.holder.as_deref() == Some(self.identity.as_str());
        if record.holder.is_some() && !mine {
            let duration = record
                .duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.duration, Duration::from_secs);
            if observed_at.elapsed() < duration {
                return Ok(false);
            }
        }
        let mut spec = lease.spec.take().unwrap_or_default();
        if !mine {
            spec.acquire_time = micro_time(now);
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(seconds(self.duration));
        spec.renew_time = micro_time(now);
        lease.spec = Some(spec);
        // Let the server keep its own record of field owners.
        lease.metadata.managed_fields = None;
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                self.observed = Some((Record::of(&updated), Instant::now()));
                Ok(true)
            }
            // Another candidate wrote first: it holds the Lease.
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(false),
            Err(e) => Err(self.failed("update", e)),
        }
    }

    async fn create(&mut self, now: SystemTime) -> Result<bool> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some([("app.kubernetes.io/name".to_owned(), "unroot".to_owned())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(seconds(self.duration)),
                acquire_time: micro_time(now),
                renew_time: micro_time(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(created) => {
                self.observed = Some((Record::of(&created), Instant::now()));
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(false),
            Err(e) => Err(self.failed("create", e)),
        }
    }

    /// Gives the Lease up if this candidate holds it, so another replica
    /// takes over without waiting for it to expire.
    pub async fn release(&mut self) -> Result<()> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.failed("read", e))?
        else {
            return Ok(());
        };
        if Record::of(&lease).holder.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        let now = SystemTime::now();
        let mut spec = lease.spec.take().unwrap_or_default();
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = micro_time(now);
        spec.acquire_time = micro_time(now);
        lease.spec = Some(spec);
        lease.metadata.managed_fields = None;
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                self.observed = None;
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(()),
            Err(e) => Err(self.failed("release", e)),
        }
    }
}

/// Campaigns for the Lease with `elector` until `leading` has no receiver
/// left, saying in `leading` whether this replica holds it; steps down when
/// renewals failed for [`RENEW_DEADLINE`]. For work that runs once per
/// cluster (the readiness report) when certificates are not managed in the
/// cluster: with `--manage-certs` the certificate task campaigns on the same
/// Lease and says the same. Never releases the Lease: another replica takes
/// it over [`LEASE_DURATION`] after this one stopped renewing.
pub async fn campaign(mut elector: Elector, leading: tokio::sync::watch::Sender<bool>) {
    let mut renewed: Option<Instant> = None;
    while !leading.is_closed() {
        match elector.try_acquire_or_renew().await {
            Ok(held) => {
                renewed = held.then(Instant::now);
                leading.send_if_modified(|l| std::mem::replace(l, held) != held);
            }
            Err(e) => {
                tracing::warn!(lease = %elector.name, error = %e, "failed to take or renew the Lease");
                if renewed.is_none_or(|at| at.elapsed() > RENEW_DEADLINE) {
                    renewed = None;
                    leading.send_if_modified(|l| std::mem::replace(l, false));
                }
            }
        }
        tokio::time::sleep(RETRY_PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::BodyExt as _;
    use serde_json::{Value, json};

    use super::*;

    /// An API server holding one Lease, with resourceVersion checks; with
    /// `race` set, the next update loses to a write that lands first.
    #[derive(Default)]
    struct Fake {
        lease: Option<Value>,
        version: u64,
        race: bool,
    }

    fn status(code: u16, reason: &str) -> (u16, Value) {
        (
            code,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": reason}),
        )
    }

    impl Fake {
        fn handle(&mut self, method: &str, body: &[u8]) -> (u16, Value) {
            match method {
                "GET" => match &self.lease {
                    Some(l) => (200, l.clone()),
                    None => status(404, "NotFound"),
                },
                "POST" | "PUT" => {
                    let mut lease: Value = serde_json::from_slice(body).unwrap();
                    if method == "POST" && self.lease.is_some() {
                        return status(409, "AlreadyExists");
                    }
                    if method == "PUT" {
                        if std::mem::take(&mut self.race) {
                            self.version += 1;
                            self.lease.as_mut().unwrap()["metadata"]["resourceVersion"] =
                                json!(self.version.to_string());
                        }
                        let stored = &self.lease.as_ref().unwrap()["metadata"]["resourceVersion"];
                        if lease["metadata"]["resourceVersion"] != *stored {
                            return status(409, "Conflict");
                        }
                    }
                    self.version += 1;
                    lease["metadata"]["resourceVersion"] = json!(self.version.to_string());
                    self.lease = Some(lease.clone());
                    (if method == "POST" { 201 } else { 200 }, lease)
                }
                _ => status(405, "MethodNotAllowed"),
            }
        }
    }

    fn client(fake: &Arc<Mutex<Fake>>) -> kube::Client {
        let fake = Arc::clone(fake);
        let service = tower::service_fn(move |req: hyper::Request<kube::client::Body>| {
            let fake = Arc::clone(&fake);
            async move {
                let method = req.method().to_string();
                let body = req.into_body().collect().await?.to_bytes();
                let (code, value) = fake.lock().unwrap().handle(&method, &body);
                let response = hyper::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(hyper::body::Bytes::from(
                        serde_json::to_vec(&value).unwrap(),
                    )))
                    .unwrap();
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(response)
            }
        });
        kube::Client::new(service, "unroot")
    }

    fn elector(fake: &Arc<Mutex<Fake>>, who: &str, duration: Duration) -> Elector {
        Elector::new(
            Api::namespaced(client(fake), "unroot"),
            "unroot-certs",
            who,
            duration,
        )
    }

    fn holder(fake: &Arc<Mutex<Fake>>) -> Value {
        fake.lock().unwrap().lease.as_ref().unwrap()["spec"]["holderIdentity"].clone()
    }

    fn shipped_lease() -> Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "unroot-certs", "namespace": "unroot", "resourceVersion": "1"},
               "spec": {}})
    }

    #[tokio::test]
    async fn an_empty_lease_is_adopted_and_held_against_others() {
        let fake = Arc::new(Mutex::new(Fake {
            lease: Some(shipped_lease()),
            version: 1,
            race: false,
        }));
        let mut a = elector(&fake, "pod-a", Duration::from_secs(15));
        let mut b = elector(&fake, "pod-b", Duration::from_secs(15));
        assert!(
            a.try_acquire_or_renew().await.unwrap(),
            "no holder: taken at once"
        );
        assert_eq!(holder(&fake), "pod-a");
        assert!(!b.try_acquire_or_renew().await.unwrap(), "held and fresh");
        assert_eq!(b.holder(), Some("pod-a"));
        assert!(a.try_acquire_or_renew().await.unwrap(), "renewed");
        assert!(!b.try_acquire_or_renew().await.unwrap());
        let spec = fake.lock().unwrap().lease.as_ref().unwrap()["spec"].clone();
        assert_eq!(spec["leaseDurationSeconds"], 15);
        assert_eq!(spec["leaseTransitions"], 1);
        assert!(spec["renewTime"].is_string() && spec["acquireTime"].is_string());
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_a_released_one_at_once() {
        let fake = Arc::new(Mutex::new(Fake::default()));
        let mut a = elector(&fake, "pod-a", Duration::from_secs(1));
        let mut b = elector(&fake, "pod-b", Duration::from_secs(1));
        assert!(a.try_acquire_or_renew().await.unwrap(), "missing: created");
        assert_eq!(holder(&fake), "pod-a");
        assert!(!b.try_acquire_or_renew().await.unwrap());
        // pod-a stops renewing: after the lease duration on b's clock, b takes it.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(
            b.try_acquire_or_renew().await.unwrap(),
            "expired: taken over"
        );
        assert_eq!(holder(&fake), "pod-b");
        assert_eq!(
            fake.lock().unwrap().lease.as_ref().unwrap()["spec"]["leaseTransitions"],
            1
        );
        assert!(
            !a.try_acquire_or_renew().await.unwrap(),
            "a sees b's fresh record"
        );
        b.release().await.unwrap();
        assert!(holder(&fake).is_null(), "released: no holder");
        assert!(
            a.try_acquire_or_renew().await.unwrap(),
            "taken at once after a release"
        );
    }

    #[tokio::test]
    async fn of_two_candidates_racing_only_one_wins() {
        let fake = Arc::new(Mutex::new(Fake {
            lease: Some(shipped_lease()),
            version: 1,
            race: true,
        }));
        let mut b = elector(&fake, "pod-b", Duration::from_secs(15));
        assert!(
            !b.try_acquire_or_renew().await.unwrap(),
            "another write landed between read and update: 409, not leader"
        );
        assert!(holder(&fake).is_null());
    }
}
