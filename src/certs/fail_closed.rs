//! Failing closed from the moment this install has served, and not before.
//!
//! The shipped configurations (`unroot`) hold every webhook failing open
//! (`failurePolicy: Ignore`), and their annotation [`FAIL_CLOSED_ANNOTATION`]
//! names the ones that fail closed once a replica has answered a review from
//! the API server. Next to each ships an empty configuration of the same
//! kind, [`twin_name`] (`unroot-fail-closed`). An install whose image cannot
//! be pulled, or whose replicas never become Ready, therefore blocks
//! nothing. The replica holding the certificate Lease ([`super::manage`]),
//! once every configuration holds the caBundle:
//!
//! 1. runs the serving check ([`check_serving`]): a dry run through the API
//!    server that only a replica answers, through the Service and with the
//!    caBundle in force, with a fresh nonce in the answer
//!    ([`crate::admission::serving_check`]); until it is answered it tries
//!    again, every 2 s at first and every 30 s at most;
//! 2. adds to the empty configuration a copy of each named webhook, same
//!    name, with `failurePolicy: Fail` ([`twin_of`]);
//! 3. then turns the failing-open original off with an `objectSelector` that
//!    matches nothing ([`disabled_selector`]), and records the time of the
//!    first answer in [`SERVED_ANNOTATION`] on the original configuration.
//!
//! All of it by server-side apply as field manager [`FIELD_MANAGER`], which
//! owns nothing else; fields the shipped manifests never set, so that
//! `kubectl apply -k` again (client-side, which sets every field it names
//! back to its own value) and `kubectl apply --server-side` leave it alone.
//! The copies follow their originals (rules, selectors, caBundle), and a
//! copy or an original someone changes is put back within seconds (the
//! configurations are watched). After a restart, or when one configuration
//! is re-created while another still records [`SERVED_ANNOTATION`], the
//! webhooks fail closed again at once. A webhook the annotation stops naming
//! (the observe overlay) gets its original back and loses its copy, original
//! first. Deleting every configuration (the recovery command) forgets that
//! the install has served.
//!
//! Each configuration also gets an owner reference to the Namespace unroot
//! runs in (field manager [`OWNER_MANAGER`]), so that deleting the namespace
//! lets the garbage collector delete the configurations: they cannot be left
//! behind failing closed with nothing to answer them. A cluster that refuses
//! the owner reference (the `OwnerReferencesPermissionEnforcement` admission
//! plugin asks for `delete` on the configuration, which unroot lacks) is
//! logged once; the rest goes on.

use std::fmt::Write as _;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::manage::Kind;
use super::{Error, Result};
use crate::admission::serving_check;

/// The field manager that owns `failurePolicy` of the fail-closed webhooks
/// and [`SERVED_ANNOTATION`].
pub const FIELD_MANAGER: &str = "unroot-served";
/// The field manager that owns the configurations' owner reference.
pub const OWNER_MANAGER: &str = "unroot-owner";
/// Annotation on a webhook configuration: the webhooks (comma-separated
/// names) that fail closed once this install has served. Absent or empty:
/// none.
pub const FAIL_CLOSED_ANNOTATION: &str = "unroot.dev/fail-closed";
/// Annotation unroot sets on every webhook configuration once a replica has
/// answered the serving check: the time of that first answer (RFC 3339).
pub const SERVED_ANNOTATION: &str = "unroot.dev/served";

/// The configuration that holds the failing-closed copies of the webhooks
/// of the configuration `name`.
#[must_use]
pub fn twin_name(name: &str) -> String {
    format!("{name}-fail-closed")
}

/// The label key of [`disabled_selector`].
pub const DISABLED_LABEL: &str = "unroot.dev/fails-closed-elsewhere";

/// An `objectSelector` that matches no object: a label that both exists and
/// does not. It turns off a failing-open original whose failing-closed copy
/// is in force.
#[must_use]
pub fn disabled_selector() -> Value {
    json!({"matchExpressions": [
        {"key": DISABLED_LABEL, "operator": "Exists"},
        {"key": DISABLED_LABEL, "operator": "DoesNotExist"},
    ]})
}

