//! When to send each item: the pacing [`Schedule`].
//!
//! A replay is a sequence of items, each with the time it originally happened
//! (or none). The schedule turns that sequence into *send offsets*: how long
//! after the start of the replay each item should go out. It is pure — no clock,
//! no I/O — so the same items and the same [`Pacing`] always give the same
//! offsets, which is what makes a replay deterministic and lets the tests check
//! a speed factor by arithmetic instead of by a stopwatch.
//!
//! Rules, per pacing:
//! - [`Pacing::Original`]: `offset = (at - first_at) / speed`. Items with no time
//!   keep the previous item's offset; an item whose time goes backwards (clock
//!   skew in a recording) is sent right after the previous one, never earlier,
//!   so the order of the input is always kept.
//! - [`Pacing::Rate`]: item `n` (0-based) goes at `n / rate` seconds.
//! - [`Pacing::Max`]: every offset is zero: as fast as the sink takes them.

use std::time::Duration;

use time::OffsetDateTime;

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Keep the recorded gaps, divided by `speed` (2.0 = twice as fast).
    Original {
        /// Speed factor; finite and > 0.
        speed: f64,
    },
    /// A fixed number of items per second, ignoring recorded times.
    Rate {
        /// Items per second; finite and > 0.
        per_second: f64,
    },
    /// No waiting at all.
    Max,
}

/// A [`Pacing`] with an invalid number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// `speed` was zero, negative, NaN or infinite.
    #[error("invalid speed {0}: must be a finite number > 0 (e.g. 1, 10, 0.5)")]
    Speed(f64),
    /// `per_second` was zero, negative, NaN or infinite.
    #[error("invalid rate {0}: must be a finite number of items per second > 0")]
    Rate(f64),
}

impl Pacing {
    /// Check the numbers: speed and rate must be finite and positive.
    ///
    /// ```
    /// use nemo_replay::Pacing;
    /// assert!(Pacing::Original { speed: 0.5 }.validate().is_ok());
    /// assert!(Pacing::Original { speed: 0.0 }.validate().is_err());
    /// assert!(Pacing::Rate { per_second: f64::NAN }.validate().is_err());
    /// ```
    ///
    /// # Errors
    /// [`ScheduleError::Speed`] or [`ScheduleError::Rate`] naming the bad value.
    pub fn validate(self) -> Result<Pacing, ScheduleError> {
        match self {
            Pacing::Original { speed } if !(speed.is_finite() && speed > 0.0) => {
                Err(ScheduleError::Speed(speed))
            }
            Pacing::Rate { per_second } if !(per_second.is_finite() && per_second > 0.0) => {
                Err(ScheduleError::Rate(per_second))
            }
            ok => Ok(ok),
        }
    }
}

/// Computes the send offset of each item, in input order (see the module docs).
///
/// ```
/// use std::time::Duration;
/// use nemo_replay::{Pacing, Schedule};
/// use time::macros::datetime;
///
/// let mut s = Schedule::new(Pacing::Original { speed: 4.0 })?;
/// assert_eq!(s.next(Some(datetime!(2025-10-16 14:00:00 UTC))), Duration::ZERO);
/// assert_eq!(s.next(Some(datetime!(2025-10-16 14:00:02 UTC))), Duration::from_millis(500));
/// assert_eq!(s.next(None), Duration::from_millis(500)); // no time: with the previous one
/// # Ok::<(), nemo_replay::ScheduleError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Schedule {
    pacing: Pacing,
    first_at: Option<OffsetDateTime>,
    last: Duration,
    count: u64,
}

impl Schedule {
    /// A schedule for `pacing`, starting at offset zero.
    ///
    /// # Errors
    /// The pacing's numbers are invalid (see [`Pacing::validate`]).
    pub fn new(pacing: Pacing) -> Result<Schedule, ScheduleError> {
        Ok(Schedule {
            pacing: pacing.validate()?,
            first_at: None,
            last: Duration::ZERO,
            count: 0,
        })
    }

    /// The pacing this schedule follows.
    pub fn pacing(&self) -> Pacing {
        self.pacing
    }

