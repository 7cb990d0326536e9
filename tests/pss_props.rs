//! Property tests for the Pod Security Standards evaluator on generated pods:
//! it never panics, restricted is never laxer than baseline, versions past
//! the newest behave as `latest`, and reasons come in upstream order.

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use serde_json::{Map, Value, json};
use unroot::pss::{Level, LevelVersion, Version, evaluate};

/// Spec §1.4: the order reasons appear in.
const ORDER: [&str; 19] = [
    "appArmorProfile",
    "capabilities_baseline",
    "hostNamespaces",
    "hostPathVolumes",
    "hostPorts",
    "hostProbesAndHostLifecycle",
    "privileged",
    "procMount",
    "seLinuxOptions",
    "seccompProfile_baseline",
    "sysctls",
    "windowsHostProcess",
    "allowPrivilegeEscalation",
    "capabilities_restricted",
    "procMount_restricted",
    "restrictedVolumes",
    "runAsNonRoot",
    "runAsUser",
    "seccompProfile_restricted",
];

/// Mostly absent (compliant for most fields), sometimes one of `values`.
fn maybe(values: Vec<Value>) -> BoxedStrategy<Option<Value>> {
    mostly(None, values)
}

/// Mostly `good`, so that enough pods pass restricted for the properties to
/// compare something; else absent or one of `values`.
fn mostly(good: Option<Value>, values: Vec<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        8 => Just(good),
        1 => Just(None),
        1 => select(values).prop_map(Some),
    ]
    .boxed()
}

/// Mostly a subset of `good`, sometimes a subset of `all`.
fn mostly_subset(
    good: Vec<&'static str>,
    all: Vec<&'static str>,
) -> BoxedStrategy<Vec<&'static str>> {
    let (m, n) = (good.len(), all.len());
    prop_oneof![3 => subsequence(good, 0..=m), 1 => subsequence(all, 0..=n)].boxed()
}

fn set(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.to_owned(), v);
    }
}

fn container(name: &'static str) -> impl Strategy<Value = Value> {
    let first = (
        maybe(vec![json!(true), json!(false)]),
        mostly(Some(json!(false)), vec![json!(true)]),
        maybe(vec![json!(true), json!(false)]),
        maybe(vec![json!(0), json!(1000)]),
        mostly_subset(
            vec!["NET_BIND_SERVICE"],
            vec!["NET_BIND_SERVICE", "CHOWN", "SYS_ADMIN"],
        ),
        prop_oneof![3 => Just(vec!["ALL"]), 1 => subsequence(vec!["ALL", "all", "NET_RAW"], 0..=3)],
    );
    let second = (
        maybe(vec![json!("Default"), json!("Unmasked")]),
        maybe(vec![
            json!("RuntimeDefault"),
            json!("Unconfined"),
            json!("Localhost"),
        ]),
        maybe(vec![
            json!("container_t"),
            json!("spc_t"),
            json!("container_engine_t"),
        ]),
        maybe(vec![json!(0), json!(80)]),
        maybe(vec![json!(""), json!("localhost")]),
        prop::bool::weighted(0.9),
    );
    (first, second).prop_map(
        move |(
            (privileged, escalation, non_root, user, adds, drops),
            (proc_mount, seccomp, selinux, host_port, probe_host, has_sc),
        )| {
            let mut sc = Map::new();
            set(&mut sc, "privileged", privileged);
            set(&mut sc, "allowPrivilegeEscalation", escalation);
            set(&mut sc, "runAsNonRoot", non_root);
            set(&mut sc, "runAsUser", user);
            sc.insert("capabilities".into(), json!({"add": adds, "drop": drops}));
            set(&mut sc, "procMount", proc_mount);
            set(
                &mut sc,
                "seccompProfile",
                seccomp.map(|t| json!({"type": t})),
            );
            set(
                &mut sc,
                "seLinuxOptions",
                selinux.map(|t| json!({"type": t})),
            );
            let mut c = json!({"name": name, "image": "img"});
            if has_sc {
                c["securityContext"] = Value::Object(sc);
            }
            if let Some(port) = host_port {
                c["ports"] = json!([{"containerPort": 8080, "hostPort": port}]);
            }
            if let Some(host) = probe_host {
                c["livenessProbe"] = json!({"httpGet": {"port": 8080, "host": host}});
            }
            c
        },
    )
}

