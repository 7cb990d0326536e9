//! The one view of a pod that admission decodes, and that mutation, Pod
//! Security and unroot's own refusals read.
//!
//! A review's pod is decoded once, from the request body, into these types:
//! the fields unroot reads, typed as Kubernetes types them (the leaf types
//! are `k8s_openapi`'s: `SecurityContext`, `Volume`, `Probe`, …), names and
//! images borrowed from the body where they need no unescaping. Everything
//! else (`managedFields`, `status`, `resources`, `args`, environment values,
//! affinity, …) is skipped as it is read: never built, never copied, and
//! never written back, since unroot answers with a JSON Patch.
//!
//! The init containers are the exception: they are kept whole as well
//! ([`Container::whole`]), because the provisioning init container is
//! exempt only when every field of it is what unroot injects. A pod has few.
//!
//! JSON objects with a key twice keep the last one, as the API server (Go's
//! `encoding/json`) does: the derived decoders refuse a duplicate field, so
//! such a pod is read again through a `serde_json::Value`, which keeps the
//! last occurrence, and decoded from that ([`decode`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as core;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A pod, or the pod of a workload's template.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod<'a> {
    /// `v1` when present.
    #[serde(
        default,
        borrow,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_version: Option<Cow<'a, str>>,
    /// `Pod` when present.
    #[serde(
        default,
        borrow,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<Cow<'a, str>>,
    /// The metadata unroot reads.
    #[serde(default, borrow, deserialize_with = "present_meta")]
    pub metadata: Meta<'a>,
    /// The spec unroot reads.
    #[serde(default, borrow, deserialize_with = "present_spec")]
    pub spec: Spec<'a>,
}

/// `ObjectMeta`, as far as unroot reads it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta<'a> {
    /// Whether the object has a (non-null) `metadata`: a patch must create
    /// it otherwise.
    #[serde(skip)]
    pub present: bool,
    /// `metadata.name`.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    /// `metadata.namespace`.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Cow<'a, str>>,
    /// `metadata.annotations`: identity claims, legacy seccomp and AppArmor
    /// profiles, the mirror-pod marker, unroot's own marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `PodSpec`, as far as unroot reads it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec<'a> {
    /// Whether the object has a (non-null) `spec`: a patch must create it
    /// otherwise.
    #[serde(skip)]
    pub present: bool,
    /// `spec.containers` (required, as in `PodSpec`).
    #[serde(borrow)]
    pub containers: Vec<Container<'a>>,
    /// `spec.initContainers`, each kept whole too.
    #[serde(
        default,
        deserialize_with = "whole_containers",
        skip_serializing_if = "Option::is_none"
    )]
    pub init_containers: Option<Vec<Container<'a>>>,
    /// `spec.ephemeralContainers`.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub ephemeral_containers: Option<Vec<Container<'a>>>,
    /// `spec.securityContext`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<core::PodSecurityContext>,
    /// `spec.volumes` (each boxed: a `Volume` is large, and a pod is moved
    /// as a few words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Box<core::Volume>>>,
    /// `spec.hostNetwork`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    /// `spec.hostPID`.
    #[serde(default, rename = "hostPID", skip_serializing_if = "Option::is_none")]
    pub host_pid: Option<bool>,
    /// `spec.hostIPC`.
    #[serde(default, rename = "hostIPC", skip_serializing_if = "Option::is_none")]
    pub host_ipc: Option<bool>,
    /// `spec.hostUsers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_users: Option<bool>,
    /// `spec.os`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<core::PodOS>,
    /// `spec.runtimeClassName`.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<Cow<'a, str>>,
}

/// A container, init container or ephemeral container, as far as unroot
/// reads it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container<'a> {
    /// `name` (required, as in `Container`).
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// `image`.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub image: Option<Cow<'a, str>>,
    /// `securityContext`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<Box<core::SecurityContext>>,
    /// `ports`: their host ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<Port>>,
    /// `livenessProbe`: the hosts it calls.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Handler<'a>>,
    /// `readinessProbe`: the hosts it calls.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Handler<'a>>,
    /// `startupProbe`: the hosts it calls.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Handler<'a>>,
    /// `lifecycle`: the hosts its hooks call.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle<'a>>,
    /// The names of `env` (values are never read).
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvName<'a>>>,
    /// `volumeMounts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<core::VolumeMount>>,
    /// The whole container as sent, for init containers only (see the
    /// module's documentation).
    #[serde(skip)]
    pub whole: Option<Box<Value>>,
}

/// A `ports` entry, as far as Pod Security reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// `hostPort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i32>,
}

/// A probe or a lifecycle hook: the hosts its `httpGet` and `tcpSocket`
/// call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Handler<'a> {
    /// `httpGet`.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<Endpoint<'a>>,
    /// `tcpSocket`.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<Endpoint<'a>>,
}

