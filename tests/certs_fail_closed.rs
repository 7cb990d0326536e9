//! A first install fails open until it has served, then closed for good:
//! the certificate task (`--manage-certs`) against a fake API server that
//! stores the shipped webhook configurations (`unroot` failing open, the
//! empty `unroot-fail-closed`), the Secret, the Lease and the Namespace, and
//! that calls the webhook the way the real one does: the serving check's dry
//! run is sent, as an AdmissionReview, to a real unroot server over real TLS
//! verified against the caBundle stored in the configuration (the install's
//! "Service"), and its denial comes back to the caller as the API server
//! words it. Server-side apply is emulated as far as unroot's field manager
//! `unroot-served` needs it: what it stops naming goes.
//!
//! The story: no replica reachable (an image that cannot be pulled) → the
//! caBundle and the owner reference are written but nothing fails closed; a
//! replica serves → each named webhook gets a failing-closed copy and its
//! original is turned off, and the configurations record when; a changed
//! copy or original is repaired; a restarted task with no replica reachable
//! re-arms a re-created configuration from what the other one recorded; a
//! webhook the annotation stops naming gets its original back; deleting
//! every configuration (the recovery command) forgets it, and re-applied
//! ones fail open until served again.

use crate::common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use unroot::certs::issue::Names;
use unroot::certs::manage::{self, Config};
use unroot::certs::rotation::Policy;
use unroot::certs::secret::Loader;
use unroot::certs::{self, Resolver};

const NS: &str = "unroot";
const NS_UID: &str = "5f0c9a52-unroot-namespace";
const MUTATING: &str = "mutatingwebhookconfigurations";
const VALIDATING: &str = "validatingwebhookconfigurations";
const ORIGINALS: &str = "unroot";
const TWINS: &str = "unroot-fail-closed";
const FAIL_CLOSED: [&str; 3] = [
    "mutate.pods.unroot.dev",
    "validate.pods.unroot.dev",
    "validate.namespaces.unroot.dev",
];

/// What the fake API server holds.
#[derive(Default)]
struct Store {
    version: u64,
    /// Path (e.g. `/api/v1/namespaces/unroot/secrets/unroot-tls`) → the
    /// version of its last change and the object; `None` once deleted (a
    /// tombstone, so watches see it go).
    objects: BTreeMap<String, (u64, Option<Value>)>,
    /// Where the Service `unroot/unroot` leads: a replica's address.
    backend: Option<SocketAddr>,
    /// Serving checks received, and how many a replica answered.
    checks: u32,
    answered: u32,
    /// Events recorded (their reasons).
    events: Vec<String>,
}

struct Fake {
    store: Mutex<Store>,
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "reason": reason, "message": message, "code": code}),
    )
}

fn query(uri: &hyper::Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%3D", "=")))
        .collect()
}

/// Server-side apply, as far as these objects need it: maps merge, the
/// `webhooks` list merges by name (naming a webhook that does not exist is
/// refused, as on the real API server) and `ownerReferences` by uid.
fn merge(stored: &mut Value, applied: &Value, field: &str) -> Result<(), String> {
    match (stored, applied) {
        (Value::Object(s), Value::Object(a)) => {
            for (k, v) in a {
                match s.get_mut(k) {
                    Some(existing) => merge(existing, v, k)?,
                    None => {
                        s.insert(k.clone(), v.clone());
                    }
                }
            }
            Ok(())
        }
        (Value::Array(s), Value::Array(a)) if field == "webhooks" || field == "ownerReferences" => {
            let key = if field == "webhooks" { "name" } else { "uid" };
            for item in a {
                match s.iter_mut().find(|x| x[key] == item[key]) {
                    Some(existing) => merge(existing, item, "")?,
                    // A half webhook is refused, as on the real API server.
                    None if field == "webhooks" && item.get("clientConfig").is_none() => {
                        return Err(format!("webhooks[{}]: no such webhook", item[key]));
                    }
                    None => s.push(item.clone()),
                }
            }
            Ok(())
        }
        (s, a) => {
            *s = a.clone();
            Ok(())
        }
    }
}

impl Fake {
    fn new() -> Arc<Self> {
        let fake = Arc::new(Self {
            store: Mutex::new(Store::default()),
        });
        fake.put(
            &format!("/api/v1/namespaces/{NS}"),
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": NS, "uid": NS_UID}}),
        );
        fake.put(
            &format!("/api/v1/namespaces/{NS}/secrets/unroot-tls"),
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": "unroot-tls", "namespace": NS}}),
        );
        fake.put(
            &format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/unroot-certs"),
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": "unroot-certs", "namespace": NS}, "spec": {}}),
        );
        fake.install();
        fake
    }

