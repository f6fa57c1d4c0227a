//! The output seam: a [`ReplaySink`] takes items in order and tells, per item,
//! when it is confirmed. Implementations: [`MemorySink`] (tests, planning),
//! and in `outputs` the MQTT publisher, the Redis producer and the dry-run printer.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use crate::ReplayItem;

/// Resolves when one sent item is confirmed (broker PUBACK/PUBCOMP, Redis reply,
/// line written), or with the reason it will not be.
pub type Pending = BoxFuture<'static, Result<(), SinkError>>;

/// Why an item could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The MQTT publisher refused or lost the message.
    #[error(transparent)]
    Mqtt(#[from] nemo_mqtt::MqttError),
    /// Redis refused the item.
    #[error(transparent)]
    Redis(#[from] nemo_redis::RedisError),
    /// Writing the dry-run output failed.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    /// A batch the item was part of failed (the message says why).
    #[error("batch failed: {0}")]
    Batch(String),
    /// The item cannot be expressed in this output (e.g. a non-UTF-8 payload
    /// cannot become a v1 queue item).
    #[error("item cannot be sent: {0}")]
    Item(String),
}

/// Where replayed items go.
///
/// `send` is called once per item, in replay order, and must *start* the
/// operation in that order (so the output order is the input order); the returned
/// [`Pending`] resolves when the item is confirmed. The replayer keeps a bounded
/// window of pending confirmations, so a sink does not need to bound them.
///
/// A sink may buffer items to send them in batches; the replayer calls
/// [`flush`](ReplaySink::flush) before it waits — for the schedule or for a
/// confirmation — so a buffered item never waits for the next one.
pub trait ReplaySink: Send {
    /// Start sending `item`. An `Err` means it was not sent at all.
    fn send<'a>(&'a mut self, item: &'a ReplayItem) -> BoxFuture<'a, Result<Pending, SinkError>>;

    /// Send whatever is buffered. Failures are reported through the items'
    /// [`Pending`]s. The default does nothing (for sinks that do not buffer).
    fn flush(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// A sink that keeps every item in memory (for tests and for previewing).
///
/// ```
/// use nemo_replay::{MemorySink, ReplaySink, ReplayItem};
/// # futures::executor::block_on(async {
/// let mut sink = MemorySink::default();
/// let item = ReplayItem::new("t", "{}");
/// sink.send(&item).await.unwrap().await.unwrap();
/// assert_eq!(sink.items(), [item]);
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    items: Arc<Mutex<Vec<ReplayItem>>>,
    fail_topics: Vec<String>,
}

impl MemorySink {
    /// A sink whose sends fail (confirm with an error) for these topics.
    pub fn failing_on(topics: &[&str]) -> MemorySink {
        MemorySink {
            fail_topics: topics.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Everything sent so far, in order (failed ones excluded).
    pub fn items(&self) -> Vec<ReplayItem> {
        self.items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl ReplaySink for MemorySink {
    fn send<'a>(&'a mut self, item: &'a ReplayItem) -> BoxFuture<'a, Result<Pending, SinkError>> {
        let result: Result<(), SinkError> = if self.fail_topics.contains(&item.topic) {
            Err(SinkError::Item(format!("refused topic {}", item.topic)))
        } else {
            self.items
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(item.clone());
            Ok(())
        };
        Box::pin(async move { Ok(Box::pin(std::future::ready(result)) as Pending) })
    }
}
