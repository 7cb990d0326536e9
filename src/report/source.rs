//! The report's inputs from the API server: pods a page at a time, and the
//! namespaces' labels (for the one-off `unroot report`; `serve` has them in
//! its namespace cache).

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams};

use super::{Error, Page, PodPages, Result};
use crate::namespaces::Labels;

/// Pods from the API server, `limit` per request.
#[derive(Clone)]
pub struct ApiPages {
    api: Api<Pod>,
    limit: u32,
}

impl ApiPages {
    /// Every namespace's pods (needs `list pods` cluster-wide).
    #[must_use]
    pub fn all(client: kube::Client, limit: u32) -> Self {
        Self {
            api: Api::all(client),
            limit,
        }
    }

    /// One namespace's pods.
    #[must_use]
    pub fn namespaced(client: kube::Client, namespace: &str, limit: u32) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            limit,
        }
    }
}

impl PodPages for ApiPages {
    fn page(&self, continue_token: Option<String>) -> BoxFuture<'_, Result<Page>> {
        Box::pin(async move {
            let list = crate::cluster::list_page(&self.api, self.limit, continue_token.as_deref())
                .await
                .map_err(|e| Error::ListPods(e.to_string()))?;
            Ok(Page {
                pods: list.items,
                continue_token: list.metadata.continue_,
            })
        })
    }
}

/// Every namespace and its labels, read from the API server (metadata only).
pub async fn namespaces(client: kube::Client) -> Result<Vec<(String, Labels)>> {
    let api: Api<Namespace> = Api::all(client);
    let list = api
        .list_metadata(&ListParams::default())
        .await
        .map_err(|e| Error::ListNamespaces(e.to_string()))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|ns| {
            let name = ns.metadata.name?;
            Some((name, ns.metadata.labels.unwrap_or_default()))
        })
        .collect())
}

/// The labels of the namespace `name`.
pub async fn namespace(client: kube::Client, name: &str) -> Result<Labels> {
    let api: Api<Namespace> = Api::all(client);
    match api.get_metadata_opt(name).await {
        Ok(Some(ns)) => Ok(ns.metadata.labels.unwrap_or_default()),
        Ok(None) => Err(Error::NamespaceNotFound(name.to_owned())),
        Err(e) => Err(Error::ListNamespaces(e.to_string())),
    }
}
