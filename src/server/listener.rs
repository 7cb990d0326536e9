//! The TLS accept loop: bounded connections, handshake and header timeouts
//! (a client that sent part of a request gets 408), an idle timeout for
//! keep-alive connections longer than the API server's own, HTTP/1.1 and
//! HTTP/2, clients refused for want of a valid certificate counted, each
//! request marked with who its connection's handshake proved the caller to
//! be ([`Caller`]), and a
//! graceful drain on shutdown (`Connection: close` on every HTTP/1.1 answer
//! once draining starts).
//!
//! hyper's own header timeout is not used: it also runs while a keep-alive
//! connection idles between requests, so it closed the API server's pooled
//! connections after 10 s. Go's client keeps them 90 s and does not retry a
//! POST that meets a connection the server just closed: the API server then
//! failed the admission with "server closed idle connection". Here the
//! header timeout runs from a request's first byte (or the connection's
//! start) until its headers are parsed, and the idle timeout from the end of
//! an answer until the next request's first byte.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::metrics::Connections;
use axum::Router;
use axum::http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::{Caller, Config, SERVING};
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
    let draining = Draining::default();
    serve_tls_counted(
        listener, tls, app, config, shutdown, readiness, &draining, None,
    )
    .await;
}

/// Set once the server is draining (not ready, about to stop): every
/// HTTP/1.1 answer then carries `Connection: close`, so a client closes the
/// connection itself after the answer instead of racing a request against
/// the server's close.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// Starts draining; there is no way back.
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn started(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// [`serve_tls`], counting the connections that failed before any request
/// named a webhook in `counted`: the TLS handshakes that did not complete
/// (`unroot_tls_handshake_failures_total`, by reason) and the clients that
/// did not send their request's headers in time
/// (`unroot_request_header_timeouts_total`). They are connections, not
/// reviews: no webhook's error ratio counts them.
#[allow(clippy::too_many_arguments)]
pub async fn serve_tls_counted(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    config: &Config,
    mut shutdown: watch::Receiver<bool>,
    readiness: &Readiness,
    draining: &Draining,
    counted: Option<Connections>,
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
        let conn = Conn {
            acceptor: acceptor.clone(),
            service: ConnService {
                inner: TowerToHyperService::new(app.clone()),
                activity: Arc::new(Activity::default()),
                draining: draining.clone(),
                caller: Caller::Unauthenticated,
            },
            handshake_timeout: config.handshake_timeout,
            timeouts: Timeouts {
                header: config.request_timeout,
                idle: config.idle_timeout,
                pressure: Pressure {
                    permits: Arc::clone(&permits),
                    max: config.max_connections,
                },
            },
            counted: counted.clone(),
        };
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            conn.serve(tcp, peer, watcher).await;
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

/// One accepted connection, and what serving it takes.
struct Conn {
    acceptor: TlsAcceptor,
    service: ConnService,
    handshake_timeout: Duration,
    timeouts: Timeouts,
    counted: Option<Connections>,
}

impl Conn {
    /// The TLS handshake, then HTTP until the client leaves, a timeout
    /// ends the connection (with a 408 for a request cut short) or the
    /// graceful shutdown has drained it.
    async fn serve(
        self,
        tcp: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let Self {
            acceptor,
            mut service,
            handshake_timeout,
            timeouts,
            counted,
        } = self;
        let tls = match handshake(acceptor.accept(tcp), handshake_timeout, &timeouts.pressure).await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                if is_unauthenticated(&e) {
                    count_handshake(counted.as_ref(), "unauthenticated");
                    info!(%peer, error = %e, "refused a client without a valid client certificate");
                } else {
                    count_handshake(counted.as_ref(), "error");
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                }
                return;
            }
            Err(HandshakeEnd::ConnectionsShort) => {
                count_handshake(counted.as_ref(), "shed");
                tracing::debug!(%peer, "TLS handshake gave way: connections ran short");
                return;
            }
            Err(HandshakeEnd::TimedOut) => {
                count_handshake(counted.as_ref(), "timeout");
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        // A client certificate is asked for only with --client-ca, and the
        // handshake ends with one only once it chained to the client CA and
        // named an accepted name.
        service.caller = if tls.get_ref().1.peer_certificates().is_some() {
            Caller::Authenticated
        } else {
            Caller::Unauthenticated
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // The header and idle timeouts are TimedStream's (see the module
        // documentation); hyper's would also close idle connections.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None);
        builder.http2().timer(TokioTimer::new());
        let header_timeout = timeouts.header;
        let activity = Arc::clone(&service.activity);
        let (io, returned) = TimedStream::new(tls, activity, timeouts, h2);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        let Err(e) = watcher.watch(conn).await else {
            return;
        };
        // hyper dropped the stream with the connection: it is back.
        match tokio::time::timeout(Duration::from_secs(1), returned).await {
            Ok(Ok((io, Some(Wait::Head)))) => {
                if let Some(counted) = &counted {
                    counted.header_timeouts.inc();
                }
                tracing::debug!(%peer, "request headers did not arrive in time: 408");
                request_timeout(io, header_timeout).await;
            }
            Ok(Ok((_, Some(Wait::Idle)))) => {
                tracing::debug!(%peer, "closed an idle connection");
            }
            _ => tracing::debug!(%peer, error = %e, "connection ended with an error"),
        }
    }
}

/// Why a handshake did not finish.
enum HandshakeEnd {
    /// The handshake timeout ran out.
    TimedOut,
    /// Connections ran short, and it had taken more than a slice.
    ConnectionsShort,
}

/// Runs a TLS handshake for up to `timeout`, in slices: once connections run
/// short, one still unfinished after a slice gives way (the API server's
/// handshakes take milliseconds).
async fn handshake<F: Future>(
    accept: F,
    timeout: Duration,
    pressure: &Pressure,
) -> Result<F::Output, HandshakeEnd> {
    let end = Instant::now() + timeout;
    tokio::pin!(accept);
    loop {
        let now = Instant::now();
        if now >= end {
            return Err(HandshakeEnd::TimedOut);
        }
        let slice = PRESSURE_SLICE.min(end - now);
        if let Ok(done) = tokio::time::timeout(slice, &mut accept).await {
            return Ok(done);
        }
        if pressure.high() {
            return Err(HandshakeEnd::ConnectionsShort);
        }
    }
}

/// Counts a TLS handshake that failed for `reason` (one of
/// [`crate::metrics::HANDSHAKE_FAILURES`]).
fn count_handshake(counted: Option<&Connections>, reason: &str) {
    if let Some(counted) = counted {
        counted
            .handshake_failures
            .with_label_values(&[reason])
            .inc();
    }
}

/// Whether a failed handshake failed for want of a valid client
/// certificate (none sent, one that does not verify against the client CA,
/// or one for a name not accepted).
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
    let message = format!(
        "request headers did not arrive within {} s",
        timeout.as_secs_f64()
    );
    let body = super::status::failure_json(StatusCode::REQUEST_TIMEOUT, "Timeout", &message);
    let head = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    // A client that reads nothing gets no more of our time than this.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        io.write_all(head.as_bytes()).await?;
        io.write_all(&body).await?;
        io.shutdown().await
    })
    .await;
}

