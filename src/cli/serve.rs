//! `unroot serve`: the webhook server.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tracing::{Instrument as _, error, info, warn};

use super::LogFormat;
use crate::certs::{self, Resolver};
use crate::metrics::Metrics;
use crate::namespaces::Namespaces;
use crate::policy::{Document, DocumentFile as _, Snapshot, watch};
use crate::readiness::Readiness;
use crate::server::{self, AppState, IdentityStore, KubePods, KubeStore, PodLister, PodReader};

/// Arguments of `unroot serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the HTTPS webhook listener.
    #[arg(long, env = "UNROOT_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP admin listener (/healthz, /readyz,
    /// /metrics), for the kubelet's probes and Prometheus.
    #[arg(long, env = "UNROOT_ADMIN_LISTEN", default_value = "127.0.0.1:8080")]
    pub admin_listen: SocketAddr,
    /// Address of the plain-HTTP dashboard listener (/dashboard,
    /// /report, POST /report/run, /metrics): a loopback address only,
    /// reached in a cluster with `kubectl port-forward`.
    #[arg(long, env = "UNROOT_DASHBOARD_LISTEN", default_value = "127.0.0.1:8081", value_parser = parse_loopback)]
    pub dashboard_listen: SocketAddr,
    /// Serving certificate (PEM chain), reloaded when it changes (e.g. a
    /// Secret cert-manager writes, mounted). Without it and without
    /// --manage-certs, unroot issues a throwaway certificate of its own.
    #[arg(
        long,
        env = "UNROOT_TLS_CERT",
        requires = "tls_key",
        overrides_with = "tls_cert"
    )]
    pub tls_cert: Option<PathBuf>,
    /// Serving key (PEM) for --tls-cert.
    #[arg(
        long,
        env = "UNROOT_TLS_KEY",
        requires = "tls_cert",
        overrides_with = "tls_key"
    )]
    pub tls_key: Option<PathBuf>,
    /// Issue and rotate the CA and serving certificate in the cluster: the
    /// Secret --tls-secret holds them, the Lease unroot-certs elects the
    /// replica that rotates, and the caBundle of the webhook configurations
    /// follows. The shipped manifests turn it on. Given twice (an overlay
    /// appending --manage-certs=false), the last one counts.
    #[arg(long, env = "UNROOT_MANAGE_CERTS", num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, overrides_with = "manage_certs")]
    pub manage_certs: bool,
    /// The Secret holding the certificates (--manage-certs). Default:
    /// <own namespace>/unroot-tls.
    #[arg(long, env = "UNROOT_TLS_SECRET", value_name = "NAMESPACE/NAME")]
    pub tls_secret: Option<String>,
    /// The MutatingWebhookConfiguration and ValidatingWebhookConfiguration
    /// (same name) whose webhooks get the caBundle (--manage-certs). Repeat
    /// for more.
    #[arg(long = "webhook-configuration", env = "UNROOT_WEBHOOK_CONFIGURATIONS", value_delimiter = ',', default_value = certs::manage::DEFAULT_WEBHOOK_CONFIGURATION)]
    pub webhook_configurations: Vec<String>,
    /// Lifetime of a CA unroot issues; it is renewed with less than 1/3 left.
    #[arg(long, env = "UNROOT_CA_LIFETIME", default_value = "8760h", value_parser = super::parse_duration)]
    pub ca_lifetime: Duration,
    /// Lifetime of a serving certificate unroot issues; it is renewed at 2/3
    /// of it.
    #[arg(long, env = "UNROOT_SERVING_CERT_LIFETIME", default_value = "2160h", value_parser = super::parse_duration)]
    pub serving_cert_lifetime: Duration,
    /// How long a new caBundle is given to reach every API server, and a new
    /// serving certificate every replica, before a rotation moves on.
    #[arg(long, env = "UNROOT_CERT_PROPAGATION_DELAY", default_value = "30s", value_parser = super::parse_duration)]
    pub cert_propagation_delay: Duration,
    /// Require a client certificate signed by a CA of this PEM file (mTLS
    /// from the API server), for a name --client-ca-name accepts; clients
    /// without one are refused at the TLS handshake. Use a CA that signs
    /// only the API server's webhook client certificate.
    #[arg(long, env = "UNROOT_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// A name --client-ca accepts: the client certificate's Subject CN
    /// (exactly) or one of its DNS SANs (in any case) must be one of these.
    /// Required with --client-ca. Repeat, or separate with commas.
    #[arg(
        long = "client-ca-name",
        env = "UNROOT_CLIENT_CA_NAMES",
        value_delimiter = ',',
        requires = "client_ca",
        value_name = "NAME"
    )]
    pub client_ca_names: Vec<String>,
    /// Write identity ConfigMaps for callers that presented no client
    /// certificate (without --client-ca, for any client that reaches the
    /// webhook port, fenced only by the NetworkPolicy). Without this flag or
    /// --client-ca, a pod that needs an identity ConfigMap is denied.
    #[arg(long, env = "UNROOT_UNAUTHENTICATED_PROVISIONING")]
    pub unauthenticated_provisioning: bool,
    /// Extra DNS names for the certificate unroot issues, besides localhost
    /// (self-issued) or unroot.<ns>.svc and unroot.<ns>.svc.cluster.local
    /// (--manage-certs). Repeat, or separate with commas.
    #[arg(long = "dns-name", env = "UNROOT_DNS_NAMES", value_delimiter = ',')]
    pub dns_names: Vec<String>,
    /// Extra IP addresses for the certificate unroot issues (self-issued:
    /// besides 127.0.0.1). Repeat, or separate with commas.
    #[arg(long = "ip", env = "UNROOT_IPS", value_delimiter = ',')]
    pub ips: Vec<IpAddr>,
    /// Where to write the CA certificate(s) clients should trust: the
    /// self-issued CA (default certs/ca.crt), or with --manage-certs the
    /// caBundle, rewritten at every rotation (default: not written).
    #[arg(long, env = "UNROOT_CA_CERT_OUT")]
    pub ca_cert_out: Option<PathBuf>,
    /// Kubeconfig of the cluster to read namespaces and the policy from.
    /// Without it, unroot looks where kubectl does: the KUBECONFIG
    /// environment variable, then the in-cluster service account.
    #[arg(long, env = "UNROOT_KUBECONFIG", conflicts_with = "standalone")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use, instead of its current context.
    #[arg(long, env = "UNROOT_CONTEXT", conflicts_with = "standalone")]
    pub context: Option<String>,
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
    /// How long a keep-alive connection may idle between requests. Keep it
    /// longer than the API server's 90 s pool timeout: a client that closes
    /// its idle connection first never sends a request into the server's
    /// close.
    #[arg(long, env = "UNROOT_IDLE_TIMEOUT", default_value = "120s", value_parser = super::parse_duration)]
    pub idle_timeout: Duration,
    /// Most webhook connections open at once; more wait in the kernel's
    /// accept queue. When fewer than an eighth are left, idle connections
    /// are closed within --request-timeout instead of --idle-timeout.
    #[arg(long, env = "UNROOT_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,
    /// Longest time a review may take once its headers arrived; the API
    /// server's own `?timeout=` shortens it. Every wait on the API server
    /// (namespace lookup, pod read, identity ConfigMap write) ends at this
    /// deadline minus a margin, and the pod is then denied.
    #[arg(long, env = "UNROOT_REVIEW_TIMEOUT", default_value = "10s", value_parser = super::parse_duration)]
    pub review_timeout: Duration,
    /// Most reviews decided at once; more are shed at once with 429 and
    /// Retry-After (the API server retries them) instead of queueing.
    #[arg(long, env = "UNROOT_MAX_CONCURRENT_REVIEWS", default_value_t = server::limits::DEFAULT_MAX_CONCURRENT_REVIEWS, value_parser = parse_positive)]
    pub max_concurrent_reviews: usize,
    /// Most request body bytes held in memory at once, over all requests;
    /// a request that would go beyond is shed with 429 and Retry-After.
    /// At least 8 MiB (one largest body).
    #[arg(long, env = "UNROOT_MAX_BUFFERED_BYTES", default_value_t = server::limits::DEFAULT_MAX_BUFFERED_BYTES, value_parser = parse_buffered_bytes)]
    pub max_buffered_bytes: usize,
    /// How far behind its CPUs a replica may fall (measured as how late a
    /// 50 ms timer fires) before reviews are shed with 429 and Retry-After
    /// instead of waiting for a CPU; 0 never sheds for that.
    #[arg(long, env = "UNROOT_MAX_LAG", default_value = "500ms", value_parser = super::parse_duration)]
    pub max_lag: Duration,
    /// How often identity ConfigMaps (unroot-identity-<user>) that no pod
    /// mounts any more are collected, in the namespaces selected for
    /// provisioning.
    #[arg(long, env = "UNROOT_IDENTITY_SWEEP_INTERVAL", default_value = "5m", value_parser = super::parse_duration)]
    pub identity_sweep_interval: Duration,
    /// How long after its last write an unmounted identity ConfigMap is
    /// kept (it is written before its pod exists).
    #[arg(long, env = "UNROOT_IDENTITY_GRACE", default_value = "10m", value_parser = super::parse_duration)]
    pub identity_grace: Duration,
    /// Where the audit log goes: one JSON line per admission decision.
    /// `auto` writes it to stdout with --log-format json and nowhere with
    /// text; `stdout` always (the logs stay on stderr); `off` never. The
    /// dashboard's list of recent denials and warnings is fed either way.
    #[arg(long, env = "UNROOT_AUDIT_LOG", value_enum, default_value_t = AuditLog::Auto)]
    pub audit_log: AuditLog,
    /// How often the readiness report evaluates every namespace's pods (with
    /// a cluster only, on the replica holding the Lease); `0s` runs it only
    /// on `POST /report/run`.
    // `--audit-interval`: the old name, hidden, for one release.
    #[arg(long, alias = "audit-interval", env = "UNROOT_REPORT_INTERVAL", default_value = "5m", value_parser = super::parse_duration)]
    pub report_interval: Duration,
    /// Pods the readiness report lists per API request.
    // `--audit-page-size`: the old name, hidden, for one release.
    #[arg(long, alias = "audit-page-size", env = "UNROOT_REPORT_PAGE_SIZE", default_value_t = crate::report::DEFAULT_PAGE_SIZE, value_parser = clap::value_parser!(u32).range(1..))]
    pub report_page_size: u32,
    /// After SIGTERM, how long in-flight reviews may take to finish.
    #[arg(long, env = "UNROOT_DRAIN_TIMEOUT", default_value = "30s", value_parser = super::parse_duration)]
    pub drain_timeout: Duration,
    /// After SIGTERM, how long to report not-ready while still serving, so
    /// Service endpoints drop this replica before it stops accepting.
    #[arg(long, env = "UNROOT_SHUTDOWN_DELAY", default_value = "0s", value_parser = super::parse_duration)]
    pub shutdown_delay: Duration,
}

