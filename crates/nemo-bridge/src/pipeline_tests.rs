//! Unit tests of the pipeline with hand-written fakes (ordering is easiest to express with
//! them) and one with the mockall mocks of the seams.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use bytes::Bytes;
use futures::channel::oneshot;
use nemo_events::Qos;
use nemo_redis::{DeliveryId, RedisError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the fake source saw.
#[derive(Default)]
struct SourceLog {
    queue: VecDeque<Bytes>,
    taken: Vec<Bytes>,
    max_requested: Vec<usize>,
    acks: Vec<Vec<Bytes>>,
    nacks: Vec<Vec<Bytes>>,
    dead: Vec<(Bytes, String)>,
}

#[derive(Clone, Default)]
struct FakeSource(Arc<Mutex<SourceLog>>);

impl FakeSource {
    fn with(items: &[&str]) -> Self {
        let s = FakeSource::default();
        s.push(items);
        s
    }
    fn push(&self, items: &[&str]) {
        let mut log = self.0.lock().unwrap();
        for i in items {
            log.queue.push_back(Bytes::from(i.to_string()));
        }
    }
    fn acked(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .acks
            .iter()
            .flatten()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }
}

#[async_trait::async_trait]
impl EventSource for FakeSource {
    type Error = RedisError;
    async fn take(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, RedisError> {
        let out: Vec<Delivery> = {
            let mut log = self.0.lock().unwrap();
            log.max_requested.push(max);
            let n = max.min(log.queue.len());
            let raws: Vec<Bytes> = log.queue.drain(..n).collect();
            log.taken.extend(raws.iter().cloned());
            raws.into_iter()
                .map(|raw| Delivery {
                    id: DeliveryId::List,
                    raw,
                    redelivered: false,
                })
                .collect()
        };
        if out.is_empty() {
            tokio::time::sleep(wait.min(Duration::from_millis(5))).await;
        }
        Ok(out)
    }
    async fn ack(&mut self, deliveries: &[Delivery]) -> Result<(), RedisError> {
        let mut log = self.0.lock().unwrap();
        log.acks
            .push(deliveries.iter().map(|d| d.raw.clone()).collect());
        Ok(())
    }
    async fn nack(&mut self, deliveries: &[Delivery]) -> Result<(), RedisError> {
        let mut log = self.0.lock().unwrap();
        log.nacks
            .push(deliveries.iter().map(|d| d.raw.clone()).collect());
        Ok(())
    }
    async fn dead_letter(&mut self, delivery: &Delivery, error: &str) -> Result<(), RedisError> {
        let mut log = self.0.lock().unwrap();
        log.dead.push((delivery.raw.clone(), error.to_string()));
        Ok(())
    }
}

/// A sink whose confirmations the test resolves by hand (or automatically).
#[derive(Default)]
struct SinkState {
    published: Vec<String>,
    waiting: Vec<(String, oneshot::Sender<Result<(), MqttError>>)>,
}

#[derive(Clone)]
struct FakeSink {
    state: Arc<Mutex<SinkState>>,
    connected: Arc<AtomicBool>,
    auto: bool,
}

impl FakeSink {
    fn manual() -> Self {
        FakeSink {
            state: Arc::default(),
            connected: Arc::new(AtomicBool::new(true)),
            auto: false,
        }
    }
    fn auto() -> Self {
        FakeSink {
            auto: true,
            ..FakeSink::manual()
        }
    }
    fn published(&self) -> Vec<String> {
        self.state.lock().unwrap().published.clone()
    }
    fn waiting(&self) -> usize {
        self.state.lock().unwrap().waiting.len()
    }
    /// Resolve the waiting confirmation of `payload`.
    fn resolve(&self, payload: &str, res: Result<(), MqttError>) {
        let mut st = self.state.lock().unwrap();
        let idx = st
            .waiting
            .iter()
            .position(|(p, _)| p == payload)
            .unwrap_or_else(|| panic!("{payload} not waiting"));
        let (_, tx) = st.waiting.remove(idx);
        let _ = tx.send(res);
    }
}

impl EventSink for FakeSink {
    fn publish(&self, msg: OutMessage) -> nemo_mqtt::Confirm {
        let payload = String::from_utf8_lossy(&msg.payload).into_owned();
        let mut st = self.state.lock().unwrap();
        st.published.push(payload.clone());
        if self.auto {
            return async { Ok(()) }.boxed();
        }
        let (tx, rx) = oneshot::channel();
        st.waiting.push((payload, tx));
        async move { rx.await.unwrap_or(Err(MqttError::Closed)) }.boxed()
    }
    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }
}

fn passthrough(raw: &[u8]) -> Result<Vec<OutMessage>, String> {
    let s = std::str::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}"))?;
    if s.starts_with("bad") {
        return Err("bad item".into());
    }
    Ok(vec![OutMessage {
        topic: "t".into(),
        payload: Bytes::from(s.to_string()),
        qos: Qos::AtLeastOnce,
        retain: false,
    }])
}

