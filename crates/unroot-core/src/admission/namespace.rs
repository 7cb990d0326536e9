//! `/validate` for namespaces: the namespace half of Pod Security
//! (pod-security-admission `ValidateNamespace`, spec §4.8) over the
//! `unroot.dev/` labels, and unroot's own rules for `unroot.dev/harden` and
//! for weakening a namespace.
//!
//! - Invalid `unroot.dev/{enforce,audit,warn}[-version]` or `unroot.dev/harden`
//!   labels are refused with upstream's 422 (an UPDATE that leaves the same
//!   invalid labels in place is tolerated).
//! - Weakening a namespace — lowering `unroot.dev/harden` (on > warn > off),
//!   or Pod Security enforcement (a less strict level, an older Standards
//!   version) — is refused with a 403 unless the requester is one of the
//!   policy's `namespaceLabelAdmins`. On CREATE the policy defaults are what
//!   the labels weaken.
//! - When an UPDATE raises enforcement, the existing pods are checked
//!   against it (a dry run, within a time budget and a pod cap) and the
//!   client is warned about those that would be denied.
//!
//! Pure: [`decide`] answers, or asks the shell for the namespace's pods
//! ([`Step::DryRun`]); [`check_existing_pods`] turns them into the warnings.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::validate::ERROR;
use super::{Decision, Operation, Request, Response};
use crate::namespaces::Labels;
use crate::policy::{HARDEN_LABEL, HardenMode, InvalidHardenMode, NAME_LABEL, Snapshot};
use crate::pss::namespace_policy::{self, Policy};
use crate::pss::{self, Level, LevelVersion, go_quote};

/// Most existing pods a dry run evaluates (upstream's cap).
pub const MAX_PODS: usize = 3000;

/// Longest a dry run may take, listing included; less when half the
/// request's remaining deadline is shorter (upstream's budget).
pub const BUDGET: Duration = Duration::from_secs(1);

/// The warning when the pods could not be listed in time.
pub const LIST_FAILED: &str = "failed to list pods while checking new PodSecurity enforce level";

/// What [`decide`] needs next.
// Matched once, at once, per request: boxing the decision would cost an
// allocation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Step {
    /// The answer.
    Done(Decision),
    /// Enforcement is raised: list the namespace's pods, check them with
    /// [`check_existing_pods`], and admit with its warnings.
    DryRun(DryRun),
}

/// A namespace whose existing pods must be checked against a new enforce
/// level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRun {
    /// The namespace's name.
    pub namespace: String,
    /// The new enforce level and version.
    pub enforce: LevelVersion,
    /// The namespace's new labels (they select provisioning, whose init
    /// container is exempt by provenance).
    pub labels: BTreeMap<String, String>,
}

/// One invalid label, as upstream reports a `FieldValueInvalid` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLabel {
    /// `metadata.labels[unroot.dev/enforce]`.
    pub field: String,
    /// `Invalid value: "strict": must be one of privileged, baseline, restricted`.
    pub body: String,
}

impl std::fmt::Display for InvalidLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body)
    }
}

/// The effective Pod Security policy of `labels` and every invalid label:
/// the Pod Security labels in upstream's order, then `unroot.dev/harden`.
#[must_use]
pub fn evaluate_labels(
    labels: &BTreeMap<String, String>,
    defaults: Policy,
) -> (Policy, Vec<InvalidLabel>) {
    let (policy, errors) = namespace_policy::policy_from_labels(Some(labels), defaults);
    let mut invalid: Vec<InvalidLabel> = errors
        .iter()
        .map(|e| InvalidLabel {
            field: e.field(),
            body: e.body(),
        })
        .collect();
    if let Some(value) = labels.get(HARDEN_LABEL)
        && value.parse::<HardenMode>().is_err()
    {
        invalid.push(InvalidLabel {
            field: format!("metadata.labels[{HARDEN_LABEL}]"),
            body: format!("Invalid value: {}: {InvalidHardenMode}", go_quote(value)),
        });
    }
    (policy, invalid)
}

