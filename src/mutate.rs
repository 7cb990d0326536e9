//! Pod mutations, expressed as a minimal, idempotent JSON Patch.
//!
//! Pure and synchronous: the admission shell hands in the object and the
//! policy, and gets back the patch, the patched object and the warnings.

pub mod patch;
pub mod security_context;

use json_patch::Patch;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use serde::Deserialize;
use serde_json::Value;

use self::patch::{Builder, Seg};
use self::security_context::{CONTAINER_LISTS, Context, containers};
use crate::policy::Document;
use crate::workload;

/// Annotation a mirror (static) pod carries; such pods are never mutated.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Annotation unroot sets on every object it changed.
pub const MUTATED_ANNOTATION: &str = "unroot.dev/mutated";

/// Errors from mutating an object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object does not deserialize as the type its kind names.
    #[error("failed to decode {what}: {source}")]
    Decode {
        /// What was being decoded, e.g. `Pod` or `Deployment pod template`.
        what: String,
        /// Why it failed.
        #[source]
        source: serde_json::Error,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a mutation produced.
#[derive(Debug)]
pub struct Outcome {
    /// The RFC 6902 patch (empty when nothing changes).
    pub patch: Patch,
    /// The object with the patch applied.
    pub object: Value,
    /// One line per explicit insecure choice that was left or overridden.
    pub warnings: Vec<String>,
}

impl Outcome {
    fn unchanged(object: &Value) -> Self {
        Self {
            patch: Patch(Vec::new()),
            object: object.clone(),
            warnings: Vec::new(),
        }
    }
}

/// Hardens a Pod (the whole object as JSON).
pub fn pod(object: &Value, policy: &Document) -> Result<Outcome> {
    Pod::deserialize(object).map_err(|source| Error::Decode {
        what: "Pod".to_owned(),
        source,
    })?;
    Ok(harden(object, &[], "", policy))
}

/// Hardens any object unroot knows: a Pod, or the pod template of a workload
/// (Deployment, Job, CronJob, …). Objects of other kinds come back unchanged.
pub fn object(object: &Value, policy: &Document) -> Result<Outcome> {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind == "Pod" {
        return pod(object, policy);
    }
    let Some(template) = workload::template_path(kind) else {
        return Ok(Outcome::unchanged(object));
    };
    let at: Vec<Seg<'_>> = template.iter().map(|k| Seg::Key(k)).collect();
    let Some(value) = patch::lookup(object, &at) else {
        return Ok(Outcome::unchanged(object));
    };
    PodTemplateSpec::deserialize(value).map_err(|source| Error::Decode {
        what: format!("{kind} pod template ({})", template.join(".")),
        source,
    })?;
    let display = format!("{}.", template.join("."));
    Ok(harden(object, &at, &display, policy))
}

/// Hardens the ephemeral containers added by an UPDATE of the
/// `pods/ephemeralcontainers` subresource. `object` is either a whole Pod
/// (Kubernetes ≥ 1.22) or an `EphemeralContainers` object (1.20–1.21);
/// containers already present in `old` (by name) are left alone, since a
/// running container's spec cannot change.
pub fn ephemeral_containers(
    object: &Value,
    old: Option<&Value>,
    policy: &Document,
) -> Result<Outcome> {
    let is_pod = object.get("kind").and_then(Value::as_str) != Some("EphemeralContainers");
    let list: Vec<Seg<'_>> = if is_pod {
        vec![Seg::Key("spec")]
    } else {
        vec![]
    };
    let decoded: std::result::Result<Vec<k8s_openapi::api::core::v1::EphemeralContainer>, _> =
        patch::lookup(
            object,
            &[list.as_slice(), &[Seg::Key("ephemeralContainers")]].concat(),
        )
        .map_or(Ok(Vec::new()), Vec::deserialize);
    decoded.map_err(|source| Error::Decode {
        what: "ephemeral containers".to_owned(),
        source,
    })?;
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
    let mut ctx = Context {
        builder: &mut builder,
        policy,
        warnings: &mut warnings,
    };
    for c in &added {
        ctx.harden_container(c, windows);
    }
    let (patch, object) = builder.finish();
    Ok(Outcome {
        patch,
        object,
        warnings,
    })
}

fn is_windows(object: &Value, pod: &[Seg<'_>]) -> bool {
    let mut path = pod.to_vec();
    path.extend([Seg::Key("spec"), Seg::Key("os"), Seg::Key("name")]);
    patch::lookup(object, &path).and_then(Value::as_str) == Some("windows")
}

/// Runs every pod mutation on the pod object at `pod` inside `object`.
fn harden(object: &Value, pod: &[Seg<'_>], display: &str, policy: &Document) -> Outcome {
    let mut annotations = pod.to_vec();
    annotations.extend([Seg::Key("metadata"), Seg::Key("annotations")]);
    let mut mirror = annotations.clone();
    mirror.push(Seg::Key(MIRROR_ANNOTATION));
    if patch::lookup(object, &mirror).is_some() {
        return Outcome::unchanged(object);
    }
    let windows = is_windows(object, pod);
    let mut builder = Builder::new(object.clone());
    let mut warnings = Vec::new();
    let mut spec = pod.to_vec();
    spec.push(Seg::Key("spec"));
    let found = containers(
        &builder,
        &spec,
        &format!("{display}spec."),
        &CONTAINER_LISTS,
    );
    let mut ctx = Context {
        builder: &mut builder,
        policy,
        warnings: &mut warnings,
    };
    // Containers first: with `override`, fixing a container's runAsUser=0
    // decides whether the pod can get runAsNonRoot.
    for c in &found {
        ctx.harden_container(c, windows);
    }
    ctx.harden_pod(pod, display, windows);
    if !builder.is_empty() {
        let mut marker = annotations;
        marker.push(Seg::Key(MUTATED_ANNOTATION));
        builder.ensure(&marker, Value::String("true".to_owned()));
    }
    let (patch, object) = builder.finish();
    Outcome {
        patch,
        object,
        warnings,
    }
}
