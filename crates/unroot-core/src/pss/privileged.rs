//! `privileged` (baseline, v1.0): privileged containers are forbidden.
//!
//! Restricted fields:
//! - `spec.containers[*].securityContext.privileged`
//! - `spec.initContainers[*].securityContext.privileged`
//! - `spec.ephemeralContainers[*].securityContext.privileged`
//!
//! Allowed values: unset, `false`.

use super::message::push_containers;
use super::{Check, Failure, Input, Level, VersionedCheck, v};

pub(crate) fn check() -> Check {
    Check {
        id: "privileged",
        level: Level::Baseline,
        versions: const { &[VersionedCheck::new(v(1, 0), v1_0)] },
    }
}

fn v1_0(input: &Input<'_>) -> Option<Failure> {
    let mut bad = Vec::new();
    for c in input.containers() {
        if c.security_context.and_then(|sc| sc.privileged) == Some(true) {
            bad.push(c.name);
        }
    }
    if bad.is_empty() {
        return None;
    }
    let mut detail = String::new();
    push_containers(&mut detail, &bad);
    detail.push_str(" must not set securityContext.privileged=true");
    Some(Failure::new("privileged", detail))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;
    use crate::pss::testing::{KINDS, assert_cases, case, pod, pod_in};

    const REASON: &str = "privileged";

    #[test]
    fn privileged_containers() {
        let mut cases = vec![
            case(
                "unset",
                "latest",
                pod(json!({"containers": [{"name": "a", "securityContext": {}}]})),
                None,
            ),
            case(
                "containers in visit order",
                "v1.0",
                pod(json!({
                    "ephemeralContainers": [{"name": "e", "securityContext": {"privileged": true}}],
                    "containers": [{"name": "c", "securityContext": {"privileged": true}}],
                    "initContainers": [{"name": "i", "securityContext": {"privileged": true}}],
                })),
                Some((
                    REASON,
                    "containers \"i\", \"c\", \"e\" must not set securityContext.privileged=true",
                )),
            ),
        ];
        for kind in KINDS {
            cases.push(case(
                format!("{kind}: false"),
                "latest",
                pod_in(
                    kind,
                    json!([{"name": "a", "securityContext": {"privileged": false}}]),
                    json!({}),
                ),
                None,
            ));
            cases.push(case(
                format!("{kind}: true"),
                "latest",
                pod_in(
                    kind,
                    json!([{"name": "a", "securityContext": {"privileged": true}}]),
                    json!({}),
                ),
                Some((
                    REASON,
                    "container \"a\" must not set securityContext.privileged=true",
                )),
            ));
        }
        assert_cases(check, &cases);
    }
}