/// Upstream's aggregate: the one error, or `[e1, e2]`, duplicates dropped.
fn aggregate(errors: &[InvalidLabel]) -> String {
    let mut messages: Vec<String> = Vec::with_capacity(errors.len());
    for error in errors {
        let message = error.to_string();
        if !messages.contains(&message) {
            messages.push(message);
        }
    }
    match messages.len() {
        1 => messages.swap_remove(0),
        _ => format!("[{}]", messages.join(", ")),
    }
}

/// The prefix of unroot's labels.
const LABEL_PREFIX: &str = "unroot.dev/";

/// The `unroot.dev/` labels anyone RBAC lets label a namespace may raise:
/// the hardening mode and the Pod Security modes. Lowering them is judged
/// by [`weakenings`]; every other `unroot.dev/` label is reserved to
/// `namespaceLabelAdmins` (e.g. [`crate::policy::ALLOW_ROOT_LABEL`],
/// [`crate::policy::MONITORING_LABEL`]).
const STAGED_LABELS: [&str; 7] = [
    HARDEN_LABEL,
    "unroot.dev/enforce",
    "unroot.dev/enforce-version",
    "unroot.dev/audit",
    "unroot.dev/audit-version",
    "unroot.dev/warn",
    "unroot.dev/warn-version",
];

/// Subresources of a namespace that can change its labels: the API server
/// keeps the metadata of a `status` or `finalize` update as sent.
const LABEL_SUBRESOURCES: [&str; 3] = ["", "status", "finalize"];

/// Answers a namespace request, or asks for a dry run of its pods.
#[must_use]
pub fn decide(request: &Request<'_>, policy: &Snapshot) -> Step {
    let uid = &request.uid;
    if !LABEL_SUBRESOURCES.contains(&request.sub_resource()) {
        return Step::Done(Response::allow(uid).into());
    }
    let namespace = match decode(request.object, NEW) {
        Ok(namespace) => namespace,
        Err(failure) => return Step::Done(bad_request(uid, failure)),
    };
    let name = namespace.metadata.name.clone().unwrap_or_default();
    // The API server sets the request's namespace to the namespace's own
    // name; exemptions match on it, as upstream's do.
    let exempt_name = if request.namespace().is_empty() {
        name.as_str()
    } else {
        request.namespace()
    };
    let labels = namespace.metadata.labels.unwrap_or_default();
    let creating = request.operation == Operation::Create;
    if creating && let Some(refusal) = refuse_reserved_name(request, policy, exempt_name) {
        return Step::Done(refusal.into());
    }
    if policy.is_excluded_namespace(exempt_name) {
        return Step::Done(Response::allow(uid).into());
    }
    if let Some(error) = wrong_name_label(&name, &labels) {
        return Step::Done(invalid(uid, &name, &[error]).into());
    }
    let defaults = policy.pod_security_defaults;
    let (new_policy, new_errors) = evaluate_labels(&labels, defaults);
    let exempt = !exempt_name.is_empty()
        && policy
            .pod_security
            .exemptions
            .namespaces
            .iter()
            .any(|n| n == exempt_name);
    let exemption = || exemption(uid, &name, &labels, new_policy, defaults);
    match request.operation {
        Operation::Create => {
            if !new_errors.is_empty() {
                return Step::Done(invalid(uid, &name, &new_errors).into());
            }
            if let Some(refusal) = refuse_weakening(request, policy, &name, None, &labels) {
                return Step::Done(refusal.into());
            }
            if exempt {
                return exemption();
            }
            Step::Done(Response::allow(uid).into())
        }
        Operation::Update => {
            let old = match decode(request.old_object, OLD) {
                Ok(old) => old,
                Err(failure) => return Step::Done(bad_request(uid, failure)),
            };
            let old_labels = old.metadata.labels.unwrap_or_default();
            let (old_policy, old_errors) = evaluate_labels(&old_labels, defaults);
            // Invalid labels that were already there are tolerated.
            if !new_errors.is_empty() && (old_errors.is_empty() || old_errors != new_errors) {
                return Step::Done(invalid(uid, &name, &new_errors).into());
            }
            if let Some(refusal) =
                refuse_weakening(request, policy, &name, Some(&old_labels), &labels)
            {
                return Step::Done(refusal.into());
            }
            let (new, old) = (new_policy.enforce, old_policy.enforce);
            if !tightens(new, old) {
                return Step::Done(Response::allow(uid).into());
            }
            if exempt {
                return exemption();
            }
            Step::DryRun(DryRun {
                namespace: name,
                enforce: new,
                labels,
            })
        }
        _ => Step::Done(Response::allow(uid).into()),
    }
}

