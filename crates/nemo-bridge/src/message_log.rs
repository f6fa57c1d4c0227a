//! The page's recent-message log, written off the delivery path, in publication order.
//!
//! With `nemo.message_log` on (the page's "log messages" switch), every confirmed publication
//! and every failed one (with its error) becomes a row of `nemo_mqtt_mqttmessagelog`, which
//! NEMO's MQTT page lists. Delivery never waits for it:
//!
//! ```text
//!  pipeline ─publish─► LoggedSink ─► broker
//!                          │ at publish: reserve a place (try_send, never waits)
//!                          ▼
//!              bounded queue (10,000) ──► writer task ──► INSERT (a batch per statement)
//!               full: dropped, counted     │ awaits each outcome     then DELETE beyond
//!                          ▲               │ in queue order           message_log_keep
//!                          └─ on confirm / failure: the entry, through the place's oneshot
//! ```
//!
//! # Why a place is reserved at publish time
//!
//! The pipeline keeps its confirmations in a `FuturesUnordered`, which polls them in whatever
//! order they are woken. An entry sent from inside the confirmation would reach the log in
//! that order (a CI run saw rows 74…119 followed by 5, 6, 7, 8). So `publish` puts a place
//! for the entry into the writer's queue at once, in publication order, and the confirmation
//! only fills it in (a `oneshot`); the writer takes the places in order and waits for each. A
//! confirmation that is dropped unfinished (the pipeline stopped) closes its place, which the
//! writer skips.
//!
//! NEMO's MQTT page lists the newest rows by `sent_at`, not by id. So `sent_at` is the time of
//! the publication (taken at publish, as the plugin's bridge logs right after its publish),
//! and the writer keeps it strictly increasing in publication order (a publication in the
//! same microsecond as the one before is written 1 µs after it): the page shows the
//! publication order too.
//!
//! A slow or absent database fills the queue and the overflow is dropped and counted
//! (`nemo_bridge_message_log_dropped_total`); a batch that cannot be written is dropped and
//! counted too. Without INSERT or DELETE permission (or with the table missing) the writer says
//! so once and writes nothing more until the next reload, which starts a new writer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nemo_db::{DbError, LogEntry, NemoStore};
use nemo_mqtt::{Confirm, ConnState, EventSink, OutMessage};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

/// Entries waiting for the writer, at most.
pub const QUEUE_CAPACITY: usize = 10_000;

/// Entries per write, at most.
const BATCH: usize = 256;

/// The writer of the message log; dropping it (or [`close`](Self::close)) ends the writer
/// after it wrote what it holds.
#[derive(Debug)]
pub struct MessageLog {
    tx: mpsc::Sender<Place>,
    task: tokio::task::JoinHandle<()>,
}

/// A place in the writer's queue, reserved at publish time; its entry comes when the
/// publication is confirmed or failed. Closed unfilled: skipped.
type Place = oneshot::Receiver<LogEntry>;

/// Where [`LoggedSink`] sends entries: a writer's queue, or nowhere.
#[derive(Debug, Clone, Default)]
pub struct LogTap(Option<mpsc::Sender<Place>>);

impl LogTap {
    /// A tap that logs nothing.
    pub fn off() -> LogTap {
        LogTap(None)
    }

    /// Reserve the next place in the writer's queue (never waits): `None` when the tap is off
    /// or the queue is full (the entry is then dropped and counted).
    fn reserve(&self) -> Option<oneshot::Sender<LogEntry>> {
        let tx = self.0.as_ref()?;
        let (fill, place) = oneshot::channel();
        match tx.try_send(place) {
            Ok(()) => Some(fill),
            Err(_) => {
                metrics::counter!("nemo_bridge_message_log_dropped_total").increment(1);
                None
            }
        }
    }
}

impl MessageLog {
    /// Start a writer into `store`, keeping at most `keep` rows (0 = never delete).
    pub fn spawn(store: Arc<dyn NemoStore>, keep: u64) -> MessageLog {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let task = tokio::spawn(write_loop(store, keep, rx));
        MessageLog { tx, task }
    }

    /// The tap for [`LoggedSink`].
    pub fn tap(&self) -> LogTap {
        LogTap(Some(self.tx.clone()))
    }

    /// Stop taking entries, and wait (at most `limit`) for the writer to write what it holds.
    pub async fn close(self, limit: Duration) {
        let queued = self.tx.max_capacity() - self.tx.capacity();
        drop(self.tx);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(limit, self.task).await.is_err() {
            abort.abort();
            // What was still queued is gone with the writer: count it (at most the batch in
            // the writer's hands is counted twice).
            metrics::counter!("nemo_bridge_message_log_dropped_total").increment(queued as u64);
        }
    }
}

