//! The per-namespace policy: `unroot.dev/{enforce,audit,warn}[-version]`
//! labels over configured defaults, with upstream's handling of invalid
//! labels (spec §4.2), and upstream's filter for pod updates (§4.5).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::view;

use super::seccomp_profile_baseline::CONTAINER_ANNOTATION_PREFIX;
use super::{Error, Level, LevelVersion, Version, go_quote};

/// `unroot.dev/enforce`: the level that denies pods.
pub const ENFORCE_LABEL: &str = "unroot.dev/enforce";
/// `unroot.dev/enforce-version`.
pub const ENFORCE_VERSION_LABEL: &str = "unroot.dev/enforce-version";
/// `unroot.dev/audit`: the level reported in audit annotations.
pub const AUDIT_LABEL: &str = "unroot.dev/audit";
/// `unroot.dev/audit-version`.
pub const AUDIT_VERSION_LABEL: &str = "unroot.dev/audit-version";
/// `unroot.dev/warn`: the level reported as admission warnings.
pub const WARN_LABEL: &str = "unroot.dev/warn";
/// `unroot.dev/warn-version`.
pub const WARN_VERSION_LABEL: &str = "unroot.dev/warn-version";

/// The levels and versions a namespace enforces, audits and warns at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Violations deny pods.
    pub enforce: LevelVersion,
    /// Violations are recorded in audit annotations.
    pub audit: LevelVersion,
    /// Violations are returned as warnings.
    pub warn: LevelVersion,
}

impl Policy {
    /// All three levels privileged: nothing to evaluate.
    #[must_use]
    pub fn is_fully_privileged(&self) -> bool {
        [self.enforce, self.audit, self.warn]
            .iter()
            .all(|lv| lv.level == Level::Privileged)
    }

    /// Every mode equivalent to `other`'s (privileged levels ignore versions).
    #[must_use]
    pub fn equivalent(&self, other: &Policy) -> bool {
        self.enforce.equivalent(&other.enforce)
            && self.audit.equivalent(&other.audit)
            && self.warn.equivalent(&other.warn)
    }
}

/// An invalid policy label, reported like upstream's field error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError {
    /// The label key, e.g. `unroot.dev/enforce`.
    pub label: &'static str,
    /// The label's value as found.
    pub value: String,
    /// What is wrong with it.
    pub error: Error,
}

impl LabelError {
    /// The field path: `metadata.labels[unroot.dev/enforce]`.
    #[must_use]
    pub fn field(&self) -> String {
        format!("metadata.labels[{}]", self.label)
    }

    /// The error without the path: `Invalid value: "Restricted": must be one of …`
    /// (the `message` of a `FieldValueInvalid` status cause).
    #[must_use]
    pub fn body(&self) -> String {
        format!("Invalid value: {}: {}", go_quote(&self.value), self.error)
    }
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field(), self.body())
    }
}

