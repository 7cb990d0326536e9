//! Shared test harness: starts the real server on ephemeral ports with a
//! self-issued certificate, and talks to it over real TLS.
#![allow(
    dead_code,
    clippy::missing_panics_doc,
    clippy::must_use_candidate,
    clippy::unnecessary_wraps
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use futures::future::BoxFuture;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::ConfigMap;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use unroot::certs::{self, Authority, Resolver};
use unroot::metrics::Metrics;
use unroot::namespaces::Namespaces;
use unroot::policy::{Document, DocumentFile as _, Snapshot};
use unroot::readiness::Readiness;
use unroot::server::{self, AppState, IdentityStore, PodLister, Running};

/// Namespace name → labels.
pub type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// A server under test.
pub struct Server {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The loopback-only dashboard listener (`None` for a server started
    /// elsewhere that did not say).
    pub dashboard_addr: Option<SocketAddr>,
    pub ca_pem: String,
    /// The client certificate (PEM chain and key) the test client presents,
    /// with [`Options::authenticated`].
    pub identity: Option<(String, String)>,
    pub state: Option<AppState>,
    running: Option<Running>,
}

/// The name of the client certificate the API server presents in the
/// tests (`--client-ca-name`).
pub const APISERVER_CLIENT: &str = "kube-apiserver-webhook-client";

/// Options for [`start_with`].
pub struct Options {
    pub policy: Document,
    pub request_timeout: Duration,
    /// How long a keep-alive connection may idle between requests.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Namespace → labels; `None` runs as with no cluster.
    pub namespaces: Option<BTreeMap<String, BTreeMap<String, String>>>,
    /// Namespace → labels, as the namespace cache would hold them.
    pub namespace_labels: NamespaceLabels,
    /// Where identity ConfigMaps go (`None`: no Kubernetes client).
    pub identity_store: Option<Arc<dyn IdentityStore>>,
    /// Who may cause the identity ConfigMap write (default: any caller, as
    /// with `--unauthenticated-provisioning`).
    pub side_effects: server::SideEffects,
    /// The listener's TLS configuration (`None`: a fresh self-issued
    /// certificate, no client certificate asked for). With one, the
    /// returned `ca_pem` is not the one it serves: set it.
    pub tls: Option<rustls::ServerConfig>,
    /// Where the audit log goes (`None`: only the dashboard's ring).
    pub audit_sink: Option<Box<dyn std::io::Write + Send>>,
    /// The readiness report the dashboard shows (no task runs in tests).
    pub report: unroot::report::task::Handle,
    /// Where a namespace's pods are listed (`None`: no Kubernetes client).
    pub pods: Option<Arc<dyn PodLister>>,
    /// The review deadline's maximum and the load-shedding limits.
    pub limits: server::Limits,
    /// An API server client (`None`: no Kubernetes client); stored pods are
    /// read through it unless `stored_pods` is given.
    pub kube: Option<kube::Client>,
    /// Where a stored pod is read, overriding `kube`.
    pub stored_pods: Option<Arc<dyn server::PodReader>>,
    /// Where namespace labels come from, overriding `namespaces` and
    /// `namespace_labels` (e.g. `Namespaces::watch` on a fake API server).
    pub namespace_source: Option<Namespaces>,
    /// Callers are authenticated, as with `--client-ca`: the listener
    /// requires a client certificate for [`APISERVER_CLIENT`] from a fresh
    /// client CA, and the test client presents one. Ignored with `tls`.
    pub authenticated: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            policy: Document::embedded(),
            request_timeout: Duration::from_secs(10),
            idle_timeout: server::Config::default().idle_timeout,
            max_connections: server::Config::default().max_connections,
            namespaces: None,
            namespace_labels: NamespaceLabels::new(),
            identity_store: None,
            side_effects: server::SideEffects::AnyCaller,
            tls: None,
            audit_sink: None,
            report: unroot::report::task::Handle::default(),
            pods: None,
            limits: server::Limits::default(),
            kube: None,
            stored_pods: None,
            namespace_source: None,
            authenticated: false,
        }
    }
}

