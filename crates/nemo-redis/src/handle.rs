//! What a [`Redis`] handle opens: the source for the configured mode, the producer, the queue
//! statistics, the dead-letter list, the lease, and the plugin's status key and control list.
//!
//! These constructors live here, above every module they reach, rather than in
//! [`crate::conn`] next to the connection: each of those modules uses the connection
//! (its client, its command helpers), so a constructor in `conn` would make `conn` and each
//! of them import one another.

use crate::compat::{ControlList, StatusKey};
use crate::config::Mode;
use crate::conn::Redis;
use crate::dead::DeadLetters;
use crate::error::RedisError;
use crate::lease::Lease;
use crate::list::ListSource;
use crate::producer::Producer;
use crate::pubsub::PubSubSource;
use crate::source::EventSource;
use crate::stats::QueueStats;
use crate::stream::StreamSource;

impl Redis {
    /// The source for the configured mode (recovery of a previous run's
    /// in-flight items happens before its first `take`).
    ///
    /// # Errors
    /// [`RedisError`] when the blocking client cannot connect or the stream
    /// group cannot be created.
    pub async fn source(&self) -> Result<Box<dyn EventSource<Error = RedisError>>, RedisError> {
        Ok(match self.config().mode {
            Mode::List => Box::new(ListSource::new(self).await?),
            Mode::Stream => Box::new(StreamSource::new(self).await?),
            Mode::Pubsub => Box::new(PubSubSource::new(self).await?),
        })
    }

    /// Queue statistics (depth, processing, dead letters).
    pub fn stats(&self) -> QueueStats {
        QueueStats::new(self)
    }

    /// The dead-letter list.
    pub fn dead_letters(&self) -> DeadLetters {
        DeadLetters::new(self)
    }

    /// A producer for the configured key and mode.
    pub fn producer(&self) -> Producer {
        Producer::new(self)
    }

    /// The single-active lease of this queue (`{key}:lease`, `lease_ttl_ms`).
    pub fn lease(&self) -> Lease {
        Lease::new(
            self.client().clone(),
            self.keys().lease.clone(),
            self.config().lease_ttl(),
        )
    }

    /// The compatibility status key (`NEMO_mqtt_bridge_status`).
    pub fn status_key(&self) -> StatusKey {
        StatusKey::new(self.client().clone(), self.config().status_key.clone())
    }

    /// The compatibility control list (`NEMO_mqtt_bridge_control`), with its own
    /// blocking client.
    ///
    /// # Errors
    /// [`RedisError::Connect`] when the blocking client cannot connect.
    pub async fn control_list(&self) -> Result<ControlList, RedisError> {
        Ok(ControlList::new(
            self.blocking_client().await?,
            self.config().control_key.clone(),
        ))
    }
}
