//! Event schema of the NEMO tool-event stream: Redis queue items, typed events, HMAC envelopes.
//!
//! NEMO (a Django lab-management system) has a plugin that turns tool-usage changes into JSON
//! items on a Redis list; a bridge publishes them to MQTT, where tool displays, relays and
//! dashboards consume them. This crate is the shared vocabulary of that pipeline, with no I/O
//! (no tokio, no network), so any Rust program can depend on it:
//!
//! * [`QueueItem`] — one Redis item `{topic, payload, qos, retain, timestamp}`, validated
//!   ([`Topic`], [`Qos`]) so bad input gets a typed [`ItemError`] to dead-letter;
//! * [`NemoEvent`] — the payload as a typed event (one variant per kind, plus
//!   [`NemoEvent::Unknown`]), with accessors such as [`NemoEvent::tool_id`];
//! * [`kinds`] — the one table of event kinds ([`EVENT_KINDS`]): topic, payload members and the
//!   words a person reads, generated from the same list as [`NemoEvent`]'s variants;
//! * [`hmac`] — the signed envelope `{"payload", "hmac", "algo"}` (feature `hmac`, default);
//! * [`pyjson`] — the one writer that formats JSON exactly like Python's `json.dumps`.
//!
//! # Key design decision: lossless, byte-exact round trips
//!
//! The producer is a Python plugin we do not control, its data is messy (booleans where times
//! belong, names with `/`, `#`, `+`, quotes and non-ASCII, kinds we have never seen), and the
//! HMAC signs exact bytes. So this crate never normalizes what it does not have to: the item
//! payload is kept as the exact original string, unknown kinds and members are kept as raw JSON
//! in their original position, times keep their original text, and everything is written back
//! through [`pyjson`], which reproduces `json.dumps` byte for byte. Parsing a plugin item and
//! writing it again gives the same bytes — tested on every fixture line. Strictness is reserved
//! for what publishing needs (topic, QoS, size); everything else is lenient.
//!
//! ```
//! use nemo_events::{NemoEvent, QueueItem};
//!
//! let line = br#"{"topic": "nemo/tools/1/enabled", "payload": "{\"event\": \"tool_enabled\", \"tool_id\": 1, \"user_name\": \"Jos\\u00e9\"}", "qos": 1, "retain": false, "timestamp": 1760623352.944572}"#;
//! let item = QueueItem::parse(line)?;
//! let event = item.event()?;
//! assert_eq!(event.kind(), "tool_enabled");
//! assert_eq!(event.user_name(), Some("José"));
//! assert_eq!(item.to_json().as_bytes(), line);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! * `hmac` (default): the [`hmac`] module (`hmac`, `sha2`, `hex`, `subtle`).

#![deny(missing_docs)]

mod error;
pub mod event;
mod event_time;
mod extra;
pub mod filter;
#[cfg(feature = "hmac")]
pub mod hmac;
mod item;
pub mod kinds;
pub mod pyjson;
mod qos;
mod topic;

pub use error::{EventError, ItemError};
pub use event::{
    Area, AreaAccess, NemoEvent, Reservation, Task, ToolInfo, ToolOperational, ToolUsage,
    UnknownEvent,
};
pub use event_time::{EventTime, parse_time};
pub use extra::Extra;
pub use item::{MAX_ITEM_BYTES, QueueItem};
pub use kinds::{EVENT_KINDS, EventKind};
pub use qos::{InvalidQos, Qos};
pub use topic::{MAX_TOPIC_BYTES, Topic, TopicError};

/// The README's example, compiled and run as a doc test.
#[cfg(all(doctest, feature = "hmac"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