/// Who may cause the identity ConfigMap write.
fn side_effects(args: &Args) -> server::SideEffects {
    if args.client_ca.is_some() {
        server::SideEffects::AuthenticatedCallers
    } else if args.unauthenticated_provisioning {
        server::SideEffects::AnyCaller
    } else {
        server::SideEffects::Refused
    }
}

/// The listeners' addresses and timeouts.
fn listener_config(args: &Args) -> server::Config {
    server::Config {
        listen: args.listen,
        admin_listen: args.admin_listen,
        dashboard_listen: args.dashboard_listen,
        request_timeout: args.request_timeout,
        idle_timeout: args.idle_timeout,
        max_connections: args.max_connections as usize,
        drain_timeout: args.drain_timeout,
        ..server::Config::default()
    }
}

/// The review deadline's maximum and the load-shedding limits.
fn limits(args: &Args) -> server::Limits {
    server::Limits::new(
        args.review_timeout,
        args.max_concurrent_reviews,
        args.max_buffered_bytes,
    )
    .with_max_lag(args.max_lag)
}

/// `--dashboard-listen`: an address of this host's loopback interface.
fn parse_loopback(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|e| format!("{text:?} is not an address: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address: the dashboard, the readiness report and POST /report/run are served on 127.0.0.1 or ::1 only (reach them with kubectl port-forward)"
        ));
    }
    Ok(addr)
}