/// Namespace labels for [`Options::namespaces`]: `[("ns", &[("k", "v")])]`.
pub fn namespaces(
    list: &[(&str, &[(&str, &str)])],
) -> Option<BTreeMap<String, BTreeMap<String, String>>> {
    Some(
        list.iter()
            .map(|(ns, labels)| {
                let labels = labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                ((*ns).to_owned(), labels)
            })
            .collect(),
    )
}

/// Labels from `k=v` pairs.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// An identity store that records what it is asked to apply, and fails
/// with `fail` when set.
#[derive(Debug, Default)]
pub struct RecordingStore {
    pub applied: Mutex<Vec<ConfigMap>>,
    pub fail: Option<String>,
}

impl RecordingStore {
    pub fn applied(&self) -> Vec<ConfigMap> {
        self.applied.lock().unwrap().clone()
    }
}

impl IdentityStore for RecordingStore {
    fn apply(&self, config_map: ConfigMap) -> BoxFuture<'_, unroot::cluster::Result<()>> {
        Box::pin(async move {
            if let Some(reason) = &self.fail {
                return Err(reason.clone().into());
            }
            self.applied.lock().unwrap().push(config_map);
            Ok(())
        })
    }
}

pub async fn start() -> Server {
    start_with(Options::default()).await
}

pub async fn start_with(options: Options) -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (ca_pem, resolver) = serving_resolver();
    let metrics = Metrics::new();
    let state = AppState {
        policy: Arc::new(ArcSwap::from_pointee(Snapshot::new(options.policy))),
        namespaces: match (
            options.namespace_source,
            options.namespaces,
            options.namespace_labels,
        ) {
            (Some(source), _, _) => source,
            (None, Some(map), _) => Namespaces::Fixed(Arc::new(map)),
            (None, None, map) if !map.is_empty() => Namespaces::Fixed(Arc::new(map)),
            (None, None, _) => Namespaces::Unknown,
        },
        stored_pods: options.stored_pods.or_else(|| {
            options
                .kube
                .map(|c| Arc::new(server::KubePods::new(c)) as Arc<dyn server::PodReader>)
        }),
        identity_store: options.identity_store,
        side_effects: options.side_effects,
        audit: unroot::audit::Log::start(options.audit_sink, metrics.registry()),
        report: options.report,
        metrics,
        pods: options.pods,
        readiness: Arc::new(Readiness::new(&["serving"])),
        request_timeout: options.request_timeout,
        limits: options.limits,
    };
    let config = server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        dashboard_listen: "127.0.0.1:0".parse().unwrap(),
        request_timeout: options.request_timeout,
        idle_timeout: options.idle_timeout,
        max_connections: options.max_connections,
        ..server::Config::default()
    };
    let (tls, identity) = match options.tls {
        Some(tls) => (tls, None),
        None if options.authenticated => {
            let client_ca = ClientCa::new("apiserver-client-ca");
            (
                client_ca.required_by(resolver, &[APISERVER_CLIENT]),
                Some(client_ca.client_cert(APISERVER_CLIENT)),
            )
        }
        None => (certs::server_config(resolver), None),
    };
    let running = server::start(config, state.clone(), Arc::new(tls))
        .await
        .unwrap();
    Server {
        addr: running.addr,
        admin_addr: running.admin_addr,
        dashboard_addr: Some(running.dashboard_addr),
        ca_pem,
        identity,
        state: Some(state),
        running: Some(running),
    }
}

/// A client configuration that trusts exactly `ca_pem`.
pub fn client_config(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert: CertificateDer<'static> = cert.unwrap();
        roots.add(cert).unwrap();
    }
    rustls::ClientConfig::builder_with_protocol_versions(versions)
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A serving certificate for the default names, from a fresh CA: the CA's
/// PEM (for clients to trust) and the resolver serving it.
pub fn serving_resolver() -> (String, Arc<Resolver>) {
    let ca = Authority::issue().unwrap();
    let serving = ca.issue_serving(&certs::serving_names(&[])).unwrap();
    let key = certs::certified_key(
        serving.cert_pem.as_bytes(),
        serving.key_pem.as_bytes(),
        std::path::Path::new("test"),
    )
    .unwrap();
    (ca.cert_pem, Arc::new(Resolver::new(key)))
}

/// A client configuration that trusts `serving_ca` and presents `identity`
/// (certificate and key PEM), if any.
pub fn client_config_with_identity(
    serving_ca: &str,
    identity: Option<&(String, String)>,
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(serving_ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    }
}

