//! The [`Replayer`]: read items, filter, wait for each one's offset, send,
//! count. Deterministic: it only reorders nothing, drops only what the filter
//! or a bad line says, and takes all timing from the [`Schedule`].

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;

use crate::{Clock, Filter, InputError, Pending, ReplayItem, ReplaySink, Schedule, Skip};

/// Knobs of one replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Which items to send.
    pub filter: Filter,
    /// Stop at the first bad input line (`--strict`) instead of skipping it.
    pub strict: bool,
    /// How many sent items may wait for their confirmation at once (≥ 1).
    /// Order is kept regardless: sinks start operations in send order.
    pub window: usize,
    /// Send every item with this QoS instead of its own (`--qos`; a recording
    /// holds the QoS of the delivery, which the subscriber may have lowered).
    pub qos: Option<nemo_events::Qos>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            filter: Filter::default(),
            strict: false,
            window: 64,
            qos: None,
        }
    }
}

/// What happened, for the summary line and the exit code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Items read (good and bad lines).
    pub read: u64,
    /// Items sent and confirmed.
    pub sent: u64,
    /// Items the filter skipped.
    pub filtered: u64,
    /// Bad input lines skipped.
    pub bad: u64,
    /// Items sent but not confirmed, or refused by the sink.
    pub failed: u64,
    /// Wall time of the replay (from the [`Clock`]).
    pub elapsed: Duration,
}

impl Summary {
    /// Filtered plus bad: everything read that was not sent on purpose.
    pub fn skipped(&self) -> u64 {
        self.filtered + self.bad
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, skipped {} ({} filtered, {} bad lines), failed {}, elapsed {:.3}s",
            self.sent,
            self.skipped(),
            self.filtered,
            self.bad,
            self.failed,
            self.elapsed.as_secs_f64()
        )
    }
}

/// A replay that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// `--strict` and a bad line: nothing after it was sent.
    #[error("line {line}: {reason} (--strict: stopped)")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading the input failed (I/O, Redis).
    #[error("reading input: {0}")]
    Input(String),
}

/// Hears about a replay while it runs (progress bar, bad-line reports).
/// Every method has a no-op default.
pub trait Observer {
    /// A bad input line was skipped (or, with `strict`, stopped the replay).
    fn bad_line(&mut self, line: usize, reason: &str) {
        let _ = (line, reason);
    }
    /// An item was skipped by the filter.
    fn filtered(&mut self, item: &ReplayItem, why: Skip) {
        let _ = (item, why);
    }
    /// An item failed to send or was not confirmed.
    fn failed(&mut self, line: usize, error: &crate::SinkError) {
        let _ = (line, error);
    }
    /// The counters changed (called after every item read).
    fn progress(&mut self, summary: &Summary) {
        let _ = summary;
    }
}

/// An [`Observer`] that only logs bad lines and failures through `tracing`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogObserver;

impl Observer for LogObserver {
    fn bad_line(&mut self, line: usize, reason: &str) {
        tracing::warn!(line, reason, "bad input line skipped");
    }
    fn failed(&mut self, line: usize, error: &crate::SinkError) {
        tracing::warn!(line, %error, "item not sent");
    }
}

/// Drives a replay: items in, paced sends out, a [`Summary`] back.
///
/// ```
/// use nemo_replay::{Clock, FakeClock, MemorySink, Pacing, ReplayItem, ReplayOptions, Replayer, Schedule, LogObserver};
/// # futures::executor::block_on(async {
/// let items = (1..=3).map(|n| Ok(ReplayItem::new(format!("t/{n}"), "{}")));
/// let mut sink = MemorySink::default();
/// let clock = FakeClock::default();
/// let schedule = Schedule::new(Pacing::Rate { per_second: 2.0 }).unwrap();
/// let summary = Replayer::new(&clock, schedule, ReplayOptions::default())
///     .run(items, &mut sink, &mut LogObserver).await.unwrap();
/// assert_eq!(summary.sent, 3);
/// assert_eq!(clock.elapsed(), std::time::Duration::from_secs(1));
/// # });
/// ```
#[derive(Debug)]
pub struct Replayer<'c, C: Clock + ?Sized> {
    clock: &'c C,
    schedule: Schedule,
    options: ReplayOptions,
}

impl<'c, C: Clock + ?Sized> Replayer<'c, C> {
    /// A replayer timing itself on `clock` (its zero is the replay start).
    pub fn new(clock: &'c C, schedule: Schedule, options: ReplayOptions) -> Self {
        Replayer {
            clock,
            schedule,
            options,
        }
    }

