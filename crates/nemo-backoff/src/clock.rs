//! The clock seam: where [`Backoff`](crate::Backoff) reads "now" for `max_elapsed_ms`.

use std::time::Instant;

/// A source of monotonic time.
///
/// [`Backoff`](crate::Backoff) reads it only to enforce `max_elapsed_ms`. Production code uses
/// [`SystemClock`]; tests inject a fake (or a `mockall` mock) to move time by hand.
///
/// ```
/// use std::time::Instant;
/// use nemo_backoff::{Clock, SystemClock};
///
/// let before = Instant::now();
/// assert!(SystemClock.now() >= before);
/// ```
pub trait Clock: Send + Sync {
    /// The current instant. Must never go backwards.
    fn now(&self) -> Instant;
}

/// The real monotonic clock ([`Instant::now`]).
///
/// ```
/// use nemo_backoff::{Clock, SystemClock};
/// let a = SystemClock.now();
/// assert!(SystemClock.now() >= a);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}
