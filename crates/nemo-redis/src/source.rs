//! The source seam: what the bridge pipeline needs from a queue.
//!
//! Implementations: [`ListSource`](crate::ListSource),
//! [`StreamSource`](crate::StreamSource), [`PubSubSource`](crate::PubSubSource).
//! With the `mock` feature, `MockEventSource` (mockall) is exported for unit
//! tests of the pipeline without a server.

use std::time::Duration;

use crate::RedisError;

/// Where a delivery came from, so that `ack`/`nack` can find it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryId {
    /// List mode: the item sits in the processing list under its exact bytes.
    List,
    /// Stream mode: the stream entry id (e.g. `1760623352944-0`).
    Stream(String),
    /// Pub/sub mode: a local sequence number (nothing to ack).
    PubSub(u64),
}

/// One raw item taken from the queue, not yet confirmed.
///
/// `raw` is the exact bytes that the producer wrote; they may be anything
/// (not UTF-8, not JSON): validation is the caller's job, and bad items go to
/// [`EventSource::dead_letter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Identity for ack/nack.
    pub id: DeliveryId,
    /// The exact bytes of the item.
    pub raw: bytes::Bytes,
    /// True if this item may have been delivered before (recovered from
    /// `processing`, or a reclaimed pending stream entry).
    pub redelivered: bool,
}

/// A reliable queue of raw items: take, then ack after the broker confirmed.
///
/// Contract:
/// - `take` returns at most `max` items, oldest first, waiting at most `wait`
///   for the first one; an empty `Vec` means "nothing yet" (not an error).
///   It never reads further ahead than `max`.
/// - `ack` removes exactly the given deliveries (they were confirmed).
/// - `nack` gives the given deliveries back so that the next `take` returns
///   them first, in the order given (used on shutdown with unconfirmed items).
/// - `dead_letter` removes one delivery and records it with the reason in the
///   dead-letter list.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait::async_trait]
pub trait EventSource: Send {
    /// Take up to `max` items, oldest first, waiting up to `wait` for the first.
    async fn take(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, RedisError>;
    /// Remove confirmed deliveries from the queue.
    async fn ack(&mut self, deliveries: &[Delivery]) -> Result<(), RedisError>;
    /// Return unconfirmed deliveries to the head of the queue, order kept.
    async fn nack(&mut self, deliveries: &[Delivery]) -> Result<(), RedisError>;
    /// Move one bad delivery to the dead-letter list with a reason.
    async fn dead_letter(&mut self, delivery: &Delivery, error: &str) -> Result<(), RedisError>;
    /// Items waiting to be taken, if the source can tell (for metrics).
    async fn depth(&mut self) -> Result<Option<u64>, RedisError> {
        Ok(None)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The mock is usable as a `dyn EventSource` (how the bridge holds it) and
    /// also mocks the default `depth` method.
    #[tokio::test]
    async fn mock_source_behind_the_trait_object() {
        let mut mock = MockEventSource::new();
        let d = Delivery {
            id: DeliveryId::List,
            raw: bytes::Bytes::from_static(b"x"),
            redelivered: false,
        };
        let d2 = d.clone();
        mock.expect_take()
            .returning(move |max, _| Ok(vec![d2.clone(); max.min(1)]));
        mock.expect_ack()
            .withf(|ds| ds.len() == 1)
            .times(1)
            .returning(|_| Ok(()));
        mock.expect_depth().returning(|| Ok(Some(7)));
        let mut src: Box<dyn EventSource> = Box::new(mock);
        let got = src.take(5, Duration::ZERO).await.unwrap();
        assert_eq!(got, vec![d]);
        src.ack(&got).await.unwrap();
        assert_eq!(src.depth().await.unwrap(), Some(7));
    }
}
