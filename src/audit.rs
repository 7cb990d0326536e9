//! The audit log: one structured JSON line per admission decision.
//!
//! The review wrapper builds a [`Record`] from the request and the decision
//! (never from the object: no request body, no pod spec, no secret material
//! is ever in a record) and hands it to [`Log::record`], which never blocks:
//! the record goes into a bounded queue, and when the queue is full it is
//! dropped and counted (`unroot_audit_records_dropped_total{reason="queue_full"}`).
//! One writer thread owns the sink (stdout in `serve`, any `Write` in tests),
//! so a slow or blocked stdout stalls that thread only, never a review. The
//! writer works in batches: woken by a record, it lets the records of the
//! next few milliseconds join it, writes them at once, and flushes when
//! the queue is empty.
//!
//! A record says whether its caller was authenticated (`--client-ca`).
//! Records of unauthenticated callers may fill at most
//! [`UNAUTHENTICATED_QUEUE`] of the queue's places, so a flood of forged
//! reviews drops only its own records, never an authenticated caller's;
//! the drop counter's `caller` label says whose were dropped.
//!
//! The same thread keeps the last [`RECENT`] denied or warned decisions of
//! each kind of caller in a ring for the `/dashboard` page.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::{Timestamp, Unit};
use prometheus::{IntCounterVec, Registry};
use serde::{Serialize, Serializer};

use crate::admission::{Decision, Request};

/// Records waiting for the writer; more are dropped and counted.
pub const QUEUE: usize = 4096;

/// Most places of the queue records of unauthenticated callers may take:
/// the rest is reserved for authenticated callers.
pub const UNAUTHENTICATED_QUEUE: usize = QUEUE / 2;

/// Denied or warned decisions kept for the dashboard, per kind of caller.
pub const RECENT: usize = 100;

/// The value of the `audit` field that tells audit lines from log lines.
pub const EVENT: &str = "admission";

/// One admission decision, as the audit log writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// When the answer was sent (RFC 3339, UTC, milliseconds).
    #[serde(serialize_with = "millis")]
    pub time: Timestamp,
    /// Always [`EVENT`]: marks the line as an audit record.
    pub audit: &'static str,
    /// `mutate` or `validate`.
    pub webhook: &'static str,
    /// The AdmissionReview request uid (the API server's audit ID for it).
    pub uid: String,
    /// The object's namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// The object's name (empty when the API server has not generated it yet).
    pub name: String,
    /// The object's kind as the API server sent it.
    pub kind: String,
    /// `CREATE`, `UPDATE`, `DELETE`, `CONNECT` or `other`.
    pub operation: &'static str,
    /// The subresource, e.g. `ephemeralcontainers` (empty for none).
    pub subresource: String,
    /// The requesting user's name (`userInfo.username`; groups are not kept).
    pub user: String,
    /// Whether the caller proved it is the API server (a client certificate
    /// `--client-ca` accepted). An unauthenticated record may be forged by
    /// anyone who reaches the webhook port, user name and all.
    pub authenticated: bool,
    /// Whether the request was a dry run.
    pub dry_run: bool,
    /// `allowed`, `patched`, `denied` or `error` (the metrics' outcome).
    pub outcome: &'static str,
    /// Whether the request was admitted.
    pub allowed: bool,
    /// The status code of a refusal (403 for a Pod Security denial).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// The mutations applied (`security_context`, `trust_bundle`, ...).
    pub mutations: Vec<&'static str>,
    /// The Pod Security evaluations that counted, with the failed check IDs.
    pub pod_security: Vec<PodSecurity>,
    /// Why Pod Security did not evaluate (`namespace`, `user`,
    /// `runtimeClass`), if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exempt: Option<&'static str>,
    /// The namespace's `unroot.dev/harden` mode (`on`, `warn`, `off`), for a
    /// pod /mutate considered for hardening.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub harden: Option<&'static str>,
    /// Warnings returned to the client.
    pub warnings: usize,
    /// The hash of the policy that decided.
    pub policy_hash: String,
    /// Time from the full body read to the answer.
    pub duration_seconds: f64,
}

