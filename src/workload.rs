//! Where each workload kind keeps its pod template.

/// The path of the pod template inside an object of `kind`, for every kind
/// that carries one; `None` for Pods and every other kind.
///
/// Matching is on `kind` alone: these kind names are unique across the
/// built-in API groups (`apps/v1`, `batch/v1`, core `v1`).
#[must_use]
pub fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => &["spec", "template"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template"],
        "PodTemplate" => &["template"],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_kind_has_its_template_path() {
        for (kind, path) in [
            ("Deployment", "spec.template"),
            ("ReplicaSet", "spec.template"),
            ("StatefulSet", "spec.template"),
            ("DaemonSet", "spec.template"),
            ("Job", "spec.template"),
            ("ReplicationController", "spec.template"),
            ("CronJob", "spec.jobTemplate.spec.template"),
            ("PodTemplate", "template"),
        ] {
            assert_eq!(
                template_path(kind).map(|p| p.join(".")).as_deref(),
                Some(path),
                "{kind}"
            );
        }
        assert_eq!(template_path("Pod"), None);
        assert_eq!(template_path("Service"), None);
    }
}
