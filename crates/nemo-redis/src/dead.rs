//! Dead letters: items that cannot be published, kept with the reason.
//!
//! Bad input must never block the queue and must never vanish silently. A
//! source's `dead_letter` removes the item from the queue and appends a record
//! to the list `{key}:dead` (oldest first):
//!
//! ```json
//! {"raw": "not json at all", "error": "not JSON: expected value at line 1 column 1", "at": 1760623352.94}
//! {"raw": "/3t7", "raw_base64": true, "error": "not UTF-8", "at": 1760623353.01}
//! ```
//!
//! `raw` is the item exactly as the producer wrote it; bytes that are not
//! UTF-8 are kept as base64 with `"raw_base64": true`, so nothing is lost.
//! [`DeadLetters::requeue`] puts items back into the queue once the cause is
//! fixed (the replay tool uses it).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use fred::prelude::*;
use serde::{Deserialize, Serialize};

use crate::conn::{Script, arg, bytes_array, int_of, once};
use crate::{Keys, Mode, Redis, RedisError};

/// One dead-letter record.
///
/// ```
/// use nemo_redis::DeadLetter;
/// let d = DeadLetter::new(b"\xff\xfe", "not UTF-8");
/// let json = d.to_json();
/// assert!(json.contains(r#""raw_base64":true"#));
/// let back = DeadLetter::parse(json.as_bytes()).unwrap();
/// assert_eq!(&back.raw[..], b"\xff\xfe");
/// assert_eq!(back.error, "not UTF-8");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The item's exact bytes.
    pub raw: Bytes,
    /// Why it could not be published.
    pub error: String,
    /// When it was dead-lettered, epoch seconds.
    pub at: f64,
}

pub(crate) type DeadRecord = DeadLetter;

#[derive(Serialize, Deserialize)]
struct Wire {
    raw: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    raw_base64: bool,
    error: String,
    at: f64,
}

impl DeadLetter {
    /// A record for `raw` with reason `error`, stamped now.
    pub fn new(raw: &[u8], error: &str) -> Self {
        DeadLetter {
            raw: Bytes::copy_from_slice(raw),
            error: error.to_string(),
            at: crate::conn::epoch_secs(),
        }
    }

    /// The JSON stored in the dead-letter list.
    pub fn to_json(&self) -> String {
        let (raw, raw_base64) = match std::str::from_utf8(&self.raw) {
            Ok(s) => (s.to_string(), false),
            Err(_) => (STANDARD.encode(&self.raw), true),
        };
        let w = Wire {
            raw,
            raw_base64,
            error: self.error.clone(),
            at: self.at,
        };
        serde_json::to_string(&w)
            .unwrap_or_else(|_| format!("{{\"raw\":\"\",\"error\":{:?},\"at\":0}}", self.error))
    }

    /// Parse a stored record.
    ///
    /// # Errors
    /// A message when `bytes` is not a dead-letter record.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let w: Wire =
            serde_json::from_slice(bytes).map_err(|e| format!("not a dead-letter record: {e}"))?;
        let raw = if w.raw_base64 {
            Bytes::from(
                STANDARD
                    .decode(w.raw.as_bytes())
                    .map_err(|e| format!("bad base64 in raw: {e}"))?,
            )
        } else {
            Bytes::from(w.raw)
        };
        Ok(DeadLetter {
            raw,
            error: w.error,
            at: w.at,
        })
    }
}

/// Which dead letters to requeue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// The oldest `n`.
    Count(u64),
    /// All of them.
    All,
}

/// Move up to (#ARGV-1)/2 records from the left of KEYS[1] (dead) back into KEYS[2], but
/// only while the head is exactly the record we decoded (ARGV[2i]); ARGV[2i+1] is the
/// original item. ARGV[1] is the mode.
static REQUEUE: Script = Script::new(
    "requeue-script",
    r#"local moved = 0
for i = 2, #ARGV, 2 do
  if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[i] then break end
  redis.call('LPOP', KEYS[1])
  if ARGV[1] == 'stream' then
    redis.call('XADD', KEYS[2], '*', 'item', ARGV[i + 1])
  elseif ARGV[1] == 'pubsub' then
    redis.call('PUBLISH', KEYS[2], ARGV[i + 1])
  else
    redis.call('LPUSH', KEYS[2], ARGV[i + 1])
  end
  moved = moved + 1
end
return moved"#,
);

const REQUEUE_CHUNK: u64 = 256;

