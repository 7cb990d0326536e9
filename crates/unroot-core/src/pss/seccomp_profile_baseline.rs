//! `seccompProfile_baseline` (baseline, v1.0): the seccomp profile must not be
//! explicitly set to `Unconfined`. In the restricted profile
//! `seccompProfile_restricted` replaces this check from v1.19.
//!
//! Restricted fields, v1.0 to v1.18 (annotations only):
//! - `metadata.annotations["seccomp.security.alpha.kubernetes.io/pod"]`
//! - `metadata.annotations["container.seccomp.security.alpha.kubernetes.io/{container name}"]`
//!
//! Allowed values: unset, `runtime/default`, `docker/default`, `localhost/*`.
//!
//! Restricted fields, from v1.19 (fields only):
//! - `spec.securityContext.seccompProfile.type`
//! - `spec.containers[*].securityContext.seccompProfile.type`
//! - `spec.initContainers[*].securityContext.seccompProfile.type`
//! - `spec.ephemeralContainers[*].securityContext.seccompProfile.type`
//!
//! Allowed values: unset, `RuntimeDefault`, `Localhost`.

use std::collections::BTreeSet;

use super::message::{push_go_quoted, push_joined, push_quoted, setters};
use super::{Check, Failure, Input, Level, VersionedCheck, v};

const POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
pub(crate) const CONTAINER_ANNOTATION_PREFIX: &str =
    "container.seccomp.security.alpha.kubernetes.io/";

pub(crate) fn check() -> Check {
    Check {
        id: "seccompProfile_baseline",
        level: Level::Baseline,
        versions: const {
            &[
                VersionedCheck::new(v(1, 0), v1_0),
                VersionedCheck::new(v(1, 19), v1_19),
            ]
        },
    }
}

fn allowed_annotation(value: &str) -> bool {
    value == "runtime/default" || value == "docker/default" || value.starts_with("localhost/")
}

fn v1_0(input: &Input<'_>) -> Option<Failure> {
    let annotations = input.annotations?;
    let mut entries = BTreeSet::new();
    let mut add = |key: &str, value: &str| {
        let mut entry = format!("{key}=");
        push_go_quoted(&mut entry, value);
        entries.insert(entry);
    };
    if let Some(value) = annotations.get(POD_ANNOTATION)
        && !allowed_annotation(value)
    {
        add(POD_ANNOTATION, value);
    }
    let mut key = String::new();
    for c in input.containers() {
        key.clear();
        key.push_str(CONTAINER_ANNOTATION_PREFIX);
        key.push_str(c.name);
        if let Some(value) = annotations.get(&key)
            && !allowed_annotation(value)
        {
            add(&key, value);
        }
    }
    if entries.is_empty() {
        return None;
    }
    let mut detail = String::from(if entries.len() == 1 {
        "forbidden annotation "
    } else {
        "forbidden annotations "
    });
    push_joined(&mut detail, entries.iter().map(String::as_str));
    Some(Failure::new("seccompProfile", detail))
}

fn allowed_type(profile_type: &str) -> bool {
    matches!(profile_type, "RuntimeDefault" | "Localhost")
}

