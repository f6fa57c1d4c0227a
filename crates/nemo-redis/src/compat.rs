//! Keys the NEMO plugin (PyPI `nemo-mqtt-bridge` 1.x) already reads and writes.
//!
//! - `NEMO_mqtt_bridge_status`: the bridge writes `connected` or `disconnected`
//!   with `SETEX 90`; the plugin's admin page shows it. If the bridge dies the
//!   key expires, so "unknown" is shown instead of a stale `connected`. A
//!   [`StatusRefresher`] rewrites it every 30 s.
//! - `NEMO_mqtt_bridge_control`: the plugin `LPUSH`es commands such as
//!   `reload_config`; the bridge pops them from the other end (`RPOP`/`BRPOP`,
//!   oldest first). Unknown commands are reported, never fatal.

use std::fmt;
use std::time::Duration;

use fred::prelude::*;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::conn::{bytes_of, custom};
use crate::error::RedisError;
pub use crate::keys::{CONTROL_KEY, STATUS_KEY};
/// Expiry of the status key, seconds.
pub const STATUS_TTL_SECS: i64 = 90;
/// How often [`StatusRefresher`] rewrites the status key.
pub const STATUS_REFRESH: Duration = Duration::from_secs(30);

/// The bridge's broker connection state as the plugin understands it.
///
/// ```
/// assert_eq!(nemo_redis::BridgeStatus::Connected.as_str(), "connected");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeStatus {
    /// Connected to the MQTT broker.
    Connected,
    /// Not connected.
    Disconnected,
}

impl BridgeStatus {
    /// The stored value.
    pub fn as_str(self) -> &'static str {
        match self {
            BridgeStatus::Connected => "connected",
            BridgeStatus::Disconnected => "disconnected",
        }
    }
}

impl fmt::Display for BridgeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writer of the status key.
#[derive(Debug, Clone)]
pub struct StatusKey {
    client: Client,
    key: String,
}

impl StatusKey {
    /// A writer of `key` (normally [`STATUS_KEY`]).
    pub fn new(client: Client, key: String) -> Self {
        StatusKey { client, key }
    }

    /// The key name.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// `SETEX key 90 <status>`.
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails.
    pub async fn set(&self, status: BridgeStatus) -> Result<(), RedisError> {
        self.client
            .set::<(), _, _>(
                &self.key,
                status.as_str(),
                Some(Expiration::EX(STATUS_TTL_SECS)),
                None,
                false,
            )
            .await
            .map_err(RedisError::cmd("SETEX"))
    }

    /// Start a task that writes the status now, on every change, and every
    /// [`STATUS_REFRESH`] (failures are logged and retried at the next tick).
    pub fn spawn_refresher(self, initial: BridgeStatus) -> StatusRefresher {
        StatusRefresher::spawn(self, initial, STATUS_REFRESH)
    }
}

/// Background refresher of the status key. Dropping it stops the task (the
/// key then expires within 90 s); prefer [`stop`](Self::stop) with a final status.
#[derive(Debug)]
pub struct StatusRefresher {
    tx: watch::Sender<BridgeStatus>,
    task: JoinHandle<StatusKey>,
}

impl StatusRefresher {
    /// Refresh every `period` (tests use a short one).
    pub fn spawn(key: StatusKey, initial: BridgeStatus, period: Duration) -> Self {
        let (tx, mut rx) = watch::channel(initial);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = rx.changed() => if changed.is_err() { return key; }
                }
                let status = *rx.borrow_and_update();
                if let Err(e) = key.set(status).await {
                    tracing::warn!(error = %e, key = %key.key, "redis: status key write failed");
                }
            }
        });
        StatusRefresher { tx, task }
    }

    /// Change the status (written at once).
    pub fn set(&self, status: BridgeStatus) {
        let _ = self.tx.send(status);
    }

    /// Stop refreshing and write `last` once more.
    ///
    /// # Errors
    /// [`RedisError::Command`] if the final write fails.
    pub async fn stop(self, last: BridgeStatus) -> Result<(), RedisError> {
        let StatusRefresher { tx, task } = self;
        drop(tx);
        match task.await {
            Ok(key) => key.set(last).await,
            Err(_) => Ok(()),
        }
    }
}

/// A command from the control list.
///
/// ```
/// use nemo_redis::ControlCommand;
/// assert_eq!(ControlCommand::parse(b"reload_config"), ControlCommand::ReloadConfig);
/// assert_eq!(ControlCommand::parse(b" reload_config\n"), ControlCommand::ReloadConfig);
/// assert_eq!(ControlCommand::parse(b"explode"), ControlCommand::Unknown("explode".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlCommand {
    /// Reload the configuration (reconnect to the broker with new settings).
    ReloadConfig,
    /// Anything else, as received (lossy UTF-8). Report it and carry on.
    Unknown(String),
}

impl ControlCommand {
    /// Parse a raw list item.
    pub fn parse(raw: &[u8]) -> Self {
        let s = String::from_utf8_lossy(raw);
        match s.trim() {
            "reload_config" => ControlCommand::ReloadConfig,
            _ => ControlCommand::Unknown(s.into_owned()),
        }
    }
}

/// Reader of the control list, with its own (blocking) client.
#[derive(Debug, Clone)]
pub struct ControlList {
    client: Client,
    key: String,
}

impl ControlList {
    /// A reader of `key` on `client` (give it a client of its own if you use [`next`](Self::next)).
    pub fn new(client: Client, key: String) -> Self {
        ControlList { client, key }
    }

    /// Pop the oldest command without waiting (`RPOP`).
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails.
    pub async fn poll(&self) -> Result<Option<ControlCommand>, RedisError> {
        let v: Value = self
            .client
            .rpop(&self.key, None)
            .await
            .map_err(RedisError::cmd("RPOP"))?;
        Ok(self.report(bytes_of(v)))
    }

    /// Wait up to `wait` for the oldest command (`BRPOP`; a timeout is `Ok(None)`).
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails.
    pub async fn next(&self, wait: Duration) -> Result<Option<ControlCommand>, RedisError> {
        if wait < Duration::from_millis(1) {
            return self.poll().await;
        }
        let v: Value = self
            .client
            .with_options(&Options {
                timeout: Some(wait + Duration::from_secs(5)),
                ..Default::default()
            })
            .custom(
                custom("BRPOP", true),
                vec![
                    Value::from(self.key.as_str()),
                    Value::from(format!("{:.3}", wait.as_secs_f64())),
                ],
            )
            .await
            .map_err(RedisError::cmd("BRPOP"))?;
        // Reply: [key, value] or nil.
        let item = match v {
            Value::Array(mut kv) if kv.len() == 2 => kv.pop().and_then(bytes_of),
            _ => None,
        };
        Ok(self.report(item))
    }

    fn report(&self, raw: Option<bytes::Bytes>) -> Option<ControlCommand> {
        let cmd = ControlCommand::parse(&raw?);
        match &cmd {
            ControlCommand::ReloadConfig => {
                tracing::info!(key = %self.key, "redis: control command reload_config")
            }
            ControlCommand::Unknown(s) => {
                tracing::warn!(key = %self.key, command = %s.escape_debug(), "redis: unknown control command ignored")
            }
        }
        Some(cmd)
    }
}
