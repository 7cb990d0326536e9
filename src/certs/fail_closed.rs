//! Failing closed from the moment this install has served, and not before.
//!
//! The shipped webhook configurations fail open (`failurePolicy: Ignore`)
//! and name, in the annotation [`FAIL_CLOSED_ANNOTATION`], the webhooks that
//! fail closed once a replica has answered a review from the API server. An
//! install whose image cannot be pulled, or whose replicas never become
//! Ready, therefore blocks nothing. The replica holding the certificate
//! Lease ([`super::manage`]), once every configuration holds the caBundle:
//!
//! 1. runs the serving check ([`check_serving`]): a dry run through the API
//!    server that only a replica answers, through the Service and with the
//!    caBundle in force, with a fresh nonce in the answer
//!    ([`crate::admission::serving_check`]); until it is answered it tries
//!    again, every 2 s at first and every 30 s at most;
//! 2. server-side-applies, as field manager [`FIELD_MANAGER`] (which owns
//!    nothing else), `failurePolicy: Fail` to the webhooks the annotation
//!    names and the annotation [`SERVED_ANNOTATION`] with the time of the
//!    first answer, to every configuration.
//!
//! From then on [`SERVED_ANNOTATION`] says the install has served: after a
//! restart, or when one configuration is re-created while another still
//! carries it, the Lease holder applies `Fail` again at once, and it puts the
//! field back within seconds when someone sets another value (the
//! configurations are watched). It never lowers a webhook to `Ignore`.
//! Deleting every configuration (the recovery command) forgets it: a
//! re-applied install fails open until it has served again.
//!
//! Each configuration also gets an owner reference to the Namespace unroot
//! runs in (field manager [`OWNER_MANAGER`]), so that deleting the namespace
//! lets the garbage collector delete the configurations: they cannot be left
//! behind failing closed with nothing to answer them. A cluster that refuses
//! the owner reference (the `OwnerReferencesPermissionEnforcement` admission
//! plugin asks for `delete` on the configuration, which unroot lacks) is
//! logged once; the rest goes on.

use std::fmt::Write as _;

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

/// What this module reads of one webhook configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Each webhook's name and `failurePolicy`, in order.
    pub failure_policies: Vec<(String, Option<String>)>,
    /// The webhooks [`FAIL_CLOSED_ANNOTATION`] names that exist here.
    pub fail_closed: Vec<String>,
    /// [`SERVED_ANNOTATION`], when set.
    pub served: Option<String>,
    /// The uids of its owners.
    pub owners: Vec<String>,
}

impl State {
    /// Reads `meta` and the webhooks' `(name, failurePolicy)`.
    #[must_use]
    pub fn of<'a>(
        meta: &ObjectMeta,
        webhooks: impl Iterator<Item = (&'a String, Option<&'a String>)>,
    ) -> Self {
        let failure_policies: Vec<(String, Option<String>)> = webhooks
            .map(|(name, policy)| (name.clone(), policy.cloned()))
            .collect();
        let annotations = meta.annotations.clone().unwrap_or_default();
        let fail_closed = annotations
            .get(FAIL_CLOSED_ANNOTATION)
            .map(|list| fail_closed_names(list))
            .unwrap_or_default()
            .into_iter()
            .filter(|n| failure_policies.iter().any(|(w, _)| w == n))
            .collect();
        Self {
            failure_policies,
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

    /// Whether this configuration already fails closed as an install that
    /// served at `served` must: every webhook named fails closed, and the
    /// annotation says when.
    #[must_use]
    pub fn is_armed(&self, served: &str) -> bool {
        self.served.as_deref() == Some(served)
            && self.fail_closed.iter().all(|name| {
                self.failure_policies
                    .iter()
                    .any(|(w, p)| w == name && p.as_deref() == Some("Fail"))
            })
    }

    /// Whether the object with `uid` is one of its owners.
    #[must_use]
    pub fn is_owned_by(&self, uid: &str) -> bool {
        self.owners.iter().any(|o| o == uid)
    }
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

/// The server-side apply body that makes `webhooks` fail closed and records
/// `served` in the configuration `kind`/`name`, and names nothing else.
#[must_use]
pub fn arm_body(kind: Kind, name: &str, webhooks: &[String], served: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind.to_string(),
        "metadata": {"name": name, "annotations": {SERVED_ANNOTATION: served}},
        "webhooks": webhooks
            .iter()
            .map(|w| json!({"name": w, "failurePolicy": "Fail"}))
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

    fn state(annotations: &[(&str, &str)], hooks: &[(&str, Option<&str>)]) -> State {
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
        let hooks: Vec<(String, Option<String>)> = hooks
            .iter()
            .map(|(n, p)| ((*n).to_owned(), p.map(str::to_owned)))
            .collect();
        State::of(&meta, hooks.iter().map(|(n, p)| (n, p.as_ref())))
    }

    #[test]
    fn the_annotation_names_the_existing_webhooks_that_fail_closed() {
        let s = state(
            &[(
                FAIL_CLOSED_ANNOTATION,
                " a.unroot.dev, gone.unroot.dev,,b.unroot.dev ",
            )],
            &[
                ("a.unroot.dev", Some("Ignore")),
                ("b.unroot.dev", Some("Ignore")),
                ("c.unroot.dev", Some("Ignore")),
            ],
        );
        assert_eq!(s.fail_closed, ["a.unroot.dev", "b.unroot.dev"]);
        assert!(s.is_owned_by("ns-uid") && !s.is_owned_by("other"));
        let none = state(&[], &[("a.unroot.dev", Some("Ignore"))]);
        assert!(none.fail_closed.is_empty(), "no annotation: none");
    }

    #[test]
    fn armed_means_the_time_recorded_and_every_named_webhook_failing_closed() {
        let at = "2026-12-08T10:00:00Z";
        let hooks = [
            ("a.unroot.dev", Some("Fail")),
            ("c.unroot.dev", Some("Ignore")),
        ];
        let armed = state(
            &[
                (FAIL_CLOSED_ANNOTATION, "a.unroot.dev"),
                (SERVED_ANNOTATION, at),
            ],
            &hooks,
        );
        assert!(armed.is_armed(at), "c is not named: its Ignore stays");
        assert!(!armed.is_armed("2026-12-09T10:00:00Z"), "another time");
        let unrecorded = state(&[(FAIL_CLOSED_ANNOTATION, "a.unroot.dev")], &hooks);
        assert!(!unrecorded.is_armed(at));
        let reopened = state(
            &[
                (FAIL_CLOSED_ANNOTATION, "a.unroot.dev,c.unroot.dev"),
                (SERVED_ANNOTATION, at),
            ],
            &hooks,
        );
        assert!(!reopened.is_armed(at), "c is named and fails open");
    }

    #[test]
    fn the_bodies_name_only_their_fields() {
        assert_eq!(
            arm_body(
                Kind::Validating,
                "unroot",
                &["a.unroot.dev".to_owned()],
                "T"
            ),
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "unroot", "annotations": {SERVED_ANNOTATION: "T"}},
                "webhooks": [{"name": "a.unroot.dev", "failurePolicy": "Fail"}],
            })
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
