//! What unroot refuses in a pod beyond Pod Security: root, unless an
//! administrator allowed it in the namespace, and the ids that belong to
//! provisioned identities, unless the pod holds that identity.
//!
//! Pure: [`find`] reads the pod spec that `/validate` evaluates (after every
//! mutating webhook ran) and returns what it found; the caller turns it into
//! a denial, or into warnings where the namespace only warns.
//!
//! | rule | fields | unless |
//! |---|---|---|
//! | root | `runAsUser: 0`, `runAsNonRoot: false` in the pod's or any container's `securityContext` (init and ephemeral containers included) | the namespace's hardening mode is `warn` (warned) or `off`, or [`Document::root_allowed`] |
//! | reserved ids | `runAsUser` in `provisioning.uidRange`; `runAsGroup`, `fsGroup`, `supplementalGroups` in `provisioning.gidRange`, at pod and container level | provisioning is disabled, or the id is the pod's vouched identity's (its uid; its gid or one of its groups) |
//!
//! The provisioning init container that is exactly the one unroot injects
//! (by provenance) runs as uid 0 on purpose, and is skipped by both rules.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSecurityContext, SecurityContext};

use crate::mutate::Identity;
use crate::policy::{ALLOW_ROOT_LABEL, Document, HARDEN_LABEL, HardenMode};
use crate::pss::go_quote;
use crate::view::{Pod, Spec};

/// What [`find`] found in a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// Each explicit request for root, e.g. `container "app" sets
    /// securityContext.runAsUser=0`.
    pub root: Vec<String>,
    /// Each reserved id the pod takes without holding it.
    pub reserved_ids: Vec<String>,
}

impl Found {
    /// Whether nothing was found.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.root.is_empty() && self.reserved_ids.is_empty()
    }
}

/// Where a securityContext is: the pod, or a container of one of its lists.
struct Place<'a> {
    /// `pod` or `container "app"` (`init container`, `ephemeral container`).
    display: String,
    context: Option<&'a SecurityContext>,
}

/// Every explicit root request and reserved id in `spec`, the init container
/// at `skip` (unroot's own provisioning init container) aside.
#[must_use]
pub fn find(
    pod: &Pod<'_>,
    skip: Option<usize>,
    identity: Option<&Identity>,
    policy: &Document,
) -> Found {
    let spec = &pod.spec;
    let mut found = Found::default();
    let pod = spec.security_context.as_ref();
    let places = places(spec, skip);
    if pod.and_then(|p| p.run_as_user) == Some(0) {
        found
            .root
            .push("pod sets securityContext.runAsUser=0".to_owned());
    }
    if pod.and_then(|p| p.run_as_non_root) == Some(false) {
        found
            .root
            .push("pod sets securityContext.runAsNonRoot=false".to_owned());
    }
    for place in &places {
        let Some(c) = place.context else { continue };
        if c.run_as_user == Some(0) {
            found.root.push(format!(
                "{} sets securityContext.runAsUser=0",
                place.display
            ));
        }
        if c.run_as_non_root == Some(false) {
            found.root.push(format!(
                "{} sets securityContext.runAsNonRoot=false",
                place.display
            ));
        }
    }
    if policy.provisioning.enabled {
        found.reserved_ids = reserved_ids(pod, &places, identity, policy);
    }
    found
}

fn places<'s>(spec: &'s Spec<'_>, skip: Option<usize>) -> Vec<Place<'s>> {
    let named = |kind: &str, name: &str| format!("{kind} {}", go_quote(name));
    let mut places: Vec<Place<'_>> = spec
        .containers
        .iter()
        .map(|c| Place {
            display: named("container", &c.name),
            context: c.security_context.as_deref(),
        })
        .collect();
    places.extend(
        spec.init_containers
            .iter()
            .flatten()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(_, c)| Place {
                display: named("init container", &c.name),
                context: c.security_context.as_deref(),
            }),
    );
    places.extend(spec.ephemeral_containers.iter().flatten().map(|c| Place {
        display: named("ephemeral container", &c.name),
        context: c.security_context.as_deref(),
    }));
    places
}

