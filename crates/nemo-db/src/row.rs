//! The configuration row as NEMO's page saved it, and the settings the bridge takes from it.
//!
//! [`ConfigurationRow`] is the row exactly as read (every column optional: NEMO's page can
//! only save valid values, but a row written by hand or by a migration gone wrong can hold
//! anything). [`ConfigurationRow::settings`] checks the columns the bridge uses and turns them
//! into [`NemoSettings`]; a bad column is one [`RowError`] naming the row, the column and the
//! value.

use std::fmt;
use std::time::Duration;

/// The table that holds the page's settings.
pub const CONFIGURATION_TABLE: &str = "nemo_mqtt_mqttconfiguration";

/// The table of the page's event filters (plugin 1.x; 2.x dropped it).
pub const FILTER_TABLE: &str = "nemo_mqtt_mqtteventfilter";

/// One row of `nemo_mqtt_mqtteventfilter`, as stored. A missing row means "enabled, as is".
///
/// `event_type` names a signal of the plugin (`usage_event_save`, `tool_save`, …); see
/// `nemo_events::filter` for the event kinds each one governs.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct FilterRow {
    /// Primary key.
    pub id: i64,
    /// The signal this row filters.
    pub event_type: Option<String>,
    /// Publish events of this type at all.
    pub enabled: Option<bool>,
    /// Publish on this topic instead of the item's (NULL or empty = the item's).
    pub topic_override: Option<String>,
    /// Publish the whole payload; off = only the kind, the ids and the times.
    pub include_payload: Option<bool>,
    /// When the page last saved the row.
    pub updated_at: Option<String>,
}

/// One row of `nemo_mqtt_mqttconfiguration`, as stored. Passwords and the HMAC key are never
/// shown by `Debug`.
///
/// Two rows compare equal when every column is equal: the poll uses this to notice a save on
/// NEMO's page (which also moves `updated_at`) or an edit made in SQL (which may not).
#[derive(Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct ConfigurationRow {
    /// Primary key; the active row is the enabled one with the lowest id.
    pub id: i64,
    /// The configuration's name on the page.
    pub name: Option<String>,
    /// Whether this configuration is the one in use.
    pub enabled: Option<bool>,
    /// Broker host name or address.
    pub broker_host: Option<String>,
    /// Broker TCP port.
    pub broker_port: Option<i64>,
    /// MQTT keep-alive, seconds.
    pub keepalive: Option<i64>,
    /// MQTT client id.
    pub client_id: Option<String>,
    /// Broker user name (NULL or empty = no authentication from the page).
    pub username: Option<String>,
    /// Broker password.
    pub password: Option<String>,
    /// Sign payloads with HMAC.
    pub use_hmac: Option<bool>,
    /// The HMAC key.
    pub hmac_secret_key: Option<String>,
    /// The HMAC algorithm; the plugin only offers `sha256`.
    pub hmac_algorithm: Option<String>,
    /// The producer's topic prefix (not used by the bridge: the queue items carry full topics).
    pub topic_prefix: Option<String>,
    /// The producer's QoS (not used by the bridge: each queue item carries its QoS).
    pub qos_level: Option<i64>,
    /// The producer's retain flag (not used by the bridge: each queue item carries it).
    pub retain_messages: Option<bool>,
    /// MQTT clean session.
    pub clean_session: Option<bool>,
    /// The Python bridge's auto-reconnect switch (not used: the bridge always reconnects).
    pub auto_reconnect: Option<bool>,
    /// Seconds before the first reconnect attempt.
    pub reconnect_delay: Option<i64>,
    /// The Python bridge's give-up count (not used: the bridge never gives up; events wait).
    pub max_reconnect_attempts: Option<i64>,
    /// Write every publication to the message log table.
    pub log_messages: Option<bool>,
    /// The Python bridge's log level (not used: `RUST_LOG` sets the bridge's).
    pub log_level: Option<String>,
    /// When the page last saved the row, as the database renders it.
    pub updated_at: Option<String>,
}

