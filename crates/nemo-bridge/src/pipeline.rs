//! The at-least-once pipeline: source → prepare (validate, map, sign) → sink → ack.
//!
//! # How an item travels
//!
//! 1. [`EventSource::take`] hands out up to `window − in_flight` raw items, oldest first. The
//!    pipeline never asks for more, so a million-item backlog stays in the queue, not in memory.
//!    While items are in flight it asks only once at least a *batch* of room is free (see
//!    [`PipelineOptions::batch`]), so that a full window refills in a few queue calls instead of
//!    one call per confirmed item.
//! 2. [`Prepare::prepare`] turns the raw bytes into the MQTT messages to publish (usually one;
//!    more when the topic mapper adds retained state topics). An item it rejects goes to
//!    [`EventSource::dead_letter`] with the reason, is counted and logged once — it never blocks
//!    the items behind it.
//! 3. Every message goes to [`EventSink::publish`]; the returned future resolves when the broker
//!    confirmed it.
//! 4. The in-flight items sit in a queue **in source order**. When the item at the head has all
//!    its messages confirmed, it and every confirmed item directly behind it are acked in one
//!    [`EventSource::ack`] call — once a batch of them is confirmed, or when nothing else is in
//!    flight (so an idle bridge acks at once). An item therefore leaves the queue only after the
//!    broker has it, and acks never overtake each other, even when confirmations arrive out of
//!    order.
//!
//! # When the broker goes away
//!
//! A failed confirmation stops the intake. The pipeline lets the rest of the window resolve,
//! waits until the sink reports it is connected again, and then publishes again **from the first
//! unconfirmed item onward, in the original order** (also the confirmed items behind it, so that
//! the last message a display sees for a tool is still the newest one). Nothing is lost, at most
//! the window is duplicated, and the retry happens right after the reconnect, not after a
//! reclaim timeout.
//!
//! # Stopping
//!
//! [`Pipeline::run`] ends when its stop future resolves. With [`StopMode::Drain`] the pipeline
//! stops taking, waits up to the drain timeout for outstanding confirmations, acks the
//! confirmed items at the head (in source order, as always) and gives the rest back with
//! [`EventSource::nack`] (order kept). With [`StopMode::Immediate`] (the lock was lost: another
//! bridge may already be active) it skips the wait. A stop never waits for a server that does
//! not answer: a call in progress (take, ack) is abandoned, an idle take that its interrupt
//! cannot end returns after a short grace, and the final ack and nack together are bounded by
//! [`PipelineOptions::final_timeout`]; whatever was not acked stays in the queue and is
//! published first at the next start.
//!
//! ```
//! use nemo_bridge::pipeline::{Prepare, PipelineOptions};
//! use nemo_mqtt::OutMessage;
//! use nemo_events::Qos;
//!
//! // A preparer that publishes every raw item unchanged on one topic.
//! let prepare = |raw: &[u8]| -> Result<Vec<OutMessage>, String> {
//!     Ok(vec![OutMessage { topic: "t".into(), payload: raw.to_vec().into(), qos: Qos::AtLeastOnce, retain: false }])
//! };
//! assert_eq!(prepare.prepare(b"x").unwrap()[0].topic, "t");
//! assert_eq!(PipelineOptions::default().window, 256);
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use nemo_backoff::{Backoff, BackoffConfig};
use nemo_mqtt::{EventSink, MqttError, OutMessage};
use nemo_source::{Delivery, EventSource, Interrupter};
use tracing::{debug, error, info, warn};

use crate::watchdog::Heartbeat;

/// Turns one raw queue item into the messages to publish.
///
/// `Err(reason)` means the item is bad input: it is dead-lettered with `reason` (one line that
/// says what is wrong, without the payload). `Ok(vec![])` means "nothing to publish" (e.g. a
/// route filtered it); the item is acked in order.
///
/// Closures `Fn(&[u8]) -> Result<Vec<OutMessage>, String>` implement it.
pub trait Prepare: Send + Sync {
    /// Validate, map and sign one raw item.
    fn prepare(&self, raw: &[u8]) -> Result<Vec<OutMessage>, String>;
}