/// One Pod Security evaluation of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodSecurity {
    /// `enforce`, `audit` or `warn`.
    pub mode: &'static str,
    /// The level evaluated.
    pub level: &'static str,
    /// The version evaluated, as the namespace asked for it.
    pub version: String,
    /// Whether the object passed.
    pub allowed: bool,
    /// The IDs of the failed checks, in upstream order.
    pub checks: Vec<&'static str>,
}

/// RFC 3339 with exactly three fractional digits, so every line's time has
/// the same width and sorts as text.
fn millis<S: Serializer>(time: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{time:.3}"))
}

impl Record {
    /// The record of `decision`, the answer of `webhook` to `request` under
    /// the policy `policy_hash`, after `duration`.
    #[must_use]
    pub fn new(
        webhook: &'static str,
        request: &Request<'_>,
        decision: &Decision,
        policy_hash: &str,
        duration: Duration,
    ) -> Self {
        let response = &decision.response;
        let facts = &decision.facts;
        let now = Timestamp::now();
        Self {
            time: now.round(Unit::Millisecond).unwrap_or(now),
            audit: EVENT,
            webhook,
            uid: request.uid.clone(),
            namespace: request.namespace().to_owned(),
            name: request.name().to_owned(),
            kind: if request.kind.kind.is_empty() {
                request.target().as_str().to_owned()
            } else {
                request.kind.kind.clone()
            },
            operation: request.operation.as_str(),
            subresource: request.sub_resource().to_owned(),
            user: request.user_info.username.clone(),
            authenticated: false,
            dry_run: request.is_dry_run(),
            outcome: response.outcome(),
            allowed: response.allowed,
            code: response.status.as_ref().and_then(|s| s.code),
            mutations: facts.mutations.iter().map(|m| m.as_str()).collect(),
            pod_security: facts
                .pss
                .iter()
                .map(|r| PodSecurity {
                    mode: r.mode.as_str(),
                    level: r.policy.level.as_str(),
                    version: r.policy.version.to_string(),
                    allowed: r.allowed,
                    checks: r.checks.clone(),
                })
                .collect(),
            exempt: facts.exempt,
            harden: facts.harden.map(crate::policy::HardenMode::as_str),
            warnings: response.warnings.len(),
            policy_hash: policy_hash.to_owned(),
            duration_seconds: duration.as_secs_f64(),
        }
    }

    /// The record, marked as from an authenticated caller or not (records
    /// start unauthenticated).
    #[must_use]
    pub fn with_authenticated(mut self, authenticated: bool) -> Self {
        self.authenticated = authenticated;
        self
    }

    /// The `caller` label of the drop counter.
    fn caller(&self) -> &'static str {
        caller_label(self.authenticated)
    }

    /// Whether the dashboard lists it: refused, or answered with warnings.
    #[must_use]
    pub fn is_notable(&self) -> bool {
        !self.allowed || self.warnings > 0
    }

    /// The failed checks, one `mode: check, check` per mode that failed,
    /// in the order evaluated.
    #[must_use]
    pub fn failed_checks(&self) -> Vec<String> {
        self.pod_security
            .iter()
            .filter(|p| !p.checks.is_empty())
            .map(|p| format!("{}: {}", p.mode, p.checks.join(", ")))
            .collect()
    }
}

fn caller_label(authenticated: bool) -> &'static str {
    if authenticated {
        "authenticated"
    } else {
        "unauthenticated"
    }
}

/// The audit log's own counter.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Records lost, by reason: `queue_full` (the writer is behind, or
    /// unauthenticated records hold their share of the queue),
    /// `write_failed` (the sink refused the line); and by caller,
    /// `authenticated` or `unauthenticated`.
    pub dropped: IntCounterVec,
}

impl Metrics {
    /// Registers `unroot_audit_records_dropped_total`.
    ///
    /// # Panics
    /// Never: a constant name, registered once into the server's registry.
    #[must_use]
    #[allow(clippy::missing_panics_doc)]
    pub fn new(registry: &Registry) -> Self {
        let dropped: IntCounterVec = crate::metrics::register(
            registry,
            crate::metrics::names::AUDIT_RECORDS_DROPPED,
            "Audit records lost, by reason (queue_full: the writer is behind, or unauthenticated records fill their share of the queue; write_failed: the sink refused them) and by caller (authenticated or unauthenticated).",
            &["reason", "caller"],
        );
        for reason in ["queue_full", "write_failed"] {
            for caller in ["authenticated", "unauthenticated"] {
                dropped.with_label_values(&[reason, caller]);
            }
        }
        Self { dropped }
    }
}