/// A count of at least 1.
fn parse_positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{text:?} is not a count: {e}")),
    }
}

/// `--max-buffered-bytes`: a byte count, at least one largest body.
fn parse_buffered_bytes(text: &str) -> Result<usize, String> {
    let n: usize = text
        .parse()
        .map_err(|e| format!("{text:?} is not a byte count: {e}"))?;
    if n < server::MAX_BODY_BYTES {
        return Err(format!(
            "{n} is less than one largest request body ({} bytes): such a request could never be served",
            server::MAX_BODY_BYTES
        ));
    }
    Ok(n)
}

/// Where the audit log goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditLog {
    /// stdout with `--log-format json`, off with text.
    Auto,
    /// Always stdout.
    Stdout,
    /// Nowhere.
    Off,
}

impl AuditLog {
    /// Whether the audit log goes to stdout under `format`.
    #[must_use]
    pub fn to_stdout(self, format: LogFormat) -> bool {
        match self {
            Self::Auto => format == LogFormat::Json,
            Self::Stdout => true,
            Self::Off => false,
        }
    }
}

/// Runs `unroot serve` until SIGTERM or Ctrl-C; `log_format` decides where
/// `--audit-log auto` goes.
#[must_use]
pub fn run(args: &Args, log_format: LogFormat) -> ExitCode {
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
    match runtime.block_on(serve(args, log_format)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!(error = %message, "unroot serve failed");
            ExitCode::FAILURE
        }
    }
}