fn opts(window: usize) -> PipelineOptions {
    PipelineOptions {
        window,
        take_wait: Duration::from_millis(5),
        busy_wait: Duration::from_millis(1),
        reconnect_poll: Duration::from_millis(2),
        drain_timeout: Duration::from_millis(200),
        ..PipelineOptions::default()
    }
}

/// Wait (bounded) until `cond` holds; fail the test otherwise.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn items(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:03}")).collect()
}

type Stop = oneshot::Sender<StopMode>;

fn spawn<P: Prepare + 'static>(
    source: FakeSource,
    sink: FakeSink,
    prepare: P,
    opts: PipelineOptions,
) -> (Stop, tokio::task::JoinHandle<RunReport>) {
    let (tx, rx) = oneshot::channel::<StopMode>();
    let handle = tokio::spawn(async move {
        let mut p = Pipeline::new(source, sink, prepare, opts);
        p.run(async move { rx.await.unwrap_or(StopMode::Drain) })
            .await
    });
    (tx, handle)
}

#[tokio::test]
async fn everything_flows_in_order_and_is_acked() {
    let want = items("e", 100);
    let refs: Vec<&str> = want.iter().map(String::as_str).collect();
    let source = FakeSource::with(&refs);
    let sink = FakeSink::auto();
    let (stop, task) = spawn(source.clone(), sink.clone(), passthrough, opts(16));
    until("all acked", || source.acked().len() == 100).await;
    stop.send(StopMode::Drain).unwrap();
    let report = task.await.unwrap();
    assert_eq!(sink.published(), want);
    assert_eq!(source.acked(), want);
    assert_eq!(report.acked, 100);
    assert_eq!(report.nacked, 0);
}

#[tokio::test]
async fn acks_follow_source_order_when_confirms_come_out_of_order() {
    let source = FakeSource::with(&["a", "b", "c", "d"]);
    let sink = FakeSink::manual();
    let (stop, task) = spawn(source.clone(), sink.clone(), passthrough, opts(8));
    until("4 published", || sink.waiting() == 4).await;
    sink.resolve("c", Ok(()));
    sink.resolve("b", Ok(()));
    sink.resolve("d", Ok(()));
    // Nothing may be acked while the head "a" is unconfirmed.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(source.acked().is_empty(), "acked before the head confirmed");
    sink.resolve("a", Ok(()));
    until("all acked", || source.acked().len() == 4).await;
    stop.send(StopMode::Drain).unwrap();
    task.await.unwrap();
    let acks = source.0.lock().unwrap().acks.clone();
    // The four consecutive confirmed heads went out in ONE ack call, in source order.
    assert_eq!(
        acks,
        vec![vec![
            Bytes::from("a"),
            Bytes::from("b"),
            Bytes::from("c"),
            Bytes::from("d")
        ]]
    );
}