/// What the writer thread receives.
enum Message {
    Record(Box<Record>),
    /// Everything sent before is written and flushed: say so.
    Flush(mpsc::Sender<()>),
}

/// The last denied or warned decisions, newest last: one ring for
/// authenticated callers and one for the rest, so forged records cannot
/// push genuine ones out.
#[derive(Debug, Default)]
pub struct Recent {
    // Only the writer thread and the dashboard take these locks, never a
    // review.
    authenticated: Mutex<VecDeque<Arc<Record>>>,
    unauthenticated: Mutex<VecDeque<Arc<Record>>>,
}

impl Recent {
    fn push(&self, record: Arc<Record>) {
        let ring = if record.authenticated {
            &self.authenticated
        } else {
            &self.unauthenticated
        };
        if let Ok(mut ring) = ring.lock() {
            if ring.len() == RECENT {
                ring.pop_front();
            }
            ring.push_back(record);
        }
    }

    /// The records of both rings, newest first.
    #[must_use]
    pub fn newest_first(&self) -> Vec<Arc<Record>> {
        let mut all: Vec<Arc<Record>> = Vec::new();
        for ring in [&self.authenticated, &self.unauthenticated] {
            if let Ok(ring) = ring.lock() {
                all.extend(ring.iter().rev().cloned());
            }
        }
        // Stable: records of the same millisecond stay newest first.
        all.sort_by_key(|r| std::cmp::Reverse(r.time));
        all
    }
}

/// The handle reviews write through; cheap to clone.
#[derive(Clone)]
pub struct Log {
    queue: SyncSender<Message>,
    /// Whether every record is written; without a sink only the notable
    /// ones are built, for the dashboard.
    has_sink: bool,
    metrics: Metrics,
    recent: Arc<Recent>,
    /// Records of unauthenticated callers in the queue.
    unauthenticated: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("audit::Log")
            .field("has_sink", &self.has_sink)
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Starts the writer thread. With `sink`, every record is written to it
    /// as one JSON line; without, records only feed the dashboard's ring.
    ///
    /// # Panics
    /// When the OS cannot start a thread (the process cannot run then).
    #[must_use]
    pub fn start(sink: Option<Box<dyn Write + Send>>, registry: &Registry) -> Self {
        let metrics = Metrics::new(registry);
        let (queue, rx) = mpsc::sync_channel(QUEUE);
        let recent = Arc::new(Recent::default());
        let unauthenticated = Arc::new(AtomicUsize::new(0));
        let has_sink = sink.is_some();
        let writer = Writer {
            sink,
            recent: Arc::clone(&recent),
            unauthenticated: Arc::clone(&unauthenticated),
            dropped: metrics.dropped.clone(),
            batch: Vec::with_capacity(BATCH),
            batched: [0, 0],
            failing: false,
        };
        std::thread::Builder::new()
            .name("audit-writer".to_owned())
            .spawn(move || writer.run(&rx))
            .expect("failed to start the audit writer thread");
        Self {
            queue,
            has_sink,
            metrics,
            recent,
            unauthenticated,
        }
    }

    /// Records a decision; `build` runs only when the record is wanted
    /// (always with a sink, else only for a denied or warned decision).
    /// Never blocks: a full queue drops the record and counts it, and so
    /// does an unauthenticated record when such records hold
    /// [`UNAUTHENTICATED_QUEUE`] places already.
    pub fn record(&self, decision: &Decision, build: impl FnOnce() -> Record) {
        let notable = !decision.response.allowed || !decision.response.warnings.is_empty();
        if !self.has_sink && !notable {
            return;
        }
        let record = build();
        let caller = record.caller();
        let authenticated = record.authenticated;
        if !authenticated {
            let taken = self.unauthenticated.fetch_add(1, Ordering::AcqRel);
            if taken >= UNAUTHENTICATED_QUEUE {
                self.unauthenticated.fetch_sub(1, Ordering::AcqRel);
                self.dropped("queue_full", caller);
                return;
            }
        }
        match self.queue.try_send(Message::Record(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                if !authenticated {
                    self.unauthenticated.fetch_sub(1, Ordering::AcqRel);
                }
                self.dropped("queue_full", caller);
            }
        }
    }

