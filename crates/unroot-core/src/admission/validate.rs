//! `/validate`: Pod Security Admission semantics for pods and workload
//! templates (pod-security-admission `admission/admission.go`).
//!
//! Pure and synchronous, and free of metrics: every answer comes with the
//! [`Facts`] the shell counts. The async shell calls [`before_lookup`] first
//! (the steps that need no namespace), then gathers the namespace labels
//! (and, for a Kubernetes 1.20/1.21 ephemeral-containers request, the pod)
//! and calls [`evaluate`].

use std::borrow::Cow;

use k8s_openapi::api::core::v1::{EphemeralContainer, Pod, PodSpec};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use std::collections::BTreeMap;

use super::{
    Decision, Facts, Mode, Operation, PssError, PssResult, Request, Response, Target, refusals,
};
use crate::mutate::{Identity, Vouched};
use crate::namespaces::Labels;
use crate::policy::{HardenMode, Snapshot};
use crate::pss::namespace_policy;
use crate::pss::{self, Level, LevelVersion, Violation};
use crate::view;

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

/// Whether the request is about a workload template rather than a pod.
fn is_workload(request: &Request<'_>) -> bool {
    request.target() != Target::Pod
}

/// The steps that need no namespace lookup: ignored subresources, excluded
/// and exempt namespaces, exempt users. `Some` is the final answer.
#[must_use]
pub fn before_lookup(request: &Request<'_>, policy: &Snapshot) -> Option<Decision> {
    let uid = &request.uid;
    let sub = request.sub_resource();
    let workload = is_workload(request);
    if (workload && !sub.is_empty()) || (!workload && IGNORED_SUBRESOURCES.contains(&sub)) {
        return Some(Response::allow(uid).into());
    }
    if policy.is_excluded_namespace(request.namespace()) {
        return Some(Response::allow(uid).into());
    }
    if !workload && let Some(denied) = identity_annotations_changed(request) {
        return Some(denied.into());
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
    exempt.map(|why| exempt_decision(request, why))
}

/// Just the annotations of a raw object.
#[derive(Deserialize, Default)]
struct AnnotationsOnly {
    #[serde(default)]
    metadata: Option<MetadataAnnotations>,
}

#[derive(Deserialize, Default)]
struct MetadataAnnotations {
    #[serde(default)]
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

fn annotations_of(raw: &RawValue) -> Option<std::collections::BTreeMap<String, String>> {
    serde_json::from_str::<AnnotationsOnly>(raw.get())
        .ok()?
        .metadata?
        .annotations
}

/// A pod UPDATE that adds, changes or removes identity annotations is
/// refused, whoever sends it: identity annotations are vetted once, at
/// creation, and the stored pod then vouches for its provisioning init
/// container (see [`crate::mutate::Requester`]).
fn identity_annotations_changed(request: &Request<'_>) -> Option<Response> {
    if request.operation != Operation::Update {
        return None;
    }
    let (new, old) = (request.object?, request.old_object?);
    // 1.20/1.21 ephemeralcontainers: the objects carry no pod metadata.
    if raw_kind(new).as_deref() == Some("EphemeralContainers") {
        return None;
    }
    let changed = crate::mutate::identity_annotations_changed(
        annotations_of(old).as_ref(),
        annotations_of(new).as_ref(),
    );
    if changed.is_empty() {
        return None;
    }
    Some(Response::deny(
        &request.uid,
        403,
        "Forbidden",
        format!(
            "pods {:?} is forbidden: {} cannot change after the pod is created: they name the identity unroot provisioned for it (delete and recreate the pod to change them)",
            request.name(),
            changed.join(", ")
        ),
    ))
}

fn exempt_decision(request: &Request<'_>, why: &'static str) -> Decision {
    let mut response = Response::allow(&request.uid);
    response
        .audit_annotations
        .insert(EXEMPT.to_owned(), why.to_owned());
    Decision {
        response,
        facts: Facts {
            exempt: Some(why),
            ..Facts::default()
        },
    }
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

/// Pod Security for a request [`before_lookup`] did not answer, once the
/// shell has the namespace's labels (and the stored pod, see [`evaluate`]):
/// the requester vouches for an identity claim at creation, the stored pod
/// afterwards. What `/validate` decides, and what `unroot review` and
/// `unroot test` replay.
#[must_use]
pub fn pod_security(
    request: &Request<'_>,
    policy: &Snapshot,
    namespace: &NamespaceLabels,
    pod_override: Option<Pod>,
) -> Decision {
    let none = Labels::new();
    let labels = match namespace {
        NamespaceLabels::Found(labels) => labels,
        _ => &none,
    };
    let input = crate::mutate::Input {
        policy,
        namespace_labels: labels,
        requester: &request.user_info.username,
    };
    // Identity annotations cannot change after creation.
    let vouch = if request.operation == Operation::Create {
        crate::mutate::Requester::MustBeTrusted
    } else {
        crate::mutate::Requester::StoredPod
    };
    let vouched = |pod: &view::Pod<'_>| crate::mutate::vouch(pod, &input, vouch);
    evaluate(request, policy, namespace, pod_override, vouched)
}

/// A Pod Security error that decides the request: `response`, with the
/// error in the audit annotation [`ERROR`].
fn fatal(mut response: Response, message: String) -> Decision {
    response.audit_annotations.insert(ERROR.to_owned(), message);
    Decision {
        response,
        facts: Facts {
            pss_error: Some(PssError::Fatal),
            ..Facts::default()
        },
    }
}

/// The namespace's labels (`None`: no cluster, the defaults apply), or the
/// answer when they could not be read: a pod is denied (500), a workload
/// allowed, as upstream's admission does.
fn namespace_labels<'n>(
    request: &Request<'_>,
    namespace: &'n NamespaceLabels,
    workload: bool,
) -> Result<Option<&'n Labels>, Box<Decision>> {
    match namespace {
        NamespaceLabels::Found(labels) => Ok(Some(labels)),
        NamespaceLabels::Unknown => Ok(None),
        NamespaceLabels::Failed(err) => {
            let uid = &request.uid;
            let message = format!("failed to lookup namespace {:?}", request.namespace());
            let response = if workload {
                Response::allow(uid)
            } else {
                Response::deny(
                    uid,
                    500,
                    "InternalError",
                    format!("Internal error occurred: {message}"),
                )
            };
            Err(Box::new(fatal(response, format!("{message}: {err}"))))
        }
    }
}

/// Evaluates a request that [`before_lookup`] did not answer. `pod_override`
/// is the whole pod for a 1.20/1.21 `pods/ephemeralcontainers` request, whose
/// object is an `EphemeralContainers` list (the shell reads the pod and puts
/// the new list into it). `vouch` reads a pod's identity claim: its vouched
/// identity, and its provisioning init container (exempt by provenance).
///
/// Pod Security decides first, in upstream's words; a pod it admits is then
/// held to unroot's own [`refusals`]: no root unless allowed, no id of a
/// provisioned identity it does not hold.
#[must_use]
pub fn evaluate(
    request: &Request<'_>,
    policy: &Snapshot,
    namespace: &NamespaceLabels,
    pod_override: Option<Pod>,
    vouch: impl Fn(&view::Pod<'_>) -> Vouched,
) -> Decision {
    let uid = &request.uid;
    let workload = is_workload(request);
    let labels = match namespace_labels(request, namespace, workload) {
        Ok(labels) => labels,
        Err(decision) => return *decision,
    };
    let (ns_policy, label_errors) =
        namespace_policy::policy_from_labels(labels, policy.pod_security_defaults);
    let none = BTreeMap::new();
    let root_mode = refusals::root_mode(policy, labels.unwrap_or(&none));
    // Nothing for unroot's own rules to find: no need to decode the pod.
    let refusals_apply = root_mode != HardenMode::Off || policy.provisioning.enabled;
    let short_cut = if label_errors.is_empty() {
        privileged_short_cut(request, ns_policy)
    } else {
        None
    };
    if !refusals_apply && let Some(answer) = short_cut {
        return answer;
    }

    // Decode what is to be evaluated.
    let subject = if workload {
        decode_template(request)
    } else {
        decode_pod(request, pod_override, vouch)
    };
    let evaluation = match subject {
        Ok(Subject::Evaluate(e)) => e,
        Ok(Subject::Allow) => return Response::allow(uid).into(),
        Err((message, detail)) => {
            let response = if workload {
                Response::allow(uid)
            } else {
                Response::deny(uid, 400, "BadRequest", message.clone())
            };
            let annotation = match detail {
                Some(d) => format!("{message}: {d}"),
                None => message,
            };
            return fatal(response, annotation);
        }
    };

    // §4.7 common evaluation.
    if let Some(class) = evaluation
        .pod
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
        return exempt_decision(request, "runtimeClass");
    }
    let mut decision = match short_cut {
        Some(answer) => answer,
        None => evaluate_modes(request, &evaluation, ns_policy, &label_errors),
    };
    apply_refusals(&mut decision, request, policy, root_mode, &evaluation);
    decision
}

/// Holds a pod that Pod Security admitted to unroot's own rules
/// ([`refusals`]): a pod is denied (403) for what the namespace refuses,
/// and warned about what it only warns about; a workload template is only
/// ever warned about, as Pod Security warns about its templates.
fn apply_refusals(
    decision: &mut Decision,
    request: &Request<'_>,
    policy: &Snapshot,
    root_mode: HardenMode,
    evaluation: &Evaluation<'_>,
) {
    if !decision.response.allowed {
        return;
    }
    let found = refusals::find(
        &evaluation.pod,
        evaluation.skip,
        evaluation.identity.as_ref(),
        policy,
    );
    if found.is_empty() {
        return;
    }
    let mut reasons = Vec::new();
    let mut warnings = Vec::new();
    if !found.reserved_ids.is_empty() {
        reasons.push(refusals::reserved_ids_reason(&found.reserved_ids));
    }
    if !found.root.is_empty() {
        match root_mode {
            HardenMode::On => reasons.push(refusals::root_reason(request.namespace(), &found.root)),
            HardenMode::Warn => {
                warnings.push(refusals::root_warning(request.namespace(), &found.root));
            }
            HardenMode::Off => {}
        }
    }
    if is_workload(request) {
        let kind = request.target().as_str();
        warnings.extend(
            reasons
                .drain(..)
                .map(|reason| format!("pods of this {kind} would be refused: {reason}")),
        );
    }
    if !reasons.is_empty() {
        let annotations = std::mem::take(&mut decision.response.audit_annotations);
        let name = request.name();
        let mut response = Response::deny(
            &request.uid,
            403,
            "Forbidden",
            format!(
                "pods {} is forbidden: {}",
                pss::go_quote(name),
                reasons.join("; ")
            ),
        );
        if let Some(status) = response.status.as_mut() {
            status.details = Some(json!({"name": name, "kind": "pods"}));
        }
        response.audit_annotations = annotations;
        response.warnings = std::mem::take(&mut decision.response.warnings);
        decision.response = response;
    }
    decision.response.warnings.extend(warnings);
}

/// A namespace with nothing to evaluate: fully privileged for pods, warn and
/// audit privileged for workloads (whose enforce level does not matter).
fn privileged_short_cut(
    request: &Request<'_>,
    ns_policy: namespace_policy::Policy,
) -> Option<Decision> {
    if is_workload(request) {
        return (ns_policy.warn.level == Level::Privileged
            && ns_policy.audit.level == Level::Privileged)
            .then(|| Response::allow(&request.uid).into());
    }
    if !ns_policy.is_fully_privileged() {
        return None;
    }
    let privileged = LevelVersion {
        level: Level::Privileged,
        version: pss::Version::Latest,
    };
    let mut response = Response::allow(&request.uid);
    response
        .audit_annotations
        .insert(ENFORCE_POLICY.to_owned(), privileged.to_string());
    Some(Decision {
        response,
        facts: Facts {
            pss: vec![PssResult {
                mode: Mode::Enforce,
                policy: privileged,
                allowed: true,
                checks: Vec::new(),
            }],
            ..Facts::default()
        },
    })
}

/// Enforce (pods only), audit, warn; results are reused between modes of
/// the same level and version.
fn evaluate_modes(
    request: &Request<'_>,
    subject: &Evaluation,
    ns_policy: namespace_policy::Policy,
    label_errors: &[namespace_policy::LabelError],
) -> Decision {
    let mut response = Response::allow(&request.uid);
    let mut facts = Facts::default();
    if !label_errors.is_empty() {
        facts.pss_error = Some(PssError::Recovered);
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
        let v = pss::evaluate_view(&subject.pod, lv, subject.skip);
        cache.push((lv, v.clone()));
        v
    };
    let mut record = |mode: Mode, policy: LevelVersion, violations: &[Violation]| {
        facts.pss.push(PssResult {
            mode,
            policy,
            allowed: violations.is_empty(),
            checks: violations.iter().map(|v| v.check).collect(),
        });
    };
    if !is_workload(request) {
        let enforce = ns_policy.enforce;
        response
            .audit_annotations
            .insert(ENFORCE_POLICY.to_owned(), enforce.to_string());
        let violations = run(enforce);
        record(Mode::Enforce, enforce, &violations);
        if !violations.is_empty() {
            let annotations = std::mem::take(&mut response.audit_annotations);
            response = forbidden(request, enforce, &violations);
            response.audit_annotations = annotations;
        }
    }
    let audit = ns_policy.audit;
    let violations = run(audit);
    if !violations.is_empty() {
        record(Mode::Audit, audit, &violations);
        response.audit_annotations.insert(
            AUDIT_VIOLATIONS.to_owned(),
            pss::violation_message(audit, &violations),
        );
    }
    if response.allowed {
        let warn = ns_policy.warn;
        let violations = run(warn);
        if !violations.is_empty() {
            record(Mode::Warn, warn, &violations);
            response
                .warnings
                .push(pss::violation_message(warn, &violations));
        }
    }
    Decision { response, facts }
}

/// The 403 of an enforce violation (§3.2).
fn forbidden(request: &Request<'_>, lv: LevelVersion, violations: &[Violation]) -> Response {
    let name = request.name();
    let mut response = Response::deny(
        &request.uid,
        403,
        "Forbidden",
        pss::deny_message(name, lv, violations),
    );
    if let Some(status) = response.status.as_mut() {
        status.details = Some(json!({"name": name, "kind": "pods"}));
    }
    response
}

enum Subject<'a> {
    Evaluate(Box<Evaluation<'a>>),
    Allow,
}

/// What to evaluate: the pod, or the template's pod.
struct Evaluation<'a> {
    pod: view::Pod<'a>,
    /// The init container exempt by provenance, if any.
    skip: Option<usize>,
    /// The pod's vouched identity, if any.
    identity: Option<Identity>,
}

