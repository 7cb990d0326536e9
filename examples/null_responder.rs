//! The floor every webhook pays: unroot's own listener (TLS settings,
//! accept loop, connection limit, timeouts, HTTP/1.1 and HTTP/2), the same
//! body checks, and a fixed allowed AdmissionReview as the answer, with no
//! decoding and no decision. `make bench` compares unroot with it.
//!
//! ```text
//! cargo run --release --example null_responder -- [--listen 127.0.0.1:8444] [--ca-cert-out certs/null-ca.crt]
//! ```
//!
//! It prints `listening on ADDR` once it accepts connections, and stops on
//! SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::watch;
use unroot::certs::{self, Authority, Resolver};
use unroot::readiness::Readiness;
use unroot::server::{self, body};

// The same allocator as the unroot binary (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The answer to every review: allowed, with the uid of the benchmark's
/// review (`benches/support/review.rs`), so that clients that check it can.
const ANSWER: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"0d5c7c1b-8f3e-4f7a-9a55-6c2a3b1e9d40","allowed":true}}"#;

#[derive(Parser)]
struct Args {
    /// Address of the HTTPS listener.
    #[arg(long, default_value = "127.0.0.1:8444")]
    listen: SocketAddr,
    /// Where to write the self-issued CA certificate.
    #[arg(long, default_value = "certs/null-ca.crt")]
    ca_cert_out: PathBuf,
}

async fn answer(request: Request) -> Response {
    let config = server::Config::default();
    let (parts, body) = request.into_parts();
    match body::read(&parts.headers, body, config.request_timeout).await {
        Ok(_) => ([(header::CONTENT_TYPE, "application/json")], ANSWER).into_response(),
        Err(rejection) => (rejection.status, rejection.message).into_response(),
    }
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    // The same runtime as `unroot serve`.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), String> {
    // The same kind of certificate `unroot serve` issues itself.
    let ca = Authority::issue().map_err(|e| e.to_string())?;
    let serving = ca
        .issue_serving(&certs::serving_names(&[]))
        .map_err(|e| e.to_string())?;
    certs::write_pem(&args.ca_cert_out, &ca.cert_pem).map_err(|e| e.to_string())?;
    let key = certs::certified_key(
        serving.cert_pem.as_bytes(),
        serving.key_pem.as_bytes(),
        &args.ca_cert_out,
    )
    .map_err(|e| e.to_string())?;
    let tls = Arc::new(certs::server_config(Arc::new(Resolver::new(key))));
    let app = Router::new()
        .route("/mutate", post(answer))
        .route("/validate", post(answer));
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("failed to bind {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let config = server::Config {
        listen: addr,
        ..server::Config::default()
    };
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop.send(true);
    });
    println!("listening on {addr}");
    let readiness = Readiness::new(&[server::SERVING]);
    server::listener::serve_tls(listener, tls, app, &config, stopped, &readiness).await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
