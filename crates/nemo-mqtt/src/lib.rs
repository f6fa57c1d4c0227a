//! MQTT side of nemo-mqtt (being written). See `sink` for the seam.
#![deny(missing_docs)]

pub mod sink;
pub use sink::{Confirm, EventSink, OutMessage};

/// Errors talking to the broker (being written).
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// Placeholder.
    #[error("mqtt: {0}")]
    Other(String),
}