type DecodeFailure = (String, Option<String>);

/// The `kind` of a raw object, read without decoding the rest.
#[derive(Deserialize)]
struct KindOnly<'a> {
    #[serde(default, borrow)]
    kind: Option<Cow<'a, str>>,
}

fn raw_kind(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<KindOnly<'_>>(raw.get())
        .ok()
        .and_then(|k| k.kind)
}

/// Decodes a Pod with upstream's messages: `failed to decode {old }object`
/// (with the error) when it does not decode, `failed to decode {old }pod`
/// when it is another kind.
fn decode_pod_raw<'a>(
    raw: Option<&'a RawValue>,
    old: &str,
) -> Result<view::Pod<'a>, DecodeFailure> {
    let Some(raw) = raw else {
        return Err((
            format!("failed to decode {old}object"),
            Some("no object in the request".to_owned()),
        ));
    };
    view::decode(raw.get()).map_err(|e| match e {
        view::Error::NotAPod { .. } => (format!("failed to decode {old}pod"), None),
        view::Error::Decode { source, .. } => {
            match raw_kind(raw).filter(|k| !k.is_empty() && k != "Pod") {
                Some(_) => (format!("failed to decode {old}pod"), None),
                None => (
                    format!("failed to decode {old}object"),
                    Some(source.to_string()),
                ),
            }
        }
    })
}

