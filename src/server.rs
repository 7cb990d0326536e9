//! The HTTP shell around the admission core, in layers:
//!
//! - [`listener`]: the TLS accept loop (and who each connection's caller
//!   is, [`Caller`]), graceful drain;
//! - the admin listener (`/healthz`, `/readyz`, `/metrics`, for probes and
//!   Prometheus) and the loopback-only dashboard listener (`/dashboard`,
//!   the readiness report, every POST), both plain HTTP;
//! - [`body`]: what a webhook body must be before it is read as a review
//!   (media type, size, time);
//! - [`review`]: decode the review, dispatch to the webhook's handler,
//!   record the answer (metrics, span, policy hash), encode it; a large
//!   review on a thread of its own ([`offload`]);
//! - [`handlers`]: one per webhook, the async steps the pure core needs
//!   (namespace labels, the stored pod, the identity ConfigMap write).

pub mod body;
pub mod deadline;
pub mod handlers;
pub mod identity;
pub mod lag;
pub mod limits;
pub mod listener;
mod observe;
pub mod offload;
pub mod pods;
mod review;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{Instrument as _, info, info_span, warn};

pub use self::deadline::Deadline;
pub use self::identity::{IdentityStore, KubeStore};
pub use self::limits::Limits;
pub use self::pods::{KubePods, PodLister, PodReader};
use self::status::error_body;
use crate::metrics::Metrics;
use crate::namespaces::Namespaces;
use crate::policy::Snapshot;
use crate::readiness::Readiness;

/// Errors from starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The dashboard listener was given an address other hosts can reach.
    #[error(
        "--dashboard-listen {addr}: the dashboard, the readiness report and POST /report/run are served on a loopback address only (127.0.0.1 or ::1); reach them with kubectl port-forward"
    )]
    DashboardNotLoopback {
        /// The address.
        addr: SocketAddr,
    },
    /// An address could not be bound.
    #[error("failed to bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Audit annotation on every answer: the hash of the policy that decided it.
pub const POLICY_HASH: &str = "policy-hash";

/// Readiness condition: the webhook listener accepts connections.
pub const SERVING: &str = "serving";

/// Largest AdmissionReview body accepted (the API server's own limit for
/// objects is 3 MiB; a review carries up to two of them).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Listener settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Webhook (HTTPS) address.
    pub listen: SocketAddr,
    /// Admin (plain HTTP) address: `/healthz`, `/readyz`, `/metrics`.
    pub admin_listen: SocketAddr,
    /// Dashboard (plain HTTP, loopback only) address: `/dashboard`,
    /// `/report`, `POST /report/run` (and `/metrics` for the
    /// dashboard's link).
    pub dashboard_listen: SocketAddr,
    /// Longest time a client may take to send its request headers and body.
    pub request_timeout: Duration,
    /// How long a keep-alive connection may idle between an answer and the
    /// next request before it is closed. Longer than the API server's own
    /// 90 s: a client that closes an idle connection first never has a
    /// request meet the server's close.
    pub idle_timeout: Duration,
    /// Longest time a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// After shutdown starts, how long in-flight reviews may take to finish.
    pub drain_timeout: Duration,
    /// Most TLS connections open at once; more wait to be accepted.
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            dashboard_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// What every request handler shares. [`start`] puts it behind an `Arc`.
#[derive(Clone)]
pub struct AppState {
    /// The policy in force, swapped atomically on reload.
    pub policy: Arc<ArcSwap<Snapshot>>,
    /// Where namespace labels come from.
    pub namespaces: Namespaces,
    /// Where identity ConfigMaps are applied. `None` (no Kubernetes client):
    /// a pod that needs one is denied.
    pub identity_store: Option<Arc<dyn IdentityStore>>,
    /// Whether `/mutate` may write identity ConfigMaps: every caller proved
    /// itself with a client certificate (`--client-ca`), or the operator
    /// accepted unauthenticated callers (`--unauthenticated-provisioning`).
    /// Otherwise a pod that needs one is denied, so a forged review has no
    /// side effect.
    pub side_effects: SideEffects,
    /// Where the pods of a namespace are listed when its enforce level is
    /// raised. `None` (no Kubernetes client): the client is warned that
    /// they could not be listed.
    pub pods: Option<Arc<dyn PodLister>>,
    /// Where a stored pod is read (a 1.20/1.21 ephemeral-containers review
    /// of an authenticated caller). `None` (no Kubernetes client): such a
    /// review is denied, naming the missing cluster access.
    pub stored_pods: Option<Arc<dyn PodReader>>,
    /// The metrics registry and handles.
    pub metrics: Metrics,
    /// Readiness conditions for `/readyz`.
    pub readiness: Arc<Readiness>,
    /// Longest time a request body may take to arrive.
    pub request_timeout: Duration,
    /// The review deadline's maximum, and how many reviews and request
    /// bytes are taken on at once before excess load is shed.
    pub limits: Limits,
    /// The audit log every decision is recorded in (and the dashboard's
    /// ring of recent denials and warnings).
    pub audit: crate::audit::Log,
    /// The readiness report (a task with a cluster, none without).
    pub report: crate::report::task::Handle,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("policy", &self.policy.load().hash)
            .field("namespaces", &self.namespaces)
            .field("pods", &self.pods.is_some())
            .finish_non_exhaustive()
    }
}

