//! `hostNamespaces` (baseline, v1.0): sharing the host namespaces is forbidden.
//!
//! Restricted fields:
//! - `spec.hostNetwork`
//! - `spec.hostPID`
//! - `spec.hostIPC`
//!
//! Allowed values: unset, `false`.

use super::{Check, Failure, Input, Level, VersionedCheck, v};

pub(crate) fn check() -> Check {
    Check {
        id: "hostNamespaces",
        level: Level::Baseline,
        versions: const { &[VersionedCheck::new(v(1, 0), v1_0)] },
    }
}

fn v1_0(input: &Input<'_>) -> Option<Failure> {
    let spec = input;
    let fields = [
        (spec.host_network, "hostNetwork=true"),
        (spec.host_pid, "hostPID=true"),
        (spec.host_ipc, "hostIPC=true"),
    ];
    if !fields.iter().any(|(set, _)| *set == Some(true)) {
        return None;
    }
    let mut detail = String::new();
    for (_, text) in fields.iter().filter(|(set, _)| *set == Some(true)) {
        if !detail.is_empty() {
            detail.push_str(", ");
        }
        detail.push_str(text);
    }
    Some(Failure::new("host namespaces", detail))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;
    use crate::pss::testing::{assert_cases, case, pod};

    const REASON: &str = "host namespaces";

    #[test]
    fn host_namespaces() {
        assert_cases(
            check,
            &[
                case("unset", "latest", pod(json!({})), None),
                case(
                    "all false, hostUsers ignored",
                    "v1.0",
                    pod(
                        json!({"hostNetwork": false, "hostPID": false, "hostIPC": false, "hostUsers": true}),
                    ),
                    None,
                ),
                case(
                    "hostNetwork",
                    "latest",
                    pod(json!({"hostNetwork": true})),
                    Some((REASON, "hostNetwork=true")),
                ),
                case(
                    "hostPID",
                    "latest",
                    pod(json!({"hostPID": true})),
                    Some((REASON, "hostPID=true")),
                ),
                case(
                    "hostIPC",
                    "v1.0",
                    pod(json!({"hostIPC": true})),
                    Some((REASON, "hostIPC=true")),
                ),
                case(
                    "fixed order",
                    "latest",
                    pod(json!({"hostIPC": true, "hostPID": true, "hostNetwork": true})),
                    Some((REASON, "hostNetwork=true, hostPID=true, hostIPC=true")),
                ),
                case(
                    "two of three",
                    "latest",
                    pod(json!({"hostIPC": true, "hostNetwork": true})),
                    Some((REASON, "hostNetwork=true, hostIPC=true")),
                ),
            ],
        );
    }
}
