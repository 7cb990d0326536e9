//! `/validate`: Pod Security Admission semantics for pods and workload
//! templates (pod-security-admission `admission/admission.go`).
//!
//! Pure and synchronous. The async shell calls [`before_lookup`] first (the
//! steps that need no namespace), then gathers the namespace labels (and, for
//! a Kubernetes 1.20/1.21 ephemeral-containers request, the pod) and calls
//! [`evaluate`].

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Request, Response};
use crate::metrics::PodSecurityMetrics;
use crate::namespaces::Labels;
use crate::policy::Snapshot;
use crate::pss::namespace_policy;
use crate::pss::{self, Level, LevelVersion, Violation};
use crate::workload;

/// Audit annotation: the enforce level and version of a pod decision.
pub const ENFORCE_POLICY: &str = "enforce-policy";
/// Audit annotation: what the audit level would have denied.
pub const AUDIT_VIOLATIONS: &str = "audit-violations";
/// Audit annotation: why the request was exempt (`namespace`, `user`,
/// `runtimeClass`).
pub const EXEMPT: &str = "exempt";
/// Audit annotation: an error met while evaluating.
pub const ERROR: &str = "error";

/// Subresources that never change what a pod runs.
const IGNORED_SUBRESOURCES: [&str; 8] = [
    "exec",
    "attach",
    "binding",
    "eviction",
    "log",
    "portforward",
    "proxy",
    "status",
];

/// What a request is, for Pod Security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Pod,
    Workload,
}

fn target(request: &Request) -> Target {
    if request.is_pod() {
        Target::Pod
    } else {
        Target::Workload
    }
}

/// The metric labels of a request (§4.9): operation, resource, subresource.
fn labels(request: &Request) -> [String; 3] {
    let operation = match request.operation.as_str() {
        "CREATE" => "create".to_owned(),
        "UPDATE" => "update".to_owned(),
        other => other.to_lowercase(),
    };
    let resource = match target(request) {
        Target::Pod => "pod",
        Target::Workload => "controller",
    };
    [
        operation,
        resource.to_owned(),
        request.sub_resource().to_owned(),
    ]
}

/// The steps that need no namespace lookup: ignored subresources, excluded
/// and exempt namespaces, exempt users. `Some` is the final answer.
#[must_use]
pub fn before_lookup(
    request: &Request,
    policy: &Snapshot,
    metrics: &PodSecurityMetrics,
) -> Option<Response> {
    let uid = &request.uid;
    let sub = request.sub_resource();
    let workload = target(request) == Target::Workload;
    if (workload && !sub.is_empty()) || (!workload && IGNORED_SUBRESOURCES.contains(&sub)) {
        return Some(Response::allow(uid));
    }
    if policy.is_excluded_namespace(request.namespace()) {
        return Some(Response::allow(uid));
    }
    let exemptions = &policy.pod_security.exemptions;
    let exempt = if !request.namespace().is_empty()
        && exemptions
            .namespaces
            .iter()
            .any(|n| n == request.namespace())
    {
        Some("namespace")
    } else if !request.user_info.username.is_empty()
        && exemptions.usernames.contains(&request.user_info.username)
    {
        Some("user")
    } else {
        None
    };
    exempt.map(|why| exempt_response(request, why, metrics))
}

fn exempt_response(request: &Request, why: &str, metrics: &PodSecurityMetrics) -> Response {
    let [op, resource, sub] = labels(request);
    metrics
        .exemptions
        .with_label_values(&[&op, &resource, &sub])
        .inc();
    let mut response = Response::allow(&request.uid);
    response
        .audit_annotations
        .insert(EXEMPT.to_owned(), why.to_owned());
    response
}

/// The namespace's labels as the shell learned them.
#[derive(Debug, Clone)]
pub enum NamespaceLabels {
    /// Read from the cache or the API server.
    Found(Labels),
    /// No cluster to ask: the policy defaults apply.
    Unknown,
    /// The lookup failed: pods are denied (fail closed), workloads annotated.
    Failed(String),
}

