//! The clock seam: the replayer asks a [`Clock`] for "time since start" and to
//! wait until an offset. [`TokioClock`] is the real one; [`FakeClock`] jumps
//! instead of waiting, so pacing is tested without sleeping.

use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;

/// Time since the replay started, and waiting until an offset from that start.
pub trait Clock: Send + Sync {
    /// Time elapsed since the clock was created.
    fn elapsed(&self) -> Duration;
    /// Resolve once [`elapsed`](Clock::elapsed) has reached `offset` (at once if it has).
    fn sleep_until(&self, offset: Duration) -> BoxFuture<'_, ()>;
}

/// The real clock, on `tokio::time` (so it also follows `tokio::time::pause`).
///
/// ```
/// use nemo_replay::{Clock, TokioClock};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let clock = TokioClock::new();
/// clock.sleep_until(std::time::Duration::from_millis(5)).await;
/// assert!(clock.elapsed() >= std::time::Duration::from_millis(5));
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose zero is now.
    pub fn new() -> TokioClock {
        TokioClock {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn sleep_until(&self, offset: Duration) -> BoxFuture<'_, ()> {
        let deadline = self.start.checked_add(offset);
        Box::pin(async move {
            // An offset too far to represent never comes from a real recording;
            // go at once rather than hang.
            if let Some(d) = deadline {
                tokio::time::sleep_until(d).await;
            }
        })
    }
}

/// A clock that never waits: `sleep_until` moves its time forward at once and
/// remembers every wait, so a test can read the whole timetable of a replay.
///
/// ```
/// use std::time::Duration;
/// use nemo_replay::{Clock, FakeClock};
/// # futures::executor::block_on(async {
/// let clock = FakeClock::default();
/// clock.sleep_until(Duration::from_secs(3)).await;
/// clock.sleep_until(Duration::from_secs(1)).await; // already past: no jump back
/// assert_eq!(clock.elapsed(), Duration::from_secs(3));
/// assert_eq!(clock.waits(), [Duration::from_secs(3), Duration::from_secs(1)]);
/// # });
/// ```
#[derive(Debug, Default)]
pub struct FakeClock {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    now: Duration,
    waits: Vec<Duration>,
}

impl FakeClock {
    /// Every offset `sleep_until` was called with, in order.
    pub fn waits(&self) -> Vec<Duration> {
        self.lock().waits.clone()
    }

    /// Move time forward by `d` (as if sending took that long).
    pub fn advance(&self, d: Duration) {
        let mut s = self.lock();
        s.now = s.now.saturating_add(d);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        // A panic while holding this lock cannot leave the state inconsistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Clock for FakeClock {
    fn elapsed(&self) -> Duration {
        self.lock().now
    }

    fn sleep_until(&self, offset: Duration) -> BoxFuture<'_, ()> {
        let mut s = self.lock();
        s.waits.push(offset);
        s.now = s.now.max(offset);
        Box::pin(std::future::ready(()))
    }
}
