//! The webhooks' decisions offline, for `unroot review` and `unroot test`:
//! the pure functions `/mutate` and `/validate` call, fed with what the
//! command line gives instead of what the cluster would (the namespace's
//! labels, a policy file). No I/O: what a webhook would do against the API
//! server (write an identity ConfigMap, list a namespace's pods) is named
//! in a note instead.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

use crate::admission::namespace::{self, Step};
use crate::admission::validate::{self, NamespaceLabels};
use crate::admission::{self, Operation, Request, Response, Target};
use crate::namespaces::Labels;
use crate::policy::Snapshot;

/// The label the API server (1.21+) sets on every namespace to its name.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub use crate::server::handlers::Webhook;

/// The webhook the API server sends `request` to, as
/// webhook-config/{mutating,validating}.yaml register them, and why. When
/// both would see it (a pod CREATE, an ephemeral container added), or
/// neither, `/mutate`: it runs first.
#[must_use]
pub fn default_webhook(request: &Request<'_>) -> (Webhook, &'static str) {
    let op = request.operation;
    match (request.target(), op, request.sub_resource()) {
        (Target::Pod, Operation::Create, "") => (
            Webhook::Mutate,
            "a pod CREATE goes to both webhooks, /mutate first; give --webhook validate for the other",
        ),
        (Target::Pod, Operation::Update, "ephemeralcontainers") => (
            Webhook::Mutate,
            "an ephemeral container goes to both webhooks, /mutate first; give --webhook validate for the other",
        ),
        (Target::Pod | Target::Workload(_) | Target::Namespace | Target::ConfigMap, _, _) => {
            (Webhook::Validate, "only /validate sees this request")
        }
        (Target::Other, _, _) => (
            Webhook::Mutate,
            "neither webhook registers this resource; /mutate allows it",
        ),
    }
}

/// What a webhook answered, and what it would have done besides.
#[derive(Debug)]
pub struct Replayed {
    /// The answer, with the `policy-hash` audit annotation the server adds.
    pub response: Response,
    /// The identity ConfigMap `/mutate` would apply before answering.
    pub identity: Option<ConfigMap>,
    /// What the server would have done that offline replay does not.
    pub notes: Vec<String>,
}

/// The namespace's labels as the API server stores them: `given`, and the
/// [`NAME_LABEL`] the API server sets (1.21+) unless `given` has it.
#[must_use]
pub fn stored_labels(namespace: &str, given: &BTreeMap<String, String>) -> Labels {
    let mut labels = given.clone();
    if !namespace.is_empty() {
        labels
            .entry(NAME_LABEL.to_owned())
            .or_insert_with(|| namespace.to_owned());
    }
    labels
}

/// Refuses labels the namespace webhook would refuse (an invalid
/// `unroot.dev/` or Pod Security value): no namespace in a cluster has them.
pub fn check_labels(policy: &Snapshot, labels: &Labels) -> Result<(), String> {
    let (_, errors) = namespace::evaluate_labels(labels, policy.pod_security_defaults());
    if errors.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Err(format!(
        "{} (the namespace webhook refuses such labels)",
        shown.join("; ")
    ))
}

