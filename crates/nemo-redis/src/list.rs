//! List mode: the NEMO plugin `LPUSH`es JSON items onto a list; we take them
//! from the other (right) end, so the oldest comes first.
//!
//! # How an item travels
//!
//! ```text
//! producer LPUSH ──► [ newest … oldest ] nemo_mqtt_events
//!                                   │  LMOVE RIGHT → LEFT (atomic, batched in a Lua script;
//!                                   ▼  BLMOVE when empty, on the blocking client)
//!                    [ newest taken … oldest taken ] {nemo_mqtt_events}:processing
//!                                   │  after the broker confirmed: LREM processing -1 <exact bytes>
//!                                   ▼
//!                                 gone
//! ```
//!
//! Taking *moves* an item instead of popping it: until the broker confirmed
//! it, it exists in Redis, in `processing`. If the bridge dies at any instant,
//! the next one finds it there and publishes it first (see
//! [`ListSource::recover`]). The `{key}` braces are a Redis Cluster hash tag:
//! both lists live in one slot, so the scripts that touch both are legal there.
//!
//! # Ambiguous failures
//!
//! When the connection breaks while a move is in flight, the move may have
//! happened with its reply lost. Commands are therefore sent at most once
//! (fred is told not to re-send them after a reconnect), and before the next
//! take the source *resynchronises*: items at the left end of `processing`
//! that it never handed out are put back at the right end of the queue, in
//! order, so they come out next. Nothing is lost, nothing is reordered.
//!
//! # One consumer per list
//!
//! Recovery and resync assume this process is the only consumer of the list:
//! the lease ([`crate::Lease`]) guarantees it. Two bridges without a lease would
//! recover each other's in-flight items (duplicates, never loss).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fred::prelude::*;

use crate::conn::{Script, arg, bytes_array, bytes_of, custom, int_of, once, unblocker};
use crate::dead::DeadRecord;
use crate::{Delivery, DeliveryId, EventSource, Interrupter, Keys, Redis, RedisError};

