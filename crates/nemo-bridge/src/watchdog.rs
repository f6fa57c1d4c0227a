//! A progress watchdog for the pipeline: the last line of defence against a bridge that is alive
//! but no longer moves events.
//!
//! Every wait inside [`Pipeline::run`](crate::pipeline::Pipeline::run) is bounded (queue
//! calls by `redis.command_timeout_ms`, confirmations by `mqtt.confirm_timeout_s`, retries
//! and reconnect polls by their backoff), so its loop turns at least once per such bound, also
//! while Redis or the broker is down. The pipeline [`beat`](Heartbeat::beat)s a [`Heartbeat`]
//! on every turn. A plain OS thread — not a Tokio task, so that it still runs when the async
//! runtime itself is wedged, e.g. by a thread blocked inside a C library — checks the heartbeat
//! and calls its `on_stall` action once the pipeline has been silent for longer than the limit.
//! The bridge's action logs the stall and exits with status 70, so that the service manager
//! restarts it: nothing is lost, the in-flight items are still in the queue and are published again
//! by the next process.
//!
//! The watchdog only watches while a pipeline runs: a standby waiting for the lease is
//! [`set_active(false)`](Heartbeat::set_active).
//!
//! One wait may legitimately be longer than the limit: a take the source announces through
//! [`EventSource::longest_take`](nemo_source::EventSource::longest_take) (the table queue's
//! first query, which reads every processed row, bounded by 300 s). For that one take the
//! pipeline raises the limit by that much ([`Heartbeat::set_limit`]) and puts it back when the
//! take returned, so a big backlog is no restart loop and every other wait stays watched.
//!
//! ```
//! use std::time::Duration;
//! use nemo_bridge::watchdog::{Heartbeat, Watchdog};
//!
//! let hb = Heartbeat::new();
//! let (tx, rx) = std::sync::mpsc::channel();
//! let _dog = Watchdog::spawn(hb.clone(), Duration::from_millis(50), move |silent| {
//!     let _ = tx.send(silent);
//! })?;
//! hb.set_active(true); // a pipeline starts ... and never beats again
//! let silent = rx.recv_timeout(Duration::from_secs(5)).expect("the watchdog fires");
//! assert!(silent >= Duration::from_millis(50));
//! # Ok::<(), std::io::Error>(())
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Proof of life of a pipeline, shared between the pipeline and its [`Watchdog`].
/// Cheap to clone and to [`beat`](Self::beat) (two atomic stores).
#[derive(Debug, Clone)]
pub struct Heartbeat {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last beat.
    last_ms: AtomicU64,
    active: AtomicBool,
    /// The silence, in ms, after which the watchdog fires (see [`Heartbeat::set_limit`]).
    limit_ms: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl Heartbeat {
    /// A heartbeat that is not active yet.
    pub fn new() -> Self {
        Heartbeat {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                last_ms: AtomicU64::new(0),
                active: AtomicBool::new(false),
                limit_ms: AtomicU64::new(u64::MAX),
            }),
        }
    }

    /// The pipeline made a turn of its loop.
    pub fn beat(&self) {
        let ms = self.inner.epoch.elapsed().as_millis() as u64;
        self.inner.last_ms.store(ms, Ordering::Release);
    }

    /// Start (`true`, also a beat) or stop (`false`) being watched.
    pub fn set_active(&self, on: bool) {
        if on {
            self.beat();
        }
        self.inner.active.store(on, Ordering::Release);
    }

    /// Change the silence after which the watchdog fires (e.g. after a configuration reload
    /// changed the timeouts the limit is derived from).
    pub fn set_limit(&self, limit: Duration) {
        let ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        self.inner.limit_ms.store(ms, Ordering::Release);
    }

    /// The current limit (see [`set_limit`](Self::set_limit)).
    pub fn limit(&self) -> Duration {
        Duration::from_millis(self.inner.limit_ms.load(Ordering::Acquire))
    }

    /// How long since the last beat, or `None` while not active.
    ///
    /// ```
    /// let hb = nemo_bridge::watchdog::Heartbeat::new();
    /// assert_eq!(hb.silent_for(), None);
    /// hb.set_active(true);
    /// assert!(hb.silent_for().unwrap() < std::time::Duration::from_secs(1));
    /// ```
    pub fn silent_for(&self) -> Option<Duration> {
        if !self.inner.active.load(Ordering::Acquire) {
            return None;
        }
        let last = self.inner.last_ms.load(Ordering::Acquire);
        let now = self.inner.epoch.elapsed().as_millis() as u64;
        Some(Duration::from_millis(now.saturating_sub(last)))
    }
}

