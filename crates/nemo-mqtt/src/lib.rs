//! The MQTT side of nemo-mqtt: confirmed publishing to a broker, and a
//! subscriber for the monitor and replay tools, on `paho-mqtt` (the Eclipse
//! Paho C library).
//!
//! # The key decision: a publish is done when the broker says so
//!
//! The bridge may remove an event from Redis only after the broker has taken
//! responsibility for it. So [`EventSink::publish`] does not return "sent" but
//! a [`Confirm`] future that resolves on PUBACK (QoS 1) / PUBCOMP (QoS 2), and
//! *always* resolves: with an error when the connection drops with a clean
//! session, the local buffer is full, or no confirmation arrives within
//! `mqtt.confirm_timeout_s`. The caller therefore always knows which events
//! were not confirmed and publishes them again; nothing waits forever and
//! nothing is dropped silently. Paho keeps confirmations in publish order for
//! one client, which keeps the bridge's FIFO contract.
//!
//! # Pieces
//!
//! * [`MqttConfig`] — the `[mqtt]` table, with [`validate`](MqttConfig::validate)
//!   errors that name key, value and what is allowed; [`BrokerUrl`] parses
//!   `mqtt://`, `mqtts://`, `ws://`, `wss://` (a list = failover).
//! * [`Publisher`] — TLS (server verification and host-name check always on
//!   unless `insecure_skip_verify`), username/password, client certificates,
//!   retained online/offline status with last will, reconnect through
//!   [`nemo_backoff`] with state in a `watch` channel ([`ConnState`]).
//! * [`Subscriber`] — topic filters, clean or persistent session, resubscribe
//!   after reconnect, messages as [`Received`].
//! * [`QueueFigures`] — the bridge's queue figures, published retained beside its status
//!   ([`figures_topic`]), so that the monitor only listens to the broker.
//! * [`MqttError`] — typed errors; TLS failures say *why* ("certificate
//!   verify failed: certificate has expired").
//!
//! # Paho traps handled here
//!
//! Paho writes file persistence into the working directory unless told not
//! to (we never use it); checks the TLS host name only with `verify(true)`
//! (always set); fails publishes while disconnected unless
//! `send_while_disconnected` (on in `"wait"` mode, bounded by `max_buffered`);
//! runs callbacks on its own C thread (ours never block); and `Token::wait()`
//! blocks a thread (never used: tokens are awaited as futures).
#![deny(missing_docs)]

mod config;
mod diagnose;
mod error;
mod figures;
mod link;
mod publisher;
pub mod sink;
mod state;
mod subscriber;
mod url;

pub use config::{MqttConfig, Protocol, Secret, WhenDisconnected};
pub use error::MqttError;
pub use figures::{FiguresError, QueueFigures, figures_topic};
pub use publisher::Publisher;
#[cfg(feature = "mock")]
pub use sink::MockEventSink;
pub use sink::{Confirm, EventSink, OutMessage};
pub use state::{ConnState, ConnStatus};
pub use subscriber::{Received, Subscriber};
pub use url::{BrokerUrl, Transport};

/// This crate's version, as reported in the status messages.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
