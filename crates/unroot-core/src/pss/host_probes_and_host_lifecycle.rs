//! `hostProbesAndHostLifecycle` (baseline, from v1.34): probes and lifecycle
//! handlers must not target another host.
//!
//! Restricted fields, for every container in `containers`, `initContainers`
//! and `ephemeralContainers`:
//! - `livenessProbe`, `readinessProbe`, `startupProbe`: `httpGet.host`, `tcpSocket.host`
//! - `lifecycle.postStart`, `lifecycle.preStop`: `httpGet.host`, `tcpSocket.host`
//!
//! Allowed values: unset, `""` (any host, even `localhost`, is forbidden).
//!
//! Unlike every other check, container names are reported as a sorted set.

use std::collections::BTreeSet;

use super::message::{plural, push_quoted};
use super::{Check, Failure, Input, Level, VersionedCheck, v};

pub(crate) fn check() -> Check {
    Check {
        id: "hostProbesAndHostLifecycle",
        level: Level::Baseline,
        versions: const { &[VersionedCheck::new(v(1, 34), v1_34)] },
    }
}

fn v1_34(input: &Input<'_>) -> Option<Failure> {
    let mut names = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for c in input.containers() {
        for host in c.endpoint_hosts.into_iter().flatten() {
            if !host.is_empty() {
                names.insert(c.name);
                hosts.insert(host);
            }
        }
    }
    if names.is_empty() {
        return None;
    }
    let mut detail = String::from(plural(names.len(), "container ", "containers "));
    push_quoted(&mut detail, names.iter().copied());
    detail.push_str(plural(
        names.len(),
        " uses probe or lifecycle ",
        " use probe or lifecycle ",
    ));
    detail.push_str(plural(hosts.len(), "host ", "hosts "));
    push_quoted(&mut detail, hosts.iter().copied());
    Some(Failure::new("probe or lifecycle host", detail))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;
    use crate::pss::testing::{KINDS, assert_cases, case, pod, pod_in};

    const REASON: &str = "probe or lifecycle host";

    fn http(host: &str) -> serde_json::Value {
        json!({"httpGet": {"port": 80, "host": host}})
    }

    fn tcp(host: &str) -> serde_json::Value {
        json!({"tcpSocket": {"port": 80, "host": host}})
    }

    #[test]
    fn hosts_in_probes_and_handlers() {
        let mut cases = vec![
            case(
                "no host, exec, grpc and sleep pass",
                "latest",
                pod(json!({"containers": [{
                    "name": "a",
                    "livenessProbe": {"httpGet": {"port": 80}},
                    "readinessProbe": {"exec": {"command": ["true"]}},
                    "startupProbe": {"grpc": {"port": 80}},
                    "lifecycle": {"postStart": {"sleep": {"seconds": 1}}, "preStop": tcp("")},
                }]})),
                None,
            ),
            case(
                "not evaluated at v1.33",
                "v1.33",
                pod(json!({"containers": [{"name": "a", "livenessProbe": http("evil")}]})),
                None,
            ),
            case(
                "names and hosts sorted and deduplicated",
                "latest",
                pod(json!({
                    "initContainers": [{"name": "z", "startupProbe": tcp("localhost")}],
                    "containers": [
                        {"name": "b", "livenessProbe": http("::1"), "readinessProbe": tcp("127.0.0.1")},
                        {"name": "a", "lifecycle": {"preStop": http("localhost")}},
                        {"name": "b", "lifecycle": {"postStart": tcp("localhost")}},
                    ],
                })),
                Some((
                    REASON,
                    "containers \"a\", \"b\", \"z\" use probe or lifecycle hosts \"127.0.0.1\", \"::1\", \"localhost\"",
                )),
            ),
            case(
                "one container, many hosts",
                "v1.34",
                pod(
                    json!({"containers": [{"name": "a", "livenessProbe": http("localhost"), "readinessProbe": http("::1"), "startupProbe": http("127.0.0.1")}]}),
                ),
                Some((
                    REASON,
                    "container \"a\" uses probe or lifecycle hosts \"127.0.0.1\", \"::1\", \"localhost\"",
                )),
            ),
        ];
        for kind in KINDS {
            for (field, value) in [
                ("livenessProbe", http("h")),
                ("readinessProbe", tcp("h")),
                ("startupProbe", http("h")),
                ("lifecycle", json!({"postStart": http("h")})),
                ("lifecycle", json!({"preStop": tcp("h")})),
            ] {
                let mut container = json!({"name": "a"});
                container[field] = value;
                cases.push(case(
                    format!("{kind}: {field} {container}"),
                    "latest",
                    pod_in(kind, json!([container]), json!({})),
                    Some((REASON, "container \"a\" uses probe or lifecycle host \"h\"")),
                ));
            }
        }
        assert_cases(check, &cases);
    }
}
