//! Pub/sub mode: `SUBSCRIBE key`.
//!
//! **At-most-once.** Redis pub/sub keeps nothing: a message published while the
//! bridge is disconnected, restarting, or too slow (the buffer below is full)
//! is gone. There is nothing to acknowledge, so `ack`/`nack` do nothing and a
//! nacked message is *not* delivered again. Use list or stream mode when
//! events matter; this mode exists for producers that can only `PUBLISH`.
//!
//! Messages go from the subscription into a bounded buffer (`pubsub_buffer`);
//! when it is full, new messages are dropped, counted ([`PubSubSource::dropped`])
//! and logged (at most every 10 s).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::conn::bytes_of;
use crate::{DeadLetters, Delivery, DeliveryId, EventSource, Interrupter, Redis, RedisError};

/// The pub/sub consumer. See the [module docs](self).
#[derive(Debug)]
pub struct PubSubSource {
    subscriber: SubscriberClient,
    rx: mpsc::Receiver<Bytes>,
    dropped: Arc<AtomicU64>,
    seq: u64,
    dead: DeadLetters,
    tasks: Vec<JoinHandle<()>>,
    /// Ends a waiting take (see [`EventSource::interrupter`]).
    interrupt: Arc<tokio::sync::Notify>,
}

impl PubSubSource {
    /// Subscribe to the channel `key`.
    ///
    /// # Errors
    /// [`RedisError`] when the subscriber cannot connect or subscribe.
    pub async fn new(redis: &Redis) -> Result<Self, RedisError> {
        let channel = redis.keys.source.clone();
        tracing::warn!(
            channel = %channel,
            "redis: pubsub mode is at-most-once: messages published while the bridge is down or busy are lost; use list or stream mode for reliable delivery"
        );
        let subscriber = redis.subscriber_client().await?;
        let (tx, rx) = mpsc::channel(redis.cfg.pubsub_buffer);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut messages = subscriber.message_rx();
        let resub = subscriber.manage_subscriptions();
        let d = dropped.clone();
        let ch = channel.clone();
        let forward = tokio::spawn(async move {
            let mut last_log: Option<Instant> = None;
            let mut note_drop = |n: u64| {
                let total = d.fetch_add(n, Ordering::Relaxed) + n;
                if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(dropped_total = total, channel = %ch, "redis: pubsub buffer full; messages dropped");
                    last_log = Some(Instant::now());
                }
            };
            loop {
                match messages.recv().await {
                    Ok(msg) => {
                        if &*msg.channel != ch.as_str() {
                            continue;
                        }
                        let raw = bytes_of(msg.value).unwrap_or_default();
                        match tx.try_send(raw) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(_)) => note_drop(1),
                            Err(mpsc::error::TrySendError::Closed(_)) => return,
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => note_drop(n),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        subscriber
            .subscribe(channel.as_str())
            .await
            .map_err(RedisError::cmd("SUBSCRIBE"))?;
        Ok(PubSubSource {
            subscriber,
            rx,
            dropped,
            seq: 0,
            dead: DeadLetters::new(redis),
            tasks: vec![forward, resub],
            interrupt: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Messages dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn deliver(&mut self, raw: Bytes) -> Delivery {
        self.seq += 1;
        Delivery {
            id: DeliveryId::PubSub(self.seq),
            raw,
            redelivered: false,
        }
    }
}

impl Drop for PubSubSource {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let s = self.subscriber.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = s.quit().await;
            });
        }
    }
}

#[async_trait]
impl EventSource for PubSubSource {
    type Error = RedisError;
    async fn take(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, RedisError> {
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        let first = match self.rx.try_recv() {
            Ok(b) => Some(b),
            Err(_) if wait.is_zero() => None,
            Err(_) => {
                let interrupted = self.interrupt.notified();
                tokio::select! {
                    got = tokio::time::timeout(wait, self.rx.recv()) => got.ok().flatten(),
                    () = interrupted => None,
                }
            }
        };
        let Some(first) = first else { return Ok(out) };
        out.push(self.deliver(first));
        while out.len() < max {
            match self.rx.try_recv() {
                Ok(b) => out.push(self.deliver(b)),
                Err(_) => break,
            }
        }
        Ok(out)
    }

    async fn ack(&mut self, _deliveries: &[Delivery]) -> Result<(), RedisError> {
        Ok(())
    }

    async fn nack(&mut self, deliveries: &[Delivery]) -> Result<(), RedisError> {
        if !deliveries.is_empty() {
            tracing::warn!(
                messages = deliveries.len(),
                "redis: pubsub mode cannot give messages back; they are lost"
            );
        }
        Ok(())
    }

    async fn dead_letter(&mut self, delivery: &Delivery, error: &str) -> Result<(), RedisError> {
        self.dead.push(&delivery.raw, error).await
    }

    async fn depth(&mut self) -> Result<Option<u64>, RedisError> {
        Ok(Some(self.rx.len() as u64))
    }

    /// Ends a waiting take at once (receiving from the local buffer is cancel-safe: nothing
    /// is lost).
    fn interrupter(&self) -> Option<Interrupter> {
        let n = self.interrupt.clone();
        Some(Interrupter::new(move || {
            n.notify_one();
            async {}
        }))
    }
}
