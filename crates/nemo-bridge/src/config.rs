//! The bridge configuration: one schema, layered with figment.
//!
//! Layers, weakest first: built-in defaults < the TOML file given with `--config` < NEMO's
//! active configuration row (when `[nemo] database_url` is set; see [`crate::settings`]) <
//! environment variables `NEMO_<SECTION>__<KEY>` (e.g. `NEMO_MQTT__URL`, `NEMO_HMAC__KEY`) <
//! command-line flags. [`figment()`] builds the file and environment layers so that the
//! `monitor` and `replay` programs read the same files and variables; [`layered`] puts NEMO's
//! row in between; the binary merges its flags ([`flag`]) on top and calls
//! [`Config::from_figment`]. [`Config::to_toml_with_sources`] says which layer gave each value.
//!
//! Loading checks types and rejects unknown keys (a typo must not pass silently);
//! [`Config::validate`] checks values. Every problem is ONE line naming the key, the value and
//! what is allowed. Secrets (`mqtt.password`, `hmac.key`, passwords inside URLs) never appear in
//! `Debug` output; [`Config::redacted`] gives a copy fit for printing.
//!
//! ```
//! use nemo_bridge::config::{figment, Config};
//! use figment::providers::{Format, Toml};
//!
//! let fig = figment(None).merge(Toml::string("[mqtt]\nurl = \"mqtt://127.0.0.1:1884\""));
//! let cfg = Config::from_figment(fig)?;
//! cfg.validate()?;
//! assert_eq!(cfg.mqtt.url, ["mqtt://127.0.0.1:1884"]);
//! assert_eq!(cfg.http.listen, "127.0.0.1:9187");
//! # Ok::<(), nemo_bridge::config::ConfigError>(())
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::{Figment, Provider};
use nemo_backoff::BackoffConfig;
use nemo_config::{KeyFileError, Named, Secret, annotate_sources, redact_url};
use nemo_db::NemoConfig;
use nemo_mqtt::MqttConfig;
use nemo_redis::{Mode, RedisConfig};
use nemo_topics::{TopicMapper, TopicsConfig};
use serde::{Deserialize, Serialize};

/// A configuration that cannot be used. The message is one line naming the key, the value and
/// what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file or environment could not be read or has a wrong type or an unknown key.
    #[error("configuration: {0}")]
    Load(String),
    /// A value out of range.
    #[error("invalid {key} = {value}: {allowed}")]
    Invalid {
        /// Dotted key, e.g. `http.listen`.
        key: String,
        /// The value as written (secrets never shown).
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A value rejected by one of the library crates (their messages already name the key).
    #[error("{0}")]
    Section(String),
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        // One line naming the key and the layer (nemo-config's wording).
        ConfigError::Load(nemo_config::LoadError::from(e).0)
    }
}

/// `[hmac]`: the shared section of every program ([`nemo_config::HmacConfig`]).
pub use nemo_config::HmacConfig;

impl From<KeyFileError> for ConfigError {
    /// An unusable `hmac.key_file`, named as every configuration error is.
    fn from(e: KeyFileError) -> Self {
        let allowed = match &e {
            KeyFileError::Unreadable { source, .. } => {
                format!("must be a readable file ({source})")
            }
            KeyFileError::Empty { .. } => "must contain a non-empty key".into(),
        };
        ConfigError::Invalid {
            key: "hmac.key_file".into(),
            value: format!("{:?}", e.path().display().to_string()),
            allowed,
        }
    }
}

/// `[status]`: the retained online/offline topic (also the last will).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusConfig {
    /// Topic; unset = `mqtt.status_topic` (default `nemo/bridge/status`); empty = no status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// `[http]`: the operations endpoint (`/healthz`, `/readyz`, `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address `host:port`; empty = no HTTP endpoint.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9187".into(),
        }
    }
}

/// `[lease]`: single active bridge per queue (list mode).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaseConfig {
    /// On/off; unset = `redis.lease` (default on). Only list mode uses a lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Lease lifetime in ms; unset = `redis.lease_ttl_ms` (default 10000). A standby takes over
    /// at most this long after the active bridge died.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// `[shutdown]`: graceful stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// On SIGINT/SIGTERM, wait this long for outstanding confirmations before returning the
    /// rest to the queue.
    pub drain_timeout_s: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_timeout_s: 10,
        }
    }
}

