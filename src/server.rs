//! The HTTPS webhook listener, the plain-HTTP admin listener, and their
//! graceful shutdown.

pub mod identity;
pub mod readiness;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument as _, Span, field::Empty, info, info_span, warn};

pub use self::identity::{IdentityStore, KubeStore};
pub use self::readiness::Readiness;
use crate::admission;
use crate::admission::validate::{self, NamespaceLabels};
use crate::certs::Resolver;
use crate::metrics::Metrics;
use crate::namespaces::Namespaces;
use crate::policy::Snapshot;

/// Errors from starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An address could not be bound.
    #[error("failed to bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS configuration could not be built.
    #[error("failed to configure TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Audit annotation on every answer: the hash of the policy that decided it.
pub const POLICY_HASH: &str = "policy-hash";

/// Largest AdmissionReview body accepted (the API server's own limit for
/// objects is 3 MiB; a review carries up to two of them).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Listener settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Webhook (HTTPS) address.
    pub listen: SocketAddr,
    /// Admin (plain HTTP) address.
    pub admin_listen: SocketAddr,
    /// Longest time a client may take to send its request headers and body.
    pub request_timeout: Duration,
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
            request_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The policy in force, swapped atomically on reload.
    pub policy: Arc<ArcSwap<Snapshot>>,
    /// Where namespace labels come from.
    pub namespaces: Namespaces,
    /// The API server client, when running against a cluster.
    pub kube: Option<kube::Client>,
    /// Where identity ConfigMaps are applied. `None` (no Kubernetes client):
    /// a pod that needs one is denied.
    pub identity_store: Option<Arc<dyn IdentityStore>>,
    /// The metrics registry and handles.
    pub metrics: Metrics,
    /// Readiness conditions for `/readyz`.
    pub readiness: Arc<Readiness>,
    /// Longest time a request body may take to arrive.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("policy", &self.policy.load().hash)
            .field("namespaces", &self.namespaces)
            .field("kube", &self.kube.is_some())
            .finish_non_exhaustive()
    }
}

/// A running server: its bound addresses, and how to stop it.
#[derive(Debug)]
pub struct Running {
    /// The webhook's bound address.
    pub addr: SocketAddr,
    /// The admin listener's bound address.
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
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

/// The webhook router: `/mutate` (and later endpoints) over HTTPS.
pub fn webhook_router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .fallback(not_found)
        .with_state(state)
}

/// The admin router: `/healthz`, `/readyz`, `/metrics`.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

/// Binds both listeners and serves until the shutdown handle fires.
pub async fn start(config: Config, state: AppState, resolver: Arc<Resolver>) -> Result<Running> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let admin = TcpListener::bind(config.admin_listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.admin_listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    let admin_addr = admin.local_addr().map_err(|source| Error::Bind {
        addr: config.admin_listen,
        source,
    })?;

    let mut tls = rustls::ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let readiness = Arc::clone(&state.readiness);
    let webhook = webhook_router(state.clone());
    let admin_app = admin_router(state);

    let mut admin_rx = shutdown_rx.clone();
    let admin_task = tokio::spawn(
        async move {
            let served = axum::serve(admin, admin_app)
                .with_graceful_shutdown(async move { stopped(&mut admin_rx).await })
                .await;
            if let Err(e) = served {
                warn!(error = %e, "admin listener failed");
            }
        }
        .instrument(info_span!("admin_listener", %admin_addr)),
    );

    readiness.set("serving", true);
    info!(%addr, %admin_addr, "serving");
    let task = tokio::spawn(
        async move {
            serve_tls(
                listener,
                acceptor,
                webhook,
                &config,
                shutdown_rx,
                &readiness,
            )
            .await;
            let _ = admin_task.await;
            info!("stopped");
        }
        .instrument(info_span!("webhook_listener", %addr)),
    );
    Ok(Running {
        addr,
        admin_addr,
        shutdown: shutdown_tx,
        task,
    })
}

async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    config: &Config,
    mut shutdown: watch::Receiver<bool>,
    readiness: &Readiness,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(config.max_connections));
    loop {
        let permit = tokio::select! {
            () = stopped(&mut shutdown) => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off, don't spin.
                warn!(error = %e, "failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        let handshake_timeout = config.handshake_timeout;
        let header_timeout = config.request_timeout;
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            builder.http2().timer(TokioTimer::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    readiness.set("serving", false);
    drop(listener);
    info!("shutting down: finishing in-flight reviews");
    if tokio::time::timeout(config.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(timeout = ?config.drain_timeout, "in-flight reviews did not finish in time");
    }
}

/// Resolves once shutdown was requested (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn error_body(status: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": status.as_u16(),
    });
    (status, axum::Json(body)).into_response()
}