/// The host an `httpGet` or `tcpSocket` action calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Endpoint<'a> {
    /// `host`.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub host: Option<Cow<'a, str>>,
}

/// `lifecycle`: its hooks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle<'a> {
    /// `postStart`.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub post_start: Option<Handler<'a>>,
    /// `preStop`.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<Handler<'a>>,
}

impl From<&core::Probe> for Handler<'static> {
    fn from(p: &core::Probe) -> Self {
        Handler {
            http_get: p.http_get.as_ref().map(|a| Endpoint {
                host: a.host.clone().map(Cow::Owned),
            }),
            tcp_socket: p.tcp_socket.as_ref().map(|a| Endpoint {
                host: a.host.clone().map(Cow::Owned),
            }),
        }
    }
}

impl From<&core::LifecycleHandler> for Handler<'static> {
    fn from(h: &core::LifecycleHandler) -> Self {
        Handler {
            http_get: h.http_get.as_ref().map(|a| Endpoint {
                host: a.host.clone().map(Cow::Owned),
            }),
            tcp_socket: h.tcp_socket.as_ref().map(|a| Endpoint {
                host: a.host.clone().map(Cow::Owned),
            }),
        }
    }
}

/// An `env` entry's name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct EnvName<'a> {
    /// `name` (required, as in `EnvVar`).
    #[serde(borrow)]
    pub name: Cow<'a, str>,
}

/// An absent member is `None`; a present one must be a string (`null` is
/// refused, as `Pod` refuses it for `apiVersion` and `kind`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    <Cow<'de, str>>::deserialize(deserializer).map(Some)
}

/// `metadata`: `null` reads as absent (as `Option<ObjectMeta>` reads it).
fn present_meta<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Meta<'de>, D::Error> {
    Ok(Option::<Meta<'de>>::deserialize(deserializer)?
        .map(|meta| Meta {
            present: true,
            ..meta
        })
        .unwrap_or_default())
}

/// `spec`: `null` reads as absent (as `Option<PodSpec>` reads it).
fn present_spec<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Spec<'de>, D::Error> {
    Ok(Option::<Spec<'de>>::deserialize(deserializer)?
        .map(|spec| Spec {
            present: true,
            ..spec
        })
        .unwrap_or_default())
}

/// Init containers, each read whole and as a [`Container`].
fn whole_containers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<Container<'de>>>, D::Error> {
    let Some(items) = Option::<Vec<Value>>::deserialize(deserializer)? else {
        return Ok(None);
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, whole)| {
            let mut container = Container::<'static>::deserialize(whole.clone())
                .map_err(|e| de::Error::custom(format_args!("[{i}]: {e}")))?;
            container.whole = Some(Box::new(whole));
            Ok(container)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Why a pod could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not a pod: the field at fault and what is wrong with it.
    #[error("{at}{source}")]
    Decode {
        /// The field path and `: ` (`spec.containers[0].securityContext.runAsUser: `),
        /// or nothing when the fault is not in one field.
        at: String,
        /// Why it failed.
        #[source]
        source: serde_json::Error,
    },
    /// An object of another kind (`kind` or `apiVersion` not a v1 Pod's).
    #[error("the object is a {kind} of {api_version}, not a v1 Pod")]
    NotAPod {
        /// Its `kind`.
        kind: String,
        /// Its `apiVersion`.
        api_version: String,
    },
}

impl Pod<'_> {
    /// Every container in Kubernetes' visit order: init, regular,
    /// ephemeral.
    pub fn all_containers(&self) -> impl Iterator<Item = &Container<'_>> {
        let spec = &self.spec;
        spec.init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .chain(spec.ephemeral_containers.iter().flatten())
    }

    /// `metadata.annotations[key]`.
    #[must_use]
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
    }

    /// `spec.os.name == "windows"`.
    #[must_use]
    pub fn is_windows(&self) -> bool {
        self.spec.os.as_ref().is_some_and(|os| os.name == "windows")
    }
}

/// Decodes the pod in `text` (JSON), borrowing from it.
pub fn decode(text: &str) -> Result<Pod<'_>, Error> {
    // A derived decoder reads a struct from an array too; a pod is an object.
    if text.trim_start().as_bytes().first() != Some(&b'{') {
        return Err(Error::Decode {
            at: String::new(),
            source: de::Error::invalid_type(de::Unexpected::Other("non-object"), &"a Pod object"),
        });
    }
    let pod = match serde_json::from_str::<Pod<'_>>(text) {
        Ok(pod) => pod,
        // Go keeps the last of a duplicated key; the derived decoders refuse
        // it. Read the object as Go would, then decode that.
        Err(e) if is_duplicate(&e) => decode_value(&serde_json::from_str::<Value>(text).map_err(
            |source| Error::Decode {
                at: String::new(),
                source,
            },
        )?)?,
        Err(source) => {
            let mut de = serde_json::Deserializer::from_str(text);
            let at = serde_path_to_error::deserialize::<_, Pod<'_>>(&mut de)
                .err()
                .map(|e| e.path().to_string());
            return Err(Error::Decode {
                at: field_at(at.as_deref()),
                source,
            });
        }
    };
    check_kind(&pod)?;
    Ok(pod)
}

