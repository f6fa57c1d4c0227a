//! The backoff policy itself: a stateful iterator of delays.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::{BackoffConfig, Clock, Jitter, SystemClock};

/// A stateful exponential backoff: call [`next_delay`](Self::next_delay) after each failure,
/// [`reset`](Self::reset) after a success.
///
/// Invariant: every delay returned is within `[floor, cap]` (`initial_ms ..= max_ms` of the
/// config; see [`Jitter`] for the exact ranges). `None` means "give up": `max_attempts` delays
/// were handed out, or `max_elapsed_ms` is used up. Near the elapsed deadline the last delay is
/// shortened to the time left, so waiting never runs past it; if less than the floor is left,
/// the backoff is exhausted.
///
/// [`Backoff::new`] does not validate: out-of-range values are clamped so that the invariant
/// still holds (`max < initial` → cap = floor; `multiplier` below 1.0 or not finite → 1.0).
/// Call [`BackoffConfig::validate`] to reject them with a message instead. Durations are kept
/// in nanoseconds saturating at `u64::MAX` (about 584 years).
///
/// The RNG is a small fast PRNG seeded from the OS unless [`with_seed`](Self::with_seed) fixes
/// it; the clock is [`SystemClock`] unless [`with_clock`](Self::with_clock) replaces it.
/// Cloning copies the whole state, RNG included (the clone produces the same delays).
///
/// ```
/// use std::time::Duration;
/// use nemo_backoff::{Backoff, BackoffConfig, Jitter};
///
/// let cfg = BackoffConfig { initial_ms: 200, max_ms: 30_000, multiplier: 2.0,
///                           jitter: Jitter::Full, max_attempts: Some(3), max_elapsed_ms: None };
/// let mut b = Backoff::new(&cfg).with_seed(42);
/// while let Some(d) = b.next_delay() {
///     assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(30_000));
/// }
/// assert_eq!(b.attempts(), 3);
/// b.reset();                       // after a success: start over from the floor
/// assert_eq!(b.attempts(), 0);
/// assert!(b.next_delay().is_some());
/// ```
#[derive(Clone)]
pub struct Backoff {
    floor: u64,
    cap: u64,
    multiplier: f64,
    jitter: Jitter,
    max_attempts: Option<u32>,
    max_elapsed: Option<Duration>,
    /// Un-jittered delay of the next attempt, in nanoseconds.
    current: u64,
    /// Last delay returned (for `Decorrelated`), in nanoseconds.
    prev: u64,
    attempts: u32,
    started: Option<Instant>,
    rng: SmallRng,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backoff")
            .field("floor", &Duration::from_nanos(self.floor))
            .field("cap", &Duration::from_nanos(self.cap))
            .field("multiplier", &self.multiplier)
            .field("jitter", &self.jitter)
            .field("max_attempts", &self.max_attempts)
            .field("max_elapsed", &self.max_elapsed)
            .field("current", &Duration::from_nanos(self.current))
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

fn ms_to_nanos(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}

fn duration_to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Backoff {
    /// A fresh backoff for `cfg` (not validated, see the type docs), with an OS-seeded RNG and
    /// the system clock.
    ///
    /// ```
    /// use nemo_backoff::{Backoff, BackoffConfig};
    /// let b = Backoff::new(&BackoffConfig::default());
    /// assert_eq!(b.attempts(), 0);
    /// ```
    pub fn new(cfg: &BackoffConfig) -> Backoff {
        let floor = ms_to_nanos(cfg.initial_ms);
        let cap = ms_to_nanos(cfg.max_ms).max(floor);
        let multiplier = if cfg.multiplier.is_finite() && cfg.multiplier >= 1.0 {
            cfg.multiplier
        } else {
            1.0
        };
        Backoff {
            floor,
            cap,
            multiplier,
            jitter: cfg.jitter,
            max_attempts: cfg.max_attempts,
            max_elapsed: cfg.max_elapsed_ms.map(Duration::from_millis),
            current: floor,
            prev: floor,
            attempts: 0,
            started: None,
            rng: rand::make_rng(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Replaces the RNG with one seeded from `seed`: the same seed and config give the same
    /// delays (for tests and reproducible replays).
    ///
    /// ```
    /// use nemo_backoff::BackoffConfig;
    /// let cfg = BackoffConfig::default();
    /// let a: Vec<_> = cfg.build().with_seed(1).take(10).collect();
    /// let b: Vec<_> = cfg.build().with_seed(1).take(10).collect();
    /// assert_eq!(a, b);
    /// ```
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = SmallRng::seed_from_u64(seed);
        self
    }

    /// Replaces the clock used for `max_elapsed_ms`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use nemo_backoff::{BackoffConfig, SystemClock};
    /// let b = BackoffConfig::default().build().with_clock(Arc::new(SystemClock));
    /// # let _ = b;
    /// ```
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The delay to wait before the next attempt, or `None` to give up.
    ///
    /// Each `Some` counts as one attempt. After a `None`, every call returns `None` until
    /// [`reset`](Self::reset) (attempts only grow, and so does elapsed time on a monotonic
    /// clock).
    ///
    /// ```
    /// use std::time::Duration;
    /// use nemo_backoff::{BackoffConfig, Jitter};
    /// let mut b = BackoffConfig { initial_ms: 10, max_ms: 25, jitter: Jitter::None,
    ///                             max_attempts: Some(3), ..Default::default() }.build();
    /// assert_eq!(b.next_delay(), Some(Duration::from_millis(10)));
    /// assert_eq!(b.next_delay(), Some(Duration::from_millis(20)));
    /// assert_eq!(b.next_delay(), Some(Duration::from_millis(25)));
    /// assert_eq!(b.next_delay(), None);
    /// ```
    pub fn next_delay(&mut self) -> Option<Duration> {
        if let Some(max) = self.max_attempts
            && self.attempts >= max
        {
            return None;
        }
        // Time left before the elapsed deadline, if there is one.
        let remaining = match self.max_elapsed {
            None => None,
            Some(max) => {
                let now = self.clock.now();
                let started = *self.started.get_or_insert(now);
                let elapsed = now.saturating_duration_since(started);
                let left = duration_to_nanos(max.saturating_sub(elapsed));
                if left < self.floor.max(1) {
                    return None;
                }
                Some(left)
            }
        };

        let d = self.current;
        let mut delay = match self.jitter {
            Jitter::None => d,
            Jitter::Full => self.rng.random_range(self.floor..=d),
            Jitter::Equal => self.rng.random_range((d / 2).max(self.floor)..=d),
            Jitter::Decorrelated => {
                let upper = self.prev.saturating_mul(3).max(self.floor);
                self.rng.random_range(self.floor..=upper).min(self.cap)
            }
        };
        if let Some(left) = remaining {
            delay = delay.min(left);
        }

        self.prev = delay;
        self.current = next_base(d, self.multiplier, self.cap);
        self.attempts = self.attempts.saturating_add(1);
        Some(Duration::from_nanos(delay))
    }

    /// Starts over after a success: the next delay is computed from the floor again, the
    /// attempt counter is 0 and the elapsed window restarts at the next
    /// [`next_delay`](Self::next_delay). The RNG and clock are kept.
    ///
    /// ```
    /// use std::time::Duration;
    /// use nemo_backoff::{BackoffConfig, Jitter};
    /// let mut b = BackoffConfig { jitter: Jitter::None, ..Default::default() }.build();
    /// b.next_delay(); b.next_delay();
    /// b.reset();
    /// assert_eq!(b.next_delay(), Some(Duration::from_millis(200)));
    /// ```
    pub fn reset(&mut self) {
        self.current = self.floor;
        self.prev = self.floor;
        self.attempts = 0;
        self.started = None;
    }

    /// How many delays were handed out since creation or the last [`reset`](Self::reset).
    ///
    /// ```
    /// let mut b = nemo_backoff::BackoffConfig::default().build();
    /// b.next_delay();
    /// assert_eq!(b.attempts(), 1);
    /// ```
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// `min(cap, d * multiplier)` without overflow (f64 is exact enough for delays; the result is
/// clamped to `[d, cap]` so rounding can never make the sequence shrink or pass the cap).
fn next_base(d: u64, multiplier: f64, cap: u64) -> u64 {
    if d >= cap {
        return cap;
    }
    let next = d as f64 * multiplier;
    if next >= cap as f64 {
        cap
    } else {
        // `next` is finite, >= 0 and < cap here, so the cast is in range.
        (next as u64).clamp(d, cap)
    }
}

/// The iterator face: `next()` is [`Backoff::next_delay`]. It ends when the backoff gives up
/// (and is unbounded without `max_attempts` / `max_elapsed_ms`: use `take`).
///
/// ```
/// use nemo_backoff::{BackoffConfig, Jitter};
/// let cfg = BackoffConfig { jitter: Jitter::None, max_attempts: Some(4), ..Default::default() };
/// assert_eq!(cfg.build().count(), 4);
/// ```
impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.next_delay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_base_saturates_at_cap() {
        assert_eq!(next_base(10, 2.0, 15), 15);
        assert_eq!(next_base(10, 2.0, 100), 20);
        assert_eq!(next_base(u64::MAX - 1, 2.0, u64::MAX), u64::MAX);
        assert_eq!(next_base(7, 1.0, 100), 7);
    }

    #[test]
    fn new_clamps_invalid_values() {
        let cfg = BackoffConfig {
            initial_ms: 100,
            max_ms: 10,
            multiplier: f64::NAN,
            jitter: Jitter::None,
            ..Default::default()
        };
        let delays: Vec<Duration> = Backoff::new(&cfg).take(3).collect();
        assert_eq!(delays, vec![Duration::from_millis(100); 3]);
    }
}
