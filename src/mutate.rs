//! Pod mutations, expressed as a minimal, idempotent JSON Patch.
//!
//! Pure and synchronous: the admission shell hands in the object, the
//! policy, the namespace's labels and the requester, and gets back the patch,
//! the patched object, the warnings and the identity ConfigMap to apply.
//!
//! Order matters: provisioning first (it inserts the init container at the
//! head of `initContainers`, and sets the pod's user from the identity), then
//! the trust bundle, then the securityContext hardening, which then finds the
//! identity's ids already set and leaves the provisioning container alone.

mod mounts;
pub mod patch;
pub mod provisioning;
pub mod security_context;
pub mod trust_bundle;

use std::collections::BTreeMap;

use json_patch::Patch;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use serde::Deserialize;
use serde_json::Value;

use self::patch::{Builder, Seg};
pub use self::provisioning::{
    Denial, Identity, Requester, Rule, Vouched, identity_annotations_changed, provenance_index,
    vouch,
};
use self::security_context::{CHANGE_NOTE, CONTAINER_LISTS, Context, containers};
use crate::policy::{Document, HardenMode, SecurityContext, selector_matches};
use crate::workload;

/// Annotation a mirror (static) pod carries; such pods are never mutated.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Annotation unroot sets on every object it changed.
pub const MUTATED_ANNOTATION: &str = "unroot.dev/mutated";

/// Errors from mutating an object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object does not deserialize as the type its kind names.
    #[error("failed to decode {what}: {at}{source}")]
    Decode {
        /// What was being decoded, e.g. `Pod` or `Deployment pod template`.
        what: String,
        /// The field at fault and `: ` (`spec.containers[0].securityContext.runAsUser: `),
        /// or nothing when the fault is not in one field.
        at: String,
        /// Why it failed.
        #[source]
        source: serde_json::Error,
    },
    /// A workload's pod template does not decode.
    #[error("{kind}: {message}")]
    Template {
        /// The workload kind.
        kind: &'static str,
        /// What is wrong, with the field path.
        message: String,
    },
    /// The pod claims an identity (`unroot.dev/user`, ...) that the policy
    /// does not grant; every broken rule is listed.
    #[error("identity claim denied: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Forbidden(Vec<Denial>),
}

impl Error {
    /// `what` does not decode as `T`: `source`, naming the field at fault
    /// (found by decoding `value` again while tracking the path: only a
    /// failure pays for that).
    #[must_use]
    pub fn decode<T: serde::de::DeserializeOwned>(
        what: &str,
        value: &Value,
        source: serde_json::Error,
    ) -> Self {
        Self::decode_under::<T>(what, "", value, source)
    }

    /// Like [`Error::decode`], for `value` found at `prefix` in the object.
    #[must_use]
    pub fn decode_under<T: serde::de::DeserializeOwned>(
        what: &str,
        prefix: &str,
        value: &Value,
        source: serde_json::Error,
    ) -> Self {
        let path = serde_path_to_error::deserialize::<_, T>(value)
            .err()
            .map(|e| e.path().to_string());
        Self::Decode {
            what: what.to_owned(),
            at: field_at(prefix, path.as_deref()),
            source,
        }
    }

    /// `what`, the JSON text `raw`, does not decode as `T`: like
    /// [`Error::decode`] (for a syntax error, the field where it is).
    #[must_use]
    pub fn decode_raw<T: serde::de::DeserializeOwned>(
        what: &str,
        raw: &str,
        source: serde_json::Error,
    ) -> Self {
        let mut de = serde_json::Deserializer::from_str(raw);
        let path = serde_path_to_error::deserialize::<_, T>(&mut de)
            .err()
            .map(|e| e.path().to_string());
        Self::Decode {
            what: what.to_owned(),
            at: field_at("", path.as_deref()),
            source,
        }
    }
}

/// `prefix` and `path` (serde_path_to_error's, `.` for the root) as one
/// field path and `: `, or nothing for the root.
fn field_at(prefix: &str, path: Option<&str>) -> String {
    let joined = match path {
        None | Some(".") => prefix.to_owned(),
        Some(path) if prefix.is_empty() => path.to_owned(),
        Some(path) if path.starts_with('[') => format!("{prefix}{path}"),
        Some(path) => format!("{prefix}.{path}"),
    };
    if joined.is_empty() {
        joined
    } else {
        format!("{joined}: ")
    }
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A mutation unroot applied (a bounded metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// securityContext hardening (pod or containers).
    SecurityContext,
    /// The trust bundle volume and mounts.
    TrustBundle,
    /// The provisioning init container and identity.
    Provisioning,
    /// The identity ConfigMap was written (recorded by the shell).
    IdentityConfigMap,
}

impl Applied {
    /// Every mutation kind.
    pub const ALL: [Applied; 4] = [
        Applied::SecurityContext,
        Applied::TrustBundle,
        Applied::Provisioning,
        Applied::IdentityConfigMap,
    ];

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecurityContext => "security_context",
            Self::TrustBundle => "trust_bundle",
            Self::Provisioning => "provisioning",
            Self::IdentityConfigMap => "identity_configmap",
        }
    }
}

