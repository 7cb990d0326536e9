//! Replays what the fuzzers found (`tests/fixtures/fuzz/<target>/`, one
//! input a file, added by `make fuzz` when a target crashes) and their seed
//! corpora (`tests/fixtures/fuzz/seeds/<target>/`) through the fuzz targets'
//! own entry points (`tests/support/fuzz_entry.rs`), and the review inputs
//! through the real server over TLS: no panic, and a clear answer.

use crate::common;
use crate::fuzz_entry;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Every input file under `dir` (sorted; README files skipped).
fn inputs(dir: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn review_inputs() -> Vec<(PathBuf, Vec<u8>)> {
    let mut all = inputs("tests/fixtures/fuzz/review");
    all.extend(inputs("tests/fixtures/fuzz/seeds/review"));
    all
}

#[test]
fn review_inputs_replay_without_panic() {
    let (policy, namespaces) = (fuzz_entry::snapshot(), fuzz_entry::namespaces());
    let all = review_inputs();
    assert!(all.len() >= 20, "the seed corpus is missing");
    for (path, bytes) in all {
        let answers = std::panic::catch_unwind(|| fuzz_entry::review(&bytes, &policy, &namespaces))
            .unwrap_or_else(|_| panic!("{} panics", path.display()));
        for answer in &answers {
            fuzz_entry::check_answer(answer);
        }
    }
}

/// Policies that seed the policy target as they are (fuzz/run.sh copies
/// them into its corpus), so that editing them needs no seed update.
const SHIPPED_POLICIES: [&str; 2] = [
    "webhook-config/policy.yaml",
    "tests/fixtures/provisioning/policy.yaml",
];

#[test]
fn policy_inputs_replay_without_panic() {
    let mut all = inputs("tests/fixtures/fuzz/policy");
    all.extend(inputs("tests/fixtures/fuzz/seeds/policy"));
    for path in SHIPPED_POLICIES {
        all.push((PathBuf::from(path), std::fs::read(path).unwrap()));
    }
    assert!(all.len() >= 3, "the seed corpus is missing");
    let mut valid = 0;
    for (path, bytes) in all {
        let outcome = std::panic::catch_unwind(|| fuzz_entry::policy(&bytes))
            .unwrap_or_else(|_| panic!("{} panics", path.display()));
        valid += usize::from(outcome.is_none());
    }
    assert!(valid >= 2, "the shipped policies are seeds and valid");
}

/// The same inputs through the running server, as a caller would send
/// them: HTTP 200 with a review that echoes the uid, or a 400/413 `Status`
/// with a message.
#[tokio::test]
async fn review_inputs_get_clear_answers_from_the_server() {
    let server = common::start_with(common::Options {
        policy: fuzz_entry::snapshot().document,
        namespace_labels: fuzz_entry::namespaces(),
        identity_store: Some(std::sync::Arc::new(common::RecordingStore::default())),
        ..Default::default()
    })
    .await;
    for (path, bytes) in review_inputs() {
        for webhook in ["/mutate", "/validate"] {
            let reply = server
                .post(webhook, "application/json", bytes.clone())
                .await;
            let body = reply.json();
            let shown = format!("{} {webhook}: {body}", path.display());
            match reply.status {
                200 => {
                    assert_eq!(body["kind"], "AdmissionReview", "{shown}");
                    assert!(
                        body["response"]["uid"]
                            .as_str()
                            .is_some_and(|u| !u.is_empty()),
                        "{shown}"
                    );
                    if body["response"]["allowed"] == false {
                        assert!(
                            body["response"]["status"]["message"]
                                .as_str()
                                .is_some_and(|m| !m.is_empty()),
                            "{shown}"
                        );
                    }
                }
                400 | 413 => {
                    assert_eq!(body["kind"], "Status", "{shown}");
                    assert!(
                        body["message"].as_str().is_some_and(|m| !m.is_empty()),
                        "{shown}"
                    );
                }
                other => panic!("{shown}: HTTP {other}"),
            }
        }
    }
    server.shutdown().await;
}

/// `(group, resource)` of a workload kind.
fn resource_of(kind: &str) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        "Pod" => ("", "pods"),
        "PodTemplate" => ("", "podtemplates"),
        "ReplicationController" => ("", "replicationcontrollers"),
        "Deployment" => ("apps", "deployments"),
        "ReplicaSet" => ("apps", "replicasets"),
        "StatefulSet" => ("apps", "statefulsets"),
        "DaemonSet" => ("apps", "daemonsets"),
        "Job" => ("batch", "jobs"),
        "CronJob" => ("batch", "cronjobs"),
        _ => return None,
    })
}

fn review(operation: &str, namespace: &str, object: &Value, user: &str) -> Value {
    let kind = object["kind"].as_str().unwrap_or("Pod");
    let (group, resource) = resource_of(kind).unwrap_or(("", "configmaps"));
    let mut review = common::review_as(operation, namespace, object, user);
    review["request"]["kind"] = json!({"group": group, "version": "v1", "kind": kind});
    review["request"]["resource"] = json!({"group": group, "version": "v1", "resource": resource});
    review
}

