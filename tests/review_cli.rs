//! `unroot review`: a review replayed offline gets the answer the running
//! server gives to the same review, byte for byte in its `response`.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::common;

use common::{Options, namespaces, review_for};
use serde_json::{Value, json};

/// Runs `unroot review ARGS -` with `input` on stdin.
fn review(args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_unroot"))
        .arg("review")
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pod(name: &str, container: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [container]}})
}

#[tokio::test]
async fn a_replayed_review_gets_the_servers_answer() {
    let strict = [("unroot.dev/enforce", "restricted")];
    let server = common::start_with(Options {
        namespaces: namespaces(&[("strict", &strict)]),
        ..Options::default()
    })
    .await;
    let plain = pod("plain", &json!({"name": "app", "image": "busybox"}));
    let privileged = pod(
        "privileged",
        &json!({"name": "app", "image": "busybox", "securityContext": {"privileged": true}}),
    );
    let root = pod(
        "root",
        &json!({"name": "app", "image": "busybox", "securityContext": {"runAsUser": 0}}),
    );
    let mut update = review_for("UPDATE", "strict", &privileged);
    update["request"]["oldObject"] = privileged.clone();
    update["request"]["object"]["metadata"]["labels"] = json!({"tier": "web"});
    // (case, webhook, review, exit code)
    let cases = [
        (
            "a plain pod is hardened",
            "mutate",
            review_for("CREATE", "strict", &plain),
            0,
        ),
        (
            "a plain pod is denied unhardened",
            "validate",
            review_for("CREATE", "strict", &plain),
            1,
        ),
        (
            "a privileged pod is denied",
            "validate",
            review_for("CREATE", "strict", &privileged),
            1,
        ),
        (
            "root is refused",
            "validate",
            review_for("CREATE", "strict", &root),
            1,
        ),
        (
            "an update that changes no spec is allowed",
            "validate",
            update,
            0,
        ),
    ];
    for (case, webhook, body, code) in cases {
        let answered = server.admit(&format!("/{webhook}"), &body).await;
        let (exit, out, err) = review(
            &[
                "--webhook",
                webhook,
                "--namespace-labels",
                "unroot.dev/enforce=restricted",
            ],
            &body.to_string(),
        );
        assert_eq!(exit, code, "{case}: {err}\n{out}");
        let replayed: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(replayed["kind"], "AdmissionReview", "{case}");
        assert_eq!(replayed["response"], answered, "{case}");
    }
    server.shutdown().await;
}

#[test]
fn the_webhook_is_chosen_from_the_request_and_yaml_works_both_ways() {
    let plain = pod("plain", &json!({"name": "app", "image": "busybox"}));
    let mut update = review_for("UPDATE", "ns", &plain);
    update["request"]["oldObject"] = plain.clone();
    let yaml = serde_saphyr::to_string(&update).unwrap();
    let (code, out, err) = review(&["-o", "yaml"], &yaml);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("replaying through /validate"), "{err}");
    assert!(out.contains("kind: AdmissionReview"), "{out}");
    assert!(out.contains("allowed: true"), "{out}");
    let (code, out, err) = review(&[], &review_for("CREATE", "ns", &plain).to_string());
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("replaying through /mutate"), "{err}");
    assert!(out.contains("\"patchType\": \"JSONPatch\""), "{out}");
}

#[test]
fn bad_input_exits_2_naming_the_problem() {
    for (input, says) in [
        (
            "{\"kind\": \"Pod\"}",
            "kind is \"Pod\", expected \"AdmissionReview\"",
        ),
        ("[1, 2", "not valid JSON"),
        (
            "{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\": \"AdmissionReview\"}",
            "request",
        ),
    ] {
        let (code, out, err) = review(&[], input);
        assert_eq!(code, 2, "{input}: {out}");
        assert!(
            err.to_lowercase().contains(&says.to_lowercase()),
            "{input}: {err}"
        );
    }
    // A review the server would answer with 400: that answer, and exit 2.
    let malformed = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u1", "operation": 7}});
    let (code, out, err) = review(&[], &malformed.to_string());
    assert_eq!(code, 2, "{err}");
    assert!(out.contains("\"code\": 400"), "{out}");
    assert!(err.contains("malformed AdmissionReview request"), "{err}");
    // An UPDATE without its old object: the webhook answers 400.
    let plain = pod("plain", &json!({"name": "app", "image": "busybox"}));
    let (code, out, err) = review(&[], &review_for("UPDATE", "ns", &plain).to_string());
    assert_eq!(code, 2, "{err}");
    assert!(out.contains("\"code\": 400"), "{out}");
    assert!(err.contains("failed to decode old object"), "{err}");
}

#[test]
fn namespace_labels_come_from_a_namespace_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("ns.yaml");
    std::fs::write(
        &ns,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: strict\n  labels:\n    unroot.dev/enforce: restricted\n",
    )
    .unwrap();
    let plain = pod("plain", &json!({"name": "app", "image": "busybox"}));
    let body = review_for("CREATE", "strict", &plain).to_string();
    let file = ns.to_str().unwrap();
    let (code, out, _) = review(&["--webhook", "validate", "--namespace-file", file], &body);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("restricted:latest"), "{out}");
    // Without the labels the policy's defaults (enforce baseline) allow it.
    let (code, out, _) = review(&["--webhook", "validate"], &body);
    assert_eq!(code, 0, "{out}");
}
