//! Stream mode: entries `XADD key * item <json>` read through a consumer group.
//!
//! A consumer group remembers, per consumer, which entries it has read but not
//! acknowledged (the *pending entries list*, PEL). That is the processing list
//! of this mode:
//!
//! - on start, the source first reads its **own** pending entries (`XREADGROUP
//!   ... STREAMS key 0`): what this consumer name had in flight when it died is
//!   delivered first, in order, flagged `redelivered`;
//! - then new entries (`XREADGROUP GROUP g c COUNT max BLOCK wait STREAMS key >`,
//!   on the blocking client);
//! - `ack` is `XACK` (plus `XDEL` with `delete_acked = true`);
//! - `nack` leaves the entries pending and makes the next `take` re-read the own
//!   pending list from id 0, so they come again, in order;
//! - every `claim_idle_ms / 2` a take runs `XAUTOCLAIM` for entries idle longer
//!   than `claim_idle_ms` in *other* consumers (a bridge that died under another
//!   name) and delivers them, flagged `redelivered`.
//!
//! Several bridges may share one group to scale out: each entry goes to one of
//! them. Order then holds **per consumer**, not across the group. A bridge
//! that is alive but slower than `claim_idle_ms` to confirm will see its
//! entries claimed by another (duplicates, never loss), so keep the claim
//! timeout well above the publish latency.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};

use crate::conn::{Script, bytes_of, int_of, once, unblocker};
use crate::dead::DeadRecord;
use crate::{Delivery, DeliveryId, EventSource, Interrupter, Keys, Redis, RedisError};

/// XACK (and optionally XDEL) ARGV[3..] in group ARGV[1]; ARGV[2] = '1' to delete.
static ACK: Script = Script::new(
    "xack-script",
    r#"local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then return 0 end
local n = redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
if ARGV[2] == '1' then redis.call('XDEL', KEYS[1], unpack(ids)) end
return n"#,
);

/// Dead-letter: RPUSH record ARGV[3] to KEYS[2], XACK id ARGV[4] in group ARGV[1], XDEL if ARGV[2] = '1'.
static DEAD: Script = Script::new(
    "xdead-script",
    r#"redis.call('RPUSH', KEYS[2], ARGV[3])
local n = redis.call('XACK', KEYS[1], ARGV[1], ARGV[4])
if ARGV[2] == '1' then redis.call('XDEL', KEYS[1], ARGV[4]) end
return n"#,
);

const ACK_CHUNK: usize = 1_000;
const BLOCK_SLACK: Duration = Duration::from_secs(2);

/// The stream consumer. See the [module docs](self).
#[derive(Debug)]
pub struct StreamSource {
    client: Client,
    blocking: Client,
    keys: Keys,
    group: String,
    consumer: String,
    slot: u16,
    claim_idle: Duration,
    claim_every: Duration,
    next_claim: Instant,
    claim_cursor: String,
    block: Duration,
    timeout: Duration,
    delete_acked: bool,
    /// Ids handed out and not yet acked/dead-lettered.
    outstanding: HashSet<String>,
    /// `Some(after)`: read own pending entries after this id before new ones.
    pending_after: Option<String>,
}

impl StreamSource {
    /// A stream source on `redis`'s key; creates the group (from the start of
    /// the stream, with `MKSTREAM`) if it does not exist.
    ///
    /// # Errors
    /// [`RedisError`] when the blocking client cannot connect or the group
    /// cannot be created.
    pub async fn new(redis: &Redis) -> Result<Self, RedisError> {
        let blocking = redis.blocking_client().await?;
        let cfg = &redis.cfg;
        let s = StreamSource {
            client: redis.client.clone(),
            blocking,
            keys: redis.keys.clone(),
            group: cfg.group.clone(),
            consumer: cfg.consumer_name(),
            slot: fred::util::redis_keyslot(redis.keys.source.as_bytes()),
            claim_idle: cfg.claim_idle(),
            claim_every: (cfg.claim_idle() / 2).max(Duration::from_millis(50)),
            next_claim: Instant::now(),
            claim_cursor: "0-0".into(),
            block: cfg.block(),
            timeout: cfg.command_timeout(),
            delete_acked: cfg.delete_acked,
            outstanding: HashSet::new(),
            pending_after: Some("0".into()),
        };
        s.ensure_group().await?;
        tracing::info!(key = %s.keys.source, group = %s.group, consumer = %s.consumer, "redis: stream consumer ready");
        Ok(s)
    }