fn v1_19(input: &Input<'_>) -> Option<Failure> {
    let mut types = BTreeSet::new();
    let mut pod_bad = false;
    if let Some(profile) = input
        .pod_security_context()
        .and_then(|sc| sc.seccomp_profile.as_ref())
        && !allowed_type(&profile.type_)
    {
        pod_bad = true;
        types.insert(profile.type_.as_str());
    }
    let mut bad_containers = Vec::new();
    for c in input.containers() {
        if let Some(profile) = c
            .security_context
            .and_then(|sc| sc.seccomp_profile.as_ref())
            && !allowed_type(&profile.type_)
        {
            bad_containers.push(c.name);
            types.insert(profile.type_.as_str());
        }
    }
    if !pod_bad && bad_containers.is_empty() {
        return None;
    }
    let mut detail = setters(pod_bad, &bad_containers);
    detail.push_str(" must not set securityContext.seccompProfile.type to ");
    push_quoted(&mut detail, types.iter().copied());
    Some(Failure::new("seccompProfile", detail))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;
    use crate::pss::testing::{KINDS, assert_cases, case, pod, pod_in, pod_with_meta};

    const REASON: &str = "seccompProfile";

    fn profile(t: &str) -> serde_json::Value {
        json!({"seccompProfile": {"type": t}})
    }

    #[test]
    fn annotations_before_v1_19() {
        let annotated = |annotations: serde_json::Value| {
            pod_with_meta(
                &json!({"annotations": annotations}),
                json!({"containers": [{"name": "a"}], "initContainers": [{"name": "i"}], "ephemeralContainers": [{"name": "e"}]}),
            )
        };
        let mut cases = vec![
            case(
                "allowed values; fields ignored",
                "v1.18",
                pod_with_meta(
                    &json!({"annotations": {
                        "seccomp.security.alpha.kubernetes.io/pod": "runtime/default",
                        "container.seccomp.security.alpha.kubernetes.io/a": "docker/default",
                        "container.seccomp.security.alpha.kubernetes.io/b": "localhost/x",
                    }}),
                    json!({"securityContext": profile("Unconfined"), "containers": [{"name": "a"}, {"name": "b"}]}),
                ),
                None,
            ),
            case(
                "annotations for unknown containers ignored",
                "v1.0",
                annotated(
                    json!({"container.seccomp.security.alpha.kubernetes.io/ghost": "unconfined"}),
                ),
                None,
            ),
            case(
                "empty value is forbidden",
                "v1.0",
                annotated(json!({"seccomp.security.alpha.kubernetes.io/pod": ""})),
                Some((
                    REASON,
                    "forbidden annotation seccomp.security.alpha.kubernetes.io/pod=\"\"",
                )),
            ),
            case(
                "entries sorted, not re-quoted",
                "v1.18",
                annotated(json!({
                    "seccomp.security.alpha.kubernetes.io/pod": "unconfined",
                    "container.seccomp.security.alpha.kubernetes.io/a": "unconfined",
                })),
                Some((
                    REASON,
                    "forbidden annotations container.seccomp.security.alpha.kubernetes.io/a=\"unconfined\", seccomp.security.alpha.kubernetes.io/pod=\"unconfined\"",
                )),
            ),
            case(
                "annotations ignored from v1.19",
                "v1.19",
                annotated(json!({"seccomp.security.alpha.kubernetes.io/pod": "unconfined"})),
                None,
            ),
        ];
        for name in ["i", "a", "e"] {
            cases.push(case(
                format!("container annotation for {name}"),
                "v1.18",
                annotated(json!({format!("container.seccomp.security.alpha.kubernetes.io/{name}"): "unconfined\n"})),
                Some((REASON, &format!("forbidden annotation container.seccomp.security.alpha.kubernetes.io/{name}=\"unconfined\\n\""))),
            ));
        }
        assert_cases(check, &cases);
    }

    #[test]
    fn fields_from_v1_19() {
        let mut cases = vec![
            case(
                "v1.18 ignores fields",
                "v1.18",
                pod(json!({"securityContext": profile("Unconfined")})),
                None,
            ),
            case(
                "pod level",
                "v1.19",
                pod(json!({"securityContext": profile("Unconfined")})),
                Some((
                    REASON,
                    "pod must not set securityContext.seccompProfile.type to \"Unconfined\"",
                )),
            ),
            case(
                "pod and containers, values sorted",
                "latest",
                pod(
                    json!({"securityContext": profile("Unconfined"), "containers": [
                        {"name": "a", "securityContext": profile("")},
                        {"name": "b", "securityContext": profile("RuntimeDefault")},
                        {"name": "c", "securityContext": profile("Unconfined")},
                    ]}),
                ),
                Some((
                    REASON,
                    "pod and containers \"a\", \"c\" must not set securityContext.seccompProfile.type to \"\", \"Unconfined\"",
                )),
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
                None,
            ));
            cases.push(case(
                format!("{kind}: Unconfined"),
                "latest",
                pod_in(kind, json!([{"name": "a", "securityContext": profile("Unconfined")}]), json!({})),
                Some((REASON, "container \"a\" must not set securityContext.seccompProfile.type to \"Unconfined\"")),
            ));
        }
        assert_cases(check, &cases);
    }
}