    /// `kubectl apply -k manifests/` on empty ground: the shipped
    /// configurations, as they are in webhook-config/.
    fn install(&self) {
        for resource in [MUTATING, VALIDATING] {
            self.install_one(resource);
        }
    }

    /// Creates the shipped configurations of one kind (an object stored
    /// under the same name goes).
    fn install_one(&self, resource: &str) {
        let (original, kind) = if resource == MUTATING {
            (
                "webhook-config/mutating.yaml",
                "MutatingWebhookConfiguration",
            )
        } else {
            (
                "webhook-config/validating.yaml",
                "ValidatingWebhookConfiguration",
            )
        };
        let text = std::fs::read_to_string(original).unwrap();
        self.put(
            &config_path(resource, ORIGINALS),
            serde_saphyr::from_str(&text).unwrap(),
        );
        let text = std::fs::read_to_string("webhook-config/fail-closed.yaml").unwrap();
        let twin = serde_saphyr::from_multiple::<Value>(&text)
            .unwrap()
            .into_iter()
            .find(|d| d["kind"] == kind)
            .unwrap();
        self.put(&config_path(resource, TWINS), twin);
    }

    fn put(&self, path: &str, mut object: Value) {
        let mut store = self.store.lock().unwrap();
        store.version += 1;
        object["metadata"]["resourceVersion"] = json!(store.version.to_string());
        let version = store.version;
        store
            .objects
            .insert(path.to_owned(), (version, Some(object)));
    }

    fn delete(&self, path: &str) {
        let mut store = self.store.lock().unwrap();
        store.version += 1;
        let version = store.version;
        store.objects.insert(path.to_owned(), (version, None));
    }

    fn get(&self, path: &str) -> Option<Value> {
        self.store
            .lock()
            .unwrap()
            .objects
            .get(path)
            .and_then(|(_, o)| o.clone())
    }

    /// Changes a stored object as someone else would (a new version).
    fn edit(&self, path: &str, change: impl FnOnce(&mut Value)) {
        let mut object = self.get(path).unwrap();
        change(&mut object);
        self.put(path, object);
    }

    fn set_backend(&self, backend: Option<SocketAddr>) {
        self.store.lock().unwrap().backend = backend;
    }

    fn checks(&self) -> (u32, u32) {
        let store = self.store.lock().unwrap();
        (store.checks, store.answered)
    }