    /// This consumer's name in the group.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    async fn ensure_group(&self) -> Result<(), RedisError> {
        let r: Result<Value, _> = self
            .client
            .custom(
                self.cmd("XGROUP", false),
                vec![
                    Value::from("CREATE"),
                    Value::from(self.keys.source.as_str()),
                    Value::from(self.group.as_str()),
                    Value::from("0"),
                    Value::from("MKSTREAM"),
                ],
            )
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.details().starts_with("BUSYGROUP") => Ok(()),
            Err(e) => Err(RedisError::Command {
                cmd: "XGROUP CREATE",
                source: e,
            }),
        }
    }

    fn cmd(&self, name: &'static str, blocking: bool) -> CustomCommand {
        CustomCommand::new_static(name, ClusterHash::Custom(self.slot), blocking)
    }

    /// `XREADGROUP` from `id` (`>` = new entries) and parse the entries.
    async fn read(
        &self,
        id: &str,
        max: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Entry>, RedisError> {
        let mut args: Vec<Value> = vec![
            "GROUP".into(),
            self.group.as_str().into(),
            self.consumer.as_str().into(),
            "COUNT".into(),
            Value::Integer(max as i64),
        ];
        let (client, opts) = match block {
            Some(b) => {
                args.push("BLOCK".into());
                args.push(Value::Integer(b.as_millis().max(1) as i64));
                (&self.blocking, once(b + BLOCK_SLACK))
            }
            None => (&self.client, once(self.timeout)),
        };
        args.extend([
            "STREAMS".into(),
            self.keys.source.as_str().into(),
            id.into(),
        ]);
        let v: Value = client
            .with_options(&opts)
            .custom(self.cmd("XREADGROUP", block.is_some()), args)
            .await
            .map_err(RedisError::cmd("XREADGROUP"))?;
        // [[key, [entry, ...]]] or nil
        let mut out = Vec::new();
        for stream in v.into_array() {
            if let Value::Array(mut kv) = stream
                && kv.len() == 2
            {
                out.extend(parse_entries(kv.pop().unwrap_or(Value::Null))?);
            }
        }
        Ok(out)
    }

    async fn autoclaim(&mut self, max: usize) -> Result<Vec<Entry>, RedisError> {
        let v: Value = self
            .client
            .with_options(&once(self.timeout))
            .custom(
                self.cmd("XAUTOCLAIM", false),
                vec![
                    self.keys.source.as_str().into(),
                    self.group.as_str().into(),
                    self.consumer.as_str().into(),
                    Value::Integer(self.claim_idle.as_millis() as i64),
                    self.claim_cursor.as_str().into(),
                    "COUNT".into(),
                    Value::Integer(max as i64),
                ],
            )
            .await
            .map_err(RedisError::cmd("XAUTOCLAIM"))?;
        let mut parts = v.into_array().into_iter();
        let next = parts
            .next()
            .and_then(bytes_of)
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let entries = parse_entries(parts.next().unwrap_or(Value::Null))?;
        match next {
            Some(n) if n != "0-0" => self.claim_cursor = n, // more to scan: continue next take
            _ => {
                self.claim_cursor = "0-0".into();
                self.next_claim = Instant::now() + self.claim_every;
            }
        }
        if !entries.is_empty() {
            tracing::warn!(entries = entries.len(), group = %self.group, "redis: claimed entries idle in other consumers");
        }
        Ok(entries)
    }

    /// Turn entries into deliveries; entries without an `item` field are dead-lettered here.
    async fn hand_out(
        &mut self,
        entries: Vec<Entry>,
        redelivered: bool,
    ) -> Result<Vec<Delivery>, RedisError> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            if self.outstanding.contains(&e.id) {
                continue; // already handed out (our own pending entry)
            }
            match e.item {
                Some(raw) => {
                    self.outstanding.insert(e.id.clone());
                    out.push(Delivery {
                        id: DeliveryId::Stream(e.id),
                        raw,
                        redelivered,
                    });
                }
                None if e.deleted => {
                    // Entry deleted (XDEL/trim) while pending: nothing left to publish.
                    tracing::warn!(id = %e.id, "redis: pending stream entry was deleted; acknowledging it");
                    self.ack_ids(&[e.id]).await?;
                }
                None => {
                    let rec = DeadRecord::new(&e.fields_json, "stream entry has no `item` field");
                    self.dead(&e.id, rec).await?;
                }
            }
        }
        Ok(out)
    }

    async fn ack_ids(&self, ids: &[String]) -> Result<i64, RedisError> {
        let mut n = 0;
        for chunk in ids.chunks(ACK_CHUNK) {
            let mut args: Vec<Value> = vec![
                self.group.as_str().into(),
                if self.delete_acked { "1" } else { "0" }.into(),
            ];
            args.extend(chunk.iter().map(|id| Value::from(id.as_str())));
            let v = ACK
                .run(
                    &self.client.with_options(&once(self.timeout)),
                    vec![self.keys.source.clone()],
                    args,
                )
                .await?;
            n += int_of("xack-script", v)?;
        }
        Ok(n)
    }

    async fn dead(&self, id: &str, rec: DeadRecord) -> Result<(), RedisError> {
        DEAD.run(
            &self.client.with_options(&once(self.timeout)),
            vec![self.keys.source.clone(), self.keys.dead.clone()],
            vec![
                self.group.as_str().into(),
                if self.delete_acked { "1" } else { "0" }.into(),
                Value::Bytes(Bytes::from(rec.to_json())),
                id.into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn take_inner(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, RedisError> {
        // 1. Own pending entries (start, after a nack or an interrupted read).
        while let Some(after) = self.pending_after.clone() {
            let entries = self.read(&after, max, None).await?;
            match entries.last() {
                None => self.pending_after = None,
                Some(last) => self.pending_after = Some(last.id.clone()),
            }
            let out = self.hand_out(entries, true).await?;
            if !out.is_empty() {
                return Ok(out);
            }
        }
        // 2. Entries abandoned by dead consumers.
        if Instant::now() >= self.next_claim {
            let entries = self.autoclaim(max).await?;
            let out = self.hand_out(entries, true).await?;
            if !out.is_empty() {
                return Ok(out);
            }
        }
        // 3. New entries.
        let wait = wait.min(self.block);
        let block = (wait >= Duration::from_millis(1)).then_some(wait);
        let entries = self.read(">", max, block).await?;
        self.hand_out(entries, false).await
    }
}

#[async_trait]
impl EventSource for StreamSource {
    type Error = RedisError;
    async fn take(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, RedisError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        match self.take_inner(max, wait).await {
            Ok(out) => Ok(out),
            Err(e) => {
                // Entries read by an interrupted command are in our PEL: re-read it next time.
                self.pending_after = Some("0".into());
                if let RedisError::Command { source, .. } = &e
                    && source.details().starts_with("NOGROUP")
                {
                    tracing::warn!(group = %self.group, "redis: consumer group missing (stream deleted or server reset); recreating");
                    self.ensure_group().await?;
                }
                Err(e)
            }
        }
    }

    async fn ack(&mut self, deliveries: &[Delivery]) -> Result<(), RedisError> {
        let ids: Vec<String> = deliveries
            .iter()
            .filter_map(|d| match &d.id {
                DeliveryId::Stream(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        self.ack_ids(&ids).await?;
        for id in &ids {
            self.outstanding.remove(id);
        }
        Ok(())
    }

    async fn nack(&mut self, deliveries: &[Delivery]) -> Result<(), RedisError> {
        for d in deliveries {
            if let DeliveryId::Stream(id) = &d.id {
                self.outstanding.remove(id);
            }
        }
        if !deliveries.is_empty() {
            self.pending_after = Some("0".into());
        }
        Ok(())
    }

    async fn dead_letter(&mut self, delivery: &Delivery, error: &str) -> Result<(), RedisError> {
        let DeliveryId::Stream(id) = &delivery.id else {
            return Err(RedisError::Protocol {
                cmd: "dead_letter",
                detail: "not a stream delivery".into(),
            });
        };
        self.dead(id, DeadRecord::new(&delivery.raw, error)).await?;
        self.outstanding.remove(id);
        Ok(())
    }

    async fn depth(&mut self) -> Result<Option<u64>, RedisError> {
        let n: i64 = self
            .client
            .xlen(&self.keys.source)
            .await
            .map_err(RedisError::cmd("XLEN"))?;
        Ok(Some(n.max(0) as u64))
    }

    /// Ends a waiting `XREADGROUP BLOCK` as if it had timed out (`CLIENT UNBLOCK <id> TIMEOUT`
    /// over fred's back channel): nothing is read, so nothing enters the pending list.
    fn interrupter(&self) -> Option<Interrupter> {
        Some(unblocker(&self.blocking))
    }
}

struct Entry {
    id: String,
    item: Option<Bytes>,
    /// Nil fields: the entry was deleted while pending.
    deleted: bool,
    /// The fields as JSON (for dead-lettering an entry without `item`).
    fields_json: Vec<u8>,
}

fn parse_entries(v: Value) -> Result<Vec<Entry>, RedisError> {
    let mut out = Vec::new();
    for e in v.into_array() {
        if e.is_null() {
            continue;
        }
        let mut parts = e.into_array().into_iter();
        let id = parts
            .next()
            .and_then(bytes_of)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .ok_or_else(|| RedisError::Protocol {
                cmd: "XREADGROUP",
                detail: "entry without id".into(),
            })?;
        let fields = parts.next().unwrap_or(Value::Null);
        if fields.is_null() {
            out.push(Entry {
                id,
                item: None,
                deleted: true,
                fields_json: Vec::new(),
            });
            continue;
        }
        let mut item = None;
        let mut map = serde_json::Map::new();
        let mut it = fields.into_array().into_iter();
        while let (Some(k), Some(val)) = (it.next(), it.next()) {
            let (Some(k), Some(val)) = (bytes_of(k), bytes_of(val)) else {
                continue;
            };
            if &k[..] == b"item" && item.is_none() {
                item = Some(val);
            } else {
                map.insert(
                    String::from_utf8_lossy(&k).into_owned(),
                    serde_json::Value::String(String::from_utf8_lossy(&val).into_owned()),
                );
            }
        }
        let fields_json = serde_json::to_vec(&map).unwrap_or_default();
        out.push(Entry {
            id,
            item,
            deleted: false,
            fields_json,
        });
    }
    Ok(out)
}