/// The answer for a namespace Pod Security exempts by name: allowed, with
/// upstream's warning when its labels ask for more than the defaults.
fn exemption(uid: &str, name: &str, labels: &Labels, new: Policy, defaults: Policy) -> Step {
    let mut response = Response::allow(uid);
    response
        .warnings
        .extend(namespace_policy::exemption_warning(
            name,
            Some(labels),
            new,
            defaults,
        ));
    Step::Done(response.into())
}

/// The error for a namespace whose [`NAME_LABEL`] is not its own name. The
/// webhook configurations exclude namespaces by this label, which the API
/// server sets itself from Kubernetes 1.21 on; before that a namespace
/// could claim another's name.
fn wrong_name_label(name: &str, labels: &Labels) -> Option<InvalidLabel> {
    let wrong = labels.get(NAME_LABEL).filter(|v| *v != name)?;
    Some(InvalidLabel {
        field: format!("metadata.labels[{NAME_LABEL}]"),
        body: format!(
            "Invalid value: {}: must be the namespace's own name {}",
            go_quote(wrong),
            go_quote(name)
        ),
    })
}

/// Whether an UPDATE's new enforce level and version are stricter than the
/// old ones, so the namespace's pods must be evaluated against them first:
/// not when unchanged, privileged, or the same version at a level no higher.
fn tightens(new: LevelVersion, old: LevelVersion) -> bool {
    !(new == old
        || new.level == Level::Privileged
        || (new.version == old.version && new.level <= old.level))
}

/// The 403 for creating a namespace whose name the policy reserves
/// (excluded or exempt for its name alone) by anyone but
/// `namespaceLabelAdmins`: otherwise whoever creates it first runs pods
/// there unchecked.
fn refuse_reserved_name(request: &Request<'_>, policy: &Snapshot, name: &str) -> Option<Response> {
    let list = policy.reserving_list(name)?;
    let user = &request.user_info;
    if policy
        .namespace_label_admins
        .includes(&user.username, &user.groups)
    {
        return None;
    }
    Some(forbidden_namespace(
        request,
        name,
        "create it",
        &format!(
            "the name {} is on the policy's {list}, so pods there are not judged for their name alone",
            go_quote(name)
        ),
    ))
}

/// Upstream's `FieldValueInvalid` 422.
fn invalid(uid: &str, name: &str, errors: &[InvalidLabel]) -> Response {
    let mut response = Response::deny(
        uid,
        422,
        "Invalid",
        format!(
            "Namespace {} is invalid: {}",
            go_quote(name),
            aggregate(errors)
        ),
    );
    if let Some(status) = response.status.as_mut() {
        let causes: Vec<_> = errors
            .iter()
            .map(|e| json!({"reason": "FieldValueInvalid", "message": e.body, "field": e.field}))
            .collect();
        status.details = Some(json!({"name": name, "kind": "Namespace", "causes": causes}));
    }
    response
}

