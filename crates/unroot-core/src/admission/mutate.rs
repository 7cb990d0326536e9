//! `/mutate`: pods are hardened on CREATE, and ephemeral containers when
//! they are added. Pure: the shell writes the identity ConfigMap.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::value::RawValue;

use super::{Decision, Facts, Operation, Request, Response, Target};
use crate::mutate::{self, Input};
use crate::policy::{Document, HardenMode};

/// Audit annotation on a pod not hardened because of its namespace's
/// `unroot.dev/harden`: `warn` or `off`.
pub const HARDEN: &str = "harden";
/// Audit annotation in `warn` mode: what `on` would have set, `; `-separated
/// (`set securityContext.runAsNonRoot=true on pod; ...`).
pub const HARDEN_WOULD: &str = "harden-would";

/// The answer to a `/mutate` request, and the side effect the shell must
/// carry out before sending an admitting answer.
#[derive(Debug)]
pub struct Mutation {
    /// The decision.
    pub decision: Decision,
    /// The identity ConfigMap to server-side-apply (namespace set), when the
    /// pod is provisioned. Skipped on dry-run; if it cannot be applied the
    /// pod must be denied, since it would not start without it.
    pub identity: Option<ConfigMap>,
}

impl From<Response> for Mutation {
    fn from(response: Response) -> Self {
        Self {
            decision: response.into(),
            identity: None,
        }
    }
}

/// Answers a `/mutate` request. `namespace_labels` are the labels of the
/// request's namespace.
#[must_use]
pub fn mutate(
    request: &Request<'_>,
    policy: &Document,
    namespace_labels: &BTreeMap<String, String>,
) -> Mutation {
    let uid = &request.uid;
    if request.target() != Target::Pod || policy.is_excluded_namespace(request.namespace()) {
        return Response::allow(uid).into();
    }
    let input = Input {
        policy,
        namespace_labels,
        requester: &request.user_info.username,
    };
    let outcome = match (request.operation, request.sub_resource()) {
        (Operation::Create, "") => {
            let Some(raw) = request.object else {
                return Response::deny(uid, 400, "BadRequest", "pod CREATE request has no object")
                    .into();
            };
            mutate::Checked::text(raw.get()).and_then(|pod| mutate::pod(pod, &input))
        }
        (Operation::Update, "ephemeralcontainers") => {
            let Some(object) = request.object else {
                return Response::deny(
                    uid,
                    400,
                    "BadRequest",
                    "ephemeralcontainers UPDATE request has no object",
                )
                .into();
            };
            let old = request.old_object.map(RawValue::get);
            mutate::ephemeral_containers(object.get(), old, &input)
        }
        _ => return Response::allow(uid).into(),
    };
    match outcome {
        Ok(planned) => answer(request, planned),
        Err(e @ mutate::Error::Forbidden(_)) => {
            Response::deny(uid, 403, "Forbidden", e.to_string()).into()
        }
        Err(e @ (mutate::Error::Decode { .. } | mutate::Error::Template { .. })) => {
            Response::deny(uid, 400, "BadRequest", e.to_string()).into()
        }
    }
}

/// The answer to a pod the mutations planned for: the patch, the warnings,
/// the hardening mode's audit annotations and the identity ConfigMap.
fn answer(request: &Request<'_>, planned: mutate::Planned) -> Mutation {
    let mut response = Response::allow(&request.uid).with_written_patch(&planned.writer);
    annotate_harden(&mut response, planned.harden, &planned.warnings);
    response.warnings = planned.warnings;
    let identity = planned.identity.map(|mut cm| {
        // On CREATE the object often has no namespace yet; the
        // request always does.
        cm.metadata.namespace = Some(request.namespace().to_owned());
        cm
    });
    Mutation {
        decision: Decision {
            response,
            facts: Facts {
                mutations: planned.applied,
                harden: planned.harden,
                ..Facts::default()
            },
        },
        identity,
    }
}

/// The audit annotations of a namespace whose hardening is staged: `warn`
/// with what hardening would change, or `off`.
fn annotate_harden(response: &mut Response, mode: Option<HardenMode>, warnings: &[String]) {
    match mode {
        Some(HardenMode::Warn) => {
            response
                .audit_annotations
                .insert(HARDEN.to_owned(), HardenMode::Warn.to_string());
            let would: Vec<&str> = warnings
                .iter()
                .filter_map(|w| w.strip_prefix("would "))
                .collect();
            if !would.is_empty() {
                response
                    .audit_annotations
                    .insert(HARDEN_WOULD.to_owned(), would.join("; "));
            }
        }
        Some(HardenMode::Off) => {
            response
                .audit_annotations
                .insert(HARDEN.to_owned(), HardenMode::Off.to_string());
        }
        Some(HardenMode::On) | None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutate::Applied;
    use serde_json::json;

    fn request(text: &str) -> Request<'_> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn forged_identities_are_denied_with_403_and_honoured_ones_carry_the_configmap() {
        let policy = Document::from_yaml(include_str!(
            "../../../../tests/fixtures/provisioning/policy.yaml"
        ))
        .unwrap();
        let labels = BTreeMap::from([("unroot.dev/provisioning".to_owned(), "enabled".to_owned())]);
        let text = |username: &str| {
            json!({
                "uid": "u1", "operation": "CREATE", "namespace": "hub-users",
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "userInfo": {"username": username},
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {
                    "unroot.dev/user": "alice", "unroot.dev/uid": "1001", "unroot.dev/gid": "1001"}},
                    "spec": {"containers": [{"name": "c", "image": "x"}]}},
            })
            .to_string()
        };
        let alice = text("alice");
        let denied = mutate(&request(&alice), &policy, &labels);
        assert!(denied.identity.is_none());
        let status = denied.decision.response.status.unwrap();
        assert_eq!(
            (status.code, status.reason.as_str()),
            (Some(403), "Forbidden")
        );
        assert_eq!(
            status.message,
            "identity claim denied: requester \"alice\" is not in provisioning.trustedRequesters: only the platform's spawner may set unroot.dev/user, unroot.dev/uid, unroot.dev/gid"
        );
        let hub = text("system:serviceaccount:jupyterhub:hub");
        let admitted = mutate(&request(&hub), &policy, &labels);
        assert!(admitted.decision.response.allowed);
        assert!(admitted.decision.response.patch.is_some());
        assert_eq!(
            admitted.decision.facts.mutations,
            [Applied::Provisioning, Applied::SecurityContext]
        );
        let cm = admitted.identity.unwrap();
        assert_eq!(cm.metadata.namespace.as_deref(), Some("hub-users"));
    }

    #[test]
    fn an_undecodable_object_is_a_bad_request() {
        let text = json!({
            "uid": "u1", "operation": "CREATE", "namespace": "ns",
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "object": {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": "nope"}},
        })
        .to_string();
        let answer = mutate(&request(&text), &Document::embedded(), &BTreeMap::new());
        let status = answer.decision.response.status.unwrap();
        assert_eq!(status.code, Some(400));
        assert!(
            status.message.starts_with("failed to decode Pod"),
            "{}",
            status.message
        );
    }
}
