//! Retrying an async operation under a [`Backoff`].

use std::future::Future;
use std::time::Duration;

use crate::Backoff;

/// What to do with an error: try again after a delay, or give up at once.
///
/// ```
/// use nemo_backoff::RetryDecision;
/// let classify = |e: &std::io::ErrorKind| match e {
///     std::io::ErrorKind::PermissionDenied => RetryDecision::Stop,
///     _ => RetryDecision::Retry,
/// };
/// assert_eq!(classify(&std::io::ErrorKind::ConnectionRefused), RetryDecision::Retry);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Transient (connection refused, timeout, ...): wait for the next delay and try again.
    Retry,
    /// Permanent (bad credentials, invalid request, ...): return it now.
    Stop,
}

/// Why [`retry`] gave up. `E` is the operation's error.
///
/// ```
/// use nemo_backoff::RetryError;
/// let e: RetryError<String> = RetryError::Exhausted { last: "refused".into(), attempts: 3 };
/// assert_eq!(e.to_string(), "gave up after 3 attempts: refused");
/// assert_eq!(e.into_inner(), "refused");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E> {
    /// The classifier said [`RetryDecision::Stop`] for this error.
    #[error("permanent error: {0}")]
    Permanent(E),
    /// The backoff gave up (max attempts or max elapsed time); `last` is the last error seen,
    /// `attempts` how many times the operation ran.
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted {
        /// The error of the last attempt.
        last: E,
        /// How many times the operation was called in total.
        attempts: u32,
    },
}

impl<E> RetryError<E> {
    /// The operation's error, whichever way retrying ended.
    ///
    /// ```
    /// let e = nemo_backoff::RetryError::Permanent(5);
    /// assert_eq!(e.into_inner(), 5);
    /// ```
    pub fn into_inner(self) -> E {
        match self {
            RetryError::Permanent(e) | RetryError::Exhausted { last: e, .. } => e,
        }
    }
}

/// The sleeping seam of [`retry_with`]: production code sleeps with tokio, tests record the
/// requested delays and return at once.
///
/// ```
/// use std::sync::Mutex;
/// use std::time::Duration;
/// use nemo_backoff::Sleeper;
///
/// #[derive(Default)]
/// struct Recorder(Mutex<Vec<Duration>>);
/// impl Sleeper for Recorder {
///     fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send {
///         if let Ok(mut v) = self.0.lock() { v.push(d); }
///         std::future::ready(())
///     }
/// }
/// ```
pub trait Sleeper {
    /// Waits for `delay` (or pretends to).
    fn sleep(&self, delay: Duration) -> impl Future<Output = ()> + Send;
}

/// Sleeps with [`tokio::time::sleep`] (so paused tokio time in tests is honoured too).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use nemo_backoff::{Sleeper, TokioSleeper};
/// TokioSleeper.sleep(Duration::from_millis(1)).await;
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, delay: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(delay)
    }
}

/// Runs `op` until it succeeds, the classifier says [`RetryDecision::Stop`], or `backoff`
/// gives up; sleeps with [`TokioSleeper`] between attempts. See [`retry_with`].
///
/// # Errors
///
/// [`RetryError::Permanent`] for an error classified `Stop` (returned at once, without
/// sleeping); [`RetryError::Exhausted`] when `backoff` returns `None`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use nemo_backoff::{retry, BackoffConfig, RetryDecision};
/// let mut backoff = BackoffConfig { initial_ms: 1, max_ms: 2, ..Default::default() }.build();
/// let mut calls = 0;
/// let out = retry(&mut backoff, |_: &&str| RetryDecision::Retry, || {
///     calls += 1;
///     let n = calls;
///     async move { if n < 3 { Err("not yet") } else { Ok(n) } }
/// }).await;
/// assert_eq!(out.ok(), Some(3));
/// # }
/// ```
pub async fn retry<T, E, F, Fut, C>(
    backoff: &mut Backoff,
    classify: C,
    op: F,
) -> Result<T, RetryError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    C: Fn(&E) -> RetryDecision,
{
    retry_with(backoff, &TokioSleeper, classify, op).await
}

/// Like [`retry`], sleeping through `sleeper`.
///
/// Loop: call `op`; on `Ok` reset `backoff` (a success ends the failure streak) and return the
/// value; on `Err(e)` ask `classify(&e)`: `Stop` → `Permanent(e)` at once, `Retry` → take
/// `backoff.next_delay()`: `None` → `Exhausted { last: e, attempts }`, `Some(d)` → sleep `d`
/// and call `op` again. `op` therefore runs at most `max_attempts + 1` times. Each decision
/// is logged at `debug` level with the attempt number (and delay); the error itself is not
/// logged here (it may carry secrets; `E` need not be `Display`): the caller logs it.
///
/// # Errors
///
/// As for [`retry`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use nemo_backoff::{retry_with, BackoffConfig, Jitter, RetryDecision, RetryError, Sleeper};
///
/// struct NoSleep;
/// impl Sleeper for NoSleep {
///     fn sleep(&self, _: Duration) -> impl Future<Output = ()> + Send { std::future::ready(()) }
/// }
/// let mut backoff = BackoffConfig { max_attempts: Some(2), jitter: Jitter::None, ..Default::default() }.build();
/// let out: Result<(), _> = retry_with(&mut backoff, &NoSleep, |_: &&str| RetryDecision::Retry,
///                                     || async { Err("refused") }).await;
/// assert!(matches!(out, Err(RetryError::Exhausted { last: "refused", attempts: 3 })));
/// # }
/// ```
pub async fn retry_with<T, E, F, Fut, C, S>(
    backoff: &mut Backoff,
    sleeper: &S,
    classify: C,
    mut op: F,
) -> Result<T, RetryError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    C: Fn(&E) -> RetryDecision,
    S: Sleeper + ?Sized,
{
    let mut calls: u32 = 0;
    loop {
        calls = calls.saturating_add(1);
        match op().await {
            Ok(value) => {
                backoff.reset();
                return Ok(value);
            }
            Err(err) => match classify(&err) {
                RetryDecision::Stop => {
                    tracing::debug!(attempt = calls, "permanent error, not retrying");
                    return Err(RetryError::Permanent(err));
                }
                RetryDecision::Retry => match backoff.next_delay() {
                    Some(delay) => {
                        tracing::debug!(
                            attempt = calls,
                            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                            "transient error, retrying after backoff"
                        );
                        sleeper.sleep(delay).await;
                    }
                    None => {
                        tracing::debug!(attempt = calls, "backoff exhausted, giving up");
                        return Err(RetryError::Exhausted {
                            last: err,
                            attempts: calls,
                        });
                    }
                },
            },
        }
    }
}
