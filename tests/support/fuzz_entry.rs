//! The entry points the fuzz targets drive (fuzz/fuzz_targets/*.rs include
//! this file), shared with tests/fuzz_regressions.rs so that every crash the
//! fuzzer finds is replayed by `cargo test` through the very same code.
//!
//! `review` is the server's review path without its I/O: the same decode,
//! the same pure decisions (`/mutate` and `/validate`, with the namespace
//! lookup answered from a fixed map as `Namespaces::Fixed` does), and the
//! same encode. `policy` is the policy parser the ConfigMap watch, the
//! policy-validating webhook and `--policy` use.
#![allow(dead_code)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use unroot::admission::namespace::{self, Step};
use unroot::admission::validate::{self, NamespaceLabels};
use unroot::admission::{self, Decoded, Response, Target};
use unroot::mutate::{self, Requester};
use unroot::policy::{Document, Snapshot};

/// The policy the handler target runs with: provisioning and the trust
/// bundle enabled, so their paths are reached too.
pub const POLICY: &str = include_str!("../fixtures/provisioning/policy.yaml");

/// What one webhook answered: an HTTP 400 (the body was not a review with a
/// uid) or an encoded AdmissionReview.
#[derive(Debug)]
pub enum Answer {
    /// The server's 400 with this message.
    BadRequest(String),
    /// The AdmissionReview bytes the server would send with HTTP 200.
    Review(Vec<u8>),
}

/// The namespaces the fixed lookup knows; any other fails like a namespace
/// the API server does not have.
pub fn namespaces() -> BTreeMap<String, BTreeMap<String, String>> {
    let labels = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>()
    };
    BTreeMap::from([
        (
            "strict".to_owned(),
            labels(&[
                ("unroot.dev/enforce", "restricted"),
                ("unroot.dev/provisioning", "enabled"),
                ("unroot.dev/trust-bundle", "enabled"),
            ]),
        ),
        (
            "base".to_owned(),
            labels(&[
                ("unroot.dev/enforce", "baseline"),
                ("unroot.dev/warn", "restricted"),
                ("unroot.dev/harden", "warn"),
            ]),
        ),
        ("default".to_owned(), BTreeMap::new()),
    ])
}

/// The snapshot of [`POLICY`].
///
/// # Panics
/// If the fixture policy is invalid (a test proves it is not).
pub fn snapshot() -> Snapshot {
    Snapshot::new(Document::from_yaml(POLICY).expect("the fixture policy is valid"))
}

/// Answers `body` as `/mutate` and as `/validate` would, in that order.
pub fn review(
    body: &[u8],
    policy: &Snapshot,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
) -> [Answer; 2] {
    let decoded = match admission::decode(body) {
        Err(e) => {
            let message = e.to_string();
            return [
                Answer::BadRequest(message.clone()),
                Answer::BadRequest(message),
            ];
        }
        Ok(decoded) => decoded,
    };
    let review = match decoded {
        Decoded::Malformed {
            api_version,
            uid,
            message,
        } => {
            let response = Response::deny(&uid, 400, "BadRequest", message);
            let bytes = admission::encode(api_version, &response);
            return [Answer::Review(bytes.clone()), Answer::Review(bytes)];
        }
        Decoded::Review(review) => review,
    };
    let req = &review.request;
    let lookup = namespaces.get(req.namespace());
    let mutated = match lookup {
        None => Response::deny(&req.uid, 500, "InternalError", "failed to lookup namespace"),
        Some(labels) => admission::mutate(req, policy, labels).decision.response,
    };
    let validated = match req.target() {
        Target::ConfigMap => admission::validate_policy_configmap(req),
        Target::Pod | Target::Workload(_) => validate_pod(req, policy, lookup),
        Target::Namespace => match namespace::decide(req, policy) {
            Step::Done(decision) => decision.response,
            Step::DryRun(dry) => {
                let warnings = namespace::check_existing_pods(
                    &dry.namespace,
                    dry.enforce,
                    vec![stored_pod()],
                    &policy.pod_security.exemptions.runtime_class_names,
                    |_| None,
                    || false,
                );
                let mut response = Response::allow(&req.uid);
                response.warnings = warnings;
                response
            }
        },
        Target::Other => Response::allow(&req.uid),
    };
    [
        Answer::Review(admission::encode(review.api_version, &mutated)),
        Answer::Review(admission::encode(review.api_version, &validated)),
    ]
}