/// What a mutation produced.
#[derive(Debug)]
pub struct Outcome {
    /// The RFC 6902 patch (empty when nothing changes).
    pub patch: Patch,
    /// The object with the patch applied.
    pub object: Value,
    /// One line per explicit choice that was left or overridden.
    pub warnings: Vec<String>,
    /// The `unroot-identity-<user>` ConfigMap the pod mounts: the shell must
    /// server-side-apply it before admitting the pod (unless dry-run). Its
    /// namespace is the object's `metadata.namespace`, when it has one.
    pub identity: Option<ConfigMap>,
    /// Which mutations changed the object.
    pub applied: Vec<Applied>,
    /// The hardening mode the namespace's pods are in (`unroot.dev/harden`),
    /// when the object was considered for hardening at all (not for a
    /// mirror pod or an object of another kind).
    pub harden: Option<HardenMode>,
}

impl Outcome {
    fn unchanged(object: Value) -> Self {
        Self {
            patch: Patch(Vec::new()),
            object,
            warnings: Vec::new(),
            identity: None,
            applied: Vec::new(),
            harden: None,
        }
    }
}

/// No labels: what [`Input::new`] uses for the namespace.
static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// Everything a pod mutation reads besides the pod: gathered by the shell.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The policy in force.
    pub policy: &'a Document,
    /// The labels of the pod's namespace (selects the trust bundle and
    /// provisioning).
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// The requesting user (AdmissionRequest `userInfo.username`).
    pub requester: &'a str,
}

impl<'a> Input<'a> {
    /// `policy` for a namespace without labels and an anonymous requester:
    /// only the securityContext hardening applies.
    #[must_use]
    pub fn new(policy: &'a Document) -> Self {
        Self {
            policy,
            namespace_labels: &NO_LABELS,
            requester: "",
        }
    }
}

/// Mutates a Pod (the whole object as JSON): provisioning, trust bundle,
/// securityContext hardening.
pub fn pod(object: &Value, input: &Input<'_>) -> Result<Outcome> {
    pod_owned(object.clone(), input)
}

/// Like [`pod`], taking the object by value: the patch is built against it
/// in place (no copy of the pod), and it comes back patched in
/// [`Outcome::object`].
pub fn pod_owned(object: Value, input: &Input<'_>) -> Result<Outcome> {
    Pod::deserialize(&object).map_err(|source| Error::decode::<Pod>("Pod", &object, source))?;
    harden(object, &[], "", input)
}

/// Like [`pod_owned`], for an object the caller has already checked decodes
/// as a `Pod` (see `admission::pod::mutation_value`, which also leaves out
/// the `managedFields` no mutation reads).
pub fn pod_checked(object: Value, input: &Input<'_>) -> Result<Outcome> {
    harden(object, &[], "", input)
}

/// Mutates any object unroot knows: a Pod, or the pod template of a workload
/// (Deployment, Job, CronJob, …). Objects of other kinds come back unchanged.
pub fn object(object: &Value, input: &Input<'_>) -> Result<Outcome> {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind == "Pod" {
        return pod(object, input);
    }
    let Some(kind) = workload::Kind::from_kind(kind) else {
        return Ok(Outcome::unchanged(object.clone()));
    };
    // The one template extraction: what the webhook and `unroot check` see.
    match workload::pod_template_of(object) {
        Ok(Some(_)) => {}
        Ok(None) => return Ok(Outcome::unchanged(object.clone())),
        Err(e) => {
            return Err(Error::Template {
                kind: kind.as_str(),
                message: e.to_string(),
            });
        }
    }
    let template = kind.template_path();
    let at: Vec<Seg<'_>> = template.iter().map(|k| Seg::Key(k)).collect();
    let display = format!("{}.", template.join("."));
    harden(object.clone(), &at, &display, input)
}

