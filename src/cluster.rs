//! Finding the cluster: `--kubeconfig`, then `KUBECONFIG`, then the in-cluster
//! service account (what kubectl and kube-rs users expect), or none.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

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
) -> Result<Option<kube::Client>, String> {
    Ok(connect_to(kubeconfig, None, standalone)
        .await?
        .map(|c| c.client))
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
) -> Result<Option<Connection>, String> {
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
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("failed to read kubeconfig {}: {e}", path.display()))?;
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| format!("failed to load kubeconfig {}: {e}", path.display()))?;
            (config, format!("--kubeconfig {}", path.display()))
        }
        Some(ClusterSource::Env(paths)) => {
            let kubeconfig = kube::config::Kubeconfig::from_env()
                .map_err(|e| format!("failed to read KUBECONFIG={paths}: {e}"))?
                .ok_or_else(|| format!("KUBECONFIG={paths} names no kubeconfig"))?;
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| format!("failed to load KUBECONFIG={paths}: {e}"))?;
            (config, format!("KUBECONFIG={paths}"))
        }
        Some(ClusterSource::InCluster) if context.is_some() => {
            return Err(
                "--context names a kubeconfig context, and there is no kubeconfig (give --kubeconfig or set KUBECONFIG)"
                    .to_owned(),
            );
        }
        Some(ClusterSource::InCluster) => (
            kube::Config::incluster()
                .map_err(|e| format!("failed to load the in-cluster configuration: {e}"))?,
            "the in-cluster service account".to_owned(),
        ),
    };
    let server = config.cluster_url.to_string();
    let namespace = config.default_namespace.clone();
    let client = kube::Client::try_from(config)
        .map_err(|e| format!("failed to create the Kubernetes client: {e}"))?;
    info!(from = %from, %server, "reading the cluster through the API server; not ready until the namespace cache has synced");
    Ok(Some(Connection { client, namespace }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
