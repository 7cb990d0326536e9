//! Large reviews off the async workers. A review over
//! [`super::limits::OFFLOAD_BYTES`] is decoded, decided and encoded on a
//! thread of its own, started for it, at a lower CPU priority (nice +10
//! on Linux): the async workers keep answering small reviews and the lag
//! probe stays on time, and on a one-CPU replica the kernel gives them the
//! CPU first (about nine tenths of it while both want it); the large
//! review takes what is left. How many run at once is bounded by
//! [`super::Limits::offload_place`].
//!
//! The review's own waits (the namespace lookup, the identity ConfigMap
//! write) are driven on that thread by the server's runtime: its timers and
//! I/O keep working, and the thread is not an async worker, so it may
//! block on them.

use std::future::Future;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// How much lower the priority of a large review's thread is.
pub const NICE: i32 = 10;

/// Why an offloaded review has no answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OS would not start a thread.
    #[error("failed to start a thread for a large review: {0}")]
    Spawn(#[source] std::io::Error),
    /// The review's thread ended without an answer (it panicked).
    #[error("the thread deciding a large review ended without an answer")]
    Lost,
}

/// Runs `work` to completion on a new thread at lower priority, driven by
/// the current runtime, and waits for its output. Once started, `work`
/// runs to the end even if this future is dropped (what it holds, e.g. its
/// places in the limits, is given back when it ends).
pub async fn run<F>(work: F) -> Result<F::Output, Error>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = Handle::current();
    let (done, output) = oneshot::channel();
    std::thread::Builder::new()
        .name("large-review".to_owned())
        .spawn(move || {
            lower_priority();
            let _ = done.send(runtime.block_on(work));
        })
        .map_err(Error::Spawn)?;
    output.await.map_err(|_| Error::Lost)
}

/// Raises this thread's nice value by [`NICE`] (at most to 19). On Linux
/// the nice value is the thread's own, and raising it needs no privilege.
/// Best effort: a thread that keeps its priority only competes more.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        let now = getpriority_process(me).unwrap_or(0);
        if let Err(e) = setpriority_process(me, (now + NICE).min(19)) {
            tracing::debug!(error = %e, "failed to lower the priority of a large review's thread");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn work_runs_on_another_thread_at_lower_priority_with_the_runtime() {
        let caller = std::thread::current().id();
        let (thread, nice) = run(async {
            // The runtime's timers work there.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
            (std::thread::current().id(), nice.unwrap())
        })
        .await
        .unwrap();
        assert_ne!(thread, caller);
        let mine = rustix::process::getpriority_process(None).unwrap();
        assert_eq!(nice, (mine + NICE).min(19));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panic_is_an_error_not_a_hang() {
        let result = run(async { panic!("boom") }).await;
        assert!(matches!(result, Err(Error::Lost)), "{result:?}");
    }
}