async fn not_found() -> Response {
    error_body(StatusCode::NOT_FOUND, "NotFound", "no such endpoint")
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.readiness.unready() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        state.metrics.render(),
    )
        .into_response()
}

/// Reads the body of a webhook call, refusing what is not a JSON review.
async fn read_body(
    webhook: &'static str,
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Response> {
    let reject = |status: StatusCode, reason: &'static str, label: &str, message: String| {
        state
            .metrics
            .rejected_requests
            .with_label_values(&[webhook, label])
            .inc();
        error_body(status, reason, &message)
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "unsupported_media_type",
            format!("content type {content_type:?} is not supported: send application/json"),
        ));
    }
    let too_large = || {
        format!(
            "request body is larger than the {} MiB limit",
            MAX_BODY_BYTES / (1024 * 1024)
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "too_large",
            too_large(),
        ));
    }
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match tokio::time::timeout(state.request_timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "too_large",
            too_large(),
        )),
        Ok(Err(e)) => Err(reject(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "malformed",
            format!("failed to read request body: {e}"),
        )),
        Err(_) => Err(reject(
            StatusCode::REQUEST_TIMEOUT,
            "Timeout",
            "body_timeout",
            format!(
                "request body did not arrive within {} s",
                state.request_timeout.as_secs_f64()
            ),
        )),
    }
}

/// Decodes a review, answers it with `decide`, and records the outcome.
async fn handle(
    webhook: &'static str,
    state: &AppState,
    request: Request,
    decide: impl AsyncFnOnce(&admission::Request, &AppState) -> admission::Response,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match read_body(webhook, state, &parts.headers, body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let started = Instant::now();
    let span = Span::current();
    let (api_version, response, operation) = match admission::decode(&bytes) {
        Err(e) => {
            state
                .metrics
                .rejected_requests
                .with_label_values(&[webhook, "malformed"])
                .inc();
            warn!(error = %e, "refused a request that is not an AdmissionReview");
            return error_body(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string());
        }
        Ok(Err((uid, message))) => {
            span.record("uid", uid.as_str());
            warn!(%message, "malformed review");
            let response = admission::Response::deny(&uid, 400, "BadRequest", message);
            (admission::VERSIONS[0].to_owned(), response, String::new())
        }
        Ok(Ok(review)) => {
            let req = &review.request;
            span.record("uid", req.uid.as_str());
            span.record("namespace", req.namespace());
            span.record("name", req.name());
            span.record("operation", req.operation.as_str());
            let mut response = decide(req, state).await;
            response
                .audit_annotations
                .insert(POLICY_HASH.to_owned(), state.policy.load().hash.clone());
            (review.api_version, response, req.operation.clone())
        }
    };
    let outcome = response.outcome();
    span.record("outcome", outcome);
    state
        .metrics
        .admission_requests
        .with_label_values(&[webhook, operation_label(&operation), outcome])
        .inc();
    if !response.warnings.is_empty() {
        state
            .metrics
            .warnings
            .with_label_values(&[webhook])
            .inc_by(response.warnings.len() as u64);
    }
    state
        .metrics
        .admission_duration
        .with_label_values(&[webhook])
        .observe(started.elapsed().as_secs_f64());
    if let Some(status) = response.status.as_ref() {
        info!(outcome, message = %status.message, "answered");
    } else {
        info!(outcome, warnings = response.warnings.len(), "answered");
    }
    axum::Json(admission::review(&api_version, &response)).into_response()
}

/// Bounded label values: the operations Kubernetes defines, else `other`.
fn operation_label(operation: &str) -> &'static str {
    match operation {
        "CREATE" => "CREATE",
        "UPDATE" => "UPDATE",
        "DELETE" => "DELETE",
        "CONNECT" => "CONNECT",
        _ => "other",
    }
}

#[tracing::instrument(name = "review", skip_all, fields(webhook = "mutate", uid = Empty, namespace = Empty, name = Empty, operation = Empty, outcome = Empty))]
async fn mutate(State(state): State<AppState>, request: Request) -> Response {
    let _in_flight = InFlight::new(&state.metrics);
    handle("mutate", &state, request, async |req, state| {
        let labels = match state.namespaces.labels(req.namespace()).await {
            Ok(labels) => labels.unwrap_or_default(),
            Err(e) => {
                return admission::Response::deny(
                    &req.uid,
                    500,
                    "InternalError",
                    format!(
                        "Internal error occurred: failed to lookup namespace {:?}: {e}",
                        req.namespace()
                    ),
                );
            }
        };
        let mutation = admission::mutate(req, &state.policy.load(), &labels);
        store_identity(req, state, mutation).await
    })
    .await
}

