//! `allowPrivilegeEscalation` (restricted, from v1.8): privilege escalation,
//! such as via set-user-ID or set-group-ID file mode, must not be allowed.
//!
//! Restricted fields:
//! - `spec.containers[*].securityContext.allowPrivilegeEscalation`
//! - `spec.initContainers[*].securityContext.allowPrivilegeEscalation`
//! - `spec.ephemeralContainers[*].securityContext.allowPrivilegeEscalation`
//!
//! Allowed values: `false` (unset violates).
//!
//! From v1.25 pods with `spec.os.name: windows` are skipped.

use super::message::push_containers;
use super::{Check, Failure, Input, Level, VersionedCheck, v};

pub(crate) fn check() -> Check {
    Check {
        id: "allowPrivilegeEscalation",
        level: Level::Restricted,
        versions: const {
            &[
                VersionedCheck::new(v(1, 8), v1_8),
                VersionedCheck::new(v(1, 25), v1_25),
            ]
        },
    }
}

fn v1_8(input: &Input<'_>) -> Option<Failure> {
    let mut bad = Vec::new();
    for c in input.containers() {
        let explicitly_false = c
            .security_context
            .and_then(|sc| sc.allow_privilege_escalation)
            == Some(false);
        if !explicitly_false {
            bad.push(c.name);
        }
    }
    if bad.is_empty() {
        return None;
    }
    let mut detail = String::new();
    push_containers(&mut detail, &bad);
    detail.push_str(" must set securityContext.allowPrivilegeEscalation=false");
    Some(Failure::new("allowPrivilegeEscalation != false", detail))
}

fn v1_25(input: &Input<'_>) -> Option<Failure> {
    if input.is_windows() {
        return None;
    }
    v1_8(input)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;
    use crate::pss::testing::{KINDS, assert_cases, case, pod, pod_in};

    const REASON: &str = "allowPrivilegeEscalation != false";

    #[test]
    fn minimal_pod_passes() {
        let good = json!([{"name": "a", "securityContext": {"allowPrivilegeEscalation": false}}]);
        let cases: Vec<_> = KINDS
            .iter()
            .map(|kind| case(*kind, "latest", pod_in(kind, good.clone(), json!({})), None))
            .chain([case("no containers", "latest", pod(json!({})), None)])
            .collect();
        assert_cases(check, &cases);
    }

    #[test]
    fn every_container_kind_must_set_false() {
        let mut cases = Vec::new();
        for kind in KINDS {
            for (what, container) in [
                ("nil securityContext", json!({"name": "a"})),
                ("nil field", json!({"name": "a", "securityContext": {}})),
                (
                    "true",
                    json!({"name": "a", "securityContext": {"allowPrivilegeEscalation": true}}),
                ),
            ] {
                cases.push(case(
                    format!("{kind}: {what}"),
                    "latest",
                    pod_in(kind, json!([container]), json!({})),
                    Some((
                        REASON,
                        "container \"a\" must set securityContext.allowPrivilegeEscalation=false",
                    )),
                ));
            }
        }
        cases.push(case(
            "visit order with duplicates",
            "latest",
            pod(json!({
                "initContainers": [{"name": "i"}],
                "containers": [{"name": "c"}, {"name": "ok", "securityContext": {"allowPrivilegeEscalation": false}}, {"name": "c"}],
                "ephemeralContainers": [{"name": "e"}],
            })),
            Some((REASON, "containers \"i\", \"c\", \"c\", \"e\" must set securityContext.allowPrivilegeEscalation=false")),
        ));
        assert_cases(check, &cases);
    }

    #[test]
    fn version_boundaries() {
        let bad = json!({"containers": [{"name": "a"}]});
        let windows = json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]});
        let linux = json!({"os": {"name": "linux"}, "containers": [{"name": "a"}]});
        let detail = "container \"a\" must set securityContext.allowPrivilegeEscalation=false";
        assert_cases(
            check,
            &[
                case("not evaluated before v1.8", "v1.7", pod(bad.clone()), None),
                case(
                    "evaluated from v1.8",
                    "v1.8",
                    pod(bad),
                    Some((REASON, detail)),
                ),
                case(
                    "windows not skipped at v1.24",
                    "v1.24",
                    pod(windows.clone()),
                    Some((REASON, detail)),
                ),
                case(
                    "windows skipped from v1.25",
                    "v1.25",
                    pod(windows.clone()),
                    None,
                ),
                case("windows skipped at latest", "latest", pod(windows), None),
                case(
                    "linux not skipped",
                    "v1.25",
                    pod(linux),
                    Some((REASON, detail)),
                ),
            ],
        );
    }
}
