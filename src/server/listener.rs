//! The TLS accept loop: bounded connections, handshake and header timeouts
//! (a client that sent part of a request gets 408), HTTP/1.1 and HTTP/2,
//! clients refused for want of a valid certificate counted, and a graceful
//! drain on shutdown.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus::IntCounterVec;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::{Config, SERVING};
use crate::readiness::Readiness;

/// Accepts TLS connections and serves `app` on them until `shutdown` fires,
/// then drains the connections in flight for up to the drain timeout.
///
/// Public so that a benchmark's null responder (`examples/null_responder.rs`)
/// pays exactly what unroot's webhook listener pays.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    config: &Config,
    shutdown: watch::Receiver<bool>,
    readiness: &Readiness,
) {
    serve_tls_counted(listener, tls, app, config, shutdown, readiness, None).await;
}

/// The `webhook` label of requests refused before any webhook was named
/// (at the TLS handshake, or before the request's headers were read).
pub const NO_WEBHOOK: &str = "none";

/// [`serve_tls`], counting the connections refused before any request in
/// `rejected` (`unroot_rejected_requests_total`): `reason="unauthenticated"`
/// for a handshake without a valid client certificate, and
/// `reason="header_timeout"` for a client that did not send its request's
/// headers in time.
pub async fn serve_tls_counted(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    config: &Config,
    mut shutdown: watch::Receiver<bool>,
    readiness: &Readiness,
    rejected: Option<IntCounterVec>,
) {
    let acceptor = TlsAcceptor::from(tls);
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
        let rejected = rejected.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    if is_unauthenticated(&e) {
                        count(rejected.as_ref(), "unauthenticated");
                        info!(%peer, error = %e, "refused a client without a valid client certificate");
                    } else {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    }
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
            let (io, returned) = Tracked::new(tls);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            let Err(e) = watcher.watch(conn).await else {
                return;
            };
            let timed_out = e
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_timeout);
            if !timed_out {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
                return;
            }
            // hyper dropped the stream with the connection: it is back.
            if let Ok(Ok((io, true))) = tokio::time::timeout(Duration::from_secs(1), returned).await
            {
                count(rejected.as_ref(), "header_timeout");
                tracing::debug!(%peer, "request headers did not arrive in time: 408");
                request_timeout(io, header_timeout).await;
            }
        });
    }
    readiness.set(SERVING, false);
    drop(listener);
    info!("shutting down: finishing in-flight reviews");
    if tokio::time::timeout(config.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(timeout = ?config.drain_timeout, "in-flight reviews did not finish in time");
    }
}

fn count(rejected: Option<&IntCounterVec>, reason: &str) {
    if let Some(rejected) = rejected {
        rejected.with_label_values(&[NO_WEBHOOK, reason]).inc();
    }
}

/// Whether a failed handshake failed for want of a valid client
/// certificate (none sent, or one that does not verify against the client
/// CA).
fn is_unauthenticated(e: &io::Error) -> bool {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return false;
    };
    matches!(
        tls,
        rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_)
    )
}

/// Answers a request whose headers did not arrive in time with 408 and a
/// `Status` body, then closes the connection.
async fn request_timeout<IO: AsyncWrite + Unpin>(mut io: IO, timeout: Duration) {
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "message": format!("request headers did not arrive within {} s", timeout.as_secs_f64()),
        "reason": "Timeout",
        "code": 408,
    })
    .to_string();
    let reply = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // A client that reads nothing gets no more of our time than this.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        io.write_all(reply.as_bytes()).await?;
        io.shutdown().await
    })
    .await;
}

/// A connection's stream that hyper serves, which goes back to the accept
/// loop when hyper drops it, with whether a request was under way (bytes
/// read since the last write): after hyper's header timeout, such a client
/// is answered 408, an idle keep-alive connection just closed.
struct Tracked<IO> {
    io: Option<IO>,
    request_under_way: bool,
    back: Option<oneshot::Sender<(IO, bool)>>,
}

impl<IO> Tracked<IO> {
    fn new(io: IO) -> (Self, oneshot::Receiver<(IO, bool)>) {
        let (back, returned) = oneshot::channel();
        let tracked = Self {
            io: Some(io),
            request_under_way: false,
            back: Some(back),
        };
        (tracked, returned)
    }
}

impl<IO> Drop for Tracked<IO> {
    fn drop(&mut self) {
        if let (Some(io), Some(back)) = (self.io.take(), self.back.take()) {
            let _ = back.send((io, self.request_under_way));
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection already handed back",
    )
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(io) = this.io.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let before = buf.filled().len();
        let polled = Pin::new(io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.request_under_way = true;
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(io) = this.io.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let polled = Pin::new(io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.request_under_way = false;
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(io) = this.io.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let polled = Pin::new(io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.request_under_way = false;
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().io.as_mut() {
            Some(io) => Pin::new(io).poll_flush(cx),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().io.as_mut() {
            Some(io) => Pin::new(io).poll_shutdown(cx),
            None => Poll::Ready(Err(gone())),
        }
    }
}

/// Resolves once shutdown was requested (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
