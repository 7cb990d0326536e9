//! `hostPathVolumes` (baseline, v1.0): hostPath volumes are forbidden. In the
//! restricted profile `restrictedVolumes` replaces this check.
//!
//! Restricted fields:
//! - `spec.volumes[*].hostPath`
//!
//! Allowed values: unset.

use super::message::push_quoted;
use super::{Check, Failure, Input, Level, VersionedCheck, v};

pub(crate) fn check() -> Check {
    Check {
        id: "hostPathVolumes",
        level: Level::Baseline,
        versions: const { &[VersionedCheck::new(v(1, 0), v1_0)] },
    }
}

fn v1_0(input: &Input<'_>) -> Option<Failure> {
    let mut names = Vec::new();
    for volume in input.volumes() {
        if volume.host_path.is_some() {
            names.push(volume.name.as_str());
        }
    }
    if names.is_empty() {
        return None;
    }
    let mut detail = String::from(if names.len() == 1 {
        "volume "
    } else {
        "volumes "
    });
    push_quoted(&mut detail, names);
    Some(Failure::new("hostPath volumes", detail))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;
    use crate::pss::testing::{assert_cases, case, pod};

    const REASON: &str = "hostPath volumes";

    #[test]
    fn host_path_volumes() {
        let host_path = |name: &str| json!({"name": name, "hostPath": {"path": "/"}});
        assert_cases(
            check,
            &[
                case("no volumes", "latest", pod(json!({})), None),
                case(
                    "emptyDir",
                    "latest",
                    pod(json!({"volumes": [{"name": "e", "emptyDir": {}}]})),
                    None,
                ),
                case(
                    "one",
                    "v1.0",
                    pod(json!({"volumes": [host_path("h")]})),
                    Some((REASON, "volume \"h\"")),
                ),
                case(
                    "spec order",
                    "latest",
                    pod(
                        json!({"volumes": [host_path("z"), {"name": "e", "emptyDir": {}}, host_path("a")]}),
                    ),
                    Some((REASON, "volumes \"z\", \"a\"")),
                ),
            ],
        );
    }
}