/// The ephemeral containers of a pod, as decoded to check them.
type Ephemeral = Vec<k8s_openapi::api::core::v1::EphemeralContainer>;

/// Hardens the ephemeral containers added by an UPDATE of the
/// `pods/ephemeralcontainers` subresource. `object` is either a whole Pod
/// (Kubernetes ≥ 1.22) or an `EphemeralContainers` object (1.20–1.21);
/// containers already present in `old` (by name) are left alone, since a
/// running container's spec cannot change.
pub fn ephemeral_containers(
    object: &Value,
    old: Option<&Value>,
    input: &Input<'_>,
) -> Result<Outcome> {
    let is_pod = object.get("kind").and_then(Value::as_str) != Some("EphemeralContainers");
    if !is_pod {
        // Kubernetes 1.20/1.21 forbid any securityContext on an ephemeral
        // container ("cannot be set for an Ephemeral Container"): hardening
        // it would only make the request invalid. Validation still evaluates
        // the whole pod with the new container.
        return Ok(Outcome::unchanged(object.clone()));
    }
    let list: Vec<Seg<'_>> = if is_pod {
        vec![Seg::Key("spec")]
    } else {
        vec![]
    };
    let found = patch::lookup(
        object,
        &[list.as_slice(), &[Seg::Key("ephemeralContainers")]].concat(),
    );
    if let Some(found) = found {
        Ephemeral::deserialize(found).map_err(|source| {
            let at = if is_pod {
                "spec.ephemeralContainers"
            } else {
                "ephemeralContainers"
            };
            Error::decode_under::<Ephemeral>("ephemeral containers", at, found, source)
        })?;
    }
    let old_names: Vec<String> = old
        .and_then(|o| {
            patch::lookup(
                o,
                &[list.as_slice(), &[Seg::Key("ephemeralContainers")]].concat(),
            )
        })
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let windows = is_pod && is_windows(object, &[]);
    let display = if is_pod { "spec." } else { "" };
    let mut builder = Builder::new(object.clone());
    let mut warnings = Vec::new();
    let added: Vec<_> = containers(&builder, &list, display, &["ephemeralContainers"])
        .into_iter()
        .filter(|c| !old_names.contains(&c.name))
        .collect();
    let (mode, _) = stage_hardening(&mut builder, input, true, &[], &mut warnings, |ctx| {
        for c in &added {
            ctx.harden_container(c, windows);
        }
    });
    let applied = if builder.is_empty() {
        Vec::new()
    } else {
        vec![Applied::SecurityContext]
    };
    let (patch, object) = builder.finish();
    Ok(Outcome {
        patch,
        object,
        warnings,
        identity: None,
        applied,
        harden: Some(mode),
    })
}

