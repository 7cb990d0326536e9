//! `hostPorts` (baseline, v1.0): host ports are forbidden.
//!
//! Restricted fields:
//! - `spec.containers[*].ports[*].hostPort`
//! - `spec.initContainers[*].ports[*].hostPort`
//! - `spec.ephemeralContainers[*].ports[*].hostPort`
//!
//! Allowed values: unset, `0`.

use std::collections::BTreeSet;

use super::message::{plural, push_containers, push_joined};
use super::{Check, Failure, Input, Level, VersionedCheck, v};

pub(crate) fn check() -> Check {
    Check {
        id: "hostPorts",
        level: Level::Baseline,
        versions: const { &[VersionedCheck::new(v(1, 0), v1_0)] },
    }
}

fn v1_0(input: &Input<'_>) -> Option<Failure> {
    let mut bad_containers = Vec::new();
    let mut ports = BTreeSet::new();
    for c in input.containers() {
        let mut bad = false;
        for host_port in c.host_ports() {
            if let Some(host_port) = host_port.filter(|p| *p != 0) {
                bad = true;
                // Sorted as strings, like upstream: "10000" before "80".
                ports.insert(host_port.to_string());
            }
        }
        if bad {
            bad_containers.push(c.name);
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    let mut detail = String::new();
    push_containers(&mut detail, &bad_containers);
    detail.push(' ');
    detail.push_str(plural(bad_containers.len(), "uses", "use"));
    detail.push(' ');
    detail.push_str(plural(ports.len(), "hostPort", "hostPorts"));
    detail.push(' ');
    push_joined(&mut detail, ports.iter().map(String::as_str));
    Some(Failure::new("hostPort", detail))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;
    use crate::pss::testing::{KINDS, assert_cases, case, pod, pod_in};

    const REASON: &str = "hostPort";

    fn ports(host_ports: &[i32]) -> serde_json::Value {
        json!(
            host_ports
                .iter()
                .map(|p| json!({"containerPort": 8080, "hostPort": p}))
                .collect::<Vec<_>>()
        )
    }

    #[test]
    fn host_ports() {
        let mut cases = vec![
            case(
                "no ports",
                "latest",
                pod(json!({"containers": [{"name": "a"}]})),
                None,
            ),
            case(
                "container ports only",
                "latest",
                pod(json!({"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]})),
                None,
            ),
            case(
                "hostPort 0",
                "v1.0",
                pod(json!({"containers": [{"name": "a", "ports": ports(&[0])}]})),
                None,
            ),
            case(
                "sorted as strings, deduplicated, plural",
                "latest",
                pod(json!({"containers": [
                    {"name": "a", "ports": ports(&[80, 10000])},
                    {"name": "ok", "ports": ports(&[0])},
                    {"name": "b", "ports": ports(&[80, 443])},
                ]})),
                Some((
                    REASON,
                    "containers \"a\", \"b\" use hostPorts 10000, 443, 80",
                )),
            ),
            case(
                "many containers, one port",
                "latest",
                pod(
                    json!({"containers": [{"name": "b", "ports": ports(&[20])}, {"name": "c", "ports": ports(&[20])}]}),
                ),
                Some((REASON, "containers \"b\", \"c\" use hostPort 20")),
            ),
            case(
                "one container, many ports",
                "latest",
                pod(json!({"containers": [{"name": "b", "ports": ports(&[10, 20, 30])}]})),
                Some((REASON, "container \"b\" uses hostPorts 10, 20, 30")),
            ),
        ];
        for kind in KINDS {
            cases.push(case(
                format!("{kind}: one port"),
                "latest",
                pod_in(
                    kind,
                    json!([{"name": "b", "ports": ports(&[20])}]),
                    json!({}),
                ),
                Some((REASON, "container \"b\" uses hostPort 20")),
            ));
        }
        assert_cases(check, &cases);
    }
}