impl fmt::Debug for ConfigurationRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |v: &Option<String>| match v {
            None => "NULL",
            Some(s) if s.is_empty() => "\"\"",
            Some(_) => "***",
        };
        f.debug_struct("ConfigurationRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .field("broker_host", &self.broker_host)
            .field("broker_port", &self.broker_port)
            .field("keepalive", &self.keepalive)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("use_hmac", &self.use_hmac)
            .field("hmac_secret_key", &hidden(&self.hmac_secret_key))
            .field("hmac_algorithm", &self.hmac_algorithm)
            .field("clean_session", &self.clean_session)
            .field("reconnect_delay", &self.reconnect_delay)
            .field("log_messages", &self.log_messages)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// A column of the active row that the bridge cannot use.
///
/// ```
/// let row = nemo_db::ConfigurationRow { id: 3, broker_host: Some("mqtt.lab".into()),
///     broker_port: Some(0), ..Default::default() };
/// assert_eq!(row.settings().unwrap_err().to_string(),
///     "nemo_mqtt_mqttconfiguration id=3: broker_port = 0: must be a TCP port in 1..=65535");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{CONFIGURATION_TABLE} id={id}: {column} = {value}: {allowed}")]
pub struct RowError {
    /// The row's id.
    pub id: i64,
    /// The column.
    pub column: &'static str,
    /// The value as stored (`NULL`, quoted text, a number; secrets never shown).
    pub value: String,
    /// What is allowed.
    pub allowed: &'static str,
}

/// The settings the bridge takes from the active configuration row, checked.
///
/// Fields the page leaves empty are `None`: the bridge keeps its own value for them.
#[derive(Clone, PartialEq, Eq)]
pub struct NemoSettings {
    /// The row these came from.
    pub id: i64,
    /// The row's name.
    pub name: String,
    /// The row's `updated_at`, as the database renders it.
    pub updated_at: String,
    /// Broker host (non-empty; an IPv6 address without brackets).
    pub broker_host: String,
    /// Broker port.
    pub broker_port: u16,
    /// Keep-alive.
    pub keepalive: Duration,
    /// Client id; `None` when the column is empty.
    pub client_id: Option<String>,
    /// User name and password; `None` when the user name is NULL or empty.
    pub credentials: Option<(String, String)>,
    /// The HMAC key when `use_hmac` is on; `None` when off.
    pub hmac_key: Option<String>,
    /// Clean session.
    pub clean_session: bool,
    /// The first reconnect delay.
    pub reconnect_delay: Duration,
    /// Whether the page asks for the message log.
    pub log_messages: bool,
}

impl fmt::Debug for NemoSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NemoSettings")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("updated_at", &self.updated_at)
            .field("broker_host", &self.broker_host)
            .field("broker_port", &self.broker_port)
            .field("keepalive", &self.keepalive)
            .field("client_id", &self.client_id)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(u, _)| (u, "***")),
            )
            .field("hmac_key", &self.hmac_key.as_ref().map(|_| "***"))
            .field("clean_session", &self.clean_session)
            .field("reconnect_delay", &self.reconnect_delay)
            .field("log_messages", &self.log_messages)
            .finish()
    }
}

fn quoted(v: &Option<String>) -> String {
    match v {
        None => "NULL".into(),
        Some(s) => format!("{s:?}"),
    }
}

fn number(v: Option<i64>) -> String {
    v.map_or_else(|| "NULL".into(), |n| n.to_string())
}

impl ConfigurationRow {
    fn bad(&self, column: &'static str, value: String, allowed: &'static str) -> RowError {
        RowError {
            id: self.id,
            column,
            value,
            allowed,
        }
    }

