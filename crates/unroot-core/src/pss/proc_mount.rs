//! `procMount` (baseline, v1.0): the default /proc masks must stay in place.
//! From v1.35 pods in a user namespace (`spec.hostUsers: false`) may unmask
//! /proc. In the restricted profile `procMount_restricted` replaces this check
//! from v1.35.
//!
//! Restricted fields:
//! - `spec.containers[*].securityContext.procMount`
//! - `spec.initContainers[*].securityContext.procMount`
//! - `spec.ephemeralContainers[*].securityContext.procMount`
//!
//! Allowed values: unset, `Default`.

use std::collections::BTreeSet;

use super::message::{push_containers, push_quoted};
use super::{Check, Failure, Input, Level, VersionedCheck, v};

pub(crate) fn check() -> Check {
    Check {
        id: "procMount",
        level: Level::Baseline,
        versions: const {
            &[
                VersionedCheck::new(v(1, 0), v1_0),
                VersionedCheck::new(v(1, 35), v1_35),
            ]
        },
    }
}

/// The rule shared with `procMount_restricted`.
pub(super) fn v1_0(input: &Input<'_>) -> Option<Failure> {
    let mut bad_containers = Vec::new();
    let mut values = BTreeSet::new();
    for c in input.containers() {
        if let Some(proc_mount) = c.security_context.and_then(|sc| sc.proc_mount.as_deref())
            && proc_mount != "Default"
        {
            bad_containers.push(c.name);
            values.insert(proc_mount);
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    let mut detail = String::new();
    push_containers(&mut detail, &bad_containers);
    detail.push_str(" must not set securityContext.procMount to ");
    push_quoted(&mut detail, values.iter().copied());
    Some(Failure::new("procMount", detail))
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

    use super::check;
    use crate::pss::testing::{KINDS, assert_cases, case, pod, pod_in};

    const REASON: &str = "procMount";

    #[test]
    fn proc_mount() {
        let mut cases = vec![
            case(
                "values sorted, containers in order",
                "latest",
                pod(json!({"containers": [
                    {"name": "d", "securityContext": {"procMount": "other"}},
                    {"name": "ok", "securityContext": {"procMount": "Default"}},
                    {"name": "e", "securityContext": {"procMount": "Unmasked"}},
                ]})),
                Some((
                    REASON,
                    "containers \"d\", \"e\" must not set securityContext.procMount to \"Unmasked\", \"other\"",
                )),
            ),
            case(
                "explicit empty string",
                "v1.0",
                pod(json!({"containers": [{"name": "a", "securityContext": {"procMount": ""}}]})),
                Some((
                    REASON,
                    "container \"a\" must not set securityContext.procMount to \"\"",
                )),
            ),
        ];
        for kind in KINDS {
            for (what, sc) in [
                ("unset", json!({})),
                ("Default", json!({"procMount": "Default"})),
            ] {
                cases.push(case(
                    format!("{kind}: {what}"),
                    "latest",
                    pod_in(
                        kind,
                        json!([{"name": "a", "securityContext": sc}]),
                        json!({}),
                    ),
                    None,
                ));
            }
            cases.push(case(
                format!("{kind}: Unmasked"),
                "latest",
                pod_in(
                    kind,
                    json!([{"name": "a", "securityContext": {"procMount": "Unmasked"}}]),
                    json!({}),
                ),
                Some((
                    REASON,
                    "container \"a\" must not set securityContext.procMount to \"Unmasked\"",
                )),
            ));
        }
        assert_cases(check, &cases);
    }

    #[test]
    fn user_namespace_relaxation_from_v1_35() {
        let unmasked = |host_users: serde_json::Value| {
            pod(
                json!({"hostUsers": host_users, "containers": [{"name": "a", "securityContext": {"procMount": "Unmasked"}}]}),
            )
        };
        let denied = Some((
            REASON,
            "container \"a\" must not set securityContext.procMount to \"Unmasked\"",
        ));
        assert_cases(
            check,
            &[
                case(
                    "hostUsers false at v1.34",
                    "v1.34",
                    unmasked(json!(false)),
                    denied,
                ),
                case(
                    "hostUsers false at v1.35",
                    "v1.35",
                    unmasked(json!(false)),
                    None,
                ),
                case(
                    "hostUsers true at v1.35",
                    "v1.35",
                    unmasked(json!(true)),
                    denied,
                ),
                case(
                    "hostUsers unset at latest",
                    "latest",
                    unmasked(json!(null)),
                    denied,
                ),
            ],
        );
    }
}
