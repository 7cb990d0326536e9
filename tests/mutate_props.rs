//! Property tests: for generated pods, the patch applies, the result is
//! hardened, and mutating the result again yields an empty patch.

use crate::common;

use crate::pod_strategy::pod;
use common::hardening_gaps;
use proptest::prelude::*;
use serde_json::{Value, json};
use unroot::mutate;
use unroot::policy::Document;

/// Mutates a Pod given as JSON, as `unroot mutate` does.
fn pod_json(pod: &Value, input: &mutate::Input<'_>) -> mutate::Result<mutate::Outcome> {
    mutate::Checked::object(pod)
        .and_then(|checked| mutate::pod(checked, input))
        .and_then(|planned| planned.apply_to(pod))
}

fn mutate_twice(pod: &Value) -> (Value, mutate::Outcome) {
    let policy = Document::embedded();
    let input = mutate::Input::new(&policy);
    let first = pod_json(pod, &input).unwrap();
    let mut applied = pod.clone();
    json_patch::patch(&mut applied, &first.patch)
        .expect("the patch applies to the pod it was made for");
    assert_eq!(
        applied, first.object,
        "the returned object is the patched pod"
    );
    let second = pod_json(&applied, &input).unwrap();
    (applied, second)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn safe_pods_come_out_hardened_and_stay_put(pod in pod(false)) {
        let (mutated, second) = mutate_twice(&pod);
        prop_assert_eq!(hardening_gaps(&mutated), Vec::<String>::new(), "{:#}", mutated);
        prop_assert!(second.patch.0.is_empty(), "second patch: {:?}", second.patch);
    }

    #[test]
    fn any_pod_patch_applies_and_is_idempotent(pod in pod(true)) {
        let (_, second) = mutate_twice(&pod);
        prop_assert!(second.patch.0.is_empty(), "second patch: {:?}", second.patch);
    }
}

/// The pod-level or container securityContext a warning line names.
fn security_context_of<'p>(pod: &'p Value, target: &str) -> &'p Value {
    if target == "pod" {
        return &pod["spec"]["securityContext"];
    }
    let name = target
        .strip_prefix("container \"")
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or_else(|| panic!("unexpected target {target:?}"));
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|l| pod["spec"][l].as_array().into_iter().flatten())
        .find(|c| c["name"] == name)
        .map_or(&Value::Null, |c| &c["securityContext"])
}

/// The value at a dotted field (`securityContext.capabilities.drop`) below
/// the securityContext.
fn field_of<'v>(sc: &'v Value, field: &str) -> &'v Value {
    field
        .strip_prefix("securityContext.")
        .unwrap_or_else(|| panic!("unexpected field {field:?}"))
        .split('.')
        .fold(sc, |v, k| &v[k])
}

/// Every leaf of the securityContexts of `pod`, as (target, field) → value.
fn leaves(pod: &Value) -> std::collections::BTreeMap<(String, String), Value> {
    fn walk(
        target: &str,
        field: &str,
        v: &Value,
        out: &mut std::collections::BTreeMap<(String, String), Value>,
    ) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    walk(target, &format!("{field}.{k}"), v, out);
                }
            }
            _ => {
                out.insert((target.to_owned(), field.to_owned()), v.clone());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(
        "pod",
        "securityContext",
        &pod["spec"]["securityContext"],
        &mut out,
    );
    for l in ["initContainers", "containers", "ephemeralContainers"] {
        for c in pod["spec"][l].as_array().into_iter().flatten() {
            let target = format!("container {:?}", c["name"].as_str().unwrap());
            walk(&target, "securityContext", &c["securityContext"], &mut out);
        }
    }
    out.retain(|_, v| !v.is_null());
    out
}

