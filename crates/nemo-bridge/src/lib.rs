//! The NEMO bridge as a library: configuration, the at-least-once pipeline, lifecycle, status.
//!
//! The `bridge` binary is a thin shell around this crate: it parses the command line, loads the
//! [`config::Config`], turns signals into [`Control`] messages and calls [`run()`].
//!
//! # Key design decision: the pipeline only knows two traits
//!
//! The delivery contract (at-least-once, FIFO, bounded memory, republish right after a
//! reconnect) lives in [`pipeline::Pipeline`], which is generic over the source seam
//! ([`nemo_source::EventSource`]) and the sink seam ([`nemo_mqtt::EventSink`]). It never sees
//! Redis, PostgreSQL or paho, so every ordering and failure case is unit-tested with fakes and
//! mocks in milliseconds; the lifecycle ([`run()`]) only wires real connections, the
//! single-active lock, signals and status around it ([`queue`] holds the Redis queue of plugin
//! 1.x or the PostgreSQL table of plugin 2.x behind one type). Items leave the queue only
//! through `ack` after the broker confirmed them, in source order: a crash at any instant loses
//! nothing, and at most the in-flight window is published twice.
//!
//! ```
//! let cfg = nemo_bridge::config::Config::default();
//! assert!(cfg.validate().is_ok());
//! assert_eq!(cfg.mqtt.inflight, 256);
//! ```
#![deny(missing_docs)]

#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod control;
pub mod error;
pub mod figures;
pub mod filters;
pub mod http;
mod live;
pub mod message_log;
pub mod pipeline;
pub mod prepare;
pub mod queue;
pub mod run;
pub mod settings;
pub mod status_row;
pub mod watchdog;

pub use config::{Config, ConfigError};
pub use control::Control;
pub use error::BridgeError;
pub use run::run;
