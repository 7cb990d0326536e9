//! The policy in force changes with its file, and a bad edit never replaces
//! a good policy: the real binary, a real file, real TLS.

use crate::common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use unroot::policy::DEFAULT_YAML;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A client pointed at a server started by `spawn`.
fn client_for(addr: &str, admin: &str, ca: &str) -> common::Server {
    common::Server::external(addr.parse().unwrap(), admin.parse().unwrap(), ca.to_owned())
}

fn pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}]}})
}

async fn run_as_user(server: &common::Server) -> Value {
    let response = server
        .admit("/mutate", &common::review_for("CREATE", "team-a", &pod()))
        .await;
    common::apply(&pod(), &response)["spec"]["securityContext"]["runAsUser"].clone()
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one story: start, edit, break, delete
async fn file_changes_apply_and_invalid_ones_keep_the_last_good_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        DEFAULT_YAML.replace("runAsUser: 65532", "runAsUser: 1111"),
    )
    .unwrap();
    let ca = dir.path().join("ca.crt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_unroot"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--dashboard-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--policy-poll-interval",
            "100ms",
        ])
        .arg("--policy")
        .arg(&policy)
        .arg("--ca-cert-out")
        .arg(&ca)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let _guard = Process(child);
    let serving = loop {
        let event: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if event["message"] == "serving" {
            break event;
        }
    };
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str(&line) {
                let _ = tx.send(event);
            }
        }
    });
    let server = client_for(
        serving["addr"].as_str().unwrap(),
        serving["admin_addr"].as_str().unwrap(),
        &std::fs::read_to_string(&ca).unwrap(),
    );
    assert_eq!(run_as_user(&server).await, 1111);
    assert_eq!(server.admin_get("/readyz").await.status, 200);

    // A valid edit is in force within moments.
    std::fs::write(
        &policy,
        DEFAULT_YAML.replace("runAsUser: 65532", "runAsUser: 2222"),
    )
    .unwrap();
    let started = Instant::now();
    while run_as_user(&server).await != 2222 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the new policy was not applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let applied_hash = server.metric_labels("unroot_policy_info").await;

    // An invalid edit is refused, counted, logged with every error.
    std::fs::write(
        &policy,
        DEFAULT_YAML
            .replace("runAsUser: 65532", "runAsUser: 0")
            .replace("enforce: baseline", "enforce: strict"),
    )
    .unwrap();
    let refused = loop {
        let event = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the refusal was logged");
        if event["message"] == "policy change refused; the last good policy stays in force" {
            break event;
        }
    };
    let errors = refused["errors"].as_str().unwrap();
    assert!(
        errors.contains("securityContext.runAsUser: 0 is not allowed"),
        "{errors}"
    );
    assert!(errors.contains("podSecurity.defaults.enforce: \"strict\" is not one of privileged, baseline, restricted"), "{errors}");
    assert_eq!(
        server.metric("unroot_policy_reload_errors_total").await,
        Some(1.0)
    );
    assert_eq!(
        run_as_user(&server).await,
        2222,
        "the last good policy stays in force"
    );
    assert_eq!(
        server.metric_labels("unroot_policy_info").await,
        applied_hash
    );
    assert_eq!(
        server.admin_get("/readyz").await.status,
        200,
        "a replica with a good policy stays ready"
    );

    // Deleting the file keeps the policy too.
    std::fs::remove_file(&policy).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(run_as_user(&server).await, 2222);
    assert_eq!(
        server.metric("unroot_policy_reload_errors_total").await,
        Some(2.0)
    );
}

#[tokio::test]
async fn an_invalid_policy_file_stops_the_start_with_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        DEFAULT_YAML
            .replace("fsGroup: 65532", "fsGroup: 0")
            .replace("warn: restricted", "warn: Restricted"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_unroot"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--dashboard-listen",
            "127.0.0.1:0",
            "--policy",
        ])
        .arg(&policy)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("securityContext.fsGroup: 0 is not allowed"),
        "{err}"
    );
    assert!(
        err.contains("podSecurity.defaults.warn: \"Restricted\" is not one of"),
        "{err}"
    );
}

#[tokio::test]
async fn validate_refuses_an_invalid_policy_configmap_with_every_error() {
    let server = common::start().await;
    let configmap = |text: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "unroot-policy", "namespace": "unroot", "labels": {"unroot.dev/policy": "true"}},
        "data": {"policy.yaml": text}})
    };
    let review = |object: &Value| {
        let mut r = common::review_for("UPDATE", "unroot", object);
        r["request"]["resource"] = json!({"group": "", "version": "v1", "resource": "configmaps"});
        r
    };
    let good = server
        .admit("/validate", &review(&configmap(DEFAULT_YAML)))
        .await;
    assert_eq!(good["allowed"], true);
    let bad = configmap(
        &DEFAULT_YAML
            .replace("runAsGroup: 65532", "runAsGroup: 0")
            .replace("auditVersion: latest", "auditVersion: v2.0"),
    );
    let response = server.admit("/validate", &review(&bad)).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 422);
    assert_eq!(
        response["status"]["message"],
        "ConfigMap unroot/unroot-policy: invalid unroot policy in data.policy.yaml, 2 error(s): securityContext.runAsGroup: 0 is not allowed: must be a non-root id between 1 and 4294967294; podSecurity.defaults.auditVersion: \"v2.0\" is not \"latest\" or \"v1.x\""
    );
    // A partial policy is laid over the default, and every structural and
    // value error comes back in the same answer.
    let partial = configmap(
        "apiVersion: unroot.dev/v1\nkind: Policy\nsecurityContext:\n  runAsUser: 0\n  overide: true\n  fsGroup: lots\npodSecurity:\n  defaults:\n    enforce: strict\n",
    );
    let response = server.admit("/validate", &review(&partial)).await;
    assert_eq!(
        response["status"]["message"],
        "ConfigMap unroot/unroot-policy: invalid unroot policy in data.policy.yaml, 4 error(s): securityContext.fsGroup: invalid type: string \"lots\", expected i64; securityContext.overide: unknown field \"overide\" (expected one of runAsUser, runAsGroup, fsGroup, setFsGroup, seccompProfileType, readOnlyRootFilesystem, override, allowedCapabilities, harden, namespaceOverrides); securityContext.runAsUser: 0 is not allowed: must be a non-root id between 1 and 4294967294; podSecurity.defaults.enforce: \"strict\" is not one of privileged, baseline, restricted"
    );
    let three_lines =
        configmap("apiVersion: unroot.dev/v1\nkind: Policy\nsecurityContext: {runAsUser: 10001}\n");
    assert_eq!(
        server.admit("/validate", &review(&three_lines)).await["allowed"],
        true
    );
    let mut unlabelled = bad.clone();
    unlabelled["metadata"]["labels"] = json!({});
    assert_eq!(
        server.admit("/validate", &review(&unlabelled)).await["allowed"],
        true,
        "only labelled ConfigMaps are policies"
    );
    server.shutdown().await;
}
