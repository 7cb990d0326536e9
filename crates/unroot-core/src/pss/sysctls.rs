//! `sysctls` (baseline, v1.0): sysctls that can reach beyond the pod are
//! forbidden; only a namespaced, safe subset is allowed.
//!
//! Restricted fields:
//! - `spec.securityContext.sysctls[*].name`
//!
//! Allowed values (cumulative, exact names; the `net/ipv4/…` spelling is not
//! accepted):
//! - v1.0: `kernel.shm_rmid_forced`, `net.ipv4.ip_local_port_range`,
//!   `net.ipv4.tcp_syncookies`, `net.ipv4.ping_group_range`,
//!   `net.ipv4.ip_unprivileged_port_start`
//! - v1.27: `net.ipv4.ip_local_reserved_ports`
//! - v1.29: `net.ipv4.tcp_keepalive_time`, `net.ipv4.tcp_fin_timeout`,
//!   `net.ipv4.tcp_keepalive_intvl`, `net.ipv4.tcp_keepalive_probes`
//! - v1.32: `net.ipv4.tcp_rmem`, `net.ipv4.tcp_wmem`
//! - v1.37: `net.ipv4.tcp_slow_start_after_idle`, `net.ipv4.tcp_notsent_lowat`

use super::message::push_joined;
use super::{Check, Failure, Input, Level, VersionedCheck, v};

const V1_0: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];
const V1_27: &[&str] = &["net.ipv4.ip_local_reserved_ports"];
const V1_29: &[&str] = &[
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const V1_32: &[&str] = &["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];
const V1_37: &[&str] = &[
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.tcp_notsent_lowat",
];

pub(crate) fn check() -> Check {
    Check {
        id: "sysctls",
        level: Level::Baseline,
        versions: const {
            &[
                VersionedCheck::new(v(1, 0), v1_0),
                VersionedCheck::new(v(1, 27), v1_27),
                VersionedCheck::new(v(1, 29), v1_29),
                VersionedCheck::new(v(1, 32), v1_32),
                VersionedCheck::new(v(1, 37), v1_37),
            ]
        },
    }
}

fn v1_0(input: &Input<'_>) -> Option<Failure> {
    evaluate(input, &[V1_0])
}

fn v1_27(input: &Input<'_>) -> Option<Failure> {
    evaluate(input, &[V1_0, V1_27])
}

fn v1_29(input: &Input<'_>) -> Option<Failure> {
    evaluate(input, &[V1_0, V1_27, V1_29])
}

fn v1_32(input: &Input<'_>) -> Option<Failure> {
    evaluate(input, &[V1_0, V1_27, V1_29, V1_32])
}

fn v1_37(input: &Input<'_>) -> Option<Failure> {
    evaluate(input, &[V1_0, V1_27, V1_29, V1_32, V1_37])
}

fn evaluate(input: &Input<'_>, allowed: &[&[&str]]) -> Option<Failure> {
    let is_allowed = |name: &str| allowed.iter().any(|set| set.contains(&name));
    let mut forbidden = Vec::new();
    for sysctl in input
        .pod_security_context()
        .and_then(|sc| sc.sysctls.as_deref())
        .unwrap_or_default()
    {
        if !is_allowed(&sysctl.name) {
            forbidden.push(sysctl.name.as_str());
        }
    }
    if forbidden.is_empty() {
        return None;
    }
    let mut detail = String::new();
    push_joined(&mut detail, forbidden);
    Some(Failure::new("forbidden sysctls", detail))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{V1_0, V1_27, V1_29, V1_32, V1_37, check};
    use crate::pss::testing::{Case, assert_cases, case, pod};

    const REASON: &str = "forbidden sysctls";

    fn with_sysctls(names: &[&str]) -> serde_json::Value {
        let sysctls: Vec<_> = names
            .iter()
            .map(|n| json!({"name": n, "value": "1"}))
            .collect();
        pod(json!({"securityContext": {"sysctls": sysctls}}))
    }

    #[test]
    fn sysctls() {
        assert_cases(
            check,
            &[
                case("none", "v1.0", pod(json!({})), None),
                case("v1.0 set", "v1.0", with_sysctls(V1_0), None),
                case(
                    "spec order, duplicates kept, unquoted",
                    "latest",
                    with_sysctls(&["b", "kernel.shm_rmid_forced", "a", "b"]),
                    Some((REASON, "b, a, b")),
                ),
                case(
                    "slash spelling is forbidden",
                    "latest",
                    with_sysctls(&["net/ipv4/tcp_syncookies"]),
                    Some((REASON, "net/ipv4/tcp_syncookies")),
                ),
            ],
        );
    }

    #[test]
    fn allow_list_grows_at_each_version() {
        let mut cases: Vec<Case> = Vec::new();
        for (names, before, from) in [
            (V1_27, "v1.26", "v1.27"),
            (V1_29, "v1.28", "v1.29"),
            (V1_32, "v1.31", "v1.32"),
            (V1_37, "v1.36", "v1.37"),
        ] {
            for name in names {
                cases.push(case(
                    format!("{name} before"),
                    before,
                    with_sysctls(&[name]),
                    Some((REASON, name)),
                ));
                cases.push(case(
                    format!("{name} from"),
                    from,
                    with_sysctls(&[name]),
                    None,
                ));
                cases.push(case(
                    format!("{name} latest"),
                    "latest",
                    with_sysctls(&[name]),
                    None,
                ));
            }
        }
        assert_cases(check, &cases);
    }
}