#[tracing::instrument(name = "review", skip_all, fields(webhook = "validate", uid = Empty, namespace = Empty, name = Empty, operation = Empty, outcome = Empty))]
async fn validate(State(state): State<AppState>, request: Request) -> Response {
    let _in_flight = InFlight::new(&state.metrics);
    handle("validate", &state, request, async |req, state| {
        if req.resource.group.is_empty() && req.resource.resource == "configmaps" {
            return admission::validate_policy_configmap(req);
        }
        let policy = state.policy.load_full();
        let metrics = &state.metrics.pod_security;
        if let Some(answer) = validate::before_lookup(req, &policy, metrics) {
            return answer;
        }
        let namespace = match state.namespaces.labels(req.namespace()).await {
            Ok(Some(labels)) => NamespaceLabels::Found(labels),
            Ok(None) => NamespaceLabels::Unknown,
            Err(e) => NamespaceLabels::Failed(e),
        };
        let pod = if validate::needs_pod(req) {
            match read_pod_with_ephemeral_containers(state, req).await {
                Ok(pod) => Some(pod),
                Err(message) => {
                    return admission::Response::deny(&req.uid, 500, "InternalError", message);
                }
            }
        } else {
            None
        };
        let none = BTreeMap::new();
        let labels = match &namespace {
            NamespaceLabels::Found(labels) => labels,
            _ => &none,
        };
        let input = crate::mutate::Input {
            policy: &policy,
            namespace_labels: labels,
            requester: &req.user_info.username,
        };
        let provenance =
            |pod: &k8s_openapi::api::core::v1::Pod| crate::mutate::provenance_index(pod, &input);
        validate::evaluate(req, &policy, &namespace, pod, provenance, metrics)
    })
    .await
}

/// For a 1.20/1.21 `pods/ephemeralcontainers` request: the stored pod with
/// the requested ephemeral containers in it.
async fn read_pod_with_ephemeral_containers(
    state: &AppState,
    req: &admission::Request,
) -> Result<k8s_openapi::api::core::v1::Pod, String> {
    let failed = |why: String| {
        format!(
            "Internal error occurred: failed to read pod {:?} to evaluate its ephemeral containers: {why}",
            req.name()
        )
    };
    let client = state
        .kube
        .clone()
        .ok_or_else(|| failed("no cluster access".to_owned()))?;
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client, req.namespace());
    let pod = api
        .get(req.name())
        .await
        .map_err(|e| failed(e.to_string()))?;
    let object = req
        .object
        .as_ref()
        .ok_or_else(|| failed("no object in the request".to_owned()))?;
    validate::merge_ephemeral_containers(pod, object)
        .ok_or_else(|| failed("the object is not an EphemeralContainers list".to_owned()))
}

/// Applies the identity ConfigMap a mutation needs, then answers; a pod whose
/// ConfigMap cannot be written is denied (it could not start without it).
async fn store_identity(
    req: &admission::Request,
    state: &AppState,
    mutation: admission::Mutation,
) -> admission::Response {
    let admission::Mutation { response, identity } = mutation;
    let Some(config_map) = identity.filter(|_| response.allowed) else {
        return response;
    };
    let name = config_map.metadata.name.clone().unwrap_or_default();
    let namespace = req.namespace();
    let Some(store) = &state.identity_store else {
        return admission::Response::deny(
            &req.uid,
            500,
            "InternalError",
            format!(
                "unroot cannot provision this pod: writing the identity ConfigMap {namespace}/{name} needs a Kubernetes client, and this unroot runs without one (run it in the cluster, or remove the unroot.dev/ identity annotations)"
            ),
        );
    };
    if req.dry_run == Some(true) {
        info!(configmap = %name, "dry run: identity ConfigMap not written");
        return response;
    }
    match store.apply(config_map).await {
        Ok(()) => {
            info!(configmap = %name, "identity ConfigMap applied");
            response
        }
        Err(e) => {
            warn!(configmap = %name, error = %e, "failed to apply the identity ConfigMap");
            admission::Response::deny(
                &req.uid,
                500,
                "InternalError",
                format!("failed to apply the identity ConfigMap {namespace}/{name}: {e}"),
            )
        }
    }
}

/// Counts a review in `unroot_admission_in_flight` while it lives.
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn new(metrics: &Metrics) -> Self {
        metrics.in_flight.inc();
        Self(metrics.in_flight.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
