//! Finding the cluster: `--kubeconfig`, then `KUBECONFIG`, then the in-cluster
//! service account (what kubectl and kube-rs users expect), or none; the
//! error every API access of the shell returns; and lists read a page at a
//! time.

use std::fmt;
use std::path::{Path, PathBuf};

use kube::api::{Api, ListParams, ObjectList};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

/// Why a call to the API server (or a stand-in for it) failed: NotFound,
/// Forbidden and a timeout can be told apart, and the message is the one
/// the API server gave.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server answered with an error, or could not be reached.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The deadline passed before the API server answered.
    #[error("timed out")]
    TimedOut,
    /// There is no cluster to ask.
    #[error("no cluster access")]
    NoCluster,
    /// Anything else, in words (a request the API server was never sent, a
    /// test's stand-in).
    #[error("{0}")]
    Other(String),
}

/// The shell's result of an API access.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::Other(message)
    }
}

impl Error {
    /// Whether the object does not exist (404).
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Kube(e) if is_not_found(e))
    }

    /// Whether the API server refused unroot the access (403, RBAC).
    #[must_use]
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::Kube(e) if is_forbidden(e))
    }

    /// Whether the deadline passed first.
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::TimedOut)
    }
}

/// Whether the API server answered 404.
#[must_use]
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.is_not_found())
}

/// Whether the API server answered 403.
#[must_use]
pub fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.is_forbidden())
}

/// One page of `api`'s objects: at most `limit`, from `continue_token`.
pub async fn list_page<K>(
    api: &Api<K>,
    limit: u32,
    continue_token: Option<&str>,
) -> kube::Result<ObjectList<K>>
where
    K: kube::Resource + Clone + DeserializeOwned + fmt::Debug,
{
    let mut params = ListParams::default().limit(limit.max(1));
    if let Some(token) = continue_token {
        params = params.continue_token(token);
    }
    api.list(&params).await
}

/// Every object of `api`, read `limit` at a time; each page is handed to
/// `each` as it arrives (a namespace of many pods is never one response).
pub async fn list_all_pages<K>(
    api: &Api<K>,
    limit: u32,
    mut each: impl FnMut(Vec<K>),
) -> kube::Result<()>
where
    K: kube::Resource + Clone + DeserializeOwned + fmt::Debug,
{
    let mut token: Option<String> = None;
    loop {
        let page = list_page(api, limit, token.as_deref()).await?;
        each(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(next) => token = Some(next),
            None => return Ok(()),
        }
    }
}

/// Where the cluster connection came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterSource {
    /// `--kubeconfig` (or `UNROOT_KUBECONFIG`).
    Flag(PathBuf),
    /// The `KUBECONFIG` environment variable (one path or several).
    Env(String),
    /// The pod's service account.
    InCluster,
}

/// Where the cluster is, found the way kubectl does: `--kubeconfig`, then
/// `KUBECONFIG`, then the in-cluster service account. `None` runs without a
/// cluster (`--standalone`, or nothing found).
#[must_use]
pub fn source(
    kubeconfig: Option<&Path>,
    standalone: bool,
    kubeconfig_env: Option<String>,
    in_cluster: bool,
) -> Option<ClusterSource> {
    if standalone {
        return None;
    }
    if let Some(path) = kubeconfig {
        return Some(ClusterSource::Flag(path.to_owned()));
    }
    if let Some(paths) = kubeconfig_env.filter(|p| !p.trim().is_empty()) {
        return Some(ClusterSource::Env(paths));
    }
    in_cluster.then_some(ClusterSource::InCluster)
}

/// A client for the cluster unroot finds (see [`source`]), or none when
/// `standalone` or when nothing is found (logged either way).
pub async fn connect(
    kubeconfig: Option<&Path>,
    standalone: bool,
) -> Result<Option<kube::Client>, ConnectError> {
    Ok(connect_to(kubeconfig, None, standalone)
        .await?
        .map(|c| c.client))
}

