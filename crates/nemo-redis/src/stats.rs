//! Queue statistics for metrics and the monitor.

use fred::prelude::*;

use crate::conn::{bytes_of, int_of};
use crate::{Keys, Mode, Redis, RedisError};

/// Read-only queue statistics; cheap (`O(1)` commands), safe to poll.
///
/// | | list | stream | pubsub |
/// |---|---|---|---|
/// | `depth` | `LLEN key` | group lag (entries not yet read by the group), else `XLEN` | 0 |
/// | `processing_len` | `LLEN {key}:processing` | group's pending count | 0 |
/// | `dead_len` | `LLEN {key}:dead` | same | same |
#[derive(Debug, Clone)]
pub struct QueueStats {
    client: Client,
    keys: Keys,
    mode: Mode,
    group: String,
}

impl QueueStats {
    pub(crate) fn new(redis: &Redis) -> Self {
        QueueStats {
            client: redis.client.clone(),
            keys: redis.keys.clone(),
            mode: redis.cfg.mode,
            group: redis.cfg.group.clone(),
        }
    }

    /// Items waiting to be taken.
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails.
    pub async fn depth(&self) -> Result<u64, RedisError> {
        match self.mode {
            Mode::List => self.llen(&self.keys.source).await,
            Mode::Pubsub => Ok(0),
            Mode::Stream => {
                if let Some(lag) = self.group_info().await?.and_then(|i| i.lag) {
                    return Ok(lag);
                }
                let n: i64 = self
                    .client
                    .xlen(&self.keys.source)
                    .await
                    .map_err(RedisError::cmd("XLEN"))?;
                Ok(n.max(0) as u64)
            }
        }
    }

    /// Items taken and not yet confirmed (list: in `processing`; stream: pending in the group).
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails.
    pub async fn processing_len(&self) -> Result<u64, RedisError> {
        match self.mode {
            Mode::List => self.llen(&self.keys.processing).await,
            Mode::Pubsub => Ok(0),
            Mode::Stream => Ok(self.group_info().await?.map(|i| i.pending).unwrap_or(0)),
        }
    }

    /// Records in the dead-letter list.
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails.
    pub async fn dead_len(&self) -> Result<u64, RedisError> {
        self.llen(&self.keys.dead).await
    }

    async fn llen(&self, key: &str) -> Result<u64, RedisError> {
        let n: i64 = self
            .client
            .llen(key)
            .await
            .map_err(RedisError::cmd("LLEN"))?;
        Ok(n.max(0) as u64)
    }

    async fn group_info(&self) -> Result<Option<GroupInfo>, RedisError> {
        let v: Value = match self
            .client
            .custom(
                // Routed by the key (the 2nd argument), not by "GROUPS": on a cluster the
                // first-key default sent it to the wrong node, and every MOVED made the client
                // resync the whole topology (seen at each metrics poll in stream mode).
                fred::types::CustomCommand::new_static(
                    "XINFO",
                    fred::types::ClusterHash::Custom(fred::util::redis_keyslot(
                        self.keys.source.as_bytes(),
                    )),
                    false,
                ),
                vec![
                    Value::from("GROUPS"),
                    Value::from(self.keys.source.as_str()),
                ],
            )
            .await
        {
            Ok(v) => v,
            Err(e) if e.details().contains("no such key") => return Ok(None),
            Err(e) => {
                return Err(RedisError::Command {
                    cmd: "XINFO GROUPS",
                    source: e,
                });
            }
        };
        for g in v.into_array() {
            let fields = g.into_array();
            let mut info = GroupInfo {
                name: None,
                pending: 0,
                lag: None,
            };
            let mut it = fields.into_iter();
            while let (Some(k), Some(val)) = (it.next(), it.next()) {
                match bytes_of(k).as_deref() {
                    Some(b"name") => {
                        info.name = bytes_of(val).map(|b| String::from_utf8_lossy(&b).into_owned())
                    }
                    Some(b"pending") => info.pending = int_of("XINFO GROUPS", val)?.max(0) as u64,
                    Some(b"lag") => info.lag = val.as_i64().map(|l| l.max(0) as u64),
                    _ => {}
                }
            }
            if info.name.as_deref() == Some(self.group.as_str()) {
                return Ok(Some(info));
            }
        }
        Ok(None)
    }
}

struct GroupInfo {
    name: Option<String>,
    pending: u64,
    lag: Option<u64>,
}