/// The cluster `--kubeconfig` and `--context` name, or none (`--standalone`).
async fn connect(args: &Args) -> Result<Option<kube::Client>, String> {
    let found = crate::cluster::connect_to(
        args.kubeconfig.as_deref(),
        args.context.as_deref(),
        args.standalone,
    )
    .await?;
    Ok(found.map(|c| c.client))
}

async fn serve(args: &Args, log_format: LogFormat) -> Result<(), String> {
    crate::pss::validate_registry()
        .map_err(|e| format!("invalid Pod Security check registry: {e}"))?;
    let client = connect(args).await?;
    let source = policy_source(args, client.is_some())?;
    let (policy, policy_text) = read_policy(&source)?;

    let metrics = Metrics::new();
    let readiness = Arc::new(Readiness::new(&[server::SERVING, watch::READY_CONDITION]));
    let (tls, managed) = start_certificates(args, client.as_ref(), &metrics, &readiness)?;
    let current = Arc::new(ArcSwap::from_pointee(Snapshot::new(policy)));
    let reloader = watch::Reloader::new(
        Arc::clone(&current),
        watch::Metrics::new(metrics.registry()),
        Arc::clone(&readiness),
    );
    start_policy_watch(
        args,
        source,
        client.as_ref(),
        reloader,
        &readiness,
        policy_text,
    );
    let namespaces = start_namespaces(client.as_ref(), &readiness);
    if let Some(client) = &client {
        start_identities(args, client, &namespaces, &current, &metrics);
    }
    let (audit, report) = start_audit(
        args,
        log_format,
        client.as_ref(),
        (&namespaces, &current),
        &metrics,
        managed.as_ref().map(certs::manage::Handle::leading),
    );
    let state = AppState {
        audit: audit.clone(),
        report,
        policy: current,
        namespaces,
        side_effects: side_effects(args),
        identity_store: client.clone().map(identity_store),
        pods: client
            .clone()
            .map(|c| Arc::new(KubePods::new(c)) as Arc<dyn PodLister>),
        stored_pods: client.map(|c| Arc::new(KubePods::new(c)) as Arc<dyn PodReader>),
        metrics,
        readiness: Arc::clone(&readiness),
        request_timeout: args.request_timeout,
        limits: limits(args),
    };
    let running = server::start(listener_config(args), state, Arc::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    wait_for_signal().await;
    stop(args, &readiness, running, managed, audit).await;
    Ok(())
}

/// The policy at start, and the text it was read from: the file's, or the
/// embedded default (a ConfigMap's arrives later, through its watch).
fn read_policy(source: &PolicySource) -> Result<(Document, String), String> {
    Ok(match source {
        PolicySource::File(path) => {
            Document::from_file_with_text(path).map_err(|e| e.to_string())?
        }
        PolicySource::ConfigMap { .. } | PolicySource::Embedded => {
            (Document::embedded(), crate::policy::DEFAULT_YAML.to_owned())
        }
    })
}

/// Follows the policy where `source` says it lives, through `reloader`:
/// ready at once for the embedded policy and a file already read, ready
/// for a ConfigMap once it holds a valid policy.
fn start_policy_watch(
    args: &Args,
    source: PolicySource,
    client: Option<&kube::Client>,
    reloader: watch::Reloader,
    readiness: &Readiness,
    policy_text: String,
) {
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
            if let Some(client) = client {
                watch::watch_configmap(client.clone(), &namespace, &name, reloader);
            }
        }
    }
}

