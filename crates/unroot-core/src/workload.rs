//! The workload kinds that carry a pod template, where they keep it, and the
//! one way unroot extracts it (the webhook, `unroot check` and `unroot
//! mutate` all use [`template`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use serde_json::Value;
use serde_json::value::RawValue;

/// Why a pod template could not be extracted; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object (or an object on the template's path) does not decode.
    #[error("failed to decode object: {0}")]
    Decode(String),
    /// The template does not decode as a PodTemplateSpec.
    #[error("failed to decode pod template: {0}")]
    Template(String),
}

/// `T` from raw JSON; the error names the field (`spec.containers[0].image:
/// invalid type: ...`), prefixed with `at`.
fn decode<'de, T: serde::Deserialize<'de>>(raw: &'de str, at: &str) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_str(raw);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        // The position in a re-serialized document means nothing to a user.
        let inner = e.into_inner().to_string();
        let inner = match inner.rfind(" at line ") {
            Some(at) => inner[..at].to_owned(),
            None => inner,
        };
        match (at.is_empty(), path.as_str()) {
            (true, ".") => inner,
            (true, path) => format!("{path}: {inner}"),
            (false, ".") => format!("{at}: {inner}"),
            (false, path) => format!("{at}.{path}: {inner}"),
        }
    })
}

/// A built-in workload kind with a pod template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// core/v1 `PodTemplate` (`template`).
    PodTemplate,
    /// core/v1 `ReplicationController` (`spec.template`, may be absent).
    ReplicationController,
    /// apps/v1 `ReplicaSet`.
    ReplicaSet,
    /// apps/v1 `Deployment`.
    Deployment,
    /// apps/v1 `StatefulSet`.
    StatefulSet,
    /// apps/v1 `DaemonSet`.
    DaemonSet,
    /// batch/v1 `Job`.
    Job,
    /// batch/v1 `CronJob` (`spec.jobTemplate.spec.template`).
    CronJob,
}

impl Kind {
    /// Every workload kind.
    pub const ALL: [Kind; 8] = [
        Kind::PodTemplate,
        Kind::ReplicationController,
        Kind::ReplicaSet,
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::Job,
        Kind::CronJob,
    ];

    /// The kind of an object by its `kind` field. Matching is on the kind
    /// name alone: these names are unique across the built-in API groups.
    #[must_use]
    pub fn from_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// The kind an admission request is about, by its resource (group and
    /// plural), which the API server sets whatever version the client used.
    #[must_use]
    pub fn from_resource(group: &str, resource: &str) -> Option<Self> {
        Some(match (group, resource) {
            ("", "podtemplates") => Self::PodTemplate,
            ("", "replicationcontrollers") => Self::ReplicationController,
            ("apps", "replicasets") => Self::ReplicaSet,
            ("apps", "deployments") => Self::Deployment,
            ("apps", "statefulsets") => Self::StatefulSet,
            ("apps", "daemonsets") => Self::DaemonSet,
            ("batch", "jobs") => Self::Job,
            ("batch", "cronjobs") => Self::CronJob,
            _ => return None,
        })
    }

    /// The kind name, e.g. `Deployment`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PodTemplate => "PodTemplate",
            Self::ReplicationController => "ReplicationController",
            Self::ReplicaSet => "ReplicaSet",
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::Job => "Job",
            Self::CronJob => "CronJob",
        }
    }

    /// The path of the pod template inside an object of this kind.
    #[must_use]
    pub fn template_path(self) -> &'static [&'static str] {
        match self {
            Self::PodTemplate => &["template"],
            Self::CronJob => &["spec", "jobTemplate", "spec", "template"],
            _ => &["spec", "template"],
        }
    }
}

/// The pod template of an object of `kind`: `None` when the object has none
/// (a member on the path is absent or `null`, e.g. a ReplicationController
/// without a template), as the API server would store it.
pub fn template(kind: Kind, object: &RawValue) -> Result<Option<PodTemplateSpec>, Error> {
    let mut cursor = object;
    let path = kind.template_path();
    for (depth, key) in path.iter().enumerate() {
        let members: BTreeMap<Cow<'_, str>, &RawValue> =
            decode(cursor.get(), &path[..depth].join(".")).map_err(Error::Decode)?;
        match members.get(*key) {
            Some(next) if next.get() != "null" => cursor = next,
            _ => return Ok(None),
        }
    }
    decode(cursor.get(), &path.join("."))
        .map(Some)
        .map_err(Error::Template)
}

