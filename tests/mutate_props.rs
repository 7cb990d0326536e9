//! Property tests: for generated pods, the patch applies, the result is
//! hardened, and mutating the result again yields an empty patch.

mod common;

use common::hardening_gaps;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use unroot::mutate;
use unroot::policy::Document;

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![Just(None), s.prop_map(Some)].boxed()
}

fn insert(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.to_owned(), v);
    }
}

/// A container securityContext; `unsafe_values` also draws explicit insecure values.
fn container_sc(unsafe_values: bool) -> impl Strategy<Value = Option<Value>> {
    let uid = if unsafe_values {
        (0i64..3).boxed()
    } else {
        (1i64..100_000).boxed()
    };
    let escalation = if unsafe_values {
        any::<bool>().boxed()
    } else {
        Just(false).boxed()
    };
    let drops = proptest::sample::subsequence(vec!["NET_RAW", "ALL", "CHOWN", "all"], 0..=4);
    let adds = if unsafe_values {
        proptest::sample::subsequence(vec!["NET_BIND_SERVICE", "SYS_ADMIN", "NET_RAW"], 0..=3)
            .boxed()
    } else {
        proptest::sample::subsequence(vec!["NET_BIND_SERVICE"], 0..=1).boxed()
    };
    let seccomp = if unsafe_values {
        prop::sample::select(vec!["RuntimeDefault", "Unconfined"]).boxed()
    } else {
        Just("RuntimeDefault").boxed()
    };
    opt((
        opt(uid),
        opt(escalation),
        opt(drops),
        opt(adds),
        opt(seccomp),
        opt(any::<bool>()),
    )
        .prop_map(|(uid, esc, drops, adds, seccomp, ro)| {
            let mut sc = Map::new();
            insert(&mut sc, "runAsUser", uid.map(Value::from));
            insert(&mut sc, "allowPrivilegeEscalation", esc.map(Value::from));
            if drops.is_some() || adds.is_some() {
                let mut caps = Map::new();
                insert(&mut caps, "drop", drops.map(|d| json!(d)));
                insert(&mut caps, "add", adds.map(|a| json!(a)));
                sc.insert("capabilities".to_owned(), Value::Object(caps));
            }
            insert(
                &mut sc,
                "seccompProfile",
                seccomp.map(|t| json!({"type": t})),
            );
            insert(&mut sc, "readOnlyRootFilesystem", ro.map(Value::from));
            Value::Object(sc)
        }))
}

fn containers(unsafe_values: bool, min: usize, max: usize) -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(container_sc(unsafe_values), min..=max).prop_map(|scs| {
        scs.into_iter()
            .enumerate()
            .map(|(i, sc)| {
                let mut c = json!({"name": format!("c{i}"), "image": "busybox"});
                if let Some(sc) = sc {
                    c["securityContext"] = sc;
                }
                c
            })
            .collect()
    })
}

fn pod(unsafe_values: bool) -> impl Strategy<Value = Value> {
    let uid = if unsafe_values {
        (0i64..3).boxed()
    } else {
        (1i64..100_000).boxed()
    };
    let non_root = if unsafe_values {
        any::<bool>().boxed()
    } else {
        Just(true).boxed()
    };
    let pod_sc = opt((
        opt(uid),
        opt(non_root),
        opt(1i64..100_000),
        opt(Just("RuntimeDefault")),
    )
        .prop_map(|(uid, nr, group, seccomp)| {
            let mut sc = Map::new();
            insert(&mut sc, "runAsUser", uid.map(Value::from));
            insert(&mut sc, "runAsNonRoot", nr.map(Value::from));
            insert(&mut sc, "runAsGroup", group.map(Value::from));
            insert(
                &mut sc,
                "seccompProfile",
                seccomp.map(|t| json!({"type": t})),
            );
            Value::Object(sc)
        }));
    let annotations = opt(prop::collection::btree_map(
        "[a-z~/.]{1,6}",
        "[a-z]{0,3}",
        0..3,
    ));
    (
        pod_sc,
        containers(unsafe_values, 0, 2),
        containers(unsafe_values, 1, 3),
        containers(unsafe_values, 0, 2),
        annotations,
    )
        .prop_map(|(sc, init, main, eph, annotations)| {
            let mut spec = json!({"containers": main});
            if !init.is_empty() {
                spec["initContainers"] = json!(init);
            }
            if !eph.is_empty() {
                spec["ephemeralContainers"] = json!(eph);
            }
            if let Some(sc) = sc {
                spec["securityContext"] = sc;
            }
            let mut p =
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec});
            if let Some(a) = annotations {
                p["metadata"]["annotations"] = json!(a);
            }
            p
        })
}

fn mutate_twice(pod: &Value) -> (Value, mutate::Outcome) {
    let policy = Document::embedded();
    let input = mutate::Input::new(&policy);
    let first = mutate::pod(pod, &input).unwrap();
    let mut applied = pod.clone();
    json_patch::patch(&mut applied, &first.patch)
        .expect("the patch applies to the pod it was made for");
    assert_eq!(
        applied, first.object,
        "the returned object is the patched pod"
    );
    let second = mutate::pod(&applied, &input).unwrap();
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
        let on = mutate::pod(&pod, &input(&on_labels)).unwrap();
        let warn = mutate::pod(&pod, &input(&warn_labels)).unwrap();
        prop_assert!(warn.patch.0.is_empty(), "warn patched: {:?}", warn.patch);
        prop_assert_eq!(&warn.object, &pod);
        check_would_lines(&pod, &on.object, &warn.warnings);
        let would = warn.warnings.iter().filter(|w| w.starts_with("would ")).count();
        prop_assert_eq!(would == 0, on.patch.0.is_empty(), "{:?}", warn.warnings);
    }
}