#[tokio::test]
async fn window_bounds_what_is_taken_and_published() {
    let want = items("w", 10);
    let refs: Vec<&str> = want.iter().map(String::as_str).collect();
    let source = FakeSource::with(&refs);
    let sink = FakeSink::manual();
    let (stop, task) = spawn(source.clone(), sink.clone(), passthrough, opts(4));
    until("window full", || sink.waiting() == 4).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(sink.published().len(), 4, "published past the window");
    assert_eq!(
        source.0.lock().unwrap().taken.len(),
        4,
        "read ahead past the window"
    );
    sink.resolve("w000", Ok(()));
    until("fifth published", || sink.published().len() == 5).await;
    assert_eq!(source.0.lock().unwrap().taken.len(), 5);
    let max = *source.0.lock().unwrap().max_requested.iter().max().unwrap();
    assert!(max <= 4, "asked for {max} items with a window of 4");
    stop.send(StopMode::Immediate).unwrap();
    let report = task.await.unwrap();
    assert_eq!(report.acked, 1);
    assert_eq!(report.nacked, 4);
}

#[tokio::test]
async fn bad_items_are_dead_lettered_while_good_ones_flow() {
    let source = FakeSource::with(&["g1", "bad1", "g2", "bad2", "g3"]);
    source
        .0
        .lock()
        .unwrap()
        .queue
        .push_back(Bytes::from_static(b"\xff\xfe"));
    source.push(&["g4"]);
    let sink = FakeSink::auto();
    let (stop, task) = spawn(source.clone(), sink.clone(), passthrough, opts(2));
    until("good acked", || source.acked().len() == 4).await;
    stop.send(StopMode::Drain).unwrap();
    let report = task.await.unwrap();
    assert_eq!(source.acked(), ["g1", "g2", "g3", "g4"]);
    assert_eq!(sink.published(), ["g1", "g2", "g3", "g4"]);
    let dead = source.0.lock().unwrap().dead.clone();
    assert_eq!(dead.len(), 3);
    assert_eq!(dead[0], (Bytes::from("bad1"), "bad item".to_string()));
    assert!(dead[2].1.starts_with("not UTF-8"), "{}", dead[2].1);
    assert_eq!(report.dead, 3);
}

