//! Pod mutations, expressed as a minimal, idempotent JSON Patch.
//!
//! Pure and synchronous: the admission shell hands in the pod's [`view`],
//! the policy, the namespace's labels and the requester, and gets back the
//! patch, the warnings and the identity ConfigMap to apply. Each mutation
//! reads the view, changes it as its working copy, and writes its
//! operations ([`writer`]); the patch is then written once, into the answer.
//!
//! Order matters: provisioning first (it inserts the init container at the
//! head of `initContainers`, and sets the pod's user from the identity), then
//! the trust bundle, then the securityContext hardening, which then finds the
//! identity's ids already set and leaves the provisioning container alone.

#[cfg(test)]
mod differential;
pub mod harden;
#[cfg(test)]
mod legacy;
mod mounts;
pub mod provisioning;
pub mod trust_bundle;
pub mod writer;

use std::collections::BTreeMap;

use json_patch::Patch;
use k8s_openapi::api::core::v1::ConfigMap;
use serde::Deserialize;
use serde_json::Value;

use self::harden::{CHANGE_NOTE, CONTAINER_LISTS, Context, Place};
pub use self::provisioning::{
    Denial, Identity, Requester, Rule, Vouched, identity_annotations_changed, provenance_index,
    vouch,
};
use self::writer::{Seg, Writer};
use crate::policy::{Document, HardenMode, SecurityContext, selector_matches};
use crate::{view, workload};

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
    /// `what`, the JSON text `raw`, does not decode as `T`: `source`, naming
    /// the field at fault (found by decoding `raw` again while tracking the
    /// path: only a failure pays for that; for a syntax error, the field
    /// where it is).
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

