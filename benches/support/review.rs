//! AdmissionReviews shaped like the ones kube-apiserver sends for a pod
//! CREATE from a ReplicaSet: defaults filled in, the service-account token
//! volume and its mount in every container, `managedFields` for every field
//! the controller set, and `requestKind`/`options`/`userInfo` as sent.
//!
//! Shared by the criterion benchmarks, `tests/linear_cost.rs` and the load
//! test (`examples/bench_review.rs` writes the bodies), so every figure in
//! BENCHMARKS.md is about the same inputs.
#![allow(dead_code)]

use serde_json::{Value, json};

/// The name of the service-account token volume (the API server adds a
/// random suffix).
const TOKEN_VOLUME: &str = "kube-api-access-x7k2p";

/// One container as the API server stores it after defaulting.
fn container(i: usize) -> Value {
    let name = format!("app-{i}");
    let port = 8080 + i64::try_from(i % 1000).unwrap_or(0);
    json!({
        "name": name,
        "image": format!("registry.example.com/team/{name}:1.4.2"),
        "command": ["/app/server"],
        "args": [format!("--port={port}"), "--log-level=info", "--config=/etc/app/config.yaml"],
        "ports": [
            {"name": "http", "containerPort": port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
        ],
        "env": [
            {"name": "LOG_FORMAT", "value": "json"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
        ],
        "resources": {
            "limits": {"cpu": "500m", "memory": "256Mi"},
            "requests": {"cpu": "100m", "memory": "128Mi"},
        },
        "volumeMounts": [
            {"name": "config", "readOnly": true, "mountPath": "/etc/app"},
            {"name": TOKEN_VOLUME, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
        ],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": port, "scheme": "HTTP"},
            "initialDelaySeconds": 10, "timeoutSeconds": 1, "periodSeconds": 10,
            "successThreshold": 1, "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": port, "scheme": "HTTP"},
            "timeoutSeconds": 1, "periodSeconds": 5, "successThreshold": 1, "failureThreshold": 3,
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    })
}

/// The `fieldsV1` entry of one container in the controller's managedFields.
fn container_fields(i: usize) -> (String, Value) {
    let empty = || json!({});
    let env = |name: &str, value_from: bool| {
        let key = format!("k:{{\"name\":\"{name}\"}}");
        let fields = if value_from {
            json!({".": {}, "f:name": {}, "f:valueFrom": {".": {}, "f:fieldRef": {}}})
        } else {
            json!({".": {}, "f:name": {}, "f:value": {}})
        };
        (key, fields)
    };
    let mut env_fields = serde_json::Map::new();
    env_fields.insert(".".to_owned(), empty());
    for (name, from) in [
        ("LOG_FORMAT", false),
        ("POD_NAME", true),
        ("POD_NAMESPACE", true),
    ] {
        let (k, v) = env(name, from);
        env_fields.insert(k, v);
    }
    let port = 8080 + i % 1000;
    let probe = json!({".": {}, "f:failureThreshold": {}, "f:httpGet": {".": {}, "f:path": {}, "f:port": {}, "f:scheme": {}},
        "f:periodSeconds": {}, "f:successThreshold": {}, "f:timeoutSeconds": {}});
    (
        format!("k:{{\"name\":\"app-{i}\"}}"),
        json!({
            ".": {}, "f:args": {}, "f:command": {}, "f:env": Value::Object(env_fields),
            "f:image": {}, "f:imagePullPolicy": {}, "f:livenessProbe": probe, "f:name": {},
            "f:ports": {".": {},
                format!("k:{{\"containerPort\":{port},\"protocol\":\"TCP\"}}"): {".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {}},
                "k:{\"containerPort\":9090,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {}}},
            "f:readinessProbe": probe,
            "f:resources": {".": {}, "f:limits": {".": {}, "f:cpu": {}, "f:memory": {}}, "f:requests": {".": {}, "f:cpu": {}, "f:memory": {}}},
            "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {},
            "f:volumeMounts": {".": {}, "k:{\"mountPath\":\"/etc/app\"}": {".": {}, "f:mountPath": {}, "f:name": {}, "f:readOnly": {}}},
        }),
    )
}

/// A pod with `containers` containers, as the API server sends it on CREATE.
#[must_use]
pub fn pod(containers: usize) -> Value {
    let mut fields = serde_json::Map::new();
    fields.insert(".".to_owned(), json!({}));
    for i in 0..containers {
        let (k, v) = container_fields(i);
        fields.insert(k, v);
    }
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": "web-7d4b9c8f6d-",
            "namespace": "team-a",
            "creationTimestamp": null,
            "labels": {"app.kubernetes.io/name": "web", "app.kubernetes.io/part-of": "shop", "pod-template-hash": "7d4b9c8f6d"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c8f6d",
                "uid": "5f0c8a8e-3c1d-4a55-9b0e-2f6d8f1e4c3a", "controller": true, "blockOwnerDeletion": true,
            }],
            "managedFields": [{
                "manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                "time": "2026-11-28T10:15:42Z", "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {
                        "f:annotations": {".": {}, "f:prometheus.io/port": {}, "f:prometheus.io/scrape": {}},
                        "f:generateName": {},
                        "f:labels": {".": {}, "f:app.kubernetes.io/name": {}, "f:app.kubernetes.io/part-of": {}, "f:pod-template-hash": {}},
                        "f:ownerReferences": {".": {}, "k:{\"uid\":\"5f0c8a8e-3c1d-4a55-9b0e-2f6d8f1e4c3a\"}": {}},
                    },
                    "f:spec": {
                        "f:containers": Value::Object(fields),
                        "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {},
                        "f:schedulerName": {}, "f:securityContext": {}, "f:terminationGracePeriodSeconds": {},
                        "f:volumes": {".": {}, "k:{\"name\":\"config\"}": {".": {}, "f:configMap": {".": {}, "f:defaultMode": {}, "f:name": {}}, "f:name": {}}},
                    },
                },
            }],
        },
        "spec": {
            "volumes": [
                {"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}},
                {"name": TOKEN_VOLUME, "projected": {"sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ], "defaultMode": 420}},
            ],
            "containers": (0..containers).map(container).collect::<Vec<_>>(),
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ],
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {},
    })
}

/// A pod with `containers` minimal containers (`{"name","image"}`): the
/// shape of the "3 MB review" (50,000 containers).
#[must_use]
pub fn small_container_pod(containers: usize) -> Value {
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": "big", "namespace": "team-a"},
        "spec": {
            "containers": (0..containers)
                .map(|i| json!({"name": format!("container-{i}"), "image": "registry.example.com/team/app:1.0"}))
                .collect::<Vec<_>>(),
        },
    })
}

/// The AdmissionReview (v1) the API server sends for a CREATE of `pod`.
#[must_use]
pub fn review(pod: &Value) -> Value {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("team-a");
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "0d5c7c1b-8f3e-4f7a-9a55-6c2a3b1e9d40",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "9b1f7a43-0f4e-4a8e-8f7e-1c3d5b7a9e21",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
            },
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    })
}

/// The review body (bytes) for a realistic pod with `containers` containers.
#[must_use]
pub fn body(containers: usize) -> Vec<u8> {
    serde_json::to_vec(&review(&pod(containers))).unwrap_or_default()
}
