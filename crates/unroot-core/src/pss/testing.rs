//! Table-test helpers for the checks: pods written as JSON, run through one
//! check at one version.

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use super::{Check, Input, Version};

/// The three container lists, in visit order.
pub(crate) const KINDS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

/// One row: a pod, the version to evaluate at, and the expected
/// `(reason, detail)` or `None` for allowed.
pub(crate) struct Case {
    pub name: String,
    pub version: &'static str,
    pub pod: Value,
    pub want: Option<(&'static str, String)>,
}

/// A row expecting `want`.
pub(crate) fn case(
    name: impl Into<String>,
    version: &'static str,
    pod: Value,
    want: Option<(&'static str, &str)>,
) -> Case {
    Case {
        name: name.into(),
        version,
        pod,
        want: want.map(|(reason, detail)| (reason, detail.to_owned())),
    }
}

/// A pod from a spec fragment (`containers` defaults to empty).
pub(crate) fn pod(spec: Value) -> Value {
    pod_with_meta(&json!({}), spec)
}

/// A pod from metadata and a spec fragment.
pub(crate) fn pod_with_meta(meta: &Value, mut spec: Value) -> Value {
    if spec.get("containers").is_none() {
        spec["containers"] = json!([]);
    }
    json!({"metadata": meta, "spec": spec})
}

/// A pod whose `kind` list (one of [`KINDS`]) holds `containers`, merged into
/// the spec fragment `spec`.
pub(crate) fn pod_in(kind: &str, containers: Value, mut spec: Value) -> Value {
    spec[kind] = containers;
    pod(spec)
}

/// Runs `check` as it behaves at `version` on `pod`.
pub(crate) fn run(
    check: fn() -> Check,
    version: &str,
    pod: &Value,
) -> Option<(&'static str, String)> {
    let meta: ObjectMeta = serde_json::from_value(pod["metadata"].clone()).expect("test metadata");
    let spec: PodSpec = serde_json::from_value(pod["spec"].clone()).expect("test spec");
    let version: Version = version.parse().expect("test version");
    let minor = match version {
        Version::Minor(m) => m,
        Version::Latest => u64::MAX,
    };
    let check = check();
    let active = check.at(minor)?;
    let api = (active.eval)(&Input::of_api(&meta, &spec, None)).map(|f| (f.reason, f.detail));
    // The same pod as admission decodes it: the same verdict.
    let text = pod.to_string();
    let view = crate::view::decode(&text).expect("test pod as a view");
    let of_view = (active.eval)(&Input::of_view(&view, None)).map(|f| (f.reason, f.detail));
    assert_eq!(api, of_view, "the view and the API types disagree on {pod}");
    api
}

/// Asserts every row, reporting all mismatches at once.
pub(crate) fn assert_cases(check: fn() -> Check, cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        let got = run(check, c.version, &c.pod);
        let want = c.want.as_ref().map(|(r, d)| (*r, d.clone()));
        if got != want {
            failures.push(format!(
                "{} @ {}:\n   got {got:?}\n  want {want:?}",
                c.name, c.version
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
