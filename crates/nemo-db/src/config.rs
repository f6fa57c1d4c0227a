//! The `[nemo]` configuration section: where NEMO's database is and how often to look at it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The kind of database behind a `database_url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `postgres://…` or `postgresql://…` (TLS through `sslmode`, `sslrootcert`, … in the URL).
    Postgres,
    /// `sqlite:///absolute/path/nemo.sqlite3` or `sqlite:relative/path`.
    Sqlite,
}

impl Backend {
    /// The backend of a URL, from its scheme; `None` for any other scheme.
    ///
    /// ```
    /// use nemo_db::Backend;
    /// assert_eq!(Backend::of_url("postgres://nemo@db/nemo"), Some(Backend::Postgres));
    /// assert_eq!(Backend::of_url("postgresql://db/nemo?sslmode=verify-full"), Some(Backend::Postgres));
    /// assert_eq!(Backend::of_url("sqlite:///srv/nemo/nemo.sqlite3"), Some(Backend::Sqlite));
    /// assert_eq!(Backend::of_url("mysql://db/nemo"), None);
    /// ```
    pub fn of_url(url: &str) -> Option<Backend> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Some(Backend::Postgres),
            "sqlite" => Some(Backend::Sqlite),
            _ => None,
        }
    }
}

/// Where the bridge takes its events from: `[nemo] source`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The Redis queue of plugin 1.x (`[redis]`). The default.
    #[default]
    Redis,
    /// The table `nemo_mqtt_mqtt_eventqueue` of plugin 2.x in NEMO's PostgreSQL
    /// (`database_url`); no Redis is used.
    Database,
}

impl Source {
    /// The name as written in the configuration.
    ///
    /// ```
    /// assert_eq!(nemo_db::Source::Database.as_str(), "database");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Redis => "redis",
            Source::Database => "database",
        }
    }
}

/// `[nemo]`: read the settings of NEMO's own MQTT configuration page from NEMO's database.
///
/// Empty `database_url` (the default) = off: the bridge uses only its file, environment and
/// flags. The URL may hold a password; it is never printed unredacted
/// ([`redacted_url`](Self::redacted_url)) and never shown by `Debug`.
///
/// ```
/// let mut cfg = nemo_db::NemoConfig::default();
/// assert!(!cfg.enabled());
/// assert_eq!(cfg.poll_s, 30);
/// cfg.database_url = "postgres://bridge:s3cret@db.lab/nemo?sslmode=verify-full".into();
/// assert!(cfg.validate().is_ok());
/// assert!(!format!("{cfg:?}").contains("s3cret"));
/// assert_eq!(cfg.redacted_url(), "postgres://bridge:***@db.lab/nemo?sslmode=verify-full");
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NemoConfig {
    /// `postgres://user:password@host:port/dbname?sslmode=…` or `sqlite:///path/to/nemo.sqlite3`;
    /// empty = do not read NEMO's database.
    pub database_url: String,
    /// Look for a changed configuration row every this many seconds; 0 = only on a reload
    /// (`reload_config`, SIGHUP).
    pub poll_s: u64,
    /// Bound on connecting and on every query, in seconds. A database that does not answer
    /// within it counts as unreachable; delivery never waits for it.
    pub timeout_s: u64,
    /// Write every publication to the page's message log (`nemo_mqtt_mqttmessagelog`). The
    /// page's "log messages" switch (`log_messages`) sets it when NEMO's row is in use.
    pub message_log: bool,
    /// Keep at most this many rows in the message log (the oldest are deleted); 0 = delete
    /// nothing.
    pub message_log_keep: u64,
    /// Where events come from: `"redis"` (plugin 1.x, the default) or `"database"` (plugin
    /// 2.x: the queue table in NEMO's PostgreSQL at `database_url`).
    pub source: Source,
    /// With `source = "database"`: delete processed queue rows older than this many days (once
    /// an hour); 0 (the default) = keep them all, as the plugin does (NEMO's page shows recent
    /// rows).
    pub processed_keep_days: u64,
}

impl Default for NemoConfig {
    fn default() -> Self {
        NemoConfig {
            database_url: String::new(),
            poll_s: 30,
            timeout_s: 5,
            message_log: false,
            message_log_keep: 1_000,
            source: Source::Redis,
            processed_keep_days: 0,
        }
    }
}

impl std::fmt::Debug for NemoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NemoConfig")
            .field("database_url", &self.redacted_url())
            .field("poll_s", &self.poll_s)
            .field("timeout_s", &self.timeout_s)
            .field("message_log", &self.message_log)
            .field("message_log_keep", &self.message_log_keep)
            .field("source", &self.source)
            .field("processed_keep_days", &self.processed_keep_days)
            .finish()
    }
}