    /// Replay `items` into `sink`, in order, and wait for every confirmation.
    ///
    /// An item without a time takes the time of the item before it (for the
    /// window and for pacing).
    ///
    /// # Errors
    /// [`ReplayError::BadLine`] for the first bad line when `strict` is set;
    /// [`ReplayError::Input`] when reading the input fails. Sink failures are
    /// counted in [`Summary::failed`], not errors.
    pub async fn run<I, S, O>(
        mut self,
        items: I,
        sink: &mut S,
        observer: &mut O,
    ) -> Result<Summary, ReplayError>
    where
        I: IntoIterator<Item = Result<ReplayItem, InputError>>,
        S: ReplaySink + ?Sized,
        O: Observer + ?Sized,
    {
        let window = self.options.window.max(1);
        let mut summary = Summary::default();
        let mut pending: VecDeque<(usize, Pending)> = VecDeque::new();
        let mut last_at: Option<OffsetDateTime> = None;
        let mut outcome = Ok(());
        for next in items {
            summary.read += 1;
            let mut item = match next {
                Ok(item) => item,
                Err(InputError::Bad { line, reason }) => {
                    summary.bad += 1;
                    observer.bad_line(line, &reason);
                    if self.options.strict {
                        outcome = Err(ReplayError::BadLine { line, reason });
                        break;
                    }
                    observer.progress(&summary);
                    continue;
                }
                Err(other) => {
                    summary.read -= 1;
                    outcome = Err(ReplayError::Input(other.to_string()));
                    break;
                }
            };
            let at = item.at.or(last_at);
            last_at = at;
            item.at = at;
            if let Err(why) = self.options.filter.check(&item, at) {
                summary.filtered += 1;
                observer.filtered(&item, why);
                observer.progress(&summary);
                continue;
            }
            if let Some(qos) = self.options.qos {
                item.qos = qos;
                if let Some(q) = item.queue_item.as_mut() {
                    q.qos = qos;
                }
            }
            let offset = self.schedule.next(at);
            if offset > self.clock.elapsed() {
                sink.flush().await;
            }
            self.clock.sleep_until(offset).await;
            match sink.send(&item).await {
                Ok(p) => pending.push_back((item.line, p)),
                Err(e) => {
                    summary.failed += 1;
                    observer.failed(item.line, &e);
                }
            }
            if pending.len() >= window {
                // Down to half the window, not by one: a batching sink then
                // gets batches of about window/2 instead of one item each.
                sink.flush().await;
                while pending.len() > window / 2 {
                    settle(&mut pending, &mut summary, observer).await;
                }
            }
            observer.progress(&summary);
        }
        sink.flush().await;
        while !pending.is_empty() {
            settle(&mut pending, &mut summary, observer).await;
        }
        summary.elapsed = self.clock.elapsed();
        observer.progress(&summary);
        outcome.map(|()| summary)
    }
}