/// What this module reads of one webhook configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Each webhook, as stored.
    pub webhooks: Vec<Value>,
    /// The webhooks [`FAIL_CLOSED_ANNOTATION`] names that exist here.
    pub fail_closed: Vec<String>,
    /// [`SERVED_ANNOTATION`], when set.
    pub served: Option<String>,
    /// The uids of its owners.
    pub owners: Vec<String>,
}

impl State {
    /// Reads `meta` and the webhooks (any serializable webhook type).
    #[must_use]
    pub fn of<'a, W: serde::Serialize + 'a>(
        meta: &ObjectMeta,
        webhooks: impl Iterator<Item = &'a W>,
    ) -> Self {
        let webhooks: Vec<Value> = webhooks
            .filter_map(|w| serde_json::to_value(w).ok())
            .collect();
        let annotations = meta.annotations.clone().unwrap_or_default();
        let fail_closed = annotations
            .get(FAIL_CLOSED_ANNOTATION)
            .map(|list| fail_closed_names(list))
            .unwrap_or_default()
            .into_iter()
            .filter(|n| webhooks.iter().any(|w| w["name"] == n.as_str()))
            .collect();
        Self {
            webhooks,
            fail_closed,
            served: annotations.get(SERVED_ANNOTATION).cloned(),
            owners: meta
                .owner_references
                .iter()
                .flatten()
                .map(|o| o.uid.clone())
                .collect(),
        }
    }

    /// The webhook `name`, as stored.
    #[must_use]
    pub fn webhook(&self, name: &str) -> Option<&Value> {
        self.webhooks.iter().find(|w| w["name"] == name)
    }

    /// Whether the webhook `name` is turned off by [`disabled_selector`].
    #[must_use]
    pub fn is_disabled(&self, name: &str) -> bool {
        self.webhook(name)
            .is_some_and(|w| w["objectSelector"] == disabled_selector())
    }

    /// Whether the object with `uid` is one of its owners.
    #[must_use]
    pub fn is_owned_by(&self, uid: &str) -> bool {
        self.owners.iter().any(|o| o == uid)
    }
}

/// The failing-closed copy of the stored webhook `original`: the same
/// webhook, failing closed, matching every object its original would.
#[must_use]
pub fn twin_of(original: &Value) -> Value {
    let mut twin = original.clone();
    twin["failurePolicy"] = json!("Fail");
    twin["objectSelector"] = json!({});
    twin
}

/// The names in a [`FAIL_CLOSED_ANNOTATION`] value: comma-separated,
/// blanks around them ignored.
#[must_use]
pub fn fail_closed_names(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The server-side apply body that puts exactly `twins` (whole webhooks) in
/// the configuration `kind`/`name` as far as [`FIELD_MANAGER`] goes: copies
/// it wrote before and no longer names are removed.
#[must_use]
pub fn twins_body(kind: Kind, name: &str, twins: &[Value]) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind.to_string(),
        "metadata": {"name": name},
        "webhooks": twins,
    })
}

/// The server-side apply body that turns the webhooks `disabled` off and
/// records `served` in the configuration `kind`/`name`, and names nothing
/// else (with `served` absent and nothing disabled, it gives back all it
/// took).
#[must_use]
pub fn originals_body(kind: Kind, name: &str, disabled: &[String], served: Option<&str>) -> Value {
    let mut metadata = json!({"name": name});
    if let Some(served) = served {
        metadata["annotations"] = json!({SERVED_ANNOTATION: served});
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind.to_string(),
        "metadata": metadata,
        "webhooks": disabled
            .iter()
            .map(|w| json!({"name": w, "objectSelector": disabled_selector()}))
            .collect::<Vec<_>>(),
    })
}

/// The server-side apply body that makes the Namespace `namespace` (with
/// `uid`) the owner of the configuration `kind`/`name`.
#[must_use]
pub fn owner_body(kind: Kind, name: &str, namespace: &str, uid: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind.to_string(),
        "metadata": {
            "name": name,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Namespace", "name": namespace, "uid": uid}
            ],
        },
    })
}

