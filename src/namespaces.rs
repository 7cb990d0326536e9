//! Namespace labels, as the admission handlers need them: from a
//! metadata-only reflector cache when running against a cluster, a fixed
//! table in tests, or nothing at all when there is no cluster (then the
//! policy defaults apply).
//!
//! On a cache miss an authenticated caller's review reads the namespace
//! from the API server ([`OnMiss::Read`]). An unauthenticated one's reads
//! nothing ([`OnMiss::WaitForWatch`]): the cache is authoritative, and the
//! review waits at most [`WATCH_WAIT`] for the watch to deliver a namespace
//! created a moment before (at most [`MAX_WATCH_WAITS`] reviews at once;
//! more are answered at once), then fails closed. A forged review can then
//! neither make unroot call the API server nor learn more than the cache
//! holds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use tracing::{Instrument as _, info, info_span, warn};

use crate::readiness::Readiness;

pub use unroot_core::namespaces::Labels;

/// Longest an unauthenticated caller's review waits for the namespace
/// watch to deliver a namespace the cache does not hold yet.
pub const WATCH_WAIT: Duration = Duration::from_secs(1);

/// Most reviews waiting for the watch at once; a miss beyond fails at
/// once, so forged reviews of unknown namespaces cannot hold many review
/// slots.
pub const MAX_WATCH_WAITS: usize = 16;

/// How often a waiting review looks at the cache again.
const WATCH_POLL: Duration = Duration::from_millis(20);

/// Why a namespace's labels could not be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The namespace does not exist.
    #[error("namespaces {0:?} not found")]
    NotFound(String),
    /// Not in the cache, and the caller may not have it read.
    #[error(
        "namespace {0:?} is not in unroot's namespace cache, and unroot reads nothing from the API server for a caller without a client certificate (--client-ca)"
    )]
    NotCached(String),
    /// The API server refused or could not be reached.
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

impl Error {
    /// Whether the namespace is known not to exist.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::NotFound(_) => true,
            Self::NotCached(_) => false,
            Self::Kube(e) => crate::cluster::is_not_found(e),
        }
    }

    /// Whether the API server refused unroot the read (RBAC).
    #[must_use]
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::Kube(e) if crate::cluster::is_forbidden(e))
    }
}

/// What a cache miss may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMiss {
    /// Read the namespace from the API server (an authenticated caller).
    Read,
    /// Read nothing; wait up to [`WATCH_WAIT`] for the watch (an
    /// unauthenticated caller).
    WaitForWatch,
}

/// Where namespace labels come from.
// One value per process, cloned into each request's state by reference
// count inside; the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Namespaces {
    /// No cluster: nothing is known about namespaces; callers use defaults.
    Unknown,
    /// A fixed table (tests, `unroot mutate --namespace-labels`). A namespace
    /// missing from it is an error, as a missing namespace is in a cluster.
    Fixed(Arc<BTreeMap<String, Labels>>),
    /// A cluster: the reflector's cache, then the API server.
    Cluster {
        /// The cache, kept current by a metadata watch.
        store: Store<PartialObjectMeta<Namespace>>,
        /// For reads on a cache miss.
        api: Api<Namespace>,
        /// Slots for reviews waiting for the watch ([`OnMiss::WaitForWatch`]).
        waits: Arc<tokio::sync::Semaphore>,
    },
}

impl std::fmt::Debug for Namespaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unknown => f.write_str("Namespaces::Unknown"),
            Self::Fixed(map) => f.debug_tuple("Namespaces::Fixed").field(map).finish(),
            Self::Cluster { store, .. } => write!(f, "Namespaces::Cluster({} cached)", store.len()),
        }
    }
}