fn decode_pod<'a>(
    request: &Request<'a>,
    pod_override: Option<Pod>,
    vouch: impl Fn(&view::Pod<'_>) -> Vouched,
) -> Result<Subject<'a>, DecodeFailure> {
    let pod: view::Pod<'a> = match pod_override {
        Some(pod) => view::Pod::from(&pod),
        None => decode_pod_raw(request.object, "")?,
    };
    if request.operation == Operation::Update {
        let old = match request.old_object {
            // A 1.20/1.21 ephemeralcontainers request: the old object is an
            // EphemeralContainers list, and adding one is always significant.
            Some(old) if raw_kind(old).as_deref() == Some("EphemeralContainers") => {
                view::Pod::default()
            }
            old => decode_pod_raw(old, "old ")?,
        };
        if request.sub_resource().is_empty()
            && !namespace_policy::is_significant_pod_update(&old, &pod)
        {
            return Ok(Subject::Allow);
        }
    }
    let Vouched { identity, init } = vouch(&pod);
    Ok(Subject::Evaluate(Box::new(Evaluation {
        pod,
        skip: init,
        identity,
    })))
}

fn decode_template(request: &Request<'_>) -> Result<Subject<'static>, DecodeFailure> {
    let Some(raw) = request.object else {
        return Err((
            "failed to decode object".to_owned(),
            Some("no object in the request".to_owned()),
        ));
    };
    let Target::Workload(kind) = request.target() else {
        let gvk = &request.kind;
        return Err((
            "failed to extract pod template".to_owned(),
            Some(format!(
                "unexpected object type: {}/{}, Kind={}",
                gvk.group, gvk.version, gvk.kind
            )),
        ));
    };
    match crate::workload::template(kind, raw) {
        Ok(Some(template)) => Ok(Subject::Evaluate(Box::new(Evaluation {
            pod: view::Pod::from(&Pod {
                metadata: template.metadata.unwrap_or_default(),
                spec: template.spec,
                status: None,
            }),
            skip: None,
            identity: None,
        }))),
        Ok(None) => Ok(Subject::Allow),
        Err(crate::workload::Error::Decode(e)) => {
            Err(("failed to decode object".to_owned(), Some(e)))
        }
        Err(crate::workload::Error::Template(e)) => {
            Err(("failed to extract pod template".to_owned(), Some(e)))
        }
    }
}

/// The ephemeral containers of a 1.20/1.21 `EphemeralContainers` object.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EphemeralContainersList {
    #[serde(default)]
    ephemeral_containers: Vec<EphemeralContainer>,
}