/// The effective policy of a namespace with `labels`, starting from
/// `defaults`, and the errors of its invalid labels in label order (enforce,
/// enforce-version, audit, audit-version, warn, warn-version).
///
/// A label counts when its key is present; an empty value is invalid. An
/// invalid enforce level enforces `restricted` (fail closed), an invalid
/// audit or warn level is `privileged` (fail open), an invalid version is
/// `latest`. When only a valid enforce label is set and it is stricter than
/// the default warn level, warn follows it (and its version, unless a warn
/// version is set); audit never follows enforce.
#[must_use]
pub fn policy_from_labels(
    labels: Option<&BTreeMap<String, String>>,
    defaults: Policy,
) -> (Policy, Vec<LabelError>) {
    let mut policy = defaults;
    let mut errors = Vec::new();
    let Some(labels) = labels.filter(|l| !l.is_empty()) else {
        return (policy, errors);
    };
    let mut enforce_valid = false;
    if let Some((level, valid)) = parse(labels, ENFORCE_LABEL, Level::Restricted, &mut errors) {
        policy.enforce.level = level;
        enforce_valid = valid;
    }
    if let Some((version, _)) = parse(labels, ENFORCE_VERSION_LABEL, Version::Latest, &mut errors) {
        policy.enforce.version = version;
    }
    // Invalid audit and warn levels fail open.
    if let Some((level, _)) = parse(labels, AUDIT_LABEL, Level::Privileged, &mut errors) {
        policy.audit.level = level;
    }
    if let Some((version, _)) = parse(labels, AUDIT_VERSION_LABEL, Version::Latest, &mut errors) {
        policy.audit.version = version;
    }
    if let Some((level, _)) = parse(labels, WARN_LABEL, Level::Privileged, &mut errors) {
        policy.warn.level = level;
    }
    if let Some((version, _)) = parse(labels, WARN_VERSION_LABEL, Version::Latest, &mut errors) {
        policy.warn.version = version;
    }
    if !labels.contains_key(WARN_LABEL) && enforce_valid && policy.enforce.level > policy.warn.level
    {
        policy.warn.level = policy.enforce.level;
        if !labels.contains_key(WARN_VERSION_LABEL) {
            policy.warn.version = policy.enforce.version;
        }
    }
    (policy, errors)
}

/// The value of `label` parsed, or `fallback` with the error recorded;
/// `None` when the label is absent. The flag says whether it was valid.
fn parse<T: FromStr<Err = Error>>(
    labels: &BTreeMap<String, String>,
    label: &'static str,
    fallback: T,
    errors: &mut Vec<LabelError>,
) -> Option<(T, bool)> {
    let value = labels.get(label)?;
    Some(match value.parse() {
        Ok(parsed) => (parsed, true),
        Err(error) => {
            errors.push(LabelError {
                label,
                value: value.clone(),
                error,
            });
            (fallback, false)
        }
    })
}

/// Upstream's aggregate error string: the error itself when there is one,
/// else `[e1, e2]`, duplicates dropped. Empty when there are none.
#[must_use]
pub fn aggregate_errors(errors: &[LabelError]) -> String {
    let mut messages: Vec<String> = Vec::with_capacity(errors.len());
    for error in errors {
        let message = error.to_string();
        if !messages.contains(&message) {
            messages.push(message);
        }
    }
    match messages.len() {
        0 => String::new(),
        1 => messages.swap_remove(0),
        _ => format!("[{}]", messages.join(", ")),
    }
}

/// The warning for a namespace that is exempt but asks for a policy (spec
/// §4.8), or `None` when its policy is fully privileged or equivalent to the
/// defaults. Modes are listed when not privileged and their level or version
/// label is present.
#[must_use]
pub fn exemption_warning(
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
    policy: Policy,
    defaults: Policy,
) -> Option<String> {
    if policy.is_fully_privileged() || policy.equivalent(&defaults) {
        return None;
    }
    let has = |key: &str| labels.is_some_and(|l| l.contains_key(key));
    let modes: Vec<String> = [
        (
            "enforce",
            policy.enforce,
            ENFORCE_LABEL,
            ENFORCE_VERSION_LABEL,
        ),
        ("audit", policy.audit, AUDIT_LABEL, AUDIT_VERSION_LABEL),
        ("warn", policy.warn, WARN_LABEL, WARN_VERSION_LABEL),
    ]
    .into_iter()
    .filter(|(_, lv, level_label, version_label)| {
        lv.level != Level::Privileged && (has(level_label) || has(version_label))
    })
    .map(|(mode, lv, _, _)| format!("{mode}={lv}"))
    .collect();
    Some(format!(
        "namespace {} is exempt from Pod Security, and the policy ({}) will be ignored",
        go_quote(namespace),
        modes.join(", ")
    ))
}

