//! What one replica takes on at once: reviews being decided, and request
//! bytes held in memory. Beyond either, a request is shed at once with 429
//! and `Retry-After` (the API server's REST client retries it within the
//! webhook's timeout) instead of waiting in an unbounded queue. Reviews
//! over [`OFFLOAD_BYTES`] also wait, within their deadline, for one of a
//! few places to be decided off the async workers: a queue bounded by the
//! reviews and bytes above.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default of `--max-concurrent-reviews`.
pub const DEFAULT_MAX_CONCURRENT_REVIEWS: usize = 256;

/// Default of `--max-buffered-bytes`: four of the largest bodies.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 4 * super::MAX_BODY_BYTES;

/// Default of `--review-timeout`: the API server's own maximum webhook
/// timeout (`timeoutSeconds` is at most 30, and defaults to 10).
pub const DEFAULT_REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// A review body larger than this is decoded only while no other such
/// review is: decoded, a review costs many times its size (the 3 MB review
/// of 50,000 containers takes about 170 MiB as typed pod structs), so two
/// at once would double the worst case a replica must fit in memory.
pub const LARGE_REVIEW_BYTES: usize = 1024 * 1024;

/// A review body larger than this is decided on a thread of its own
/// ([`super::offload`]), not on an async worker, where the small reviews
/// behind it and the lag probe would wait for it. Measured (`make bench`,
/// `offload/*`): the hop costs about 150 µs; `/mutate` of minimal
/// containers, the shape that costs most per byte, takes about 0.3 µs a
/// byte (20 ms at 64 KiB), a realistic pod about 11 ns a byte (0.7 ms at
/// 64 KiB, where the hop adds a fifth). Below it, reviews of up to about
/// twenty realistic containers, the hop would cost more than it saves.
pub const OFFLOAD_BYTES: usize = 64 * 1024;

/// What a client is told to wait before it retries a shed request.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// The limits and what is taken of them right now. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Limits {
    /// The longest a review may take (the API server's `?timeout=` may
    /// shorten it).
    pub review_timeout: Duration,
    max_concurrent_reviews: usize,
    max_buffered_bytes: usize,
    reviews: Arc<Semaphore>,
    large: Arc<Semaphore>,
    offloaded: Arc<Semaphore>,
    max_offloaded: usize,
    bytes: Arc<Semaphore>,
    /// How far behind the runtime may be before reviews are shed, and the
    /// probe that measures it; `None`: never shed for that.
    lag: Option<(super::lag::Lag, Duration)>,
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(
            DEFAULT_REVIEW_TIMEOUT,
            DEFAULT_MAX_CONCURRENT_REVIEWS,
            DEFAULT_MAX_BUFFERED_BYTES,
        )
    }
}

impl Limits {
    /// Limits of `max_concurrent_reviews` reviews being decided and
    /// `max_buffered_bytes` of request bodies held at once (both at least 1,
    /// and at most what a semaphore counts).
    #[must_use]
    pub fn new(
        review_timeout: Duration,
        max_concurrent_reviews: usize,
        max_buffered_bytes: usize,
    ) -> Self {
        let max_concurrent_reviews = max_concurrent_reviews.clamp(1, Semaphore::MAX_PERMITS);
        let max_buffered_bytes = max_buffered_bytes.clamp(1, Semaphore::MAX_PERMITS);
        // One per CPU, and two on one CPU, so that a review over
        // OFFLOAD_BYTES does not wait for the whole of a 3 MB one; the
        // async worker still gets the CPU first (these threads run at a
        // lower priority).
        let max_offloaded = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .max(2);
        Self {
            review_timeout,
            max_concurrent_reviews,
            max_buffered_bytes,
            reviews: Arc::new(Semaphore::new(max_concurrent_reviews)),
            large: Arc::new(Semaphore::new(1)),
            offloaded: Arc::new(Semaphore::new(max_offloaded)),
            max_offloaded,
            bytes: Arc::new(Semaphore::new(max_buffered_bytes)),
            lag: None,
        }
    }