/// A connection's service calls, as its stream ([`TimedStream`]) sees them.
#[derive(Debug, Default)]
struct Activity {
    /// Requests whose answer is not yet produced.
    active: AtomicUsize,
    /// Requests whose headers were parsed, ever.
    started: AtomicU64,
}

/// A request in progress on a connection, until its answer is produced.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.started.fetch_add(1, Ordering::Relaxed);
        activity.active.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The app as hyper calls it on one connection: marks the connection busy
/// while a request is answered, tells the handlers who the caller is, and
/// closes HTTP/1.x connections after their answer once the server is
/// draining.
#[derive(Clone)]
struct ConnService {
    inner: TowerToHyperService<Router>,
    activity: Arc<Activity>,
    draining: Draining,
    caller: Caller,
}

type Answer = Response<axum::body::Body>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Answer;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Self::Error>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.caller);
        let busy = Busy::new(&self.activity);
        let http1 = req.version() < Version::HTTP_2;
        let draining = self.draining.clone();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let mut answer = answer.await?;
            if http1 && draining.started() {
                answer
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            drop(busy);
            Ok(answer)
        })
    }
}

#[derive(Debug, Clone)]
struct Timeouts {
    /// From a request's first byte (or the connection's start) until its
    /// headers are parsed.
    header: Duration,
    /// From the end of an answer until the next request's first byte.
    idle: Duration,
    /// Idle connections give way when connections run short.
    pressure: Pressure,
}

/// How many connections are left: when fewer than an eighth of
/// `--max-connections`, idle connections, and those that have not sent a
/// byte, are closed at the end of their current slice of waiting (at most
/// [`PRESSURE_SLICE`]) instead of after the idle or header timeout, so idle
/// clients cannot hold every connection while a review waits to be
/// accepted.
#[derive(Debug, Clone)]
struct Pressure {
    permits: Arc<Semaphore>,
    max: usize,
}

/// How often a waiting connection looks at the pressure.
const PRESSURE_SLICE: Duration = Duration::from_secs(1);

impl Pressure {
    fn high(&self) -> bool {
        self.permits.available_permits() < (self.max / 8).max(1)
    }
}

/// What a connection with no request in progress waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// A request's headers: the first request's, or one that began.
    Head,
    /// The next request, after an answer.
    Idle,
}