/// Whether a pod UPDATE must be re-evaluated (pod-security-admission
/// `isSignificantPodUpdate`): the number of containers or init containers
/// changed; a container or init container (compared by index) changed its
/// image or its per-container seccomp annotation
/// (`container.seccomp.security.alpha.kubernetes.io/<name>`); an ephemeral
/// container was added, or changed its image or that annotation. Everything
/// else, the rest of the metadata included, is not significant.
#[must_use]
pub fn is_significant_pod_update(old: &view::Pod<'_>, new: &view::Pod<'_>) -> bool {
    let (old_spec, new_spec) = (&old.spec, &new.spec);
    let old_init = old_spec.init_containers.as_deref().unwrap_or_default();
    let new_init = new_spec.init_containers.as_deref().unwrap_or_default();
    if new_spec.containers.len() != old_spec.containers.len() || new_init.len() != old_init.len() {
        return true;
    }
    let (old_notes, new_notes) = (
        old.metadata.annotations.as_ref(),
        new.metadata.annotations.as_ref(),
    );
    // Upstream compares the annotation named after the new container.
    let seccomp_changed = |name: &str| {
        let key = format!("{CONTAINER_ANNOTATION_PREFIX}{name}");
        old_notes.and_then(|a| a.get(&key)) != new_notes.and_then(|a| a.get(&key))
    };
    let changed = |n: &view::Container<'_>, o: &view::Container<'_>| {
        n.image != o.image || seccomp_changed(&n.name)
    };
    if new_spec
        .containers
        .iter()
        .zip(&old_spec.containers)
        .any(|(n, o)| changed(n, o))
        || new_init.iter().zip(old_init).any(|(n, o)| changed(n, o))
    {
        return true;
    }
    let old_ephemeral = old_spec.ephemeral_containers.as_deref().unwrap_or_default();
    new_spec
        .ephemeral_containers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|n| match old_ephemeral.iter().find(|o| o.name == n.name) {
            None => true,
            Some(o) => o.image != n.image || seccomp_changed(&n.name),
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lv(s: &str) -> LevelVersion {
        let (level, version) = s.split_once(':').expect("level:version");
        LevelVersion {
            level: level.parse().expect("level"),
            version: version.parse().expect("version"),
        }
    }

    fn policy(enforce: &str, audit: &str, warn: &str) -> Policy {
        Policy {
            enforce: lv(enforce),
            audit: lv(audit),
            warn: lv(warn),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Name, defaults, labels, expected policy, expected errors.
    type LabelCase = (
        &'static str,
        Policy,
        Vec<(&'static str, &'static str)>,
        Policy,
        Vec<String>,
    );

    #[test]
    #[expect(clippy::too_many_lines, reason = "a table of cases")]
    fn labels_over_defaults() {
        let defaults = policy("baseline:latest", "restricted:latest", "restricted:latest");
        let privileged = policy(
            "privileged:latest",
            "privileged:latest",
            "privileged:latest",
        );
        let level = "must be one of privileged, baseline, restricted";
        let version = "must be \"latest\" or \"v1.x\"";
        let cases: Vec<LabelCase> = vec![
            ("no labels", defaults, vec![], defaults, vec![]),
            (
                "other prefixes are ignored",
                defaults,
                vec![("pod-security.kubernetes.io/enforce", "privileged")],
                defaults,
                vec![],
            ),
            (
                "every label",
                defaults,
                vec![
                    (ENFORCE_LABEL, "privileged"),
                    (ENFORCE_VERSION_LABEL, "v1.20"),
                    (AUDIT_LABEL, "baseline"),
                    (AUDIT_VERSION_LABEL, "v1.99"),
                    (WARN_LABEL, "baseline"),
                    (WARN_VERSION_LABEL, "v1.0"),
                ],
                policy("privileged:v1.20", "baseline:v1.99", "baseline:v1.0"),
                vec![],
            ),
            (
                "invalid enforce fails closed and does not default warn",
                privileged,
                vec![(ENFORCE_LABEL, "Restricted")],
                policy(
                    "restricted:latest",
                    "privileged:latest",
                    "privileged:latest",
                ),
                vec![format!(
                    "metadata.labels[unroot.dev/enforce]: Invalid value: \"Restricted\": {level}"
                )],
            ),
            (
                "empty values are invalid; audit and warn fail open, versions latest",
                policy("baseline:v1.5", "baseline:v1.5", "baseline:v1.5"),
                vec![
                    (ENFORCE_LABEL, ""),
                    (ENFORCE_VERSION_LABEL, "v1.01"),
                    (AUDIT_LABEL, "x"),
                    (AUDIT_VERSION_LABEL, "1.25"),
                    (WARN_LABEL, " baseline"),
                    (WARN_VERSION_LABEL, "v1.25.0"),
                ],
                policy(
                    "restricted:latest",
                    "privileged:latest",
                    "privileged:latest",
                ),
                vec![
                    format!("metadata.labels[unroot.dev/enforce]: Invalid value: \"\": {level}"),
                    format!(
                        "metadata.labels[unroot.dev/enforce-version]: Invalid value: \"v1.01\": {version}"
                    ),
                    format!("metadata.labels[unroot.dev/audit]: Invalid value: \"x\": {level}"),
                    format!(
                        "metadata.labels[unroot.dev/audit-version]: Invalid value: \"1.25\": {version}"
                    ),
                    format!(
                        "metadata.labels[unroot.dev/warn]: Invalid value: \" baseline\": {level}"
                    ),
                    format!(
                        "metadata.labels[unroot.dev/warn-version]: Invalid value: \"v1.25.0\": {version}"
                    ),
                ],
            ),
            (
                "warn follows a stricter enforce with its version",
                privileged,
                vec![
                    (ENFORCE_LABEL, "baseline"),
                    (ENFORCE_VERSION_LABEL, "v1.25"),
                ],
                policy("baseline:v1.25", "privileged:latest", "baseline:v1.25"),
                vec![],
            ),
            (
                "warn follows enforce but keeps its own version label",
                privileged,
                vec![
                    (ENFORCE_LABEL, "restricted"),
                    (ENFORCE_VERSION_LABEL, "v1.25"),
                    (WARN_VERSION_LABEL, "v1.30"),
                ],
                policy("restricted:v1.25", "privileged:latest", "restricted:v1.30"),
                vec![],
            ),
            (
                "warn follows enforce with an invalid enforce version as latest",
                privileged,
                vec![(ENFORCE_LABEL, "baseline"), (ENFORCE_VERSION_LABEL, "bad")],
                policy("baseline:latest", "privileged:latest", "baseline:latest"),
                vec![format!(
                    "metadata.labels[unroot.dev/enforce-version]: Invalid value: \"bad\": {version}"
                )],
            ),
            (
                "warn not lowered to a less strict enforce",
                defaults,
                vec![(ENFORCE_LABEL, "baseline"), (ENFORCE_VERSION_LABEL, "v1.2")],
                policy("baseline:v1.2", "restricted:latest", "restricted:latest"),
                vec![],
            ),
            (
                "an invalid warn label still stops defaulting",
                privileged,
                vec![(ENFORCE_LABEL, "restricted"), (WARN_LABEL, "nope")],
                policy(
                    "restricted:latest",
                    "privileged:latest",
                    "privileged:latest",
                ),
                vec![format!(
                    "metadata.labels[unroot.dev/warn]: Invalid value: \"nope\": {level}"
                )],
            ),
            (
                "audit never follows enforce",
                privileged,
                vec![(ENFORCE_LABEL, "restricted")],
                policy(
                    "restricted:latest",
                    "privileged:latest",
                    "restricted:latest",
                ),
                vec![],
            ),
            (
                "values are Go-quoted",
                defaults,
                vec![(AUDIT_LABEL, "a\"\u{0}")],
                policy("baseline:latest", "privileged:latest", "restricted:latest"),
                vec![format!(
                    "metadata.labels[unroot.dev/audit]: Invalid value: \"a\\\"\\x00\": {level}"
                )],
            ),
        ];
        for (name, defaults, pairs, want_policy, want_errors) in cases {
            let labels = labels(&pairs);
            let (got, errors) = policy_from_labels(Some(&labels), defaults);
            assert_eq!(got, want_policy, "{name}");
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            assert_eq!(errors, want_errors, "{name}");
        }
        assert_eq!(policy_from_labels(None, defaults), (defaults, vec![]));
    }

    #[test]
    fn field_error_parts() {
        let error = LabelError {
            label: ENFORCE_LABEL,
            value: "x".to_owned(),
            error: Error::InvalidLevel,
        };
        assert_eq!(error.field(), "metadata.labels[unroot.dev/enforce]");
        assert_eq!(
            error.body(),
            "Invalid value: \"x\": must be one of privileged, baseline, restricted"
        );
    }

    #[test]
    fn aggregate_matches_upstream() {
        let error = |label, value: &str| LabelError {
            label,
            value: value.to_owned(),
            error: Error::InvalidLevel,
        };
        assert_eq!(aggregate_errors(&[]), "");
        assert_eq!(
            aggregate_errors(&[error(ENFORCE_LABEL, "x")]),
            "metadata.labels[unroot.dev/enforce]: Invalid value: \"x\": must be one of privileged, baseline, restricted"
        );
        assert_eq!(
            aggregate_errors(&[
                error(ENFORCE_LABEL, "x"),
                error(WARN_LABEL, "y"),
                error(ENFORCE_LABEL, "x"),
            ]),
            "[metadata.labels[unroot.dev/enforce]: Invalid value: \"x\": must be one of privileged, baseline, restricted, \
             metadata.labels[unroot.dev/warn]: Invalid value: \"y\": must be one of privileged, baseline, restricted]"
        );
    }

    #[test]
    fn exemption_warnings() {
        let defaults = policy("baseline:latest", "restricted:latest", "restricted:latest");
        let cases = [
            (
                "fully privileged",
                vec![(ENFORCE_LABEL, "privileged")],
                policy(
                    "privileged:latest",
                    "privileged:latest",
                    "privileged:latest",
                ),
                None,
            ),
            (
                "equivalent to defaults",
                vec![(ENFORCE_LABEL, "baseline")],
                defaults,
                None,
            ),
            (
                "modes with labels",
                vec![
                    (ENFORCE_LABEL, "restricted"),
                    (AUDIT_VERSION_LABEL, "v1.25"),
                ],
                policy("restricted:latest", "restricted:v1.25", "restricted:latest"),
                Some(
                    "namespace \"ns\" is exempt from Pod Security, and the policy (enforce=restricted:latest, audit=restricted:v1.25) will be ignored",
                ),
            ),
            (
                "no mode labelled",
                vec![(WARN_LABEL, "privileged")],
                policy("baseline:latest", "restricted:latest", "privileged:latest"),
                Some(
                    "namespace \"ns\" is exempt from Pod Security, and the policy () will be ignored",
                ),
            ),
        ];
        for (name, pairs, policy, want) in cases {
            let labels = labels(&pairs);
            assert_eq!(
                exemption_warning("ns", Some(&labels), policy, defaults).as_deref(),
                want,
                "{name}"
            );
        }
    }

    fn pod(spec: &serde_json::Value) -> view::Pod<'static> {
        view::decode_value(&json!({"metadata": {"name": "p"}, "spec": spec})).expect("pod")
    }

    #[test]
    #[allow(clippy::too_many_lines)] // one table, one row per update
    fn significant_pod_updates() {
        let base = json!({
            "initContainers": [{"name": "i", "image": "init:1"}],
            "containers": [{"name": "a", "image": "app:1"}, {"name": "b", "image": "side:1"}],
            "ephemeralContainers": [{"name": "e", "image": "debug:1"}],
        });
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut spec = base.clone();
            f(&mut spec);
            spec
        };
        let cases: Vec<(&str, serde_json::Value, bool)> = vec![
            ("unchanged", base.clone(), false),
            (
                "tolerations and resources",
                with(&|s| {
                    s["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
                    s["activeDeadlineSeconds"] = json!(10);
                    s["containers"][0]["resources"] = json!({"limits": {"cpu": "1"}});
                    s["containers"][0]["securityContext"] = json!({"privileged": true});
                }),
                false,
            ),
            (
                "ephemeral container removed",
                with(&|s| s["ephemeralContainers"] = json!([])),
                false,
            ),
            (
                "container image",
                with(&|s| s["containers"][1]["image"] = json!("side:2")),
                true,
            ),
            (
                "init container image",
                with(&|s| s["initContainers"][0]["image"] = json!("init:2")),
                true,
            ),
            (
                "container added",
                with(&|s| {
                    s["containers"]
                        .as_array_mut()
                        .expect("array")
                        .push(json!({"name": "c", "image": "x"}));
                }),
                true,
            ),
            (
                "init container removed",
                with(&|s| s["initContainers"] = json!([])),
                true,
            ),
            (
                "containers swapped by index",
                with(&|s| {
                    s["containers"] =
                        json!([{"name": "b", "image": "side:1"}, {"name": "a", "image": "app:1"}]);
                }),
                true,
            ),
            (
                "containers renamed, same images",
                with(&|s| {
                    s["containers"][0]["name"] = json!("z");
                }),
                false,
            ),
            (
                "ephemeral container added",
                with(&|s| {
                    s["ephemeralContainers"]
                        .as_array_mut()
                        .expect("array")
                        .push(json!({"name": "f", "image": "debug:1"}));
                }),
                true,
            ),
            (
                "ephemeral container image",
                with(&|s| s["ephemeralContainers"][0]["image"] = json!("debug:2")),
                true,
            ),
        ];
        let old = pod(&base);
        for (name, spec, want) in cases {
            assert_eq!(is_significant_pod_update(&old, &pod(&spec)), want, "{name}");
        }
    }

    /// Metadata is not significant, except a container's legacy seccomp
    /// annotation (upstream's `isSignificantContainerUpdate`).
    #[test]
    fn a_containers_seccomp_annotation_is_a_significant_update() {
        let old = pod(&json!({
            "initContainers": [{"name": "i", "image": "init:1"}],
            "containers": [{"name": "a", "image": "app:1"}],
            "ephemeralContainers": [{"name": "e", "image": "debug:1"}],
        }));
        let annotated = |pairs: &[(&str, &str)]| {
            let mut pod = old.clone();
            pod.metadata.annotations = Some(labels(pairs));
            pod
        };
        for (name, new, want) in [
            (
                "another annotation",
                annotated(&[("example.com/note", "x")]),
                false,
            ),
            (
                "the pod's seccomp annotation",
                annotated(&[("seccomp.security.alpha.kubernetes.io/pod", "unconfined")]),
                false,
            ),
            (
                "a container's seccomp annotation",
                annotated(&[(
                    "container.seccomp.security.alpha.kubernetes.io/a",
                    "unconfined",
                )]),
                true,
            ),
            (
                "an init container's seccomp annotation",
                annotated(&[(
                    "container.seccomp.security.alpha.kubernetes.io/i",
                    "unconfined",
                )]),
                true,
            ),
            (
                "an ephemeral container's seccomp annotation",
                annotated(&[(
                    "container.seccomp.security.alpha.kubernetes.io/e",
                    "unconfined",
                )]),
                true,
            ),
            (
                "the annotation of a container the pod does not have",
                annotated(&[(
                    "container.seccomp.security.alpha.kubernetes.io/z",
                    "unconfined",
                )]),
                false,
            ),
        ] {
            assert_eq!(is_significant_pod_update(&old, &new), want, "{name}");
            assert_eq!(
                is_significant_pod_update(&new, &old),
                want,
                "{name}, removed"
            );
        }
    }
}
