//! Bad input over real TLS: each gets a clear error, never a panic or a hang.

use crate::common;

use std::time::{Duration, Instant};

use common::review_for;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn status_message(reply: &common::Reply) -> String {
    let body = reply.json();
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["code"], reply.status, "{body}");
    body["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn malformed_bodies_get_400_naming_the_problem() {
    let server = common::start().await;
    let cases: [(&str, &[u8], &str); 5] = [
        ("not JSON", b"<review/>", "request body is not valid JSON: expected value at line 1 column 1"),
        ("JSON but not a review", br#"{"apiVersion":"v1","kind":"Pod"}"#, r#"request body is not an AdmissionReview: kind is "Pod", expected "AdmissionReview""#),
        ("review without request", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#, "AdmissionReview has no request"),
        ("request without uid", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#, "AdmissionReview request has no uid"),
        ("empty body", b"", "request body is not valid JSON: EOF while parsing a value at line 1 column 0"),
    ];
    for (what, body, want) in cases {
        let reply = server
            .post("/mutate", "application/json", body.to_vec())
            .await;
        assert_eq!(reply.status, 400, "{what}");
        assert_eq!(status_message(&reply), want, "{what}");
    }
    let malformed = r#"unroot_rejected_requests_total{reason="malformed",webhook="mutate"}"#;
    assert_eq!(server.metric(malformed).await, Some(5.0));
    server.shutdown().await;
}

#[tokio::test]
async fn undecodable_pod_is_denied_in_the_review() {
    let server = common::start().await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"}, "spec": {"containers": "not-a-list"}});
    let response = server
        .admit("/mutate", &review_for("CREATE", "team-a", &pod))
        .await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 400);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "failed to decode Pod: spec.containers: invalid type: string \"not-a-list\", expected a sequence"
        ),
        "{message}"
    );

    let mut review = review_for("CREATE", "team-a", &pod);
    review["request"]["operation"] = json!(42);
    let response = server.admit("/mutate", &review).await;
    assert_eq!(response["allowed"], false);
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed AdmissionReview request: invalid type: integer `42`")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_content_type_gets_415() {
    let server = common::start().await;
    let body = serde_json::to_vec(&review_for(
        "CREATE",
        "x",
        &json!({"metadata": {"name": "p"}}),
    ))
    .unwrap();
    for content_type in ["text/plain", "application/yaml", ""] {
        let reply = server.post("/mutate", content_type, body.clone()).await;
        assert_eq!(reply.status, 415, "{content_type:?}");
        assert!(status_message(&reply).contains("send application/json"));
    }
    let reply = server
        .post("/mutate", "application/json; charset=utf-8", body)
        .await;
    assert_eq!(reply.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn body_over_8_mib_gets_413() {
    let server = common::start().await;
    let big = vec![b' '; 8 * 1024 * 1024 + 1];
    let reply = server.post("/mutate", "application/json", big).await;
    assert_eq!(reply.status, 413);
    assert_eq!(
        status_message(&reply),
        "request body is larger than the 8 MiB limit"
    );

    // Without a Content-Length (chunked), the limit applies while reading.
    let mut tls = server.connect().await;
    tls.write_all(b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n").await.unwrap();
    let chunk = vec![b' '; 1024 * 1024];
    let mut status = String::new();
    for _ in 0..9 {
        let head = format!("{:x}\r\n", chunk.len());
        if tls.write_all(head.as_bytes()).await.is_err()
            || tls.write_all(&chunk).await.is_err()
            || tls.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let mut buf = vec![0; 4096];
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await {
        status = String::from_utf8_lossy(&buf[..n]).into_owned();
    }
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(status.contains("8 MiB limit"), "{status}");
    server.shutdown().await;
}

#[tokio::test]
async fn slow_body_is_cut_off_by_the_timeout() {
    let server = common::start_with(common::Options {
        request_timeout: Duration::from_millis(800),
        ..Default::default()
    })
    .await;
    let mut tls = server.connect().await;
    tls.write_all(b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"apiVersion\"").await.unwrap();
    let started = Instant::now();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("server answered")
        .unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(
        reply.contains("request body did not arrive within 0.8 s"),
        "{reply}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        server
            .metric(r#"unroot_rejected_requests_total{reason="body_timeout",webhook="mutate"}"#)
            .await,
        Some(1.0)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn slow_headers_are_cut_off_too() {
    let server = common::start_with(common::Options {
        request_timeout: Duration::from_millis(800),
        ..Default::default()
    })
    .await;
    let mut tls = server.connect().await;
    tls.write_all(b"POST /mutate HTTP/1.1\r\nhost: local")
        .await
        .unwrap();
    let mut buf = vec![0; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("server closed the connection");
    // hyper answers 408 or just closes; either way the connection ends.
    match read {
        Ok(0) | Err(_) => {}
        Ok(n) => assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
            "{:?}",
            &buf[..n]
        ),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused_cleanly() {
    let server = common::start().await;
    let reply = server
        .post("/nope", "application/json", b"{}".to_vec())
        .await;
    assert_eq!(reply.status, 404);
    assert_eq!(status_message(&reply), "no such endpoint");
    server.shutdown().await;
}
