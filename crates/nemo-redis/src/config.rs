//! The `[redis]` configuration table.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How items reach the bridge.
///
/// ```
/// use nemo_redis::Mode;
/// assert_eq!(Mode::default(), Mode::List);
/// assert_eq!(Mode::Stream.as_str(), "stream");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A list the producer `LPUSH`es to (the NEMO plugin's format). At-least-once, FIFO.
    #[default]
    List,
    /// A stream read through a consumer group (entries carry the item in field `item`).
    Stream,
    /// A pub/sub channel. At-most-once: messages sent while disconnected are lost.
    Pubsub,
}

impl Mode {
    /// The configuration spelling (`list`, `stream`, `pubsub`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::List => "list",
            Mode::Stream => "stream",
            Mode::Pubsub => "pubsub",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[redis]` table.
///
/// ```toml
/// [redis]
/// url = "redis://127.0.0.1:6379/1"    # rediss:// = TLS; redis://user:pw@host:port/db
/// mode = "list"                       # list | stream | pubsub
/// key = "nemo_mqtt_events"            # list, stream or channel name
/// group = "nemo-bridge"               # stream mode: consumer group
/// # consumer = "host-1234"            # stream mode: consumer name (default hostname-pid)
/// claim_idle_ms = 30000               # stream mode: reclaim entries idle this long from dead consumers
/// block_ms = 5000                     # longest single blocking read
/// lease = true                        # list mode: single active bridge per queue
/// lease_ttl_ms = 10000
/// ```
///
/// Missing keys take the defaults above; unknown keys are rejected. Call
/// [`validate`](Self::validate) after loading: every error names the key, the
/// value and what is allowed. `Debug` and `Display` never show the password
/// (see [`redacted_url`](Self::redacted_url)).
///
/// ```
/// let cfg: nemo_redis::RedisConfig = serde_json::from_str(
///     r#"{"url": "redis://:s3cret@10.0.0.5:6380/1", "mode": "stream"}"#).unwrap();
/// cfg.validate().unwrap();
/// assert_eq!(cfg.redacted_url(), "redis://:***@10.0.0.5:6380/1");
/// assert!(!format!("{cfg:?}").contains("s3cret"));
/// assert!(!cfg.to_string().contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Server URL: `redis://[user:password@]host[:port][/db]`, `rediss://` for TLS;
    /// `redis-sentinel://` and `redis-cluster://` are understood too (see crate docs).
    pub url: String,
    /// Queue kind.
    pub mode: Mode,
    /// Name of the list, stream or channel. Must not contain `{` or `}` (it becomes the
    /// Redis Cluster hash tag of the companion keys).
    pub key: String,
    /// Stream mode: consumer group.
    pub group: String,
    /// Stream mode: consumer name; `None` = `hostname-pid`.
    pub consumer: Option<String>,
    /// Stream mode: entries pending longer than this in another consumer are claimed.
    pub claim_idle_ms: u64,
    /// Longest single blocking read (`BLMOVE`/`XREADGROUP BLOCK`), in ms; `take`
    /// waits at most `min(wait, block_ms)`. A blocking read returns at once when an item
    /// arrives, and the bridge interrupts it on a stop ([`crate::Interrupter`]): this only sets
    /// how often an idle bridge asks Redis again.
    pub block_ms: u64,
    /// Client-side timeout of non-blocking commands, in ms.
    pub command_timeout_ms: u64,
    /// List mode: hold a lease so only one bridge consumes the queue.
    pub lease: bool,
    /// Lease lifetime in ms; renewed every third of it.
    pub lease_ttl_ms: u64,
    /// Stream mode: `XDEL` entries after `XACK`.
    pub delete_acked: bool,
    /// Pub/sub mode: messages buffered between the subscription and `take`; more are dropped (counted).
    pub pubsub_buffer: usize,
    /// Status key written for the NEMO plugin.
    pub status_key: String,
    /// Control list read for commands from the NEMO plugin.
    pub control_key: String,
    /// TLS: PEM file of an extra CA to trust (empty = system roots only).
    pub ca_file: Option<PathBuf>,
    /// TLS: PEM client certificate for mutual TLS (with `client_key`).
    pub client_cert: Option<PathBuf>,
    /// TLS: PEM (PKCS#8) client key.
    pub client_key: Option<PathBuf>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379/1".into(),
            mode: Mode::List,
            key: "nemo_mqtt_events".into(),
            group: "nemo-bridge".into(),
            consumer: None,
            claim_idle_ms: 30_000,
            block_ms: 5_000,
            command_timeout_ms: 5_000,
            lease: true,
            lease_ttl_ms: 10_000,
            delete_acked: false,
            pubsub_buffer: 10_000,
            status_key: crate::keys::STATUS_KEY.into(),
            control_key: crate::keys::CONTROL_KEY.into(),
            ca_file: None,
            client_cert: None,
            client_key: None,
        }
    }
}