/// What each weakened label does, in a line each; empty when `new` weakens
/// nothing. `old` is `None` on CREATE: the policy defaults are then the
/// starting point, and a namespace without labels what the policy's
/// selectors are compared with.
#[must_use]
pub fn weakenings(
    policy: &Snapshot,
    old: Option<&BTreeMap<String, String>>,
    new: &BTreeMap<String, String>,
) -> Vec<String> {
    let none = BTreeMap::new();
    let old = old.unwrap_or(&none);
    let mut lines = Vec::new();
    let (was, now) = (policy.harden_mode(old), policy.harden_mode(new));
    if now < was {
        lines.push(format!(
            "{HARDEN_LABEL} lowers hardening from {was} to {now}"
        ));
    }
    let defaults = policy.pod_security_defaults;
    let was = namespace_policy::policy_from_labels(Some(old), defaults).0;
    let now = namespace_policy::policy_from_labels(Some(new), defaults).0;
    for (mode, was, now) in [
        ("enforce", was.enforce, now.enforce),
        ("audit", was.audit, now.audit),
        ("warn", was.warn, now.warn),
    ] {
        if let Some(label) = lowered(mode, was, now) {
            let what = if mode == "enforce" {
                "enforcement".to_owned()
            } else {
                format!("{mode}ing")
            };
            lines.push(format!(
                "{label} lowers Pod Security {what} from {was} to {now}"
            ));
        }
    }
    // Every other unroot.dev/ label (allow-root, monitoring, the trust
    // bundle's and provisioning's selector labels, and any later one) is the
    // administrators' to set, change or remove, whatever the policy does
    // with it today.
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for label in keys {
        if label.starts_with(LABEL_PREFIX)
            && !STAGED_LABELS.contains(&label.as_str())
            && old.get(label) != new.get(label)
        {
            lines.push(format!(
                "{label} is set, changed or removed only by namespaceLabelAdmins"
            ));
        }
    }
    let (was, now) = (policy.selections(old), policy.selections(new));
    if was != now {
        let gained: Vec<&str> = now
            .iter()
            .filter(|s| !was.contains(s))
            .map(String::as_str)
            .collect();
        let lost: Vec<&str> = was
            .iter()
            .filter(|s| !now.contains(s))
            .map(String::as_str)
            .collect();
        let mut change = Vec::new();
        if !gained.is_empty() {
            change.push(format!("now matched by {}", gained.join(", ")));
        }
        if !lost.is_empty() {
            change.push(format!("no longer matched by {}", lost.join(", ")));
        }
        lines.push(format!(
            "the labels change what the policy selects for the namespace: {}",
            change.join("; ")
        ));
    }
    lines
}

/// The label that lowers a Pod Security mode from `was` to `now`, if it is
/// lowered: a less strict level, or an older Standards version of the same
/// level.
fn lowered(mode: &str, was: LevelVersion, now: LevelVersion) -> Option<String> {
    // `latest` and any version past the newest known behave as the newest.
    let behaves_as = |lv: LevelVersion| lv.version.min(pss::max_version());
    if now.level < was.level {
        Some(format!("unroot.dev/{mode}"))
    } else if now.level == was.level
        && now.level != Level::Privileged
        && behaves_as(now) < behaves_as(was)
    {
        Some(format!("unroot.dev/{mode}-version"))
    } else {
        None
    }
}

/// The 403 for a requester outside `namespaceLabelAdmins` who weakens a
/// namespace.
fn refuse_weakening(
    request: &Request<'_>,
    policy: &Snapshot,
    name: &str,
    old: Option<&BTreeMap<String, String>>,
    new: &BTreeMap<String, String>,
) -> Option<Response> {
    let user = &request.user_info;
    if policy
        .namespace_label_admins
        .includes(&user.username, &user.groups)
    {
        return None;
    }
    let lines = weakenings(policy, old, new);
    if lines.is_empty() {
        return None;
    }
    Some(forbidden_namespace(
        request,
        name,
        "weaken a namespace",
        &lines.join("; "),
    ))
}

