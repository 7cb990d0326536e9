//! The differential test of the mutation: the path over the [`crate::view`]
//! against the path it replaced ([`super::legacy`], the `Value` tree), on
//! every fixture pod and workload and on the property-test generators,
//! under every policy setting that changes what a mutation does. Same
//! verdict (admitted, or the same refusal), same warnings, same mutations
//! applied, same identity ConfigMap, and patches that produce the same
//! hardened object.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{Input, legacy};
use crate::policy::Document;

#[path = "../../../../tests/support/pod_strategy.rs"]
mod pod_strategy;

const HUB: &str = "system:serviceaccount:jupyterhub:hub";

/// A policy setting: the policy, the namespace's labels, the requester.
struct Setting {
    name: &'static str,
    policy: Document,
    labels: BTreeMap<String, String>,
    requester: &'static str,
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn settings() -> Vec<Setting> {
    let provisioning = Document::from_yaml(include_str!(
        "../../../../tests/fixtures/provisioning/policy.yaml"
    ))
    .expect("the provisioning fixture policy");
    let mut overriding = Document::embedded();
    overriding.security_context.r#override = true;
    overriding.security_context.read_only_root_filesystem = true;
    overriding.security_context.allowed_capabilities =
        vec!["NET_BIND_SERVICE".to_owned(), "CHOWN".to_owned()];
    let mut no_env = Document::embedded();
    no_env.trust_bundle.set_env = false;
    no_env.security_context.set_fs_group = false;
    let bundle = labels(&[("unroot.dev/trust-bundle", "enabled")]);
    vec![
        Setting {
            name: "default",
            policy: Document::embedded(),
            labels: BTreeMap::new(),
            requester: "",
        },
        Setting {
            name: "trust bundle",
            policy: Document::embedded(),
            labels: bundle.clone(),
            requester: "",
        },
        Setting {
            name: "trust bundle, no env",
            policy: no_env,
            labels: bundle,
            requester: "",
        },
        Setting {
            name: "warn",
            policy: Document::embedded(),
            labels: labels(&[("unroot.dev/harden", "warn")]),
            requester: "",
        },
        Setting {
            name: "off",
            policy: Document::embedded(),
            labels: labels(&[("unroot.dev/harden", "off")]),
            requester: "",
        },
        Setting {
            name: "override",
            policy: overriding.clone(),
            labels: BTreeMap::new(),
            requester: "",
        },
        Setting {
            name: "override, warn",
            policy: overriding,
            labels: labels(&[("unroot.dev/harden", "warn")]),
            requester: "",
        },
        Setting {
            name: "provisioning, hub",
            policy: provisioning.clone(),
            labels: labels(&[
                ("unroot.dev/provisioning", "enabled"),
                ("unroot.dev/trust-bundle", "enabled"),
            ]),
            requester: HUB,
        },
        Setting {
            name: "provisioning, someone else",
            policy: provisioning,
            labels: labels(&[("unroot.dev/provisioning", "enabled")]),
            requester: "mallory",
        },
    ]
}

/// Runs both paths on `object` and says how they differ, if they do.
fn compare(object: &Value, setting: &Setting) -> Result<(), String> {
    let input = Input {
        policy: &setting.policy,
        namespace_labels: &setting.labels,
        requester: setting.requester,
    };
    let old = legacy::object(object, &input);
    let new = super::Checked::object(object)
        .and_then(|pod| super::pod(pod, &input))
        .and_then(|planned| planned.apply_to(object));
    match (old, new) {
        (Ok(old), Ok(new)) => {
            let mut diffs = Vec::new();
            if old.object != new.object {
                diffs.push(format!(
                    "hardened object:\n  old {}\n  new {}",
                    old.object, new.object
                ));
            }
            if old.warnings != new.warnings {
                diffs.push(format!(
                    "warnings:\n  old {:?}\n  new {:?}",
                    old.warnings, new.warnings
                ));
            }
            if old.applied != new.applied {
                diffs.push(format!(
                    "applied: old {:?}, new {:?}",
                    old.applied, new.applied
                ));
            }
            if old.harden != new.harden {
                diffs.push(format!(
                    "harden: old {:?}, new {:?}",
                    old.harden, new.harden
                ));
            }
            if old.identity != new.identity {
                diffs.push("identity ConfigMap differs".to_owned());
            }
            // The patch itself is minimal on both: the same number of
            // operations (their order inside a folded value may differ).
            if old.patch.0.len() != new.patch.0.len() {
                diffs.push(format!(
                    "patch length: old {}, new {}\n  old {}\n  new {}",
                    old.patch.0.len(),
                    new.patch.0.len(),
                    serde_json::to_string(&old.patch).unwrap_or_default(),
                    serde_json::to_string(&new.patch).unwrap_or_default()
                ));
            }
            if diffs.is_empty() {
                Ok(())
            } else {
                Err(diffs.join("\n"))
            }
        }
        (Err(old), Err(new)) => {
            // A refused identity names the same rules; a pod that does not
            // decode is refused by both.
            match (&old, &new) {
                (super::Error::Forbidden(_), super::Error::Forbidden(_))
                    if old.to_string() != new.to_string() =>
                {
                    Err(format!("refusal:\n  old {old}\n  new {new}"))
                }
                _ => Ok(()),
            }
        }
        (Ok(_), Err(new)) => Err(format!("only the new path refuses: {new}")),
        (Err(old), Ok(_)) => Err(format!("only the old path refuses: {old}")),
    }
}

/// Every object in the YAML and JSON fixtures.
fn fixtures() -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for dir in [
        "tests/fixtures/mutate",
        "tests/fixtures/provisioning",
        "tests/fixtures/trust-bundle",
        "tests/fixtures/check",
    ] {
        // The fixtures are the root package's (tests/fixtures), shared.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(dir);
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default();
            if !matches!(ext, "yaml" | "yml") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let Ok(docs) = serde_saphyr::from_multiple::<Value>(&text) else {
                continue;
            };
            for (i, doc) in docs.into_iter().enumerate() {
                if doc.get("kind").and_then(Value::as_str).is_some() {
                    found.push((format!("{}#{i}", path.display()), doc));
                }
            }
        }
    }
    found
}