impl<F> Prepare for F
where
    F: Fn(&[u8]) -> Result<Vec<OutMessage>, String> + Send + Sync,
{
    fn prepare(&self, raw: &[u8]) -> Result<Vec<OutMessage>, String> {
        self(raw)
    }
}

/// How [`Pipeline::run`] should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Graceful: stop taking, wait up to the drain timeout for confirmations, ack them, nack the
    /// rest.
    Drain,
    /// At once (lease lost): ack what is already confirmed, nack the rest without waiting.
    Immediate,
}

/// Tuning of a [`Pipeline`].
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Maximum number of items taken but not yet acked (the in-flight window). At least 1.
    pub window: usize,
    /// How long one `take` may block while nothing is in flight. A source with an
    /// [`Interrupter`] is interrupted by a stop meanwhile; for one without, this bounds how late
    /// a stop request is noticed while idle.
    pub take_wait: Duration,
    /// How long one `take` may block while items are in flight (then confirmations are due).
    pub busy_wait: Duration,
    /// How often the sink's connection state is polled while waiting to republish.
    pub reconnect_poll: Duration,
    /// How long a [`StopMode::Drain`] stop waits for outstanding confirmations.
    pub drain_timeout: Duration,
    /// Retry policy for failed queue calls (take, ack, dead-letter).
    pub retry: BackoffConfig,
    /// Batch size for acks and refills while items are in flight; 0 = automatic
    /// (`window / 8`, at least 1). Confirmed items at the head are acked once this many are
    /// confirmed (or at once when nothing else is in flight), and a partly full window is
    /// refilled once this much room is free. Larger batches mean fewer queue calls per event
    /// (measured in list mode: 2 per event with 1, about 0.07 with 32) at the cost of a
    /// slightly smaller effective window; it never delays an idle bridge.
    pub batch: usize,
    /// How long the final ack and nack of a stop may take together. Past it the items stay in
    /// the processing list (published again first at the next start): a stop must end even
    /// when the queue's server does not answer.
    pub final_timeout: Duration,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            window: 256,
            take_wait: Duration::from_secs(5),
            busy_wait: Duration::from_millis(5),
            reconnect_poll: Duration::from_millis(50),
            drain_timeout: Duration::from_secs(10),
            retry: BackoffConfig {
                initial_ms: 100,
                max_ms: 2_000,
                ..BackoffConfig::default()
            },
            batch: 0,
            final_timeout: Duration::from_millis(400),
        }
    }
}

/// What a finished [`Pipeline::run`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Items acked (confirmed by the broker and removed from the queue).
    pub acked: u64,
    /// Items moved to the dead-letter list.
    pub dead: u64,
    /// Items given back to the queue unconfirmed at the stop.
    pub nacked: u64,
    /// Messages published again after a failure.
    pub republished: u64,
    /// Items still in flight at the stop that could be neither acked nor nacked (the queue's server down);
    /// they stay in the processing list and are recovered at the next start.
    pub left_in_processing: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Pending,
    Confirmed,
    Failed,
}

#[derive(Debug)]
struct Slot {
    delivery: Delivery,
    msgs: Vec<OutMessage>,
    remaining: usize,
    state: SlotState,
}

type ConfirmResult = (u64, Result<(), MqttError>, Instant);

/// A confirmation in flight: the sink's future plus what the pipeline needs to file the result.
/// (A named future instead of a boxed `async` block: one allocation less per message.)
struct Pending {
    seq: u64,
    started: Instant,
    confirm: nemo_mqtt::Confirm,
}

impl Future for Pending {
    type Output = ConfirmResult;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<ConfirmResult> {
        let me = &mut *self;
        me.confirm
            .as_mut()
            .poll(cx)
            .map(|res| (me.seq, res, me.started))
    }
}

/// Metric handles, resolved once (a `metrics::counter!` per event costs a registry lookup).
struct Metrics {
    events_in: metrics::Counter,
    events_dead: metrics::Counter,
    events_out: metrics::Counter,
    publications: metrics::Counter,
    publish_latency: metrics::Histogram,
    in_flight: metrics::Gauge,
}