async fn settle<O: Observer + ?Sized>(
    pending: &mut VecDeque<(usize, Pending)>,
    summary: &mut Summary,
    observer: &mut O,
) {
    if let Some((line, p)) = pending.pop_front() {
        match p.await {
            Ok(()) => summary.sent += 1,
            Err(e) => {
                summary.failed += 1;
                observer.failed(line, &e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FakeClock, MemorySink, Pacing};
    use time::macros::datetime;

    fn at(secs: i64) -> Option<OffsetDateTime> {
        Some(datetime!(2025-10-16 14:00 UTC) + time::Duration::seconds(secs))
    }

    fn item(line: usize, topic: &str, t: Option<OffsetDateTime>) -> Result<ReplayItem, InputError> {
        Ok(ReplayItem {
            line,
            at: t,
            ..ReplayItem::new(topic, format!("{{\"n\": {line}}}"))
        })
    }

    #[derive(Default)]
    struct Seen {
        bad: Vec<usize>,
        failed: Vec<usize>,
    }
    impl Observer for Seen {
        fn bad_line(&mut self, line: usize, _: &str) {
            self.bad.push(line);
        }
        fn failed(&mut self, line: usize, _: &crate::SinkError) {
            self.failed.push(line);
        }
    }

    fn bad(line: usize) -> Result<ReplayItem, InputError> {
        Err(InputError::Bad {
            line,
            reason: "broken".into(),
        })
    }

    async fn run(
        items: Vec<Result<ReplayItem, InputError>>,
        pacing: Pacing,
        options: ReplayOptions,
        sink: &mut MemorySink,
    ) -> (Result<Summary, ReplayError>, FakeClock, Seen) {
        let clock = FakeClock::default();
        let mut seen = Seen::default();
        let schedule = match Schedule::new(pacing) {
            Ok(s) => s,
            Err(e) => return (Err(ReplayError::Input(e.to_string())), clock, seen),
        };
        let r = Replayer::new(&clock, schedule, options)
            .run(items, sink, &mut seen)
            .await;
        (r, clock, seen)
    }

    #[tokio::test]
    async fn paces_by_recorded_time_at_speed() -> Result<(), ReplayError> {
        let items = vec![
            item(1, "a", at(10)),
            item(2, "b", at(11)),
            item(3, "c", at(12)),
        ];
        let mut sink = MemorySink::default();
        let (r, clock, _) = run(
            items,
            Pacing::Original { speed: 4.0 },
            ReplayOptions::default(),
            &mut sink,
        )
        .await;
        let summary = r?;
        assert_eq!(clock.waits(), [0, 250, 500].map(Duration::from_millis));
        assert_eq!(summary.elapsed, Duration::from_millis(500));
        assert_eq!(summary.sent, 3);
        let topics: Vec<_> = sink.items().into_iter().map(|i| i.topic).collect();
        assert_eq!(topics, ["a", "b", "c"]);
        Ok(())
    }

    #[tokio::test]
    async fn bad_lines_are_skipped_and_reported() -> Result<(), ReplayError> {
        let items = vec![item(1, "a", None), bad(2), item(3, "b", None), bad(4)];
        let mut sink = MemorySink::default();
        let (r, _, seen) = run(items, Pacing::Max, ReplayOptions::default(), &mut sink).await;
        let s = r?;
        assert_eq!((s.read, s.sent, s.bad, s.skipped()), (4, 2, 2, 2));
        assert_eq!(seen.bad, [2, 4]);
        Ok(())
    }

    #[tokio::test]
    async fn strict_stops_at_first_bad_line() {
        let items = vec![item(1, "a", None), bad(2), item(3, "b", None)];
        let mut sink = MemorySink::default();
        let options = ReplayOptions {
            strict: true,
            ..ReplayOptions::default()
        };
        let (r, _, _) = run(items, Pacing::Max, options, &mut sink).await;
        assert!(
            matches!(r, Err(ReplayError::BadLine { line: 2, .. })),
            "{r:?}"
        );
        assert_eq!(sink.items().len(), 1, "nothing after the bad line is sent");
    }

    #[tokio::test]
    async fn filtered_items_do_not_shift_the_schedule() -> Result<(), ReplayError> {
        // --from drops the first two; the replay starts with the third, at offset 0.
        let items = vec![
            item(1, "a", at(0)),
            item(2, "b", at(100)),
            item(3, "c", at(200)),
            item(4, "d", at(202)),
        ];
        let filter = Filter {
            from: at(150),
            ..Filter::default()
        };
        let mut sink = MemorySink::default();
        let options = ReplayOptions {
            filter,
            ..ReplayOptions::default()
        };
        let (r, clock, _) = run(items, Pacing::Original { speed: 1.0 }, options, &mut sink).await;
        let s = r?;
        assert_eq!((s.sent, s.filtered), (2, 2));
        assert_eq!(clock.waits(), [0, 2].map(Duration::from_secs));
        Ok(())
    }

    #[tokio::test]
    async fn untimed_item_inherits_previous_time_for_the_window() -> Result<(), ReplayError> {
        let items = vec![
            item(1, "a", at(0)),
            item(2, "b", None),
            item(3, "c", at(500)),
            item(4, "d", None),
        ];
        let filter = Filter {
            until: at(10),
            ..Filter::default()
        };
        let mut sink = MemorySink::default();
        let options = ReplayOptions {
            filter,
            ..ReplayOptions::default()
        };
        let (r, _, _) = run(items, Pacing::Max, options, &mut sink).await;
        r?;
        let topics: Vec<_> = sink.items().into_iter().map(|i| i.topic).collect();
        assert_eq!(topics, ["a", "b"]);
        Ok(())
    }

    #[tokio::test]
    async fn sink_failures_are_counted_not_fatal() -> Result<(), ReplayError> {
        let items = vec![
            item(1, "a", None),
            item(2, "nope", None),
            item(3, "c", None),
        ];
        let mut sink = MemorySink::failing_on(&["nope"]);
        let options = ReplayOptions {
            window: 1,
            ..ReplayOptions::default()
        };
        let (r, _, seen) = run(items, Pacing::Max, options, &mut sink).await;
        let s = r?;
        assert_eq!((s.sent, s.failed), (2, 1));
        assert_eq!(seen.failed, [2]);
        Ok(())
    }

    #[tokio::test]
    async fn same_input_same_sequence_and_timetable() -> Result<(), ReplayError> {
        let make = || {
            (0..50)
                .map(|n| item(n + 1, &format!("t/{}", n % 7), at((n as i64 * 37) % 11)))
                .collect::<Vec<_>>()
        };
        let (mut s1, mut s2) = (MemorySink::default(), MemorySink::default());
        let (r1, c1, _) = run(
            make(),
            Pacing::Original { speed: 3.0 },
            ReplayOptions::default(),
            &mut s1,
        )
        .await;
        let (r2, c2, _) = run(
            make(),
            Pacing::Original { speed: 3.0 },
            ReplayOptions::default(),
            &mut s2,
        )
        .await;
        assert_eq!(r1?, r2?);
        assert_eq!(s1.items(), s2.items());
        assert_eq!(c1.waits(), c2.waits());
        Ok(())
    }

    /// A sink that holds every item until `flush`, like the Redis batcher.
    #[derive(Default)]
    struct Buffering {
        held: Vec<(
            String,
            tokio::sync::oneshot::Sender<Result<(), crate::SinkError>>,
        )>,
        flushed: Vec<Vec<String>>,
    }

    impl ReplaySink for Buffering {
        fn send<'a>(
            &'a mut self,
            item: &'a ReplayItem,
        ) -> futures::future::BoxFuture<'a, Result<Pending, crate::SinkError>> {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.held.push((item.topic.clone(), tx));
            Box::pin(async move {
                let p: Pending = Box::pin(async move {
                    rx.await
                        .unwrap_or_else(|_| Err(crate::SinkError::Batch("dropped".into())))
                });
                Ok(p)
            })
        }

        fn flush(&mut self) -> futures::future::BoxFuture<'_, ()> {
            let batch: Vec<String> = self
                .held
                .drain(..)
                .map(|(topic, tx)| {
                    let _ = tx.send(Ok(()));
                    topic
                })
                .collect();
            if !batch.is_empty() {
                self.flushed.push(batch);
            }
            Box::pin(std::future::ready(()))
        }
    }

    #[tokio::test]
    async fn buffered_items_are_flushed_before_every_wait() -> Result<(), ReplayError> {
        // a, b at t=0, c at t=1, d, e, f at t=2: flushes before the two waits, and
        // when the window (4) is full.
        let items = vec![
            item(1, "a", at(0)),
            item(2, "b", at(0)),
            item(3, "c", at(1)),
            item(4, "d", at(2)),
            item(5, "e", at(2)),
            item(6, "f", at(2)),
        ];
        let clock = FakeClock::default();
        let mut sink = Buffering::default();
        let options = ReplayOptions {
            window: 4,
            ..ReplayOptions::default()
        };
        let schedule = Schedule::new(Pacing::Original { speed: 1.0 })
            .map_err(|e| ReplayError::Input(e.to_string()))?;
        let summary = Replayer::new(&clock, schedule, options)
            .run(items, &mut sink, &mut Seen::default())
            .await?;
        assert_eq!(summary.sent, 6);
        let batches: Vec<Vec<&str>> = sink
            .flushed
            .iter()
            .map(|b| b.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(
            batches,
            [vec!["a", "b"], vec!["c"], vec!["d"], vec!["e", "f"]]
        );
        Ok(())
    }

    #[tokio::test]
    async fn qos_override_applies_to_every_item() -> Result<(), ReplayError> {
        let items = vec![item(1, "a", None), item(2, "b", None)];
        let mut sink = MemorySink::default();
        let options = ReplayOptions {
            qos: Some(nemo_events::Qos::AtMostOnce),
            ..ReplayOptions::default()
        };
        let (r, _, _) = run(items, Pacing::Max, options, &mut sink).await;
        r?;
        assert!(
            sink.items()
                .iter()
                .all(|i| i.qos == nemo_events::Qos::AtMostOnce)
        );
        Ok(())
    }
}