/// `namespaces "NAME" is forbidden: only the policy's namespaceLabelAdmins
/// may WHAT, and user "U" is not one: WHY`.
fn forbidden_namespace(request: &Request<'_>, name: &str, what: &str, why: &str) -> Response {
    let mut response = Response::deny(
        &request.uid,
        403,
        "Forbidden",
        format!(
            "namespaces {} is forbidden: only the policy's namespaceLabelAdmins may {what}, and user {} is not one: {why}",
            go_quote(name),
            go_quote(&request.user_info.username),
        ),
    );
    if let Some(status) = response.status.as_mut() {
        status.details = Some(json!({"name": name, "kind": "namespaces"}));
    }
    response
}

type DecodeFailure = (String, Option<String>);

/// The `kind` of a raw object.
#[derive(Deserialize)]
struct KindOnly {
    #[serde(default)]
    kind: Option<String>,
}

/// How upstream begins its decode errors for the object and the old object
/// (the second with two spaces, byte for byte).
const NEW: &str = "failed to decode ";
const OLD: &str = "failed to decode  old ";

/// Decodes a Namespace with upstream's messages: `{prefix}namespace` when
/// absent or of another kind, `{prefix}object` with the error when it does
/// not decode.
fn decode(raw: Option<&RawValue>, prefix: &str) -> Result<Namespace, DecodeFailure> {
    let Some(raw) = raw else {
        return Err((format!("{prefix}namespace"), None));
    };
    serde_json::from_str::<Namespace>(raw.get()).map_err(|e| {
        let kind = serde_json::from_str::<KindOnly>(raw.get())
            .ok()
            .and_then(|k| k.kind);
        match kind.filter(|k| !k.is_empty() && k != "Namespace") {
            Some(_) => (format!("{prefix}namespace"), None),
            None => (format!("{prefix}object"), Some(e.to_string())),
        }
    })
}

/// A 400 for an object that is not a namespace, with the `error` audit
/// annotation upstream sets.
fn bad_request(uid: &str, (message, detail): DecodeFailure) -> Decision {
    let mut response = Response::deny(uid, 400, "BadRequest", message.clone());
    let annotation = match detail {
        Some(detail) => format!("{message}: {detail}"),
        None => message,
    };
    response
        .audit_annotations
        .insert(ERROR.to_owned(), annotation);
    response.into()
}

/// The warnings of a dry run of `enforce` over the existing `pods` of
/// `namespace` (spec §4.8): pods of an exempt runtime class are dropped;
/// pods without a controller and the first pod of each controller keep
/// their order, later pods of a controller go last; at most [`MAX_PODS`]
/// are evaluated, and evaluation stops after the pod at which `expired`
/// first says so. Pods failing with the same reasons are grouped under the
/// smallest pod name.
///
/// `skip_init` names the init container exempt by provenance in a pod, as
/// for admission.
#[must_use]
pub fn check_existing_pods(
    namespace: &str,
    enforce: LevelVersion,
    pods: Vec<Pod>,
    exempt_runtime_classes: &[String],
    skip_init: impl Fn(&Pod) -> Option<usize>,
    expired: impl FnMut() -> bool,
) -> Vec<String> {
    let dry = dry_run(enforce, pods, exempt_runtime_classes, skip_init, expired);
    let mut warnings: Vec<String> = dry.cut_short().into_iter().collect();
    if !dry.groups.is_empty() {
        warnings.push(format!(
            "existing pods in namespace {} violate the new PodSecurity enforce level {}",
            go_quote(namespace),
            go_quote(&enforce.to_string())
        ));
    }
    let mut lines: Vec<String> = dry
        .groups
        .into_iter()
        .map(|(reasons, group)| match group.count {
            1 => format!("{}: {reasons}", group.smallest),
            2 => format!("{} (and 1 other pod): {reasons}", group.smallest),
            n => format!("{} (and {} other pods): {reasons}", group.smallest, n - 1),
        })
        .collect();
    lines.sort();
    warnings.extend(lines);
    warnings
}

