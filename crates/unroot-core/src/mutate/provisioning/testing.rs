//! Helpers the provisioning tests share: the fixture policy, a spawned pod,
//! and the mutation run the way the webhook runs it.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::mutate::{self, Input, Outcome};
use crate::policy::Document;

pub(super) const POLICY: &str =
    include_str!("../../../../../tests/fixtures/provisioning/policy.yaml");
pub(super) const HUB: &str = "system:serviceaccount:jupyterhub:hub";
pub(super) const DIGEST: &str = "registry.example.com/unroot/provisioner@sha256:4f2c8a61d0e5b9a7c3f1e8d2b6a4c0e9f7d5b3a1c8e6f4d2b0a9c7e5f3d1b8a6";

pub(super) fn policy() -> Document {
    Document::from_yaml(POLICY).unwrap()
}

pub(super) fn selected() -> BTreeMap<String, String> {
    BTreeMap::from([("unroot.dev/provisioning".to_owned(), "enabled".to_owned())])
}

pub(super) fn identity() -> Value {
    json!({"unroot.dev/user": "alice", "unroot.dev/uid": "1001", "unroot.dev/gid": "1001",
           "unroot.dev/groups": "research:2001,staff:2002"})
}

pub(super) fn spawned(annotations: &Value, spec: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "jupyter-alice", "namespace": "hub-users", "annotations": annotations},
           "spec": spec})
}

pub(super) fn notebook() -> Value {
    json!({"containers": [{"name": "notebook", "image": "jupyter/base-notebook"}]})
}

pub(super) fn run(
    object: &Value,
    policy: &Document,
    labels: &BTreeMap<String, String>,
    requester: &str,
) -> mutate::Result<Outcome> {
    let input = Input {
        policy,
        namespace_labels: labels,
        requester,
    };
    mutate::Checked::object(object)
        .and_then(|pod| mutate::pod(pod, &input))
        .and_then(|planned| planned.apply_to(object))
}

/// Mutates as the hub in a selected namespace, checks the patch applies
/// and that re-mutation adds nothing.
pub(super) fn admit(object: &Value) -> Outcome {
    let policy = policy();
    let outcome = run(object, &policy, &selected(), HUB).unwrap();
    let mut applied = object.clone();
    json_patch::patch(&mut applied, &outcome.patch).unwrap();
    assert_eq!(applied, outcome.object);
    let again = run(&outcome.object, &policy, &selected(), HUB).unwrap();
    assert!(
        again.patch.0.is_empty(),
        "re-mutation patched {:?}",
        again.patch
    );
    assert_eq!(again.identity, outcome.identity);
    outcome
}
