//! `seLinuxOptions` (baseline, v1.0): setting a custom SELinux user or role
//! is forbidden, and the type is limited to the container types.
//!
//! Restricted fields:
//! - `spec.securityContext.seLinuxOptions.type`, `.user`, `.role`
//! - `spec.containers[*].securityContext.seLinuxOptions.type`, `.user`, `.role`
//! - `spec.initContainers[*].securityContext.seLinuxOptions.type`, `.user`, `.role`
//! - `spec.ephemeralContainers[*].securityContext.seLinuxOptions.type`, `.user`, `.role`
//!
//! Allowed values: `type` unset/`""`, `container_t`, `container_init_t`,
//! `container_kvm_t`, and from v1.31 `container_engine_t`; `user` and `role`
//! unset or `""`. `level` is not checked.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::SELinuxOptions;

use super::message::{plural, push_quoted, setters};
use super::{Check, Failure, Input, Level, VersionedCheck, v};

const TYPES_V1_0: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t"];
const TYPES_V1_31: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

pub(crate) fn check() -> Check {
    Check {
        id: "seLinuxOptions",
        level: Level::Baseline,
        versions: const {
            &[
                VersionedCheck::new(v(1, 0), v1_0),
                VersionedCheck::new(v(1, 31), v1_31),
            ]
        },
    }
}

fn v1_0(input: &Input<'_>) -> Option<Failure> {
    evaluate(input, TYPES_V1_0)
}

fn v1_31(input: &Input<'_>) -> Option<Failure> {
    evaluate(input, TYPES_V1_31)
}

#[derive(Default)]
struct Findings<'a> {
    types: BTreeSet<&'a str>,
    user_set: bool,
    role_set: bool,
}

impl<'a> Findings<'a> {
    /// Records what is wrong with `options`; true when anything is.
    fn inspect(&mut self, options: &'a SELinuxOptions, allowed_types: &[&str]) -> bool {
        let mut bad = false;
        let selinux_type = options.type_.as_deref().unwrap_or_default();
        if !allowed_types.contains(&selinux_type) {
            self.types.insert(selinux_type);
            bad = true;
        }
        if options.user.as_deref().is_some_and(|u| !u.is_empty()) {
            self.user_set = true;
            bad = true;
        }
        if options.role.as_deref().is_some_and(|r| !r.is_empty()) {
            self.role_set = true;
            bad = true;
        }
        bad
    }
}

fn evaluate(input: &Input<'_>, allowed_types: &[&str]) -> Option<Failure> {
    let mut findings = Findings::default();
    let pod_bad = input
        .pod_security_context()
        .and_then(|sc| sc.se_linux_options.as_ref())
        .is_some_and(|options| findings.inspect(options, allowed_types));
    let mut bad_containers = Vec::new();
    for c in input.containers() {
        if let Some(options) = c
            .security_context
            .and_then(|sc| sc.se_linux_options.as_ref())
            && findings.inspect(options, allowed_types)
        {
            bad_containers.push(c.name);
        }
    }
    if !pod_bad && bad_containers.is_empty() {
        return None;
    }
    let mut detail = setters(pod_bad, &bad_containers);
    detail.push_str(" set forbidden securityContext.seLinuxOptions: ");
    let mut parts = 0;
    if !findings.types.is_empty() {
        detail.push_str(plural(findings.types.len(), "type ", "types "));
        push_quoted(&mut detail, findings.types.iter().copied());
        parts += 1;
    }
    for (set, text) in [
        (findings.user_set, "user may not be set"),
        (findings.role_set, "role may not be set"),
    ] {
        if set {
            if parts > 0 {
                detail.push_str("; ");
            }
            detail.push_str(text);
            parts += 1;
        }
    }
    Some(Failure::new("seLinuxOptions", detail))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;
    use crate::pss::testing::{KINDS, assert_cases, case, pod, pod_in};

    const REASON: &str = "seLinuxOptions";

    fn se(options: &serde_json::Value) -> serde_json::Value {
        json!({"seLinuxOptions": options})
    }

    #[test]
    fn allowed_options_pass() {
        let mut cases = vec![case(
            "pod level allowed type and level",
            "v1.0",
            pod(
                json!({"securityContext": se(&json!({"type": "container_init_t", "level": "s0:c1,c2", "user": "", "role": ""}))}),
            ),
            None,
        )];
        for kind in KINDS {
            for t in ["container_t", "container_init_t", "container_kvm_t", ""] {
                cases.push(case(
                    format!("{kind}: {t:?}"),
                    "v1.0",
                    pod_in(
                        kind,
                        json!([{"name": "a", "securityContext": se(&json!({"type": t}))}]),
                        json!({}),
                    ),
                    None,
                ));
            }
        }
        assert_cases(check, &cases);
    }

    #[test]
    fn forbidden_options_fail() {
        let mut cases = Vec::new();
        for kind in KINDS {
            for (what, options, data) in [
                ("type", json!({"type": "spc_t"}), "type \"spc_t\""),
                ("user", json!({"user": "root"}), "user may not be set"),
                ("role", json!({"role": "sysadm_r"}), "role may not be set"),
            ] {
                cases.push(case(
                    format!("{kind}: {what}"),
                    "latest",
                    pod_in(
                        kind,
                        json!([{"name": "a", "securityContext": se(&options)}]),
                        json!({}),
                    ),
                    Some((
                        REASON,
                        &format!(
                            "container \"a\" set forbidden securityContext.seLinuxOptions: {data}"
                        ),
                    )),
                ));
            }
        }
        cases.push(case(
            "everything accumulates across setters",
            "latest",
            pod(json!({
                "securityContext": se(&json!({"type": "foo"})),
                "containers": [
                    {"name": "e", "securityContext": se(&json!({"type": "bar", "user": "u"}))},
                    {"name": "ok", "securityContext": se(&json!({"type": "container_t"}))},
                    {"name": "f", "securityContext": se(&json!({"role": "r"}))},
                    {"name": "g", "securityContext": se(&json!({"type": "foo"}))},
                ],
            })),
            Some((REASON, "pod and containers \"e\", \"f\", \"g\" set forbidden securityContext.seLinuxOptions: types \"bar\", \"foo\"; user may not be set; role may not be set")),
        ));
        cases.push(case(
            "pod only, user and role",
            "latest",
            pod(json!({"securityContext": se(&json!({"user": "u", "role": "r"}))})),
            Some((REASON, "pod set forbidden securityContext.seLinuxOptions: user may not be set; role may not be set")),
        ));
        assert_cases(check, &cases);
    }

    #[test]
    fn container_engine_t_allowed_from_v1_31() {
        let engine = pod(
            json!({"containers": [{"name": "a", "securityContext": se(&json!({"type": "container_engine_t"}))}]}),
        );
        assert_cases(
            check,
            &[
                case(
                    "v1.30",
                    "v1.30",
                    engine.clone(),
                    Some((
                        REASON,
                        "container \"a\" set forbidden securityContext.seLinuxOptions: type \"container_engine_t\"",
                    )),
                ),
                case("v1.31", "v1.31", engine.clone(), None),
                case("latest", "latest", engine, None),
            ],
        );
    }
}