/// What a mutation of a pod's view produced.
#[derive(Debug)]
pub struct Planned {
    /// The patch (empty when nothing changes).
    pub writer: Writer,
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

impl Planned {
    fn unchanged() -> Self {
        Self {
            writer: Writer::new(),
            warnings: Vec::new(),
            identity: None,
            applied: Vec::new(),
            harden: None,
        }
    }
}

/// What a mutation of an object (JSON) produced: [`Planned`], with the patch
/// as `json_patch` types and applied to the object.
#[derive(Debug)]
pub struct Outcome {
    /// The RFC 6902 patch (empty when nothing changes).
    pub patch: Patch,
    /// The object with the patch applied.
    pub object: Value,
    /// One line per explicit choice that was left or overridden.
    pub warnings: Vec<String>,
    /// See [`Planned::identity`].
    pub identity: Option<ConfigMap>,
    /// Which mutations changed the object.
    pub applied: Vec<Applied>,
    /// See [`Planned::harden`].
    pub harden: Option<HardenMode>,
}

impl Planned {
    /// The patch as `json_patch` types, applied to `object` (the JSON the
    /// checked pod was read from).
    pub fn apply_to(self, object: &Value) -> Result<Outcome> {
        let planned = self;
        let mut patched = object.clone();
        planned
            .writer
            .apply(&mut patched)
            .map_err(|e| Error::Template {
                kind: "object",
                message: format!("the patch does not apply to it: {e}"),
            })?;
        Ok(Outcome {
            patch: planned.writer.to_patch(),
            object: patched,
            warnings: planned.warnings,
            identity: planned.identity,
            applied: planned.applied,
            harden: planned.harden,
        })
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

/// Where the pod is in the document it was read from: the path of its
/// metadata and spec, and the field path prefix of messages.
#[derive(Debug)]
struct Where {
    metadata: Vec<Seg>,
    spec: Vec<Seg>,
    display: String,
}

impl Where {
    /// A Pod: its metadata and spec at the top.
    fn pod() -> Self {
        Self {
            metadata: vec![Seg::Key("metadata")],
            spec: vec![Seg::Key("spec")],
            display: String::new(),
        }
    }
}

/// A pod checked for mutation: decoded once into the [`view`], with where
/// its metadata and spec sit in the document it came from. An object of a
/// kind that carries no pod (or a workload without a template) checks as
/// nothing to mutate. [`pod`] takes it.
#[derive(Debug)]
pub struct Checked<'a> {
    pod: Option<(view::Pod<'a>, Where)>,
}

impl<'a> Checked<'a> {
    /// A Pod in JSON text (what `/mutate` reads), decoded into the view; an
    /// error names the field at fault.
    pub fn text(text: &'a str) -> Result<Self> {
        let view = view::decode(text).map_err(|e| view_error("Pod", "", e))?;
        Ok(Self {
            pod: Some((view, Where::pod())),
        })
    }
}

impl Checked<'static> {
    /// Any object unroot knows, as JSON: a Pod, or the pod template of a
    /// workload (Deployment, Job, CronJob, …). Objects of other kinds, and
    /// workloads without a template, check as nothing to mutate. What
    /// `unroot mutate` and the tests use.
    pub fn object(object: &Value) -> Result<Self> {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if kind == "Pod"
            || kind.is_empty()
                && object
                    .get("spec")
                    .is_some_and(|s| s.get("containers").is_some())
        {
            let view = decode_pod("Pod", "", object)?;
            return Ok(Self {
                pod: Some((view, Where::pod())),
            });
        }
        let nothing = Self { pod: None };
        let Some(kind) = workload::Kind::from_kind(kind) else {
            return Ok(nothing);
        };
        // The one template extraction: what the webhook and `unroot check` see.
        match workload::pod_template_of(object) {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(nothing),
            Err(e) => {
                return Err(Error::Template {
                    kind: kind.as_str(),
                    message: e.to_string(),
                });
            }
        }
        let template = kind.template_path();
        let mut at: Vec<Seg> = template.iter().map(|k| Seg::Key(k)).collect();
        let display = format!("{}.", template.join("."));
        let mut value = object;
        for k in template {
            value = value.get(*k).unwrap_or(&Value::Null);
        }
        let view = decode_pod("pod template", &display, value)?;
        let mut spec = at.clone();
        spec.push(Seg::Key("spec"));
        at.push(Seg::Key("metadata"));
        let place = Where {
            metadata: at,
            spec,
            display,
        };
        Ok(Self {
            pod: Some((view, place)),
        })
    }
}

/// Mutates a checked pod: provisioning, trust bundle, securityContext
/// hardening. The one entry point of pod mutation (the ephemeral containers
/// subresource, which hardens only the containers an UPDATE adds, is
/// [`ephemeral_containers`]). For JSON in and out, [`Planned::apply_to`].
pub fn pod(pod: Checked<'_>, input: &Input<'_>) -> Result<Planned> {
    match pod.pod {
        Some((view, place)) => mutate(view, &place, input),
        None => Ok(Planned::unchanged()),
    }
}

/// `value` as a pod's view; an error names the field at fault below `at`.
fn decode_pod(what: &str, at: &str, value: &Value) -> Result<view::Pod<'static>> {
    view::decode_value(value).map_err(|e| view_error(what, at, e))
}

/// A view's decode error as this module's.
fn view_error(what: &str, prefix: &str, e: view::Error) -> Error {
    match e {
        view::Error::Decode { at, source } => Error::Decode {
            what: what.to_owned(),
            at: if prefix.is_empty() || at.is_empty() {
                format!("{}{at}", if at.is_empty() { "" } else { prefix })
            } else {
                format!("{prefix}{at}")
            },
            source,
        },
        view::Error::NotAPod { kind, .. } => Error::Decode {
            what: what.to_owned(),
            at: String::new(),
            source: serde::de::Error::invalid_value(serde::de::Unexpected::Str(&kind), &"Pod"),
        },
    }
}

/// The names of a pod's ephemeral containers, and whether it is a whole pod.
#[derive(Deserialize)]
struct EphemeralNames<'a> {
    #[serde(default, borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    spec: Option<NamesSpec<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NamesSpec<'a> {
    #[serde(default, borrow)]
    ephemeral_containers: Option<Vec<Named<'a>>>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(default, borrow)]
    name: std::borrow::Cow<'a, str>,
}