/// A `[redis]` value out of range. The message names the key, the value and
/// what is allowed, e.g. `invalid redis.lease_ttl_ms = 10: must be >= 300`.
///
/// ```
/// let cfg = nemo_redis::RedisConfig { key: "a{b}".into(), ..Default::default() };
/// let err = cfg.validate().unwrap_err();
/// assert_eq!(err.key, "redis.key");
/// assert!(err.to_string().starts_with("invalid redis.key = \"a{b}\""));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {key} = {value}: {allowed}")]
pub struct ConfigError {
    /// Dotted key, e.g. `redis.mode`.
    pub key: &'static str,
    /// The offending value as written (URLs redacted; strings quoted).
    pub value: String,
    /// What is allowed.
    pub allowed: String,
}

impl ConfigError {
    fn new(key: &'static str, value: impl fmt::Display, allowed: impl Into<String>) -> Self {
        ConfigError {
            key,
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }
    fn quoted(key: &'static str, value: &str, allowed: impl Into<String>) -> Self {
        ConfigError {
            key,
            value: format!("{value:?}"),
            allowed: allowed.into(),
        }
    }
}

const SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "redis-cluster",
    "rediss-cluster",
    "redis-sentinel",
    "rediss-sentinel",
    "valkey",
    "valkeys",
    "valkey-cluster",
    "valkeys-cluster",
    "valkey-sentinel",
    "valkeys-sentinel",
];