/// Reads the configuration `kind`/`name` (`None`: it does not exist).
pub async fn read(client: &kube::Client, kind: Kind, name: &str) -> Result<Option<State>> {
    let failed = |source| Error::Kube {
        action: format!("read {kind} {name}"),
        source,
    };
    match kind {
        Kind::Mutating => Api::<MutatingWebhookConfiguration>::all(client.clone())
            .get_opt(name)
            .await
            .map(|c| c.map(|c| State::of(&c.metadata, c.webhooks.iter().flatten())))
            .map_err(failed),
        Kind::Validating => Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .get_opt(name)
            .await
            .map(|c| c.map(|c| State::of(&c.metadata, c.webhooks.iter().flatten())))
            .map_err(failed),
    }
}

/// Brings the failing-closed copies in the twin of `kind`/`name` up to
/// date with their originals (the caBundle above all), keeping the same
/// copies: what `unroot certs rotate` does after writing a caBundle while no
/// replica runs. Returns how many copies it wrote.
pub async fn sync_twins(client: &kube::Client, kind: Kind, name: &str) -> Result<usize> {
    let twin = twin_name(name);
    let (Some(original), Some(twins)) = (
        read(client, kind, name).await?,
        read(client, kind, &twin).await?,
    ) else {
        return Ok(0);
    };
    let desired: Vec<Value> = twins
        .webhooks
        .iter()
        .filter_map(|t| t["name"].as_str())
        .filter_map(|n| original.webhook(n).map(twin_of))
        .collect();
    if desired
        .iter()
        .all(|d| d["name"].as_str().and_then(|n| twins.webhook(n)) == Some(d))
    {
        return Ok(0);
    }
    let body = twins_body(kind, &twin, &desired);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let failed = |source| Error::Kube {
        action: format!("apply the failing-closed webhooks to {kind} {twin}"),
        source,
    };
    match kind {
        Kind::Mutating => Api::<MutatingWebhookConfiguration>::all(client.clone())
            .patch(&twin, &params, &Patch::Apply(&body))
            .await
            .map(drop)
            .map_err(failed)?,
        Kind::Validating => Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .patch(&twin, &params, &Patch::Apply(&body))
            .await
            .map(drop)
            .map_err(failed)?,
    }
    Ok(desired.len())
}

/// A fresh nonce for the serving check: 128 random bits in hex.
fn nonce() -> Result<String> {
    let mut bytes = [0_u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| Error::Invalid("failed to draw a nonce for the serving check".to_owned()))?;
    Ok(bytes.iter().fold(String::with_capacity(32), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    }))
}

/// How a serving check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A replica answered it through the API server.
    Answered,
    /// The dry run went through unanswered: no replica was reached (or the
    /// webhook [`serving_check::WEBHOOK`] is missing), and the webhook
    /// failed open.
    Unanswered,
}

/// Runs the serving check against the Lease `namespace`/`lease`: a
/// server-side dry run of a patch that labels it with a fresh nonce (RBAC:
/// `patch` on that Lease, which the Lease holder has anyway).
pub async fn check_serving(client: &kube::Client, namespace: &str, lease: &str) -> Result<Check> {
    let nonce = nonce()?;
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams {
        dry_run: true,
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let patch = json!({"metadata": {"labels": {serving_check::LABEL: nonce}}});
    match api.patch(lease, &params, &Patch::Merge(&patch)).await {
        Ok(_) => Ok(Check::Unanswered),
        Err(kube::Error::Api(status)) if serving_check::answered(&status.message, &nonce) => {
            Ok(Check::Answered)
        }
        Err(source) => Err(Error::Kube {
            action: format!("run the serving check (a dry run on Lease {namespace}/{lease})"),
            source,
        }),
    }
}

/// The uid of the Namespace `namespace`.
pub async fn namespace_uid(client: &kube::Client, namespace: &str) -> Result<String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let found = api.get(namespace).await.map_err(|source| Error::Kube {
        action: format!("read Namespace {namespace}"),
        source,
    })?;
    found
        .metadata
        .uid
        .ok_or_else(|| Error::Invalid(format!("Namespace {namespace} has no uid")))
}

