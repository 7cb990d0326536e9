//! The webhook configurations as the task reads and writes them: their
//! webhooks' caBundles, the server-side apply body that sets only those,
//! and the apply itself.

use std::fmt;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::FIELD_MANAGER;
use crate::certs::fail_closed;
use crate::certs::{Error, Result};

/// Which kind of webhook configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// MutatingWebhookConfiguration.
    Mutating,
    /// ValidatingWebhookConfiguration.
    Validating,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mutating => "MutatingWebhookConfiguration",
            Self::Validating => "ValidatingWebhookConfiguration",
        })
    }
}

/// The webhooks of one configuration and their caBundles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Webhooks(pub Vec<(String, Option<Vec<u8>>)>);

impl Webhooks {
    fn of<'a>(webhooks: impl Iterator<Item = (&'a String, &'a WebhookClientConfig)>) -> Self {
        Self(
            webhooks
                .map(|(name, client)| (name.clone(), client.ca_bundle.clone().map(|b| b.0)))
                .collect(),
        )
    }

    /// Whether every webhook carries exactly `bundle`.
    #[must_use]
    pub fn hold(&self, bundle: &str) -> bool {
        self.0
            .iter()
            .all(|(_, b)| b.as_deref() == Some(bundle.as_bytes()))
    }
}

/// One webhook configuration as the task reads it: the caBundles, and what
/// failing closed reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Live {
    pub(super) webhooks: Webhooks,
    pub(super) state: fail_closed::State,
}

impl Live {
    pub(super) fn of_mutating(config: &MutatingWebhookConfiguration) -> Self {
        let hooks = config.webhooks.iter().flatten();
        Self {
            webhooks: Webhooks::of(hooks.clone().map(|w| (&w.name, &w.client_config))),
            state: fail_closed::State::of(&config.metadata, hooks),
        }
    }

    pub(super) fn of_validating(config: &ValidatingWebhookConfiguration) -> Self {
        let hooks = config.webhooks.iter().flatten();
        Self {
            webhooks: Webhooks::of(hooks.clone().map(|w| (&w.name, &w.client_config))),
            state: fail_closed::State::of(&config.metadata, hooks),
        }
    }
}

/// The server-side apply body that sets `caBundle` of `webhooks` (and
/// nothing else) in the configuration `kind`/`name`.
#[must_use]
pub fn apply_body(kind: Kind, name: &str, webhooks: &[String], bundle: &str) -> serde_json::Value {
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(bundle);
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind.to_string(),
        "metadata": {"name": name},
        "webhooks": webhooks
            .iter()
            .map(|w| json!({"name": w, "clientConfig": {"caBundle": ca_bundle}}))
            .collect::<Vec<_>>(),
    })
}

/// Server-side-applies `body` (`what` it sets, for the error) to the
/// configuration `kind`/`name` as field manager `manager`, forced: those
/// fields are unroot's. Returns the configuration as stored.
pub(super) async fn apply_as(
    client: &kube::Client,
    kind: Kind,
    name: &str,
    body: &serde_json::Value,
    manager: &str,
    what: &str,
) -> Result<Live> {
    let params = PatchParams::apply(manager).force();
    let failed = |source| Error::Kube {
        action: format!("apply {what} to {kind} {name}"),
        source,
    };
    match kind {
        Kind::Mutating => Api::<MutatingWebhookConfiguration>::all(client.clone())
            .patch(name, &params, &Patch::Apply(body))
            .await
            .map(|c| Live::of_mutating(&c))
            .map_err(failed),
        Kind::Validating => Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .patch(name, &params, &Patch::Apply(body))
            .await
            .map(|c| Live::of_validating(&c))
            .map_err(failed),
    }
}

/// Writes `bundle` into every webhook of the configuration `kind`/`name`
/// (server-side apply, field manager [`FIELD_MANAGER`], forced: the
/// caBundle is unroot's); returns the webhooks as stored.
pub async fn apply_ca_bundle(
    client: &kube::Client,
    kind: Kind,
    name: &str,
    webhooks: &[String],
    bundle: &str,
) -> Result<Webhooks> {
    let body = apply_body(kind, name, webhooks, bundle);
    apply_as(client, kind, name, &body, FIELD_MANAGER, "the caBundle")
        .await
        .map(|live| live.webhooks)
}

/// Reads the configuration `kind`/`name` (`None`: it does not exist).
pub async fn read_webhooks(
    client: &kube::Client,
    kind: Kind,
    name: &str,
) -> Result<Option<Webhooks>> {
    let failed = |source| Error::Kube {
        action: format!("read {kind} {name}"),
        source,
    };
    let live = match kind {
        Kind::Mutating => Api::<MutatingWebhookConfiguration>::all(client.clone())
            .get_opt(name)
            .await
            .map(|c| c.as_ref().map(Live::of_mutating)),
        Kind::Validating => Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .get_opt(name)
            .await
            .map(|c| c.as_ref().map(Live::of_validating)),
    };
    live.map(|l| l.map(|l| l.webhooks)).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_body_names_only_the_ca_bundle_of_each_webhook() {
        let body = apply_body(
            Kind::Validating,
            "unroot",
            &["a.unroot.dev".to_owned(), "b.unroot.dev".to_owned()],
            "PEM",
        );
        assert_eq!(
            body,
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "unroot"},
                "webhooks": [
                    {"name": "a.unroot.dev", "clientConfig": {"caBundle": "UEVN"}},
                    {"name": "b.unroot.dev", "clientConfig": {"caBundle": "UEVN"}},
                ]
            })
        );
    }

    #[test]
    fn webhooks_hold_a_bundle_only_when_every_one_carries_it() {
        let hooks = |bundles: &[Option<&str>]| {
            Webhooks(
                bundles
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (format!("w{i}"), b.map(|b| b.as_bytes().to_vec())))
                    .collect(),
            )
        };
        assert!(hooks(&[Some("X"), Some("X")]).hold("X"));
        assert!(!hooks(&[Some("X"), None]).hold("X"));
        assert!(!hooks(&[Some("X"), Some("Y")]).hold("X"));
        assert!(hooks(&[]).hold("X"), "no webhooks: nothing to verify");
    }
}
