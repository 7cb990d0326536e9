//! `capabilities_restricted` (restricted, from v1.22): containers must drop
//! `ALL` capabilities and may only add back `NET_BIND_SERVICE`. Overrides
//! `capabilities_baseline` in the restricted profile.
//!
//! Restricted fields:
//! - `spec.containers[*].securityContext.capabilities.drop`
//! - `spec.initContainers[*].securityContext.capabilities.drop`
//! - `spec.ephemeralContainers[*].securityContext.capabilities.drop`
//! - `spec.containers[*].securityContext.capabilities.add`
//! - `spec.initContainers[*].securityContext.capabilities.add`
//! - `spec.ephemeralContainers[*].securityContext.capabilities.add`
//!
//! Allowed values: `drop` must include `ALL`; `add` may only hold
//! `NET_BIND_SERVICE`.
//!
//! From v1.25 pods with `spec.os.name: windows` are skipped.

use std::collections::BTreeSet;

use super::message::{push_containers, push_quoted};
use super::{Check, Failure, Input, Level, VersionedCheck, v};

const OVERRIDES: &[&str] = &["capabilities_baseline"];

pub(crate) fn check() -> Check {
    Check {
        id: "capabilities_restricted",
        level: Level::Restricted,
        versions: const {
            &[
                VersionedCheck {
                    min: v(1, 22),
                    eval: v1_22,
                    overrides: OVERRIDES,
                },
                VersionedCheck {
                    min: v(1, 25),
                    eval: v1_25,
                    overrides: OVERRIDES,
                },
            ]
        },
    }
}

fn v1_22(input: &Input<'_>) -> Option<Failure> {
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut bad_caps = BTreeSet::new();
    for c in input.containers() {
        let caps = c.security_context.and_then(|sc| sc.capabilities.as_ref());
        let drops_all = caps
            .and_then(|caps| caps.drop.as_deref())
            .unwrap_or_default()
            .iter()
            .any(|cap| cap == "ALL");
        if !drops_all {
            missing_drop.push(c.name);
        }
        let mut bad = false;
        for cap in caps
            .and_then(|caps| caps.add.as_deref())
            .unwrap_or_default()
        {
            if cap != "NET_BIND_SERVICE" {
                bad = true;
                bad_caps.insert(cap.as_str());
            }
        }
        if bad {
            adding.push(c.name);
        }
    }
    if missing_drop.is_empty() && adding.is_empty() {
        return None;
    }
    let mut detail = String::new();
    if !missing_drop.is_empty() {
        push_containers(&mut detail, &missing_drop);
        detail.push_str(" must set securityContext.capabilities.drop=[\"ALL\"]");
    }
    if !adding.is_empty() {
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        push_containers(&mut detail, &adding);
        detail.push_str(" must not include ");
        push_quoted(&mut detail, bad_caps.iter().copied());
        detail.push_str(" in securityContext.capabilities.add");
    }
    Some(Failure::new("unrestricted capabilities", detail))
}

fn v1_25(input: &Input<'_>) -> Option<Failure> {
    if input.is_windows() {
        return None;
    }
    v1_22(input)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;
    use crate::pss::testing::{KINDS, assert_cases, case, pod, pod_in};

    const REASON: &str = "unrestricted capabilities";
    const DROP: &str = "must set securityContext.capabilities.drop=[\"ALL\"]";

    fn caps(drop: &[&str], add: &[&str]) -> serde_json::Value {
        json!({"capabilities": {"drop": drop, "add": add}})
    }

    #[test]
    fn dropping_all_passes() {
        let mut cases = Vec::new();
        for kind in KINDS {
            cases.push(case(
                format!("{kind}: drop ALL"),
                "latest",
                pod_in(
                    kind,
                    json!([{"name": "a", "securityContext": {"capabilities": {"drop": ["ALL"]}}}]),
                    json!({}),
                ),
                None,
            ));
            cases.push(case(
                format!("{kind}: drop ALL, add NET_BIND_SERVICE"),
                "v1.22",
                pod_in(kind, json!([{"name": "a", "securityContext": caps(&["NET_RAW", "ALL"], &["NET_BIND_SERVICE"])}]), json!({})),
                None,
            ));
        }
        assert_cases(check, &cases);
    }

    #[test]
    fn missing_drop_and_forbidden_adds_fail() {
        let mut cases = Vec::new();
        for kind in KINDS {
            for (what, sc) in [
                ("nil securityContext", json!(null)),
                ("nil capabilities", json!({})),
                ("lowercase all", caps(&["all"], &[])),
                ("drop without ALL", caps(&["NET_RAW"], &[])),
            ] {
                cases.push(case(
                    format!("{kind}: {what}"),
                    "latest",
                    pod_in(
                        kind,
                        json!([{"name": "a", "securityContext": sc}]),
                        json!({}),
                    ),
                    Some((REASON, &format!("container \"a\" {DROP}"))),
                ));
            }
            cases.push(case(
                format!("{kind}: adds CHOWN"),
                "latest",
                pod_in(kind, json!([{"name": "a", "securityContext": caps(&["ALL"], &["CHOWN", "NET_BIND_SERVICE"])}]), json!({})),
                Some((REASON, "container \"a\" must not include \"CHOWN\" in securityContext.capabilities.add")),
            ));
        }
        cases.push(case(
            "both parts, containers in both lists",
            "latest",
            pod(json!({"containers": [
                {"name": "a", "securityContext": caps(&[], &["FOO", "BAR"])},
                {"name": "b", "securityContext": caps(&["all"], &["BAZ"])},
                {"name": "c", "securityContext": caps(&["ALL"], &["CHOWN", "FOO"])},
                {"name": "d", "securityContext": caps(&["ALL"], &["NET_BIND_SERVICE"])},
            ]})),
            Some((REASON, "containers \"a\", \"b\" must set securityContext.capabilities.drop=[\"ALL\"]; containers \"a\", \"b\", \"c\" must not include \"BAR\", \"BAZ\", \"CHOWN\", \"FOO\" in securityContext.capabilities.add")),
        ));
        assert_cases(check, &cases);
    }

    #[test]
    fn version_boundaries() {
        let bare = |os: &str| pod(json!({"os": {"name": os}, "containers": [{"name": "a"}]}));
        let detail = format!("container \"a\" {DROP}");
        assert_cases(
            check,
            &[
                case("not evaluated at v1.21", "v1.21", bare("linux"), None),
                case(
                    "evaluated from v1.22",
                    "v1.22",
                    bare("linux"),
                    Some((REASON, &detail)),
                ),
                case(
                    "windows not skipped at v1.24",
                    "v1.24",
                    bare("windows"),
                    Some((REASON, &detail)),
                ),
                case("windows skipped from v1.25", "v1.25", bare("windows"), None),
                case(
                    "Windows spelled differently is not skipped",
                    "latest",
                    bare("Windows"),
                    Some((REASON, &detail)),
                ),
            ],
        );
    }
}
