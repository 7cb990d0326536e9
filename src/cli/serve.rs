//! `unroot serve`: the webhook server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tracing::{error, info, warn};

use crate::certs::{self, Authority, Resolver};
use crate::metrics::Metrics;
use crate::namespaces::Namespaces;
use crate::policy::{Document, Snapshot, watch};
use crate::readiness::Readiness;
use crate::server::{self, AppState, IdentityStore, KubePods, KubeStore, PodLister};

/// Arguments of `unroot serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the HTTPS webhook listener.
    #[arg(long, env = "UNROOT_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP admin listener (/healthz, /readyz, /metrics).
    #[arg(long, env = "UNROOT_ADMIN_LISTEN", default_value = "127.0.0.1:8080")]
    pub admin_listen: SocketAddr,
    /// Serving certificate (PEM chain). Without it, unroot issues its own.
    #[arg(long, env = "UNROOT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Serving key (PEM) for --tls-cert.
    #[arg(long, env = "UNROOT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Extra DNS names (or IPs) for the self-issued certificate, besides
    /// localhost and 127.0.0.1. Repeat, or separate with commas.
    #[arg(long = "dns-name", env = "UNROOT_DNS_NAMES", value_delimiter = ',')]
    pub dns_names: Vec<String>,
    /// Where to write the self-issued CA certificate, for clients to trust.
    #[arg(long, env = "UNROOT_CA_CERT_OUT", default_value = "certs/ca.crt")]
    pub ca_cert_out: PathBuf,
    /// Kubeconfig of the cluster to read namespaces and the policy from.
    /// Without it, unroot looks where kubectl does: the KUBECONFIG
    /// environment variable, then the in-cluster service account.
    #[arg(long, env = "UNROOT_KUBECONFIG", conflicts_with = "standalone")]
    pub kubeconfig: Option<PathBuf>,
    /// Run without a cluster, even if one could be found: namespace labels
    /// are unknown, so the policy's podSecurity defaults apply everywhere,
    /// and pods that need the API server (provisioning, 1.20/1.21 ephemeral
    /// containers) are denied.
    #[arg(long, env = "UNROOT_STANDALONE")]
    pub standalone: bool,
    /// Policy file, watched for changes. Without it (and without
    /// --policy-configmap) the embedded default policy applies.
    #[arg(long, env = "UNROOT_POLICY", conflicts_with = "policy_configmap")]
    pub policy: Option<PathBuf>,
    /// The policy ConfigMap, NAMESPACE/NAME (key `policy.yaml`), watched for
    /// changes. Inside a cluster it defaults to <own namespace>/unroot-policy.
    #[arg(long, env = "UNROOT_POLICY_CONFIGMAP", value_name = "NAMESPACE/NAME")]
    pub policy_configmap: Option<String>,
    /// How often the --policy file is checked for changes.
    #[arg(long, env = "UNROOT_POLICY_POLL_INTERVAL", default_value = "2s", value_parser = super::parse_duration)]
    pub policy_poll_interval: Duration,
    /// Longest time a client may take to send a request's headers and body.
    #[arg(long, env = "UNROOT_REQUEST_TIMEOUT", default_value = "10s", value_parser = super::parse_duration)]
    pub request_timeout: Duration,
    /// How often identity ConfigMaps (unroot-identity-<user>) that no pod
    /// mounts any more are collected, in the namespaces selected for
    /// provisioning.
    #[arg(long, env = "UNROOT_IDENTITY_SWEEP_INTERVAL", default_value = "5m", value_parser = super::parse_duration)]
    pub identity_sweep_interval: Duration,
    /// How long after its last write an unmounted identity ConfigMap is
    /// kept (it is written before its pod exists).
    #[arg(long, env = "UNROOT_IDENTITY_GRACE", default_value = "10m", value_parser = super::parse_duration)]
    pub identity_grace: Duration,
    /// After SIGTERM, how long in-flight reviews may take to finish.
    #[arg(long, env = "UNROOT_DRAIN_TIMEOUT", default_value = "30s", value_parser = super::parse_duration)]
    pub drain_timeout: Duration,
    /// After SIGTERM, how long to report not-ready while still serving, so
    /// Service endpoints drop this replica before it stops accepting.
    #[arg(long, env = "UNROOT_SHUTDOWN_DELAY", default_value = "0s", value_parser = super::parse_duration)]
    pub shutdown_delay: Duration,
}