/// Puts the ephemeral containers of a 1.20/1.21 `EphemeralContainers` object
/// into `pod`. `None` when `object` is not such an object.
#[must_use]
pub fn merge_ephemeral_containers(mut pod: Pod, object: &RawValue) -> Option<Pod> {
    if raw_kind(object).as_deref() != Some("EphemeralContainers") {
        return None;
    }
    let list: EphemeralContainersList = serde_json::from_str(object.get()).ok()?;
    pod.spec
        .get_or_insert_with(PodSpec::default)
        .ephemeral_containers = Some(list.ephemeral_containers);
    Some(pod)
}

/// Whether `request` is a 1.20/1.21 ephemeral-containers request whose object
/// is not a whole pod (the shell must then read the pod).
#[must_use]
pub fn needs_pod(request: &Request<'_>) -> bool {
    request.is_pod()
        && request.sub_resource() == "ephemeralcontainers"
        && request
            .object
            .and_then(raw_kind)
            .is_some_and(|k| k == "EphemeralContainers")
}

/// `latest` for latest or privileged, `v1.N` up to the newest known, else
/// `future` — a bounded label set.
#[must_use]
pub fn metric_version(lv: LevelVersion) -> Cow<'static, str> {
    if lv.level == Level::Privileged || lv.version == pss::Version::Latest {
        Cow::Borrowed("latest")
    } else if lv.version > pss::max_version() {
        Cow::Borrowed("future")
    } else {
        Cow::Owned(lv.version.to_string())
    }
}
