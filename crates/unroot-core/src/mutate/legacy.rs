//! The mutation as it was before the [`crate::view`]: a `Value` tree, a
//! patch builder over it, and a typed decode to check it. Kept, in tests
//! only, as the reference the differential test (`mutate::differential`)
//! holds the new path to.
#![allow(dead_code, clippy::pedantic)]

mod mounts;
mod patch;
mod provisioning_apply;
mod security_context;
mod trust_bundle;

use json_patch::Patch;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use serde::Deserialize;
use serde_json::Value;

use self::patch::{Builder, Seg};
use self::security_context::{CHANGE_NOTE, CONTAINER_LISTS, Context, containers};
use super::provisioning::{self, Denial, Rule};
use super::{Applied, Error, Input, Result};
use crate::policy::{HardenMode, SecurityContext, selector_matches};
use crate::workload;

use super::{MIRROR_ANNOTATION, MUTATED_ANNOTATION};

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

/// Mutates a Pod (the whole object as JSON): provisioning, trust bundle,
/// securityContext hardening.
pub fn pod(object: &Value, input: &Input<'_>) -> Result<Outcome> {
    pod_owned(object.clone(), input)
}

/// Like [`pod`], taking the object by value: the patch is built against it
/// in place (no copy of the pod), and it comes back patched in
/// [`Outcome::object`].
pub fn pod_owned(object: Value, input: &Input<'_>) -> Result<Outcome> {
    Pod::deserialize(&object).map_err(|source| decode_error("Pod", "", source))?;
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
            decode_error("ephemeral containers", at, source)
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
        let index = provisioning_apply::provision(
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

/// A decode failure (the reference does not name the field).
fn decode_error(what: &str, at: &str, source: serde_json::Error) -> Error {
    Error::Decode {
        what: what.to_owned(),
        at: if at.is_empty() {
            String::new()
        } else {
            format!("{at}: ")
        },
        source,
    }
}