/// Runs `unroot serve` until SIGTERM or Ctrl-C.
#[must_use]
pub fn run(args: &Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "failed to start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!(error = %message, "unroot serve failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: &Args) -> Result<(), String> {
    crate::pss::validate_registry()
        .map_err(|e| format!("invalid Pod Security check registry: {e}"))?;
    let client = crate::cluster::connect(args.kubeconfig.as_deref(), args.standalone).await?;
    let source = policy_source(args, client.is_some())?;
    let (policy, policy_text) = match &source {
        PolicySource::File(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("failed to read policy {}: {e}", path.display()))?;
            let document = Document::from_file(path).map_err(|e| e.to_string())?;
            (document, text)
        }
        PolicySource::ConfigMap { .. } | PolicySource::Embedded => {
            (Document::embedded(), crate::policy::DEFAULT_YAML.to_owned())
        }
    };

    let resolver = Arc::new(Resolver::new(serving_key(args)?));
    let metrics = Metrics::new();
    let readiness = Arc::new(Readiness::new(&[server::SERVING, watch::READY_CONDITION]));
    let current = Arc::new(ArcSwap::from_pointee(Snapshot::new(policy)));
    let reloader = watch::Reloader::new(
        Arc::clone(&current),
        watch::Metrics::new(metrics.registry()),
        Arc::clone(&readiness),
    );
    match source {
        PolicySource::Embedded => {
            info!(hash = %reloader.current_hash(), "no policy source given: the embedded default policy applies");
            readiness.set(watch::READY_CONDITION, true);
        }
        PolicySource::File(path) => {
            info!(hash = %reloader.current_hash(), file = %path.display(), "policy loaded; watching the file for changes");
            readiness.set(watch::READY_CONDITION, true);
            watch::watch_file(path, args.policy_poll_interval, reloader, policy_text);
        }
        PolicySource::ConfigMap { namespace, name } => {
            info!(configmap = %format!("{namespace}/{name}"), "watching the policy ConfigMap; not ready until it holds a valid policy");
            if let Some(client) = &client {
                watch::watch_configmap(client.clone(), &namespace, &name, reloader);
            }
        }
    }
    let namespaces = if let Some(client) = &client {
        Namespaces::watch(client.clone(), &readiness)
    } else {
        info!(
            "no cluster: namespaces are not read, so the policy's podSecurity defaults apply to every namespace"
        );
        Namespaces::Unknown
    };
    if let Some(client) = &client {
        crate::identities::spawn(
            client.clone(),
            namespaces.clone(),
            Arc::clone(&current),
            crate::identities::Settings {
                interval: args.identity_sweep_interval,
                grace: args.identity_grace,
            },
            crate::identities::Metrics::new(metrics.registry()),
        );
    }
    let state = AppState {
        policy: current,
        namespaces,
        identity_store: client
            .clone()
            .map(|c| Arc::new(KubeStore::new(c)) as Arc<dyn IdentityStore>),
        pods: client
            .clone()
            .map(|c| Arc::new(KubePods::new(c)) as Arc<dyn PodLister>),
        kube: client,
        metrics,
        readiness: Arc::clone(&readiness),
        request_timeout: args.request_timeout,
    };
    let config = server::Config {
        listen: args.listen,
        admin_listen: args.admin_listen,
        request_timeout: args.request_timeout,
        drain_timeout: args.drain_timeout,
        ..server::Config::default()
    };
    let tls = Arc::new(certs::server_config(resolver));
    let running = server::start(config, state, tls)
        .await
        .map_err(|e| e.to_string())?;
    let stop = running.shutdown_handle();
    wait_for_signal().await;
    readiness.set(server::SERVING, false);
    if !args.shutdown_delay.is_zero() {
        info!(delay = ?args.shutdown_delay, "shutdown requested: not ready, still serving");
        tokio::time::sleep(args.shutdown_delay).await;
    }
    let _ = stop.send(true);
    running.wait().await;
    Ok(())
}

/// Where the policy comes from.
enum PolicySource {
    Embedded,
    File(PathBuf),
    ConfigMap { namespace: String, name: String },
}

/// The ConfigMap unroot reads inside a cluster when none is named.
pub const DEFAULT_POLICY_CONFIGMAP: &str = "unroot-policy";

fn policy_source(args: &Args, have_cluster: bool) -> Result<PolicySource, String> {
    if let Some(path) = &args.policy {
        return Ok(PolicySource::File(path.clone()));
    }
    let named = match &args.policy_configmap {
        Some(reference) => Some(reference.clone()),
        // In a cluster (service account mounted), default to our namespace.
        None => std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            .ok()
            .filter(|_| have_cluster && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some())
            .map(|ns| format!("{}/{DEFAULT_POLICY_CONFIGMAP}", ns.trim())),
    };
    let Some(reference) = named else {
        return Ok(PolicySource::Embedded);
    };
    let Some((namespace, name)) = reference
        .split_once('/')
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/'))
    else {
        return Err(format!(
            "--policy-configmap {reference:?}: expected NAMESPACE/NAME"
        ));
    };
    if !have_cluster {
        return Err(format!(
            "--policy-configmap {reference}: no cluster to read it from (give --kubeconfig or KUBECONFIG, run inside a cluster, or drop --standalone)"
        ));
    }
    Ok(PolicySource::ConfigMap {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

fn serving_key(args: &Args) -> Result<rustls::sign::CertifiedKey, String> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        info!(cert = %cert.display(), "serving certificate from files");
        return certs::load(cert, key).map_err(|e| e.to_string());
    }
    let ca = Authority::issue().map_err(|e| e.to_string())?;
    let names = certs::serving_names(&args.dns_names);
    let serving = ca.issue_serving(&names).map_err(|e| e.to_string())?;
    certs::write_pem(&args.ca_cert_out, &ca.cert_pem).map_err(|e| e.to_string())?;
    info!(ca = %args.ca_cert_out.display(), names = ?names, "issued a self-signed serving certificate; trust the CA file");
    certs::certified_key(
        serving.cert_pem.as_bytes(),
        serving.key_pem.as_bytes(),
        &args.ca_cert_out,
    )
    .map_err(|e| e.to_string())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => info!("SIGINT received: shutting down"),
                    _ = term.recv() => info!("SIGTERM received: shutting down"),
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