    /// Decides at most `max` (at least 1) reviews over [`OFFLOAD_BYTES`] at
    /// once; by default one per CPU, and at least two.
    #[must_use]
    pub fn with_max_offloaded(mut self, max: usize) -> Self {
        self.max_offloaded = max.clamp(1, Semaphore::MAX_PERMITS);
        self.offloaded = Arc::new(Semaphore::new(self.max_offloaded));
        self
    }

    /// Also sheds reviews while the runtime is more than `max` behind
    /// ([`super::lag`]); zero never does.
    #[must_use]
    pub fn with_max_lag(mut self, max: Duration) -> Self {
        self.lag = (!max.is_zero()).then(|| (super::lag::Lag::default(), max));
        self
    }

    /// The task that measures how far behind the runtime is, when reviews
    /// are shed for it; the server runs it while it serves.
    #[must_use]
    pub fn lag_probe(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        self.lag.as_ref().map(|(lag, _)| lag.clone().probe())
    }

    /// How far behind the runtime is at `now`, and the most allowed, when
    /// that is more than allowed.
    #[must_use]
    pub fn too_far_behind(&self, now: Instant) -> Option<(Duration, Duration)> {
        let (lag, max) = self.lag.as_ref()?;
        let behind = lag.behind(now);
        (behind > *max).then_some((behind, *max))
    }

    /// Most reviews decided at once.
    #[must_use]
    pub fn max_concurrent_reviews(&self) -> usize {
        self.max_concurrent_reviews
    }

    /// Most request bytes held at once.
    #[must_use]
    pub fn max_buffered_bytes(&self) -> usize {
        self.max_buffered_bytes
    }

    /// A place for one review to be decided, or `None` when all are taken.
    #[must_use]
    pub fn try_review(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.reviews).try_acquire_owned().ok()
    }

    /// The one place for a review over [`LARGE_REVIEW_BYTES`], or `None`
    /// while another holds it.
    #[must_use]
    pub fn try_large_review(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.large).try_acquire_owned().ok()
    }

    /// A place for a review over [`OFFLOAD_BYTES`] on a thread of its own,
    /// once one of the [`Limits::max_offloaded`] is free.
    pub async fn offload_place(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.offloaded).acquire_owned().await.ok()
    }

    /// Most reviews over [`OFFLOAD_BYTES`] decided at once.
    #[must_use]
    pub fn max_offloaded(&self) -> usize {
        self.max_offloaded
    }

    /// A budget for request bytes, empty until [`ByteBudget::take`] grows it.
    #[must_use]
    pub fn bytes(&self) -> ByteBudget {
        ByteBudget {
            pool: Arc::clone(&self.bytes),
            held: None,
        }
    }
}

/// Request bytes one request holds; given back when dropped.
#[derive(Debug)]
pub struct ByteBudget {
    pool: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
}

impl ByteBudget {
    /// Takes `n` more bytes from the pool; `false` when the pool has fewer
    /// left (then nothing is taken).
    pub fn take(&mut self, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let Ok(n) = u32::try_from(n) else {
            return false;
        };
        match Arc::clone(&self.pool).try_acquire_many_owned(n) {
            Ok(permit) => {
                match &mut self.held {
                    Some(held) => held.merge(permit),
                    None => self.held = Some(permit),
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Bytes held.
    #[must_use]
    pub fn held(&self) -> usize {
        self.held
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviews_and_bytes_are_shed_beyond_the_limits_and_given_back() {
        let limits = Limits::new(Duration::from_secs(1), 2, 100);
        let a = limits.try_review();
        let b = limits.try_review();
        assert!(a.is_some() && b.is_some());
        assert!(limits.try_review().is_none(), "a third review is shed");
        drop(a);
        assert!(
            limits.try_review().is_some(),
            "a finished review frees its place"
        );

        let mut first = limits.bytes();
        assert!(first.take(60));
        assert!(first.take(30));
        assert_eq!(first.held(), 90);
        let mut second = limits.bytes();
        assert!(!second.take(20), "only 10 bytes are left");
        assert_eq!(second.held(), 0);
        assert!(second.take(10));
        drop(first);
        assert!(
            limits.bytes().take(90),
            "dropped budgets go back to the pool"
        );
        assert!(!limits.bytes().take(usize::MAX));
    }
}