/// The namespaces' labels: watched in a cluster, unknown without one.
fn start_namespaces(client: Option<&kube::Client>, readiness: &Arc<Readiness>) -> Namespaces {
    if let Some(client) = client {
        Namespaces::watch(client.clone(), readiness)
    } else {
        info!(
            "no cluster: namespaces are not read, so the policy's podSecurity defaults apply to every namespace"
        );
        Namespaces::Unknown
    }
}

/// Starts the sweep of the identity ConfigMaps no pod mounts any more.
fn start_identities(
    args: &Args,
    client: &kube::Client,
    namespaces: &Namespaces,
    policy: &Arc<ArcSwap<Snapshot>>,
    metrics: &Metrics,
) {
    crate::identities::spawn(
        client.clone(),
        namespaces.clone(),
        Arc::clone(policy),
        crate::identities::Settings {
            interval: args.identity_sweep_interval,
            grace: args.identity_grace,
        },
        crate::identities::Metrics::new(metrics.registry()),
    );
}

/// Where the webhook writes identity ConfigMaps: owned by unroot's
/// namespace where there is one (in a pod), so that the uninstall removes
/// them.
fn identity_store(client: kube::Client) -> Arc<dyn IdentityStore> {
    let store = KubeStore::new(client);
    let store = match certs::manage::own_namespace() {
        Some(namespace) => store.owned_by(namespace),
        None => store,
    };
    Arc::new(store)
}