#[tokio::test]
async fn failure_republishes_from_first_unconfirmed_in_order() {
    let source = FakeSource::with(&["a", "b", "c", "d", "e"]);
    let sink = FakeSink::manual();
    let (stop, task) = spawn(source.clone(), sink.clone(), passthrough, opts(5));
    until("5 published", || sink.waiting() == 5).await;
    sink.connected.store(false, Ordering::SeqCst);
    sink.resolve("a", Ok(()));
    sink.resolve("b", Err(MqttError::ConnectionLost));
    sink.resolve("c", Ok(()));
    sink.resolve("d", Err(MqttError::ConnectionLost));
    sink.resolve("e", Err(MqttError::ConnectionLost));
    until("a acked", || source.acked() == ["a"]).await;
    // Still disconnected: nothing is republished and nothing more is taken.
    source.push(&["f"]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(sink.published(), ["a", "b", "c", "d", "e"]);
    assert_eq!(
        source.0.lock().unwrap().queue.len(),
        1,
        "took while failing"
    );
    sink.connected.store(true, Ordering::SeqCst);
    until("republished", || sink.published().len() >= 9).await;
    // From the first unconfirmed item ("b") onward, in order, also the confirmed "c"; only
    // then the new item "f".
    assert_eq!(sink.published()[5..9], ["b", "c", "d", "e"]);
    for p in ["b", "c", "d", "e"] {
        sink.resolve(p, Ok(()));
    }
    until("f published", || sink.waiting() == 1).await;
    sink.resolve("f", Ok(()));
    until("all acked", || source.acked().len() == 6).await;
    assert_eq!(source.acked(), ["a", "b", "c", "d", "e", "f"]);
    stop.send(StopMode::Drain).unwrap();
    let report = task.await.unwrap();
    assert_eq!(report.republished, 4);
}

#[tokio::test]
async fn graceful_stop_drains_then_nacks_the_rest_in_order() {
    let source = FakeSource::with(&["a", "b", "c", "d"]);
    let sink = FakeSink::manual();
    let (stop, task) = spawn(source.clone(), sink.clone(), passthrough, opts(4));
    until("4 published", || sink.waiting() == 4).await;
    stop.send(StopMode::Drain).unwrap();
    sink.resolve("a", Ok(()));
    sink.resolve("c", Ok(()));
    // b and d never confirm: the drain timeout (200 ms) passes. Acks stay in source order:
    // only the confirmed head "a" is acked; "c", confirmed behind the unconfirmed "b", goes
    // back with it, so that at the next start "b" is not published after the newer "c".
    let report = task.await.unwrap();
    assert_eq!(source.acked(), ["a"]);
    let nacks = source.0.lock().unwrap().nacks.clone();
    assert_eq!(
        nacks,
        vec![vec![Bytes::from("b"), Bytes::from("c"), Bytes::from("d")]]
    );
    assert_eq!((report.acked, report.nacked), (1, 3));
}

#[tokio::test]
async fn immediate_stop_does_not_wait_for_confirms() {
    let source = FakeSource::with(&["a", "b"]);
    let sink = FakeSink::manual();
    let mut o = opts(4);
    o.drain_timeout = Duration::from_secs(3600);
    let (stop, task) = spawn(source.clone(), sink.clone(), passthrough, o);
    until("2 published", || sink.waiting() == 2).await;
    stop.send(StopMode::Immediate).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("immediate stop waited")
        .unwrap();
    assert_eq!(report.nacked, 2);
    assert_eq!(
        source.0.lock().unwrap().nacks,
        vec![vec![Bytes::from("a"), Bytes::from("b")]]
    );
}

#[tokio::test]
async fn items_mapping_to_several_messages_ack_after_all_confirm() {
    let source = FakeSource::with(&["x"]);
    let sink = FakeSink::manual();
    let two = |raw: &[u8]| -> Result<Vec<OutMessage>, String> {
        let s = String::from_utf8_lossy(raw).into_owned();
        Ok(vec![
            OutMessage {
                topic: "main".into(),
                payload: Bytes::from(s.clone()),
                qos: Qos::AtLeastOnce,
                retain: false,
            },
            OutMessage {
                topic: "state".into(),
                payload: Bytes::from(format!("{s}-state")),
                qos: Qos::AtLeastOnce,
                retain: true,
            },
        ])
    };
    let (stop, task) = spawn(source.clone(), sink.clone(), two, opts(4));
    until("2 published", || sink.waiting() == 2).await;
    assert_eq!(sink.published(), ["x", "x-state"]);
    sink.resolve("x", Ok(()));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        source.acked().is_empty(),
        "acked before all messages confirmed"
    );
    sink.resolve("x-state", Ok(()));
    until("acked", || source.acked() == ["x"]).await;
    stop.send(StopMode::Drain).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn works_with_the_mockall_mocks_of_the_seams() {
    use nemo_mqtt::MockEventSink;
    use nemo_source::MockEventSource;

    let mut source = MockEventSource::new();
    let mut first = true;
    source.expect_take().returning(move |max, _| {
        assert!(max <= 2);
        if std::mem::take(&mut first) {
            Ok(vec![Delivery {
                id: DeliveryId::List,
                raw: Bytes::from_static(b"one"),
                redelivered: false,
            }])
        } else {
            Ok(vec![])
        }
    });
    source
        .expect_ack()
        .withf(|d| d.len() == 1 && d[0].raw == "one")
        .times(1)
        .returning(|_| Ok(()));
    source.expect_nack().times(0);
    source.expect_dead_letter().times(0);
    source.expect_interrupter().times(1).returning(|| None);
    source.expect_longest_take().returning(|| None);

    let mut sink = MockEventSink::new();
    sink.expect_publish()
        .withf(|m| m.topic == "t" && m.payload == "one")
        .times(1)
        .returning(|_| async { Ok(()) }.boxed());
    sink.expect_is_connected().return_const(true);

    let mut p = Pipeline::new(source, sink, passthrough, opts(2));
    let report = p
        .run(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            StopMode::Drain
        })
        .await;
    assert_eq!(report.acked, 1);
}

