//! `unroot serve` as a process: self-issued certificate written for clients,
//! and graceful shutdown on SIGTERM that finishes in-flight reviews.

use crate::common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::TlsConnector;

struct Process {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    /// The log lines up to "serving".
    startup: Vec<Value>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `unroot serve` on ephemeral ports and reads the bound addresses
/// from its JSON log.
fn spawn(ca_out: &std::path::Path) -> Process {
    spawn_with(ca_out, &["--standalone"], &[])
}

/// Like [`spawn`], with extra arguments and environment (and without
/// `--standalone` unless given).
fn spawn_with(ca_out: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_unroot"))
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .envs(env.iter().copied())
        .args([
            "serve",
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
        .arg(ca_out)
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut startup = Vec::new();
    let serving = loop {
        let line = lines.next().expect("server logged 'serving'").unwrap();
        let event: Value = serde_json::from_str(&line).unwrap();
        startup.push(event.clone());
        if event["message"] == "serving" {
            break event;
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let field = |name: &str| serving[name].as_str().unwrap().parse().unwrap();
    Process {
        child,
        addr: field("addr"),
        admin: field("admin_addr"),
        startup,
    }
}

async fn admin_get(admin: SocketAddr, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).await.unwrap();
    reply
}

#[tokio::test]
async fn kubeconfig_from_the_environment_is_used_and_not_ready_until_namespaces_sync() {
    let dir = tempfile::tempdir().unwrap();
    // A cluster nobody answers for: a port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    let env = kubeconfig.to_str().unwrap();
    let server = spawn_with(&dir.path().join("ca.crt"), &[], &[("KUBECONFIG", env)]);
    let connected = server
        .startup
        .iter()
        .find(|e| e["from"].as_str().is_some())
        .expect("the log names where the cluster came from");
    assert_eq!(connected["from"], format!("KUBECONFIG={env}"));
    assert_eq!(connected["server"], format!("https://127.0.0.1:{port}/"));
    for _ in 0..3 {
        let reply = admin_get(server.admin, "/readyz").await;
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
        assert!(reply.contains("namespaces"), "{reply}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn standalone_runs_without_a_cluster_even_when_one_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_with(
        &dir.path().join("ca.crt"),
        &["--standalone"],
        &[("KUBECONFIG", "/nonexistent/kubeconfig")],
    );
    let reply = admin_get(server.admin, "/readyz").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_reviews_then_exits_cleanly() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("certs/ca.crt");
    let mut server = spawn(&ca_path);
    let ca_pem = std::fs::read_to_string(&ca_path).expect("the CA was written for clients");

    let connector = TlsConnector::from(Arc::new(common::client_config(
        &ca_pem,
        &[&rustls::version::TLS13],
    )));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}]}});
    let body = serde_json::to_vec(&common::review_for("CREATE", "team-a", &pod)).unwrap();
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body[..10]).await.unwrap();
    tls.flush().await.unwrap();

    // The review is in flight: the server has its headers, not its body.
    // Wait until it says so: under load it may not have read them yet, and a
    // connection with no request started is closed at SIGTERM.
    let mut in_flight = false;
    for _ in 0..200 {
        if admin_get(server.admin, "/metrics")
            .await
            .lines()
            .any(|l| l == "unroot_admission_requests_in_flight 1")
        {
            in_flight = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        in_flight,
        "the review never showed in unroot_admission_requests_in_flight"
    );
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(500)).await;

    tls.write_all(&body[10..]).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"patchType\":\"JSONPatch\""), "{reply}");

    let code = tokio::task::spawn_blocking(move || {
        for _ in 0..100 {
            if let Some(status) = server.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "exits 0 after draining");
}

#[tokio::test]
async fn admin_endpoints_answer_on_their_own_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn(&dir.path().join("ca.crt"));
    for (path, want) in [
        ("/healthz", "HTTP/1.1 200"),
        ("/readyz", "HTTP/1.1 200"),
        ("/metrics", "HTTP/1.1 200"),
    ] {
        let mut tcp = tokio::net::TcpStream::connect(server.admin).await.unwrap();
        tcp.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut reply = String::new();
        tcp.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with(want), "{path}: {reply}");
        if path == "/metrics" {
            assert!(
                reply.contains("unroot_admission_requests_in_flight 0"),
                "{reply}"
            );
        }
    }
}