impl RedisConfig {
    /// Check every value; the first problem is returned.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key, the value and what is allowed.
    ///
    /// ```
    /// let cfg = nemo_redis::RedisConfig { url: "http://x".into(), ..Default::default() };
    /// assert_eq!(cfg.validate().unwrap_err().key, "redis.url");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.redacted_url();
        let scheme = self.url.split("://").next().unwrap_or_default();
        if !self.url.contains("://") || !SCHEMES.contains(&scheme) {
            return Err(ConfigError::quoted(
                "redis.url",
                &url,
                "must start with redis://, rediss:// (TLS), redis-sentinel:// or redis-cluster://",
            ));
        }
        let parsed = fred::types::config::Config::from_url(&self.url);
        if let Err(e) = parsed {
            return Err(ConfigError::quoted(
                "redis.url",
                &url,
                format!("not a usable Redis URL ({})", e.details()),
            ));
        }
        if scheme.ends_with("-cluster") && self.url_db().is_some_and(|db| db != 0) {
            return Err(ConfigError::quoted(
                "redis.url",
                &url,
                "Redis Cluster has only database 0",
            ));
        }
        if self.key.is_empty() || self.key.contains(['{', '}']) || self.key.len() > 512 {
            return Err(ConfigError::quoted(
                "redis.key",
                &self.key,
                "must be 1..=512 bytes without '{' or '}'",
            ));
        }
        if self.group.is_empty() || self.group.contains(char::is_whitespace) {
            return Err(ConfigError::quoted(
                "redis.group",
                &self.group,
                "must be non-empty without spaces",
            ));
        }
        if let Some(c) = &self.consumer
            && (c.is_empty() || c.contains(char::is_whitespace))
        {
            return Err(ConfigError::quoted(
                "redis.consumer",
                c,
                "must be non-empty without spaces",
            ));
        }
        if self.claim_idle_ms < 100 {
            return Err(ConfigError::new(
                "redis.claim_idle_ms",
                self.claim_idle_ms,
                "must be >= 100",
            ));
        }
        if !(1..=300_000).contains(&self.block_ms) {
            return Err(ConfigError::new(
                "redis.block_ms",
                self.block_ms,
                "must be in 1..=300000",
            ));
        }
        if !(100..=600_000).contains(&self.command_timeout_ms) {
            return Err(ConfigError::new(
                "redis.command_timeout_ms",
                self.command_timeout_ms,
                "must be in 100..=600000",
            ));
        }
        if !(300..=3_600_000).contains(&self.lease_ttl_ms) {
            return Err(ConfigError::new(
                "redis.lease_ttl_ms",
                self.lease_ttl_ms,
                "must be in 300..=3600000",
            ));
        }
        if !(1..=10_000_000).contains(&self.pubsub_buffer) {
            return Err(ConfigError::new(
                "redis.pubsub_buffer",
                self.pubsub_buffer,
                "must be in 1..=10000000",
            ));
        }
        if self.status_key.is_empty() {
            return Err(ConfigError::quoted(
                "redis.status_key",
                &self.status_key,
                "must be non-empty",
            ));
        }
        if self.control_key.is_empty() {
            return Err(ConfigError::quoted(
                "redis.control_key",
                &self.control_key,
                "must be non-empty",
            ));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(ConfigError::new(
                "redis.client_cert",
                self.client_cert
                    .as_ref()
                    .map(|p| format!("{:?}", p.display().to_string()))
                    .unwrap_or("unset".into()),
                "client_cert and client_key must be set together",
            ));
        }
        for (key, path) in [
            ("redis.ca_file", &self.ca_file),
            ("redis.client_cert", &self.client_cert),
            ("redis.client_key", &self.client_key),
        ] {
            if let Some(p) = path
                && !p.is_file()
            {
                return Err(ConfigError::quoted(
                    key,
                    &p.display().to_string(),
                    "must be a readable PEM file",
                ));
            }
        }
        Ok(())
    }

    /// The URL with the password (and a `sentinelPassword` query value) replaced by `***`.
    ///
    /// ```
    /// let cfg = nemo_redis::RedisConfig { url: "rediss://bridge:p%40ss@h:1/2".into(), ..Default::default() };
    /// assert_eq!(cfg.redacted_url(), "rediss://bridge:***@h:1/2");
    /// ```
    pub fn redacted_url(&self) -> String {
        nemo_config::redact_url(&self.url)
    }

    /// The consumer name in stream mode: `consumer`, or `hostname-pid`.
    ///
    /// ```
    /// let cfg = nemo_redis::RedisConfig::default();
    /// assert!(cfg.consumer_name().ends_with(&format!("-{}", std::process::id())));
    /// ```
    pub fn consumer_name(&self) -> String {
        self.consumer
            .clone()
            .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()))
    }

    /// `claim_idle_ms` as a duration.
    pub fn claim_idle(&self) -> Duration {
        Duration::from_millis(self.claim_idle_ms)
    }

    /// `block_ms` as a duration.
    pub fn block(&self) -> Duration {
        Duration::from_millis(self.block_ms)
    }

    /// `command_timeout_ms` as a duration.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }

    /// `lease_ttl_ms` as a duration.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }

    /// The database index in the URL path, if any.
    fn url_db(&self) -> Option<u8> {
        let rest = self.url.split_once("://")?.1;
        let path = rest.split(['?', '#']).next()?;
        let (_, db) = path.split_once('/')?;
        db.parse().ok()
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("mode", &self.mode)
            .field("key", &self.key)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .field("claim_idle_ms", &self.claim_idle_ms)
            .field("block_ms", &self.block_ms)
            .field("command_timeout_ms", &self.command_timeout_ms)
            .field("lease", &self.lease)
            .field("lease_ttl_ms", &self.lease_ttl_ms)
            .field("delete_acked", &self.delete_acked)
            .field("pubsub_buffer", &self.pubsub_buffer)
            .field("status_key", &self.status_key)
            .field("control_key", &self.control_key)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .finish()
    }
}

