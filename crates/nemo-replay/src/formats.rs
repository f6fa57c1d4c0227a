//! Line parsers: monitor recordings and v1 queue items into [`ReplayItem`]s.

use bytes::Bytes;
use nemo_events::{Qos, QueueItem, Topic};
use time::OffsetDateTime;

use crate::ReplayItem;

/// Epoch seconds (the plugin's `timestamp`) to a time; `None` if out of range.
pub(crate) fn from_epoch(secs: f64) -> Option<OffsetDateTime> {
    if !secs.is_finite() {
        return None;
    }
    OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9).round() as i128).ok()
}

/// A v1 queue item (validated like the bridge validates it) as a replay item.
pub(crate) fn item_from_queue(line: usize, q: QueueItem) -> ReplayItem {
    ReplayItem {
        line,
        at: q.timestamp.and_then(from_epoch),
        topic: q.topic.as_str().to_owned(),
        payload: Bytes::from(q.payload.clone()),
        qos: q.qos,
        retain: q.retain,
        queue_item: Some(q),
    }
}

pub(crate) fn parse_queue_item(line: usize, text: &str) -> Result<ReplayItem, String> {
    let q = QueueItem::parse(text.as_bytes()).map_err(|e| e.to_string())?;
    Ok(item_from_queue(line, q))
}

pub(crate) fn parse_recording(line: usize, text: &str) -> Result<ReplayItem, String> {
    let r = nemo_monitor::RecordLine::parse(text).map_err(|e| e.to_string())?;
    let topic = Topic::new(r.topic).map_err(|e| format!("invalid topic: {e}"))?;
    let qos = Qos::from_u8(r.qos).ok_or_else(|| format!("qos {} is not 0, 1 or 2", r.qos))?;
    Ok(ReplayItem {
        line,
        at: Some(r.received_at),
        topic: topic.into_string(),
        payload: r.payload,
        qos,
        retain: r.retain,
        queue_item: None,
    })
}