/// `unroot serve` with both streams read line by line: its log (stderr)
/// and its audit log (stdout).
struct Streams {
    _child: common::Process,
    server: common::Server,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    audit: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Streams {
    fn spawn(dir: &std::path::Path, extra: &[&str]) -> Self {
        let ca = dir.join("ca.crt");
        let mut child = common::serve_command(&ca, extra)
            .env_remove("UNROOT_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let serving = loop {
            let line = lines.next().expect("server logged 'serving'").unwrap();
            let event: Value = serde_json::from_str(&line).unwrap();
            if event["message"] == "serving" {
                break event;
            }
        };
        let keep = |lines: Box<dyn Iterator<Item = std::io::Result<String>> + Send>| {
            let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
            let into = Arc::clone(&kept);
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    into.lock().unwrap().push(line);
                }
            });
            kept
        };
        let log = keep(Box::new(lines));
        let audit = keep(Box::new(
            BufReader::new(child.stdout.take().unwrap()).lines(),
        ));
        let field = |name: &str| serving[name].as_str().unwrap().parse().unwrap();
        let server = common::Server::external(
            field("addr"),
            field("admin_addr"),
            std::fs::read_to_string(ca).unwrap(),
        );
        Self {
            _child: common::Process(child),
            server,
            log,
            audit,
        }
    }

    /// The lines of `stream` that mention `text`.
    fn lines_with(stream: &std::sync::Mutex<Vec<String>>, text: &str) -> Vec<String> {
        let lines = stream.lock().unwrap();
        lines.iter().filter(|l| l.contains(text)).cloned().collect()
    }
}

/// An allowed and a denied review (a privileged pod: the embedded policy
/// enforces baseline), with uids to look for.
fn allowed_and_denied() -> [(Value, &'static str); 2] {
    let pod = |name: &str, privileged: bool| {
        serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "nginx",
                "securityContext": {"privileged": privileged}}]}})
    };
    let mut allowed = common::review_for("CREATE", "team-a", &pod("calm", false));
    allowed["request"]["uid"] = "uid-allowed-4711".into();
    let mut denied = common::review_for("CREATE", "team-a", &pod("root", true));
    denied["request"]["uid"] = "uid-denied-4712".into();
    [(allowed, "uid-allowed-4711"), (denied, "uid-denied-4712")]
}

/// As shipped (JSON logs, so the audit log on stdout), a review writes no
/// log line at info: its audit line is the record. With the audit log off,
/// a denial is logged at info, with its uid; an allowed review still is
/// not.
#[tokio::test]
async fn reviews_are_not_logged_at_info_unless_a_denial_has_no_audit_line() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, audit_on) in [(&[][..], true), (&["--audit-log", "off"][..], false)] {
        let process = Streams::spawn(dir.path(), extra);
        let reviews = allowed_and_denied();
        for (review, _) in &reviews {
            assert_eq!(process.server.review("/validate", review).await.status, 200);
        }
        let [(_, allowed), (_, denied)] = reviews;
        // The audit writer gathers records for 10 ms before it writes.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while audit_on && Streams::lines_with(&process.audit, denied).is_empty() {
            assert!(std::time::Instant::now() < deadline, "no audit line");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let audit = |uid| Streams::lines_with(&process.audit, uid).len();
        let log = |uid| Streams::lines_with(&process.log, uid);
        assert_eq!(
            (audit(allowed), audit(denied)),
            if audit_on { (1, 1) } else { (0, 0) },
            "{extra:?}"
        );
        assert_eq!(log(allowed), Vec::<String>::new(), "{extra:?}");
        if audit_on {
            assert_eq!(log(denied), Vec::<String>::new());
        } else {
            let lines = log(denied);
            assert_eq!(lines.len(), 1, "{lines:?}");
            let event: Value = serde_json::from_str(&lines[0]).unwrap();
            assert_eq!(event["level"], "INFO", "{event}");
            assert_eq!(event["message"], "denied", "{event}");
            assert_eq!(event["namespace"], "team-a", "{event}");
        }
    }
}