fn reserved_ids(
    pod: Option<&PodSecurityContext>,
    places: &[Place<'_>],
    identity: Option<&Identity>,
    policy: &Document,
) -> Vec<String> {
    let p = &policy.provisioning;
    let holds_user = |id: i64| identity.is_some_and(|i| i.uid == id);
    let holds_group =
        |id: i64| identity.is_some_and(|i| i.gid == id || i.groups.iter().any(|(_, g)| *g == id));
    let mut lines = Vec::new();
    let mut check = |display: &str, field: &str, id: i64, group: bool| {
        let (range, range_field, own) = if group {
            (p.gid_range, "provisioning.gidRange", holds_group(id))
        } else {
            (p.uid_range, "provisioning.uidRange", holds_user(id))
        };
        if range.contains(id) && !own {
            lines.push(format!(
                "{display} sets securityContext.{field}={id}, inside {range_field} ({}-{})",
                range.min, range.max
            ));
        }
    };
    if let Some(pod) = pod {
        let ids = [
            ("runAsUser", pod.run_as_user, false),
            ("runAsGroup", pod.run_as_group, true),
            ("fsGroup", pod.fs_group, true),
        ];
        for (field, id, group) in ids {
            if let Some(id) = id {
                check("pod", field, id, group);
            }
        }
        for (i, id) in pod.supplemental_groups.iter().flatten().enumerate() {
            check("pod", &format!("supplementalGroups[{i}]"), *id, true);
        }
    }
    for place in places {
        let Some(c) = place.context else { continue };
        for (field, id, group) in [
            ("runAsUser", c.run_as_user, false),
            ("runAsGroup", c.run_as_group, true),
        ] {
            if let Some(id) = id {
                check(&place.display, field, id, group);
            }
        }
    }
    lines
}

/// How the root rule applies in a namespace with `labels`: refused where
/// the namespace is hardened, warned about where it only warns, ignored
/// where hardening is off or an administrator allowed root.
#[must_use]
pub fn root_mode(policy: &Document, labels: &BTreeMap<String, String>) -> HardenMode {
    if policy.root_allowed(labels) {
        return HardenMode::Off;
    }
    policy.harden_mode(labels)
}

/// The reason a pod is refused for root, for its deny message.
#[must_use]
pub fn root_reason(namespace: &str, lines: &[String]) -> String {
    format!(
        "unroot refuses root in namespace {}: {} (a namespaceLabelAdmin may allow it there with the namespace label {ALLOW_ROOT_LABEL}=true, or a securityContext.namespaceOverrides entry with allowRoot: true)",
        go_quote(namespace),
        lines.join(", ")
    )
}

/// The warning for root in a namespace that only warns.
#[must_use]
pub fn root_warning(namespace: &str, lines: &[String]) -> String {
    format!(
        "unroot would refuse root in namespace {} once it is hardened ({HARDEN_LABEL}=on): {}",
        go_quote(namespace),
        lines.join(", ")
    )
}

/// The reason a pod is refused for ids reserved to provisioned identities.
#[must_use]
pub fn reserved_ids_reason(lines: &[String]) -> String {
    format!(
        "ids in provisioning.uidRange and provisioning.gidRange belong to provisioned identities, and the pod holds none of these: {}",
        lines.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::policy::Document;

    fn spec(value: &Value) -> Pod<'static> {
        crate::view::decode_value(&json!({"spec": value})).expect("a pod spec")
    }

    fn provisioning_on() -> Document {
        let mut policy = Document::embedded();
        policy.provisioning.enabled = true;
        policy
    }

    fn alice() -> Identity {
        Identity {
            user: "alice".to_owned(),
            uid: 10001,
            gid: 10001,
            primary_group: "alice".to_owned(),
            groups: vec![("research".to_owned(), 20001)],
            home: "/home/alice".to_owned(),
        }
    }

    #[test]
    fn explicit_root_is_found_in_every_container_kind() {
        let cases = [
            (
                json!({"securityContext": {"runAsUser": 0}, "containers": [{"name": "a"}]}),
                vec!["pod sets securityContext.runAsUser=0"],
            ),
            (
                json!({"securityContext": {"runAsNonRoot": false}, "containers": [{"name": "a"}]}),
                vec!["pod sets securityContext.runAsNonRoot=false"],
            ),
            (
                json!({"containers": [{"name": "a", "securityContext": {"runAsUser": 0}}]}),
                vec![r#"container "a" sets securityContext.runAsUser=0"#],
            ),
            (
                json!({"containers": [{"name": "a"}], "initContainers": [{"name": "i", "securityContext": {"runAsNonRoot": false}}]}),
                vec![r#"init container "i" sets securityContext.runAsNonRoot=false"#],
            ),
            (
                json!({"containers": [{"name": "a"}], "ephemeralContainers": [{"name": "e", "securityContext": {"runAsUser": 0}}]}),
                vec![r#"ephemeral container "e" sets securityContext.runAsUser=0"#],
            ),
            // Not explicit root: unset, or a non-zero uid.
            (
                json!({"containers": [{"name": "a", "securityContext": {"runAsUser": 1000, "runAsNonRoot": true}}]}),
                vec![],
            ),
        ];
        let policy = Document::embedded();
        for (spec_json, want) in cases {
            let found = find(&spec(&spec_json), None, None, &policy);
            assert_eq!(found.root, want, "{spec_json}");
        }
    }

    #[test]
    fn the_provisioning_init_container_is_skipped_by_provenance() {
        let s = spec(&json!({"containers": [{"name": "a"}], "initContainers": [
            {"name": "other", "securityContext": {"runAsUser": 0}},
            {"name": "unroot-provision", "securityContext": {"runAsUser": 0, "runAsNonRoot": false}}]}));
        let found = find(&s, Some(1), None, &Document::embedded());
        assert_eq!(
            found.root,
            vec![r#"init container "other" sets securityContext.runAsUser=0"#]
        );
    }

    #[test]
    fn reserved_ids_are_refused_unless_the_pod_holds_the_identity() {
        let policy = provisioning_on();
        let taken = spec(&json!({
            "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 20001, "supplementalGroups": [1000, 20001]},
            "containers": [{"name": "a", "securityContext": {"runAsUser": 10002, "runAsGroup": 1000}}]}));
        let found = find(&taken, None, None, &policy);
        assert_eq!(
            found.reserved_ids,
            vec![
                "pod sets securityContext.runAsUser=10001, inside provisioning.uidRange (10000-60000)",
                "pod sets securityContext.runAsGroup=10001, inside provisioning.gidRange (10000-60000)",
                "pod sets securityContext.fsGroup=20001, inside provisioning.gidRange (10000-60000)",
                "pod sets securityContext.supplementalGroups[1]=20001, inside provisioning.gidRange (10000-60000)",
                r#"container "a" sets securityContext.runAsUser=10002, inside provisioning.uidRange (10000-60000)"#,
            ]
        );
        // Alice's own pod may use her uid, gid and groups, not Bob's uid.
        let found = find(&taken, None, Some(&alice()), &policy);
        assert_eq!(
            found.reserved_ids,
            vec![
                r#"container "a" sets securityContext.runAsUser=10002, inside provisioning.uidRange (10000-60000)"#
            ]
        );
        // Without provisioning, ids are nobody's.
        assert!(
            find(&taken, None, None, &Document::embedded())
                .reserved_ids
                .is_empty()
        );
    }

    #[test]
    fn root_is_refused_where_hardened_unless_an_admin_allowed_it() {
        let mut policy = Document::embedded();
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(root_mode(&policy, &labels(&[])), HardenMode::On);
        assert_eq!(
            root_mode(&policy, &labels(&[(HARDEN_LABEL, "warn")])),
            HardenMode::Warn
        );
        assert_eq!(
            root_mode(&policy, &labels(&[(HARDEN_LABEL, "off")])),
            HardenMode::Off
        );
        assert_eq!(
            root_mode(&policy, &labels(&[(ALLOW_ROOT_LABEL, "true")])),
            HardenMode::Off
        );
        assert_eq!(
            root_mode(&policy, &labels(&[(ALLOW_ROOT_LABEL, "yes")])),
            HardenMode::On
        );
        policy.security_context.namespace_overrides = vec![
            serde_json::from_value(json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "legacy"}},
            "allowRoot": true}))
            .expect("an override"),
        ];
        assert_eq!(
            root_mode(
                &policy,
                &labels(&[("kubernetes.io/metadata.name", "legacy")])
            ),
            HardenMode::Off
        );
        assert_eq!(
            root_mode(
                &policy,
                &labels(&[("kubernetes.io/metadata.name", "other")])
            ),
            HardenMode::On
        );
    }
}