/// Decides `request` as `webhook` would. `labels` are the namespace's
/// labels; `None` decides as a server without a cluster does (the policy's
/// podSecurity defaults apply). An error is a request the server could only
/// decide with the API server's help.
pub fn replay(
    webhook: Webhook,
    request: &Request<'_>,
    policy: &Snapshot,
    labels: Option<&Labels>,
) -> Result<Replayed, String> {
    let mut notes = Vec::new();
    let mut identity = None;
    let decision = match webhook {
        Webhook::Mutate => {
            let none = Labels::new();
            let mutation = admission::mutate(request, policy, labels.unwrap_or(&none));
            identity = mutation
                .identity
                .filter(|_| mutation.decision.response.allowed);
            if let Some(cm) = &identity {
                notes.push(format!(
                    "the webhook would apply the identity ConfigMap {}/{} before answering (not written offline{})",
                    cm.metadata.namespace.as_deref().unwrap_or_default(),
                    cm.metadata.name.as_deref().unwrap_or_default(),
                    if request.is_dry_run() {
                        "; on this dry run, not by the webhook either"
                    } else {
                        ""
                    }
                ));
            }
            mutation.decision
        }
        Webhook::Validate => match request.target() {
            Target::ConfigMap => admission::validate_policy_configmap(request).into(),
            Target::Pod | Target::Workload(_) => match validate::before_lookup(request, policy) {
                Some(answer) => answer,
                None if validate::needs_pod(request) => {
                    return Err(format!(
                        "this pods/ephemeralcontainers review (Kubernetes 1.20/1.21) holds only the ephemeral containers: the webhook reads pod {:?} from the API server to judge it, which an offline replay cannot; replay a review from Kubernetes 1.22 or newer, which holds the whole pod",
                        request.name()
                    ));
                }
                None => {
                    let namespace = labels
                        .cloned()
                        .map_or(NamespaceLabels::Unknown, NamespaceLabels::Found);
                    validate::pod_security(request, policy, &namespace, None)
                }
            },
            Target::Namespace => match namespace::decide(request, policy) {
                Step::Done(decision) => decision,
                Step::DryRun(dry) => {
                    notes.push(format!(
                        "the webhook would list the pods of namespace {:?} and warn about those the new enforce level {} denies (not listed offline)",
                        dry.namespace, dry.enforce
                    ));
                    Response::allow(&request.uid).into()
                }
            },
            Target::Other => admission::serving_check::answer(request)
                .unwrap_or_else(|| Response::allow(&request.uid))
                .into(),
        },
    };
    let mut response = decision.response;
    response
        .audit_annotations
        .insert(crate::server::POLICY_HASH.to_owned(), policy.hash.clone());
    Ok(Replayed {
        response,
        identity,
        notes,
    })
}

/// The JSON Patch of a response, decoded.
pub fn patch_of(response: &Response) -> Result<Option<json_patch::Patch>, String> {
    use base64::Engine as _;
    let Some(encoded) = &response.patch else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("the response's patch is not base64: {e}"))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("the response's patch is not a JSON Patch: {e}"))
}

/// The group, version and plural resource of a kind the webhooks judge.
fn resource_of(kind: &str, api_version: &str) -> Option<(&'static str, &'static str)> {
    let (group, resource) = match kind {
        "Pod" => ("", "pods"),
        "PodTemplate" => ("", "podtemplates"),
        "ReplicationController" => ("", "replicationcontrollers"),
        "ReplicaSet" => ("apps", "replicasets"),
        "Deployment" => ("apps", "deployments"),
        "StatefulSet" => ("apps", "statefulsets"),
        "DaemonSet" => ("apps", "daemonsets"),
        "Job" => ("batch", "jobs"),
        "CronJob" => ("batch", "cronjobs"),
        _ => return None,
    };
    let object_group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    (object_group == group).then_some((group, resource))
}

/// The AdmissionReview the API server sends for the CREATE of `object` in
/// `namespace` by `username`: a Pod, or a workload with a pod template.
pub fn create_review(object: &Value, namespace: &str, username: &str) -> Result<Value, String> {
    let text = |field: &str| {
        object
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let (kind, api_version) = (text("kind"), text("apiVersion"));
    let (group, resource) = resource_of(kind, api_version).ok_or_else(|| {
        format!(
            "{api_version} {kind} is not a Pod or a workload with a pod template (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob, ReplicationController, PodTemplate)"
        )
    })?;
    let version = api_version.rsplit('/').next().unwrap_or_default();
    let name = object
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    // The API server stores the object in the request's namespace.
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("namespace".to_owned(), json!(namespace));
    }
    Ok(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-0000-0000-000000000000",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "name": name,
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": username},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_review_is_built_for_pods_and_workloads_only() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
        let review = create_review(&pod, "team", "alice").unwrap_or_default();
        assert_eq!(review["request"]["resource"]["resource"], "pods");
        assert_eq!(review["request"]["object"]["metadata"]["namespace"], "team");
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}});
        let review = create_review(&job, "team", "").unwrap_or_default();
        assert_eq!(review["request"]["resource"]["group"], "batch");
        let service = json!({"apiVersion": "v1", "kind": "Service"});
        assert!(
            create_review(&service, "team", "")
                .unwrap_err()
                .contains("not a Pod")
        );
        let wrong_group = json!({"apiVersion": "v1", "kind": "Deployment"});
        assert!(create_review(&wrong_group, "team", "").is_err());
    }

    #[test]
    fn stored_labels_carry_the_name_label() {
        let given = BTreeMap::from([("a".to_owned(), "b".to_owned())]);
        let labels = stored_labels("team", &given);
        assert_eq!(labels.get(NAME_LABEL).map(String::as_str), Some("team"));
        assert_eq!(labels.get("a").map(String::as_str), Some("b"));
    }
}
