//! The API server's defaulting of the fields Pod Security reads, so that an
//! offline verdict (`unroot check`) is the verdict the cluster gives once it
//! has stored the object. The webhook needs none of this: the API server has
//! applied it before it calls unroot.
//!
//! What is applied, by what Pod Security reads:
//! - a volume with no source is an `emptyDir` (every pod spec,
//!   `SetDefaults_Volume`): `restrictedVolumes` allows it;
//! - in a Pod with `hostNetwork: true`, a container port without `hostPort`
//!   gets `hostPort = containerPort` (`SetDefaults_PodSpec`; pod templates no
//!   longer get this since Kubernetes 1.28): `hostPorts` reads it;
//! - in a Pod, a seccomp annotation (`seccomp.security.alpha.kubernetes.io/pod`,
//!   `container.seccomp.security.alpha.kubernetes.io/<name>`) whose field is
//!   unset sets the field, and a field whose annotation is unset sets the
//!   annotation (the API server's seccomp version skew handling, since 1.19):
//!   `seccompProfile_restricted` and `seccompProfile_baseline` from v1.19
//!   read the fields, `seccompProfile_baseline` before v1.19 the annotations.
//!
//! Nothing else the checks read has a default: `privileged`,
//! `allowPrivilegeEscalation`, capabilities, `runAsNonRoot`, `runAsUser`,
//! host namespaces, SELinux and AppArmor options, sysctls, probes and
//! `procMount` (whose default, `Default`, every level allows) are judged as
//! written.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The pod-level seccomp annotation.
pub const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
/// The prefix of the per-container seccomp annotations.
pub const SECCOMP_CONTAINER_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

/// What is being defaulted: a Pod gets more defaults than a pod template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// A Pod.
    Pod,
    /// The pod template of a workload.
    Template,
}

/// Applies the defaults above to a pod (or template) `meta` and `spec`.
pub fn apply(object: Object, meta: &mut ObjectMeta, spec: &mut PodSpec) {
    default_volumes(spec);
    if object == Object::Pod {
        if spec.host_network == Some(true) {
            host_network_ports(&mut spec.containers);
            host_network_ports(spec.init_containers.get_or_insert_with(Vec::new));
        }
        seccomp_version_skew(meta, spec);
    }
}

fn default_volumes(spec: &mut PodSpec) {
    for volume in spec.volumes.iter_mut().flatten() {
        let has_source = serde_json::to_value(&*volume)
            .ok()
            .and_then(|v| v.as_object().map(|m| m.keys().any(|k| k != "name")))
            .unwrap_or(true);
        if !has_source {
            volume.empty_dir = Some(EmptyDirVolumeSource::default());
        }
    }
}

fn host_network_ports(containers: &mut [Container]) {
    for port in containers
        .iter_mut()
        .flat_map(|c| c.ports.iter_mut().flatten())
    {
        if port.host_port.unwrap_or(0) == 0 {
            port.host_port = Some(port.container_port);
        }
    }
}

/// The field an annotation value stands for (`None`: the value is not one
/// the API server converts).
fn field_for(annotation: &str) -> Option<SeccompProfile> {
    let (type_, localhost_profile) = match annotation {
        "unconfined" => ("Unconfined", None),
        "runtime/default" | "docker/default" => ("RuntimeDefault", None),
        other => (
            "Localhost",
            Some(other.strip_prefix("localhost/")?.to_owned()),
        ),
    };
    Some(SeccompProfile {
        type_: type_.to_owned(),
        localhost_profile,
    })
}

/// The annotation value a field stands for.
fn annotation_for(field: &SeccompProfile) -> Option<String> {
    match field.type_.as_str() {
        "Unconfined" => Some("unconfined".to_owned()),
        "RuntimeDefault" => Some("runtime/default".to_owned()),
        "Localhost" => Some(format!("localhost/{}", field.localhost_profile.as_deref()?)),
        _ => None,
    }
}

