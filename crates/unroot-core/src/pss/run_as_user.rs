//! `runAsUser` (restricted, from v1.23): containers must not set the user ID
//! to 0. From v1.35 pods in a user namespace (`spec.hostUsers: false`) are
//! exempt.
//!
//! Restricted fields:
//! - `spec.securityContext.runAsUser`
//! - `spec.containers[*].securityContext.runAsUser`
//! - `spec.initContainers[*].securityContext.runAsUser`
//! - `spec.ephemeralContainers[*].securityContext.runAsUser`
//!
//! Allowed values: any non-zero value, unset.

use super::message::setters;
use super::{Check, Failure, Input, Level, VersionedCheck, v};

pub(crate) fn check() -> Check {
    Check {
        id: "runAsUser",
        level: Level::Restricted,
        versions: const {
            &[
                VersionedCheck::new(v(1, 23), v1_23),
                VersionedCheck::new(v(1, 35), v1_35),
            ]
        },
    }
}

fn v1_23(input: &Input<'_>) -> Option<Failure> {
    let pod_bad = input.pod_security_context().and_then(|sc| sc.run_as_user) == Some(0);
    let mut bad = Vec::new();
    for c in input.containers() {
        if c.security_context.and_then(|sc| sc.run_as_user) == Some(0) {
            bad.push(c.name);
        }
    }
    if !pod_bad && bad.is_empty() {
        return None;
    }
    let mut detail = setters(pod_bad, &bad);
    detail.push_str(" must not set runAsUser=0");
    Some(Failure::new("runAsUser=0", detail))
}

fn v1_35(input: &Input<'_>) -> Option<Failure> {
    if input.in_user_namespace() {
        return None;
    }
    v1_23(input)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;
    use crate::pss::testing::{KINDS, assert_cases, case, pod, pod_in};

    const REASON: &str = "runAsUser=0";

    #[test]
    fn run_as_user() {
        let mut cases = vec![
            case(
                "unset",
                "latest",
                pod(json!({"containers": [{"name": "a"}]})),
                None,
            ),
            case(
                "pod zero",
                "latest",
                pod(json!({"securityContext": {"runAsUser": 0}, "containers": [{"name": "a"}]})),
                Some((REASON, "pod must not set runAsUser=0")),
            ),
            case(
                "container non-zero does not cancel pod zero",
                "latest",
                pod(
                    json!({"securityContext": {"runAsUser": 0}, "containers": [{"name": "a", "securityContext": {"runAsUser": 1000}}]}),
                ),
                Some((REASON, "pod must not set runAsUser=0")),
            ),
            case(
                "pod and containers",
                "v1.23",
                pod(json!({"securityContext": {"runAsUser": 0}, "containers": [
                    {"name": "c", "securityContext": {"runAsUser": 0}},
                    {"name": "ok", "securityContext": {"runAsUser": 1}},
                    {"name": "d", "securityContext": {"runAsUser": 0}},
                ]})),
                Some((
                    REASON,
                    "pod and containers \"c\", \"d\" must not set runAsUser=0",
                )),
            ),
            case(
                "not evaluated at v1.22",
                "v1.22",
                pod(json!({"securityContext": {"runAsUser": 0}})),
                None,
            ),
        ];
        for kind in KINDS {
            cases.push(case(
                format!("{kind}: 1000"),
                "latest",
                pod_in(
                    kind,
                    json!([{"name": "a", "securityContext": {"runAsUser": 1000}}]),
                    json!({}),
                ),
                None,
            ));
            cases.push(case(
                format!("{kind}: 0"),
                "latest",
                pod_in(
                    kind,
                    json!([{"name": "a", "securityContext": {"runAsUser": 0}}]),
                    json!({}),
                ),
                Some((REASON, "container \"a\" must not set runAsUser=0")),
            ));
        }
        assert_cases(check, &cases);
    }

    #[test]
    fn user_namespace_relaxation_from_v1_35() {
        let root = |host_users: serde_json::Value| {
            pod(json!({"hostUsers": host_users, "securityContext": {"runAsUser": 0}}))
        };
        let denied = Some((REASON, "pod must not set runAsUser=0"));
        assert_cases(
            check,
            &[
                case(
                    "hostUsers false at v1.34",
                    "v1.34",
                    root(json!(false)),
                    denied,
                ),
                case(
                    "hostUsers false at v1.35",
                    "v1.35",
                    root(json!(false)),
                    None,
                ),
                case(
                    "hostUsers unset at latest",
                    "latest",
                    root(json!(null)),
                    denied,
                ),
            ],
        );
    }
}