impl fmt::Display for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} mode={} key={}",
            self.redacted_url(),
            self.mode,
            self.key
        )
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "nemo-bridge".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_design() {
        let c = RedisConfig::default();
        c.validate().unwrap();
        assert_eq!(c.url, "redis://127.0.0.1:6379/1");
        assert_eq!((c.mode, c.key.as_str()), (Mode::List, "nemo_mqtt_events"));
        assert_eq!((c.claim_idle_ms, c.lease_ttl_ms), (30_000, 10_000));
    }

    #[test]
    fn the_url_is_shown_redacted() {
        let url = |u: &str| RedisConfig {
            url: u.into(),
            ..Default::default()
        };
        assert_eq!(url("redis://u:pw@h").redacted_url(), "redis://u:***@h");
        assert_eq!(url("redis://u@h/1").redacted_url(), "redis://u@h/1");
        let sentinel =
            url("redis-sentinel://:a@h:26379/1?sentinelServiceName=m&sentinelPassword=b");
        assert_eq!(
            sentinel.redacted_url(),
            "redis-sentinel://:***@h:26379/1?sentinelServiceName=m&sentinelPassword=***"
        );
        for shown in [format!("{sentinel}"), format!("{sentinel:?}")] {
            assert!(!shown.contains(":a@") && !shown.contains("=b"), "{shown}");
        }
    }

    #[test]
    fn errors_name_key_value_allowed() {
        let bad = |c: RedisConfig| c.validate().unwrap_err();
        let e = bad(RedisConfig {
            url: "redis://:pw@h:99999/1".into(),
            ..Default::default()
        });
        assert_eq!(e.key, "redis.url");
        assert!(!e.to_string().contains("pw"), "{e}");
        let e = bad(RedisConfig {
            url: "mqtt://h".into(),
            ..Default::default()
        });
        assert_eq!(
            e.to_string(),
            "invalid redis.url = \"mqtt://h\": must start with redis://, rediss:// (TLS), redis-sentinel:// or redis-cluster://"
        );
        let e = bad(RedisConfig {
            lease_ttl_ms: 10,
            ..Default::default()
        });
        assert_eq!(
            e.to_string(),
            "invalid redis.lease_ttl_ms = 10: must be in 300..=3600000"
        );
        let e = bad(RedisConfig {
            key: String::new(),
            ..Default::default()
        });
        assert_eq!(e.key, "redis.key");
        let e = bad(RedisConfig {
            url: "redis-cluster://h:7000/3".into(),
            ..Default::default()
        });
        assert!(e.to_string().contains("database 0"), "{e}");
        let e = bad(RedisConfig {
            group: "a b".into(),
            ..Default::default()
        });
        assert_eq!(e.key, "redis.group");
        let e = bad(RedisConfig {
            client_key: Some("/nope".into()),
            ..Default::default()
        });
        assert_eq!(e.key, "redis.client_cert");
        let e = bad(RedisConfig {
            ca_file: Some("/definitely/not/here.pem".into()),
            ..Default::default()
        });
        assert_eq!(e.key, "redis.ca_file");
    }

    #[test]
    fn mode_and_unknown_keys_rejected_by_serde() {
        let e = serde_json::from_str::<RedisConfig>(r#"{"mode": "queue"}"#).unwrap_err();
        assert!(e.to_string().contains("list"), "{e}");
        let e = serde_json::from_str::<RedisConfig>(r#"{"urll": "x"}"#).unwrap_err();
        assert!(e.to_string().contains("urll"), "{e}");
        let c: RedisConfig = serde_json::from_str(r#"{"mode": "pubsub", "key": "k"}"#).unwrap();
        assert_eq!(c.mode, Mode::Pubsub);
    }
}