    fn dropped(&self, reason: &str, caller: &str) {
        self.metrics
            .dropped
            .with_label_values(&[reason, caller])
            .inc();
    }

    /// Waits (up to `timeout`) until every record sent before is written and
    /// flushed. For shutdown and tests; never call it from a review.
    #[must_use]
    pub fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        if self.queue.send(Message::Flush(tx)).is_err() {
            return false;
        }
        rx.recv_timeout(timeout).is_ok()
    }

    /// Whether every record is written somewhere (else only the
    /// dashboard's ring is fed).
    #[must_use]
    pub fn has_sink(&self) -> bool {
        self.has_sink
    }

    /// The last denied or warned decisions.
    #[must_use]
    pub fn recent(&self) -> &Recent {
        &self.recent
    }
}

/// Bytes of lines gathered before they are written out.
const BATCH: usize = 64 * 1024;

/// How long the writer lets records gather after one wakes it: an audit
/// line is written at most this much later, and the queue ([`QUEUE`])
/// holds what arrives meanwhile at up to 400,000 reviews a second.
const LINGER: Duration = Duration::from_millis(10);

/// The writer thread's state.
struct Writer {
    sink: Option<Box<dyn Write + Send>>,
    recent: Arc<Recent>,
    /// Records of unauthenticated callers in the queue ([`Log`]'s count).
    unauthenticated: Arc<AtomicUsize>,
    dropped: IntCounterVec,
    /// Whole lines not yet written: a failing sink never gets half a record.
    batch: Vec<u8>,
    /// Records in `batch`, lost if writing it fails: unauthenticated, then
    /// authenticated.
    batched: [u64; 2],
    /// Set after a failed write, so a dead sink is reported once, not per line.
    failing: bool,
}

