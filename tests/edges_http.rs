//! The HTTP edges over real TLS: a body over the limit gets its 413 even
//! from a client that writes the whole body before it reads (HTTP/1.1 and
//! HTTP/2), a client that sends part of a request gets 408 when the header
//! timeout runs out, and a slowloris client is cut off at that timeout. A
//! keep-alive connection idles up to the idle timeout, not the header
//! timeout, and once draining starts every answer closes its connection.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const NINE_MIB: usize = 9 * 1024 * 1024;

async fn read_all(tls: &mut (impl tokio::io::AsyncRead + Unpin), within: Duration) -> String {
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(within, tls.read_to_end(&mut reply)).await;
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test]
async fn a_client_that_writes_a_9_mib_body_before_reading_gets_the_413() {
    let server = common::start().await;
    for _ in 0..2 {
        let mut tls = server.connect().await;
        let head = format!(
            "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {NINE_MIB}\r\n\r\n"
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        // The whole body, before reading a byte: without the lingering read
        // the server's close resets the connection under this write.
        tls.write_all(&vec![b' '; NINE_MIB])
            .await
            .expect("the server reads the body it refuses");
        tls.flush().await.unwrap();
        let reply = read_all(&mut tls, Duration::from_secs(10)).await;
        assert!(reply.starts_with("HTTP/1.1 413"), "{reply:.200}");
        assert!(
            reply.contains("request body is larger than the 8 MiB limit"),
            "{reply}"
        );
    }
    assert_eq!(
        server
            .metric(r#"unroot_rejected_requests_total{reason="too_large",webhook="mutate"}"#)
            .await,
        Some(2.0)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn over_http2_the_413_arrives_as_a_response() {
    let server = common::start().await;
    let mut config = common::client_config(&server.ca_pem, &[&rustls::version::TLS13]);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for (what, length) in [("declared", true), ("not declared", false)] {
        let mut request = hyper::Request::post("https://localhost/mutate")
            .header("content-type", "application/json");
        if length {
            request = request.header("content-length", NINE_MIB);
        }
        let request = request
            .body(Full::new(Bytes::from(vec![b' '; NINE_MIB])))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
            .await
            .expect("answered in time")
            .unwrap_or_else(|e| panic!("{what}: a response, not a stream error: {e:?}"));
        assert_eq!(response.status(), 413, "{what}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(
            String::from_utf8_lossy(&body).contains("8 MiB limit"),
            "{what}: {body:?}"
        );
    }
    server.shutdown().await;
}

async fn server_with_header_timeout() -> common::Server {
    common::start_with(common::Options {
        request_timeout: Duration::from_millis(800),
        ..Default::default()
    })
    .await
}

/// Sends part of a request line and nothing more; returns the reply (a
/// 408) and how long it took.
async fn begin_a_request_and_stall(
    tls: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin),
) -> (String, Duration) {
    tls.write_all(b"POST /mutate HTTP/1.1\r\nhost: local")
        .await
        .unwrap();
    let started = Instant::now();
    let reply = read_all(tls, Duration::from_secs(5)).await;
    assert!(
        reply.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{reply:?}"
    );
    (reply, started.elapsed())
}

#[tokio::test]
async fn a_partial_request_line_gets_408_before_the_connection_closes() {
    let server = server_with_header_timeout().await;
    let mut tls = server.connect().await;
    let (reply, took) = begin_a_request_and_stall(&mut tls).await;
    assert!(reply.contains("connection: close"), "{reply}");
    let body = &reply[reply.find("\r\n\r\n").unwrap() + 4..];
    let status: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 408);
    assert_eq!(
        status["message"],
        "request headers did not arrive within 0.8 s"
    );
    assert!(took < Duration::from_secs(2));
    assert_eq!(header_timeouts(&server).await, Some(1.0));
    server.shutdown().await;
}

async fn header_timeouts(server: &common::Server) -> Option<f64> {
    server.metric("unroot_request_header_timeouts_total").await
}

/// A server whose header timeout is 0.8 s and idle timeout 2 s.
async fn server_with_idle_timeout() -> common::Server {
    common::start_with(common::Options {
        request_timeout: Duration::from_millis(800),
        idle_timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .await
}

const SMALL_REQUEST: &[u8] = b"POST /nope HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\n\r\n";

/// Sends [`SMALL_REQUEST`] and reads its answer (a 404).
async fn ask(tls: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin)) -> String {
    tls.write_all(SMALL_REQUEST).await.unwrap();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply:?}");
    reply
}

/// The API server keeps idle connections 90 s and does not retry a POST
/// that meets the server's close; the header timeout must not close them.
#[tokio::test]
async fn a_keep_alive_connection_idle_past_the_header_timeout_still_answers() {
    let server = server_with_idle_timeout().await;
    let mut tls = server.connect().await;
    ask(&mut tls).await;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        ask(&mut tls).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout_without_a_408() {
    let server = server_with_idle_timeout().await;
    let mut tls = server.connect().await;
    ask(&mut tls).await;
    // Nothing more is sent: the connection idles past the idle timeout.
    let started = Instant::now();
    let rest = read_all(&mut tls, Duration::from_secs(6)).await;
    assert_eq!(rest, "", "an idle connection is closed, not answered");
    let took = started.elapsed();
    assert!(
        took > Duration::from_millis(1900) && took < Duration::from_secs(4),
        "closed after {took:?}, not at the 2 s idle timeout"
    );
    assert_eq!(header_timeouts(&server).await, Some(0.0));
    server.shutdown().await;
}

#[tokio::test]
async fn a_request_begun_on_an_idle_connection_gets_the_header_timeout_and_a_408() {
    let server = server_with_idle_timeout().await;
    let mut tls = server.connect().await;
    ask(&mut tls).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, took) = begin_a_request_and_stall(&mut tls).await;
    // The header timeout, from the request's first byte: not the idle
    // timeout, nor from the end of the last answer.
    assert!(
        took > Duration::from_millis(700) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    server.shutdown().await;
}

/// Idle clients cannot hold every connection while a review waits: when
/// fewer than an eighth are left, idle connections are closed within the
/// header timeout instead of the idle timeout.
#[tokio::test]
async fn idle_connections_give_way_when_connections_run_short() {
    let server = common::start_with(common::Options {
        request_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(120),
        max_connections: 16,
        ..Default::default()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..16 {
        let mut tls = server.connect().await;
        ask(&mut tls).await;
        idle.push(tls);
    }
    // Every connection is taken by a client that idles; one more arrives.
    let started = Instant::now();
    let mut fresh = tokio::time::timeout(Duration::from_secs(5), server.connect())
        .await
        .expect("the new client was accepted: idle ones gave way");
    ask(&mut fresh).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
    let mut closed = 0;
    for tls in &mut idle {
        let mut rest = Vec::new();
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(100), tls.read_to_end(&mut rest)).await
        {
            closed += 1;
        }
    }
    assert!(closed >= 1, "no idle connection was closed");
    server.shutdown().await;
}

#[tokio::test]
async fn once_draining_an_answer_closes_its_keep_alive_connection() {
    let server = server_with_idle_timeout().await;
    let mut tls = server.connect().await;
    let before = ask(&mut tls).await;
    assert!(!before.contains("connection: close"), "{before}");
    server.start_draining();
    let during = ask(&mut tls).await;
    assert!(during.contains("connection: close"), "{during}");
    // The server closes its side after that answer: the client's pool lets
    // go of the connection without racing a request against the close.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(1), tls.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the connection stayed open after `connection: close`: {closed:?}"
    );
    // A new connection is still answered until the shutdown.
    let mut fresh = server.connect().await;
    ask(&mut fresh).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_at_the_header_timeout_however_it_trickles() {
    let server = server_with_header_timeout().await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut tls = server.connect().await;
        clients.push(tokio::spawn(async move {
            let started = Instant::now();
            let head = b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\nx-pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
            for byte in head {
                // One byte every 50 ms, for as long as the server lets it.
                if tls.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                if started.elapsed() > Duration::from_secs(5) {
                    break;
                }
            }
            let reply = read_all(&mut tls, Duration::from_secs(2)).await;
            (reply, started.elapsed())
        }));
    }
    for client in clients {
        let (reply, took) = client.await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
        assert!(took < Duration::from_millis(2500), "{took:?}");
    }
    server.shutdown().await;
}