fn seccomp_version_skew(meta: &mut ObjectMeta, spec: &mut PodSpec) {
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    let pod_field = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.seccomp_profile.clone());
    match (pod_field, annotations.get(SECCOMP_POD_ANNOTATION)) {
        (Some(field), None) => {
            if let Some(value) = annotation_for(&field) {
                annotations.insert(SECCOMP_POD_ANNOTATION.to_owned(), value);
            }
        }
        (None, Some(value)) => {
            if let Some(field) = field_for(value) {
                spec.security_context
                    .get_or_insert_with(PodSecurityContext::default)
                    .seccomp_profile = Some(field);
            }
        }
        _ => {}
    }
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for container in containers {
        let key = format!("{SECCOMP_CONTAINER_PREFIX}{}", container.name);
        let field = container
            .security_context
            .as_ref()
            .and_then(|sc| sc.seccomp_profile.clone());
        match (field, annotations.get(&key)) {
            (Some(field), None) => {
                if let Some(value) = annotation_for(&field) {
                    annotations.insert(key, value);
                }
            }
            (None, Some(value)) => {
                if let Some(field) = field_for(value) {
                    container
                        .security_context
                        .get_or_insert_with(SecurityContext::default)
                        .seccomp_profile = Some(field);
                }
            }
            _ => {}
        }
    }
    if annotations.is_empty() {
        meta.annotations = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(meta: serde_json::Value, spec: serde_json::Value) -> (ObjectMeta, PodSpec) {
        (
            serde_json::from_value(meta).unwrap(),
            serde_json::from_value(spec).unwrap(),
        )
    }

    #[test]
    fn a_volume_without_a_source_is_an_empty_dir() {
        let (mut meta, mut spec) = pod(
            json!({}),
            json!({"containers": [], "volumes": [{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "x"}}]}),
        );
        apply(Object::Template, &mut meta, &mut spec);
        let volumes = spec.volumes.unwrap();
        assert!(volumes[0].empty_dir.is_some());
        assert!(volumes[1].empty_dir.is_none());
    }

    #[test]
    fn host_network_pods_publish_their_container_ports() {
        let spec = json!({"hostNetwork": true, "containers": [{"name": "c", "ports": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 9081}]}]});
        let (mut meta, mut pod_spec) = pod(json!({}), spec.clone());
        apply(Object::Pod, &mut meta, &mut pod_spec);
        let ports = pod_spec.containers[0].ports.clone().unwrap();
        assert_eq!(
            (ports[0].host_port, ports[1].host_port),
            (Some(80), Some(9081))
        );
        // Pod templates are stored as written (Kubernetes >= 1.28).
        let (mut meta, mut template) = pod(json!({}), spec);
        apply(Object::Template, &mut meta, &mut template);
        assert_eq!(
            template.containers[0].ports.clone().unwrap()[0].host_port,
            None
        );
    }

    #[test]
    fn seccomp_annotations_and_fields_follow_each_other_in_pods() {
        let (mut meta, mut spec) = pod(
            json!({"annotations": {
                "seccomp.security.alpha.kubernetes.io/pod": "runtime/default",
                "container.seccomp.security.alpha.kubernetes.io/b": "localhost/prof.json",
            }}),
            json!({"containers": [
                {"name": "a", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
                {"name": "b"},
                {"name": "c"},
            ]}),
        );
        apply(Object::Pod, &mut meta, &mut spec);
        let sc = spec.security_context.unwrap().seccomp_profile.unwrap();
        assert_eq!(sc.type_, "RuntimeDefault");
        let b = spec.containers[1]
            .security_context
            .clone()
            .unwrap()
            .seccomp_profile
            .unwrap();
        assert_eq!(
            (b.type_.as_str(), b.localhost_profile.as_deref()),
            ("Localhost", Some("prof.json"))
        );
        assert!(spec.containers[2].security_context.is_none());
        let annotations = meta.annotations.unwrap();
        assert_eq!(
            annotations["container.seccomp.security.alpha.kubernetes.io/a"],
            "unconfined"
        );
        assert!(!annotations.contains_key("container.seccomp.security.alpha.kubernetes.io/c"));
    }
}