/// Checks each `would ...` line of warn mode against the pod `on` mode
/// produced, and that every securityContext leaf `on` changed is named.
fn check_would_lines(original: &Value, hardened: &Value, warnings: &[String]) {
    let mut named = std::collections::BTreeSet::new();
    // (target, list, element) → how many lines add or remove it.
    let mut added = std::collections::BTreeMap::new();
    let mut removed = std::collections::BTreeMap::new();
    for line in warnings.iter().filter_map(|w| w.strip_prefix("would ")) {
        let line = line.split(" (instead of ").next().unwrap();
        if let Some(rest) = line.strip_prefix("set ") {
            let (assignment, target) = rest.rsplit_once(" on ").unwrap();
            let (field, value) = assignment.split_once('=').unwrap();
            let value: Value = serde_json::from_str(value).unwrap();
            assert_eq!(
                field_of(security_context_of(hardened, target), field),
                &value,
                "{line}"
            );
            named.insert((target.to_owned(), field.to_owned()));
        } else if let Some(rest) = line.strip_prefix("add ") {
            let (value, rest) = rest.split_once(" to ").unwrap();
            let (field, target) = rest.rsplit_once(" on ").unwrap();
            let value: Value = serde_json::from_str(value).unwrap();
            let list = field_of(security_context_of(hardened, target), field);
            assert!(list.as_array().unwrap().contains(&value), "{line}");
            *added
                .entry((target.to_owned(), field.to_owned(), value.to_string()))
                .or_insert(0) += 1;
            named.insert((target.to_owned(), field.to_owned()));
        } else if let Some(rest) = line.strip_prefix("remove ") {
            let (value, rest) = rest.split_once(" from ").unwrap();
            let (field, target) = rest.rsplit_once(" on ").unwrap();
            let value: Value = serde_json::from_str(value).unwrap();
            let count = |pod: &Value| {
                field_of(security_context_of(pod, target), field)
                    .as_array()
                    .map_or(0, |l| l.iter().filter(|v| **v == value).count())
            };
            assert!(count(hardened) < count(original), "{line}");
            *removed
                .entry((target.to_owned(), field.to_owned(), value.to_string()))
                .or_insert(0) += 1;
            named.insert((target.to_owned(), field.to_owned()));
        } else {
            panic!("unexpected warning: would {line}");
        }
    }
    // Each element added to or removed from a list has exactly its lines.
    for ((target, field, value), lines) in added.iter().chain(&removed) {
        let value: Value = serde_json::from_str(value).unwrap();
        let count = |pod: &Value| {
            field_of(security_context_of(pod, target), field)
                .as_array()
                .map_or(0, |l| l.iter().filter(|v| **v == value).count())
        };
        let changed = count(hardened).abs_diff(count(original));
        assert_eq!(changed, *lines, "{target} {field} {value}: {lines} lines");
    }
    let (before, after) = (leaves(original), leaves(hardened));
    for (key, value) in &after {
        if before.get(key) != Some(value) {
            assert!(named.contains(key), "{key:?} changed to {value} unnamed");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Warn mode changes nothing, and its warnings say exactly what on mode
    /// changes: each line holds in the hardened pod, and every changed field
    /// has its line.
    #[test]
    fn warn_names_exactly_what_on_changes(pod in pod(true), r#override in any::<bool>()) {
        // Warnings name containers; the generator repeats names across
        // lists, which the API server refuses: make them unique.
        let mut pod = pod;
        for l in ["initContainers", "containers", "ephemeralContainers"] {
            for (i, c) in pod["spec"][l].as_array_mut().into_iter().flatten().enumerate() {
                c["name"] = json!(format!("{l}-{i}"));
            }
        }
        let mut policy = Document::embedded();
        policy.security_context.r#override = r#override;
        let labels = |mode: &str| {
            std::collections::BTreeMap::from([("unroot.dev/harden".to_owned(), mode.to_owned())])
        };
        let (on_labels, warn_labels) = (labels("on"), labels("warn"));
        let input = |labels| mutate::Input { namespace_labels: labels, ..mutate::Input::new(&policy) };
        let on = pod_json(&pod, &input(&on_labels)).unwrap();
        let warn = pod_json(&pod, &input(&warn_labels)).unwrap();
        prop_assert!(warn.patch.0.is_empty(), "warn patched: {:?}", warn.patch);
        prop_assert_eq!(&warn.object, &pod);
        check_would_lines(&pod, &on.object, &warn.warnings);
        let would = warn.warnings.iter().filter(|w| w.starts_with("would ")).count();
        prop_assert_eq!(would == 0, on.patch.0.is_empty(), "{:?}", warn.warnings);
    }
}

/// The properties below go through the real server over TLS, as the API
/// server would see the answers: one server, on a runtime of its own, for
/// all cases of a property.
struct Served {
    runtime: tokio::runtime::Runtime,
    server: common::Server,
}

impl Served {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(common::start_with(common::Options {
            namespaces: common::namespaces(&[("strict", &[("unroot.dev/enforce", "restricted")])]),
            ..Default::default()
        }));
        Self { runtime, server }
    }

    fn admit(&self, path: &str, review: &Value) -> Value {
        self.runtime.block_on(self.server.admit(path, review))
    }

    fn stop(self) {
        self.runtime.block_on(self.server.shutdown());
    }
}

/// Gives every container a distinct name (the generator repeats them
/// across lists, which the API server refuses).
fn unique_names(mut pod: Value) -> Value {
    for l in ["initContainers", "containers", "ephemeralContainers"] {
        for (i, c) in pod["spec"][l]
            .as_array_mut()
            .into_iter()
            .flatten()
            .enumerate()
        {
            c["name"] = json!(format!("{l}-{i}"));
        }
    }
    pod
}

/// Any uid the API server could send: printable text, quotes, backslashes,
/// line separators, non-ASCII.
fn uid() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "\\PC{1,40}",
        Just("\"\\\u{2028}\u{0}\t".to_owned()),
    ]
}