/// The seed corpus of the review target: every object in the test fixtures
/// as the reviews the API server would send for it.
fn seed_reviews() -> Vec<Value> {
    let mut objects = Vec::new();
    let mut files: Vec<PathBuf> = [
        "tests/fixtures/check",
        "tests/fixtures/mutate",
        "tests/fixtures/provisioning",
        "tests/fixtures/trust-bundle",
    ]
    .iter()
    .flat_map(|d| std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()))
    .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json"))
    .filter(|p| {
        !p.to_string_lossy().ends_with(".patch.json")
            && p.file_name().is_some_and(|n| n != "policy.yaml")
    })
    .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let docs: Vec<Value> = if file.extension().is_some_and(|e| e == "json") {
            vec![serde_json::from_str(&text).unwrap()]
        } else {
            serde_saphyr::from_multiple(&text).unwrap_or_default()
        };
        objects.extend(
            docs.into_iter()
                .filter(|d| d["kind"].as_str().and_then(resource_of).is_some()),
        );
    }
    let hub = "system:serviceaccount:jupyterhub:hub";
    let mut reviews = Vec::new();
    for object in &objects {
        for namespace in ["strict", "base", "nowhere"] {
            reviews.push(review("CREATE", namespace, object, hub));
        }
        let mut update = review("UPDATE", "strict", object, "alice");
        update["request"]["oldObject"] = object.clone();
        reviews.push(update.clone());
        if object["kind"] == "Pod" {
            let mut debug = object.clone();
            debug["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox", "securityContext": {"privileged": true}}]);
            let mut ephemeral = review("UPDATE", "strict", &debug, "alice");
            ephemeral["request"]["subResource"] = json!("ephemeralcontainers");
            ephemeral["request"]["oldObject"] = object.clone();
            reviews.push(ephemeral);
        }
    }
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "strict", "labels": {"unroot.dev/enforce": "restricted", "unroot.dev/harden": "warn"}}});
    let mut ns = common::review_as("UPDATE", "strict", &namespace, "alice");
    ns["request"]["resource"] = json!({"group": "", "version": "v1", "resource": "namespaces"});
    ns["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Namespace"});
    ns["request"]["oldObject"] =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "strict"}});
    reviews.push(ns);
    let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unroot-policy", "labels": {"unroot.dev/policy": "true"}},
        "data": {"policy.yaml": fuzz_entry::POLICY}});
    reviews.push(review("UPDATE", "unroot", &configmap, "alice"));
    let list = json!({"apiVersion": "v1", "kind": "EphemeralContainers", "metadata": {"name": "stored"},
        "ephemeralContainers": [{"name": "debug", "image": "busybox"}]});
    let mut old_style = review("UPDATE", "strict", &list, "alice");
    old_style["request"]["resource"] = json!({"group": "", "version": "v1", "resource": "pods"});
    old_style["request"]["subResource"] = json!("ephemeralcontainers");
    reviews.push(old_style);
    for (i, r) in reviews.iter_mut().enumerate() {
        r["request"]["uid"] = json!(format!("seed-{i}"));
    }
    reviews
}

fn write_or_compare(dir: &str, files: &[(String, Vec<u8>)]) {
    let update = std::env::var_os("UPDATE_FIXTURES").is_some_and(|v| v == "1");
    if update {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
    }
    for (name, bytes) in files {
        let path = Path::new(dir).join(name);
        if update {
            std::fs::write(&path, bytes).unwrap();
        } else {
            let stored = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (regenerate with UPDATE_FIXTURES=1)",
                    path.display()
                )
            });
            assert!(
                stored == *bytes,
                "{} differs (regenerate with UPDATE_FIXTURES=1)",
                path.display()
            );
        }
    }
    let count = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(
        count,
        files.len(),
        "{dir} has stale seeds (regenerate with UPDATE_FIXTURES=1)"
    );
}

/// The seed corpora are the fixtures: regenerated with `UPDATE_FIXTURES=1`
/// when a fixture changes.
#[test]
fn seed_corpora_are_the_current_fixtures() {
    let reviews: Vec<(String, Vec<u8>)> = seed_reviews()
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("seed-{i:03}.json"), serde_json::to_vec(r).unwrap()))
        .collect();
    write_or_compare("tests/fixtures/fuzz/seeds/review", &reviews);
    // The shipped policies seed the policy target as they are (see
    // SHIPPED_POLICIES); these are the shapes they do not show.
    let files = [(
        "overrides.yaml".to_owned(),
        b"apiVersion: unroot.dev/v1\nkind: Policy\nsecurityContext: {runAsUser: 10001, override: true}\npodSecurity:\n  exemptions: {namespaces: [a], usernames: [b], runtimeClassNames: [c]}\nbogus: 1\n".to_vec(),
    )];
    write_or_compare("tests/fixtures/fuzz/seeds/policy", &files);
}