/// Evaluates a request that [`before_lookup`] did not answer. `pod_override`
/// is the whole pod for a 1.20/1.21 `pods/ephemeralcontainers` request, whose
/// object is an `EphemeralContainers` list (the shell reads the pod and puts
/// the new list into it).
#[must_use]
pub fn evaluate(
    request: &Request,
    policy: &Snapshot,
    namespace: &NamespaceLabels,
    pod_override: Option<Pod>,
    skip_init: impl Fn(&Pod) -> Option<usize>,
    metrics: &PodSecurityMetrics,
) -> Response {
    let uid = &request.uid;
    let [op, resource, sub] = labels(request);
    let fatal = |response: &mut Response, message: String| {
        metrics
            .errors
            .with_label_values(&["true", &op, &resource, &sub])
            .inc();
        response.audit_annotations.insert(ERROR.to_owned(), message);
    };
    let target = target(request);
    let labels = match namespace {
        NamespaceLabels::Found(labels) => Some(labels),
        NamespaceLabels::Unknown => None,
        NamespaceLabels::Failed(err) => {
            let message = format!("failed to lookup namespace {:?}", request.namespace());
            let mut response = match target {
                Target::Pod => Response::deny(
                    uid,
                    500,
                    "InternalError",
                    format!("Internal error occurred: {message}"),
                ),
                Target::Workload => Response::allow(uid),
            };
            fatal(&mut response, format!("{message}: {err}"));
            return response;
        }
    };
    let (ns_policy, label_errors) =
        namespace_policy::policy_from_labels(labels, policy.pod_security_defaults);
    if label_errors.is_empty()
        && let Some(answer) = privileged_short_cut(request, ns_policy, metrics)
    {
        return answer;
    }

    // Decode what is to be evaluated.
    let subject = match target {
        Target::Pod => decode_pod(request, pod_override, skip_init),
        Target::Workload => decode_template(request),
    };
    let evaluation = match subject {
        Ok(Subject::Evaluate(e)) => e,
        Ok(Subject::Allow) => return Response::allow(uid),
        Err((message, detail)) => {
            let mut response = match target {
                Target::Pod => Response::deny(uid, 400, "BadRequest", message.clone()),
                Target::Workload => Response::allow(uid),
            };
            let annotation = match detail {
                Some(d) => format!("{message}: {d}"),
                None => message,
            };
            fatal(&mut response, annotation);
            return response;
        }
    };

    // §4.7 common evaluation.
    if let Some(class) = evaluation
        .spec
        .runtime_class_name
        .as_deref()
        .filter(|c| !c.is_empty())
        && policy
            .pod_security
            .exemptions
            .runtime_class_names
            .iter()
            .any(|r| r == class)
    {
        return exempt_response(request, "runtimeClass", metrics);
    }
    evaluate_modes(request, &evaluation, ns_policy, &label_errors, metrics)
}

/// A namespace with nothing to evaluate: fully privileged for pods, warn and
/// audit privileged for workloads (whose enforce level does not matter).
fn privileged_short_cut(
    request: &Request,
    ns_policy: namespace_policy::Policy,
    metrics: &PodSecurityMetrics,
) -> Option<Response> {
    match target(request) {
        Target::Pod if ns_policy.is_fully_privileged() => {
            let [op, resource, sub] = labels(request);
            metrics
                .evaluations
                .with_label_values(&[
                    "allow",
                    "privileged",
                    "latest",
                    "enforce",
                    &op,
                    &resource,
                    &sub,
                ])
                .inc();
            let mut response = Response::allow(&request.uid);
            response
                .audit_annotations
                .insert(ENFORCE_POLICY.to_owned(), "privileged:latest".to_owned());
            Some(response)
        }
        Target::Workload
            if ns_policy.warn.level == Level::Privileged
                && ns_policy.audit.level == Level::Privileged =>
        {
            Some(Response::allow(&request.uid))
        }
        _ => None,
    }
}

