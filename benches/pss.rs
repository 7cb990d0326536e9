//! Pod Security Standards evaluation cost for typical pods.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};
use unroot::pss::{self, Level, LevelVersion, Version};

/// A hardened container of a typical three-container pod.
fn container(name: &str, port: i32) -> Value {
    json!({
        "name": name,
        "image": format!("registry.example.com/{name}@sha256:0123"),
        "ports": [{"containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": port}},
        "livenessProbe": {"tcpSocket": {"port": port}},
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": true,
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    })
}

fn compliant() -> (ObjectMeta, PodSpec) {
    let meta = json!({"name": "web", "labels": {"app": "web"}, "annotations": {"example.com/owner": "team"}});
    let spec = json!({
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [container("migrate", 9000)],
        "containers": [container("app", 8080), container("proxy", 8443)],
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            {"name": "config", "configMap": {"name": "web"}},
            {"name": "token", "projected": {"sources": []}},
        ],
    });
    parse(&meta, &spec)
}

fn violating() -> (ObjectMeta, PodSpec) {
    let meta = json!({"name": "web"});
    let spec = json!({
        "hostNetwork": true,
        "initContainers": [{"name": "migrate", "image": "migrate", "securityContext": {"privileged": true}}],
        "containers": [
            {"name": "app", "image": "app", "ports": [{"containerPort": 80, "hostPort": 80}]},
            {"name": "proxy", "image": "proxy", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}},
        ],
        "volumes": [{"name": "host", "hostPath": {"path": "/var/run"}}],
    });
    parse(&meta, &spec)
}

fn parse(meta: &Value, spec: &Value) -> (ObjectMeta, PodSpec) {
    (
        serde_json::from_value(meta.clone()).expect("bench metadata"),
        serde_json::from_value(spec.clone()).expect("bench spec"),
    )
}

fn bench(c: &mut Criterion) {
    let restricted = LevelVersion {
        level: Level::Restricted,
        version: Version::Latest,
    };
    let baseline = LevelVersion {
        level: Level::Baseline,
        version: Version::Latest,
    };
    let (meta, spec) = compliant();
    assert!(pss::evaluate(&meta, &spec, restricted).is_empty());
    let (bad_meta, bad_spec) = violating();
    assert!(!pss::evaluate(&bad_meta, &bad_spec, baseline).is_empty());

    let mut group = c.benchmark_group("pss_evaluate");
    for (name, meta, spec, lv) in [
        (
            "compliant_3_containers/restricted_latest",
            &meta,
            &spec,
            restricted,
        ),
        (
            "compliant_3_containers/baseline_latest",
            &meta,
            &spec,
            baseline,
        ),
        (
            "violating_3_containers/restricted_latest",
            &bad_meta,
            &bad_spec,
            restricted,
        ),
        (
            "violating_3_containers/baseline_latest",
            &bad_meta,
            &bad_spec,
            baseline,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| pss::evaluate(black_box(meta), black_box(spec), black_box(lv)));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