/// Decodes a pod from a JSON value (a workload's template, a pod read as
/// `Value`): every string is copied.
pub fn decode_value(value: &Value) -> Result<Pod<'static>, Error> {
    let pod = Pod::<'static>::deserialize(value.clone()).map_err(|source| {
        let at = serde_path_to_error::deserialize::<_, Pod<'static>>(value.clone())
            .err()
            .map(|e| e.path().to_string());
        Error::Decode {
            at: field_at(at.as_deref()),
            source,
        }
    })?;
    check_kind(&pod)?;
    Ok(pod)
}

fn check_kind(pod: &Pod<'_>) -> Result<(), Error> {
    let kind = pod.kind.as_deref().unwrap_or("Pod");
    let api_version = pod.api_version.as_deref().unwrap_or("v1");
    if kind == "Pod" && api_version == "v1" {
        Ok(())
    } else {
        Err(Error::NotAPod {
            kind: kind.to_owned(),
            api_version: api_version.to_owned(),
        })
    }
}

fn is_duplicate(e: &serde_json::Error) -> bool {
    e.is_data() && e.to_string().starts_with("duplicate field")
}

/// serde_path_to_error's path (`.` for the root) and `: `, or nothing.
fn field_at(path: Option<&str>) -> String {
    match path {
        None | Some(".") => String::new(),
        Some(path) => format!("{path}: "),
    }
}

impl From<&core::Pod> for Pod<'static> {
    /// The view of a pod read through the API (the namespace dry run, the
    /// readiness report) or from a file.
    fn from(pod: &core::Pod) -> Self {
        let meta = &pod.metadata;
        Pod {
            api_version: None,
            kind: None,
            metadata: Meta {
                present: true,
                name: meta.name.clone().map(Cow::Owned),
                namespace: meta.namespace.clone().map(Cow::Owned),
                annotations: meta.annotations.clone(),
            },
            spec: pod.spec.as_ref().map(Spec::from).unwrap_or_default(),
        }
    }
}

impl From<&core::PodSpec> for Spec<'static> {
    fn from(spec: &core::PodSpec) -> Self {
        Spec {
            present: true,
            containers: spec.containers.iter().map(Container::from).collect(),
            init_containers: spec.init_containers.as_ref().map(|list| {
                list.iter()
                    .map(|c| Container {
                        whole: serde_json::to_value(c).ok().map(Box::new),
                        ..Container::from(c)
                    })
                    .collect()
            }),
            ephemeral_containers: spec
                .ephemeral_containers
                .as_ref()
                .map(|list| list.iter().map(Container::from).collect()),
            security_context: spec.security_context.clone(),
            volumes: spec
                .volumes
                .as_ref()
                .map(|v| v.iter().cloned().map(Box::new).collect()),
            host_network: spec.host_network,
            host_pid: spec.host_pid,
            host_ipc: spec.host_ipc,
            host_users: spec.host_users,
            os: spec.os.clone(),
            runtime_class_name: spec.runtime_class_name.clone().map(Cow::Owned),
        }
    }
}

/// The fields of `Container` and `EphemeralContainer` the view reads.
macro_rules! container_from {
    ($ty:ty) => {
        impl From<&$ty> for Container<'static> {
            fn from(c: &$ty) -> Self {
                Container {
                    name: Cow::Owned(c.name.clone()),
                    image: c.image.clone().map(Cow::Owned),
                    security_context: c.security_context.clone().map(Box::new),
                    ports: c.ports.as_ref().map(|ports| {
                        ports
                            .iter()
                            .map(|p| Port {
                                host_port: p.host_port,
                            })
                            .collect()
                    }),
                    liveness_probe: c.liveness_probe.as_ref().map(Handler::from),
                    readiness_probe: c.readiness_probe.as_ref().map(Handler::from),
                    startup_probe: c.startup_probe.as_ref().map(Handler::from),
                    lifecycle: c.lifecycle.as_ref().map(|l| Lifecycle {
                        post_start: l.post_start.as_ref().map(Handler::from),
                        pre_stop: l.pre_stop.as_ref().map(Handler::from),
                    }),
                    env: c.env.as_ref().map(|env| {
                        env.iter()
                            .map(|e| EnvName {
                                name: Cow::Owned(e.name.clone()),
                            })
                            .collect()
                    }),
                    volume_mounts: c.volume_mounts.clone(),
                    whole: None,
                }
            }
        }
    };
}