/// The whole bridge configuration. See `docs/configuration.md` for every key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[redis]`: the queue.
    pub redis: RedisConfig,
    /// `[mqtt]`: the broker.
    pub mqtt: MqttConfig,
    /// `[hmac]`: payload signing.
    pub hmac: HmacConfig,
    /// `[topics]`: topic mapping.
    pub topics: TopicsConfig,
    /// `[backoff]`: reconnect and retry delays.
    pub backoff: BackoffConfig,
    /// `[status]`: retained status topic.
    pub status: StatusConfig,
    /// `[http]`: health and metrics endpoint.
    pub http: HttpConfig,
    /// `[lease]`: single active bridge.
    pub lease: LeaseConfig,
    /// `[shutdown]`: graceful stop.
    pub shutdown: ShutdownConfig,
    /// `[nemo]`: NEMO's database (the MQTT configuration page's settings).
    pub nemo: NemoConfig,
    /// `[display]`: feed the tool displays directly (`nemo/esp32/{tool_id}/status`).
    pub display: nemo_display::DisplayConfig,
    /// The event filters of NEMO's page (read from its database, never from the file).
    #[serde(skip)]
    pub filters: crate::filters::EventFilters,
}

/// A command-line flag's value for `key` (dotted, e.g. `mqtt.url`), as a layer named
/// "command line" ([`nemo_config::flag`]). Merge it on top of [`layered`].
///
/// ```
/// use nemo_bridge::config::{flag, figment, Config};
/// let fig = figment(None).merge(flag("mqtt.client_id", "from-flag"));
/// assert_eq!(Config::from_figment(fig.clone()).unwrap().mqtt.client_id, "from-flag");
/// assert_eq!(fig.find_metadata("mqtt.client_id").unwrap().name, "command line");
/// ```
pub fn flag<T: Serialize>(key: &str, value: T) -> impl Provider {
    nemo_config::flag(key, value)
}

/// Defaults < TOML file at `config_path` (if any) < `NEMO_<SECTION>__<KEY>` environment.
///
/// The environment layer only looks at variables with a `__` after the prefix, so unrelated
/// `NEMO_*` variables are ignored. Callers merge their command-line flags on top (e.g.
/// `fig.merge(flag("mqtt.url", url))`).
///
/// ```
/// let fig = nemo_bridge::config::figment(None);
/// let cfg = nemo_bridge::config::Config::from_figment(fig).unwrap();
/// assert_eq!(cfg.redis.key, "nemo_mqtt_events");
/// ```
pub fn figment(config_path: Option<&Path>) -> Figment {
    layered(config_path, None::<Figment>)
}

/// Defaults < TOML file < NEMO's configuration row (if given; the bridge passes its
/// [`RowLayer`](crate::settings::RowLayer)) < environment: [`figment()`] with the row's layer in
/// its place ([`nemo_config::layered`]).
///
/// ```
/// let fig = nemo_bridge::config::figment(None);
/// assert_eq!(fig.find_metadata("mqtt.qos").unwrap().name, "built-in default");
/// ```
pub fn layered<R: Provider>(config_path: Option<&Path>, row: Option<R>) -> Figment {
    nemo_config::layered(
        Named::new(
            nemo_config::DEFAULTS,
            figment::providers::Serialized::defaults(Config::default()),
        ),
        config_path,
        row,
    )
}

impl Config {
    /// Extract from a figment (see [`figment()`]).
    ///
    /// # Errors
    /// [`ConfigError::Load`] for a wrong type, an unknown key or an unreadable file.
    pub fn from_figment(fig: Figment) -> Result<Config, ConfigError> {
        Ok(fig.extract()?)
    }