/// Who sent a request to the webhook listener, as its connection's TLS
/// handshake proved it. The listener sets it on every request of the
/// connection (a request extension); a request without one is taken as
/// unauthenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Presented a client certificate from `--client-ca`, for a name
    /// `--client-ca-name` accepts.
    Authenticated,
    /// Presented none: unroot runs without `--client-ca`. unroot reads
    /// nothing from the cluster for such a caller beyond what the review
    /// holds.
    Unauthenticated,
}

impl Caller {
    /// The caller of `request`, as the listener recorded it.
    #[must_use]
    pub fn of(extensions: &axum::http::Extensions) -> Self {
        extensions
            .get::<Self>()
            .copied()
            .unwrap_or(Self::Unauthenticated)
    }

    /// Whether the caller proved who it is.
    #[must_use]
    pub fn is_authenticated(self) -> bool {
        self == Self::Authenticated
    }

    /// The metric label and audit field: `authenticated` or
    /// `unauthenticated`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authenticated => "authenticated",
            Self::Unauthenticated => "unauthenticated",
        }
    }
}

/// Who may cause `/mutate`'s one side effect, the identity ConfigMap write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideEffects {
    /// Every caller presented a client certificate signed by `--client-ca`.
    AuthenticatedCallers,
    /// Any caller that reaches the port (`--unauthenticated-provisioning`):
    /// only the NetworkPolicy fences it.
    AnyCaller,
    /// Callers are not authenticated: no side effect is performed.
    Refused,
}

/// A running server: its bound addresses, and how to stop it.
#[derive(Debug)]
pub struct Running {
    /// The webhook's bound address.
    pub addr: SocketAddr,
    /// The admin listener's bound address.
    pub admin_addr: SocketAddr,
    /// The dashboard listener's bound address (loopback).
    pub dashboard_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    draining: listener::Draining,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Starts draining before a shutdown: the server still answers, but
    /// every HTTP/1.1 answer closes its connection, so clients' pools let go
    /// of this replica without a request racing its close.
    pub fn start_draining(&self) {
        self.draining.start();
    }

    /// Starts a graceful shutdown and waits for it to finish.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Waits until the server stops (after a shutdown started elsewhere).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    /// A handle that starts the shutdown when sent `true`.
    #[must_use]
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// The webhook router: `/mutate` and `/validate` over HTTPS.
pub fn webhook_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mutate", post(handlers::mutate))
        .route("/validate", post(handlers::validate))
        .fallback(not_found)
        .with_state(state)
}

/// The admin router: `/healthz`, `/readyz` and `/metrics`, for the
/// kubelet's probes and Prometheus. What moved to the dashboard listener
/// answers 404 saying where it went.
pub fn admin_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/dashboard", axum::routing::any(moved))
        .route("/report", axum::routing::any(moved))
        .route("/report/run", axum::routing::any(moved))
        .route("/audit/run", axum::routing::any(moved))
        .route("/audit/report", axum::routing::any(moved))
        .fallback(not_found)
        .with_state(state)
}