impl Namespaces {
    /// Starts the metadata watch on namespaces and returns the source that
    /// reads from it. Readiness condition `namespaces` turns true once the
    /// first full list is in the cache.
    pub fn watch(client: kube::Client, readiness: &Arc<Readiness>) -> Self {
        let api: Api<Namespace> = Api::all(client.clone());
        // Metadata only: labels are all unroot reads, and namespaces' specs
        // and statuses need not sit in memory.
        let meta: Api<PartialObjectMeta<Namespace>> = Api::all(client);
        let (store, writer) = reflector::store();
        readiness.set("namespaces", false);
        let stream = reflector::reflector(writer, watcher(meta, watcher::Config::default()))
            .default_backoff()
            .touched_objects();
        tokio::spawn(
            async move {
                futures::pin_mut!(stream);
                while let Some(event) = stream.next().await {
                    if let Err(e) = event {
                        warn!(error = %e, "namespace watch failed: namespace labels are unknown, so /readyz stays not ready until the cache syncs; retrying with backoff");
                    }
                }
            }
            .instrument(info_span!("namespace_watch")),
        );
        let ready_store = store.clone();
        let readiness = Arc::clone(readiness);
        tokio::spawn(
            async move {
                if ready_store.wait_until_ready().await.is_ok() {
                    info!(namespaces = ready_store.len(), "namespace cache synced");
                    readiness.set("namespaces", true);
                }
            }
            .instrument(info_span!("namespace_watch")),
        );
        Self::cluster(store, api)
    }

    /// Labels from `store`, with `api` for reads on a miss.
    #[must_use]
    pub fn cluster(store: Store<PartialObjectMeta<Namespace>>, api: Api<Namespace>) -> Self {
        Self::Cluster {
            store,
            api,
            waits: Arc::new(tokio::sync::Semaphore::new(MAX_WATCH_WAITS)),
        }
    }

    /// Every namespace known, with its labels (from the cache; empty with
    /// no cluster).
    #[must_use]
    pub fn all(&self) -> Vec<(String, Labels)> {
        match self {
            Self::Unknown => Vec::new(),
            Self::Fixed(map) => map.iter().map(|(n, l)| (n.clone(), l.clone())).collect(),
            Self::Cluster { store, .. } => store
                .state()
                .iter()
                .filter_map(|ns| {
                    let name = ns.metadata.name.clone()?;
                    Some((name, ns.metadata.labels.clone().unwrap_or_default()))
                })
                .collect(),
        }
    }

    /// The labels of `name`: `Ok(None)` when nothing can be known (no
    /// cluster), `Err` when the namespace could not be read. A cache miss
    /// reads the API server or only waits for the watch, as `on_miss` says.
    pub async fn labels(&self, name: &str, on_miss: OnMiss) -> Result<Option<Labels>, Error> {
        match self {
            Self::Unknown => Ok(None),
            Self::Fixed(map) => map
                .get(name)
                .cloned()
                .map(Some)
                .ok_or_else(|| Error::NotFound(name.to_owned())),
            Self::Cluster { store, api, waits } => {
                let cached = || {
                    store
                        .get(&ObjectRef::new(name))
                        .map(|ns| ns.metadata.labels.clone().unwrap_or_default())
                };
                if let Some(labels) = cached() {
                    return Ok(Some(labels));
                }
                if on_miss == OnMiss::WaitForWatch {
                    return wait_for_watch(waits, cached)
                        .await
                        .map(Some)
                        .ok_or_else(|| Error::NotCached(name.to_owned()));
                }
                match api.get_metadata_opt(name).await {
                    Ok(Some(ns)) => Ok(Some(ns.metadata.labels.unwrap_or_default())),
                    Ok(None) => Err(Error::NotFound(name.to_owned())),
                    Err(e) => Err(Error::Kube(e)),
                }
            }
        }
    }
}

/// Looks at the cache until `cached` finds the namespace or [`WATCH_WAIT`]
/// has passed; `None` at once when [`MAX_WATCH_WAITS`] reviews wait
/// already.
async fn wait_for_watch(
    waits: &tokio::sync::Semaphore,
    cached: impl Fn() -> Option<Labels>,
) -> Option<Labels> {
    let _slot = waits.try_acquire().ok()?;
    let end = tokio::time::Instant::now() + WATCH_WAIT;
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(WATCH_POLL).await;
        if let Some(labels) = cached() {
            return Some(labels);
        }
    }
    None
}
