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
use crate::policy::Document;
use crate::server::{self, AppState, IdentityStore, KubeStore, Readiness};

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
    /// Policy file. Without it, the embedded default policy applies.
    #[arg(long, env = "UNROOT_POLICY")]
    pub policy: Option<PathBuf>,
    /// Longest time a client may take to send a request's headers and body.
    #[arg(long, env = "UNROOT_REQUEST_TIMEOUT", default_value = "10s", value_parser = super::parse_duration)]
    pub request_timeout: Duration,
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
    let policy = if let Some(path) = &args.policy {
        Document::from_file(path).map_err(|e| e.to_string())?
    } else {
        info!("no policy source given: the embedded default policy applies");
        Document::embedded()
    };
    info!(hash = %policy.hash(), "policy loaded");

    let resolver = Arc::new(Resolver::new(serving_key(args)?));
    let metrics = Metrics::new();
    let readiness = Arc::new(Readiness::new(&["serving"]));
    let state = AppState {
        policy: Arc::new(ArcSwap::from_pointee(policy)),
        namespace_labels: Arc::new(ArcSwap::from_pointee(server::NamespaceLabels::new())),
        identity_store: identity_store(),
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
    let running = server::start(config, state, resolver)
        .await
        .map_err(|e| e.to_string())?;
    let stop = running.shutdown_handle();
    wait_for_signal().await;
    readiness.set("serving", false);
    if !args.shutdown_delay.is_zero() {
        info!(delay = ?args.shutdown_delay, "shutdown requested: not ready, still serving");
        tokio::time::sleep(args.shutdown_delay).await;
    }
    let _ = stop.send(true);
    running.wait().await;
    Ok(())
}

/// In a cluster (the service account's environment is present), the
/// identity ConfigMaps are applied through the API server; elsewhere there is
/// no store, and pods that need one are denied.
fn identity_store() -> Option<Arc<dyn IdentityStore>> {
    std::env::var_os("KUBERNETES_SERVICE_HOST")?;
    let client = kube::Config::incluster()
        .map_err(|e| e.to_string())
        .and_then(|config| kube::Client::try_from(config).map_err(|e| e.to_string()));
    match client {
        Ok(client) => {
            info!("identity ConfigMaps are applied through the API server");
            Some(Arc::new(KubeStore::new(client)))
        }
        Err(e) => {
            warn!(error = %e, "no Kubernetes client: pods claiming an identity will be denied");
            None
        }
    }
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
