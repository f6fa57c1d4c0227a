//! The real sinks: MQTT publish, Redis enqueue, dry-run printing.

use std::io::Write;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use nemo_events::{QueueItem, Topic};
use nemo_monitor::Formatter;
use nemo_mqtt::{EventSink, OutMessage};
use nemo_redis::Producer;
use time::OffsetDateTime;

use crate::{Clock, Pending, ReplayItem, ReplaySink, SinkError};

/// Publishes straight to an MQTT broker through any [`EventSink`] (normally a
/// `nemo_mqtt::Publisher`). Topic, payload bytes, QoS and retain flag are sent
/// as recorded; each item's [`Pending`] is the broker's confirmation.
///
/// ```
/// use nemo_replay::{MqttSink, ReplayItem, ReplaySink};
/// let mut mock = nemo_mqtt::MockEventSink::new();
/// mock.expect_publish()
///     .withf(|m| m.topic == "nemo/tools/1/enabled" && &m.payload[..] == b"{}")
///     .returning(|_| Box::pin(async { Ok(()) }));
/// let mut sink = MqttSink::new(mock);
/// # futures::executor::block_on(async {
/// sink.send(&ReplayItem::new("nemo/tools/1/enabled", "{}")).await.unwrap().await.unwrap();
/// # });
/// ```
#[derive(Debug)]
pub struct MqttSink<S> {
    sink: S,
}

impl<S: EventSink> MqttSink<S> {
    /// Publish through `sink`.
    pub fn new(sink: S) -> Self {
        MqttSink { sink }
    }

    /// The wrapped sink (to shut the publisher down after the replay).
    pub fn into_inner(self) -> S {
        self.sink
    }
}

impl<S: EventSink> ReplaySink for MqttSink<S> {
    fn send<'a>(&'a mut self, item: &'a ReplayItem) -> BoxFuture<'a, Result<Pending, SinkError>> {
        let confirm = self.sink.publish(OutMessage {
            topic: item.topic.clone(),
            payload: item.payload.clone(),
            qos: item.qos,
            retain: item.retain,
        });
        let pending: Pending = confirm.map(|r| r.map_err(SinkError::from)).boxed();
        futures::future::ready(Ok(pending)).boxed()
    }
}

/// Enqueues items into the Redis queue (list or stream, per the producer's
/// mode) so that they go through a bridge again.
///
/// An item read from a v1 queue-item file is enqueued exactly as it was
/// (same JSON, extra members kept). Any other item becomes a v1 queue item
/// `{"topic", "payload", "qos", "retain", "timestamp"}` with its recorded time
/// as `timestamp`; its payload must be UTF-8 (a queue item holds text).
/// A recording of a bridge with HMAC on holds signed envelopes: enqueued, they
/// would be signed again — replay such recordings to MQTT instead.
///
/// Items are buffered and enqueued in batches (one atomic script call per
/// batch, order kept) when the replayer flushes — before every wait — or when
/// [`RedisSink::BATCH`] items are buffered.
#[derive(Debug)]
pub struct RedisSink {
    producer: Producer,
    batch: Vec<(String, tokio::sync::oneshot::Sender<Result<(), SinkError>>)>,
}

impl RedisSink {
    /// Most items enqueued in one call.
    pub const BATCH: usize = 256;

    /// Enqueue through `producer`.
    pub fn new(producer: Producer) -> Self {
        RedisSink {
            producer,
            batch: Vec::new(),
        }
    }

    async fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let raws: Vec<&[u8]> = batch.iter().map(|(json, _)| json.as_bytes()).collect();
        let result = self.producer.enqueue_raw_many(&raws).await;
        for (i, (_, done)) in batch.into_iter().enumerate() {
            let r = match &result {
                Ok(n) if (i as u64) < *n => Ok(()),
                Ok(n) => Err(SinkError::Batch(format!(
                    "Redis added only {n} items of the batch"
                ))),
                Err(e) => Err(SinkError::Batch(e.to_string())),
            };
            // The receiver is gone only if the replayer gave up on the item.
            let _ = done.send(r);
        }
    }
}

