//! `appArmorProfile` (baseline, v1.0): on supported hosts the `RuntimeDefault`
//! AppArmor profile applies by default; overriding or disabling it is
//! forbidden, only `RuntimeDefault` and localhost profiles are allowed.
//!
//! Restricted fields:
//! - `spec.securityContext.appArmorProfile.type`
//! - `spec.containers[*].securityContext.appArmorProfile.type`
//! - `spec.initContainers[*].securityContext.appArmorProfile.type`
//! - `spec.ephemeralContainers[*].securityContext.appArmorProfile.type`
//! - `metadata.annotations["container.apparmor.security.beta.kubernetes.io/*"]`
//!
//! Allowed values: types `RuntimeDefault`, `Localhost` (or no profile);
//! annotation values `""`, `runtime/default`, `localhost/*`.

use std::collections::BTreeSet;

use super::message::{push_go_quoted, push_quoted, setters};
use super::{Check, Failure, Input, Level, VersionedCheck, v};

const ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

pub(crate) fn check() -> Check {
    Check {
        id: "appArmorProfile",
        level: Level::Baseline,
        versions: const { &[VersionedCheck::new(v(1, 0), v1_0)] },
    }
}

fn allowed_type(profile_type: &str) -> bool {
    matches!(profile_type, "RuntimeDefault" | "Localhost")
}

fn allowed_annotation(value: &str) -> bool {
    value.is_empty() || value == "runtime/default" || value.starts_with("localhost/")
}