#[tokio::test]
async fn a_full_window_is_acked_and_refilled_in_batches() {
    let want = items("b", 20);
    let refs: Vec<&str> = want.iter().map(String::as_str).collect();
    let source = FakeSource::with(&refs);
    let sink = FakeSink::manual();
    let mut o = opts(8);
    o.batch = 4;
    let (stop, task) = spawn(source.clone(), sink.clone(), passthrough, o);
    until("window full", || sink.waiting() == 8).await;
    for p in &want[..3] {
        sink.resolve(p, Ok(()));
    }
    // Three confirmed heads, five still in flight: below the batch, no ack and no refill yet.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(source.acked().is_empty(), "acked below the batch size");
    assert_eq!(source.0.lock().unwrap().taken.len(), 8, "refilled early");
    sink.resolve(&want[3], Ok(()));
    until("first batch acked", || source.acked().len() == 4).await;
    until("refilled", || sink.published().len() == 12).await;
    {
        let log = source.0.lock().unwrap();
        assert_eq!(log.acks.len(), 1, "one ack call for the batch");
        assert_eq!(log.acks[0].len(), 4);
        assert_eq!(
            log.max_requested.last(),
            Some(&4),
            "refill asked for the freed room"
        );
    }
    assert_eq!(sink.published(), want[..12]);
    stop.send(StopMode::Immediate).unwrap();
    let report = task.await.unwrap();
    assert_eq!((report.acked, report.nacked), (4, 8));
}

#[tokio::test]
async fn an_idle_pipeline_acks_at_once_below_the_batch_size() {
    let source = FakeSource::with(&["only"]);
    let sink = FakeSink::manual();
    let mut o = opts(64);
    o.batch = 16;
    let (stop, task) = spawn(source.clone(), sink.clone(), passthrough, o);
    until("published", || sink.waiting() == 1).await;
    sink.resolve("only", Ok(()));
    // Nothing else in flight: the single confirmed item is acked without waiting for a batch.
    until("acked", || source.acked() == ["only"]).await;
    stop.send(StopMode::Drain).unwrap();
    assert_eq!(task.await.unwrap().acked, 1);
}

/// A sink whose publish blocks its thread (as a wedged C library would) the first time.
struct WedgedSink(AtomicBool);

