//! The producer side, for Rust programs (replay, tests, benchmarks): adds
//! items exactly the way the NEMO plugin does.

use bytes::Bytes;
use fred::prelude::*;

use crate::conn::{Script, int_of};
use crate::{Keys, Mode, Redis, RedisError};

/// Push many items in one round trip: LPUSH each ARGV in order (list), XADD (stream), PUBLISH (pubsub).
static PUSH_MANY: Script = Script::new(
    "push-many",
    r#"local n = 0
for i = 2, #ARGV do
  if ARGV[1] == 'stream' then
    redis.call('XADD', KEYS[1], '*', 'item', ARGV[i])
  elseif ARGV[1] == 'pubsub' then
    redis.call('PUBLISH', KEYS[1], ARGV[i])
  else
    redis.call('LPUSH', KEYS[1], ARGV[i])
  end
  n = n + 1
end
return n"#,
);

/// Adds items to the queue: `LPUSH` in list mode (like the plugin), `XADD
/// key * item <json>` in stream mode, `PUBLISH` in pub/sub mode.
///
/// ```no_run
/// # async fn f(redis: nemo_redis::Redis) -> Result<(), nemo_redis::RedisError> {
/// let producer = redis.producer();
/// producer.enqueue_raw(br#"{"topic": "nemo/tools/1/enabled", "payload": "{}", "qos": 1}"#).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    client: Client,
    keys: Keys,
    mode: Mode,
}

impl Producer {
    pub(crate) fn new(redis: &Redis) -> Self {
        Producer {
            client: redis.client.clone(),
            keys: redis.keys.clone(),
            mode: redis.cfg.mode,
        }
    }

    /// Add one validated item (its JSON in the plugin's format).
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails.
    pub async fn enqueue(&self, item: &nemo_events::QueueItem) -> Result<(), RedisError> {
        self.enqueue_raw(item.to_json().as_bytes()).await
    }

    /// Add raw bytes as an item (anything: tests of bad input, replay of recordings).
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails.
    pub async fn enqueue_raw(&self, raw: &[u8]) -> Result<(), RedisError> {
        let v = Value::Bytes(Bytes::copy_from_slice(raw));
        match self.mode {
            Mode::List => {
                let _: i64 = self
                    .client
                    .lpush(&self.keys.source, v)
                    .await
                    .map_err(RedisError::cmd("LPUSH"))?;
            }
            Mode::Stream => {
                let _: Value = self
                    .client
                    .xadd(&self.keys.source, false, None, "*", vec![("item", v)])
                    .await
                    .map_err(RedisError::cmd("XADD"))?;
            }
            Mode::Pubsub => {
                let _: i64 = self
                    .client
                    .publish(&self.keys.source, v)
                    .await
                    .map_err(RedisError::cmd("PUBLISH"))?;
            }
        }
        Ok(())
    }

    /// Add many raw items in order, one script call per 1,000 (fast backlog setup).
    /// Returns how many were added.
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails (earlier chunks stay added).
    pub async fn enqueue_raw_many<B: AsRef<[u8]>>(&self, items: &[B]) -> Result<u64, RedisError> {
        let mut n = 0;
        for chunk in items.chunks(1_000) {
            let mut args = Vec::with_capacity(chunk.len() + 1);
            args.push(Value::from(self.mode.as_str()));
            args.extend(
                chunk
                    .iter()
                    .map(|b| Value::Bytes(Bytes::copy_from_slice(b.as_ref()))),
            );
            let v = PUSH_MANY
                .run(&self.client, vec![self.keys.source.clone()], args)
                .await?;
            n += int_of("push-many", v)?.max(0) as u64;
        }
        Ok(n)
    }
}