/// A connection's stream that hyper serves. It runs the header and idle
/// timeouts (a read past one fails with `TimedOut`, which ends the
/// connection), and goes back to the accept loop when hyper drops it, with
/// the timeout that ended it: after the header timeout, a client that sent
/// part of a request is answered 408.
struct TimedStream<IO> {
    io: Option<IO>,
    back: Option<oneshot::Sender<(IO, Option<Wait>)>>,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    /// HTTP/2 reads frames (pings, window updates) while idle: only the
    /// idle timeout applies between its requests.
    h2: bool,
    /// `None` while a request is being answered.
    waiting: Option<Wait>,
    /// Whether bytes arrived since the last answer (a request under way).
    read_since_answer: bool,
    seen_started: u64,
    /// When the current wait began.
    since: Instant,
    deadline: Pin<Box<Sleep>>,
    expired: Option<Wait>,
}

impl<IO> TimedStream<IO> {
    fn new(
        io: IO,
        activity: Arc<Activity>,
        timeouts: Timeouts,
        h2: bool,
    ) -> (Self, oneshot::Receiver<(IO, Option<Wait>)>) {
        let (back, returned) = oneshot::channel();
        let first = tokio::time::sleep(timeouts.header);
        let stream = Self {
            io: Some(io),
            back: Some(back),
            activity,
            timeouts,
            h2,
            waiting: Some(Wait::Head),
            read_since_answer: false,
            seen_started: 0,
            since: Instant::now(),
            deadline: Box::pin(first),
            expired: None,
        };
        (stream, returned)
    }

    fn wait(&mut self, wait: Wait) {
        self.waiting = Some(wait);
        self.since = Instant::now();
        let first = self.slice().min(self.limit(wait));
        self.deadline.as_mut().reset(self.since + first);
    }

    /// The wait proceeds in slices, to look at the pressure between them.
    fn slice(&self) -> Duration {
        self.timeouts.header.min(PRESSURE_SLICE)
    }

    /// How long `wait` may last without pressure.
    fn limit(&self, wait: Wait) -> Duration {
        match wait {
            Wait::Head => self.timeouts.header,
            Wait::Idle => self.timeouts.idle,
        }
    }

    /// Whether the connection gives way when connections run short: an
    /// idle one, or one that has not sent a byte of its request.
    fn yields(&self, wait: Wait) -> bool {
        wait == Wait::Idle || !self.read_since_answer
    }

    /// Catches up with the service: a request whose headers were parsed
    /// stops the wait.
    fn observe(&mut self) {
        let started = self.activity.started.load(Ordering::Relaxed);
        if started != self.seen_started {
            self.seen_started = started;
            self.waiting = None;
        }
    }

    /// After a read found nothing: whether the wait ran out.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(wait) = self.waiting else {
            return false;
        };
        if self.activity.active.load(Ordering::Relaxed) > 0 {
            return false;
        }
        if self.deadline.as_mut().poll(cx).is_pending() {
            return false;
        }
        let end = self.since + self.limit(wait);
        let now = Instant::now();
        if now < end && !(self.yields(wait) && self.timeouts.pressure.high()) {
            let next = self.slice().min(end - now);
            self.deadline.as_mut().reset(now + next);
            // Registers the waker for the next slice.
            return self.deadline.as_mut().poll(cx).is_ready() && self.expire(wait);
        }
        self.expire(wait)
    }

    fn expire(&mut self, wait: Wait) -> bool {
        // An idle connection closed, or one whose request never arrived
        // whole; only the latter is answered 408, and only over HTTP/1.
        let head = wait == Wait::Head && self.read_since_answer && !self.h2;
        self.expired = Some(if head { Wait::Head } else { Wait::Idle });
        true
    }

    fn wrote(&mut self, n: usize) {
        if n > 0 && self.activity.active.load(Ordering::Relaxed) == 0 {
            self.observe();
            if self.waiting.is_none() {
                self.read_since_answer = false;
                self.wait(Wait::Idle);
            }
        }
    }
}

impl<IO> Drop for TimedStream<IO> {
    fn drop(&mut self) {
        if let (Some(io), Some(back)) = (self.io.take(), self.back.take()) {
            let _ = back.send((io, self.expired));
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection already handed back",
    )
}

impl<IO: AsyncRead + Unpin> AsyncRead for TimedStream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.observe();
        let Some(io) = this.io.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let before = buf.filled().len();
        let polled = Pin::new(io).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.read_since_answer = true;
                if this.waiting == Some(Wait::Idle) && !this.h2 {
                    this.wait(Wait::Head);
                }
                polled
            }
            Poll::Pending if this.poll_expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request in time",
            ))),
            _ => polled,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for TimedStream<IO> {
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
        if let Poll::Ready(Ok(n)) = polled {
            this.wrote(n);
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
        if let Poll::Ready(Ok(n)) = polled {
            this.wrote(n);
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