fn v1_0(input: &Input<'_>) -> Option<Failure> {
    let mut bad_types = BTreeSet::new();
    let mut pod_bad = false;
    if let Some(profile) = input
        .pod_security_context()
        .and_then(|sc| sc.app_armor_profile.as_ref())
        && !allowed_type(&profile.type_)
    {
        pod_bad = true;
        bad_types.insert(profile.type_.as_str());
    }
    let mut bad_containers = Vec::new();
    for c in input.containers() {
        if let Some(profile) = c
            .security_context
            .and_then(|sc| sc.app_armor_profile.as_ref())
            && !allowed_type(&profile.type_)
        {
            bad_containers.push(c.name);
            bad_types.insert(profile.type_.as_str());
        }
    }
    // Annotations are a BTreeMap, so a range scan yields the keys in order.
    let bad_annotations: Vec<(&str, &str)> = input
        .annotations
        .into_iter()
        .flat_map(|a| {
            a.range::<str, _>((
                std::ops::Bound::Included(ANNOTATION_PREFIX),
                std::ops::Bound::Unbounded,
            ))
        })
        .take_while(|(key, _)| key.starts_with(ANNOTATION_PREFIX))
        .filter(|(_, value)| !allowed_annotation(value))
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    if !pod_bad && bad_containers.is_empty() && bad_annotations.is_empty() {
        return None;
    }

    let mut annotation_entries: Vec<String> = bad_annotations
        .iter()
        .map(|(key, value)| {
            let mut entry = format!("{key}=");
            push_go_quoted(&mut entry, value);
            entry
        })
        .collect();
    // Sorted as whole entries: `a-=` sorts before `a=`, unlike the keys.
    annotation_entries.sort_unstable();
    let mut detail = setters(pod_bad, &bad_containers);
    if !bad_annotations.is_empty() {
        if !detail.is_empty() {
            detail.push_str(" and ");
        }
        detail.push_str(if bad_annotations.len() == 1 {
            "annotation"
        } else {
            "annotations"
        });
    }
    detail.push_str(" must not set AppArmor profile type to ");
    push_quoted(
        &mut detail,
        bad_types
            .iter()
            .copied()
            .chain(annotation_entries.iter().map(String::as_str)),
    );
    let reason = if bad_types.len() + annotation_entries.len() == 1 {
        "forbidden AppArmor profile"
    } else {
        "forbidden AppArmor profiles"
    };
    Some(Failure::new(reason, detail))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;
    use crate::pss::testing::{KINDS, assert_cases, case, pod, pod_in, pod_with_meta};

    const ONE: &str = "forbidden AppArmor profile";
    const MANY: &str = "forbidden AppArmor profiles";

    fn profile(t: &str) -> serde_json::Value {
        json!({"appArmorProfile": {"type": t}})
    }

    #[test]
    fn allowed_profiles_pass() {
        let mut cases = vec![
            case(
                "no profile",
                "latest",
                pod(json!({"containers": [{"name": "a"}]})),
                None,
            ),
            case(
                "pod RuntimeDefault, container Localhost",
                "latest",
                pod(
                    json!({"securityContext": profile("RuntimeDefault"), "containers": [{"name": "a", "securityContext": profile("Localhost")}]}),
                ),
                None,
            ),
            case(
                "allowed annotation values",
                "latest",
                pod_with_meta(
                    &json!({"annotations": {
                        "container.apparmor.security.beta.kubernetes.io/a": "",
                        "container.apparmor.security.beta.kubernetes.io/b": "runtime/default",
                        "container.apparmor.security.beta.kubernetes.io/c": "localhost/",
                        "container.apparmor.security.beta.kubernetes.io/d": "localhost/foo",
                        "container.apparmor.security.beta.kubernetes.io": "unconfined",
                        "other.example.com/x": "unconfined",
                    }}),
                    json!({}),
                ),
                None,
            ),
        ];
        for kind in KINDS {
            cases.push(case(
                format!("{kind}: RuntimeDefault"),
                "v1.0",
                pod_in(
                    kind,
                    json!([{"name": "a", "securityContext": profile("RuntimeDefault")}]),
                    json!({}),
                ),
                None,
            ));
        }
        assert_cases(check, &cases);
    }

    #[test]
    fn forbidden_profiles() {
        let mut cases = Vec::new();
        for kind in KINDS {
            for t in ["Unconfined", "", "unknown"] {
                cases.push(case(
                    format!("{kind}: {t:?}"),
                    "latest",
                    pod_in(
                        kind,
                        json!([{"name": "a", "securityContext": profile(t)}]),
                        json!({}),
                    ),
                    Some((
                        ONE,
                        &format!("container \"a\" must not set AppArmor profile type to \"{t}\""),
                    )),
                ));
            }
        }
        cases.extend([
            case(
                "pod level",
                "v1.0",
                pod(json!({"securityContext": profile("Unconfined")})),
                Some((ONE, "pod must not set AppArmor profile type to \"Unconfined\"")),
            ),
            case(
                "pod and container share one value",
                "latest",
                pod(json!({"securityContext": profile("Unconfined"), "containers": [{"name": "a", "securityContext": profile("Unconfined")}]})),
                Some((ONE, "pod and container \"a\" must not set AppArmor profile type to \"Unconfined\"")),
            ),
            case(
                "values sorted, containers in visit order",
                "latest",
                pod(json!({
                    "initContainers": [{"name": "i", "securityContext": profile("foo")}],
                    "containers": [{"name": "b", "securityContext": profile("Unconfined")}, {"name": "ok", "securityContext": profile("Localhost")}],
                })),
                Some((MANY, "containers \"i\", \"b\" must not set AppArmor profile type to \"Unconfined\", \"foo\"")),
            ),
            case(
                "one bad annotation, even without such a container",
                "latest",
                pod_with_meta(
                    &json!({"annotations": {"container.apparmor.security.beta.kubernetes.io/ghost": "unconfined"}}),
                    json!({}),
                ),
                Some((ONE, "annotation must not set AppArmor profile type to \"container.apparmor.security.beta.kubernetes.io/ghost=\"unconfined\"\"")),
            ),
            case(
                "annotations sorted and Go-quoted, empty suffix counts",
                "latest",
                pod_with_meta(
                    &json!({"annotations": {
                        "container.apparmor.security.beta.kubernetes.io/f": "unknown",
                        "container.apparmor.security.beta.kubernetes.io/e": "unconfined",
                        "container.apparmor.security.beta.kubernetes.io/": "a\"b\u{a0}",
                    }}),
                    json!({}),
                ),
                Some((MANY, "annotations must not set AppArmor profile type to \"container.apparmor.security.beta.kubernetes.io/=\"a\\\"b\\u00a0\"\", \"container.apparmor.security.beta.kubernetes.io/e=\"unconfined\"\", \"container.apparmor.security.beta.kubernetes.io/f=\"unknown\"\"")),
            ),
            case(
                "types then annotations; reason counts values",
                "latest",
                pod_with_meta(
                    &json!({"annotations": {"container.apparmor.security.beta.kubernetes.io/a": "unconfined"}}),
                    json!({"securityContext": profile("Unconfined"), "containers": [{"name": "a", "securityContext": profile("Unconfined")}]}),
                ),
                Some((MANY, "pod and container \"a\" and annotation must not set AppArmor profile type to \"Unconfined\", \"container.apparmor.security.beta.kubernetes.io/a=\"unconfined\"\"")),
            ),
        ]);
        assert_cases(check, &cases);
    }
}