impl EventSink for WedgedSink {
    fn publish(&self, _msg: OutMessage) -> nemo_mqtt::Confirm {
        if !self.0.swap(true, Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(800));
        }
        Box::pin(futures::future::ready(Ok(())))
    }
    fn is_connected(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn the_watchdog_sees_a_pipeline_wedged_inside_the_sink() {
    use crate::watchdog::{Heartbeat, Watchdog};
    let hb = Heartbeat::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let _dog = Watchdog::spawn(hb.clone(), Duration::from_millis(200), move |s| {
        let _ = tx.send(s);
    })
    .unwrap();
    let source = FakeSource::with(&["a", "b"]);
    let mut p = Pipeline::new(
        source.clone(),
        WedgedSink(AtomicBool::new(false)),
        passthrough,
        opts(4),
    )
    .with_heartbeat(hb.clone());
    // The whole runtime thread is blocked in the first publish; the watchdog runs on its own.
    let report = p
        .run(async {
            while source.acked().len() < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            StopMode::Drain
        })
        .await;
    let silent = rx.try_recv().expect("the watchdog fired during the wedge");
    assert!(silent > Duration::from_millis(200), "{silent:?}");
    assert_eq!(report.acked, 2);
    assert_eq!(hb.silent_for(), None, "inactive after the run");
}

/// A source whose take waits for its whole `wait` unless interrupted, like a `BLMOVE`; the
/// first `deaf` interrupts are lost (they came before the take was blocked), and an
/// interrupted take returns `on_interrupt` (an item that arrived at that moment).
struct WaitingSource {
    woken: Arc<tokio::sync::Notify>,
    interrupts: Arc<std::sync::atomic::AtomicUsize>,
    deaf: usize,
    on_interrupt: Option<&'static str>,
    acked: Arc<Mutex<Vec<Bytes>>>,
}

#[async_trait::async_trait]
impl EventSource for WaitingSource {
    type Error = RedisError;
    async fn take(&mut self, _max: usize, wait: Duration) -> Result<Vec<Delivery>, RedisError> {
        if tokio::time::timeout(wait, self.woken.notified())
            .await
            .is_err()
        {
            return Ok(vec![]);
        }
        Ok(self
            .on_interrupt
            .take()
            .map(|raw| Delivery {
                id: DeliveryId::List,
                raw: Bytes::from_static(raw.as_bytes()),
                redelivered: false,
            })
            .into_iter()
            .collect())
    }
    async fn ack(&mut self, d: &[Delivery]) -> Result<(), RedisError> {
        self.acked
            .lock()
            .unwrap()
            .extend(d.iter().map(|d| d.raw.clone()));
        Ok(())
    }
    async fn nack(&mut self, _d: &[Delivery]) -> Result<(), RedisError> {
        Ok(())
    }
    async fn dead_letter(&mut self, _d: &Delivery, _e: &str) -> Result<(), RedisError> {
        Ok(())
    }
    fn interrupter(&self) -> Option<Interrupter> {
        let (woken, hits, deaf) = (self.woken.clone(), self.interrupts.clone(), self.deaf);
        Some(Interrupter::new(move || {
            if hits.fetch_add(1, Ordering::SeqCst) >= deaf {
                woken.notify_waiters();
            }
            async {}
        }))
    }
}

async fn stop_while_idle(
    deaf: usize,
    on_interrupt: Option<&'static str>,
) -> (Duration, usize, Vec<String>, Vec<Bytes>) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let source = WaitingSource {
        woken: Arc::default(),
        interrupts: Arc::default(),
        deaf,
        on_interrupt,
        acked: acked.clone(),
    };
    let interrupts = source.interrupts.clone();
    let sink = FakeSink::auto();
    let mut p = Pipeline::new(
        source,
        sink.clone(),
        passthrough,
        PipelineOptions {
            take_wait: Duration::from_secs(60),
            ..opts(4)
        },
    );
    let t = std::time::Instant::now();
    // The whole run is bounded: without the interrupt it would wait 60 s.
    let report = tokio::time::timeout(
        Duration::from_secs(20),
        p.run(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            StopMode::Drain
        }),
    )
    .await
    .expect("the stop interrupts the waiting take");
    assert_eq!(report.acked as usize, acked.lock().unwrap().len());
    let acked = acked.lock().unwrap().clone();
    (
        t.elapsed(),
        interrupts.load(Ordering::SeqCst),
        sink.published(),
        acked,
    )
}