/// A CA for client certificates (the API server's, with `--client-ca`).
pub struct ClientCa {
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl ClientCa {
    pub fn new(name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            pem,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A listener configuration serving `resolver`'s certificate that
    /// requires a client certificate from this CA for one of `names`
    /// (`--client-ca`, `--client-ca-name`).
    pub fn required_by(&self, resolver: Arc<Resolver>, names: &[&str]) -> rustls::ServerConfig {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client-ca.crt");
        std::fs::write(&file, &self.pem).unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        certs::server_config_with_client_ca(resolver, &file, &names).unwrap()
    }

    /// A client certificate (`clientAuth`) for the CN `name`: PEM chain and
    /// key.
    pub fn client_cert(&self, name: &str) -> (String, String) {
        self.client_cert_with_dns(name, &[])
    }

    /// A client certificate (`clientAuth`) for the CN `name` and the DNS
    /// SANs `dns`: PEM chain and key.
    pub fn client_cert_with_dns(&self, name: &str, dns: &[&str]) -> (String, String) {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = dns.iter().map(|d| (*d).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// POSTs `review` to `/mutate` over a fresh HTTP/1.1 connection that trusts
/// `serving_ca` and presents `identity`: the HTTP status, or the error (a
/// refused client certificate shows as one, with TLS 1.3 only once the
/// request is sent).
pub async fn post_review_with_identity(
    addr: SocketAddr,
    serving_ca: &str,
    identity: Option<&(String, String)>,
    review: &Value,
) -> Result<u16, String> {
    let config = client_config_with_identity(serving_ca, identity);
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = hyper::Request::post("/mutate")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(review).unwrap())))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e:?}"))?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    Ok(status)
}

/// The provisioning fixture policy.
pub fn provisioning_policy() -> Document {
    Document::from_file(std::path::Path::new(
        "tests/fixtures/provisioning/policy.yaml",
    ))
    .unwrap()
}

/// The provisioning fixture policy, `hub-users` selected for provisioning,
/// and identity ConfigMaps going to `store`.
pub fn hub(store: Arc<dyn IdentityStore>) -> Options {
    Options {
        policy: provisioning_policy(),
        namespace_labels: BTreeMap::from([(
            "hub-users".to_owned(),
            labels(&[("unroot.dev/provisioning", "enabled")]),
        )]),
        identity_store: Some(store),
        ..Default::default()
    }
}

/// The provisioning fixture policy, with homes on a PVC (restricted forbids
/// the fixture's NFS volume).
pub fn provisioning_policy_on_pvc() -> Document {
    let mut policy = provisioning_policy();
    policy.provisioning.home_volume.as_mut().unwrap().source =
        serde_json::from_value(json!({"persistentVolumeClaim": {"claimName": "homes"}})).unwrap();
    policy
}

/// An HTTP response as the tests see it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Server {
    /// A client for a server started elsewhere (e.g. the binary).
    pub fn external(addr: SocketAddr, admin_addr: SocketAddr, ca_pem: String) -> Self {
        Self {
            addr,
            admin_addr,
            dashboard_addr: None,
            ca_pem,
            identity: None,
            state: None,
            running: None,
        }
    }

