//! The live NEMO MQTT stream, made readable by people and recordable for replay.
//!
//! This crate is the library behind the `monitor` program: it turns received MQTT
//! messages into one human line each ([`Formatter`]), folds them into a per-tool
//! board ([`Board`]), writes them as JSONL recordings that `replay` reads back
//! ([`record`]), and serves a small live web dashboard ([`web`]).
//!
//! The one design decision: **the monitor never rejects input.** A bridge or relay
//! may refuse a payload, but the monitor is what people look at when something is
//! wrong, so a payload that is not JSON, not UTF-8, a megabyte long, of an unknown
//! kind, or badly signed is still shown — described, truncated with a visible
//! marker, tagged — and recorded byte for byte. That is also why the library reads
//! payloads leniently as JSON values instead of through strict event types: every
//! field is optional, every type is tolerated (`timestamp: false` is a known
//! plugin bug), and unknown kinds fall back to compact JSON.
//!
//! The core (board, formatter, recordings, dashboard) does not connect to anything; it
//! consumes `(topic, payload, retain, time)` tuples, which keeps it testable without servers.
//! The `cli` feature (on by default) adds the monitor's flags, resolved against its part of the
//! bridge's configuration through nemo-config ([`cli`]), and its loop ([`app`]), which wires
//! the MQTT subscriber into the core. The monitor only listens to the broker: the bridge's
//! queue figures arrive there too, retained beside its status (`nemo/bridge/queue`), so the
//! monitor reads neither Redis nor NEMO's database and does not compile their clients. Built
//! with `default-features = false`, the crate has no network dependency.
//!
//! ```
//! use nemo_monitor::{Board, FormatOptions, Formatter};
//! let at = time::macros::datetime!(2025-10-17 09:48:24 UTC);
//! let topic = "nemo/tools/23/non-operational";
//! let payload = br#"{"event": "tool_non_operational", "tool_id": 23, "tool_name": "Angstrom Evaporator", "operational": false, "timestamp": "2025-10-17T09:48:24+00:00"}"#;
//! let f = Formatter::new(FormatOptions { color: false, hmac_key: None, utc: true });
//! assert!(f.line(topic, payload, true, at).ends_with("DOWN  [retained]"));
//! let mut board = Board::new();
//! board.apply(topic, payload, at);
//! assert!(board.render_at(false, at).contains("DOWN"));
//! ```
#![deny(missing_docs)]

#[cfg(feature = "cli")]
pub mod app;
pub mod board;
#[cfg(feature = "cli")]
pub mod cli;
pub mod format;
mod message;
pub mod record;
pub mod view;
pub mod web;

pub use board::{Board, QueueStats, RejectedFigures, ToolState};
pub use format::{FormatOptions, Formatter};
pub use message::Signature;
pub use record::{RecordError, RecordLine, Recorder};
