//! The `[backoff]` configuration table and its validation.

use serde::{Deserialize, Serialize};

use crate::Backoff;

/// How a delay is randomised. Serialized in lowercase: `"none"`, `"full"`, `"equal"`,
/// `"decorrelated"`.
///
/// Let `floor = initial_ms`, `cap = max_ms` and `d = min(cap, floor * multiplier^n)` the
/// un-jittered delay of attempt `n` (counting from 0). The delay returned is drawn uniformly
/// from (all ranges inclusive):
///
/// | strategy        | range                                                      |
/// |-----------------|------------------------------------------------------------|
/// | `None`          | exactly `d`                                                |
/// | `Full`          | `[floor, d]`                                               |
/// | `Equal`         | `[max(floor, d / 2), d]`                                   |
/// | `Decorrelated`  | `min(cap, [floor, max(floor, 3 * prev)])`, `prev` = last delay returned (starts at `floor`) |
///
/// So every delay lies in `[floor, cap]`. `Decorrelated` is the AWS "decorrelated jitter"
/// formula; it ignores `multiplier` (its growth factor is the fixed 3).
///
/// ```
/// use nemo_backoff::{BackoffConfig, Jitter};
/// assert_eq!(Jitter::default(), Jitter::Full);
/// let mut b = BackoffConfig { initial_ms: 100, max_ms: 10_000, jitter: Jitter::Equal,
///                             ..Default::default() }.build().with_seed(7);
/// for n in 0..20u32 {
///     let d = b.next_delay().unwrap().as_millis() as u64;
///     let full = (100u64 << n.min(20)).min(10_000);
///     assert!(d >= (full / 2).max(100) && d <= full);
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// No randomisation: the exact geometric sequence, capped.
    None,
    /// Uniform in `[floor, d]` (the default; spreads reconnects of many clients the most).
    #[default]
    Full,
    /// Uniform in `[max(floor, d / 2), d]`: keeps at least half of the computed delay.
    Equal,
    /// `min(cap, uniform[floor, max(floor, 3 * prev)])`, AWS "decorrelated jitter".
    Decorrelated,
}

impl Jitter {
    /// The lowercase name used in configuration files.
    ///
    /// ```
    /// assert_eq!(nemo_backoff::Jitter::Decorrelated.as_str(), "decorrelated");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Jitter::None => "none",
            Jitter::Full => "full",
            Jitter::Equal => "equal",
            Jitter::Decorrelated => "decorrelated",
        }
    }
}

impl std::fmt::Display for Jitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[backoff]` table of the configuration (DESIGN §5).
///
/// ```toml
/// [backoff]
/// initial_ms = 200      # floor: first delay, and lower bound of every delay; > 0
/// max_ms = 30000        # cap: upper bound of every delay; >= initial_ms
/// multiplier = 2.0      # growth per attempt; finite and >= 1.0
/// jitter = "full"       # none | full | equal | decorrelated
/// # max_attempts = 10   # optional: at most this many delays (retries), then give up
/// # max_elapsed_ms = 60000  # optional: give up once this much time has passed
/// ```
///
/// Missing keys take the defaults above ([`Default`]); unknown keys are rejected by serde.
/// Deserializing does not check ranges: call [`validate`](Self::validate).
///
/// ```
/// use nemo_backoff::{BackoffConfig, Jitter};
/// let cfg = BackoffConfig::default();
/// assert_eq!((cfg.initial_ms, cfg.max_ms, cfg.multiplier, cfg.jitter), (200, 30_000, 2.0, Jitter::Full));
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    /// First delay and lower bound ("floor") of every delay, in milliseconds. Must be > 0.
    pub initial_ms: u64,
    /// Upper bound ("cap") of every delay, in milliseconds. Must be >= `initial_ms`.
    pub max_ms: u64,
    /// Growth factor per attempt. Must be finite and >= 1.0 (1.0 = constant delay).
    pub multiplier: f64,
    /// Randomisation strategy, see [`Jitter`].
    pub jitter: Jitter,
    /// Give up after this many delays (i.e. retries; an operation runs at most
    /// `max_attempts + 1` times under [`retry`](crate::retry)). `None` = unlimited; `0` = never retry.
    pub max_attempts: Option<u32>,
    /// Give up once this many milliseconds have passed since the first delay was requested
    /// (after creation or [`reset`](crate::Backoff::reset)). `None` = unlimited.
    pub max_elapsed_ms: Option<u64>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial_ms: 200,
            max_ms: 30_000,
            multiplier: 2.0,
            jitter: Jitter::Full,
            max_attempts: None,
            max_elapsed_ms: None,
        }
    }
}

/// A `[backoff]` value out of range. The message names the key, the value and what is allowed,
/// e.g. `invalid backoff.multiplier = 0.5: must be a finite number >= 1.0`.
///
/// ```
/// use nemo_backoff::BackoffConfig;
/// let err = BackoffConfig { multiplier: 0.5, ..Default::default() }.validate().unwrap_err();
/// assert_eq!(err.to_string(), "invalid backoff.multiplier = 0.5: must be a finite number >= 1.0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// One key has a value outside what is allowed.
    #[error("invalid backoff.{key} = {value}: {allowed}")]
    Invalid {
        /// The key inside `[backoff]`, e.g. `"max_ms"`.
        key: &'static str,
        /// The offending value as written.
        value: String,
        /// What is allowed instead.
        allowed: String,
    },
}

impl ConfigError {
    /// The offending key (without the `backoff.` prefix).
    ///
    /// ```
    /// use nemo_backoff::BackoffConfig;
    /// let err = BackoffConfig { initial_ms: 0, ..Default::default() }.validate().unwrap_err();
    /// assert_eq!(err.key(), "initial_ms");
    /// ```
    pub fn key(&self) -> &'static str {
        match self {
            ConfigError::Invalid { key, .. } => key,
        }
    }
}

fn invalid(key: &'static str, value: impl ToString, allowed: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        allowed: allowed.into(),
    }
}

impl BackoffConfig {
    /// Checks every range; the first offending key is reported.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when `initial_ms == 0`, `max_ms < initial_ms`, or `multiplier`
    /// is not a finite number `>= 1.0`.
    ///
    /// ```
    /// use nemo_backoff::BackoffConfig;
    /// let err = BackoffConfig { initial_ms: 500, max_ms: 100, ..Default::default() }.validate().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid backoff.max_ms = 100: must be >= initial_ms (500)");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.initial_ms == 0 {
            return Err(invalid("initial_ms", self.initial_ms, "must be > 0"));
        }
        if self.max_ms < self.initial_ms {
            return Err(invalid(
                "max_ms",
                self.max_ms,
                format!("must be >= initial_ms ({})", self.initial_ms),
            ));
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(invalid(
                "multiplier",
                self.multiplier,
                "must be a finite number >= 1.0",
            ));
        }
        Ok(())
    }

    /// Builds a fresh [`Backoff`] from this configuration (same as [`Backoff::new`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut b = nemo_backoff::BackoffConfig::default().build();
    /// // The first un-jittered delay is the floor itself, so even full jitter gives exactly 200 ms.
    /// assert_eq!(b.next_delay(), Some(Duration::from_millis(200)));
    /// ```
    pub fn build(&self) -> Backoff {
        Backoff::new(self)
    }
}
