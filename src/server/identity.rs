//! Where the identity ConfigMaps (`unroot-identity-<user>`) go: the one side
//! effect of `/mutate`, behind a trait so the integration tests can record
//! it instead of talking to an API server.

use std::fmt;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};

/// The field manager unroot applies as.
pub const FIELD_MANAGER: &str = "unroot";

/// Stores identity ConfigMaps.
///
/// `apply` is `async fn apply(&self, cm: ConfigMap) -> Result<(), String>`
/// in spirit; it returns a boxed future so the store can live in the app
/// state as `Arc<dyn IdentityStore>`.
pub trait IdentityStore: Send + Sync + fmt::Debug {
    /// Creates or updates `config_map` (its namespace is set); the error
    /// says why it failed, for the deny message.
    fn apply(&self, config_map: ConfigMap) -> BoxFuture<'_, Result<(), String>>;
}

/// Server-side apply through the API server, field manager `unroot`, forced
/// (unroot owns these ConfigMaps' `data`).
#[derive(Clone)]
pub struct KubeStore {
    client: kube::Client,
}

impl KubeStore {
    /// A store using `client`.
    #[must_use]
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

impl fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeStore").finish_non_exhaustive()
    }
}

impl IdentityStore for KubeStore {
    fn apply(&self, config_map: ConfigMap) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let namespace = config_map
                .metadata
                .namespace
                .clone()
                .ok_or_else(|| "the ConfigMap has no namespace".to_owned())?;
            let name = config_map
                .metadata
                .name
                .clone()
                .ok_or_else(|| "the ConfigMap has no name".to_owned())?;
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &namespace);
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&config_map),
            )
            .await
            .map(drop)
            .map_err(|e| e.to_string())
        })
    }
}
