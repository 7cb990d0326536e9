//! `capabilities_baseline` (baseline, v1.0): adding capabilities beyond the
//! default set is forbidden.
//!
//! Restricted fields:
//! - `spec.containers[*].securityContext.capabilities.add`
//! - `spec.initContainers[*].securityContext.capabilities.add`
//! - `spec.ephemeralContainers[*].securityContext.capabilities.add`
//!
//! Allowed values (exact, no `CAP_` prefix handling): `AUDIT_WRITE`, `CHOWN`,
//! `DAC_OVERRIDE`, `FOWNER`, `FSETID`, `KILL`, `MKNOD`, `NET_BIND_SERVICE`,
//! `SETFCAP`, `SETGID`, `SETPCAP`, `SETUID`, `SYS_CHROOT`.

use std::collections::BTreeSet;

use super::message::{push_containers, push_quoted};
use super::{Check, Failure, Input, Level, VersionedCheck, v};

/// The capabilities a baseline container may add (exact names).
pub const ALLOWED: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

pub(crate) fn check() -> Check {
    Check {
        id: "capabilities_baseline",
        level: Level::Baseline,
        versions: const { &[VersionedCheck::new(v(1, 0), v1_0)] },
    }
}

fn v1_0(input: &Input<'_>) -> Option<Failure> {
    let mut bad_containers = Vec::new();
    let mut bad_caps = BTreeSet::new();
    for c in input.containers() {
        let added = c
            .security_context
            .and_then(|sc| sc.capabilities.as_ref())
            .and_then(|caps| caps.add.as_deref())
            .unwrap_or_default();
        let mut bad = false;
        for cap in added {
            if !ALLOWED.contains(&cap.as_str()) {
                bad = true;
                bad_caps.insert(cap.as_str());
            }
        }
        if bad {
            bad_containers.push(c.name);
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    let mut detail = String::new();
    push_containers(&mut detail, &bad_containers);
    detail.push_str(" must not include ");
    push_quoted(&mut detail, bad_caps.iter().copied());
    detail.push_str(" in securityContext.capabilities.add");
    Some(Failure::new("non-default capabilities", detail))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{ALLOWED, check};
    use crate::pss::testing::{KINDS, assert_cases, case, pod, pod_in};

    const REASON: &str = "non-default capabilities";

    fn adding(caps: &[&str]) -> serde_json::Value {
        json!({"capabilities": {"add": caps}})
    }

    #[test]
    fn default_capabilities_pass() {
        let mut cases = vec![
            case(
                "no capabilities",
                "latest",
                pod(json!({"containers": [{"name": "a"}]})),
                None,
            ),
            case(
                "drop is ignored",
                "latest",
                pod(
                    json!({"containers": [{"name": "a", "securityContext": {"capabilities": {"drop": ["ALL", "FOO"]}}}]}),
                ),
                None,
            ),
        ];
        for kind in KINDS {
            cases.push(case(
                format!("{kind}: every default capability"),
                "v1.0",
                pod_in(
                    kind,
                    json!([{"name": "a", "securityContext": adding(ALLOWED)}]),
                    json!({}),
                ),
                None,
            ));
        }
        assert_cases(check, &cases);
    }

    #[test]
    fn non_default_capabilities_fail() {
        let mut cases = Vec::new();
        for kind in KINDS {
            for cap in ["SYS_ADMIN", "CAP_CHOWN", "chown", "ALL"] {
                cases.push(case(
                    format!("{kind}: {cap}"),
                    "latest",
                    pod_in(kind, json!([{"name": "a", "securityContext": adding(&[cap, "CHOWN"])}]), json!({})),
                    Some((REASON, &format!("container \"a\" must not include \"{cap}\" in securityContext.capabilities.add"))),
                ));
            }
        }
        cases.push(case(
            "containers in order, capabilities sorted and deduplicated",
            "latest",
            pod(json!({"containers": [
                {"name": "a", "securityContext": adding(&["FOO", "BAR"])},
                {"name": "ok", "securityContext": adding(&["KILL"])},
                {"name": "b", "securityContext": adding(&["BAZ", "FOO"])},
            ]})),
            Some((REASON, "containers \"a\", \"b\" must not include \"BAR\", \"BAZ\", \"FOO\" in securityContext.capabilities.add")),
        ));
        assert_cases(check, &cases);
    }
}