    /// [`figment()`] + [`from_figment`](Self::from_figment) + [`validate`](Self::validate).
    ///
    /// # Errors
    /// The first problem found.
    pub fn load(config_path: Option<&Path>) -> Result<Config, ConfigError> {
        let cfg = Config::from_figment(figment(config_path))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check every value; the first problem is returned as one line.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key, the value and what is allowed.
    ///
    /// ```
    /// let mut cfg = nemo_bridge::config::Config::default();
    /// cfg.http.listen = "nowhere".into();
    /// assert_eq!(cfg.validate().unwrap_err().to_string(),
    ///     "invalid http.listen = \"nowhere\": must be host:port with an IP address, e.g. 127.0.0.1:9187 (empty = off)");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(ttl) = self.lease.ttl_ms
            && !(300..=3_600_000).contains(&ttl)
        {
            return Err(ConfigError::Invalid {
                key: "lease.ttl_ms".into(),
                value: ttl.to_string(),
                allowed: "must be in 300..=3600000".into(),
            });
        }
        let mut redis = self.redis.clone();
        self.apply_lease(&mut redis);
        redis
            .validate()
            .map_err(|e| ConfigError::Section(e.to_string()))?;
        self.mqtt_config()
            .validate()
            .map_err(|e| ConfigError::Section(e.to_string()))?;
        self.backoff
            .validate()
            .map_err(|e| ConfigError::Section(e.to_string()))?;
        TopicMapper::from_config(&self.topics).map_err(|e| ConfigError::Section(e.to_string()))?;
        if !self.hmac.key.is_empty()
            && self
                .hmac
                .key_file
                .as_ref()
                .is_some_and(|p| !p.as_os_str().is_empty())
        {
            return Err(ConfigError::Invalid {
                key: "hmac.key_file".into(),
                value: "(set)".into(),
                allowed: "give either hmac.key or hmac.key_file, not both".into(),
            });
        }
        self.hmac.key_bytes()?;
        if !self.http.listen.is_empty() && self.http.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::Invalid {
                key: "http.listen".into(),
                value: format!("{:?}", self.http.listen),
                allowed: "must be host:port with an IP address, e.g. 127.0.0.1:9187 (empty = off)"
                    .into(),
            });
        }
        self.nemo
            .validate()
            .map_err(|e| ConfigError::Section(e.to_string()))?;
        self.display
            .validate()
            .map_err(|e| ConfigError::Section(e.to_string()))?;
        if self.shutdown.drain_timeout_s > 3_600 {
            return Err(ConfigError::Invalid {
                key: "shutdown.drain_timeout_s".into(),
                value: self.shutdown.drain_timeout_s.to_string(),
                allowed: "must be in 0..=3600".into(),
            });
        }
        Ok(())
    }

    fn apply_lease(&self, redis: &mut RedisConfig) {
        if let Some(on) = self.lease.enabled {
            redis.lease = on;
        }
        if let Some(ttl) = self.lease.ttl_ms {
            redis.lease_ttl_ms = ttl;
        }
    }

    /// The `[redis]` table with the `[lease]` overrides applied.
    pub fn redis_config(&self) -> RedisConfig {
        let mut redis = self.redis.clone();
        self.apply_lease(&mut redis);
        redis
    }

    /// True when this bridge must hold the single-active lease (list mode with the lease on).
    pub fn lease_enabled(&self) -> bool {
        let r = self.redis_config();
        r.mode == Mode::List && r.lease
    }

    /// The lease lifetime.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.redis_config().lease_ttl_ms)
    }

    /// The `[mqtt]` table with the `[status] topic` override applied, and with
    /// `when_disconnected = "fail"` whatever the file says.
    ///
    /// The bridge never lets the MQTT client buffer messages while the broker is away: the
    /// items wait in the queue instead (bounded memory), and after the reconnect the pipeline
    /// republishes from the first unconfirmed item, in order. A client-side buffer would be
    /// flushed on reconnect *before* that republish, so newer events would overtake older
    /// ones (measured: 2–10 first deliveries out of order per broker kill).
    pub fn mqtt_config(&self) -> MqttConfig {
        let mut mqtt = self.mqtt.clone();
        if let Some(t) = &self.status.topic {
            mqtt.status_topic = t.clone();
        }
        mqtt.when_disconnected = nemo_mqtt::WhenDisconnected::Fail;
        // With a key, the status and its last will are signed like every other message
        // (validate() has already checked that a key file can be read).
        mqtt.status_hmac_key = self
            .hmac
            .key_bytes()
            .ok()
            .flatten()
            .map(|k| Secret::new(String::from_utf8_lossy(&k)));
        mqtt
    }

    /// `shutdown.drain_timeout_s` as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown.drain_timeout_s)
    }

    /// How long a running pipeline may go without a turn of its loop before the
    /// [watchdog](crate::watchdog) declares it stalled: twice the longest single wait the
    /// pipeline can legitimately make (a confirmation, a blocking Redis read plus its timeout,
    /// the drain at a stop), plus 30 s. 90 s with the defaults.
    ///
    /// ```
    /// let cfg = nemo_bridge::config::Config::default();
    /// assert_eq!(cfg.stall_limit(), std::time::Duration::from_secs(90));
    /// ```
    pub fn stall_limit(&self) -> Duration {
        let redis = self.redis_config();
        let longest = self
            .mqtt
            .confirm_timeout()
            .max(redis.command_timeout() + redis.block() + Duration::from_secs(5))
            .max(self.drain_timeout());
        longest * 2 + Duration::from_secs(30)
    }

    /// A copy with every secret replaced by `***`: passwords, HMAC key, passwords in URLs.
    ///
    /// ```
    /// let mut cfg = nemo_bridge::config::Config::default();
    /// cfg.mqtt.url = vec!["mqtt://bob:pw1@broker:1883".into()];
    /// cfg.mqtt.password = nemo_config::Secret::new("pw2");
    /// cfg.redis.url = "redis-sentinel://:pw3@s1:26379/1?sentinelServiceName=m&sentinelPassword=pw5".into();
    /// cfg.hmac.key = nemo_config::Secret::new("pw4");
    /// cfg.nemo.database_url = "postgres://nemo:pw6@db/nemo?password=pw7".into();
    /// let text = cfg.redacted().to_toml();
    /// for pw in ["pw1", "pw2", "pw3", "pw4", "pw5", "pw6", "pw7"] { assert!(!text.contains(pw), "{text}"); }
    /// assert!(text.contains("mqtt://bob:***@broker:1883"));
    /// ```
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        c.redis.url = redact_url(&c.redis.url);
        c.nemo.database_url = redact_url(&c.nemo.database_url);
        c.mqtt.url = c.mqtt.url.iter().map(|u| redact_url(u)).collect();
        c.mqtt.password = c.mqtt.password.redacted();
        c.mqtt.status_hmac_key = c.mqtt.status_hmac_key.as_ref().map(Secret::redacted);
        c.hmac.key = c.hmac.key.redacted();
        c.display.password = c.display.password.redacted();
        c
    }

    /// The configuration as TOML (call on [`redacted`](Self::redacted) before printing).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render as TOML: {e}\n"))
    }

    /// The configuration as TOML, secrets redacted, each value followed by the layer it came
    /// from (`# built-in default`, `# TOML file bridge.toml`, `# NEMO database (… id=3)`,
    /// `# environment NEMO_MQTT__URL`, `# command line`). `fig` is the figment `self` was
    /// extracted from.
    ///
    /// ```
    /// use nemo_bridge::config::{flag, figment, Config};
    /// let fig = figment(None).merge(flag("mqtt.client_id", "x"));
    /// let cfg = Config::from_figment(fig.clone()).unwrap();
    /// let text = cfg.to_toml_with_sources(&fig);
    /// assert!(text.contains("client_id = \"x\"  # command line"), "{text}");
    /// assert!(text.contains("qos = 1  # built-in default"), "{text}");
    /// ```
    pub fn to_toml_with_sources(&self, fig: &Figment) -> String {
        annotate_sources(&self.redacted().to_toml(), fig)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]
    use super::*;
    use figment::Jail;
    use figment::providers::Serialized;

    #[test]
    fn layering_defaults_file_env() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "bridge.toml",
                "[mqtt]\nurl = \"mqtt://127.0.0.1:2000\"\nclient_id = \"from-file\"\n[redis]\nkey = \"q\"\n",
            )?;
            jail.set_env("NEMO_MQTT__CLIENT_ID", "from-env");
            jail.set_env("NEMO_HTTP__LISTEN", "127.0.0.1:9999");
            jail.set_env("NEMO_UNRELATED", "ignored");
            let fig = figment(Some(Path::new("bridge.toml")))
                .merge(Serialized::default("redis.key", "from-flag"));
            let cfg = Config::from_figment(fig).unwrap();
            assert_eq!(cfg.mqtt.url, ["mqtt://127.0.0.1:2000"]);
            assert_eq!(cfg.mqtt.client_id, "from-env");
            assert_eq!(cfg.http.listen, "127.0.0.1:9999");
            assert_eq!(cfg.redis.key, "from-flag");
            assert_eq!(cfg.mqtt.keep_alive_s, 60);
            cfg.validate().unwrap();
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_errors_naming_them() {
        Jail::expect_with(|jail| {
            jail.create_file("b.toml", "[mqtt]\nulr = \"mqtt://x\"\n")?;
            let err = Config::from_figment(figment(Some(Path::new("b.toml")))).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("ulr"), "{msg}");
            assert!(!msg.contains('\n'));
            jail.create_file("c.toml", "[mqqt]\nurl = \"mqtt://x\"\n")?;
            let msg = Config::from_figment(figment(Some(Path::new("c.toml"))))
                .unwrap_err()
                .to_string();
            assert!(msg.contains("mqqt"), "{msg}");
            Ok(())
        });
    }

    #[test]
    fn bad_values_give_one_line_naming_key_and_value() {
        let cases: Vec<(Config, &str)> = vec![
            (
                Config {
                    http: HttpConfig { listen: "x".into() },
                    ..Config::default()
                },
                "http.listen",
            ),
            (
                Config {
                    lease: LeaseConfig {
                        enabled: None,
                        ttl_ms: Some(1),
                    },
                    ..Config::default()
                },
                "lease.ttl_ms",
            ),
            (
                Config {
                    shutdown: ShutdownConfig {
                        drain_timeout_s: 99_999,
                    },
                    ..Config::default()
                },
                "shutdown.drain_timeout_s",
            ),
            (
                Config {
                    hmac: HmacConfig {
                        key: Secret::default(),
                        key_file: Some("/nonexistent/key".into()),
                    },
                    ..Config::default()
                },
                "hmac.key_file",
            ),
        ];
        for (cfg, key) in cases {
            let msg = cfg.validate().unwrap_err().to_string();
            assert!(msg.contains(key), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
        let mut cfg = Config::default();
        cfg.mqtt.qos = 3;
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "mqtt.qos: 3 is not a QoS (allowed: 0, 1, 2)"
        );
        let mut cfg = Config::default();
        cfg.backoff.initial_ms = 0;
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("backoff.initial_ms")
        );
    }

    #[test]
    fn secrets_never_in_debug() {
        let mut cfg = Config::default();
        cfg.hmac.key = Secret::new("hmac-secret-value");
        cfg.mqtt.password = Secret::new("mqtt-secret-value");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hmac-secret-value"));
        assert!(!dbg.contains("mqtt-secret-value"));
    }

    #[test]
    fn hmac_key_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "nemo-fixture-secret\n").unwrap();
        let h = HmacConfig {
            key: Secret::default(),
            key_file: Some(path),
        };
        assert_eq!(h.key_bytes().unwrap().unwrap(), b"nemo-fixture-secret");
    }

    #[test]
    fn lease_section_overrides_redis_keys() {
        let mut cfg = Config::default();
        assert!(cfg.lease_enabled());
        cfg.lease.enabled = Some(false);
        assert!(!cfg.lease_enabled());
        cfg.lease.enabled = None;
        cfg.lease.ttl_ms = Some(2_000);
        assert_eq!(cfg.lease_ttl(), Duration::from_millis(2_000));
        cfg.redis.mode = Mode::Stream;
        assert!(!cfg.lease_enabled());
    }
}
