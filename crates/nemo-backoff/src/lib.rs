//! Backoff policy for every reconnect and retry loop in nemo-mqtt.
//!
//! A [`Backoff`] hands out the delay to wait before the next attempt: it grows geometrically
//! from a floor (`initial_ms`) by `multiplier` up to a cap (`max_ms`), is optionally randomised
//! ([`Jitter`]), and ends (returns `None`) after `max_attempts` delays or once `max_elapsed_ms`
//! is used up. [`Backoff::reset`] after a success starts over from the floor. [`retry`] wraps an
//! async operation with such a policy and a classifier that tells retryable errors from
//! permanent ones.
//!
//! # Key design decision: one value owns the state; randomness, time and sleep are injected
//!
//! The Python bridge this project replaces spread its reconnect state over a dozen instance
//! fields and slept inline, so its retry behaviour could only be observed by waiting. Here one
//! [`Backoff`] value owns the attempt counter, the current delay, the RNG and the start of the
//! elapsed-time window, and the three things that make backoff hard to test are seams:
//! the RNG is seedable ([`Backoff::with_seed`]), the clock is a trait ([`Clock`],
//! [`Backoff::with_clock`]), and [`retry_with`] sleeps through a [`Sleeper`]. Tests therefore
//! check exact sequences and run fifty 30-second retries in microseconds.
//!
//! # The invariant
//!
//! **Every delay is within `[floor, cap]`** (`initial_ms ..= max_ms`) for every jitter strategy.
//! Classic "full jitter" draws from `[0, d]`; we draw from `[floor, d]` instead, so that the
//! floor also protects the broker from a reconnect storm when the random draw is small. The
//! exact ranges are documented on [`Jitter`].
//!
//! ```
//! use std::time::Duration;
//! use nemo_backoff::{BackoffConfig, Jitter};
//!
//! let cfg = BackoffConfig { initial_ms: 100, max_ms: 1_000, multiplier: 2.0, jitter: Jitter::None,
//!                           max_attempts: Some(6), max_elapsed_ms: None };
//! cfg.validate()?;
//! let delays: Vec<u64> = cfg.build().map(|d| d.as_millis() as u64).collect();
//! assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000]);
//! # Ok::<(), nemo_backoff::ConfigError>(())
//! ```
#![deny(missing_docs)]

mod backoff;
mod clock;
mod config;
mod outage;
mod retry;

pub use backoff::Backoff;
pub use clock::{Clock, SystemClock};
pub use config::{BackoffConfig, ConfigError, Jitter};
pub use outage::Outage;
pub use retry::{RetryDecision, RetryError, Sleeper, TokioSleeper, retry, retry_with};
