//! The trust bundle over real TLS: pods in namespaces labelled for it get the
//! CA bundle at /etc/ssl/certs, others do not, and re-mutation adds nothing.

use crate::common;

use std::collections::BTreeMap;

use common::NamespaceLabels;
use common::{apply, fixture, golden, labels, patch_of, review_for, warnings_of};
use serde_json::{Value, json};

const MODEL_SERVER: &str = "tests/fixtures/trust-bundle/model-server.yaml";

fn namespaces() -> NamespaceLabels {
    BTreeMap::from([
        (
            "models".to_owned(),
            labels(&[
                ("unroot.dev/trust-bundle", "enabled"),
                ("kubernetes.io/metadata.name", "models"),
            ]),
        ),
        (
            "opted-out".to_owned(),
            labels(&[("unroot.dev/trust-bundle", "disabled")]),
        ),
    ])
}

async fn server() -> common::Server {
    common::start_with(common::Options {
        namespace_labels: namespaces(),
        ..Default::default()
    })
    .await
}

fn pod(name: &str, spec: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn a_pod_in_a_labelled_namespace_gets_the_bundle_once() {
    let server = server().await;
    let object = fixture(MODEL_SERVER);
    let response = server
        .admit("/mutate", &review_for("CREATE", "models", &object))
        .await;
    assert_eq!(response["allowed"], true);
    golden(
        "tests/fixtures/trust-bundle/model-server.patch.json",
        &serde_json::to_value(patch_of(&response)).unwrap(),
    );
    let mutated = apply(&object, &response);
    let server_container = &mutated["spec"]["containers"][0];
    assert_eq!(
        server_container["volumeMounts"],
        json!([{"name": "unroot-trust-bundle", "mountPath": "/etc/ssl/certs", "readOnly": true}])
    );
    assert_eq!(
        server_container["env"][1],
        json!({"name": "SSL_CERT_FILE", "value": "/etc/ssl/certs/ca-certificates.crt"})
    );
    assert_eq!(
        mutated["spec"]["volumes"][0]["configMap"]["name"],
        "trust-bundle"
    );
    let again = server
        .admit("/mutate", &review_for("CREATE", "models", &mutated))
        .await;
    assert!(again.get("patch").is_none(), "{again:#}");
    assert!(warnings_of(&again).is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn other_namespaces_and_windows_pods_get_no_bundle() {
    let server = server().await;
    let plain = pod("p", &json!({"containers": [{"name": "a", "image": "x"}]}));
    let windows = pod(
        "w",
        &json!({"os": {"name": "windows"}, "containers": [{"name": "a", "image": "x"}]}),
    );
    for (what, namespace, object) in [
        ("unknown namespace", "team-a", &plain),
        ("label with another value", "opted-out", &plain),
        ("windows pod", "models", &windows),
    ] {
        let response = server
            .admit("/mutate", &review_for("CREATE", namespace, object))
            .await;
        let mutated = apply(object, &response);
        assert!(
            mutated["spec"].get("volumes").is_none(),
            "{what}: {mutated:#}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn containers_that_mount_the_path_already_are_left_with_a_warning() {
    let server = server().await;
    let object = pod(
        "own-certs",
        &json!({
            "volumes": [{"name": "certs", "secret": {"secretName": "my-ca"}}],
            "initContainers": [{"name": "wait", "image": "x"}],
            "containers": [{"name": "app", "image": "x",
                "volumeMounts": [{"name": "certs", "mountPath": "/etc/ssl/certs"}]}]}),
    );
    let response = server
        .admit("/mutate", &review_for("CREATE", "models", &object))
        .await;
    assert_eq!(
        warnings_of(&response),
        [
            "unroot: spec.containers[0].volumeMounts[0] (container \"app\") already mounts volume \"certs\" at /etc/ssl/certs: the trust bundle is not mounted in this container"
        ]
    );
    let mutated = apply(&object, &response);
    assert_eq!(
        mutated["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        mutated["spec"]["initContainers"][0]["volumeMounts"][0]["name"],
        "unroot-trust-bundle"
    );
    let again = server
        .admit("/mutate", &review_for("CREATE", "models", &mutated))
        .await;
    assert!(again.get("patch").is_none(), "{again:#}");
    server.shutdown().await;
}