/// Whether this replica holds the certificate Lease, when certificates are
/// not managed in the cluster: in a pod, a campaign on the Lease in its own
/// namespace, so the readiness report still runs on one replica; outside a
/// pod (`unroot serve --kubeconfig` on a workstation) no campaign, which
/// would take the Lease from the cluster's replicas, and the report runs
/// here.
fn campaign(client: &kube::Client) -> tokio::sync::watch::Receiver<bool> {
    let Some(namespace) = certs::manage::own_namespace() else {
        // Sender dropped at once: the value stays `true`.
        return tokio::sync::watch::channel(true).1;
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    let elector = certs::lease::Elector::new(
        kube::Api::namespaced(client.clone(), &namespace),
        certs::manage::LEASE_NAME,
        &certs::manage::identity(),
        certs::lease::LEASE_DURATION,
    );
    tokio::spawn(
        certs::lease::campaign(elector, tx)
            .instrument(tracing::info_span!("report_lease", %namespace)),
    );
    rx
}

/// Stops serving after a signal: not ready first (for `--shutdown-delay`),
/// then the certificate task (releasing its Lease), then drain, then flush
/// the audit log so the last decisions are in it.
async fn stop(
    args: &Args,
    readiness: &Readiness,
    running: server::Running,
    managed: Option<certs::manage::Handle>,
    audit: crate::audit::Log,
) {
    readiness.set(server::SERVING, false);
    running.start_draining();
    if !args.shutdown_delay.is_zero() {
        info!(delay = ?args.shutdown_delay, "shutdown requested: not ready, still serving");
        tokio::time::sleep(args.shutdown_delay).await;
    }
    if let Some(managed) = managed {
        managed.shutdown().await;
    }
    running.shutdown().await;
    let flushed = tokio::task::spawn_blocking(move || audit.flush(Duration::from_secs(5))).await;
    if !matches!(flushed, Ok(true)) {
        warn!("the audit log was not flushed within 5s; its last records may be lost");
    }
}

/// Starts the audit log's writer and, with a cluster, the readiness report:
/// on the replica holding the Lease, which `leading` follows (the
/// certificate task's, with `--manage-certs`; else a campaign of its own on
/// the same Lease).
fn start_audit(
    args: &Args,
    log_format: LogFormat,
    client: Option<&kube::Client>,
    (namespaces, policy): (&Namespaces, &Arc<ArcSwap<Snapshot>>),
    metrics: &Metrics,
    leading: Option<tokio::sync::watch::Receiver<bool>>,
) -> (crate::audit::Log, crate::report::task::Handle) {
    let report = match client {
        Some(client) => {
            let leading = leading.unwrap_or_else(|| campaign(client));
            crate::report::task::spawn(
                client.clone(),
                namespaces.clone(),
                Arc::clone(policy),
                crate::report::task::Settings {
                    interval: args.report_interval,
                    page_size: args.report_page_size,
                },
                metrics.report.clone(),
                leading,
            )
        }
        None => crate::report::task::Handle::default(),
    };
    let to_stdout = args.audit_log.to_stdout(log_format);
    let audit = crate::audit::Log::start(
        to_stdout.then(|| Box::new(std::io::stdout()) as Box<dyn std::io::Write + Send>),
        metrics.registry(),
    );
    info!(
        audit_log = if to_stdout { "stdout" } else { "off" },
        readiness_report = report.is_running(),
        "audit log and readiness report"
    );
    (audit, report)
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

/// The webhook listener's TLS configuration (with `--client-ca`, clients
/// must present a certificate), and the in-cluster certificate task when
/// there is one (to stop it and release its Lease at shutdown).
fn start_certificates(
    args: &Args,
    client: Option<&kube::Client>,
    metrics: &Metrics,
    readiness: &Arc<Readiness>,
) -> Result<(rustls::ServerConfig, Option<certs::manage::Handle>), String> {
    // Not ready until a certificate is served.
    readiness.set(certs::READY_CONDITION, false);
    let resolver = Arc::new(Resolver::empty());
    let managed = certs::keep_certificate(
        &cert_settings(args),
        client,
        &resolver,
        metrics.registry(),
        readiness,
    )
    .map_err(|e| e.to_string())?;
    let tls = match &args.client_ca {
        None => {
            // Not an error: the API server sends no client certificate unless
            // its AdmissionConfiguration says so. But provisioning writes
            // identity ConfigMaps for whoever calls /mutate.
            if args.unauthenticated_provisioning {
                warn!(
                    "no --client-ca and --unauthenticated-provisioning: any client that reaches \
                     the webhook port is served, and with provisioning enabled may have \
                     identity ConfigMaps written; only a NetworkPolicy fences it \
                     (docs/hardening.md)"
                );
            } else {
                warn!(
                    "no --client-ca: any client that reaches the webhook port is served; pods \
                     that need an identity ConfigMap are denied until callers are \
                     authenticated (docs/hardening.md, \"mTLS from the API server\")"
                );
            }
            certs::server_config(resolver)
        }
        Some(path) => {
            if args.client_ca_names.iter().all(|n| n.trim().is_empty()) {
                return Err(format!(
                    "--client-ca {}: give the names of the client certificates it may authenticate with --client-ca-name (the API server's webhook client certificate's CN or a DNS SAN): any certificate from the CA is not authentication when the CA signs others too, as a cluster CA signs every kubelet's and user's",
                    path.display()
                ));
            }
            info!(client_ca = %path.display(), names = ?args.client_ca_names, "clients must present a certificate signed by the client CA, for one of the names");
            certs::server_config_with_client_ca(resolver, path, &args.client_ca_names)
                .map_err(|e| e.to_string())?
        }
    };
    Ok((tls, managed))
}

/// The certificate flags, for [`certs::keep_certificate`].
fn cert_settings(args: &Args) -> certs::Settings {
    certs::Settings {
        manage: args.manage_certs,
        tls_secret: args.tls_secret.clone(),
        webhook_configurations: args.webhook_configurations.clone(),
        files: args.tls_cert.clone().zip(args.tls_key.clone()),
        ca_lifetime: args.ca_lifetime,
        serving_lifetime: args.serving_cert_lifetime,
        propagation_delay: args.cert_propagation_delay,
        dns_names: args.dns_names.clone(),
        ips: args.ips.clone(),
        ca_cert_out: args.ca_cert_out.clone(),
    }
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
