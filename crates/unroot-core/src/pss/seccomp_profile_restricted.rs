//! `seccompProfile_restricted` (restricted, from v1.19): a seccomp profile
//! must be set, to `RuntimeDefault` or `Localhost`, on the pod or on every
//! container. Overrides `seccompProfile_baseline` in the restricted profile.
//!
//! Restricted fields:
//! - `spec.securityContext.seccompProfile.type`
//! - `spec.containers[*].securityContext.seccompProfile.type`
//! - `spec.initContainers[*].securityContext.seccompProfile.type`
//! - `spec.ephemeralContainers[*].securityContext.seccompProfile.type`
//!
//! Allowed values: `RuntimeDefault`, `Localhost`; a container without a
//! profile inherits an allowed pod-level one.
//!
//! From v1.25 pods with `spec.os.name: windows` are skipped.

use std::collections::BTreeSet;

use super::message::{push_containers, push_quoted, setters};
use super::{Check, Failure, Input, Level, VersionedCheck, v};

const OVERRIDES: &[&str] = &["seccompProfile_baseline"];

pub(crate) fn check() -> Check {
    Check {
        id: "seccompProfile_restricted",
        level: Level::Restricted,
        versions: const {
            &[
                VersionedCheck {
                    min: v(1, 19),
                    eval: v1_19,
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

fn allowed_type(profile_type: &str) -> bool {
    matches!(profile_type, "RuntimeDefault" | "Localhost")
}

fn v1_19(input: &Input<'_>) -> Option<Failure> {
    let mut types = BTreeSet::new();
    let pod_profile = input
        .pod_security_context()
        .and_then(|sc| sc.seccomp_profile.as_ref());
    let pod_good = pod_profile.is_some_and(|p| allowed_type(&p.type_));
    let pod_bad = pod_profile.is_some_and(|p| !allowed_type(&p.type_));
    if let Some(profile) = pod_profile.filter(|_| pod_bad) {
        types.insert(profile.type_.as_str());
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in input.containers() {
        match c
            .security_context
            .and_then(|sc| sc.seccomp_profile.as_ref())
        {
            Some(profile) if !allowed_type(&profile.type_) => {
                explicit.push(c.name);
                types.insert(profile.type_.as_str());
            }
            None if !pod_good => implicit.push(c.name),
            _ => {}
        }
    }
    if pod_bad || !explicit.is_empty() {
        let mut detail = setters(pod_bad, &explicit);
        detail.push_str(" must not set securityContext.seccompProfile.type to ");
        push_quoted(&mut detail, types.iter().copied());
        return Some(Failure::new("seccompProfile", detail));
    }
    if implicit.is_empty() {
        return None;
    }
    let mut detail = String::from("pod or ");
    push_containers(&mut detail, &implicit);
    detail.push_str(
        " must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
    );
    Some(Failure::new("seccompProfile", detail))
}

fn v1_25(input: &Input<'_>) -> Option<Failure> {
    if input.is_windows() {
        return None;
    }
    v1_19(input)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;
    use crate::pss::testing::{KINDS, assert_cases, case, pod, pod_in};

    const REASON: &str = "seccompProfile";
    const MUST_SET: &str =
        "must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"";

    fn profile(t: &str) -> serde_json::Value {
        json!({"seccompProfile": {"type": t}})
    }

    #[test]
    #[allow(clippy::too_many_lines)] // one table, one row per case
    fn seccomp_profile_restricted() {
        let mut cases = vec![
            case(
                "pod RuntimeDefault covers containers",
                "latest",
                pod(
                    json!({"securityContext": profile("RuntimeDefault"), "containers": [{"name": "a"}, {"name": "b", "securityContext": {}}]}),
                ),
                None,
            ),
            case(
                "good container overrides bad pod, pod still reported",
                "latest",
                pod(
                    json!({"securityContext": profile("Unconfined"), "containers": [{"name": "a", "securityContext": profile("Localhost")}]}),
                ),
                Some((
                    REASON,
                    "pod must not set securityContext.seccompProfile.type to \"Unconfined\"",
                )),
            ),
            case(
                "bad pod does not cover containers; explicit suppresses implicit",
                "latest",
                pod(
                    json!({"securityContext": profile("Unconfined"), "containers": [{"name": "a"}, {"name": "b", "securityContext": profile("foo")}]}),
                ),
                Some((
                    REASON,
                    "pod and container \"b\" must not set securityContext.seccompProfile.type to \"Unconfined\", \"foo\"",
                )),
            ),
            case(
                "implicit in visit order",
                "v1.19",
                pod(json!({
                    "initContainers": [{"name": "i"}],
                    "containers": [{"name": "c"}, {"name": "ok", "securityContext": profile("RuntimeDefault")}],
                    "ephemeralContainers": [{"name": "e"}],
                })),
                Some((
                    REASON,
                    &format!("pod or containers \"i\", \"c\", \"e\" {MUST_SET}"),
                )),
            ),
            case(
                "annotations are never read",
                "latest",
                crate::pss::testing::pod_with_meta(
                    &json!({"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "runtime/default"}}),
                    json!({"containers": [{"name": "a"}]}),
                ),
                Some((REASON, &format!("pod or container \"a\" {MUST_SET}"))),
            ),
        ];
        for kind in KINDS {
            for t in ["RuntimeDefault", "Localhost"] {
                cases.push(case(
                    format!("{kind}: {t}"),
                    "latest",
                    pod_in(
                        kind,
                        json!([{"name": "a", "securityContext": profile(t)}]),
                        json!({}),
                    ),
                    None,
                ));
            }
            cases.push(case(
                format!("{kind}: unset"),
                "latest",
                pod_in(kind, json!([{"name": "a"}]), json!({})),
                Some((REASON, &format!("pod or container \"a\" {MUST_SET}"))),
            ));
            cases.push(case(
                format!("{kind}: Unconfined"),
                "latest",
                pod_in(kind, json!([{"name": "a", "securityContext": profile("Unconfined")}]), json!({"securityContext": profile("RuntimeDefault")})),
                Some((REASON, "container \"a\" must not set securityContext.seccompProfile.type to \"Unconfined\"")),
            ));
        }
        assert_cases(check, &cases);
    }

    #[test]
    fn version_boundaries() {
        let bare = |os: &str| pod(json!({"os": {"name": os}, "containers": [{"name": "a"}]}));
        let denied = format!("pod or container \"a\" {MUST_SET}");
        assert_cases(
            check,
            &[
                case("not evaluated at v1.18", "v1.18", bare("linux"), None),
                case(
                    "evaluated from v1.19",
                    "v1.19",
                    bare("linux"),
                    Some((REASON, &denied)),
                ),
                case(
                    "windows not skipped at v1.24",
                    "v1.24",
                    bare("windows"),
                    Some((REASON, &denied)),
                ),
                case("windows skipped from v1.25", "v1.25", bare("windows"), None),
            ],
        );
    }
}
