//! Generated pods for property tests: securityContexts at pod and container
//! level with safe and (optionally) explicit insecure values, in every
//! container list, with arbitrary annotations. Shared by
//! `tests/mutate_props.rs` and the differential test of the mutation
//! (`crates/unroot-core/src/mutate/differential.rs`).
#![allow(dead_code)]

use proptest::prelude::*;
use serde_json::{Map, Value, json};

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

pub fn containers(
    unsafe_values: bool,
    min: usize,
    max: usize,
) -> impl Strategy<Value = Vec<Value>> {
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

pub fn pod(unsafe_values: bool) -> impl Strategy<Value = Value> {
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
