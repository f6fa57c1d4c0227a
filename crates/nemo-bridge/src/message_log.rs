//! The page's recent-message log, written off the delivery path.
//!
//! With `nemo.message_log` on (the page's "log messages" switch), every confirmed publication
//! and every failed one (with its error) becomes a row of `nemo_mqtt_mqttmessagelog`, which
//! NEMO's MQTT page lists. Delivery never waits for it:
//!
//! ```text
//!  pipeline ─publish─► LoggedSink ─► broker
//!                          │ on confirm / failure: try_send (never waits)
//!                          ▼
//!              bounded queue (10,000) ──► writer task ──► INSERT (a batch per statement)
//!               full: dropped, counted                    then DELETE beyond message_log_keep
//! ```
//!
//! A slow or absent database fills the queue and the overflow is dropped and counted
//! (`nemo_bridge_message_log_dropped_total`); a batch that cannot be written is dropped and
//! counted too. Without INSERT or DELETE permission (or with the table missing) the writer says
//! so once and writes nothing more until the next reload, which starts a new writer.

use std::sync::Arc;
use std::time::Duration;

use nemo_db::{DbError, LogEntry, NemoStore};
use nemo_mqtt::{Confirm, ConnState, EventSink, OutMessage};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

/// Entries waiting for the writer, at most.
pub const QUEUE_CAPACITY: usize = 10_000;

/// Entries per write, at most.
const BATCH: usize = 256;

/// The writer of the message log; dropping it (or [`close`](Self::close)) ends the writer
/// after it wrote what it holds.
#[derive(Debug)]
pub struct MessageLog {
    tx: mpsc::Sender<LogEntry>,
    task: tokio::task::JoinHandle<()>,
}

/// Where [`LoggedSink`] sends entries: a writer's queue, or nowhere.
#[derive(Debug, Clone, Default)]
pub struct LogTap(Option<mpsc::Sender<LogEntry>>);

impl LogTap {
    /// A tap that logs nothing.
    pub fn off() -> LogTap {
        LogTap(None)
    }

    fn send(&self, entry: LogEntry) {
        if let Some(tx) = &self.0
            && tx.try_send(entry).is_err()
        {
            metrics::counter!("nemo_bridge_message_log_dropped_total").increment(1);
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

async fn write_loop(store: Arc<dyn NemoStore>, keep: u64, mut rx: mpsc::Receiver<LogEntry>) {
    let dropped = |n: usize| {
        metrics::counter!("nemo_bridge_message_log_dropped_total").increment(n as u64);
    };
    let mut failing: Option<String> = None;
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let n = batch.len();
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
                while let Some(_entry) = rx.recv().await {
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

/// A sink that reports every confirmation and failure of `inner` to a [`LogTap`], without
/// ever waiting for it.
#[derive(Debug, Clone)]
pub struct LoggedSink<K> {
    inner: K,
    tap: LogTap,
}

impl<K> LoggedSink<K> {
    /// `inner`, logged to `tap` ([`LogTap::off`] = pass through).
    pub fn new(inner: K, tap: LogTap) -> Self {
        LoggedSink { inner, tap }
    }
}

impl<K: EventSink> EventSink for LoggedSink<K> {
    fn publish(&self, msg: OutMessage) -> Confirm {
        if self.tap.0.is_none() {
            return self.inner.publish(msg);
        }
        let tap = self.tap.clone();
        let (topic, payload, qos, retain) =
            (msg.topic.clone(), msg.payload.clone(), msg.qos, msg.retain);
        let confirm = self.inner.publish(msg);
        Box::pin(async move {
            let result = confirm.await;
            let text = String::from_utf8_lossy(&payload).into_owned();
            let qos = qos as u8;
            tap.send(match &result {
                Ok(()) => LogEntry::confirmed(topic, text, qos, retain),
                Err(e) => LogEntry::failed(topic, text, qos, retain, e.to_string()),
            });
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

    fn msg(i: usize) -> OutMessage {
        OutMessage {
            topic: format!("nemo/tools/{i}/enabled"),
            payload: bytes::Bytes::from(format!("{{\"seq\": {i}}}")),
            qos: Qos::AtLeastOnce,
            retain: false,
        }
    }

    #[tokio::test]
    async fn confirmed_and_failed_publications_are_written_in_order_and_trimmed() {
        let written = Arc::new(Mutex::new(Vec::<LogEntry>::new()));
        let mut store = MockNemoStore::new();
        let w = written.clone();
        store.expect_append_message_log().returning(move |e| {
            w.lock().unwrap().extend_from_slice(e);
            Ok(())
        });
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
        tap.send(LogEntry::confirmed("a", "b", 1, false));
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..10 {
            tap.send(LogEntry::confirmed("a", "b", 1, false));
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