#[test]
fn every_answer_echoes_the_request_uid_and_its_patch_applies() {
    let served = Served::start();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
    let strategy = (
        uid(),
        prop::sample::select(vec!["CREATE", "UPDATE", "DELETE", "CONNECT", "PATCH"]),
        prop::sample::select(vec!["/mutate", "/validate"]),
        prop::sample::select(vec!["", "ephemeralcontainers", "status"]),
        any::<bool>(),
        pod(true),
    );
    let result = runner.run(&strategy, |(uid, operation, path, sub, malformed, pod)| {
        let mut review = common::review_for(operation, "strict", &pod);
        review["request"]["uid"] = json!(uid);
        review["request"]["oldObject"] = pod.clone();
        if !sub.is_empty() {
            review["request"]["subResource"] = json!(sub);
        }
        if malformed {
            review["request"]["userInfo"] = json!("not an object");
        }
        // admit() checks the envelope: HTTP 200, the same apiVersion, and
        // the response's uid equal to the request's.
        let response = served.admit(path, &review);
        prop_assert_eq!(&response["uid"], &json!(uid));
        if malformed {
            prop_assert_eq!(&response["allowed"], &json!(false));
            prop_assert_eq!(&response["status"]["code"], &json!(400));
        }
        if response["patch"].is_string() {
            let mut patched = pod.clone();
            let applied = json_patch::patch(&mut patched, &common::patch_of(&response));
            prop_assert!(applied.is_ok(), "{:?}", applied);
        }
        Ok(())
    });
    served.stop();
    result.unwrap();
}

/// The container names a restricted denial lists for one check, e.g.
/// `allowPrivilegeEscalation != false (containers "a", "b" must set …)`.
fn named_in(message: &str, reason: &str) -> Vec<String> {
    detail_of(message, reason)
        .unwrap_or_default()
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The detail of one reason in a denial.
fn detail_of<'m>(message: &'m str, reason: &str) -> Option<&'m str> {
    let start = message.find(&format!("{reason} ("))?;
    let detail = &message[start + reason.len() + 2..];
    Some(&detail[..detail.find(')').unwrap_or(detail.len())])
}

/// What the user wrote explicitly for `field` in the container `name`.
fn explicit(pod: &Value, name: &str, field: &str) -> Value {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|l| pod["spec"][l].as_array().into_iter().flatten())
        .find(|c| c["name"] == name)
        .map_or(Value::Null, |c| c["securityContext"][field].clone())
}

#[test]
fn a_mutated_pod_is_never_denied_for_what_the_mutation_fixes() {
    let served = Served::start();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(96));
    let result = runner.run(&pod(true).prop_map(unique_names), |pod| {
        let mutated = served.admit("/mutate", &common::review_for("CREATE", "strict", &pod));
        prop_assert_eq!(&mutated["allowed"], &json!(true));
        let hardened = common::apply(&pod, &mutated);
        let response = served.admit(
            "/validate",
            &common::review_for("CREATE", "strict", &hardened),
        );
        let message = response["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // What /mutate sets when the user did not choose: these "must set"
        // details are never left for /validate to deny.
        for implicit in [
            "must set securityContext.capabilities.drop=[\"ALL\"]",
            "must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
        ] {
            prop_assert!(!message.contains(implicit), "{}\n{:#}", message, hardened);
        }
        // runAsNonRoot is left unset only where a container explicitly runs
        // as uid 0 (the kubelet would refuse the pod otherwise): /mutate
        // warns, and the denial names that runAsUser=0 too.
        if message.contains("must set securityContext.runAsNonRoot=true") {
            let warned = common::warnings_of(&mutated).iter().any(|w| {
                w.contains("runAsNonRoot is not set because")
                    && w.ends_with("explicitly runs as root")
            });
            prop_assert!(warned, "no warning: {:?}", common::warnings_of(&mutated));
            prop_assert!(message.contains("runAsUser=0 ("), "{}", message);
        }
        // allowPrivilegeEscalation has one message for unset and true: only
        // a container that chose true may be named.
        for name in named_in(&message, "allowPrivilegeEscalation != false") {
            prop_assert_eq!(
                explicit(&pod, &name, "allowPrivilegeEscalation"),
                json!(true),
                "{} named: {}",
                name,
                message
            );
        }
        // What remains names explicit choices only.
        for name in named_in(&message, "runAsUser=0") {
            prop_assert_eq!(explicit(&pod, &name, "runAsUser"), json!(0), "{}", message);
        }
        if detail_of(&message, "runAsUser=0").is_some_and(|d| d.starts_with("pod ")) {
            prop_assert_eq!(
                &pod["spec"]["securityContext"]["runAsUser"],
                &json!(0),
                "{}",
                message
            );
        }
        Ok(())
    });
    served.stop();
    result.unwrap();
}