/// The thread that watches a [`Heartbeat`]. Dropping the handle stops the thread (within one
/// check interval).
#[derive(Debug)]
pub struct Watchdog {
    stop: Arc<AtomicBool>,
    _thread: JoinHandle<()>,
}

impl Watchdog {
    /// Watch `heartbeat` on a new thread, checking every `limit / 10` (between 10 ms and 5 s).
    /// When an active heartbeat has been silent for more than its limit — `limit`, or what
    /// [`Heartbeat::set_limit`] set later — call `on_stall` once with the silence and end.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn spawn<F>(heartbeat: Heartbeat, limit: Duration, on_stall: F) -> std::io::Result<Self>
    where
        F: FnOnce(Duration) + Send + 'static,
    {
        heartbeat.set_limit(limit);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let every = (limit / 10).clamp(Duration::from_millis(10), Duration::from_secs(5));
        let thread = std::thread::Builder::new()
            .name("nemo-watchdog".into())
            .spawn(move || {
                while !stopped.load(Ordering::Acquire) {
                    std::thread::sleep(every);
                    if let Some(silent) = heartbeat.silent_for()
                        && silent > heartbeat.limit()
                    {
                        on_stall(silent);
                        return;
                    }
                }
            })?;
        Ok(Watchdog {
            stop,
            _thread: thread,
        })
    }

    /// The bridge's watchdog: on a stall, log it and exit with [`STALL_EXIT_CODE`] so that the
    /// service manager restarts the bridge (what was in flight is still queued and is published
    /// again by the next process).
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn exit_on_stall(heartbeat: Heartbeat, limit: Duration) -> std::io::Result<Self> {
        Watchdog::spawn(heartbeat, limit, move |silent| {
            tracing::error!(
                silent_s = silent.as_secs(),
                limit_s = limit.as_secs(),
                "pipeline made no progress for {} s (a bug; please report it with this log); exiting with status {STALL_EXIT_CODE} so that the service manager restarts the bridge; events in flight are still queued and are published again after the restart",
                silent.as_secs()
            );
            std::process::exit(STALL_EXIT_CODE);
        })
    }
}

/// The exit status of a bridge whose pipeline stalled (`EX_SOFTWARE`).
pub const STALL_EXIT_CODE: i32 = 70;

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Not joined: that would block the caller for up to one check interval.
        self.stop.store(true, Ordering::Release);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn watch(limit_ms: u64) -> (Heartbeat, Watchdog, mpsc::Receiver<Duration>) {
        let hb = Heartbeat::new();
        let (tx, rx) = mpsc::channel();
        let dog = Watchdog::spawn(hb.clone(), Duration::from_millis(limit_ms), move |s| {
            let _ = tx.send(s);
        })
        .unwrap();
        (hb, dog, rx)
    }

    #[test]
    fn an_inactive_heartbeat_is_never_a_stall() {
        let (_hb, _dog, rx) = watch(20);
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    }

    #[test]
    fn a_beating_heartbeat_is_not_a_stall() {
        let (hb, _dog, rx) = watch(200);
        hb.set_active(true);
        for _ in 0..40 {
            hb.beat();
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_silent_active_heartbeat_fires_once() {
        let (hb, _dog, rx) = watch(50);
        hb.set_active(true);
        let silent = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(silent > Duration::from_millis(50), "{silent:?}");
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    }

    #[test]
    fn a_raised_limit_applies_at_once() {
        let (hb, _dog, rx) = watch(50);
        hb.set_limit(Duration::from_secs(3600));
        hb.set_active(true);
        assert!(rx.recv_timeout(Duration::from_millis(400)).is_err());
        hb.set_limit(Duration::from_millis(50));
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn deactivating_stops_the_watch() {
        let (hb, _dog, rx) = watch(50);
        hb.set_active(true);
        hb.set_active(false);
        assert!(rx.recv_timeout(Duration::from_millis(400)).is_err());
    }
}
