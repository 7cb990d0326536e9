//! `runAsNonRoot` (restricted, v1.0): containers must run as non-root users.
//! From v1.35 pods in a user namespace (`spec.hostUsers: false`) are exempt.
//!
//! Restricted fields:
//! - `spec.securityContext.runAsNonRoot`
//! - `spec.containers[*].securityContext.runAsNonRoot`
//! - `spec.initContainers[*].securityContext.runAsNonRoot`
//! - `spec.ephemeralContainers[*].securityContext.runAsNonRoot`
//!
//! Allowed values: `true` on every container, directly or inherited from the
//! pod; an explicit `false` anywhere violates.

use super::message::{push_containers, setters};
use super::{Check, Failure, Input, Level, VersionedCheck, v};

const REASON: &str = "runAsNonRoot != true";

pub(crate) fn check() -> Check {
    Check {
        id: "runAsNonRoot",
        level: Level::Restricted,
        versions: const {
            &[
                VersionedCheck::new(v(1, 0), v1_0),
                VersionedCheck::new(v(1, 35), v1_35),
            ]
        },
    }
}

fn v1_0(input: &Input<'_>) -> Option<Failure> {
    let pod_value = input
        .pod_security_context()
        .and_then(|sc| sc.run_as_non_root);
    let pod_bad = pod_value == Some(false);
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in input.containers() {
        match c.security_context.and_then(|sc| sc.run_as_non_root) {
            Some(false) => explicit.push(c.name),
            None if pod_value != Some(true) => implicit.push(c.name),
            _ => {}
        }
    }
    if pod_bad || !explicit.is_empty() {
        let mut detail = setters(pod_bad, &explicit);
        detail.push_str(" must not set securityContext.runAsNonRoot=false");
        return Some(Failure::new(REASON, detail));
    }
    if implicit.is_empty() {
        return None;
    }
    let mut detail = String::from("pod or ");
    push_containers(&mut detail, &implicit);
    detail.push_str(" must set securityContext.runAsNonRoot=true");
    Some(Failure::new(REASON, detail))
}

fn v1_35(input: &Input<'_>) -> Option<Failure> {
    if input.in_user_namespace() {
        return None;
    }
    v1_0(input)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{REASON, check};
    use crate::pss::testing::{KINDS, assert_cases, case, pod, pod_in};

    #[test]
    #[expect(clippy::too_many_lines, reason = "a table of cases")]
    fn run_as_non_root() {
        let mut cases = vec![
            case(
                "pod true covers containers without a value",
                "latest",
                pod(
                    json!({"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "a"}, {"name": "b", "securityContext": {}}]}),
                ),
                None,
            ),
            case(
                "container true without pod value",
                "v1.0",
                pod(
                    json!({"containers": [{"name": "a", "securityContext": {"runAsNonRoot": true}}]}),
                ),
                None,
            ),
            case(
                "runAsUser is not considered",
                "latest",
                pod(
                    json!({"securityContext": {"runAsUser": 1000}, "containers": [{"name": "a", "securityContext": {"runAsUser": 1000}}]}),
                ),
                Some((
                    REASON,
                    "pod or container \"a\" must set securityContext.runAsNonRoot=true",
                )),
            ),
            case(
                "pod false reported even when every container sets true",
                "latest",
                pod(
                    json!({"securityContext": {"runAsNonRoot": false}, "containers": [{"name": "a", "securityContext": {"runAsNonRoot": true}}]}),
                ),
                Some((
                    REASON,
                    "pod must not set securityContext.runAsNonRoot=false",
                )),
            ),
            case(
                "explicit violations suppress implicit ones",
                "latest",
                pod(
                    json!({"securityContext": {"runAsNonRoot": false}, "containers": [
                        {"name": "a"},
                        {"name": "c", "securityContext": {"runAsNonRoot": false}},
                        {"name": "d", "securityContext": {"runAsNonRoot": false}},
                    ]}),
                ),
                Some((
                    REASON,
                    "pod and containers \"c\", \"d\" must not set securityContext.runAsNonRoot=false",
                )),
            ),
            case(
                "implicit in visit order",
                "latest",
                pod(json!({
                    "initContainers": [{"name": "i"}],
                    "containers": [{"name": "c"}, {"name": "ok", "securityContext": {"runAsNonRoot": true}}],
                    "ephemeralContainers": [{"name": "e"}],
                })),
                Some((
                    REASON,
                    "pod or containers \"i\", \"c\", \"e\" must set securityContext.runAsNonRoot=true",
                )),
            ),
        ];
        for kind in KINDS {
            cases.push(case(
                format!("{kind}: unset"),
                "latest",
                pod_in(kind, json!([{"name": "a"}]), json!({})),
                Some((
                    REASON,
                    "pod or container \"a\" must set securityContext.runAsNonRoot=true",
                )),
            ));
            cases.push(case(
                format!("{kind}: false overrides pod true"),
                "latest",
                pod_in(
                    kind,
                    json!([{"name": "a", "securityContext": {"runAsNonRoot": false}}]),
                    json!({"securityContext": {"runAsNonRoot": true}}),
                ),
                Some((
                    REASON,
                    "container \"a\" must not set securityContext.runAsNonRoot=false",
                )),
            ));
            cases.push(case(
                format!("{kind}: true"),
                "latest",
                pod_in(
                    kind,
                    json!([{"name": "a", "securityContext": {"runAsNonRoot": true}}]),
                    json!({}),
                ),
                None,
            ));
        }
        assert_cases(check, &cases);
    }

    #[test]
    fn user_namespace_relaxation_from_v1_35() {
        let bare = |host_users: serde_json::Value| {
            pod(json!({"hostUsers": host_users, "containers": [{"name": "a"}]}))
        };
        let denied = Some((
            REASON,
            "pod or container \"a\" must set securityContext.runAsNonRoot=true",
        ));
        assert_cases(
            check,
            &[
                case(
                    "hostUsers false at v1.34",
                    "v1.34",
                    bare(json!(false)),
                    denied,
                ),
                case(
                    "hostUsers false at v1.35",
                    "v1.35",
                    bare(json!(false)),
                    None,
                ),
                case(
                    "hostUsers true at latest",
                    "latest",
                    bare(json!(true)),
                    denied,
                ),
            ],
        );
    }
}
