//! Replay for nemo-mqtt: send a recorded incident again, into an MQTT broker or
//! back into the Redis queue, with its original pacing or faster, slower, or at
//! a fixed rate.
//!
//! Inputs (monitor recordings, v1 queue-item files, a Redis stream range, the
//! dead-letter list) become one stream of [`ReplayItem`]s; a [`Filter`] picks
//! items; a [`Schedule`] says when each goes out; a [`ReplaySink`] sends them;
//! the [`Replayer`] drives it all and returns a [`Summary`].
//!
//! **The key decision: timing is computed, never measured.** The [`Schedule`] is
//! a pure function from the items' recorded times and the pacing to send
//! offsets, and the [`Replayer`] only waits on a [`Clock`] until each offset.
//! So the same input and flags always produce the same sequence at the same
//! planned offsets (a rerun into a fresh broker reproduces the retained end
//! state exactly), and a speed factor is tested by arithmetic with a
//! [`FakeClock`] instead of with a stopwatch — timers on a busy CI machine are
//! not evidence. Sending never runs ahead of the schedule, and a slow sink only
//! delays items (it never reorders or drops them).
//!
//! Two limits worth knowing. A recording made by an MQTT 3.1.1 subscriber has
//! `retain = false` on every live message (the broker clears the flag on
//! forwarding), so only messages delivered from the retained store at subscribe
//! time keep it; a replay reproduces the retained state the recording holds.
//! And a Redis stream range is read into memory before the replay starts.
//!
//! ```
//! use nemo_replay::{Clock, FakeClock, InputFormat, LineItems, LogObserver, MemorySink, Pacing,
//!     ReplayOptions, Replayer, Schedule};
//! # futures::executor::block_on(async {
//! let file = concat!(
//!     r#"{"t":"2025-10-16T14:00:00Z","topic":"nemo/tools/1/enabled","payload":"{}","qos":1,"retain":false}"#, "\n",
//!     r#"{"t":"2025-10-16T14:00:02Z","topic":"nemo/tools/1/disabled","payload":"{}","qos":1,"retain":false}"#, "\n",
//! );
//! let items = LineItems::new(file.as_bytes(), InputFormat::Recording);
//! let clock = FakeClock::default();
//! let mut sink = MemorySink::default();
//! let summary = Replayer::new(&clock, Schedule::new(Pacing::Original { speed: 4.0 })?, ReplayOptions::default())
//!     .run(items, &mut sink, &mut LogObserver).await?;
//! assert_eq!(summary.sent, 2);
//! assert_eq!(clock.elapsed(), std::time::Duration::from_millis(500)); // 2 s at speed 4
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
#![deny(missing_docs)]

pub mod app;
pub mod cli;
mod cli_support;
mod clock;
mod config;
mod filter;
mod formats;
mod input;
mod item;
mod outputs;
mod replay;
mod schedule;
mod sink;
mod stream_input;
mod topic_filter;

pub use cli_support::{dead_letter_line, parse_requeue, parse_rfc3339};
pub use clock::{Clock, FakeClock, TokioClock};
pub use config::ReplayConfig;
pub use filter::{Filter, Skip};
/// Re-exported: the future type of [`ReplaySink::send`].
pub use futures::future::BoxFuture;
pub use input::{InputError, InputFormat, LineItems};
pub use item::ReplayItem;
pub use outputs::{DryRunSink, MqttSink, RedisSink, queue_item_json};
pub use replay::{LogObserver, Observer, ReplayError, ReplayOptions, Replayer, Summary};
pub use schedule::{Pacing, Schedule, ScheduleError};
pub use sink::{MemorySink, Pending, ReplaySink, SinkError};
pub use stream_input::read_stream_range;
/// Re-exported: the time type of [`ReplayItem::at`] and [`Filter`].
pub use time::OffsetDateTime;
pub use topic_filter::{TopicFilter, TopicFilterError};
