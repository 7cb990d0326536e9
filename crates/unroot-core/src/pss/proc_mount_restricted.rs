//! `procMount_restricted` (restricted, from v1.35): the default /proc masks
//! must stay in place, even in a user namespace. Overrides `procMount` in the
//! restricted profile.
//!
//! Restricted fields:
//! - `spec.containers[*].securityContext.procMount`
//! - `spec.initContainers[*].securityContext.procMount`
//! - `spec.ephemeralContainers[*].securityContext.procMount`
//!
//! Allowed values: unset, `Default`.

use super::{Check, Failure, Input, Level, VersionedCheck, proc_mount, v};

pub(crate) fn check() -> Check {
    Check {
        id: "procMount_restricted",
        level: Level::Restricted,
        versions: const {
            &[VersionedCheck {
                min: v(1, 35),
                eval: v1_35,
                overrides: &["procMount"],
            }]
        },
    }
}

/// The baseline v1.0 rule, without the user-namespace relaxation.
fn v1_35(input: &Input<'_>) -> Option<Failure> {
    proc_mount::v1_0(input)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;
    use crate::pss::testing::{KINDS, assert_cases, case, pod, pod_in};

    const REASON: &str = "procMount";

    #[test]
    fn no_user_namespace_relaxation() {
        let mut cases = vec![
            case(
                "not evaluated at v1.34",
                "v1.34",
                pod(
                    json!({"containers": [{"name": "a", "securityContext": {"procMount": "Unmasked"}}]}),
                ),
                None,
            ),
            case(
                "hostUsers false still denied",
                "v1.35",
                pod(
                    json!({"hostUsers": false, "containers": [{"name": "a", "securityContext": {"procMount": "Unmasked"}}]}),
                ),
                Some((
                    REASON,
                    "container \"a\" must not set securityContext.procMount to \"Unmasked\"",
                )),
            ),
        ];
        for kind in KINDS {
            cases.push(case(
                format!("{kind}: Default"),
                "latest",
                pod_in(
                    kind,
                    json!([{"name": "a", "securityContext": {"procMount": "Default"}}]),
                    json!({}),
                ),
                None,
            ));
            cases.push(case(
                format!("{kind}: Unmasked"),
                "latest",
                pod_in(
                    kind,
                    json!([{"name": "a", "securityContext": {"procMount": "Unmasked"}}]),
                    json!({"hostUsers": false}),
                ),
                Some((
                    REASON,
                    "container \"a\" must not set securityContext.procMount to \"Unmasked\"",
                )),
            ));
        }
        assert_cases(check, &cases);
    }
}