pub(crate) fn is_windows(object: &Value, pod: &[Seg<'_>]) -> bool {
    let mut path = pod.to_vec();
    path.extend([Seg::Key("spec"), Seg::Key("os"), Seg::Key("name")]);
    patch::lookup(object, &path).and_then(Value::as_str) == Some("windows")
}

/// Mounts the trust bundle when the namespace is selected; `true` when that
/// changed the pod.
fn mount_trust_bundle(
    builder: &mut Builder,
    spec: &[Seg<'_>],
    display: &str,
    input: &Input<'_>,
    skip: Option<&[Seg<'_>]>,
    warnings: &mut Vec<String>,
) -> bool {
    let bundle = &input.policy.trust_bundle;
    if !bundle.enabled || !selector_matches(&bundle.namespace_selector, input.namespace_labels) {
        return false;
    }
    let before = builder.changes();
    trust_bundle::add_trust_bundle(builder, spec, display, bundle, skip, warnings);
    builder.changes() != before
}

/// Runs every pod mutation on the pod object at `pod` inside `object`.
fn harden(object: Value, pod: &[Seg<'_>], display: &str, input: &Input<'_>) -> Result<Outcome> {
    let mut annotations = pod.to_vec();
    annotations.extend([Seg::Key("metadata"), Seg::Key("annotations")]);
    let mut mirror = annotations.clone();
    mirror.push(Seg::Key(MIRROR_ANNOTATION));
    if patch::lookup(&object, &mirror).is_some() {
        return Ok(Outcome::unchanged(object));
    }
    let policy = input.policy;
    let windows = is_windows(&object, pod);
    let claimed = provisioning::claimed_identity(patch::lookup(&object, &annotations), input)
        .map_err(Error::Forbidden)?;
    let mut builder = Builder::new(object);
    let mut warnings = Vec::new();
    let mut spec = pod.to_vec();
    spec.push(Seg::Key("spec"));

    let mut skip = None;
    let mut identity = None;
    let mut applied = Vec::new();
    if let Some(id) = claimed {
        if windows {
            return Err(Error::Forbidden(vec![Denial {
                rule: Rule::Unsupported,
                message: format!(
                    "{display}spec.os.name is windows: identity provisioning (passwd, group, uid) needs a Linux pod"
                ),
            }]));
        }
        let index = provisioning::provision(
            &mut builder,
            &spec,
            display,
            &id,
            &policy.provisioning,
            &mut warnings,
        )
        .map_err(Error::Forbidden)?;
        let mut path = spec.clone();
        path.extend([Seg::Key("initContainers"), Seg::Index(index)]);
        skip = Some(path);
        // Mutations never change the namespace: the working copy's is the
        // object's.
        let namespace = builder
            .doc()
            .pointer("/metadata/namespace")
            .and_then(Value::as_str);
        identity = Some(provisioning::identity_config_map(
            &id,
            &policy.provisioning,
            namespace,
        ));
        applied.push(Applied::Provisioning);
    }

    if !windows
        && mount_trust_bundle(
            &mut builder,
            &spec,
            display,
            input,
            skip.as_deref(),
            &mut warnings,
        )
    {
        applied.push(Applied::TrustBundle);
    }

    // The provisioning container is exactly what the policy pins: hardening
    // must neither warn about its uid 0 nor rewrite it.
    let found: Vec<_> = containers(
        &builder,
        &spec,
        &format!("{display}spec."),
        &CONTAINER_LISTS,
    )
    .into_iter()
    .filter(|c| Some(c.path.as_slice()) != skip.as_deref())
    .collect();
    // A provisioned pod's volumes belong to its user unless the policy says
    // otherwise.
    let fs_group = identity.is_none() || policy.provisioning.set_fs_group;
    let (mode, hardened) =
        stage_hardening(&mut builder, input, fs_group, pod, &mut warnings, |ctx| {
            // Containers first: with `override`, fixing a container's
            // runAsUser=0 decides whether the pod can get runAsNonRoot.
            for c in &found {
                ctx.harden_container(c, windows);
            }
            ctx.harden_pod(pod, display, windows);
        });
    if hardened {
        applied.push(Applied::SecurityContext);
    }
    if !builder.is_empty() {
        let mut marker = annotations;
        marker.push(Seg::Key(MUTATED_ANNOTATION));
        builder.ensure(&marker, Value::String("true".to_owned()));
    }
    let (patch, object) = builder.finish();
    Ok(Outcome {
        patch,
        object,
        warnings,
        identity,
        applied,
        harden: Some(mode),
    })
}

/// Runs the securityContext pass `pass` as the namespace's hardening mode
/// says, with the namespace's settings (top level and override), and
/// returns the mode and whether `builder` changed. `on`: on `builder`.
/// `warn`: on a copy, leaving `builder` alone; the pass's patch becomes one
/// warning per change (see [`describe_changes`]), so the warnings say
/// exactly what `on` would do. `off`: not at all. `pod` is the path of the
/// pod object in the document (`[]` for a Pod).
fn stage_hardening(
    builder: &mut Builder,
    input: &Input<'_>,
    fs_group: bool,
    pod: &[Seg<'_>],
    warnings: &mut Vec<String>,
    pass: impl FnOnce(&mut Context<'_>),
) -> (HardenMode, bool) {
    let mode = input.policy.harden_mode(input.namespace_labels);
    let settings: &SecurityContext = &input.policy.security_context_for(input.namespace_labels);
    let changed = match mode {
        HardenMode::Off => false,
        HardenMode::On => {
            let before = builder.changes();
            pass(&mut Context {
                builder: &mut *builder,
                settings,
                warnings,
                fs_group,
            });
            builder.changes() != before
        }
        HardenMode::Warn => {
            let start = builder.doc().clone();
            let mut probe = Builder::new(start.clone());
            let mut notes = Vec::new();
            pass(&mut Context {
                builder: &mut probe,
                settings,
                warnings: &mut notes,
                fs_group,
            });
            let (patch, _) = probe.finish();
            warnings.extend(describe_changes(start, &patch, pod));
            // What the pass leaves as set stays true; what it says it
            // changed is now named by the lines above.
            warnings.extend(notes.into_iter().filter(|n| !n.ends_with(CHANGE_NOTE)));
            false
        }
    };
    (mode, changed)
}

/// One line per field `patch` changes in `doc` (the pod object at `pod`):
/// `would set securityContext.runAsNonRoot=true on pod`,
/// `would set securityContext.allowPrivilegeEscalation=false on container "app"`,
/// `would set securityContext.runAsUser=65532 on container "app" (instead of 0)`,
/// `would add "ALL" to securityContext.capabilities.drop on container "app"`,
/// `would remove "NET_RAW" from securityContext.capabilities.add on container "app"`.
/// An added object is named field by field. The operations are replayed in
/// order, so each is described against the document it applies to.
#[must_use]
pub fn describe_changes(mut doc: Value, patch: &Patch, pod: &[Seg<'_>]) -> Vec<String> {
    use json_patch::PatchOperation;
    let json = |v: &Value| serde_json::to_string(v).unwrap_or_default();
    let mut lines = Vec::new();
    for op in &patch.0 {
        let tokens: Vec<String> = op
            .path()
            .tokens()
            .map(|t| t.decoded().into_owned())
            .collect();
        let (target, field) = describe_path(&doc, pod, &tokens);
        let current = doc.pointer(op.path().as_str()).cloned();
        let parent_is_array = tokens.len() > 1
            && doc
                .pointer(&parent_pointer(op.path().as_str()))
                .is_some_and(Value::is_array);
        match op {
            // `field` names the list: indexes are not part of field names.
            PatchOperation::Add(add) if parent_is_array => {
                lines.push(format!(
                    "would add {} to {field} on {target}",
                    json(&add.value)
                ));
            }
            PatchOperation::Add(add) => {
                let mut leaves = Vec::new();
                flatten(&field, &add.value, &mut leaves);
                for (field, value) in leaves {
                    lines.push(format!("would set {field}={} on {target}", json(value)));
                }
            }
            PatchOperation::Replace(replace) => lines.push(match &current {
                Some(old) => format!(
                    "would set {field}={} on {target} (instead of {})",
                    json(&replace.value),
                    json(old)
                ),
                None => format!("would set {field}={} on {target}", json(&replace.value)),
            }),
            PatchOperation::Remove(_) if parent_is_array => {
                let old = current.as_ref().map(json).unwrap_or_default();
                lines.push(format!("would remove {old} from {field} on {target}"));
            }
            PatchOperation::Remove(_) => {
                lines.push(format!("would remove {field} from {target}"));
            }
            other => lines.push(format!("would change {field} on {target} ({other:?})")),
        }
        // Replay, so the next operation is read against its own document.
        let _ = json_patch::patch(&mut doc, std::slice::from_ref(op));
    }
    lines
}

/// `/a/b/c` → `/a/b`.
fn parent_pointer(pointer: &str) -> String {
    pointer
        .rsplit_once('/')
        .map_or_else(String::new, |(parent, _)| parent.to_owned())
}

/// Who a patch path is about (`pod`, `container "app"`) and the field below
/// it, dotted (`securityContext.capabilities.drop`); array indexes inside the
/// field are dropped from the name.
fn describe_path(doc: &Value, pod: &[Seg<'_>], path: &[String]) -> (String, String) {
    let prefix: Vec<String> = pod
        .iter()
        .map(|s| match s {
            Seg::Key(k) => (*k).to_owned(),
            Seg::Index(i) => i.to_string(),
        })
        .chain(["spec".to_owned()])
        .collect();
    let dotted = |rest: &[String]| {
        rest.iter()
            .filter(|t| t.parse::<usize>().is_err())
            .cloned()
            .collect::<Vec<_>>()
            .join(".")
    };
    let Some(rest) = path.strip_prefix(prefix.as_slice()) else {
        return ("pod".to_owned(), dotted(path));
    };
    match rest {
        [list, index, field @ ..] if CONTAINER_LISTS.contains(&list.as_str()) => {
            let pointer = format!("/{}/{list}/{index}/name", prefix.join("/"));
            let name = doc
                .pointer(&pointer)
                .and_then(Value::as_str)
                .unwrap_or_default();
            (format!("container {name:?}"), dotted(field))
        }
        _ => ("pod".to_owned(), dotted(rest)),
    }
}

/// The leaves of `value` below `field`: an object is named key by key, any
/// other value (a list included) is one leaf.
fn flatten<'v>(field: &str, value: &'v Value, out: &mut Vec<(String, &'v Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                let name = if field.is_empty() {
                    key.clone()
                } else {
                    format!("{field}.{key}")
                };
                flatten(&name, v, out);
            }
        }
        _ => out.push((field.to_owned(), value)),
    }
}
