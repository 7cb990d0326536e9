//! Writing the Secret: a rotation at the version read, the last good
//! contents put back, a deleted Secret recreated; and the one line that
//! describes a write for the log, the Event and `unroot certs rotate`.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource as _;
use kube::api::PostParams;
use kube::runtime::events::{Event as KubeEvent, EventType};
use tracing::{error, info, warn};

use super::leader::Leader;
use super::{FIELD_MANAGER, ROTATE_ANNOTATION};
use crate::certs::metrics::{Cert, Failure};
use crate::certs::rotation::{self, Observed, Plan};
use crate::certs::secret::Contents;

impl Leader {
    /// Writes `contents` over `secret` (at the version read); returns when
    /// to look again if no new version arrives.
    pub(super) async fn write(
        &self,
        secret: &Secret,
        contents: &Contents,
        plan: Option<Plan>,
    ) -> SystemTime {
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
    pub(super) async fn recreate(&self) -> SystemTime {
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
    let until = |cert: Option<&crate::certs::inspect::Certificate>| {
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
