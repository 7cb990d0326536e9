//! How far behind the runtime is. A probe task sleeps [`PERIOD`] at a time
//! and records how late it wakes; while every worker is busy, a task that
//! becomes runnable (a timer, or a request's next bytes) waits that long
//! before it runs. The caps in [`super::limits`] count reviews and bytes,
//! not a CPU that cannot keep up: beyond `--max-lag`, a review is shed with
//! 429 and `Retry-After` like any other excess load, instead of joining a
//! queue whose wait grows as long as the overload lasts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the probe wakes.
pub const PERIOD: Duration = Duration::from_millis(50);

/// The probe's last observations. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Lag {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    origin: Instant,
    /// When the probe last woke, in microseconds since `origin`.
    woke_us: AtomicU64,
    /// How late it woke then, in microseconds.
    late_us: AtomicU64,
}

impl Default for Lag {
    fn default() -> Self {
        let origin = Instant::now();
        Self {
            inner: Arc::new(Inner {
                origin,
                woke_us: AtomicU64::new(0),
                late_us: AtomicU64::new(0),
            }),
        }
    }
}

impl Lag {
    /// How far behind the runtime is at `now`: how late the probe last
    /// woke, or, when it is overdue now, by how much (a runtime too busy to
    /// run the probe at all is behind by at least that).
    #[must_use]
    pub fn behind(&self, now: Instant) -> Duration {
        let late = Duration::from_micros(self.inner.late_us.load(Ordering::Relaxed));
        let woke =
            self.inner.origin + Duration::from_micros(self.inner.woke_us.load(Ordering::Relaxed));
        let overdue = now.saturating_duration_since(woke).saturating_sub(PERIOD);
        late.max(overdue)
    }

    /// The probe: runs until dropped (the server aborts it when it stops).
    /// How late it woke stands until it wakes again, so a runtime that
    /// stays busy is seen as behind all along, not only while the probe
    /// waits for a worker. The clock starts when the probe is made, not
    /// when it is first polled: the time since the `Lag` was created (the
    /// server's start-up) is no lag.
    pub fn probe(self) -> impl Future<Output = ()> + Send + 'static {
        let mut asleep = Instant::now();
        self.record(asleep, Duration::ZERO);
        async move {
            loop {
                tokio::time::sleep(PERIOD).await;
                let woke = Instant::now();
                let late = woke
                    .saturating_duration_since(asleep)
                    .saturating_sub(PERIOD);
                self.record(woke, late);
                asleep = woke;
            }
        }
    }

    fn record(&self, woke: Instant, late: Duration) {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.inner.late_us.store(micros(late), Ordering::Relaxed);
        self.inner.woke_us.store(
            micros(woke.saturating_duration_since(self.inner.origin)),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one worker of a current-thread runtime is blocked: the probe
    /// cannot run, and is seen to be overdue; once it runs again it reports
    /// how late it woke, and after that it is on time again.
    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_runtime_is_behind_by_about_the_block() {
        let lag = Lag::default();
        let probe = tokio::spawn(lag.clone().probe());
        tokio::time::sleep(PERIOD * 3).await;
        assert!(
            lag.behind(Instant::now()) < Duration::from_millis(40),
            "an idle runtime: {:?}",
            lag.behind(Instant::now())
        );

        std::thread::sleep(Duration::from_millis(400));
        let overdue = lag.behind(Instant::now());
        assert!(
            overdue >= Duration::from_millis(300),
            "overdue while blocked: {overdue:?}"
        );
        // The probe's timer expired long ago: it runs before this one.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let late = lag.behind(Instant::now());
        assert!(late >= Duration::from_millis(300), "woke late: {late:?}");

        tokio::time::sleep(PERIOD * 4).await;
        let again = lag.behind(Instant::now());
        assert!(
            again < Duration::from_millis(40),
            "on time again: {again:?}"
        );
        probe.abort();
    }
}