impl Writer {
    fn run(mut self, rx: &Receiver<Message>) {
        while let Ok(message) = rx.recv() {
            // A record woke the writer: let the records of the next
            // LINGER join it, so that under load the writer is woken and
            // writes once per LINGER, not once per record. A flush (at
            // shutdown) is answered at once.
            if matches!(message, Message::Record(_)) {
                std::thread::sleep(LINGER);
            }
            self.handle(message);
            // Write what is queued, then flush once the queue is empty.
            while let Ok(message) = rx.try_recv() {
                self.handle(message);
            }
            self.flush();
        }
        self.flush();
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Record(record) => {
                let record: Arc<Record> = Arc::from(record);
                if !record.authenticated {
                    self.unauthenticated.fetch_sub(1, Ordering::AcqRel);
                }
                if self.sink.is_some() {
                    // A record is strings, numbers and bools: it serializes.
                    let _ = serde_json::to_writer(&mut self.batch, &*record);
                    self.batch.push(b'\n');
                    self.batched[usize::from(record.authenticated)] += 1;
                    if self.batch.len() >= BATCH {
                        self.flush();
                    }
                }
                if record.is_notable() {
                    self.recent.push(record);
                }
            }
            Message::Flush(done) => {
                self.flush();
                let _ = done.send(());
            }
        }
    }

    fn flush(&mut self) {
        let Some(sink) = &mut self.sink else {
            return;
        };
        if self.batch.is_empty() {
            return;
        }
        let written = sink.write_all(&self.batch).and_then(|()| sink.flush());
        self.batch.clear();
        let lost = std::mem::take(&mut self.batched);
        match written {
            Ok(()) => self.failing = false,
            Err(e) => {
                for (authenticated, n) in [(false, lost[0]), (true, lost[1])] {
                    self.dropped
                        .with_label_values(&["write_failed", caller_label(authenticated)])
                        .inc_by(n);
                }
                if !self.failing {
                    tracing::warn!(error = %e, "failed to write the audit log; records are dropped and counted in unroot_audit_records_dropped_total until it works again");
                }
                self.failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{Applied, Facts, Mode, PssResult, Response};
    use crate::pss::{Level, LevelVersion, Version};

    fn request() -> Request<'static> {
        serde_json::from_str(
            r#"{"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},
            "resource":{"group":"","version":"v1","resource":"pods"},"name":"p","namespace":"ns",
            "operation":"CREATE","userInfo":{"username":"alice","groups":["g"]}}"#,
        )
        .unwrap()
    }

    fn denied() -> Decision {
        Decision {
            response: Response::deny("u1", 403, "Forbidden", "no"),
            facts: Facts {
                mutations: vec![Applied::SecurityContext],
                pss: vec![PssResult {
                    mode: Mode::Enforce,
                    policy: LevelVersion {
                        level: Level::Restricted,
                        version: Version::Minor(24),
                    },
                    allowed: false,
                    checks: vec!["privileged", "runAsNonRoot"],
                }],
                exempt: None,
                harden: None,
                pss_error: None,
            },
        }
    }

    /// A sink the test can read.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_record_is_one_json_line_without_the_object() {
        let record = Record::new(
            "validate",
            &request(),
            &denied(),
            "abc",
            Duration::from_micros(1500),
        )
        .with_authenticated(true);
        let mut value = serde_json::to_value(&record).unwrap();
        assert!(value["time"].as_str().unwrap().ends_with('Z'));
        value["time"] = serde_json::Value::Null;
        assert_eq!(
            value,
            serde_json::json!({"time":null,"audit":"admission","webhook":"validate","uid":"u1",
                "namespace":"ns","name":"p","kind":"Pod","operation":"CREATE","subresource":"",
                "user":"alice","authenticated":true,"dry_run":false,"outcome":"denied","allowed":false,"code":403,
                "mutations":["security_context"],
                "pod_security":[{"mode":"enforce","level":"restricted","version":"v1.24",
                    "allowed":false,"checks":["privileged","runAsNonRoot"]}],
                "warnings":0,"policy_hash":"abc","duration_seconds":0.0015})
        );
        assert_eq!(
            record.failed_checks(),
            ["enforce: privileged, runAsNonRoot"]
        );
    }

    #[test]
    fn every_record_goes_to_the_sink_and_notable_ones_to_the_ring() {
        let buffer = Buffer::default();
        let registry = Registry::new();
        let log = Log::start(Some(Box::new(buffer.clone())), &registry);
        let allowed = Decision::from(Response::allow("u2"));
        log.record(&allowed, || {
            Record::new("validate", &request(), &allowed, "h", Duration::ZERO)
        });
        let denied = denied();
        log.record(&denied, || {
            Record::new("validate", &request(), &denied, "h", Duration::ZERO)
        });
        assert!(log.flush(Duration::from_secs(5)));
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains(r#""outcome":"allowed""#), "{}", lines[0]);
        assert!(lines[1].contains(r#""outcome":"denied""#), "{}", lines[1]);
        let recent = log.recent().newest_first();
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].outcome, "denied");
    }

    #[test]
    fn without_a_sink_only_notable_records_are_built() {
        let log = Log::start(None, &Registry::new());
        let allowed = Decision::from(Response::allow("u"));
        log.record(&allowed, || panic!("an allowed decision needs no record"));
        let denied = denied();
        log.record(&denied, || {
            Record::new("validate", &request(), &denied, "h", Duration::ZERO)
        });
        assert!(log.flush(Duration::from_secs(5)));
        assert_eq!(log.recent().newest_first().len(), 1);
    }

    #[test]
    fn the_ring_keeps_the_newest_hundred() {
        let log = Log::start(None, &Registry::new());
        let denied = denied();
        for i in 0..(RECENT + 5) {
            log.record(&denied, || {
                let mut r = Record::new("validate", &request(), &denied, "h", Duration::ZERO);
                r.name = format!("p{i}");
                r
            });
            // The queue is bounded: let the writer keep up.
            if i % 50 == 0 {
                assert!(log.flush(Duration::from_secs(5)));
            }
        }
        assert!(log.flush(Duration::from_secs(5)));
        let recent = log.recent().newest_first();
        assert_eq!(recent.len(), RECENT);
        assert_eq!(recent[0].name, format!("p{}", RECENT + 4));
        assert_eq!(recent[RECENT - 1].name, "p5");
    }

    /// A sink that blocks until released: the writer thread is stuck.
    struct Blocked(Arc<(Mutex<bool>, std::sync::Condvar)>);

    impl Write for Blocked {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (lock, cvar) = &*self.0;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cvar.wait(open).unwrap();
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A denied decision's record, from an authenticated caller or not.
    fn record_of(decision: &Decision, authenticated: bool) -> Record {
        Record::new("validate", &request(), decision, "h", Duration::ZERO)
            .with_authenticated(authenticated)
    }

    fn dropped(log: &Log, reason: &str, caller: &str) -> u64 {
        log.metrics
            .dropped
            .with_label_values(&[reason, caller])
            .get()
    }

    #[test]
    fn a_blocked_sink_never_blocks_a_review_and_drops_are_counted() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let registry = Registry::new();
        let log = Log::start(Some(Box::new(Blocked(Arc::clone(&gate)))), &registry);
        let denied = denied();
        let extra = 100;
        let started = std::time::Instant::now();
        // The writer may take a few records off the queue before it blocks.
        for _ in 0..(QUEUE * 2 + extra) {
            log.record(&denied, || record_of(&denied, true));
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "recording blocked"
        );
        let dropped = dropped(&log, "queue_full", "authenticated");
        assert!(
            // The writer holds at most a batch (64 KiB, ~150 records).
            dropped >= (QUEUE + extra) as u64 - 400 && dropped <= (QUEUE + extra) as u64,
            "dropped {dropped}"
        );
        let (lock, cvar) = &*gate;
        *lock.lock().unwrap() = true;
        cvar.notify_all();
        assert!(log.flush(Duration::from_secs(5)));
    }

    #[test]
    fn unauthenticated_records_never_take_the_places_of_authenticated_ones() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let registry = Registry::new();
        let log = Log::start(Some(Box::new(Blocked(Arc::clone(&gate)))), &registry);
        let denied = denied();
        // A flood of forged reviews while the writer is stuck...
        for _ in 0..(QUEUE * 2) {
            log.record(&denied, || record_of(&denied, false));
        }
        let flooded = dropped(&log, "queue_full", "unauthenticated");
        assert!(
            flooded >= (QUEUE * 2 - UNAUTHENTICATED_QUEUE) as u64 - 400,
            "dropped {flooded}"
        );
        // ...leaves room for every authenticated record up to the rest of
        // the queue.
        for _ in 0..(QUEUE - UNAUTHENTICATED_QUEUE) {
            log.record(&denied, || record_of(&denied, true));
        }
        assert_eq!(dropped(&log, "queue_full", "authenticated"), 0);
        let (lock, cvar) = &*gate;
        *lock.lock().unwrap() = true;
        cvar.notify_all();
        assert!(log.flush(Duration::from_secs(5)));
        // Once written, their places are free again.
        assert_eq!(log.unauthenticated.load(Ordering::Acquire), 0);
        let recent = log.recent().newest_first();
        assert_eq!(
            recent.iter().filter(|r| r.authenticated).count(),
            RECENT,
            "the dashboard keeps the authenticated records too"
        );
        assert_eq!(recent.len(), 2 * RECENT);
    }

    /// A sink that always fails.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
    }

    #[test]
    fn failed_writes_are_counted() {
        let log = Log::start(Some(Box::new(Broken)), &Registry::new());
        let denied = denied();
        log.record(&denied, || {
            Record::new("validate", &request(), &denied, "h", Duration::ZERO)
        });
        assert!(log.flush(Duration::from_secs(5)));
        assert_eq!(dropped(&log, "write_failed", "unauthenticated"), 1);
        assert_eq!(dropped(&log, "write_failed", "authenticated"), 0);
        // The dashboard still sees it.
        assert_eq!(log.recent().newest_first().len(), 1);
    }
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn times_always_have_three_fractional_digits() {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::new(&mut out);
        let t: super::Timestamp = "2026-11-28T12:00:00.1Z".parse().unwrap();
        super::millis(&t, &mut ser).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"2026-11-28T12:00:00.100Z\""
        );
    }
}