/// Hardens the ephemeral containers added by an UPDATE of the
/// `pods/ephemeralcontainers` subresource. `object` is either a whole Pod
/// (Kubernetes ≥ 1.22) or an `EphemeralContainers` object (1.20–1.21);
/// containers already present in `old` (by name) are left alone, since a
/// running container's spec cannot change.
pub fn ephemeral_containers(object: &str, old: Option<&str>, input: &Input<'_>) -> Result<Planned> {
    let head: EphemeralNames<'_> = serde_json::from_str(object)
        .map_err(|source| Error::decode_raw::<Value>("object", object, source))?;
    if head.kind.as_deref() == Some("EphemeralContainers") {
        // Kubernetes 1.20/1.21 forbid any securityContext on an ephemeral
        // container ("cannot be set for an Ephemeral Container"): hardening
        // it would only make the request invalid. Validation still evaluates
        // the whole pod with the new container.
        return Ok(Planned::unchanged());
    }
    let mut pod = view::decode(object).map_err(|e| view_error("Pod", "", e))?;
    let old_names: Vec<String> = old
        .and_then(|o| serde_json::from_str::<EphemeralNames<'_>>(o).ok())
        .and_then(|o| o.spec)
        .and_then(|s| s.ephemeral_containers)
        .map(|list| list.into_iter().map(|c| c.name.into_owned()).collect())
        .unwrap_or_default();
    let windows = pod.is_windows();
    let spec = vec![Seg::Key("spec")];
    let added: Vec<Place> = harden::places(&pod.spec, "spec.", &["ephemeralContainers"])
        .into_iter()
        .filter(|p| {
            harden::container_list(&pod.spec, p.list)
                .and_then(|l| l.get(p.index))
                .is_some_and(|c| !old_names.iter().any(|n| *n == c.name))
        })
        .collect();
    let mut writer = Writer::new();
    let mut warnings = Vec::new();
    let (mode, _) = stage_hardening(
        &mut pod,
        &mut writer,
        input,
        (&spec, ""),
        true,
        &mut warnings,
        |ctx| {
            for place in &added {
                ctx.harden_container(place, windows);
            }
        },
    );
    let applied = if writer.is_empty() {
        Vec::new()
    } else {
        vec![Applied::SecurityContext]
    };
    Ok(Planned {
        writer,
        warnings,
        identity: None,
        applied,
        harden: Some(mode),
    })
}

/// Runs every pod mutation on `pod`, in order: provisioning, the trust
/// bundle, the securityContext hardening.
fn mutate(mut pod: view::Pod<'_>, place: &Where, input: &Input<'_>) -> Result<Planned> {
    if pod.annotation(MIRROR_ANNOTATION).is_some() {
        return Ok(Planned::unchanged());
    }
    let windows = pod.is_windows();
    let mut planned = Planned::unchanged();
    let skip = provision(&mut pod, place, input, windows, &mut planned)?;
    let bundle = &input.policy.trust_bundle;
    if !windows
        && bundle.enabled
        && selector_matches(&bundle.namespace_selector, input.namespace_labels)
    {
        let before = planned.writer.changes();
        trust_bundle::add_trust_bundle(
            &mut pod,
            &mut planned.writer,
            &place.spec,
            &place.display,
            bundle,
            skip,
            &mut planned.warnings,
        );
        if planned.writer.changes() != before {
            planned.applied.push(Applied::TrustBundle);
        }
    }
    harden(&mut pod, place, input, skip, &mut planned);
    if !planned.writer.is_empty() {
        mark_mutated(&pod, place, &mut planned.writer);
    }
    Ok(planned)
}

/// Provisions the identity the pod claims, if it claims one: the
/// identity's ids, files, home and init container, and the ConfigMap the
/// shell applies. Returns the index of the provisioning init container.
fn provision(
    pod: &mut view::Pod<'_>,
    place: &Where,
    input: &Input<'_>,
    windows: bool,
    planned: &mut Planned,
) -> Result<Option<usize>> {
    let display = place.display.as_str();
    let annotations = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| serde_json::to_value(a).ok());
    let claimed =
        provisioning::claimed_identity(annotations.as_ref(), input).map_err(Error::Forbidden)?;
    let Some(id) = claimed else {
        return Ok(None);
    };
    if windows {
        return Err(Error::Forbidden(vec![Denial {
            rule: Rule::Unsupported,
            message: format!(
                "{display}spec.os.name is windows: identity provisioning (passwd, group, uid) needs a Linux pod"
            ),
        }]));
    }
    let policy = &input.policy.provisioning;
    let index = provisioning::provision(
        pod,
        &mut planned.writer,
        &place.spec,
        display,
        &id,
        policy,
        &mut planned.warnings,
    )
    .map_err(Error::Forbidden)?;
    planned.identity = Some(provisioning::identity_config_map(
        &id,
        policy,
        pod.metadata.namespace.as_deref(),
    ));
    planned.applied.push(Applied::Provisioning);
    Ok(Some(index))
}