/// The pod metadata and spec an object carries, by its `kind`: a Pod's own,
/// or a workload's template (see [`template`]); `None` for other kinds and
/// for workloads without a template. `spec: null` is an empty spec, as in
/// the webhook.
pub fn pod_template_of(object: &Value) -> Result<Option<PodTemplateSpec>, Error> {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind == "Pod" {
        let text = serde_json::to_string(object).map_err(|e| Error::Decode(e.to_string()))?;
        let pod: Pod = decode(&text, "").map_err(Error::Decode)?;
        return Ok(Some(PodTemplateSpec {
            metadata: Some(pod.metadata),
            spec: pod.spec,
        }));
    }
    let Some(kind) = Kind::from_kind(kind) else {
        return Ok(None);
    };
    let raw = serde_json::value::to_raw_value(object).map_err(|e| Error::Decode(e.to_string()))?;
    template(kind, &raw)
}

/// The path of the pod template inside an object of `kind`, for every kind
/// that carries one; `None` for Pods and every other kind.
#[must_use]
pub fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    Kind::from_kind(kind).map(Kind::template_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_kind_has_its_template_path() {
        for (kind, path) in [
            ("Deployment", "spec.template"),
            ("ReplicaSet", "spec.template"),
            ("StatefulSet", "spec.template"),
            ("DaemonSet", "spec.template"),
            ("Job", "spec.template"),
            ("ReplicationController", "spec.template"),
            ("CronJob", "spec.jobTemplate.spec.template"),
            ("PodTemplate", "template"),
        ] {
            assert_eq!(
                template_path(kind).map(|p| p.join(".")).as_deref(),
                Some(path),
                "{kind}"
            );
        }
        assert_eq!(template_path("Pod"), None);
        assert_eq!(template_path("Service"), None);
    }

    #[test]
    fn templates_are_extracted_or_absent() {
        let raw = |v: serde_json::Value| serde_json::value::to_raw_value(&v).unwrap();
        let deployment = raw(
            serde_json::json!({"kind": "Deployment", "spec": {"template": {
            "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}}}}),
        );
        let t = template(Kind::Deployment, &deployment).unwrap().unwrap();
        assert_eq!(t.spec.unwrap().containers[0].name, "c");
        let cron = raw(
            serde_json::json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": null}}}}}),
        );
        assert!(
            template(Kind::CronJob, &cron)
                .unwrap()
                .unwrap()
                .spec
                .is_none()
        );
        for absent in [
            serde_json::json!({"spec": {}}),
            serde_json::json!({"spec": null}),
            serde_json::json!({}),
        ] {
            assert!(
                template(Kind::ReplicationController, &raw(absent))
                    .unwrap()
                    .is_none()
            );
        }
        assert!(matches!(
            template(Kind::Job, &raw(serde_json::json!({"spec": 3}))),
            Err(Error::Decode(_))
        ));
        assert!(matches!(
            template(
                Kind::Job,
                &raw(serde_json::json!({"spec": {"template": {"spec": {"containers": 1}}}}))
            ),
            Err(Error::Template(_))
        ));
    }

    #[test]
    fn resources_map_to_their_kinds() {
        for (group, resource, kind) in [
            ("", "podtemplates", Some(Kind::PodTemplate)),
            (
                "",
                "replicationcontrollers",
                Some(Kind::ReplicationController),
            ),
            ("apps", "deployments", Some(Kind::Deployment)),
            ("batch", "cronjobs", Some(Kind::CronJob)),
            ("", "deployments", None),
            ("extensions", "deployments", None),
            ("", "pods", None),
        ] {
            assert_eq!(
                Kind::from_resource(group, resource),
                kind,
                "{group}/{resource}"
            );
        }
        for kind in Kind::ALL {
            assert_eq!(Kind::from_kind(kind.as_str()), Some(kind));
        }
    }
}