/// Why no client could be made for the cluster found.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A kubeconfig could not be read (`from`: where it was named).
    #[error("failed to read {from}: {source}")]
    ReadKubeconfig {
        /// `kubeconfig PATH` or `KUBECONFIG=PATHS`.
        from: String,
        /// What kube-rs said.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// `KUBECONFIG` named files with no kubeconfig in them.
    #[error("KUBECONFIG={0} names no kubeconfig")]
    NoKubeconfig(String),
    /// A kubeconfig was read but its context could not be loaded.
    #[error("failed to load {from}: {source}")]
    LoadKubeconfig {
        /// `kubeconfig PATH` or `KUBECONFIG=PATHS`.
        from: String,
        /// What kube-rs said.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// `--context` without a kubeconfig to take it from.
    #[error(
        "--context names a kubeconfig context, and there is no kubeconfig (give --kubeconfig or set KUBECONFIG)"
    )]
    ContextWithoutKubeconfig,
    /// The service account's configuration could not be loaded.
    #[error("failed to load the in-cluster configuration: {0}")]
    InCluster(#[source] kube::config::InClusterError),
    /// The client could not be built from the configuration.
    #[error("failed to create the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

impl From<ConnectError> for String {
    fn from(error: ConnectError) -> Self {
        error.to_string()
    }
}

/// A cluster connection and the namespace kubectl would default to there.
#[derive(Clone)]
pub struct Connection {
    /// The client.
    pub client: kube::Client,
    /// The kubeconfig context's namespace, else `default`; in a pod, the
    /// service account's namespace.
    pub namespace: String,
}

/// [`connect`] with kubectl's `--context`: that context of the kubeconfig
/// instead of its current one. A context with no kubeconfig is an error.
pub async fn connect_to(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    standalone: bool,
) -> Result<Option<Connection>, ConnectError> {
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_owned),
        ..kube::config::KubeConfigOptions::default()
    };
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let found = source(
        kubeconfig,
        standalone,
        std::env::var("KUBECONFIG").ok(),
        in_cluster,
    );
    let (config, from) = match &found {
        None if standalone => {
            info!("standalone (--standalone): no cluster is read");
            return Ok(None);
        }
        None => {
            warn!(
                "no cluster found (no --kubeconfig, no KUBECONFIG, not in a pod): running standalone; pass --standalone to say so"
            );
            return Ok(None);
        }
        Some(ClusterSource::Flag(path)) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                ConnectError::ReadKubeconfig {
                    from: format!("kubeconfig {}", path.display()),
                    source,
                }
            })?;
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|source| ConnectError::LoadKubeconfig {
                    from: format!("kubeconfig {}", path.display()),
                    source,
                })?;
            (config, format!("--kubeconfig {}", path.display()))
        }
        Some(ClusterSource::Env(paths)) => {
            let kubeconfig = kube::config::Kubeconfig::from_env()
                .map_err(|source| ConnectError::ReadKubeconfig {
                    from: format!("KUBECONFIG={paths}"),
                    source,
                })?
                .ok_or_else(|| ConnectError::NoKubeconfig(paths.clone()))?;
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|source| ConnectError::LoadKubeconfig {
                    from: format!("KUBECONFIG={paths}"),
                    source,
                })?;
            (config, format!("KUBECONFIG={paths}"))
        }
        Some(ClusterSource::InCluster) if context.is_some() => {
            return Err(ConnectError::ContextWithoutKubeconfig);
        }
        Some(ClusterSource::InCluster) => (
            kube::Config::incluster().map_err(ConnectError::InCluster)?,
            "the in-cluster service account".to_owned(),
        ),
    };
    let server = config.cluster_url.to_string();
    let namespace = config.default_namespace.clone();
    let client = kube::Client::try_from(config).map_err(ConnectError::Client)?;
    info!(from = %from, %server, "reading the cluster through the API server; not ready until the namespace cache has synced");
    Ok(Some(Connection { client, namespace }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_forbidden_and_a_timeout_are_told_apart() {
        let api = |code, reason: &str| {
            Error::Kube(kube::Error::Api(
                kube::core::Status::failure("pods \"x\" is forbidden", reason)
                    .with_code(code)
                    .boxed(),
            ))
        };
        let not_found = api(404, "NotFound");
        let forbidden = api(403, "Forbidden");
        let cases: [(&Error, [bool; 3]); 4] = [
            (&not_found, [true, false, false]),
            (&forbidden, [false, true, false]),
            (&Error::TimedOut, [false, false, true]),
            (&Error::NoCluster, [false, false, false]),
        ];
        for (error, want) in cases {
            let got = [
                error.is_not_found(),
                error.is_forbidden(),
                error.is_timeout(),
            ];
            assert_eq!(got, want, "{error}");
        }
        // The API server's message is the one shown (a deny reason quotes it).
        assert_eq!(
            forbidden.to_string(),
            kube::Error::Api(
                kube::core::Status::failure("pods \"x\" is forbidden", "Forbidden")
                    .with_code(403)
                    .boxed()
            )
            .to_string()
        );
    }

    #[test]
    fn the_cluster_is_found_the_way_kubectl_finds_it() {
        let env = || Some("/env/config".to_owned());
        let flag = Some(Path::new("/flag/config"));
        assert_eq!(
            source(flag, false, env(), true),
            Some(ClusterSource::Flag("/flag/config".into()))
        );
        assert_eq!(
            source(None, false, env(), true),
            Some(ClusterSource::Env("/env/config".to_owned()))
        );
        assert_eq!(
            source(None, false, Some(String::new()), true),
            Some(ClusterSource::InCluster)
        );
        assert_eq!(source(None, false, None, false), None);
        assert_eq!(source(None, true, env(), true), None);
    }
}
