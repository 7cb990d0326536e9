//! Where pods come from: the pods of a namespace when its enforce level is
//! raised and its existing pods are checked ([`PodLister`]), and the stored
//! pod a 1.20/1.21 ephemeral-containers review needs ([`PodReader`]).
//! Behind traits, so the integration tests can hand in pods (and take
//! their time) instead of talking to an API server.

use std::fmt;
use std::time::Instant;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use crate::cluster::{self, Error};

/// Pods per page of a list: a namespace of many pods is read in pieces.
const PAGE: u32 = 500;

/// Lists the pods of a namespace.
///
/// `list` is `async fn list(&self, namespace: &str, deadline: Instant) ->
/// cluster::Result<Vec<Pod>>` in spirit; it returns a boxed future so the
/// lister can live in the app state as `Arc<dyn PodLister>`.
pub trait PodLister: Send + Sync + fmt::Debug {
    /// Every pod of `namespace`, or why they could not be listed. A lister
    /// that waits on the network gives up at `deadline`.
    fn list(&self, namespace: &str, deadline: Instant) -> BoxFuture<'_, cluster::Result<Vec<Pod>>>;
}

/// Reads one stored pod.
///
/// `get` is `async fn get(&self, namespace: &str, name: &str) ->
/// cluster::Result<Pod>` in spirit, boxed for `Arc<dyn PodReader>`.
pub trait PodReader: Send + Sync + fmt::Debug {
    /// The pod `namespace`/`name` as stored, or why it could not be read
    /// (NotFound and Forbidden told apart by [`Error`]).
    fn get(&self, namespace: &str, name: &str) -> BoxFuture<'_, cluster::Result<Pod>>;
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
    fn list(&self, namespace: &str, deadline: Instant) -> BoxFuture<'_, cluster::Result<Vec<Pod>>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        Box::pin(async move {
            let mut pods = Vec::new();
            let all = cluster::list_all_pages(&api, PAGE, |page| pods.extend(page));
            tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), all)
                .await
                .map_err(|_| Error::TimedOut)??;
            Ok(pods)
        })
    }
}

impl PodReader for KubePods {
    fn get(&self, namespace: &str, name: &str) -> BoxFuture<'_, cluster::Result<Pod>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let name = name.to_owned();
        Box::pin(async move { Ok(api.get(&name).await?) })
    }
}