    /// Opens a TLS connection to the webhook listener.
    pub async fn connect(&self) -> TlsStream<TcpStream> {
        self.connect_with(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .await
    }

    pub async fn connect_with(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> TlsStream<TcpStream> {
        let config = match &self.identity {
            None => client_config(&self.ca_pem, versions),
            Some(_) => client_config_with_identity(&self.ca_pem, self.identity.as_ref()),
        };
        let connector = TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }

    /// POSTs `body` to `path` over TLS with the given content type.
    pub async fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        let request = hyper::Request::post(path)
            .header("host", "localhost")
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        exchange(self.connect().await, request).await
    }

    /// POSTs an AdmissionReview to `path` and returns the HTTP reply.
    pub async fn review(&self, path: &str, review: &Value) -> Reply {
        self.post(
            path,
            "application/json",
            serde_json::to_vec(review).unwrap(),
        )
        .await
    }

    /// POSTs an AdmissionReview and returns its `response`, checking the
    /// envelope (HTTP 200, same apiVersion/kind, same uid).
    pub async fn admit(&self, path: &str, review: &Value) -> Value {
        let reply = self.review(path, review).await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let body = reply.json();
        assert_eq!(body["apiVersion"], review["apiVersion"]);
        assert_eq!(body["kind"], "AdmissionReview");
        assert_eq!(body["response"]["uid"], review["request"]["uid"]);
        body["response"].clone()
    }

    /// GETs a path on the admin listener.
    pub async fn admin_get(&self, path: &str) -> Reply {
        let request = hyper::Request::get(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        exchange(TcpStream::connect(self.admin_addr).await.unwrap(), request).await
    }

    /// POSTs an empty body to a path on the admin listener.
    pub async fn admin_post(&self, path: &str) -> Reply {
        let request = hyper::Request::post(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        exchange(TcpStream::connect(self.admin_addr).await.unwrap(), request).await
    }

    /// GETs a path on the dashboard listener.
    pub async fn dashboard_get(&self, path: &str) -> Reply {
        let request = hyper::Request::get(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        exchange(self.dashboard_stream().await, request).await
    }

    /// POSTs an empty body to a path on the dashboard listener.
    pub async fn dashboard_post(&self, path: &str) -> Reply {
        let request = hyper::Request::post(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        exchange(self.dashboard_stream().await, request).await
    }

    async fn dashboard_stream(&self) -> TcpStream {
        let addr = self
            .dashboard_addr
            .expect("the dashboard listener's address");
        TcpStream::connect(addr).await.unwrap()
    }

    /// The value of one Prometheus sample, e.g.
    /// `unroot_admission_requests_total{kind="Pod",operation="CREATE",outcome="patched",webhook="mutate"}`.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = String::from_utf8(self.admin_get("/metrics").await.body).unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map(|v| v.trim().parse().unwrap())
    }

    /// The label set of the first sample of `name`, e.g. `{hash="…"}`.
    pub async fn metric_labels(&self, name: &str) -> Option<String> {
        let text = String::from_utf8(self.admin_get("/metrics").await.body).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).filter(|rest| rest.starts_with('{')))
            .and_then(|rest| rest.split_once(' '))
            .map(|(labels, _)| labels.to_owned())
    }

    /// Starts draining, as `serve` does when a signal arrives: HTTP/1.1
    /// answers close their connections from now on.
    pub fn start_draining(&self) {
        if let Some(r) = &self.running {
            r.start_draining();
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// Sends one HTTP/1.1 request over `io` and reads the whole reply.
async fn exchange<IO>(io: IO, request: hyper::Request<Full<Bytes>>) -> Reply
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// An AdmissionReview for `object` (a Pod unless `kind` says otherwise),
/// requested by `username`.
pub fn review_as(operation: &str, namespace: &str, object: &Value, username: &str) -> Value {
    let mut review = review_for(operation, namespace, object);
    review["request"]["userInfo"]["username"] = json!(username);
    review
}

/// An AdmissionReview for `object` (a Pod unless `kind` says otherwise).
pub fn review_for(operation: &str, namespace: &str, object: &Value) -> Value {
    let kind = object["kind"].as_str().unwrap_or("Pod");
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{}", object["metadata"]["name"].as_str().unwrap_or("x")),
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": format!("{}s", kind.to_lowercase())},
            "requestKind": {"group": "", "version": "v1", "kind": kind},
            "name": object["metadata"]["name"],
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
        }
    })
}

/// Decodes the JSON Patch of an admission response (empty when none).
pub fn patch_of(response: &Value) -> json_patch::Patch {
    match response["patch"].as_str() {
        None => json_patch::Patch(Vec::new()),
        Some(b64) => {
            assert_eq!(response["patchType"], "JSONPatch");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        }
    }
}

/// Applies the patch of `response` to `object`.
pub fn apply(object: &Value, response: &Value) -> Value {
    let mut out = object.clone();
    json_patch::patch(&mut out, &patch_of(response)).unwrap();
    out
}

/// Every way `pod` falls short of the hardening rules (empty when it is
/// hardened): runAsNonRoot at pod level, a non-zero uid, group and fsGroup,
/// a seccomp profile, and per container allowPrivilegeEscalation=false and
/// exactly one `ALL` in capabilities.drop.
pub fn hardening_gaps(pod: &Value) -> Vec<String> {
    let mut gaps = Vec::new();
    let psc = &pod["spec"]["securityContext"];
    if psc["runAsNonRoot"] != json!(true) {
        gaps.push("pod runAsNonRoot is not true".to_owned());
    }
    for field in ["runAsGroup", "fsGroup"] {
        if psc[field].as_i64().is_none_or(|v| v == 0) {
            gaps.push(format!("pod {field} is unset or 0"));
        }
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in pod["spec"][list].as_array().into_iter().flatten() {
            let name = format!("{list}/{}", c["name"]);
            let sc = &c["securityContext"];
            let uid = sc["runAsUser"]
                .as_i64()
                .or_else(|| psc["runAsUser"].as_i64());
            if uid.is_none_or(|u| u == 0) {
                gaps.push(format!("{name}: effective runAsUser is unset or 0"));
            }
            if sc["seccompProfile"]["type"].is_null() && psc["seccompProfile"]["type"].is_null() {
                gaps.push(format!("{name}: no seccomp profile"));
            }
            if sc["allowPrivilegeEscalation"] != json!(false) {
                gaps.push(format!("{name}: allowPrivilegeEscalation is not false"));
            }
            let drops = sc["capabilities"]["drop"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if drops.iter().filter(|d| *d == "ALL").count() != 1 {
                gaps.push(format!(
                    "{name}: capabilities.drop has not exactly one ALL: {drops:?}"
                ));
            }
        }
    }
    gaps
}

/// Reads a YAML fixture (one document) as JSON.
pub fn fixture(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Compares `actual` with the golden JSON file at `path`; with
/// `UPDATE_FIXTURES=1` in the environment, rewrites the file instead.
pub fn golden(path: &str, actual: &Value) {
    let pretty = format!("{}\n", serde_json::to_string_pretty(actual).unwrap());
    if std::env::var_os("UPDATE_FIXTURES").is_some_and(|v| v == "1") {
        std::fs::write(path, pretty).unwrap();
        return;
    }
    let want = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (regenerate with UPDATE_FIXTURES=1)"));
    let want: Value = serde_json::from_str(&want).unwrap();
    assert_eq!(
        actual, &want,
        "{path} differs (regenerate with UPDATE_FIXTURES=1 if the change is intended)"
    );
}

/// The warnings of an admission response.
pub fn warnings_of(response: &Value) -> Vec<String> {
    response["warnings"]
        .as_array()
        .map(|w| w.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// The real binary, `unroot serve --standalone` on ephemeral ports in its own
/// process (with its own descriptors), killed when dropped.
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `unroot serve --standalone` on ephemeral loopback ports with JSON logs,
/// writing its CA to `ca`, with no cluster in its environment.
pub fn serve_command(ca: &std::path::Path, extra: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_unroot"));
    command
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .args([
            "serve",
            "--standalone",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--dashboard-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--ca-cert-out",
        ])
        .arg(ca)
        .args(extra);
    command
}

impl Process {
    /// Starts it with `extra` args; returns it once it logged "serving",
    /// with a client for it.
    pub fn standalone(dir: &std::path::Path, extra: &[&str]) -> (Self, Server) {
        use std::io::BufRead as _;
        let ca = dir.join("ca.crt");
        let mut child = serve_command(&ca, extra)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let (addr, admin, dashboard) = loop {
            let line = lines.next().expect("server logged 'serving'").unwrap();
            let event: Value = serde_json::from_str(&line).unwrap();
            if event["message"] == "serving" {
                let addr = |k: &str| event[k].as_str().unwrap().parse().unwrap();
                break (addr("addr"), addr("admin_addr"), addr("dashboard_addr"));
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let ca_pem = std::fs::read_to_string(ca).unwrap();
        let mut server = Server::external(addr, admin, ca_pem);
        server.dashboard_addr = Some(dashboard);
        (Self(child), server)
    }

    /// Sends it SIGTERM.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Its exit code, waiting up to 10 s for it to exit.
    pub async fn exit_code(mut self) -> Option<i32> {
        tokio::task::spawn_blocking(move || {
            for _ in 0..200 {
                if let Some(status) = self.0.try_wait().unwrap() {
                    return status.code();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            None
        })
        .await
        .unwrap()
    }
}