impl Metrics {
    fn new() -> Self {
        Metrics {
            events_in: metrics::counter!("nemo_bridge_events_in_total"),
            events_dead: metrics::counter!("nemo_bridge_events_dead_total"),
            events_out: metrics::counter!("nemo_bridge_events_out_total"),
            publications: metrics::counter!("nemo_bridge_publications_total"),
            publish_latency: metrics::histogram!("nemo_bridge_publish_latency_seconds"),
            in_flight: metrics::gauge!("nemo_bridge_in_flight"),
        }
    }
}

/// The pipeline over one source and one sink. See the [module docs](self).
///
/// After [`run`](Self::run) returned, [`into_source`](Self::into_source) gives the source back,
/// so that a reload can continue on the same queue with a new sink.
pub struct Pipeline<S, K, P> {
    source: S,
    sink: K,
    prepare: P,
    opts: PipelineOptions,
    slots: VecDeque<Slot>,
    head_seq: u64,
    pending: FuturesUnordered<Pending>,
    report: RunReport,
    retry: Backoff,
    metrics: Metrics,
    heartbeat: Option<Heartbeat>,
    flow: Option<std::sync::Arc<crate::figures::Flow>>,
}

impl<S, K, P> std::fmt::Debug for Pipeline<S, K, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("window", &self.opts.window)
            .field("in_flight", &self.slots.len())
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl<S, K, P> Pipeline<S, K, P>
where
    S: EventSource,
    K: EventSink,
    P: Prepare,
{
    /// A pipeline from `source` to `sink`. A `window` of 0 is treated as 1.
    pub fn new(source: S, sink: K, prepare: P, mut opts: PipelineOptions) -> Self {
        opts.window = opts.window.max(1);
        if opts.batch == 0 {
            opts.batch = opts.window / 8;
        }
        opts.batch = opts.batch.clamp(1, opts.window);
        let retry = Backoff::new(&opts.retry);
        Pipeline {
            source,
            sink,
            prepare,
            opts,
            slots: VecDeque::new(),
            head_seq: 0,
            pending: FuturesUnordered::new(),
            report: RunReport::default(),
            retry,
            metrics: Metrics::new(),
            heartbeat: None,
            flow: None,
        }
    }

    /// Count the items in flight and the dead letters into `flow` (the queue figures of a
    /// queue whose server cannot count them: NEMO's table).
    pub fn with_flow(mut self, flow: std::sync::Arc<crate::figures::Flow>) -> Self {
        self.flow = Some(flow);
        self
    }

    /// Beat `heartbeat` on every turn of the run loop, so that a
    /// [`Watchdog`](crate::watchdog::Watchdog) notices if the pipeline ever stops moving. It
    /// is active from the start of [`run`](Self::run) until it returned.
    pub fn with_heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.heartbeat = Some(heartbeat);
        self
    }

    fn beat(&self) {
        if let Some(h) = &self.heartbeat {
            h.beat();
        }
    }

    /// Give the source back (e.g. to continue with a new sink after a reload).
    pub fn into_source(self) -> S {
        self.source
    }

    /// The number of items currently in flight (taken, not yet acked).
    pub fn in_flight(&self) -> usize {
        self.slots.len()
    }

    /// Move items until `stop` resolves, then stop as its [`StopMode`] says.
    ///
    /// Queue errors (Redis, NEMO's database) are retried with the retry backoff (logged once per outage); broker
    /// failures lead to a republish after the reconnect. The function therefore only returns
    /// after a stop, with a report of what it did.
    pub async fn run<F>(&mut self, stop: F) -> RunReport
    where
        F: Future<Output = StopMode>,
    {
        let stop = stop.fuse();
        let mut stop = std::pin::pin!(stop);
        let mut failing = false;
        let mut redis_down = false;
        if let Some(h) = &self.heartbeat {
            h.set_active(true);
        }
        let interrupter = self.source.interrupter();
        loop {
            self.beat();
            // 1. Take note of every confirmation that is already there.
            while let Some(Some(res)) = self.pending.next().now_or_never() {
                self.on_confirm(res, &mut failing);
            }
            if let Some(mode) = (&mut stop).now_or_never() {
                return self.finish(mode).await;
            }
            // A stop gives a call in progress CALL_GRACE to end (a server that answers does so in
            // milliseconds, and its result counts); a server that does not answer cannot hold
            // the stop: the call is abandoned and the items stay in flight for the stop.
            let mut stopped = None;
            let acked = {
                let ack = self.ack_heads(failing);
                tokio::pin!(ack);
                tokio::select! {
                    biased;
                    r = &mut ack => Some(r),
                    mode = &mut stop => {
                        stopped = Some(mode);
                        tokio::time::timeout(CALL_GRACE, &mut ack).await.ok()
                    }
                }
            };
            if let Some(mode) = stopped {
                return self.finish(mode).await;
            }
            if let Some(Err(e)) = acked {
                if !redis_down {
                    warn!(error = %e, "queue: ack failed; retrying");
                    redis_down = true;
                }
                if let Some(mode) = self.pause(&mut stop).await {
                    return self.finish(mode).await;
                }
                continue;
            }

            // 2. After a broker failure: let the window resolve, wait for the reconnect,
            //    republish in order.
            if failing {
                if !self.pending.is_empty() {
                    tokio::select! {
                        mode = &mut stop => return self.finish(mode).await,
                        Some(res) = self.pending.next() => self.on_confirm(res, &mut failing),
                    }
                } else if self.sink.is_connected() {
                    self.republish();
                    failing = false;
                } else {
                    tokio::select! {
                        mode = &mut stop => return self.finish(mode).await,
                        _ = tokio::time::sleep(self.opts.reconnect_poll) => {}
                    }
                }
                continue;
            }

            // 3. Take as much as the window allows: at once when idle, else once a batch of
            //    room is free (a full window then refills in one call, not one per confirm).
            let room = self.opts.window.saturating_sub(self.slots.len());
            if room > 0 && (self.slots.is_empty() || room >= self.opts.batch) {
                let idle = self.slots.is_empty();
                let wait = if idle {
                    self.opts.take_wait
                } else {
                    self.opts.busy_wait
                };
                // A take the source says may block longer than usual (a first query over a
                // large table) is not a stall: the watchdog allows that much more, for this
                // take only.
                let allowance = self
                    .heartbeat
                    .as_ref()
                    .zip(self.source.longest_take())
                    .map(|(h, extra)| Allowance::raise(h, extra));
                // Idle, the take may wait long (take_wait): a stop meanwhile interrupts it.
                let (taken, stopped) = match interrupter.as_ref().filter(|_| idle) {
                    Some(interrupter) => {
                        interruptible_take(&mut self.source, room, wait, interrupter, &mut stop)
                            .await
                    }
                    // A stop gives the take CALL_GRACE to end, and what it took is admitted and
                    // handled by the stop; past that it is abandoned, and what it may have moved
                    // stays in the queue's processing state, taken first at the next start.
                    None => {
                        let take = self.source.take(room, wait);
                        tokio::pin!(take);
                        tokio::select! {
                            biased;
                            taken = &mut take => (taken, None),
                            mode = &mut stop => match tokio::time::timeout(CALL_GRACE, &mut take).await {
                                Ok(taken) => (taken, Some(mode)),
                                Err(_) => (Ok(Vec::new()), Some(mode)),
                            },
                        }
                    }
                };
                drop(allowance);
                match taken {
                    Ok(deliveries) => {
                        if redis_down {
                            info!("queue: taking items again");
                            redis_down = false;
                        }
                        self.retry.reset();
                        let got = !deliveries.is_empty();
                        for d in deliveries {
                            self.admit(d).await;
                            self.beat();
                        }
                        self.note_in_flight();
                        if let Some(mode) = stopped {
                            return self.finish(mode).await;
                        }
                        if got {
                            continue;
                        }
                        if self.slots.is_empty() {
                            // Be cooperative even with a source that does not wait.
                            tokio::task::yield_now().await;
                            continue;
                        }
                    }
                    Err(e) => {
                        if !redis_down {
                            warn!(error = %e, "queue: take failed; retrying");
                            redis_down = true;
                        }
                        if let Some(mode) = stopped {
                            return self.finish(mode).await;
                        }
                        if let Some(mode) = self.pause(&mut stop).await {
                            return self.finish(mode).await;
                        }
                        continue;
                    }
                }
            }

            // 4. Wait for a confirmation (or, when there is room, a short while for new items).
            let room = if room >= self.opts.batch { room } else { 0 };
            if self.pending.is_empty() {
                // Everything in flight is confirmed but not acked yet (ack failed): loop.
                if room == 0 {
                    tokio::select! {
                        mode = &mut stop => return self.finish(mode).await,
                        _ = tokio::time::sleep(self.opts.busy_wait) => {}
                    }
                }
                continue;
            }
            tokio::select! {
                mode = &mut stop => return self.finish(mode).await,
                Some(res) = self.pending.next() => self.on_confirm(res, &mut failing),
                _ = tokio::time::sleep(self.opts.busy_wait), if room > 0 => {}
            }
        }
    }

    /// Sleep one retry delay, or return the stop mode if a stop came first.
    async fn pause<F>(
        &mut self,
        stop: &mut std::pin::Pin<&mut futures::future::Fuse<F>>,
    ) -> Option<StopMode>
    where
        F: Future<Output = StopMode>,
    {
        let delay = self
            .retry
            .next_delay()
            .unwrap_or(Duration::from_millis(self.opts.retry.max_ms));
        tokio::select! {
            mode = stop => Some(mode),
            _ = tokio::time::sleep(delay) => None,
        }
    }

    /// Accept one delivery: dead-letter it or publish its messages.
    async fn admit(&mut self, delivery: Delivery) {
        self.metrics.events_in.increment(1);
        match self.prepare.prepare(&delivery.raw) {
            Err(reason) => self.dead_letter(delivery, &reason).await,
            Ok(msgs) => {
                let seq = self.head_seq + self.slots.len() as u64;
                let state = if msgs.is_empty() {
                    SlotState::Confirmed
                } else {
                    SlotState::Pending
                };
                for msg in &msgs {
                    self.publish(seq, msg.clone());
                }
                self.slots.push_back(Slot {
                    remaining: msgs.len(),
                    delivery,
                    msgs,
                    state,
                });
            }
        }
    }

    async fn dead_letter(&mut self, delivery: Delivery, reason: &str) {
        warn!(
            reason,
            raw_prefix = %short_prefix(&delivery.raw),
            raw_len = delivery.raw.len(),
            "bad item moved to dead letters"
        );
        for attempt in 0..3 {
            match self.source.dead_letter(&delivery, reason).await {
                Ok(()) => {
                    self.report.dead += 1;
                    self.metrics.events_dead.increment(1);
                    if let Some(flow) = &self.flow {
                        flow.dead.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    return;
                }
                Err(e) if attempt < 2 => {
                    debug!(error = %e, "queue: dead-letter failed; retrying");
                    let delay = self
                        .retry
                        .next_delay()
                        .unwrap_or(Duration::from_millis(100));
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    error!(error = %e, "queue: dead-letter failed; the item stays unconfirmed in the queue and is retried at the next start");
                }
            }
        }
    }

    fn publish(&mut self, seq: u64, msg: OutMessage) {
        let confirm = self.sink.publish(msg);
        self.pending.push(Pending {
            seq,
            started: Instant::now(),
            confirm,
        });
    }

    fn on_confirm(&mut self, (seq, res, started): ConfirmResult, failing: &mut bool) {
        let Some(idx) = seq.checked_sub(self.head_seq) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        match res {
            Ok(()) => {
                self.metrics
                    .publish_latency
                    .record(started.elapsed().as_secs_f64());
                self.metrics.publications.increment(1);
                slot.remaining = slot.remaining.saturating_sub(1);
                if slot.remaining == 0 && slot.state == SlotState::Pending {
                    slot.state = SlotState::Confirmed;
                }
            }
            Err(e) => {
                slot.state = SlotState::Failed;
                if !*failing {
                    warn!(error = %e, "mqtt: publish not confirmed; republishing from the first unconfirmed item after the reconnect");
                    *failing = true;
                }
            }
        }
    }

    /// Republish from the first unconfirmed item onward, in source order.
    fn republish(&mut self) {
        let Some(first) = self
            .slots
            .iter()
            .position(|s| s.state != SlotState::Confirmed)
        else {
            return;
        };
        let mut count = 0u64;
        for idx in first..self.slots.len() {
            let seq = self.head_seq + idx as u64;
            let msgs = {
                let slot = &mut self.slots[idx];
                if slot.msgs.is_empty() {
                    continue;
                }
                slot.state = SlotState::Pending;
                slot.remaining = slot.msgs.len();
                slot.msgs.clone()
            };
            for msg in msgs {
                self.publish(seq, msg);
                count += 1;
            }
        }
        self.report.republished += count;
        info!(
            messages = count,
            "mqtt: republished the unconfirmed window in order"
        );
    }

    /// Ack the confirmed items at the head of the in-flight queue in one call: once a batch of
    /// them is there, when they are all that is in flight, or when `force`d.
    async fn ack_heads(&mut self, force: bool) -> Result<(), S::Error> {
        let n = self
            .slots
            .iter()
            .take_while(|s| s.state == SlotState::Confirmed)
            .count();
        if n == 0 || (!force && n < self.opts.batch && n < self.slots.len()) {
            return Ok(());
        }
        let batch: Vec<Delivery> = self
            .slots
            .iter()
            .take(n)
            .map(|s| s.delivery.clone())
            .collect();
        self.source.ack(&batch).await?;
        self.slots.drain(..n);
        self.head_seq += n as u64;
        self.report.acked += n as u64;
        self.metrics.events_out.increment(n as u64);
        self.note_in_flight();
        Ok(())
    }

    /// The in-flight gauge and the figures' count.
    fn note_in_flight(&self) {
        let n = self.slots.len();
        self.metrics.in_flight.set(n as f64);
        if let Some(flow) = &self.flow {
            flow.in_flight
                .store(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    async fn finish(&mut self, mode: StopMode) -> RunReport {
        self.beat();
        if mode == StopMode::Drain && !self.pending.is_empty() {
            let deadline = tokio::time::Instant::now() + self.opts.drain_timeout;
            let mut ignored = false;
            loop {
                tokio::select! {
                    next = self.pending.next() => match next {
                        Some(res) => self.on_confirm(res, &mut ignored),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => {
                        warn!(in_flight = self.slots.len(), "drain timeout reached; returning unconfirmed items to the queue");
                        break;
                    }
                }
            }
        } else {
            let mut ignored = false;
            while let Some(Some(res)) = self.pending.next().now_or_never() {
                self.on_confirm(res, &mut ignored);
            }
        }
        self.pending = FuturesUnordered::new();
        // Ack the confirmed items at the head, in source order; give the rest back in order —
        // also a confirmed item behind an unconfirmed one, so that at the next start the
        // unconfirmed item is not published after a newer event of its tool.
        let confirmed = self
            .slots
            .iter()
            .take_while(|s| s.state == SlotState::Confirmed)
            .count();
        let rest: Vec<Slot> = self.slots.drain(confirmed..).collect();
        let done: Vec<Slot> = self.slots.drain(..).collect();
        self.head_seq += (done.len() + rest.len()) as u64;
        let done: Vec<Delivery> = done.into_iter().map(|s| s.delivery).collect();
        let rest: Vec<Delivery> = rest.into_iter().map(|s| s.delivery).collect();
        let deadline = tokio::time::Instant::now() + self.opts.final_timeout;
        let limit_ms = self.opts.final_timeout.as_millis();
        let bounded = |r: Result<Result<(), S::Error>, tokio::time::error::Elapsed>| match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {limit_ms} ms of the stop")),
        };
        if !done.is_empty() {
            let acked = tokio::time::timeout_at(deadline, self.source.ack(&done)).await;
            match bounded(acked) {
                Ok(()) => {
                    self.report.acked += done.len() as u64;
                    self.metrics.events_out.increment(done.len() as u64);
                }
                Err(e) => {
                    error!(error = %e, items = done.len(), "queue: final ack failed; the items stay unconfirmed in the queue and are published again at the next start");
                    self.report.left_in_processing += done.len() as u64;
                }
            }
        }
        if !rest.is_empty() {
            let nacked = tokio::time::timeout_at(deadline, self.source.nack(&rest)).await;
            match bounded(nacked) {
                Ok(()) => self.report.nacked += rest.len() as u64,
                Err(e) => {
                    error!(error = %e, items = rest.len(), "queue: nack failed; the items stay unconfirmed in the queue and are published again at the next start");
                    self.report.left_in_processing += rest.len() as u64;
                }
            }
        }
        self.note_in_flight();
        if let Some(h) = &self.heartbeat {
            h.set_active(false);
        }
        std::mem::take(&mut self.report)
    }
}

/// A heartbeat's limit raised by the longest a take may block
/// ([`EventSource::longest_take`]), back to what it was (and a beat) when dropped.
struct Allowance {
    heartbeat: Heartbeat,
    limit: Duration,
}

impl Allowance {
    fn raise(heartbeat: &Heartbeat, extra: Duration) -> Allowance {
        let limit = heartbeat.limit();
        debug!(
            extra_s = extra.as_secs(),
            "queue: the next take may block long; the watchdog allows for it"
        );
        heartbeat.set_limit(limit.saturating_add(extra));
        Allowance {
            heartbeat: heartbeat.clone(),
            limit,
        }
    }
}

impl Drop for Allowance {
    fn drop(&mut self) {
        self.heartbeat.beat();
        self.heartbeat.set_limit(self.limit);
    }
}

/// A short, printable prefix of raw bytes for logs (never the whole payload).
fn short_prefix(raw: &[u8]) -> String {
    const MAX: usize = 48;
    let cut = &raw[..raw.len().min(MAX)];
    let mut s: String = String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if raw.len() > MAX {
        s.push('…');
    }
    s
}

/// How often an interrupt is repeated while the interrupted take has not returned (it may not
/// have been waiting yet when the stop came).
const INTERRUPT_AGAIN: Duration = Duration::from_millis(100);

/// How long an interrupted take may take to return before the stop abandons it.
const INTERRUPT_GRACE: Duration = Duration::from_millis(300);

/// How long a call to the queue in progress when a stop comes (an ack, a take while items are
/// in flight) may take to end before the stop abandons it. A server that answers ends it in
/// milliseconds, so its result is used (a reload goes on with the same source, which must not
/// lose track of what the call moved); one that does not answer cannot hold the stop.
const CALL_GRACE: Duration = Duration::from_millis(300);

/// `source.take(max, wait)`, interrupted if `stop` resolves meanwhile: then the take is still
/// awaited — it returns early, and what it took is admitted and handled by the stop like
/// everything else in flight — and the stop's mode is returned with it. The interrupt runs in a
/// task of its own; a server that does not answer it (stalled, gone) cannot hold the stop: after
/// [`INTERRUPT_GRACE`] the take is abandoned, and whatever it may have moved stays in the
/// queue's processing state, taken first at the next start. Nothing is lost either way.
async fn interruptible_take<S, F>(
    source: &mut S,
    max: usize,
    wait: Duration,
    interrupter: &Interrupter,
    stop: &mut std::pin::Pin<&mut futures::future::Fuse<F>>,
) -> (Result<Vec<Delivery>, S::Error>, Option<StopMode>)
where
    S: EventSource,
    F: Future<Output = StopMode>,
{
    let take = source.take(max, wait);
    tokio::pin!(take);
    let mode = tokio::select! {
        biased;
        taken = &mut take => return (taken, None),
        mode = stop => mode,
    };
    debug!("queue: stop requested while waiting for items; interrupting the wait");
    let grace = tokio::time::sleep(INTERRUPT_GRACE);
    tokio::pin!(grace);
    loop {
        let attempt = tokio::spawn(interrupter.interrupt());
        let again = tokio::time::sleep(INTERRUPT_AGAIN);
        tokio::pin!(again);
        tokio::select! {
            taken = &mut take => return (taken, Some(mode)),
            () = &mut again => {}
            () = &mut grace => return (Ok(Vec::new()), Some(mode)),
        }
        // Not back yet: repeat once the last attempt ended.
        tokio::select! {
            taken = &mut take => return (taken, Some(mode)),
            _ = attempt => {}
            () = &mut grace => return (Ok(Vec::new()), Some(mode)),
        }
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