/// The v1 queue-item JSON for an item (see [`RedisSink`]).
///
/// ```
/// let mut item = nemo_replay::ReplayItem::new("nemo/tools/1/enabled", r#"{"tool_id": 1}"#);
/// item.at = Some(time::macros::datetime!(2025-10-16 14:02:32.5 UTC));
/// assert_eq!(
///     nemo_replay::queue_item_json(&item).unwrap(),
///     r#"{"topic": "nemo/tools/1/enabled", "payload": "{\"tool_id\": 1}", "qos": 1, "retain": false, "timestamp": 1760623352.5}"#
/// );
/// ```
///
/// # Errors
/// [`SinkError::Item`] when the payload is not UTF-8 or the topic is invalid.
pub fn queue_item_json(item: &ReplayItem) -> Result<String, SinkError> {
    if let Some(q) = &item.queue_item {
        return Ok(q.to_json());
    }
    let payload = item
        .payload_str()
        .ok_or_else(|| SinkError::Item("payload is not UTF-8; a queue item holds text".into()))?;
    let topic = Topic::new(item.topic.clone()).map_err(|e| SinkError::Item(e.to_string()))?;
    let mut q = QueueItem::from_payload(topic, payload);
    q.qos = item.qos;
    q.retain = item.retain;
    q.timestamp = item.at.map(|at| at.unix_timestamp_nanos() as f64 / 1e9);
    Ok(q.to_json())
}

impl ReplaySink for RedisSink {
    fn send<'a>(&'a mut self, item: &'a ReplayItem) -> BoxFuture<'a, Result<Pending, SinkError>> {
        Box::pin(async move {
            let json = queue_item_json(item)?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.batch.push((json, tx));
            if self.batch.len() >= Self::BATCH {
                self.flush_batch().await;
            }
            let pending: Pending = Box::pin(async move {
                rx.await
                    .unwrap_or_else(|_| Err(SinkError::Batch("dropped before it was sent".into())))
            });
            Ok(pending)
        })
    }

    fn flush(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(self.flush_batch())
    }
}

/// Prints what would be sent, one line per item, in the monitor's human format,
/// prefixed with the planned offset from the start of the replay and the
/// topic, QoS and retain flag. Sends nothing.
///
/// ```
/// use std::sync::Arc;
/// use nemo_monitor::{FormatOptions, Formatter};
/// use nemo_replay::{DryRunSink, FakeClock, ReplayItem, ReplaySink};
/// let clock = Arc::new(FakeClock::default());
/// let formatter = Formatter::with_offset(FormatOptions::default(), time::UtcOffset::UTC);
/// let mut sink = DryRunSink::new(Vec::new(), formatter, clock);
/// let mut item = ReplayItem::new("nemo/tools/1/enabled", r#"{"event": "tool_enabled", "tool_id": 1, "tool_name": "SEM", "user_name": "Jane"}"#);
/// item.at = Some(time::macros::datetime!(2025-10-16 14:02:33 UTC));
/// # futures::executor::block_on(async {
/// sink.send(&item).await.unwrap().await.unwrap();
/// # });
/// let out = String::from_utf8(sink.into_inner()).unwrap();
/// assert!(out.starts_with("+0.000s  nemo/tools/1/enabled qos 1  14:02:33"), "{out}");
/// ```
pub struct DryRunSink<W> {
    out: W,
    formatter: Formatter,
    clock: Arc<dyn Clock>,
}

impl<W> std::fmt::Debug for DryRunSink<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DryRunSink").finish_non_exhaustive()
    }
}

impl<W: Write + Send> DryRunSink<W> {
    /// Print to `out` with `formatter`; offsets are read from `clock` (the
    /// replayer's clock, normally a [`crate::FakeClock`] so a dry run does not wait).
    pub fn new(out: W, formatter: Formatter, clock: Arc<dyn Clock>) -> Self {
        DryRunSink {
            out,
            formatter,
            clock,
        }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write + Send> ReplaySink for DryRunSink<W> {
    fn send<'a>(&'a mut self, item: &'a ReplayItem) -> BoxFuture<'a, Result<Pending, SinkError>> {
        let at = item.at.unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let human = self
            .formatter
            .line(&item.topic, &item.payload, item.retain, at);
        let retain = if item.retain { " retain" } else { "" };
        let offset = self.clock.elapsed().as_secs_f64();
        let result = writeln!(
            self.out,
            "+{offset:.3}s  {} qos {}{retain}  {human}",
            item.topic,
            item.qos.as_u8()
        )
        .map_err(SinkError::from);
        let pending: Pending = futures::future::ready(result).boxed();
        futures::future::ready(Ok(pending)).boxed()
    }
}