/// A `[nemo]` value that cannot be used; one line naming the key, the value and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid nemo.{key} = {value}: {allowed}")]
pub struct NemoConfigError {
    /// The key inside `[nemo]`.
    pub key: &'static str,
    /// The value as written (URL passwords redacted).
    pub value: String,
    /// What is allowed.
    pub allowed: String,
}

impl NemoConfig {
    /// True when a database URL is configured.
    pub fn enabled(&self) -> bool {
        !self.database_url.trim().is_empty()
    }

    /// The backend of the configured URL (`None` when off or not a supported scheme).
    pub fn backend(&self) -> Option<Backend> {
        Backend::of_url(self.database_url.trim())
    }

    /// `timeout_s` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_s)
    }

    /// `poll_s` as a duration; `None` = no polling.
    pub fn poll_interval(&self) -> Option<Duration> {
        (self.poll_s > 0).then(|| Duration::from_secs(self.poll_s))
    }

    /// The URL with its password (user-info or `password=` parameter) replaced by `***`.
    pub fn redacted_url(&self) -> String {
        nemo_config::redact_url(&self.database_url)
    }

    /// Check the values (no I/O: the URL is parsed when connecting).
    ///
    /// # Errors
    /// [`NemoConfigError`] for an unsupported scheme or an out-of-range number.
    ///
    /// ```
    /// let mut cfg = nemo_db::NemoConfig::default();
    /// cfg.database_url = "mysql://root:pw@db/nemo".into();
    /// assert_eq!(cfg.validate().unwrap_err().to_string(),
    ///     "invalid nemo.database_url = \"mysql://root:***@db/nemo\": must start with postgres://, postgresql:// or sqlite:// (empty = off)");
    /// ```
    pub fn validate(&self) -> Result<(), NemoConfigError> {
        if self.enabled() && self.backend().is_none() {
            return Err(NemoConfigError {
                key: "database_url",
                value: format!("{:?}", self.redacted_url()),
                allowed: "must start with postgres://, postgresql:// or sqlite:// (empty = off)"
                    .into(),
            });
        }
        if self.source == Source::Database && self.backend() != Some(Backend::Postgres) {
            return Err(NemoConfigError {
                key: "source",
                value: "\"database\"".into(),
                allowed: format!(
                    "needs nemo.database_url = \"postgres://…\" (the queue of plugin 2.x is a PostgreSQL table); now {:?}",
                    self.redacted_url()
                ),
            });
        }
        if self.processed_keep_days > 36_500 {
            return Err(NemoConfigError {
                key: "processed_keep_days",
                value: self.processed_keep_days.to_string(),
                allowed: "must be in 0..=36500 (0 = keep every row)".into(),
            });
        }
        if self.poll_s > 86_400 {
            return Err(NemoConfigError {
                key: "poll_s",
                value: self.poll_s.to_string(),
                allowed: "must be in 0..=86400 (0 = only on reload)".into(),
            });
        }
        if !(1..=300).contains(&self.timeout_s) {
            return Err(NemoConfigError {
                key: "timeout_s",
                value: self.timeout_s.to_string(),
                allowed: "must be in 1..=300".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bad_values_name_the_key() {
        for (cfg, key) in [
            (
                NemoConfig {
                    poll_s: 100_000,
                    ..NemoConfig::default()
                },
                "nemo.poll_s",
            ),
            (
                NemoConfig {
                    timeout_s: 0,
                    ..NemoConfig::default()
                },
                "nemo.timeout_s",
            ),
            (
                NemoConfig {
                    database_url: "redis://x".into(),
                    ..NemoConfig::default()
                },
                "nemo.database_url",
            ),
            (
                NemoConfig {
                    source: Source::Database,
                    database_url: "sqlite:///srv/nemo.sqlite3".into(),
                    ..NemoConfig::default()
                },
                "nemo.source",
            ),
            (
                NemoConfig {
                    source: Source::Database,
                    ..NemoConfig::default()
                },
                "nemo.source",
            ),
            (
                NemoConfig {
                    processed_keep_days: 100_000,
                    ..NemoConfig::default()
                },
                "nemo.processed_keep_days",
            ),
        ] {
            let msg = cfg.validate().unwrap_err().to_string();
            assert!(msg.starts_with(&format!("invalid {key} = ")), "{msg}");
        }
        assert!(NemoConfig::default().validate().is_ok());
    }

    #[test]
    fn the_url_is_shown_redacted_in_debug_and_errors() {
        let cfg = NemoConfig {
            database_url: "postgresql://u:p%40ss@h:5/d?password=x&sslrootcert=/ca.pem".into(),
            ..NemoConfig::default()
        };
        assert_eq!(
            cfg.redacted_url(),
            "postgresql://u:***@h:5/d?password=***&sslrootcert=/ca.pem"
        );
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("p%40ss") && !shown.contains("=x"),
            "{shown}"
        );
        assert_eq!(NemoConfig::default().redacted_url(), "");
    }
}