/// Move up to ARGV[1] items from the right of KEYS[1] to the left of KEYS[2]; return them, oldest first.
///
/// The same result as one `LMOVE KEYS[1] KEYS[2] RIGHT LEFT` per item (`processing` ends up
/// `[newest taken … oldest taken, …]`), in three commands instead of one per item: Redis spent
/// most of its time per event on the script's command calls (`take_ack` bench). `LPUSH` goes in
/// chunks, below Lua's argument limit.
static TAKE: Script = Script::new(
    "take-script",
    r#"local items = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)
local k = #items
if k == 0 then return items end
redis.call('LTRIM', KEYS[1], 0, -(k + 1))
local out = {}
for i = k, 1, -1 do out[#out + 1] = items[i] end
for i = 1, k, 1000 do
  redis.call('LPUSH', KEYS[2], unpack(out, i, math.min(i + 999, k)))
end
return out"#,
);

/// Remove each ARGV item (oldest first) once from KEYS[1], searching from the right (oldest)
/// end; return how many were removed.
///
/// Acks come in source order, so the acked items are normally exactly the rightmost ones of
/// `processing`: then one `LRANGE` to check them byte for byte and one `LTRIM` remove them all.
/// Otherwise (an item no longer there, a dead-lettered one in between) one `LREM` per item.
static ACK: Script = Script::new(
    "ack-script",
    r#"local k = #ARGV
local tail = redis.call('LRANGE', KEYS[1], -k, -1)
if #tail == k then
  local same = true
  for i = 1, k do
    if tail[k - i + 1] ~= ARGV[i] then same = false break end
  end
  if same then
    redis.call('LTRIM', KEYS[1], 0, -(k + 1))
    return k
  end
end
local n = 0
for i = 1, k do
  n = n + redis.call('LREM', KEYS[1], -1, ARGV[i])
end
return n"#,
);

/// Give ARGV (oldest first) back: remove each from KEYS[2] (processing) and push it at
/// the right end of KEYS[1] so that ARGV[1] comes out next. Items no longer in
/// processing are not pushed (they were recovered or acked already).
static NACK: Script = Script::new(
    "nack-script",
    r#"local n = 0
for i = #ARGV, 1, -1 do
  if redis.call('LREM', KEYS[2], -1, ARGV[i]) > 0 then
    redis.call('RPUSH', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n"#,
);

/// Move up to ARGV[1] items from the LEFT of KEYS[2] (processing, newest first) to
/// the RIGHT of KEYS[1]: the oldest taken ends up rightmost, i.e. next.
static RETURN: Script = Script::new(
    "return-script",
    r#"local n = 0
local limit = tonumber(ARGV[1])
while n < limit do
  local v = redis.call('LMOVE', KEYS[2], KEYS[1], 'LEFT', 'RIGHT')
  if not v then break end
  n = n + 1
end
return n"#,
);

/// Remove ARGV[1] once from KEYS[1] (processing) and append record ARGV[2] to KEYS[2] (dead).
static DEAD: Script = Script::new(
    "dead-letter-script",
    r#"local n = redis.call('LREM', KEYS[1], -1, ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
return n"#,
);

/// Items moved back per recovery script call (keeps each script short).
const RECOVER_CHUNK: usize = 10_000;
/// Slack added to a blocking read's client-side timeout.
const BLOCK_SLACK: Duration = Duration::from_secs(2);

/// The reliable list consumer (default mode). See the [module docs](self).
///
/// ```no_run
/// # async fn f(redis: nemo_redis::Redis) -> Result<(), nemo_redis::RedisError> {
/// use nemo_redis::EventSource;
/// use std::time::Duration;
/// let mut source = nemo_redis::ListSource::new(&redis).await?;
/// let batch = source.take(256, Duration::from_secs(1)).await?;
/// // ... publish, wait for the broker's confirmations ...
/// source.ack(&batch).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ListSource {
    client: Client,
    blocking: Client,
    keys: Keys,
    block: Duration,
    timeout: Duration,
    /// Items handed out and not yet acked/nacked/dead-lettered (a multiset).
    outstanding: HashMap<Bytes, u32>,
    outstanding_len: usize,
    recovered: bool,
    resync: bool,
    /// The next this-many items at the right end were delivered before.
    redeliver: u64,
    /// The last blocking read timed out: the queue was empty, so the next take starts with
    /// `BLMOVE` instead of the take script (half the commands of an idle bridge).
    empty: bool,
}

impl ListSource {
    /// A list source on `redis`'s key, with its own blocking client.
    ///
    /// # Errors
    /// [`RedisError::Connect`] when the blocking client cannot connect.
    pub async fn new(redis: &Redis) -> Result<Self, RedisError> {
        let blocking = redis.blocking_client().await?;
        Ok(ListSource {
            client: redis.client.clone(),
            blocking,
            keys: redis.keys.clone(),
            block: redis.cfg.block(),
            timeout: redis.cfg.command_timeout(),
            outstanding: HashMap::new(),
            outstanding_len: 0,
            recovered: false,
            resync: false,
            redeliver: 0,
            empty: false,
        })
    }

    /// Move everything a previous (dead) consumer left in `processing` back to
    /// the right end of the queue, in the original order, so it is delivered
    /// first, flagged `redelivered`. Called automatically before the first
    /// `take`; returns how many items were recovered.
    ///
    /// Why move rather than read them in place: then one code path (`take`)
    /// delivers everything, read-ahead stays bounded by `max`, and a crash in
    /// the middle of recovery leaves every item either still in `processing`
    /// or at the right end of the queue — both recovered in order next time.
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails; the next `take` tries again.
    pub async fn recover(&mut self) -> Result<u64, RedisError> {
        let mut total = 0u64;
        loop {
            let n = self.return_left(RECOVER_CHUNK).await?;
            total += n;
            if n < RECOVER_CHUNK as u64 {
                break;
            }
        }
        self.recovered = true;
        self.outstanding.clear();
        self.outstanding_len = 0;
        self.redeliver += total;
        if total > 0 {
            tracing::warn!(items = total, key = %self.keys.source, "redis: recovered items left in processing by a previous run; delivering them first");
        }
        Ok(total)
    }

    async fn return_left(&self, n: usize) -> Result<u64, RedisError> {
        let v = RETURN
            .run(
                &self.client.with_options(&once(self.timeout)),
                vec![self.keys.source.clone(), self.keys.processing.clone()],
                vec![Value::Integer(n as i64)],
            )
            .await?;
        Ok(int_of("return-script", v)?.max(0) as u64)
    }

    /// Put back items a failed command moved into `processing` without telling us.
    async fn resynchronise(&mut self) -> Result<(), RedisError> {
        let len: i64 = self
            .client
            .with_options(&once(self.timeout))
            .llen(&self.keys.processing)
            .await
            .map_err(RedisError::cmd("LLEN"))?;
        let len = len.max(0) as usize;
        // Orphans sit at the left end; never read more than our window plus a few batches.
        let probe = len.min(self.outstanding_len + 4096);
        let head: Vec<Bytes> = if probe == 0 {
            Vec::new()
        } else {
            let v: Value = self
                .client
                .with_options(&once(self.timeout))
                .lrange(&self.keys.processing, 0, probe as i64 - 1)
                .await
                .map_err(RedisError::cmd("LRANGE"))?;
            bytes_array("LRANGE", v)?
        };
        let orphans = head
            .iter()
            .take_while(|b| !self.outstanding.contains_key(*b))
            .count();
        if orphans > 0 {
            let n = self.return_left(orphans).await?;
            self.redeliver = self.redeliver.max(n);
            tracing::warn!(
                items = n,
                "redis: returned items moved by an interrupted command to the queue head"
            );
        }
        if len < self.outstanding_len {
            tracing::warn!(
                in_processing = len,
                handed_out = self.outstanding_len,
                "redis: fewer items in processing than handed out (server lost data, or items were acked elsewhere)"
            );
        }
        self.resync = false;
        Ok(())
    }

    async fn take_script(&self, max: usize) -> Result<Vec<Bytes>, RedisError> {
        let v = TAKE
            .run(
                &self.client.with_options(&once(self.timeout)),
                vec![self.keys.source.clone(), self.keys.processing.clone()],
                vec![Value::Integer(max as i64)],
            )
            .await?;
        bytes_array("take-script", v)
    }

    async fn blmove(&self, wait: Duration) -> Result<Option<Bytes>, RedisError> {
        let secs = format!("{:.3}", wait.as_secs_f64());
        let v: Value = self
            .blocking
            .with_options(&once(wait + BLOCK_SLACK))
            .custom(
                custom("BLMOVE", true),
                vec![
                    Value::from(self.keys.source.as_str()),
                    Value::from(self.keys.processing.as_str()),
                    Value::from("RIGHT"),
                    Value::from("LEFT"),
                    Value::from(secs),
                ],
            )
            .await
            .map_err(RedisError::cmd("BLMOVE"))?;
        Ok(bytes_of(v))
    }

    fn hand_out(&mut self, items: Vec<Bytes>) -> Vec<Delivery> {
        items
            .into_iter()
            .map(|raw| {
                let redelivered = self.redeliver > 0;
                self.redeliver = self.redeliver.saturating_sub(1);
                *self.outstanding.entry(raw.clone()).or_insert(0) += 1;
                self.outstanding_len += 1;
                Delivery {
                    id: DeliveryId::List,
                    raw,
                    redelivered,
                }
            })
            .collect()
    }

    fn forget(&mut self, raw: &Bytes) {
        if let Some(n) = self.outstanding.get_mut(raw) {
            *n -= 1;
            self.outstanding_len = self.outstanding_len.saturating_sub(1);
            if *n == 0 {
                self.outstanding.remove(raw);
            }
        }
    }

    /// Items handed out and not yet acked, nacked or dead-lettered.
    pub fn in_flight(&self) -> usize {
        self.outstanding_len
    }
}

#[async_trait]
impl EventSource for ListSource {
    type Error = RedisError;
    async fn take(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, RedisError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        if !self.recovered {
            self.recover().await?;
        }
        if self.resync {
            self.resynchronise().await?;
        }
        let wait = wait.min(self.block);
        let block = wait >= Duration::from_millis(1);
        // After a blocking read that timed out, go straight to the next one: it returns at
        // once if anything arrived meanwhile (the next take collects the rest).
        let mut items = if self.empty && block {
            Vec::new()
        } else {
            match self.take_script(max).await {
                Ok(items) => items,
                Err(e) => {
                    self.resync = true;
                    return Err(e);
                }
            }
        };
        self.empty = false;
        if items.is_empty() && block {
            match self.blmove(wait).await {
                // The first item after a wait goes out at once: topping the batch up here
                // would put one more round trip on the latency path of every event of a quiet
                // queue. The next take (the script: `empty` is false) collects the rest.
                Ok(Some(first)) => items.push(first),
                // Sent as a custom command, a BLMOVE timeout is a nil reply (fred's
                // `blmove()` would turn it into `Err(Timeout)`, indistinguishable from a
                // client-side timeout, which *is* ambiguous).
                Ok(None) => self.empty = true,
                Err(e) => {
                    self.resync = true;
                    return Err(e);
                }
            }
        }
        Ok(self.hand_out(items))
    }

    async fn ack(&mut self, deliveries: &[Delivery]) -> Result<(), RedisError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let args = raw_args(deliveries);
        let v = ACK
            .run(
                &self.client.with_options(&once(self.timeout)),
                vec![self.keys.processing.clone()],
                args,
            )
            .await;
        let removed = match v {
            Ok(v) => int_of("ack-script", v)?,
            Err(e) => {
                self.resync = true;
                return Err(e);
            }
        };
        if removed < deliveries.len() as i64 {
            tracing::debug!(
                acked = deliveries.len(),
                removed,
                "redis: some acked items were no longer in processing"
            );
        }
        for d in deliveries {
            self.forget(&d.raw);
        }
        Ok(())
    }

    async fn nack(&mut self, deliveries: &[Delivery]) -> Result<(), RedisError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let args = raw_args(deliveries);
        let v = NACK
            .run(
                &self.client.with_options(&once(self.timeout)),
                vec![self.keys.source.clone(), self.keys.processing.clone()],
                args,
            )
            .await;
        let pushed = match v {
            Ok(v) => int_of("nack-script", v)?.max(0) as u64,
            Err(e) => {
                self.resync = true;
                return Err(e);
            }
        };
        for d in deliveries {
            self.forget(&d.raw);
        }
        self.redeliver += pushed;
        if pushed < deliveries.len() as u64 {
            tracing::warn!(
                nacked = deliveries.len(),
                returned = pushed,
                "redis: some nacked items were no longer in processing"
            );
        }
        Ok(())
    }

    async fn dead_letter(&mut self, delivery: &Delivery, error: &str) -> Result<(), RedisError> {
        let record = DeadRecord::new(&delivery.raw, error).to_json();
        DEAD.run(
            &self.client.with_options(&once(self.timeout)),
            vec![self.keys.processing.clone(), self.keys.dead.clone()],
            vec![Value::Bytes(delivery.raw.clone()), arg(record.as_bytes())],
        )
        .await?;
        self.forget(&delivery.raw);
        tracing::debug!(error, key = %self.keys.dead, "redis: item dead-lettered");
        Ok(())
    }

    async fn depth(&mut self) -> Result<Option<u64>, RedisError> {
        let n: i64 = self
            .client
            .llen(&self.keys.source)
            .await
            .map_err(RedisError::cmd("LLEN"))?;
        Ok(Some(n.max(0) as u64))
    }

    /// Ends a waiting `BLMOVE` as if it had timed out: `CLIENT UNBLOCK <id> TIMEOUT` on the
    /// blocking client's connection, over fred's back channel (a nil reply: nothing moved).
    fn interrupter(&self) -> Option<Interrupter> {
        Some(unblocker(&self.blocking))
    }
}

/// The exact bytes of each delivery, as script arguments (ack and nack find items by them).
fn raw_args(deliveries: &[Delivery]) -> Vec<Value> {
    deliveries
        .iter()
        .map(|d| Value::Bytes(d.raw.clone()))
        .collect()
}