#[test]
fn the_view_path_mutates_every_fixture_as_the_value_path_did() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 10, "fixtures found: {}", fixtures.len());
    let mut failures = Vec::new();
    for setting in settings() {
        for (name, object) in &fixtures {
            if let Err(diff) = compare(object, &setting) {
                failures.push(format!("{name} ({}): {diff}", setting.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_view_path_mutates_pods_of_every_shape_as_the_value_path_did() {
    let settings = settings();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 400,
        ..ProptestConfig::default()
    });
    let result = runner.run(&pod_strategy::pod(true), |pod| {
        for setting in &settings {
            if let Err(diff) = compare(&pod, setting) {
                return Err(TestCaseError::fail(format!(
                    "{} ({}): {diff}",
                    pod, setting.name
                )));
            }
        }
        Ok(())
    });
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn workloads_and_odd_pods_too() {
    let objects = [
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"jobTemplate": {"spec": {"template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "a", "image": "x", "securityContext": {"runAsUser": 0}}]}}}}}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w"},
            "spec": {"os": {"name": "windows"}, "containers": [{"name": "a", "image": "x"}]}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "m", "annotations": {"kubernetes.io/config.mirror": "x"}},
            "spec": {"containers": [{"name": "a", "image": "x"}]}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "n", "annotations": null},
            "spec": {"securityContext": null, "containers": [{"name": "a", "image": "x", "securityContext": null}]}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "x", "securityContext": {"privileged": true, "capabilities": {"add": ["CAP_SYS_ADMIN", "NET_RAW"], "drop": []}}}]}}),
    ];
    let mut failures = Vec::new();
    for setting in settings() {
        for object in &objects {
            if let Err(diff) = compare(object, &setting) {
                failures.push(format!("{object} ({}): {diff}", setting.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