    /// Check the columns the bridge uses and take them.
    ///
    /// # Errors
    /// The first bad column: an empty or NULL `broker_host`, a `broker_port` outside 1..=65535,
    /// a `keepalive` outside 0..=65535, `use_hmac` without a key, an `hmac_algorithm` other than
    /// `sha256`, a `reconnect_delay` outside 1..=3600, `clean_session` off with an empty
    /// `client_id` (the broker keys a session by it).
    ///
    /// ```
    /// let row = nemo_db::ConfigurationRow {
    ///     id: 1, broker_host: Some("mqtt.lab".into()), broker_port: Some(1884),
    ///     keepalive: Some(60), client_id: Some("nemo_bridge".into()), use_hmac: Some(true),
    ///     hmac_secret_key: Some("k".into()), hmac_algorithm: Some("sha256".into()),
    ///     clean_session: Some(true), reconnect_delay: Some(5), ..Default::default()
    /// };
    /// let s = row.settings()?;
    /// assert_eq!((s.broker_host.as_str(), s.broker_port), ("mqtt.lab", 1884));
    /// assert_eq!(s.hmac_key.as_deref(), Some("k"));
    /// assert_eq!(s.reconnect_delay, std::time::Duration::from_secs(5));
    /// # Ok::<(), nemo_db::RowError>(())
    /// ```
    pub fn settings(&self) -> Result<NemoSettings, RowError> {
        let host = self.broker_host.as_deref().map(str::trim).unwrap_or("");
        if host.is_empty() {
            return Err(self.bad(
                "broker_host",
                quoted(&self.broker_host),
                "must name the broker (a host name or an address)",
            ));
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || "/@?#".contains(c))
        {
            return Err(self.bad(
                "broker_host",
                quoted(&self.broker_host),
                "must be a host name or an address, without a scheme, port or path",
            ));
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        // A colon is only allowed in an IPv6 address: `mqtt.lab:1883` is a port in the host.
        if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(self.bad(
                "broker_host",
                quoted(&self.broker_host),
                "must be a host name or an address, without a scheme, port or path",
            ));
        }
        let port = match self.broker_port {
            Some(p) if (1..=65_535).contains(&p) => p as u16,
            other => {
                return Err(self.bad(
                    "broker_port",
                    number(other),
                    "must be a TCP port in 1..=65535",
                ));
            }
        };
        let keepalive = match self.keepalive {
            Some(k) if (0..=65_535).contains(&k) => Duration::from_secs(k as u64),
            other => {
                return Err(self.bad("keepalive", number(other), "must be seconds in 0..=65535"));
            }
        };
        let client_id = self
            .client_id
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        let clean_session = self.clean_session.unwrap_or(true);
        if !clean_session && client_id.is_none() {
            return Err(self.bad(
                "client_id",
                quoted(&self.client_id),
                "must not be empty when clean_session is off (the broker keys the session by it)",
            ));
        }
        let credentials = match self.username.as_deref() {
            Some(u) if !u.is_empty() => {
                Some((u.to_string(), self.password.clone().unwrap_or_default()))
            }
            _ => None,
        };
        let hmac_key = if self.use_hmac.unwrap_or(false) {
            let algo = self.hmac_algorithm.as_deref().unwrap_or("sha256");
            if !algo.eq_ignore_ascii_case("sha256") {
                return Err(self.bad(
                    "hmac_algorithm",
                    quoted(&self.hmac_algorithm),
                    "must be sha256 (the only algorithm of the plugin and its consumers)",
                ));
            }
            match self.hmac_secret_key.as_deref() {
                Some(k) if !k.is_empty() => Some(k.to_string()),
                other => {
                    return Err(self.bad(
                        "hmac_secret_key",
                        if other.is_none() { "NULL" } else { "\"\"" }.into(),
                        "must hold the key when use_hmac is on",
                    ));
                }
            }
        } else {
            None
        };
        let reconnect_delay = match self.reconnect_delay {
            Some(d) if (1..=3_600).contains(&d) => Duration::from_secs(d as u64),
            other => {
                return Err(self.bad(
                    "reconnect_delay",
                    number(other),
                    "must be seconds in 1..=3600",
                ));
            }
        };
        Ok(NemoSettings {
            id: self.id,
            name: self.name.clone().unwrap_or_default(),
            updated_at: self.updated_at.clone().unwrap_or_default(),
            broker_host: host,
            broker_port: port,
            keepalive,
            client_id,
            credentials,
            hmac_key,
            clean_session,
            reconnect_delay,
            log_messages: self.log_messages.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn good() -> ConfigurationRow {
        ConfigurationRow {
            id: 7,
            name: Some("default".into()),
            enabled: Some(true),
            broker_host: Some("mqtt.lab".into()),
            broker_port: Some(1883),
            keepalive: Some(60),
            client_id: Some("nemo_bridge".into()),
            username: Some("bridge".into()),
            password: Some("pw-secret".into()),
            use_hmac: Some(true),
            hmac_secret_key: Some("key-secret".into()),
            hmac_algorithm: Some("sha256".into()),
            clean_session: Some(true),
            reconnect_delay: Some(5),
            log_messages: Some(true),
            updated_at: Some("2026-12-01 10:00:00+00".into()),
            ..ConfigurationRow::default()
        }
    }

    #[test]
    fn a_good_row_gives_every_setting() {
        let s = good().settings().unwrap();
        assert_eq!(s.broker_host, "mqtt.lab");
        assert_eq!(s.broker_port, 1883);
        assert_eq!(s.keepalive, Duration::from_secs(60));
        assert_eq!(s.client_id.as_deref(), Some("nemo_bridge"));
        assert_eq!(
            s.credentials,
            Some(("bridge".to_string(), "pw-secret".to_string()))
        );
        assert_eq!(s.hmac_key.as_deref(), Some("key-secret"));
        assert!(s.clean_session && s.log_messages);
        assert_eq!(s.reconnect_delay, Duration::from_secs(5));
    }

    #[test]
    fn each_bad_column_is_one_line_naming_it() {
        let cases: Vec<(ConfigurationRow, &str)> = vec![
            (
                ConfigurationRow {
                    broker_host: Some("  ".into()),
                    ..good()
                },
                "broker_host = \"  \"",
            ),
            (
                ConfigurationRow {
                    broker_host: None,
                    ..good()
                },
                "broker_host = NULL",
            ),
            (
                ConfigurationRow {
                    broker_host: Some("mqtt://x:1883".into()),
                    ..good()
                },
                "broker_host = \"mqtt://x:1883\"",
            ),
            (
                ConfigurationRow {
                    broker_host: Some("mqtt.lab:1883".into()),
                    ..good()
                },
                "broker_host = \"mqtt.lab:1883\"",
            ),
            (
                ConfigurationRow {
                    broker_port: None,
                    ..good()
                },
                "broker_port = NULL",
            ),
            (
                ConfigurationRow {
                    broker_port: Some(70_000),
                    ..good()
                },
                "broker_port = 70000",
            ),
            (
                ConfigurationRow {
                    keepalive: Some(-1),
                    ..good()
                },
                "keepalive = -1",
            ),
            (
                ConfigurationRow {
                    hmac_secret_key: None,
                    ..good()
                },
                "hmac_secret_key = NULL",
            ),
            (
                ConfigurationRow {
                    hmac_secret_key: Some(String::new()),
                    ..good()
                },
                "hmac_secret_key = \"\"",
            ),
            (
                ConfigurationRow {
                    hmac_algorithm: Some("md5".into()),
                    ..good()
                },
                "hmac_algorithm = \"md5\"",
            ),
            (
                ConfigurationRow {
                    reconnect_delay: Some(0),
                    ..good()
                },
                "reconnect_delay = 0",
            ),
            (
                ConfigurationRow {
                    clean_session: Some(false),
                    client_id: Some(String::new()),
                    ..good()
                },
                "client_id = \"\"",
            ),
        ];
        for (row, want) in cases {
            let msg = row.settings().unwrap_err().to_string();
            assert!(
                msg.starts_with(&format!("nemo_mqtt_mqttconfiguration id=7: {want}: ")),
                "{msg}"
            );
            assert!(!msg.contains('\n'));
            assert!(
                !msg.contains("key-secret") && !msg.contains("pw-secret"),
                "{msg}"
            );
        }
    }

    #[test]
    fn empty_optional_columns_leave_the_bridge_its_own_values() {
        let row = ConfigurationRow {
            username: Some(String::new()),
            client_id: None,
            use_hmac: Some(false),
            hmac_secret_key: None,
            ..good()
        };
        let s = row.settings().unwrap();
        assert_eq!(s.credentials, None);
        assert_eq!(s.client_id, None);
        assert_eq!(s.hmac_key, None);
        let v6 = ConfigurationRow {
            broker_host: Some("[::1]".into()),
            ..good()
        };
        assert_eq!(v6.settings().unwrap().broker_host, "::1");
    }

    #[test]
    fn secrets_never_in_debug() {
        let row = good();
        let text = format!("{row:?} {:?}", row.settings().unwrap());
        assert!(
            !text.contains("pw-secret") && !text.contains("key-secret"),
            "{text}"
        );
        assert!(text.contains("mqtt.lab"));
    }
}