fn validate_pod(
    req: &admission::Request<'_>,
    policy: &Snapshot,
    lookup: Option<&BTreeMap<String, String>>,
) -> Response {
    if let Some(answer) = validate::before_lookup(req, policy) {
        return answer.response;
    }
    let labels = match lookup {
        Some(labels) => NamespaceLabels::Found(labels.clone()),
        None => NamespaceLabels::Failed("namespaces not found".to_owned()),
    };
    // A 1.20/1.21 ephemeralcontainers request: the shell reads the stored pod.
    let pod = if validate::needs_pod(req) {
        match req
            .object
            .and_then(|o| validate::merge_ephemeral_containers(stored_pod(), o))
        {
            Some(pod) => Some(pod),
            None => return Response::deny(&req.uid, 500, "InternalError", "no pod"),
        }
    } else {
        None
    };
    let none = BTreeMap::new();
    let input = mutate::Input {
        policy,
        namespace_labels: lookup.unwrap_or(&none),
        requester: &req.user_info.username,
    };
    let vouch = if req.operation == admission::Operation::Create {
        Requester::MustBeTrusted
    } else {
        Requester::StoredPod
    };
    let vouched = |pod: &unroot::view::Pod<'_>| mutate::vouch(pod, &input, vouch);
    validate::evaluate(req, policy, &labels, pod, vouched).response
}

/// The pod a GET of the stored pod returns.
fn stored_pod() -> Pod {
    let mut pod = Pod::default();
    pod.metadata.name = Some("stored".to_owned());
    pod.spec = Some(k8s_openapi::api::core::v1::PodSpec {
        containers: vec![k8s_openapi::api::core::v1::Container {
            name: "app".to_owned(),
            image: Some("busybox".to_owned()),
            ..Default::default()
        }],
        ..Default::default()
    });
    pod
}

/// Checks what a webhook answered: a 400 names the problem; a review is
/// valid JSON, an AdmissionReview whose response echoes a uid, and a
/// denial says why.
///
/// # Panics
/// When the answer is not one a client could act on.
pub fn check_answer(answer: &Answer) {
    match answer {
        Answer::BadRequest(message) => assert!(!message.is_empty(), "a 400 without a message"),
        Answer::Review(bytes) => {
            let value: serde_json::Value =
                serde_json::from_slice(bytes).expect("the answer is JSON");
            assert_eq!(value["kind"], "AdmissionReview");
            let response = &value["response"];
            assert!(
                response["uid"].as_str().is_some_and(|u| !u.is_empty()),
                "no uid: {value}"
            );
            if response["allowed"] == false {
                assert!(
                    response["status"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()),
                    "a denial without a message: {value}"
                );
            }
        }
    }
}

/// Parses `bytes` as a policy document, as the ConfigMap watch does.
/// Returns the error text, or `None` when the policy is valid; a valid
/// policy must print and parse back to the same policy.
///
/// # Panics
/// When a valid policy does not survive the round trip, or an error says
/// nothing.
pub fn policy(bytes: &[u8]) -> Option<String> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        // A ConfigMap's data values are strings: the API server never
        // delivers invalid UTF-8 as a policy.
        return Some("not UTF-8".to_owned());
    };
    match Document::from_yaml(text) {
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty(), "an error without a message");
            Some(message)
        }
        Ok(document) => {
            let printed = document.to_yaml().expect("a valid policy prints");
            let again = Document::from_yaml(&printed).unwrap_or_else(|e| {
                panic!("the printed policy does not parse back: {e}\n{printed}")
            });
            assert_eq!(
                again.hash(),
                document.hash(),
                "the printed policy is another policy:\n{printed}"
            );
            None
        }
    }
}