async fn write_loop(store: Arc<dyn NemoStore>, keep: u64, mut rx: mpsc::Receiver<Place>) {
    let dropped = |n: usize| {
        metrics::counter!("nemo_bridge_message_log_dropped_total").increment(n as u64);
    };
    let mut failing: Option<String> = None;
    let mut places = Vec::with_capacity(BATCH);
    let mut batch = Vec::with_capacity(BATCH);
    let mut last_sent: Option<SystemTime> = None;
    while rx.recv_many(&mut places, BATCH).await > 0 {
        // In queue order = publication order; a place whose confirmation was dropped is
        // closed (`Err`) and skipped.
        for place in places.drain(..) {
            if let Ok(mut entry) = place.await {
                entry.sent_at = after(last_sent, entry.sent_at);
                last_sent = Some(entry.sent_at);
                batch.push(entry);
            }
        }
        let n = batch.len();
        if n == 0 {
            continue;
        }
        let result = match store.append_message_log(&batch).await {
            Ok(()) if keep > 0 => store.trim_message_log(keep).await.map(drop),
            other => other,
        };
        batch.clear();
        match result {
            Ok(()) => {
                metrics::counter!("nemo_bridge_message_log_written_total").increment(n as u64);
                if failing.take().is_some() {
                    info!("message log: writing again");
                }
            }
            Err(e @ (DbError::Denied { .. } | DbError::MissingTable { .. })) => {
                dropped(n);
                error!(error = %e, "message log: cannot write NEMO's message log; not trying again until a reload (delivery is not affected)");
                // Drain and count until the reload replaces this writer.
                while let Some(_place) = rx.recv().await {
                    dropped(1);
                }
                return;
            }
            Err(e) => {
                // The insert may have gone through before a trim failed; the entries are
                // counted as dropped either way (the log is best effort by design).
                dropped(n);
                let why = e.to_string();
                if failing.as_deref() != Some(why.as_str()) {
                    warn!(error = %why, "message log: write failed; entries dropped meanwhile (delivery is not affected)");
                    failing = Some(why);
                }
                // An absent database answers slowly (timeout); do not let the queue behind it
                // spin on errors.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// `sent`, or 1 µs after `last` when it is not later (the log's times strictly increase in
/// publication order: NEMO's page sorts by them).
fn after(last: Option<SystemTime>, sent: SystemTime) -> SystemTime {
    match last {
        Some(last) if sent <= last => last + Duration::from_micros(1),
        _ => sent,
    }
}

/// A sink that reports every confirmation and failure of `inner` to a [`LogTap`], without
/// ever waiting for it.
#[derive(Debug, Clone)]
pub struct LoggedSink<K> {
    inner: K,
    tap: LogTap,
    /// The bridge's own documents (tool-state topics), which stay out of the log.
    own: Option<std::sync::Arc<nemo_topics::TopicMapper>>,
}

impl<K> LoggedSink<K> {
    /// `inner`, logged to `tap` ([`LogTap::off`] = pass through).
    pub fn new(inner: K, tap: LogTap) -> Self {
        LoggedSink {
            inner,
            tap,
            own: None,
        }
    }

    /// Leave the tool-state documents of `mapper` out of the log: NEMO's message log holds
    /// the events the plugin queued, as the plugin's own bridge writes it, not the documents
    /// the bridge adds of its own.
    pub fn without_state_documents(
        mut self,
        mapper: std::sync::Arc<nemo_topics::TopicMapper>,
    ) -> Self {
        self.own = Some(mapper);
        self
    }
}

impl<K: EventSink> EventSink for LoggedSink<K> {
    fn publish(&self, msg: OutMessage) -> Confirm {
        if self.tap.0.is_none()
            || self
                .own
                .as_ref()
                .is_some_and(|m| m.is_state_topic(&msg.topic))
        {
            return self.inner.publish(msg);
        }
        // The place is taken now, in publication order; the entry fills it when the broker
        // answered, whenever the pipeline polls this confirmation.
        let place = self.tap.reserve();
        let sent_at = SystemTime::now();
        let (topic, payload, qos, retain) =
            (msg.topic.clone(), msg.payload.clone(), msg.qos, msg.retain);
        let confirm = self.inner.publish(msg);
        Box::pin(async move {
            let result = confirm.await;
            if let Some(place) = place {
                let text = String::from_utf8_lossy(&payload).into_owned();
                let qos = qos as u8;
                // The writer is gone (closed): nothing to fill.
                let mut entry = match &result {
                    Ok(()) => LogEntry::confirmed(topic, text, qos, retain),
                    Err(e) => LogEntry::failed(topic, text, qos, retain, e.to_string()),
                };
                entry.sent_at = sent_at;
                let _ = place.send(entry);
            }
            result
        })
    }

    fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    fn connection_state(&self) -> Option<watch::Receiver<ConnState>> {
        self.inner.connection_state()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Mutex;

    use super::*;
    use nemo_db::MockNemoStore;
    use nemo_events::Qos;
    use nemo_mqtt::{MockEventSink, MqttError};

    /// Send `entry` through `tap` as a confirmation would.
    fn fill(tap: &LogTap, entry: LogEntry) {
        if let Some(place) = tap.reserve() {
            let _ = place.send(entry);
        }
    }

    fn msg(i: usize) -> OutMessage {
        OutMessage {
            topic: format!("nemo/tools/{i}/enabled"),
            payload: bytes::Bytes::from(format!("{{\"seq\": {i}}}")),
            qos: Qos::AtLeastOnce,
            retain: false,
        }
    }

    /// A store that keeps every appended entry, and the entries.
    fn recording_store() -> (MockNemoStore, Arc<Mutex<Vec<LogEntry>>>) {
        let written = Arc::new(Mutex::new(Vec::<LogEntry>::new()));
        let mut store = MockNemoStore::new();
        let w = written.clone();
        store.expect_append_message_log().returning(move |e| {
            w.lock().unwrap().extend_from_slice(e);
            Ok(())
        });
        (store, written)
    }

    #[tokio::test]
    async fn confirmed_and_failed_publications_are_written_in_order_and_trimmed() {
        let (mut store, written) = recording_store();
        store
            .expect_trim_message_log()
            .withf(|keep| *keep == 3)
            .returning(|_| Ok(0));
        let log = MessageLog::spawn(Arc::new(store), 3);
        let mut sink = MockEventSink::new();
        let mut n = 0;
        sink.expect_publish().returning(move |_| {
            n += 1;
            if n == 2 {
                Box::pin(async { Err(MqttError::Closed) })
            } else {
                Box::pin(async { Ok(()) })
            }
        });
        let logged = LoggedSink::new(sink, log.tap());
        for i in 0..3 {
            let _ = logged.publish(msg(i)).await;
        }
        drop(logged);
        log.close(Duration::from_secs(5)).await;
        let w = written.lock().unwrap();
        let topics: Vec<&str> = w.iter().map(|e| e.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                "nemo/tools/0/enabled",
                "nemo/tools/1/enabled",
                "nemo/tools/2/enabled"
            ]
        );
        assert_eq!(
            w.iter().map(|e| e.success).collect::<Vec<_>>(),
            [true, false, true]
        );
        assert!(w[1].error_message.is_some());
        assert_eq!(w[0].payload, "{\"seq\": 0}");
        assert_eq!(w[0].qos, 1);
    }

    #[tokio::test]
    async fn the_bridges_own_state_documents_stay_out_of_the_log() {
        let (store, written) = recording_store();
        let log = MessageLog::spawn(Arc::new(store), 0);
        let mut sink = MockEventSink::new();
        sink.expect_publish()
            .times(2)
            .returning(|_| Box::pin(async { Ok(()) }));
        let mapper = Arc::new(nemo_topics::TopicMapper::default());
        let logged = LoggedSink::new(sink, log.tap()).without_state_documents(mapper);
        let event = msg(7);
        let state = OutMessage {
            topic: "nemo/tools/7/state".into(),
            retain: true,
            ..msg(7)
        };
        // Both are published; only the event the plugin queued is logged.
        logged.publish(event).await.unwrap();
        logged.publish(state).await.unwrap();
        drop(logged);
        log.close(Duration::from_secs(5)).await;
        let w = written.lock().unwrap();
        let topics: Vec<&str> = w.iter().map(|e| e.topic.as_str()).collect();
        assert_eq!(topics, ["nemo/tools/7/enabled"]);
    }

    #[tokio::test]
    async fn entries_keep_publication_order_whatever_order_confirmations_are_polled_in() {
        let (store, written) = recording_store();
        let log = MessageLog::spawn(Arc::new(store), 0);
        // Each publication is confirmed when its gate opens.
        let gates = Arc::new(Mutex::new(Vec::<oneshot::Sender<()>>::new()));
        let mut sink = MockEventSink::new();
        let g = gates.clone();
        sink.expect_publish().returning(move |_| {
            let (open, gate) = oneshot::channel::<()>();
            g.lock().unwrap().push(open);
            Box::pin(async move { gate.await.map_err(|_| MqttError::Closed) })
        });
        let logged = LoggedSink::new(sink, log.tap());
        let mut confirms: Vec<_> = (0..5).map(|i| Some(logged.publish(msg(i)))).collect();
        for open in std::mem::take(&mut *gates.lock().unwrap()) {
            open.send(()).unwrap();
        }
        // The pipeline polls the confirmations last first (as a FuturesUnordered may), and
        // drops number 1 unpolled (it stopped).
        drop(confirms[1].take());
        for i in [4, 3, 2, 0] {
            confirms[i].take().unwrap().await.unwrap();
        }
        drop(logged);
        log.close(Duration::from_secs(5)).await;
        let topics: Vec<String> = written
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.topic.clone())
            .collect();
        let expected: Vec<String> = [0, 2, 3, 4].iter().map(|i| msg(*i).topic).collect();
        assert_eq!(topics, expected);
        // NEMO's page sorts by sent_at: it increases in publication order too.
        let times: Vec<SystemTime> = written.lock().unwrap().iter().map(|e| e.sent_at).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    }

    #[tokio::test]
    async fn sent_at_strictly_increases_in_the_order_written() {
        let (store, written) = recording_store();
        let log = MessageLog::spawn(Arc::new(store), 0);
        let tap = log.tap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // Two in the same microsecond, then one with an earlier clock (a step back).
        for at in [
            t,
            t,
            t - Duration::from_millis(3),
            t + Duration::from_secs(1),
        ] {
            let mut e = LogEntry::confirmed("nemo/tools/1/enabled", "{}", 1, false);
            e.sent_at = at;
            fill(&tap, e);
        }
        drop(tap);
        log.close(Duration::from_secs(5)).await;
        let times: Vec<SystemTime> = written.lock().unwrap().iter().map(|e| e.sent_at).collect();
        let us = Duration::from_micros(1);
        assert_eq!(times, [t, t + us, t + us * 2, t + Duration::from_secs(1)]);
    }

    /// A store whose writes fail with "denied", or never finish, counting the calls.
    struct Fake {
        appends: std::sync::atomic::AtomicUsize,
        hang: bool,
    }

    #[async_trait::async_trait]
    impl NemoStore for Fake {
        async fn active_configuration(&self) -> Result<Option<nemo_db::ConfigurationRow>, DbError> {
            Ok(None)
        }
        async fn event_filters(&self) -> Result<Option<Vec<nemo_db::FilterRow>>, DbError> {
            Ok(None)
        }
        async fn append_message_log(&self, _: &[LogEntry]) -> Result<(), DbError> {
            self.appends
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.hang {
                std::future::pending::<()>().await;
            }
            Err(DbError::Denied {
                table: "nemo_mqtt_mqttmessagelog",
                url: "sqlite:///x".into(),
                reason: "attempt to write a readonly database".into(),
            })
        }
        async fn trim_message_log(&self, _: u64) -> Result<u64, DbError> {
            Ok(0)
        }
    }

    #[tokio::test]
    async fn without_permission_it_stops_writing_after_one_try() {
        let store = Arc::new(Fake {
            appends: 0.into(),
            hang: false,
        });
        let log = MessageLog::spawn(store.clone(), 0);
        let tap = log.tap();
        fill(&tap, LogEntry::confirmed("a", "b", 1, false));
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..10 {
            fill(&tap, LogEntry::confirmed("a", "b", 1, false));
            tokio::task::yield_now().await;
        }
        drop(tap);
        log.close(Duration::from_secs(5)).await;
        assert_eq!(store.appends.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_database_that_never_answers_never_holds_up_publishing() {
        let store = Arc::new(Fake {
            appends: 0.into(),
            hang: true,
        });
        let log = MessageLog::spawn(store.clone(), 10);
        let mut sink = MockEventSink::new();
        sink.expect_publish()
            .returning(|_| Box::pin(async { Ok(()) }));
        let logged = LoggedSink::new(sink, log.tap());
        // More confirmations than the queue holds, with the writer stuck in its first write:
        // if a confirmation ever waited for the log, this would never finish.
        let all = async {
            logged.publish(msg(0)).await.unwrap();
            // Let the writer take that one and hang in its write.
            tokio::time::sleep(Duration::from_millis(20)).await;
            for i in 1..(QUEUE_CAPACITY + 5_000) {
                logged.publish(msg(i)).await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("publishing waited for the message log");
        assert_eq!(store.appends.load(std::sync::atomic::Ordering::SeqCst), 1);
        log.close(Duration::from_millis(100)).await;
    }
}
