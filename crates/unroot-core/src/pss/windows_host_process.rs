//! `windowsHostProcess` (baseline, v1.0): Windows HostProcess containers,
//! which get privileged access to the Windows host, are forbidden.
//!
//! Restricted fields:
//! - `spec.securityContext.windowsOptions.hostProcess`
//! - `spec.containers[*].securityContext.windowsOptions.hostProcess`
//! - `spec.initContainers[*].securityContext.windowsOptions.hostProcess`
//! - `spec.ephemeralContainers[*].securityContext.windowsOptions.hostProcess`
//!
//! Allowed values: unset, `false`.

use super::message::setters;
use super::{Check, Failure, Input, Level, VersionedCheck, v};

pub(crate) fn check() -> Check {
    Check {
        id: "windowsHostProcess",
        level: Level::Baseline,
        versions: const { &[VersionedCheck::new(v(1, 0), v1_0)] },
    }
}

fn v1_0(input: &Input<'_>) -> Option<Failure> {
    let pod_bad = input
        .pod_security_context()
        .and_then(|sc| sc.windows_options.as_ref())
        .and_then(|w| w.host_process)
        == Some(true);
    let mut bad = Vec::new();
    for c in input.containers() {
        if c.security_context
            .and_then(|sc| sc.windows_options.as_ref())
            .and_then(|w| w.host_process)
            == Some(true)
        {
            bad.push(c.name);
        }
    }
    if !pod_bad && bad.is_empty() {
        return None;
    }
    let mut detail = setters(pod_bad, &bad);
    detail.push_str(" must not set securityContext.windowsOptions.hostProcess=true");
    Some(Failure::new("hostProcess", detail))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;
    use crate::pss::testing::{KINDS, assert_cases, case, pod, pod_in};

    const REASON: &str = "hostProcess";

    fn host_process(on: bool) -> serde_json::Value {
        json!({"windowsOptions": {"hostProcess": on}})
    }

    #[test]
    fn windows_host_process() {
        let mut cases = vec![
            case(
                "unset",
                "latest",
                pod(
                    json!({"containers": [{"name": "a", "securityContext": {"windowsOptions": {}}}]}),
                ),
                None,
            ),
            case(
                "pod level, not OS dependent",
                "v1.0",
                pod(json!({"os": {"name": "linux"}, "securityContext": host_process(true)})),
                Some((
                    REASON,
                    "pod must not set securityContext.windowsOptions.hostProcess=true",
                )),
            ),
            case(
                "pod and containers",
                "latest",
                pod(
                    json!({"securityContext": host_process(true), "containers": [
                        {"name": "a", "securityContext": host_process(true)},
                        {"name": "b", "securityContext": host_process(false)},
                        {"name": "c", "securityContext": host_process(true)},
                    ]}),
                ),
                Some((
                    REASON,
                    "pod and containers \"a\", \"c\" must not set securityContext.windowsOptions.hostProcess=true",
                )),
            ),
        ];
        for kind in KINDS {
            cases.push(case(
                format!("{kind}: false"),
                "latest",
                pod_in(
                    kind,
                    json!([{"name": "a", "securityContext": host_process(false)}]),
                    json!({}),
                ),
                None,
            ));
            cases.push(case(
                format!("{kind}: true"),
                "latest",
                pod_in(
                    kind,
                    json!([{"name": "a", "securityContext": host_process(true)}]),
                    json!({"os": {"name": "windows"}}),
                ),
                Some((
                    REASON,
                    "container \"a\" must not set securityContext.windowsOptions.hostProcess=true",
                )),
            ));
        }
        assert_cases(check, &cases);
    }
}