/// The dashboard router, served on loopback only: `/dashboard`, `POST
/// /report/run`, `GET /report`, and `/metrics` (the dashboard links to
/// it). `/audit/run` and `/audit/report` are the old names of the report's
/// routes, kept for one release.
pub fn dashboard_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/dashboard", get(observe::dashboard))
        .route("/report/run", post(observe::run_report))
        .route("/report", get(observe::report))
        .route("/audit/run", post(observe::run_report))
        .route("/audit/report", get(observe::report))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

/// Binds the three listeners and serves until the shutdown handle fires.
/// `tls` is the webhook listener's configuration (see
/// [`crate::certs::server_config`]). The dashboard listener must be a
/// loopback address.
pub async fn start(
    config: Config,
    state: AppState,
    tls: Arc<rustls::ServerConfig>,
) -> Result<Running> {
    if !config.dashboard_listen.ip().is_loopback() {
        return Err(Error::DashboardNotLoopback {
            addr: config.dashboard_listen,
        });
    }
    let bind = async |addr: SocketAddr| {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        Ok::<_, Error>((listener, bound))
    };
    let (listener, addr) = bind(config.listen).await?;
    let (admin, admin_addr) = bind(config.admin_listen).await?;
    let (dashboard, dashboard_addr) = bind(config.dashboard_listen).await?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let readiness = Arc::clone(&state.readiness);
    let counted = state.metrics.connections.clone();
    let lag_probe = state.limits.lag_probe().map(tokio::spawn);
    let draining = listener::Draining::default();
    let drain = draining.clone();
    // One reference count per request, not a clone of every field.
    let state = Arc::new(state);
    let webhook = webhook_router(Arc::clone(&state));
    let admin_app = admin_router(Arc::clone(&state));
    let dashboard_app = dashboard_router(state);

    let plain = |listener: TcpListener, app: Router, what: &'static str| {
        let mut rx = shutdown_rx.clone();
        async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { listener::stopped(&mut rx).await })
                .await;
            if let Err(e) = served {
                warn!(error = %e, listener = what, "listener failed");
            }
        }
    };
    let admin_task = tokio::spawn(
        plain(admin, admin_app, "admin").instrument(info_span!("admin_listener", %admin_addr)),
    );
    let dashboard_task = tokio::spawn(
        plain(dashboard, dashboard_app, "dashboard")
            .instrument(info_span!("dashboard_listener", %dashboard_addr)),
    );

    readiness.set(SERVING, true);
    info!(%addr, %admin_addr, %dashboard_addr, "serving");
    let task = tokio::spawn(
        async move {
            listener::serve_tls_counted(
                listener,
                tls,
                webhook,
                &config,
                shutdown_rx,
                &readiness,
                &draining,
                Some(counted),
            )
            .await;
            let _ = admin_task.await;
            let _ = dashboard_task.await;
            if let Some(probe) = lag_probe {
                probe.abort();
            }
            info!("stopped");
        }
        .instrument(info_span!("webhook_listener", %addr)),
    );
    Ok(Running {
        addr,
        admin_addr,
        dashboard_addr,
        shutdown: shutdown_tx,
        draining: drain,
        task,
    })
}

async fn not_found() -> Response {
    error_body(StatusCode::NOT_FOUND, "NotFound", "no such endpoint")
}

/// What the admin port answers for the pages that moved to the dashboard
/// listener.
async fn moved() -> Response {
    error_body(
        StatusCode::NOT_FOUND,
        "NotFound",
        "not served on the admin port: the dashboard, the readiness report and POST /report/run are on the loopback-only dashboard listener (--dashboard-listen, default 127.0.0.1:8081); reach it with kubectl -n unroot port-forward deploy/unroot 8081",
    )
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.readiness.unready() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        state.metrics.render(),
    )
        .into_response()
}