    async fn handle(&self, req: hyper::Request<kube::client::Body>) -> (u16, Value) {
        let method = req.method().to_string();
        let uri = req.uri().clone();
        let path = uri.path().to_owned();
        let params = query(&uri);
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // A collection (list or watch), selecting by metadata.name.
        let collection = matches!(
            parts.as_slice(),
            ["api", "v1", "namespaces", _, "secrets"]
                | ["apis", "admissionregistration.k8s.io", "v1", _]
        );
        match method.as_str() {
            "GET" if collection => {
                let name = params
                    .get("fieldSelector")
                    .and_then(|f| f.strip_prefix("metadata.name="))
                    .unwrap_or_default();
                let object_path = format!("{path}/{name}");
                if params.get("watch").map(String::as_str) == Some("true") {
                    let since: u64 = params
                        .get("resourceVersion")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    return (200, self.watch(&object_path, since).await);
                }
                let store = self.store.lock().unwrap();
                let items: Vec<Value> = store
                    .objects
                    .get(&object_path)
                    .and_then(|(_, o)| o.clone())
                    .into_iter()
                    .collect();
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "List", "items": items,
                           "metadata": {"resourceVersion": store.version.to_string()}}),
                )
            }
            "GET" => match self.get(&path) {
                Some(object) => (200, object),
                None => status(404, "NotFound", "not found"),
            },
            "PUT" => {
                self.put(&path, body);
                (200, self.get(&path).unwrap())
            }
            "POST" if path.ends_with("/events") => {
                let reason = body["reason"].as_str().unwrap_or_default().to_owned();
                self.store.lock().unwrap().events.push(reason);
                (201, body)
            }
            "PATCH" if params.get("dryRun").map(String::as_str) == Some("All") => {
                self.serving_check(&path, &body).await
            }
            "PATCH" => {
                let Some(mut object) = self.get(&path) else {
                    return status(404, "NotFound", "not found");
                };
                if params.get("fieldManager").map(String::as_str) == Some(SERVED_MANAGER) {
                    forget_served_fields(&mut object, &path);
                }
                if let Err(e) = merge(&mut object, &body, "") {
                    return status(422, "Invalid", &e);
                }
                self.put(&path, object);
                (200, self.get(&path).unwrap())
            }
            _ => status(405, "MethodNotAllowed", &format!("{method} {path}")),
        }
    }

    /// One watch: the object as a MODIFIED (or DELETED) event when it
    /// changed after `since`, else nothing after a short wait (the client
    /// watches again).
    async fn watch(&self, path: &str, since: u64) -> Value {
        let deadline = Instant::now() + Duration::from_millis(300);
        loop {
            {
                let store = self.store.lock().unwrap();
                match store.objects.get(path) {
                    Some((version, Some(object))) if *version > since => {
                        return json!([{"type": "MODIFIED", "object": object}]);
                    }
                    // Deleted: the event carries the version of the deletion.
                    Some((version, None)) if *version > since => {
                        let name = path.rsplit('/').next().unwrap();
                        let kind = if path.contains(MUTATING) {
                            "MutatingWebhookConfiguration"
                        } else if path.contains(VALIDATING) {
                            "ValidatingWebhookConfiguration"
                        } else {
                            "Secret"
                        };
                        return json!([{"type": "DELETED", "object": {
                            "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
                            "metadata": {"name": name, "resourceVersion": version.to_string()}}}]);
                    }
                    _ => {}
                }
            }
            if Instant::now() >= deadline {
                return Value::Null;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A dry-run patch of the Lease: admission as the real API server runs
    /// it, for the webhook that selects the patched object.
    async fn serving_check(&self, path: &str, change: &Value) -> (u16, Value) {
        let Some(old) = self.get(path) else {
            return status(404, "NotFound", "not found");
        };
        let mut new = old.clone();
        merge(&mut new, change, "").unwrap();
        self.store.lock().unwrap().checks += 1;
        let Some(validating) = self.get(&config_path(VALIDATING, ORIGINALS)) else {
            return (200, new);
        };
        let labels: Vec<String> = new["metadata"]["labels"]
            .as_object()
            .map(|l| l.keys().cloned().collect())
            .unwrap_or_default();
        let selects = |w: &Value| {
            w["rules"][0]["resources"] == json!(["leases"])
                && w["objectSelector"]["matchExpressions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|e| {
                        e["operator"] == "Exists" && labels.iter().any(|k| e["key"] == k.as_str())
                    })
        };
        let webhook = validating["webhooks"]
            .as_array()
            .and_then(|hooks| hooks.iter().find(|w| selects(w)));
        let Some(webhook) = webhook.cloned() else {
            return (200, new);
        };
        let name = webhook["name"].as_str().unwrap().to_owned();
        let review = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": format!("check-{}", self.checks().0),
                "kind": {"group": "coordination.k8s.io", "version": "v1", "kind": "Lease"},
                "resource": {"group": "coordination.k8s.io", "version": "v1", "resource": "leases"},
                "namespace": NS, "name": "unroot-certs", "operation": "UPDATE",
                "userInfo": {"username": "system:serviceaccount:unroot:unroot"},
                "object": new, "oldObject": old, "dryRun": true,
            }
        });
        let backend = self.store.lock().unwrap().backend;
        match call_webhook(backend, &webhook, &review).await {
            Ok(answer) if answer["response"]["allowed"] == true => (200, new),
            Ok(answer) => {
                self.store.lock().unwrap().answered += 1;
                let message = answer["response"]["status"]["message"]
                    .as_str()
                    .unwrap_or_default();
                status(
                    403,
                    "Forbidden",
                    &format!("admission webhook \"{name}\" denied the request: {message}"),
                )
            }
            // Unreachable or not trusted: the webhook's failurePolicy.
            Err(e) if webhook["failurePolicy"] == "Ignore" => {
                let _ = e;
                (200, new)
            }
            Err(e) => status(
                500,
                "InternalError",
                &format!("Internal error occurred: failed calling webhook \"{name}\": {e}"),
            ),
        }
    }
}

fn config_path(resource: &str, name: &str) -> String {
    format!("/apis/admissionregistration.k8s.io/v1/{resource}/{name}")
}

/// The field manager unroot makes its webhooks fail closed as.
const SERVED_MANAGER: &str = "unroot-served";