/// [`check_existing_pods`] for a caller that is not authenticated: the same
/// dry run, but the warnings count the violating pods and list the reasons
/// without naming a pod (or a container), so a forged namespace review
/// does not list another tenant's pods.
#[must_use]
pub fn count_existing_pods(
    namespace: &str,
    enforce: LevelVersion,
    pods: Vec<Pod>,
    exempt_runtime_classes: &[String],
    skip_init: impl Fn(&Pod) -> Option<usize>,
    expired: impl FnMut() -> bool,
) -> Vec<String> {
    let dry = dry_run(enforce, pods, exempt_runtime_classes, skip_init, expired);
    let mut warnings: Vec<String> = dry.cut_short().into_iter().collect();
    let violating: usize = dry.groups.values().map(|g| g.count).sum();
    if violating > 0 {
        let reasons: std::collections::BTreeSet<&str> = dry
            .groups
            .values()
            .flat_map(|g| g.reasons.iter().map(AsRef::as_ref))
            .collect();
        let (pods, verb) = if violating == 1 {
            ("pod", "violates")
        } else {
            ("pods", "violate")
        };
        warnings.push(format!(
            "{violating} existing {pods} in namespace {} {verb} the new PodSecurity enforce level {}: {} (pods are named only to callers authenticated with --client-ca)",
            go_quote(namespace),
            go_quote(&enforce.to_string()),
            reasons.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    warnings
}

/// The pods failing with one list of reasons.
struct Group {
    /// How many.
    count: usize,
    /// The smallest of their names.
    smallest: String,
    /// The reasons, each once.
    reasons: Vec<std::borrow::Cow<'static, str>>,
}

/// What a dry run found.
struct DryRunResult {
    /// Pods evaluated.
    checked: usize,
    /// Pods that were to be evaluated.
    total: usize,
    /// Reason list → the pods failing with it.
    groups: BTreeMap<String, Group>,
}

impl DryRunResult {
    /// The warning when the budget or [`MAX_PODS`] cut the dry run short.
    fn cut_short(&self) -> Option<String> {
        (self.checked < self.total).then(|| {
            format!(
                "new PodSecurity enforce level only checked against the first {} of {} existing pods",
                self.checked, self.total
            )
        })
    }
}

/// Evaluates the existing pods as [`check_existing_pods`] describes.
fn dry_run(
    enforce: LevelVersion,
    pods: Vec<Pod>,
    exempt_runtime_classes: &[String],
    skip_init: impl Fn(&Pod) -> Option<usize>,
    mut expired: impl FnMut() -> bool,
) -> DryRunResult {
    let pods = prioritize(pods, exempt_runtime_classes);
    let total = pods.len();
    let mut checked = total.min(MAX_PODS);
    // The lines are sorted in the end, so the map's order does not matter.
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let empty = k8s_openapi::api::core::v1::PodSpec::default();
    for (i, pod) in pods.iter().take(MAX_PODS).enumerate() {
        let spec = pod.spec.as_ref().unwrap_or(&empty);
        let violations = pss::evaluate_excluding_init(&pod.metadata, spec, enforce, skip_init(pod));
        if !violations.is_empty() {
            let name = pod.metadata.name.clone().unwrap_or_default();
            match groups.entry(pss::reason_list(&violations)) {
                Entry::Vacant(slot) => {
                    let mut reasons: Vec<_> = violations.into_iter().map(|v| v.reason).collect();
                    reasons.dedup();
                    slot.insert(Group {
                        count: 1,
                        smallest: name,
                        reasons,
                    });
                }
                Entry::Occupied(mut slot) => {
                    let group = slot.get_mut();
                    group.count += 1;
                    if name < group.smallest {
                        group.smallest = name;
                    }
                }
            }
        }
        if expired() {
            checked = i + 1;
            break;
        }
    }
    DryRunResult {
        checked,
        total,
        groups,
    }
}

/// Upstream's order: exempt runtime classes out; pods without a controller
/// and the first pod of each controller in list order, then the other pods
/// of already-seen controllers in list order.
fn prioritize(pods: Vec<Pod>, exempt_runtime_classes: &[String]) -> Vec<Pod> {
    let mut first = Vec::with_capacity(pods.len());
    let mut later = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for pod in pods {
        let class = pod
            .spec
            .as_ref()
            .and_then(|s| s.runtime_class_name.as_deref())
            .unwrap_or_default();
        if !class.is_empty() && exempt_runtime_classes.iter().any(|c| c == class) {
            continue;
        }
        let controller = pod
            .metadata
            .owner_references
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        match controller {
            None => first.push(pod),
            Some(uid) if seen.contains(&uid) => later.push(pod),
            Some(uid) => {
                seen.push(uid);
                first.push(pod);
            }
        }
    }
    first.extend(later);
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Document;
    use crate::pss::namespace_policy::{ENFORCE_LABEL, ENFORCE_VERSION_LABEL};
    use serde_json::{Value, json};

    fn request(text: &str) -> Request<'_> {
        serde_json::from_str(text).unwrap()
    }

    fn review(operation: &str, new: &Value, old: Option<&Value>, groups: &[&str]) -> String {
        json!({
            "uid": "u", "operation": operation, "name": "team-a", "namespace": "team-a",
            "resource": {"group": "", "version": "v1", "resource": "namespaces"},
            "userInfo": {"username": "tenant", "groups": groups},
            "object": new, "oldObject": old,
        })
        .to_string()
    }

    fn namespace(labels: &[(&str, &str)]) -> Value {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": labels}})
    }

    fn done(step: Step) -> Response {
        match step {
            Step::Done(decision) => decision.response,
            Step::DryRun(dry) => panic!("unexpected dry run: {dry:?}"),
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot::new(Document::embedded())
    }

    #[test]
    fn decode_failures_use_upstream_messages() {
        let policy = snapshot();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
        let broken = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": 7}});
        let ns = namespace(&[]);
        let cases = [
            (
                "no object",
                "CREATE",
                Value::Null,
                Value::Null,
                "failed to decode namespace",
                None,
            ),
            (
                "another kind",
                "CREATE",
                pod.clone(),
                Value::Null,
                "failed to decode namespace",
                None,
            ),
            (
                "undecodable",
                "CREATE",
                broken.clone(),
                Value::Null,
                "failed to decode object",
                Some("failed to decode object: invalid type"),
            ),
            (
                "no old object",
                "UPDATE",
                ns.clone(),
                Value::Null,
                "failed to decode  old namespace",
                None,
            ),
            (
                "old of another kind",
                "UPDATE",
                ns.clone(),
                pod,
                "failed to decode  old namespace",
                None,
            ),
            (
                "old undecodable",
                "UPDATE",
                ns,
                broken,
                "failed to decode  old object",
                Some("failed to decode  old object: invalid type"),
            ),
        ];
        for (name, op, new, old, message, annotation) in cases {
            let text = review(op, &new, Some(&old), &[]);
            let response = done(decide(&request(&text), &policy));
            let status = response.status.unwrap();
            assert_eq!(
                (status.code, status.message.as_str()),
                (Some(400), message),
                "{name}"
            );
            let got = &response.audit_annotations[ERROR];
            assert!(
                got.starts_with(annotation.unwrap_or(message)),
                "{name}: {got}"
            );
        }
    }

    type Case = (
        &'static str,
        Option<BTreeMap<String, String>>,
        BTreeMap<String, String>,
        &'static [&'static str],
    );

    #[test]
    fn weakening_is_judged_against_the_old_labels_or_the_defaults() {
        let policy = snapshot();
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let cases: [Case; 9] = [
            ("create plain", None, labels(&[]), &[]),
            (
                "create with warn",
                None,
                labels(&[(HARDEN_LABEL, "warn")]),
                &["unroot.dev/harden lowers hardening from on to warn"],
            ),
            (
                "create stricter",
                None,
                labels(&[(HARDEN_LABEL, "on"), (ENFORCE_LABEL, "restricted")]),
                &[],
            ),
            (
                "create privileged",
                None,
                labels(&[(ENFORCE_LABEL, "privileged")]),
                &[
                    "unroot.dev/enforce lowers Pod Security enforcement from baseline:latest to privileged:latest",
                ],
            ),
            (
                "warn to off",
                Some(labels(&[(HARDEN_LABEL, "warn")])),
                labels(&[(HARDEN_LABEL, "off")]),
                &["unroot.dev/harden lowers hardening from warn to off"],
            ),
            (
                "off to warn",
                Some(labels(&[(HARDEN_LABEL, "off")])),
                labels(&[(HARDEN_LABEL, "warn")]),
                &[],
            ),
            (
                "enforce removed",
                Some(labels(&[(ENFORCE_LABEL, "restricted")])),
                labels(&[]),
                &[
                    "unroot.dev/enforce lowers Pod Security enforcement from restricted:latest to baseline:latest",
                ],
            ),
            (
                "older version",
                Some(labels(&[(ENFORCE_LABEL, "restricted")])),
                labels(&[
                    (ENFORCE_LABEL, "restricted"),
                    (ENFORCE_VERSION_LABEL, "v1.24"),
                ]),
                &[
                    "unroot.dev/enforce-version lowers Pod Security enforcement from restricted:latest to restricted:v1.24",
                ],
            ),
            (
                "a version past the newest is latest",
                Some(labels(&[(ENFORCE_LABEL, "restricted")])),
                labels(&[
                    (ENFORCE_LABEL, "restricted"),
                    (ENFORCE_VERSION_LABEL, "v1.99"),
                ]),
                &[],
            ),
        ];
        for (name, old, new, want) in cases {
            assert_eq!(weakenings(&policy, old.as_ref(), &new), want, "{name}");
        }
    }

    #[test]
    fn admins_may_weaken_and_others_get_a_403() {
        let policy = snapshot();
        let new = namespace(&[(HARDEN_LABEL, "off")]);
        let old = namespace(&[]);
        let tenant = review("UPDATE", &new, Some(&old), &["system:authenticated"]);
        let status = done(decide(&request(&tenant), &policy)).status.unwrap();
        assert_eq!(status.code, Some(403));
        assert_eq!(
            status.message,
            "namespaces \"team-a\" is forbidden: only the policy's namespaceLabelAdmins may weaken a namespace, and user \"tenant\" is not one: unroot.dev/harden lowers hardening from on to off"
        );
        let admin = review("UPDATE", &new, Some(&old), &["system:masters"]);
        assert!(done(decide(&request(&admin), &policy)).allowed);
    }

    fn pod(name: &str, controller: Option<&str>, spec: &Value) -> Pod {
        let mut meta = json!({"name": name});
        if let Some(uid) = controller {
            meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}]);
        }
        serde_json::from_value(json!({"metadata": meta, "spec": spec})).unwrap()
    }

    #[test]
    fn prioritize_keeps_one_pod_per_controller_up_front() {
        let spec = json!({"containers": [{"name": "c", "image": "x"}]});
        let pods = vec![
            pod("a1", Some("A"), &spec),
            pod("a2", Some("A"), &spec),
            pod("free", None, &spec),
            pod("b1", Some("B"), &spec),
            pod("a3", Some("A"), &spec),
            pod(
                "sandboxed",
                None,
                &json!({"runtimeClassName": "gvisor", "containers": []}),
            ),
            pod("b2", Some("B"), &spec),
        ];
        let names: Vec<String> = prioritize(pods, &["gvisor".to_owned()])
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect();
        assert_eq!(names, ["a1", "free", "b1", "a2", "a3", "b2"]);
    }
}
