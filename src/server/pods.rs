//! Where the pods of a namespace come from when a namespace's enforce level
//! is raised and its existing pods are checked: behind a trait, so the
//! integration tests can hand in pods (and take their time) instead of
//! talking to an API server.

use std::fmt;
use std::time::Instant;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

/// Pods per page of a list: a namespace of many pods is read in pieces.
const PAGE: u32 = 500;

/// Lists the pods of a namespace.
///
/// `list` is `async fn list(&self, namespace: &str, deadline: Instant) ->
/// Result<Vec<Pod>, String>` in spirit; it returns a boxed future so the
/// lister can live in the app state as `Arc<dyn PodLister>`.
pub trait PodLister: Send + Sync + fmt::Debug {
    /// Every pod of `namespace`, or why they could not be listed. A lister
    /// that waits on the network gives up at `deadline`.
    fn list(&self, namespace: &str, deadline: Instant) -> BoxFuture<'_, Result<Vec<Pod>, String>>;
}

/// Lists pods through the API server, a page at a time, until `deadline`.
#[derive(Clone)]
pub struct KubePods {
    client: kube::Client,
}

impl KubePods {
    /// A lister using `client`.
    #[must_use]
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

impl fmt::Debug for KubePods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubePods").finish_non_exhaustive()
    }
}

impl PodLister for KubePods {
    fn list(&self, namespace: &str, deadline: Instant) -> BoxFuture<'_, Result<Vec<Pod>, String>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        Box::pin(async move {
            let all = async {
                let mut pods = Vec::new();
                let mut params = ListParams::default().limit(PAGE);
                loop {
                    let page = api.list(&params).await.map_err(|e| e.to_string())?;
                    pods.extend(page.items);
                    match page.metadata.continue_.filter(|c| !c.is_empty()) {
                        Some(token) => params = params.continue_token(&token),
                        None => return Ok(pods),
                    }
                }
            };
            tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), all)
                .await
                .map_err(|_| "timed out".to_owned())?
        })
    }
}