/// Server-side apply drops what a manager owned and no longer names: here,
/// before an apply of `unroot-served`, the fields it alone writes (the copies
/// in the twin configuration, the objectSelector that turns an original
/// off, the served annotation).
fn forget_served_fields(object: &mut Value, path: &str) {
    if path.ends_with(TWINS) {
        object["webhooks"] = json!([]);
        return;
    }
    if let Some(a) = object["metadata"]["annotations"].as_object_mut() {
        a.remove("unroot.dev/served");
    }
    for w in object["webhooks"].as_array_mut().into_iter().flatten() {
        if w["objectSelector"] == unroot::certs::fail_closed::disabled_selector() {
            w.as_object_mut().unwrap().remove("objectSelector");
        }
    }
}

/// POSTs `review` to the replica behind the webhook's Service, trusting
/// only the webhook's caBundle, for the name the API server dials.
async fn call_webhook(
    backend: Option<SocketAddr>,
    webhook: &Value,
    review: &Value,
) -> Result<Value, String> {
    let backend = backend.ok_or("no endpoints available for service \"unroot\"")?;
    let bundle = webhook["clientConfig"]["caBundle"]
        .as_str()
        .ok_or("no caBundle")?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(bundle)
        .map_err(|e| e.to_string())?;
    let pem = String::from_utf8(pem).map_err(|e| e.to_string())?;
    let config = common::client_config(&pem, &[&rustls::version::TLS13]);
    let tcp = TcpStream::connect(backend)
        .await
        .map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("unroot.unroot.svc").unwrap(), tcp)
        .await
        .map_err(|e| format!("x509: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request =
        hyper::Request::post(webhook["clientConfig"]["service"]["path"].as_str().unwrap())
            .header("host", "unroot.unroot.svc")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(review).unwrap())))
            .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

fn client(fake: &Arc<Fake>) -> kube::Client {
    let fake = Arc::clone(fake);
    let service = tower::service_fn(move |req: hyper::Request<kube::client::Body>| {
        let fake = Arc::clone(&fake);
        async move {
            let (code, value) = fake.handle(req).await;
            // A watch's events go one per line.
            let bytes = match value {
                Value::Null => Vec::new(),
                Value::Array(events) => events
                    .iter()
                    .flat_map(|e| {
                        let mut line = e.to_string().into_bytes();
                        line.push(b'\n');
                        line
                    })
                    .collect(),
                value => value.to_string().into_bytes(),
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                hyper::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(bytes)))
                    .unwrap(),
            )
        }
    });
    kube::Client::new(service, NS)
}

/// The certificate task of one replica, serving what it loads through
/// `resolver`.
fn start_task(fake: &Arc<Fake>, identity: &str, resolver: &Arc<Resolver>) -> manage::Handle {
    let metrics = certs::Metrics::new(&prometheus::Registry::new());
    let loader = Loader::new(Arc::clone(resolver), metrics.clone(), Arc::new(|_| {}));
    let config = Config {
        namespace: NS.to_owned(),
        secret: "unroot-tls".to_owned(),
        lease: manage::LEASE_NAME.to_owned(),
        identity: identity.to_owned(),
        webhook_configurations: vec!["unroot".to_owned()],
        policy: Policy {
            ca_lifetime: Duration::from_secs(365 * 24 * 3600),
            serving_lifetime: Duration::from_secs(90 * 24 * 3600),
            propagation_delay: Duration::from_secs(1),
            names: Names::for_service(NS),
        },
    };
    manage::start(client(fake), config, Arc::new(loader), metrics)
}

/// What decides whether a webhook fails closed, per configuration: each
/// webhook as `name=failurePolicy`, `(off)` when its objectSelector matches
/// nothing, and the `unroot.dev/served` annotation.
fn shown(fake: &Fake) -> BTreeMap<String, (Vec<String>, Option<String>)> {
    let mut all = BTreeMap::new();
    for resource in [MUTATING, VALIDATING] {
        for name in [ORIGINALS, TWINS] {
            let Some(config) = fake.get(&config_path(resource, name)) else {
                continue;
            };
            let hooks = config["webhooks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|w| {
                    let off =
                        w["objectSelector"] == unroot::certs::fail_closed::disabled_selector();
                    format!(
                        "{}={}{}",
                        w["name"].as_str().unwrap(),
                        w["failurePolicy"].as_str().unwrap_or_default(),
                        if off { "(off)" } else { "" }
                    )
                })
                .collect();
            let served = config["metadata"]["annotations"]["unroot.dev/served"]
                .as_str()
                .map(str::to_owned);
            all.insert(format!("{resource}/{name}"), (hooks, served));
        }
    }
    all
}