/// The securityContext hardening of every container but the provisioning
/// one (`skip`), then of the pod.
fn harden(
    pod: &mut view::Pod<'_>,
    place: &Where,
    input: &Input<'_>,
    skip: Option<usize>,
    planned: &mut Planned,
) {
    let display = place.display.as_str();
    let windows = pod.is_windows();
    // The provisioning container is exactly what the policy pins: hardening
    // must neither warn about its uid 0 nor rewrite it.
    let found: Vec<Place> = harden::places(&pod.spec, &format!("{display}spec."), &CONTAINER_LISTS)
        .into_iter()
        .filter(|p| !(p.list == "initContainers" && Some(p.index) == skip))
        .collect();
    // A provisioned pod's volumes belong to its user unless the policy says
    // otherwise.
    let fs_group = planned.identity.is_none() || input.policy.provisioning.set_fs_group;
    let (mode, hardened) = stage_hardening(
        pod,
        &mut planned.writer,
        input,
        (&place.spec, display),
        fs_group,
        &mut planned.warnings,
        |ctx| {
            // Containers first: with `override`, fixing a container's
            // runAsUser=0 decides whether the pod can get runAsNonRoot.
            for p in &found {
                ctx.harden_container(p, windows);
            }
            ctx.harden_pod(windows);
        },
    );
    if hardened {
        planned.applied.push(Applied::SecurityContext);
    }
    planned.harden = Some(mode);
}

/// Sets [`MUTATED_ANNOTATION`] on a pod the patch changes.
fn mark_mutated(pod: &view::Pod<'_>, place: &Where, writer: &mut Writer) {
    if pod.annotation(MUTATED_ANNOTATION).is_some() {
        return;
    }
    let mut path = place.metadata.clone();
    path.extend([
        Seg::Key("annotations"),
        Seg::Name(MUTATED_ANNOTATION.to_owned()),
    ]);
    let exists = place.metadata.len() - usize::from(!pod.metadata.present)
        + usize::from(pod.metadata.annotations.is_some());
    writer.add(&path, exists, Value::String("true".to_owned()));
}

/// Runs the securityContext pass `pass` as the namespace's hardening mode
/// says, with the namespace's settings (top level and override), and
/// returns the mode and whether `writer` changed. `on`: on `pod` and
/// `writer`. `warn`: on a copy, leaving both alone; the pass's patch becomes
/// one warning per change ([`Writer::describe`]), so the warnings say
/// exactly what `on` would do. `off`: not at all. `at` is the path of the
/// pod spec and the message prefix of the pod object.
fn stage_hardening(
    pod: &mut view::Pod<'_>,
    writer: &mut Writer,
    input: &Input<'_>,
    at: (&[Seg], &str),
    fs_group: bool,
    warnings: &mut Vec<String>,
    pass: impl FnOnce(&mut Context<'_, '_>),
) -> (HardenMode, bool) {
    let (spec_path, display) = at;
    let mode = input.policy.harden_mode(input.namespace_labels);
    let settings: &SecurityContext = &input.policy.security_context_for(input.namespace_labels);
    let changed = match mode {
        HardenMode::Off => false,
        HardenMode::On => {
            let before = writer.changes();
            pass(&mut Context {
                pod,
                spec_path,
                display,
                writer: &mut *writer,
                settings,
                warnings,
                fs_group,
            });
            writer.changes() != before
        }
        HardenMode::Warn => {
            let mut probe_pod = pod.clone();
            let mut probe = Writer::new();
            let mut notes = Vec::new();
            pass(&mut Context {
                pod: &mut probe_pod,
                spec_path,
                display,
                writer: &mut probe,
                settings,
                warnings: &mut notes,
                fs_group,
            });
            warnings.extend(probe.describe(spec_path, |list, index| {
                harden::container_list(&pod.spec, list)
                    .and_then(|l| l.get(index))
                    .map(|c| c.name.to_string())
                    .unwrap_or_default()
            }));
            // What the pass leaves as set stays true; what it says it
            // changed is now named by the lines above.
            warnings.extend(notes.into_iter().filter(|n| !n.ends_with(CHANGE_NOTE)));
            false
        }
    };
    (mode, changed)
}
