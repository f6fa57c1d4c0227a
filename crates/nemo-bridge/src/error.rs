//! [`BridgeError`]: why a bridge could not run.

use crate::config::ConfigError;

/// Why the bridge could not run. Outages after the start are ridden out (reconnects), not
/// returned; these are the errors of the start and of settings that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Redis (the queue of plugin 1.x) could not be used.
    #[error("redis: {0}")]
    Redis(#[from] nemo_redis::RedisError),
    /// NEMO's database (the queue of plugin 2.x) cannot be used.
    #[error("database: {0}")]
    Database(#[from] nemo_db::DbError),
    /// The broker could not be reached or rejected us.
    #[error("mqtt: {0}")]
    Mqtt(#[from] nemo_mqtt::MqttError),
    /// The watchdog thread could not be started.
    #[error("cannot start the watchdog thread: {source}")]
    Watchdog {
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP endpoint could not be started.
    #[error("http: cannot listen on {addr}: {source}")]
    Http {
        /// The configured address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}