/// Enforce (pods only), audit, warn; results are reused between modes of
/// the same level and version.
fn evaluate_modes(
    request: &Request,
    subject: &Evaluation,
    ns_policy: namespace_policy::Policy,
    label_errors: &[namespace_policy::LabelError],
    metrics: &PodSecurityMetrics,
) -> Response {
    let [op, resource, sub] = labels(request);
    let target = target(request);
    let (meta, spec) = (&subject.meta, &subject.spec);
    let mut response = Response::allow(&request.uid);
    if !label_errors.is_empty() {
        metrics
            .errors
            .with_label_values(&["false", &op, &resource, &sub])
            .inc();
        response.audit_annotations.insert(
            ERROR.to_owned(),
            format!(
                "Failed to parse policy: {}",
                namespace_policy::aggregate_errors(label_errors)
            ),
        );
    }
    let mut cache: Vec<(LevelVersion, Vec<Violation>)> = Vec::with_capacity(3);
    let mut run = |lv: LevelVersion| -> Vec<Violation> {
        if let Some((_, v)) = cache.iter().find(|(l, _)| *l == lv) {
            return v.clone();
        }
        let v = pss::evaluate_excluding_init(meta, spec, lv, subject.skip);
        cache.push((lv, v.clone()));
        v
    };
    let record = |decision: &str, lv: LevelVersion, mode: &str| {
        metrics
            .evaluations
            .with_label_values(&[
                decision,
                lv.level.as_str(),
                &metric_version(lv),
                mode,
                &op,
                &resource,
                &sub,
            ])
            .inc();
    };
    if target == Target::Pod {
        let enforce = ns_policy.enforce;
        response
            .audit_annotations
            .insert(ENFORCE_POLICY.to_owned(), enforce.to_string());
        let violations = run(enforce);
        if violations.is_empty() {
            record("allow", enforce, "enforce");
        } else {
            record("deny", enforce, "enforce");
            let annotations = std::mem::take(&mut response.audit_annotations);
            response = forbidden(request, enforce, &violations);
            response.audit_annotations = annotations;
        }
    }
    let audit = ns_policy.audit;
    let violations = run(audit);
    if !violations.is_empty() {
        record("deny", audit, "audit");
        response.audit_annotations.insert(
            AUDIT_VIOLATIONS.to_owned(),
            pss::violation_message(audit, &violations),
        );
    }
    if response.allowed {
        let warn = ns_policy.warn;
        let violations = run(warn);
        if !violations.is_empty() {
            record("deny", warn, "warn");
            response
                .warnings
                .push(pss::violation_message(warn, &violations));
        }
    }
    response
}

/// The 403 of an enforce violation (§3.2).
fn forbidden(request: &Request, lv: LevelVersion, violations: &[Violation]) -> Response {
    let name = pod_name(request);
    let mut response = Response::deny(
        &request.uid,
        403,
        "Forbidden",
        pss::deny_message(&name, lv, violations),
    );
    if let Some(status) = response.status.as_mut() {
        status.details = Some(json!({"name": name, "kind": "pods"}));
    }
    response
}

fn pod_name(request: &Request) -> String {
    request.name().to_owned()
}

/// `latest` for latest or privileged, `v1.N` up to the newest known, else
/// `future` — a bounded label set.
fn metric_version(lv: LevelVersion) -> String {
    if lv.level == Level::Privileged || lv.version == pss::Version::Latest {
        "latest".to_owned()
    } else if lv.version > pss::max_version() {
        "future".to_owned()
    } else {
        lv.version.to_string()
    }
}

enum Subject {
    Evaluate(Box<Evaluation>),
    Allow,
}

/// What to evaluate: the pod's or template's metadata and spec.
struct Evaluation {
    meta: ObjectMeta,
    spec: PodSpec,
    /// The init container exempt by provenance, if any.
    skip: Option<usize>,
}

type DecodeFailure = (String, Option<String>);