container_from!(core::Container);
container_from!(core::EphemeralContainer);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn realistic() -> Value {
        json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "web", "namespace": "team-a", "annotations": {"a": "1"},
                "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {}}}], "creationTimestamp": null},
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox", "terminationMessagePath": "/dev/termination-log"}],
                "containers": [{"name": "app", "image": "nginx", "args": ["-x"],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "resources": {"limits": {"cpu": "1"}},
                    "ports": [{"containerPort": 80, "hostPort": 8080}],
                    "securityContext": {"runAsUser": 1000, "capabilities": {"drop": ["ALL"]}},
                    "livenessProbe": {"httpGet": {"port": 80, "host": "10.0.0.1"}},
                    "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
                "volumes": [{"name": "v", "emptyDir": {}}],
                "securityContext": {"fsGroup": 2000},
                "hostNetwork": true, "hostPID": false,
                "tolerations": [{"operator": "Exists"}],
            },
            "status": {"phase": "Pending"},
        })
    }

    #[test]
    fn the_view_holds_what_the_full_decode_holds_in_the_fields_it_reads() {
        let text = realistic().to_string();
        let view = decode(&text).unwrap();
        let full: core::Pod = serde_json::from_str(&text).unwrap();
        assert_eq!(view.spec, Spec::from(full.spec.as_ref().unwrap()));
        assert_eq!(view.metadata.name.as_deref(), Some("web"));
        assert_eq!(view.metadata.annotations, full.metadata.annotations);
        let app = &view.spec.containers[0];
        assert!(
            matches!(app.name, Cow::Borrowed("app")),
            "borrowed from the body"
        );
        let names: Vec<&str> = app.env.iter().flatten().map(|e| &*e.name).collect();
        assert_eq!(names, ["A", "B"]);
        let init = &view.spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(
            init.whole.as_deref(),
            Some(
                &json!({"name": "init", "image": "busybox", "terminationMessagePath": "/dev/termination-log"})
            )
        );
        assert_eq!(view.spec.host_network, Some(true));
        assert_eq!(view.spec.host_pid, Some(false));
    }

    #[test]
    fn a_field_it_reads_that_does_not_decode_is_named() {
        for (pod, at, what) in [
            (
                json!({"spec": {"containers": [{"name": "a", "securityContext": {"runAsUser": 9_223_372_036_854_775_808_u64}}]}}),
                "spec.containers[0].securityContext.runAsUser: ",
                "invalid value",
            ),
            (
                json!({"spec": {"containers": "nope"}}),
                "spec.containers: ",
                "invalid type",
            ),
            (
                json!({"spec": {"volumes": []}}),
                "spec: ",
                "missing field `containers`",
            ),
            (
                json!({"spec": {"containers": [{"image": "x"}]}}),
                "spec.containers[0]: ",
                "missing field `name`",
            ),
        ] {
            let text = pod.to_string();
            let err = decode(&text).unwrap_err().to_string();
            assert!(err.starts_with(at), "{pod}: {err}");
            assert!(err.contains(what), "{pod}: {err}");
        }
    }

    #[test]
    fn a_duplicate_key_keeps_the_last_as_the_api_server_does() {
        let text = r#"{"spec": {"containers": [{"name": "a", "securityContext": {"runAsUser": 0, "runAsUser": 1000}}]}, "metadata": {"name": "x", "name": "p"}}"#;
        let pod = decode(text).unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("p"));
        assert_eq!(
            pod.spec.containers[0]
                .security_context
                .as_ref()
                .unwrap()
                .run_as_user,
            Some(1000)
        );
    }

    #[test]
    fn only_a_v1_pod_is_a_pod() {
        assert!(
            decode(r#"{"kind": "Pod", "apiVersion": "v1", "spec": {"containers": []}}"#).is_ok()
        );
        assert!(decode(r#"{"spec": {"containers": []}}"#).is_ok());
        assert!(matches!(
            decode(r#"{"kind": "Service", "spec": {"containers": []}}"#),
            Err(Error::NotAPod { .. })
        ));
        assert!(matches!(
            decode(r#"{"apiVersion": "v2", "spec": {"containers": []}}"#),
            Err(Error::NotAPod { .. })
        ));
        assert!(decode(r#"{"apiVersion": null, "spec": {"containers": []}}"#).is_err());
        assert!(decode(r#"{"spec": null}"#).is_ok(), "a pod without a spec");
        assert!(decode("[]").is_err());
    }
}
