//! SIGTERM under load, against the real binary: every review that was in
//! flight when the signal came is answered in full (200), no answer is cut
//! short or turned into an error, and the process exits 0 after draining.
//! During `--shutdown-delay` a kept-alive connection is still answered, and
//! its answer closes it.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::TlsConnector;

fn body(name: &str) -> Vec<u8> {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "a", "image": "x"}]}});
    serde_json::to_vec(&common::review_for("CREATE", "team-a", &pod)).unwrap()
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one story: load, requests in flight, signal, drain
async fn sigterm_under_load_drops_no_review_in_flight() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = common::Process::standalone(dir.path(), &[]);
    let (addr, ca_pem) = (client.addr, client.ca_pem.clone());
    let connector = TlsConnector::from(Arc::new(common::client_config(
        &ca_pem,
        &[&rustls::version::TLS13],
    )));
    let connect = move || {
        let connector = connector.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            connector
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
        }
    };

    // Background load: keep-alive clients sending reviews back to back.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for c in 0..8 {
        let (stop, connect) = (Arc::clone(&stop), connect.clone());
        load.push(tokio::spawn(async move {
            let (mut answered, mut refused, mut broken) = (0, 0, Vec::new());
            'conn: while !stop.load(Ordering::Relaxed) {
                let Ok(tls) = connect().await else {
                    refused += 1; // the listener is closed: a retry goes to another replica
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let Ok((mut sender, conn)) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await
                else {
                    refused += 1;
                    continue;
                };
                tokio::spawn(conn);
                loop {
                    if stop.load(Ordering::Relaxed) || sender.ready().await.is_err() {
                        continue 'conn;
                    }
                    let request = hyper::Request::post("/mutate")
                        .header("host", "localhost")
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body(&format!("l{c}-{answered}")))))
                        .unwrap();
                    match sender.send_request(request).await {
                        Ok(response) => {
                            let status = response.status();
                            match response
                                .into_body()
                                .collect()
                                .await
                                .map(http_body_util::Collected::to_bytes)
                            {
                                Ok(b) if status == 200 && b.ends_with(b"}") => answered += 1,
                                other => broken.push(format!("{status}: {other:?}")),
                            }
                        }
                        // Closed before the request was taken: hyper says
                        // so, and the request was never read.
                        Err(e) if e.is_canceled() || e.is_closed() || e.is_incomplete_message() => {
                            refused += 1;
                            continue 'conn;
                        }
                        Err(e) => broken.push(format!("{e:?}")),
                    }
                }
            }
            (answered, refused, broken)
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;

    // Reviews in flight at the signal: headers and half of the body sent.
    let mut in_flight = Vec::new();
    for i in 0..16 {
        let mut tls = connect().await.unwrap();
        let body = body(&format!("f{i}"));
        let head = format!(
            "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(&body[..body.len() / 2]).await.unwrap();
        tls.flush().await.unwrap();
        in_flight.push((tls, body));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, (mut tls, body)) in in_flight.into_iter().enumerate() {
        tls.write_all(&body[body.len() / 2..]).await.unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut reply)).await;
        let reply = String::from_utf8_lossy(&reply);
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "in-flight review {i}: {reply}"
        );
        assert!(
            reply.contains("\"patchType\":\"JSONPatch\""),
            "in-flight review {i}: {reply}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut answered = 0;
    for client in load {
        let (a, _refused, broken) = client.await.unwrap();
        assert!(broken.is_empty(), "answers cut short or failed: {broken:?}");
        answered += a;
    }
    assert!(answered >= 50, "{answered} reviews under load");
    let code = server.exit_code().await;
    assert_eq!(code, Some(0), "exits 0 after draining");
}

/// The API server's pooled connections to a replica that is shutting down
/// keep being used until the replica closes them: during the shutdown delay
/// each is answered once more, with `Connection: close`, so the API server
/// drops it itself instead of sending a request into the replica's close.
#[tokio::test]
async fn during_the_shutdown_delay_a_pooled_connection_is_answered_and_let_go() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (mut server, client) = common::Process::standalone(dir.path(), &["--shutdown-delay", "3s"]);
    let (addr, ca_pem) = (client.addr, client.ca_pem.clone());
    let connector = TlsConnector::from(Arc::new(common::client_config(
        &ca_pem,
        &[&rustls::version::TLS13],
    )));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let ask = async |tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>, name| {
        let body = body(name);
        let head = format!(
            "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(&body).await.unwrap();
        let mut buf = vec![0; 64 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let before = ask(&mut tls, "before").await;
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");
    assert!(!before.contains("connection: close"), "{before}");

    server.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = ask(&mut tls, "during").await;
    assert!(during.starts_with("HTTP/1.1 200"), "{during}");
    assert!(during.contains("connection: close"), "{during}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(1), tls.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "still open: {closed:?}");
    // Still in the delay: the process has not exited.
    assert!(server.0.try_wait().unwrap().is_none());
    let code = server.exit_code().await;
    assert_eq!(code, Some(0));
}