/// The webhooks in force: each original not turned off, and each copy, as
/// `name=failurePolicy`.
fn in_force(fake: &Fake) -> Vec<String> {
    let mut hooks: Vec<String> = shown(fake)
        .into_values()
        .flat_map(|(h, _)| h)
        .filter(|h| !h.ends_with("(off)"))
        .collect();
    hooks.sort();
    hooks
}

/// Whether the named webhooks fail closed (a copy, the original off), every
/// other one fails open, and both originals record when they served.
fn armed(fake: &Fake) -> bool {
    let mut want: Vec<String> = [
        "validate.policy.unroot.dev=Ignore",
        "validate.workloads.unroot.dev=Ignore",
        "serving-check.unroot.dev=Ignore",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain(FAIL_CLOSED.iter().map(|w| format!("{w}=Fail")))
    .collect();
    want.sort();
    let shown = shown(fake);
    in_force(fake) == want
        && [MUTATING, VALIDATING]
            .iter()
            .all(|r| shown[&format!("{r}/{ORIGINALS}")].1.is_some())
        && copies_follow_their_originals(fake)
}

/// Whether every webhook fails open, and nothing records having served.
fn failing_open(fake: &Fake) -> bool {
    let shown = shown(fake);
    in_force(fake).iter().all(|h| h.ends_with("=Ignore"))
        && in_force(fake).len() == 6
        && shown.values().all(|(_, served)| served.is_none())
}

/// Whether each copy is its original but for failing closed and the
/// objectSelector (rules, selectors, caBundle, timeouts...).
fn copies_follow_their_originals(fake: &Fake) -> bool {
    [MUTATING, VALIDATING].iter().all(|r| {
        let (Some(originals), Some(twins)) = (
            fake.get(&config_path(r, ORIGINALS)),
            fake.get(&config_path(r, TWINS)),
        ) else {
            return false;
        };
        twins["webhooks"].as_array().into_iter().flatten().all(|t| {
            let Some(o) = originals["webhooks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["name"] == t["name"])
            else {
                return false;
            };
            let strip = |w: &Value| {
                let mut w = w.clone();
                let m = w.as_object_mut().unwrap();
                m.remove("failurePolicy");
                m.remove("objectSelector");
                w
            };
            strip(o) == strip(t)
        })
    })
}

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether every webhook of every configuration has a caBundle and the
/// Namespace is every configuration's owner.
fn bundled_and_owned(fake: &Fake) -> bool {
    [MUTATING, VALIDATING].iter().all(|r| {
        [ORIGINALS, TWINS].iter().all(|name| {
            fake.get(&config_path(r, name)).is_some_and(|c| {
                c["webhooks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|w| w["clientConfig"]["caBundle"].is_string())
                    && c["metadata"]["ownerReferences"]
                        == json!([{"apiVersion": "v1", "kind": "Namespace", "name": NS, "uid": NS_UID}])
            })
        })
    })
}

// One story, read top to bottom.
#[allow(clippy::too_many_lines)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_install_fails_open_until_it_has_served_then_closed_for_good() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = Fake::new();
    let resolver = Arc::new(Resolver::empty());
    // A replica: the real server, serving whatever certificate its task
    // loads from the Secret.
    let replica = common::start_with(common::Options {
        tls: Some(certs::server_config(Arc::clone(&resolver))),
        ..Default::default()
    })
    .await;

    // No replica reachable (the image cannot be pulled, nothing is Ready):
    // the task issues the certificate and writes the caBundle and the
    // owner, but nothing fails closed, however often it checks.
    let task = start_task(&fake, "pod-a", &resolver);
    wait_for(
        "caBundle and owner written",
        Duration::from_secs(20),
        || bundled_and_owned(&fake),
    )
    .await;
    wait_for("two serving checks sent", Duration::from_secs(20), || {
        fake.checks().0 >= 2
    })
    .await;
    assert_eq!(fake.checks().1, 0, "none answered");
    assert!(failing_open(&fake), "{:?}", shown(&fake));

    // A replica becomes reachable: the next check is answered, and the
    // named webhooks fail closed, the others stay open.
    fake.set_backend(Some(replica.addr));
    wait_for("armed once served", Duration::from_secs(30), || {
        armed(&fake)
    })
    .await;
    assert!(
        fake.checks().1 >= 1,
        "a replica answered: {:?}",
        fake.checks()
    );
    let served = |fake: &Fake| {
        shown(fake)
            .into_iter()
            .filter(|(k, _)| k.ends_with(&format!("/{ORIGINALS}")))
            .map(|(_, (_, s))| s)
            .collect::<Vec<_>>()
    };
    let at = served(&fake)[0].clone().unwrap();
    assert_eq!(served(&fake), [Some(at.clone()), Some(at.clone())]);
    assert!(humantime::parse_rfc3339(&at).is_ok(), "{at} is a time");
    assert!(
        fake.store
            .lock()
            .unwrap()
            .events
            .contains(&"Served".to_owned()),
        "an Event says so"
    );

    // Someone sets a copy to Ignore, and turns an original back on: both
    // are put back within seconds.
    fake.edit(&config_path(VALIDATING, TWINS), |c| {
        c["webhooks"][0]["failurePolicy"] = json!("Ignore");
    });
    fake.edit(&config_path(MUTATING, ORIGINALS), |c| {
        c["webhooks"][0]
            .as_object_mut()
            .unwrap()
            .remove("objectSelector");
    });
    assert!(!armed(&fake));
    wait_for("repaired", Duration::from_secs(10), || armed(&fake)).await;

    // A CA rotation: the new caBundle (both CAs) reaches the originals, and
    // the copies follow, so no failing-closed webhook is left trusting the
    // old CA alone.
    let bundle = |fake: &Fake| {
        fake.get(&config_path(VALIDATING, TWINS)).unwrap()["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = bundle(&fake);
    fake.edit(
        &format!("/api/v1/namespaces/{NS}/secrets/unroot-tls"),
        |s| {
            s["metadata"]["annotations"] = json!({"unroot.dev/rotate": "ca"});
        },
    );
    wait_for(
        "the copies follow the new caBundle",
        Duration::from_secs(20),
        || bundle(&fake) != before && armed(&fake),
    )
    .await;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(bundle(&fake))
        .unwrap();
    assert_eq!(
        String::from_utf8(pem)
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count(),
        2,
        "the old and the new CA"
    );

    // The task restarts while no replica is reachable, and the mutating
    // configurations are re-created as shipped meanwhile: the validating one
    // says this install has served, so all fail closed at once, with no
    // answered check.
    task.shutdown().await;
    fake.set_backend(None);
    let answered = fake.checks().1;
    fake.delete(&config_path(MUTATING, ORIGINALS));
    fake.delete(&config_path(MUTATING, TWINS));
    fake.install_one(MUTATING);
    let task = start_task(&fake, "pod-b", &resolver);
    wait_for(
        "re-armed after the restart",
        Duration::from_secs(20),
        || armed(&fake) && bundled_and_owned(&fake),
    )
    .await;
    assert_eq!(
        fake.checks().1,
        answered,
        "from the record, not a new answer"
    );
    assert_eq!(served(&fake), [Some(at.clone()), Some(at.clone())]);

    // The validating configuration stops naming its webhooks (the observe
    // overlay): their originals are back, their copies gone.
    fake.edit(&config_path(VALIDATING, ORIGINALS), |c| {
        c["metadata"]["annotations"]["unroot.dev/fail-closed"] = json!("");
    });
    wait_for("given back", Duration::from_secs(10), || {
        shown(&fake)[&format!("{VALIDATING}/{TWINS}")].0.is_empty()
            && in_force(&fake).contains(&"validate.pods.unroot.dev=Ignore".to_owned())
    })
    .await;
    assert!(
        in_force(&fake).contains(&"mutate.pods.unroot.dev=Fail".to_owned()),
        "the mutating one still names its webhook: {:?}",
        in_force(&fake)
    );

    // The recovery command deletes every configuration; a re-apply then
    // fails open again until a replica has served.
    for r in [MUTATING, VALIDATING] {
        fake.delete(&config_path(r, ORIGINALS));
        fake.delete(&config_path(r, TWINS));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    fake.install();
    let checks = fake.checks().0;
    wait_for(
        "caBundle on the re-applied ones",
        Duration::from_secs(20),
        || bundled_and_owned(&fake),
    )
    .await;
    wait_for("checked again", Duration::from_secs(30), || {
        fake.checks().0 > checks
    })
    .await;
    assert!(failing_open(&fake), "forgotten: {:?}", shown(&fake));
    fake.set_backend(Some(replica.addr));
    wait_for("armed once served again", Duration::from_secs(40), || {
        armed(&fake)
    })
    .await;

    task.shutdown().await;
    replica.shutdown().await;
}
