//! The sink seam: what the bridge pipeline needs from a broker connection.
//!
//! [`Publisher`](crate::Publisher) implements it; with the `mock` feature,
//! `MockEventSink` (mockall) stands in for it in unit tests.

use futures::future::BoxFuture;
use nemo_events::Qos;
use tokio::sync::watch;

use crate::{ConnState, MqttError};

/// One message to publish. `payload` is sent byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// A valid MQTT topic name (no wildcards); validated by the caller.
    pub topic: String,
    /// The exact payload bytes.
    pub payload: bytes::Bytes,
    /// Quality of service.
    pub qos: Qos,
    /// Retain flag.
    pub retain: bool,
}

/// The future returned by [`EventSink::publish`]: resolves `Ok(())` only when
/// the broker confirmed the message (PUBACK for QoS 1, PUBCOMP for QoS 2,
/// written to the socket for QoS 0), `Err` when it will not be confirmed
/// (connection lost, timed out, rejected) — the caller then retries or nacks.
pub type Confirm = BoxFuture<'static, Result<(), MqttError>>;

/// A broker connection that publishes with confirmation.
///
/// `publish` must be called in order; confirmations for a QoS resolve in the
/// order of the publishes. The number of unconfirmed publishes is bounded by
/// the caller (its in-flight window), not by the sink.
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait EventSink: Send + Sync {
    /// Start publishing `msg`; the returned future resolves on confirm.
    fn publish(&self, msg: OutMessage) -> Confirm;
    /// True while the connection to the broker is up.
    fn is_connected(&self) -> bool;
    /// Connection state changes (connected/disconnected and a reconnect
    /// counter), if the sink reports them. A watcher that sees `reconnects`
    /// grow can republish what was in flight at once. Default: `None`.
    fn connection_state(&self) -> Option<watch::Receiver<ConnState>> {
        None
    }
}