/// The time of the first answer, as [`SERVED_ANNOTATION`] holds it.
#[must_use]
pub fn served_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// The [`SERVED_ANNOTATION`] any of `states` carries (the earliest), if any.
pub fn served_of<'a>(states: impl Iterator<Item = &'a State>) -> Option<String> {
    states.filter_map(|s| s.served.clone()).min()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn state(annotations: &[(&str, &str)], hooks: &[Value]) -> State {
        let meta = ObjectMeta {
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            owner_references: Some(vec![OwnerReference {
                uid: "ns-uid".to_owned(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        };
        State::of(&meta, hooks.iter())
    }

    #[test]
    fn the_annotation_names_the_existing_webhooks_that_fail_closed() {
        let s = state(
            &[(
                FAIL_CLOSED_ANNOTATION,
                " a.unroot.dev, gone.unroot.dev,,b.unroot.dev ",
            )],
            &[
                json!({"name": "a.unroot.dev"}),
                json!({"name": "b.unroot.dev"}),
                json!({"name": "c.unroot.dev"}),
            ],
        );
        assert_eq!(s.fail_closed, ["a.unroot.dev", "b.unroot.dev"]);
        assert!(s.is_owned_by("ns-uid") && !s.is_owned_by("other"));
        let none = state(&[], &[json!({"name": "a.unroot.dev"})]);
        assert!(none.fail_closed.is_empty(), "no annotation: none");
    }

    #[test]
    fn a_copy_fails_closed_where_its_original_applies_and_the_original_is_turned_off() {
        let original = json!({"name": "a.unroot.dev", "failurePolicy": "Ignore",
            "objectSelector": disabled_selector(), "rules": [{"resources": ["pods"]}],
            "clientConfig": {"caBundle": "Q0E="}});
        let twin = twin_of(&original);
        assert_eq!(
            twin,
            json!({"name": "a.unroot.dev", "failurePolicy": "Fail", "objectSelector": {},
                "rules": [{"resources": ["pods"]}], "clientConfig": {"caBundle": "Q0E="}})
        );
        let s = state(&[], &[original]);
        assert!(s.is_disabled("a.unroot.dev"));
        assert!(!s.is_disabled("b.unroot.dev"), "no such webhook");
        // The selector matches no set of labels: one requirement is the
        // negation of the other.
        let m = &disabled_selector()["matchExpressions"];
        assert_eq!(
            (&m[0]["key"], &m[1]["key"]),
            (&json!(DISABLED_LABEL), &json!(DISABLED_LABEL))
        );
        assert_eq!(
            (&m[0]["operator"], &m[1]["operator"]),
            (&json!("Exists"), &json!("DoesNotExist"))
        );
        assert_eq!(twin_name("unroot"), "unroot-fail-closed");
    }

    #[test]
    fn the_bodies_name_only_their_fields() {
        assert_eq!(
            originals_body(
                Kind::Validating,
                "unroot",
                &["a.unroot.dev".to_owned()],
                Some("T")
            ),
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "unroot", "annotations": {SERVED_ANNOTATION: "T"}},
                "webhooks": [{"name": "a.unroot.dev", "objectSelector": disabled_selector()}],
            })
        );
        assert_eq!(
            originals_body(Kind::Mutating, "unroot", &[], None),
            json!({"apiVersion": "admissionregistration.k8s.io/v1",
                   "kind": "MutatingWebhookConfiguration", "metadata": {"name": "unroot"}, "webhooks": []}),
            "giving everything back"
        );
        assert_eq!(
            owner_body(Kind::Mutating, "unroot", "unroot", "U")["metadata"]["ownerReferences"],
            json!([{"apiVersion": "v1", "kind": "Namespace", "name": "unroot", "uid": "U"}])
        );
    }

    #[test]
    fn nonces_are_fresh_label_values() {
        let (a, b) = (nonce().unwrap(), nonce().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