fn pod() -> impl Strategy<Value = (Value, Value)> {
    let pod_level = (
        maybe(vec![json!(true), json!(false)]),
        maybe(vec![json!(true), json!(false)]),
        maybe(vec![json!("linux"), json!("windows")]),
        mostly(Some(json!(true)), vec![json!(false)]),
        mostly(Some(json!("RuntimeDefault")), vec![json!("Unconfined")]),
        mostly_subset(
            vec!["kernel.shm_rmid_forced"],
            vec![
                "kernel.shm_rmid_forced",
                "net.ipv4.tcp_rmem",
                "kernel.msgmax",
            ],
        ),
        mostly_subset(vec!["emptyDir"], vec!["emptyDir", "hostPath", "nfs"]),
        maybe(vec![json!("runtime/default"), json!("unconfined")]),
    );
    (
        pod_level,
        prop::collection::vec(container("init"), 0..=1),
        prop::collection::vec(container("app"), 1..=2),
        prop::collection::vec(container("debug"), 0..=1),
    )
        .prop_map(
            |(
                (host_network, host_users, os, non_root, seccomp, sysctls, volumes, apparmor),
                init,
                containers,
                ephemeral,
            )| {
                let mut psc = Map::new();
                set(&mut psc, "runAsNonRoot", non_root);
                set(
                    &mut psc,
                    "seccompProfile",
                    seccomp.map(|t| json!({"type": t})),
                );
                psc.insert(
                    "sysctls".into(),
                    sysctls
                        .iter()
                        .map(|n| json!({"name": n, "value": "1"}))
                        .collect(),
                );
                let mut spec = json!({
                    "securityContext": psc,
                    "initContainers": init,
                    "containers": containers,
                    "ephemeralContainers": ephemeral,
                    "volumes": volumes.iter().map(|kind| {
                        let source = match *kind {
                            "emptyDir" => json!({}),
                            "hostPath" => json!({"path": "/"}),
                            _ => json!({"server": "s", "path": "/"}),
                        };
                        json!({"name": kind, *kind: source})
                    }).collect::<Vec<_>>(),
                });
                set(spec.as_object_mut().unwrap(), "hostNetwork", host_network);
                set(spec.as_object_mut().unwrap(), "hostUsers", host_users);
                if let Some(os) = os {
                    spec["os"] = json!({"name": os});
                }
                let meta = match apparmor {
                    Some(value) => json!({"annotations": {
                        "container.apparmor.security.beta.kubernetes.io/app": value,
                        "seccomp.security.alpha.kubernetes.io/pod": value,
                    }}),
                    None => json!({}),
                };
                (meta, spec)
            },
        )
}

fn lv(level: Level, version: Version) -> LevelVersion {
    LevelVersion { level, version }
}

proptest! {
    #[test]
    fn restricted_is_never_laxer_than_baseline(
        (meta, spec) in pod(),
        minor in prop_oneof![0u64..=40, Just(1_000_000)],
    ) {
        let meta: ObjectMeta = serde_json::from_value(meta).unwrap();
        let spec: PodSpec = serde_json::from_value(spec).unwrap();
        let version = Version::Minor(minor);
        let baseline = evaluate(&meta, &spec, lv(Level::Baseline, version));
        let restricted = evaluate(&meta, &spec, lv(Level::Restricted, version));
        // Upstream quirk kept for parity: from v1.25 a Windows pod skips
        // capabilities_restricted and seccompProfile_restricted, which also
        // replace their baseline checks, so restricted can allow what
        // baseline denies (see pss.rs `windows_pods_skip_overriding_checks`).
        let windows_skip = minor >= 25 && spec.os.as_ref().is_some_and(|os| os.name == "windows");
        prop_assert!(
            baseline.is_empty() || !restricted.is_empty() || windows_skip,
            "baseline denies {baseline:?} but restricted allows"
        );
        prop_assert!(evaluate(&meta, &spec, lv(Level::Privileged, version)).is_empty());
        for violations in [&baseline, &restricted] {
            let positions: Vec<usize> = violations
                .iter()
                .map(|v| ORDER.iter().position(|id| *id == v.check).unwrap())
                .collect();
            prop_assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
            prop_assert!(violations.iter().all(|v| !v.reason.is_empty() && !v.detail.is_empty()));
        }
    }

    #[test]
    fn versions_past_the_newest_behave_as_latest((meta, spec) in pod()) {
        let meta: ObjectMeta = serde_json::from_value(meta).unwrap();
        let spec: PodSpec = serde_json::from_value(spec).unwrap();
        for level in [Level::Baseline, Level::Restricted] {
            let latest = evaluate(&meta, &spec, lv(level, Version::Latest));
            prop_assert_eq!(&evaluate(&meta, &spec, lv(level, Version::Minor(37))), &latest);
            prop_assert_eq!(&evaluate(&meta, &spec, lv(level, Version::Minor(99))), &latest);
        }
    }
}