/// Decodes a Pod with upstream's messages: `failed to decode {old }object`
/// (with the error) when it does not decode, `failed to decode {old }pod`
/// when it is another kind.
fn decode_pod_value(value: Option<&Value>, old: &str) -> Result<Pod, DecodeFailure> {
    let Some(value) = value else {
        return Err((
            format!("failed to decode {old}object"),
            Some("no object in the request".to_owned()),
        ));
    };
    let found = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !found.is_empty() && found != "Pod" {
        return Err((format!("failed to decode {old}pod"), None));
    }
    Pod::deserialize(value)
        .map_err(|e| (format!("failed to decode {old}object"), Some(e.to_string())))
}

fn decode_pod(
    request: &Request,
    pod_override: Option<Pod>,
    skip_init: impl Fn(&Pod) -> Option<usize>,
) -> Result<Subject, DecodeFailure> {
    let pod: Pod = match pod_override {
        Some(pod) => pod,
        None => decode_pod_value(request.object.as_ref(), "")?,
    };
    if request.operation == "UPDATE" {
        let old: Pod = match request.old_object.as_ref() {
            // A 1.20/1.21 ephemeralcontainers request: the old object is an
            // EphemeralContainers list, and adding one is always significant.
            Some(old) if old.get("kind").and_then(Value::as_str) == Some("EphemeralContainers") => {
                Pod::default()
            }
            old => decode_pod_value(old, "old ")?,
        };
        if request.sub_resource().is_empty()
            && !namespace_policy::is_significant_pod_update(&old, &pod)
        {
            return Ok(Subject::Allow);
        }
    }
    let skip = skip_init(&pod);
    Ok(Subject::Evaluate(Box::new(Evaluation {
        meta: pod.metadata,
        spec: pod.spec.unwrap_or_default(),
        skip,
    })))
}

fn decode_template(request: &Request) -> Result<Subject, DecodeFailure> {
    let Some(object) = request.object.as_ref() else {
        return Err((
            "failed to decode object".to_owned(),
            Some("no object in the request".to_owned()),
        ));
    };
    let kind = request.kind.kind.as_str();
    let Some(path) = workload::template_path(kind) else {
        let gvk = &request.kind;
        return Err((
            "failed to extract pod template".to_owned(),
            Some(format!(
                "unexpected object type: {}/{}, Kind={}",
                gvk.group, gvk.version, gvk.kind
            )),
        ));
    };
    let mut cursor = object;
    for key in path {
        match cursor.get(key) {
            Some(v) if !v.is_null() => cursor = v,
            _ => return Ok(Subject::Allow),
        }
    }
    let template = PodTemplateSpec::deserialize(cursor).map_err(|e| {
        (
            "failed to extract pod template".to_owned(),
            Some(e.to_string()),
        )
    })?;
    Ok(Subject::Evaluate(Box::new(Evaluation {
        meta: template.metadata.unwrap_or_default(),
        spec: template.spec.unwrap_or_default(),
        skip: None,
    })))
}

/// Puts the ephemeral containers of a 1.20/1.21 `EphemeralContainers` object
/// into `pod`. `None` when `object` is not such an object.
#[must_use]
pub fn merge_ephemeral_containers(mut pod: Pod, object: &Value) -> Option<Pod> {
    if object.get("kind").and_then(Value::as_str) != Some("EphemeralContainers") {
        return None;
    }
    let list = object
        .get("ephemeralContainers")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    let containers = Vec::deserialize(&list).ok()?;
    pod.spec
        .get_or_insert_with(PodSpec::default)
        .ephemeral_containers = Some(containers);
    Some(pod)
}

/// Whether `request` is a 1.20/1.21 ephemeral-containers request whose object
/// is not a whole pod (the shell must then read the pod).
#[must_use]
pub fn needs_pod(request: &Request) -> bool {
    request.is_pod()
        && request.sub_resource() == "ephemeralcontainers"
        && request
            .object
            .as_ref()
            .and_then(|o| o.get("kind"))
            .and_then(Value::as_str)
            == Some("EphemeralContainers")
}
