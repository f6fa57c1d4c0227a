//! The Redis side of nemo-mqtt: a reliable consumer of the queue the NEMO
//! plugin writes to, on [fred](https://docs.rs/fred) and tokio.
//!
//! # The one design decision: an item leaves Redis only after it was confirmed
//!
//! The Python bridge this replaces popped an item (`BLPOP`) and then
//! published it: every event taken during a broker outage, or in flight when
//! it crashed, was lost. Here, taking an item **moves** it, atomically, into a
//! processing list (list mode) or a consumer group's pending list (stream
//! mode); it is deleted only when the bridge calls [`EventSource::ack`] after
//! the broker confirmed it. Whatever happens in between — a crash, a kill -9,
//! a lost connection, a Redis restart — the item is still in Redis and is
//! delivered again, first and in order. The price is that the in-flight
//! window may be delivered twice (at-least-once), which MQTT consumers of
//! retained state tolerate; a lost "tool disabled" event they do not.
//!
//! # Pieces
//!
//! - [`EventSource`]: the seam the bridge codes against — `take`, `ack`,
//!   `nack`, `dead_letter`. Implementations: [`ListSource`] (default, the
//!   plugin's `LPUSH` list, FIFO), [`StreamSource`] (consumer group),
//!   [`PubSubSource`] (at-most-once).
//! - [`DeadLetters`]: bad items with the reason, in `{key}:dead`; requeue.
//! - [`Lease`], [`LeaseKeeper`]: one active bridge per queue.
//! - [`StatusKey`], [`StatusRefresher`], [`ControlList`]: the plugin's status and control keys.
//! - [`Producer`]: enqueue like the plugin does, for Rust programs.
//! - [`QueueStats`]: depth, processing and dead-letter counts for metrics.
//! - [`Redis`]: the connected handle that makes all of the above.
//!
//! # Keys
//!
//! For `key = "nemo_mqtt_events"`: the list/stream/channel `nemo_mqtt_events`,
//! the processing list `{nemo_mqtt_events}:processing`, dead letters
//! `{nemo_mqtt_events}:dead`, the lease `{nemo_mqtt_events}:lease`. The braces
//! are a Redis Cluster *hash tag*: all of them hash to the slot of
//! `nemo_mqtt_events`, so the Lua scripts that touch several of them work on a
//! cluster too. See [`Keys`].
//!
//! # Connecting: TLS, Sentinel, Cluster
//!
//! `redis.url` is handed to fred's `Config::from_url`:
//!
//! - `redis://[user:password@]host[:port][/db]` — plain TCP; NEMO uses db 1.
//! - `rediss://…` — TLS (native-tls). A private CA: `ca_file`; mutual TLS:
//!   `client_cert` + `client_key` (PEM, PKCS#8 key). The host name is verified.
//! - **Sentinel**: `redis-sentinel://[user:pw@]sentinel1:26379/1?sentinelServiceName=mymaster&node=sentinel2:26379&node=sentinel3:26379`
//!   (`rediss-sentinel://` for TLS). fred asks the sentinels for the current
//!   master and follows fail-overs on reconnect. Sentinels or a master not up
//!   yet are transient ([`RedisError::is_transient`]): [`Redis::connect_retrying`]
//!   waits for them, whatever comes up first.
//! - **Cluster**: `redis-cluster://[user:pw@]node1:7000?node=node2:7000&node=node3:7000`
//!   (`rediss-cluster://` for TLS). Only database 0 exists on a cluster, so the
//!   plugin must write to db 0 there. Thanks to the hash tags every script
//!   touches a single slot.
//!
//! Passwords are never logged and are redacted in `Debug`/`Display`
//! ([`RedisConfig::redacted_url`]).
//!
//! # Reconnecting
//!
//! fred reconnects only when a reconnect policy is set; [`Redis::connect`]
//! always sets one from the `[backoff]` table ([`reconnect_policy`]) and
//! retries forever. Commands that change the queue are sent at most once: if
//! the connection breaks while one is in flight, the caller gets an error and
//! the source resynchronises before its next take (see [`list`]). Blocking
//! reads run on their own client, so they never delay acks.
//!
//! ```no_run
//! use std::time::Duration;
//! use nemo_redis::{EventSource, Redis, RedisConfig};
//!
//! # async fn run() -> Result<(), nemo_redis::RedisError> {
//! let cfg = RedisConfig::default();
//! let redis = Redis::connect(&cfg, &nemo_backoff::BackoffConfig::default()).await?;
//! let mut source = redis.source().await?;
//! loop {
//!     let batch = source.take(256, Duration::from_secs(1)).await?;
//!     // publish each item, wait for the broker's confirmation ...
//!     source.ack(&batch).await?;
//! }
//! # }
//! ```
#![deny(missing_docs)]

pub mod compat;
mod config;
mod conn;
pub mod dead;
mod error;
mod handle;
mod keys;
pub mod lease;
pub mod list;
mod producer;
pub mod pubsub;
pub mod source;
mod stats;
pub mod stream;

pub use compat::{BridgeStatus, ControlCommand, ControlList, StatusKey, StatusRefresher};
pub use config::{ConfigError, Mode, RedisConfig};
pub use conn::{Redis, reconnect_policy};
pub use dead::{DeadLetter, DeadLetters, Requeue};
pub use error::RedisError;
pub use keys::Keys;
pub use lease::{Lease, LeaseKeeper};
pub use list::ListSource;
pub use producer::Producer;
pub use pubsub::PubSubSource;
#[cfg(feature = "mock")]
pub use source::MockEventSource;
pub use source::{Delivery, DeliveryId, EventSource, Interrupter};
pub use stats::QueueStats;
pub use stream::StreamSource;
