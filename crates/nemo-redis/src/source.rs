//! The source seam, re-exported from [`nemo_source`]: what the bridge pipeline needs from a
//! queue. This crate's implementations: [`ListSource`](crate::ListSource),
//! [`StreamSource`](crate::StreamSource), [`PubSubSource`](crate::PubSubSource), each with
//! [`RedisError`](crate::RedisError) as its error. With the `mock` feature, `MockEventSource`
//! (mockall) is re-exported for unit tests of the pipeline without a server.

#[cfg(feature = "mock")]
pub use nemo_source::MockEventSource;
pub use nemo_source::{Delivery, DeliveryId, EventSource, Interrupter};