/// The dead-letter list `{key}:dead` of a queue.
///
/// ```no_run
/// # async fn f(redis: nemo_redis::Redis) -> Result<(), nemo_redis::RedisError> {
/// let dead = redis.dead_letters();
/// for d in dead.list(0, 10).await? {
///     println!("{:.3} {}: {:?}", d.at, d.error, String::from_utf8_lossy(&d.raw));
/// }
/// dead.requeue(nemo_redis::Requeue::All).await?;   // after fixing the cause
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DeadLetters {
    client: Client,
    keys: Keys,
    mode: Mode,
    timeout: std::time::Duration,
}

impl DeadLetters {
    pub(crate) fn new(redis: &Redis) -> Self {
        DeadLetters {
            client: redis.client.clone(),
            keys: redis.keys.clone(),
            mode: redis.cfg.mode,
            timeout: redis.cfg.command_timeout(),
        }
    }

    /// How many records there are.
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails.
    pub async fn len(&self) -> Result<u64, RedisError> {
        let n: i64 = self
            .client
            .llen(&self.keys.dead)
            .await
            .map_err(RedisError::cmd("LLEN"))?;
        Ok(n.max(0) as u64)
    }

    /// Whether there are none.
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails.
    pub async fn is_empty(&self) -> Result<bool, RedisError> {
        Ok(self.len().await? == 0)
    }

    /// Up to `count` records from index `start`, oldest first. A stored value that
    /// is not a record (someone pushed it by hand) comes back with that value as
    /// `raw` and the parse problem as `error`.
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails.
    pub async fn list(&self, start: u64, count: u64) -> Result<Vec<DeadLetter>, RedisError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let v: Value = self
            .client
            .lrange(&self.keys.dead, start as i64, (start + count - 1) as i64)
            .await
            .map_err(RedisError::cmd("LRANGE"))?;
        Ok(bytes_array("LRANGE", v)?
            .into_iter()
            .map(|b| {
                DeadLetter::parse(&b).unwrap_or_else(|e| DeadLetter {
                    raw: b,
                    error: e,
                    at: 0.0,
                })
            })
            .collect())
    }

    /// Append a record for `raw` (used by sources that have nothing to remove, e.g. pub/sub).
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails.
    pub async fn push(&self, raw: &[u8], error: &str) -> Result<(), RedisError> {
        let rec = DeadLetter::new(raw, error).to_json();
        let _: i64 = self
            .client
            .with_options(&once(self.timeout))
            .rpush(&self.keys.dead, arg(rec.as_bytes()))
            .await
            .map_err(RedisError::cmd("RPUSH"))?;
        Ok(())
    }

    /// Move the oldest records back into the queue as the original items, the
    /// way a producer adds them (`LPUSH` in list mode, so they are delivered
    /// after the current backlog and in their original order; `XADD` in stream
    /// mode; `PUBLISH` in pub/sub mode). Each record is moved by a
    /// compare-and-move script, so a concurrent requeue never moves one twice.
    /// Returns how many were moved.
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails (what was moved stays moved).
    pub async fn requeue(&self, which: Requeue) -> Result<u64, RedisError> {
        let mut left = match which {
            Requeue::Count(n) => n,
            Requeue::All => u64::MAX,
        };
        let mut moved = 0;
        while left > 0 {
            let n = left.min(REQUEUE_CHUNK);
            let v: Value = self
                .client
                .lrange(&self.keys.dead, 0, n as i64 - 1)
                .await
                .map_err(RedisError::cmd("LRANGE"))?;
            let records = bytes_array("LRANGE", v)?;
            if records.is_empty() {
                break;
            }
            let mut args = vec![Value::from(self.mode.as_str())];
            for r in &records {
                // An unparseable record is requeued as-is: it will be dead-lettered
                // again with a proper record instead of blocking the requeue.
                let raw = DeadLetter::parse(r)
                    .map(|d| d.raw)
                    .unwrap_or_else(|_| r.clone());
                args.push(Value::Bytes(r.clone()));
                args.push(Value::Bytes(raw));
            }
            let v = REQUEUE
                .run(
                    &self.client.with_options(&once(self.timeout)),
                    vec![self.keys.dead.clone(), self.keys.source.clone()],
                    args,
                )
                .await?;
            let k = int_of("requeue-script", v)?.max(0) as u64;
            moved += k;
            left = left.saturating_sub(k);
            if k < records.len() as u64 {
                // Someone else changed the head meanwhile; read again.
                if k == 0 {
                    break;
                }
            }
        }
        if moved > 0 {
            tracing::info!(items = moved, key = %self.keys.dead, "redis: requeued dead letters");
        }
        Ok(moved)
    }
}
