//! Where the identity ConfigMaps (`unroot-identity-<user>`) go: the one side
//! effect of `/mutate`, behind a trait so the integration tests can record
//! it instead of talking to an API server.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams};
use tokio::sync::OnceCell;
use tracing::warn;

use crate::cluster::{self, Error};

/// The field manager unroot applies as.
pub const FIELD_MANAGER: &str = "unroot";

/// Stores identity ConfigMaps.
///
/// `apply` is `async fn apply(&self, cm: ConfigMap) -> cluster::Result<()>`
/// in spirit; it returns a boxed future so the store can live in the app
/// state as `Arc<dyn IdentityStore>`.
pub trait IdentityStore: Send + Sync + fmt::Debug {
    /// Creates or updates `config_map` (its namespace is set); the error
    /// says why it failed, for the deny message.
    fn apply(&self, config_map: ConfigMap) -> BoxFuture<'_, cluster::Result<()>>;
}

/// Server-side apply through the API server, field manager `unroot`, forced
/// (unroot owns these ConfigMaps' `data`).
#[derive(Clone)]
pub struct KubeStore {
    client: kube::Client,
    /// The Namespace that owns every ConfigMap written, and its uid once
    /// read.
    owner: Option<(String, Arc<OnceCell<String>>)>,
}

impl KubeStore {
    /// A store using `client`.
    #[must_use]
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            owner: None,
        }
    }

    /// The same, writing the Namespace `namespace` (unroot's) as the owner
    /// of every ConfigMap: deleting unroot's namespace (the uninstall) lets
    /// the garbage collector delete them in every namespace. When its uid
    /// cannot be read, the ConfigMap is written without an owner (and the
    /// read is tried again with the next one).
    #[must_use]
    pub fn owned_by(mut self, namespace: String) -> Self {
        self.owner = Some((namespace, Arc::new(OnceCell::new())));
        self
    }

    async fn owner_reference(&self) -> Option<OwnerReference> {
        let (namespace, uid) = self.owner.as_ref()?;
        let read = uid
            .get_or_try_init(|| async {
                let api: Api<Namespace> = Api::all(self.client.clone());
                api.get(namespace)
                    .await
                    .map_err(|e| e.to_string())?
                    .metadata
                    .uid
                    .ok_or_else(|| "it has no uid".to_owned())
            })
            .await;
        match read {
            Ok(uid) => Some(OwnerReference {
                api_version: "v1".to_owned(),
                kind: "Namespace".to_owned(),
                name: namespace.clone(),
                uid: uid.clone(),
                ..OwnerReference::default()
            }),
            Err(e) => {
                warn!(%namespace, error = %e, "failed to read unroot's Namespace; the identity ConfigMap is written without an owner (an uninstall leaves it)");
                None
            }
        }
    }
}

impl fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeStore").finish_non_exhaustive()
    }
}

impl IdentityStore for KubeStore {
    fn apply(&self, config_map: ConfigMap) -> BoxFuture<'_, cluster::Result<()>> {
        Box::pin(async move {
            let namespace = config_map
                .metadata
                .namespace
                .clone()
                .ok_or_else(|| Error::Other("the ConfigMap has no namespace".to_owned()))?;
            let name = config_map
                .metadata
                .name
                .clone()
                .ok_or_else(|| Error::Other("the ConfigMap has no name".to_owned()))?;
            let mut config_map = config_map;
            if let Some(owner) = self.owner_reference().await {
                config_map.metadata.owner_references = Some(vec![owner]);
            }
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &namespace);
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&config_map),
            )
            .await
            .map(drop)
            .map_err(Error::Kube)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use http_body_util::BodyExt as _;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::{Value, json};

    use super::*;

    /// An API server that knows the Namespace `unroot` when `uid` is set,
    /// and records every ConfigMap apply.
    fn client(uid: Option<&'static str>, applied: Arc<Mutex<Vec<Value>>>) -> kube::Client {
        let service = tower::service_fn(move |req: hyper::Request<kube::client::Body>| {
            let applied = Arc::clone(&applied);
            async move {
                let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
                let body = req.into_body().collect().await?.to_bytes();
                let (code, value) = match (method.as_str(), path.as_str(), uid) {
                    ("GET", "/api/v1/namespaces/unroot", Some(uid)) => (
                        200,
                        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "unroot", "uid": uid}}),
                    ),
                    ("PATCH", _, _) => {
                        let object: Value = serde_json::from_slice(&body)?;
                        applied.lock().unwrap().push(object.clone());
                        (200, object)
                    }
                    _ => (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                    ),
                };
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    hyper::Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(http_body_util::Full::new(hyper::body::Bytes::from(
                            serde_json::to_vec(&value)?,
                        )))?,
                )
            }
        });
        kube::Client::new(service, "default")
    }

    fn identity() -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("unroot-identity-alice".to_owned()),
                namespace: Some("hub-users".to_owned()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([("passwd".to_owned(), "x".to_owned())])),
            ..ConfigMap::default()
        }
    }

    #[tokio::test]
    async fn identity_config_maps_are_owned_by_unroots_namespace() {
        let applied = Arc::new(Mutex::new(Vec::new()));
        let store = KubeStore::new(client(Some("ns-uid"), Arc::clone(&applied)))
            .owned_by("unroot".to_owned());
        store.apply(identity()).await.unwrap();
        store.apply(identity()).await.unwrap();
        let applied = applied.lock().unwrap();
        assert_eq!(applied.len(), 2);
        for object in applied.iter() {
            assert_eq!(
                object["metadata"]["ownerReferences"],
                json!([{"apiVersion": "v1", "kind": "Namespace", "name": "unroot", "uid": "ns-uid"}])
            );
        }
    }

    #[tokio::test]
    async fn an_unreadable_owner_does_not_stop_the_write() {
        let applied = Arc::new(Mutex::new(Vec::new()));
        let store =
            KubeStore::new(client(None, Arc::clone(&applied))).owned_by("unroot".to_owned());
        store.apply(identity()).await.unwrap();
        let applied = applied.lock().unwrap();
        assert!(
            applied[0]["metadata"]["ownerReferences"].is_null(),
            "{}",
            applied[0]
        );
        assert_eq!(applied[0]["data"]["passwd"], "x");
    }
}