    /// The offset of the next item, which originally happened at `at`.
    ///
    /// Offsets never decrease from one call to the next.
    pub fn next(&mut self, at: Option<OffsetDateTime>) -> Duration {
        let n = self.count;
        self.count += 1;
        let offset = match self.pacing {
            Pacing::Max => Duration::ZERO,
            Pacing::Rate { per_second } => secs(n as f64 / per_second),
            Pacing::Original { speed } => match (at, self.first_at) {
                (None, _) => self.last,
                (Some(at), None) => {
                    self.first_at = Some(at);
                    self.last
                }
                (Some(at), Some(first)) => {
                    let gap = (at - first).as_seconds_f64();
                    secs(gap / speed)
                }
            },
        };
        self.last = offset.max(self.last);
        self.last
    }

    /// The offsets of a whole sequence of times, for planning and tests.
    ///
    /// ```
    /// use std::time::Duration;
    /// use nemo_replay::{Pacing, Schedule};
    /// let plan = Schedule::plan(Pacing::Rate { per_second: 4.0 }, [None, None, None])?;
    /// assert_eq!(plan, [Duration::ZERO, Duration::from_millis(250), Duration::from_millis(500)]);
    /// # Ok::<(), nemo_replay::ScheduleError>(())
    /// ```
    ///
    /// # Errors
    /// The pacing's numbers are invalid.
    pub fn plan(
        pacing: Pacing,
        times: impl IntoIterator<Item = Option<OffsetDateTime>>,
    ) -> Result<Vec<Duration>, ScheduleError> {
        let mut s = Schedule::new(pacing)?;
        Ok(times.into_iter().map(|t| s.next(t)).collect())
    }
}

/// Seconds to a `Duration`; negative and NaN become zero, huge values saturate.
fn secs(s: f64) -> Duration {
    if s.is_nan() || s <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn t(s: i64) -> Option<OffsetDateTime> {
        Some(datetime!(2025-10-16 14:00:00 UTC) + time::Duration::seconds(s))
    }

    #[test]
    fn original_speed_one_keeps_gaps() -> Result<(), ScheduleError> {
        let plan = Schedule::plan(Pacing::Original { speed: 1.0 }, [t(0), t(1), t(3)])?;
        assert_eq!(plan, [0, 1, 3].map(Duration::from_secs));
        Ok(())
    }

    #[test]
    fn speed_factor_divides_and_multiplies() -> Result<(), ScheduleError> {
        let fast = Schedule::plan(Pacing::Original { speed: 4.0 }, [t(0), t(2)])?;
        assert_eq!(fast[1], Duration::from_millis(500));
        let slow = Schedule::plan(Pacing::Original { speed: 0.5 }, [t(0), t(2)])?;
        assert_eq!(slow[1], Duration::from_secs(4));
        Ok(())
    }

    #[test]
    fn first_item_goes_at_zero_even_late_in_the_day() -> Result<(), ScheduleError> {
        let plan = Schedule::plan(Pacing::Original { speed: 1.0 }, [t(3600), t(3601)])?;
        assert_eq!(plan, [Duration::ZERO, Duration::from_secs(1)]);
        Ok(())
    }

    #[test]
    fn missing_and_backward_times_never_reorder() -> Result<(), ScheduleError> {
        let plan = Schedule::plan(
            Pacing::Original { speed: 1.0 },
            [None, t(0), None, t(5), t(2), t(6)],
        )?;
        assert_eq!(plan, [0, 0, 0, 5, 5, 6].map(Duration::from_secs));
        Ok(())
    }

    #[test]
    fn rate_and_max_ignore_times() -> Result<(), ScheduleError> {
        let rate = Schedule::plan(Pacing::Rate { per_second: 10.0 }, [t(100), t(0), None])?;
        assert_eq!(rate, [0, 100, 200].map(Duration::from_millis));
        let max = Schedule::plan(Pacing::Max, [t(0), t(100)])?;
        assert_eq!(max, [Duration::ZERO; 2]);
        Ok(())
    }

    #[test]
    fn bad_numbers_are_refused() {
        for speed in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                Schedule::new(Pacing::Original { speed }),
                Err(ScheduleError::Speed(_))
            ));
        }
        assert!(matches!(
            Schedule::new(Pacing::Rate { per_second: 0.0 }),
            Err(ScheduleError::Rate(_))
        ));
    }

    #[test]
    fn same_input_same_plan() -> Result<(), ScheduleError> {
        let times = [t(0), t(7), None, t(9)];
        let a = Schedule::plan(Pacing::Original { speed: 3.0 }, times)?;
        let b = Schedule::plan(Pacing::Original { speed: 3.0 }, times)?;
        assert_eq!(a, b);
        Ok(())
    }
}