#[tokio::test]
async fn a_stop_while_idle_interrupts_the_waiting_take() {
    let (took, interrupts, published, acked) = stop_while_idle(0, None).await;
    assert_eq!(interrupts, 1);
    assert!(published.is_empty() && acked.is_empty());
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn an_interrupt_that_came_too_early_is_repeated() {
    let (took, interrupts, _, _) = stop_while_idle(2, None).await;
    assert_eq!(interrupts, 3, "two lost, the third ends the take");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn an_item_taken_as_the_stop_came_is_published_and_acked() {
    let (_, _, published, acked) = stop_while_idle(0, Some("last")).await;
    assert_eq!(published, vec!["last".to_string()]);
    assert_eq!(acked, vec![Bytes::from_static(b"last")]);
}

/// A source whose first take is one long query (like the table queue's first look at a
/// large table): it blocks `first_for`, then hands out one item; it says so beforehand
/// through `longest_take` when `says` is set.
struct SlowFirstSource {
    first_for: Duration,
    says: bool,
    started: bool,
    acked: Arc<Mutex<Vec<Bytes>>>,
}

#[async_trait::async_trait]
impl EventSource for SlowFirstSource {
    type Error = RedisError;
    async fn take(&mut self, _max: usize, _wait: Duration) -> Result<Vec<Delivery>, RedisError> {
        if self.started {
            tokio::time::sleep(Duration::from_millis(2)).await;
            return Ok(vec![]);
        }
        self.started = true;
        tokio::time::sleep(self.first_for).await;
        Ok(vec![Delivery {
            id: DeliveryId::List,
            raw: Bytes::from_static(b"first"),
            redelivered: false,
        }])
    }
    async fn ack(&mut self, d: &[Delivery]) -> Result<(), RedisError> {
        self.acked
            .lock()
            .unwrap()
            .extend(d.iter().map(|d| d.raw.clone()));
        Ok(())
    }
    async fn nack(&mut self, _d: &[Delivery]) -> Result<(), RedisError> {
        Ok(())
    }
    async fn dead_letter(&mut self, _d: &Delivery, _e: &str) -> Result<(), RedisError> {
        Ok(())
    }
    fn longest_take(&self) -> Option<Duration> {
        (self.says && !self.started).then_some(self.first_for * 2)
    }
}

/// Run a pipeline over a [`SlowFirstSource`] whose first take blocks 600 ms under a watchdog
/// of 150 ms, until the item is acked (and then a while, idle); what the watchdog saw, and the
/// limit after the run.
async fn slow_first_take(says: bool) -> (Option<Duration>, Duration, Vec<Bytes>) {
    use crate::watchdog::{Heartbeat, Watchdog};
    let limit = Duration::from_millis(150);
    let hb = Heartbeat::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let _dog = Watchdog::spawn(hb.clone(), limit, move |s| {
        let _ = tx.send(s);
    })
    .unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let source = SlowFirstSource {
        first_for: Duration::from_millis(600),
        says,
        started: false,
        acked: acked.clone(),
    };
    let mut p =
        Pipeline::new(source, FakeSink::auto(), passthrough, opts(4)).with_heartbeat(hb.clone());
    let seen = acked.clone();
    let during = hb.clone();
    let report = p
        .run(async move {
            while seen.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Idle afterwards for several limits: the allowance must be gone by now.
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(
                during.limit(),
                Duration::from_millis(150),
                "back after the take"
            );
            StopMode::Drain
        })
        .await;
    assert_eq!(report.acked, 1);
    let acked = acked.lock().unwrap().clone();
    (rx.try_recv().ok(), hb.limit(), acked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_first_take_the_source_announced_is_not_a_stall() {
    let (fired, limit, acked) = slow_first_take(true).await;
    assert_eq!(fired, None, "the watchdog allowed for the announced take");
    assert_eq!(limit, Duration::from_millis(150), "the limit is restored");
    assert_eq!(acked, vec![Bytes::from_static(b"first")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_take_the_source_did_not_announce_is_a_stall() {
    let (fired, _, _) = slow_first_take(false).await;
    let silent = fired.expect("the watchdog fired during the unannounced take");
    assert!(silent > Duration::from_millis(150), "{silent:?}");
}

/// The allowance is for one take: dropped, the limit is what it was, so that a later take that
/// blocks without being announced is still caught (the watchdog stays effective).
#[test]
fn the_allowance_is_undone_when_dropped() {
    use crate::watchdog::Heartbeat;
    let hb = Heartbeat::new();
    hb.set_limit(Duration::from_secs(90));
    let a = Allowance::raise(&hb, Duration::from_secs(306));
    assert_eq!(hb.limit(), Duration::from_secs(396));
    drop(a);
    assert_eq!(hb.limit(), Duration::from_secs(90));
}
