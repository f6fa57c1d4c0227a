//! Redis side of nemo-mqtt (being written). See `source` for the seam.
#![deny(missing_docs)]

pub mod source;
pub use source::{Delivery, DeliveryId, EventSource};

/// Errors talking to Redis (being written).
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// Placeholder.
    #[error("redis: {0}")]
    Other(String),
}
