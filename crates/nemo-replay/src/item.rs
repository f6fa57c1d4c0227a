//! [`ReplayItem`]: one message to replay, whatever input it came from.

use bytes::Bytes;
use nemo_events::{Qos, QueueItem};
use time::OffsetDateTime;

/// One message to send again: where it goes, its exact payload bytes, and when
/// it originally happened.
///
/// Every input (recording, queue-item file, stream range, dead letters) is turned
/// into this one shape, so filters, pacing and sinks never care where an item came
/// from. `payload` is kept byte for byte (an HMAC envelope stays valid).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayItem {
    /// Where it came from: the 1-based line number in a file, or the 1-based
    /// position in a Redis range.
    pub line: usize,
    /// When it originally happened (receive time in a recording, the producer's
    /// `timestamp` in a queue item); `None` when the input has no usable time.
    pub at: Option<OffsetDateTime>,
    /// The MQTT topic name (validated by the input parser: no wildcards, no NUL).
    pub topic: String,
    /// The exact payload bytes.
    pub payload: Bytes,
    /// Quality of service to publish with.
    pub qos: Qos,
    /// Retain flag.
    pub retain: bool,
    /// The original v1 queue item, when the input was one: the Redis output
    /// enqueues it unchanged (extra members and timestamp text kept).
    pub queue_item: Option<QueueItem>,
}

impl ReplayItem {
    /// An item for `topic` with `payload`: QoS 1, not retained, no time, line 0.
    ///
    /// ```
    /// let item = nemo_replay::ReplayItem::new("nemo/tools/1/enabled", "{}");
    /// assert_eq!(item.qos, nemo_events::Qos::AtLeastOnce);
    /// assert!(!item.retain && item.at.is_none());
    /// ```
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>) -> ReplayItem {
        ReplayItem {
            line: 0,
            at: None,
            topic: topic.into(),
            payload: payload.into(),
            qos: Qos::AtLeastOnce,
            retain: false,
            queue_item: None,
        }
    }

    /// The payload as text, if it is UTF-8 (queue items must be).
    pub fn payload_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }
}
