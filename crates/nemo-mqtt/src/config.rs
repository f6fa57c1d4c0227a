//! The `[mqtt]` configuration table and its validation.
//!
//! Deserializing only checks types; [`MqttConfig::validate`] checks values and
//! returns an error naming the key, the value and what is allowed, so the
//! program can exit non-zero before it connects anywhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nemo_events::Qos;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{BrokerUrl, MqttError};

/// The broker password and other secrets: nemo-config's one secret type (`***` in `Debug`
/// and `Display`), re-exported so that users of this crate need not name nemo-config.
///
/// ```
/// let s = nemo_mqtt::Secret::new("hunter2");
/// assert_eq!(format!("{s:?} {s}"), "\"***\" ***");
/// assert_eq!(s.expose(), "hunter2");
/// ```
pub use nemo_config::Secret;

/// MQTT protocol version.
///
/// Written as `"3.1.1"` or `"5"` (also accepted: `"3"`, `"v3.1.1"`, `"5.0"`,
/// `"v5"`, and the integers 4 and 5, the protocol levels on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// MQTT 3.1.1 (protocol level 4), the default.
    #[default]
    V311,
    /// MQTT 5.
    V5,
}

impl Protocol {
    /// `"3.1.1"` or `"5"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V311 => "3.1.1",
            Protocol::V5 => "5",
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Float(f64),
            Str(String),
        }
        let bad = |v: String| {
            serde::de::Error::custom(format!(
                "mqtt.protocol: '{v}' is not a supported MQTT version (use \"3.1.1\" or \"5\")"
            ))
        };
        match Raw::deserialize(d)? {
            Raw::Int(4) => Ok(Protocol::V311),
            Raw::Int(5) => Ok(Protocol::V5),
            Raw::Int(n) => Err(bad(n.to_string())),
            Raw::Float(5.0) => Ok(Protocol::V5),
            Raw::Float(f) => Err(bad(f.to_string())),
            Raw::Str(s) => match s.trim().trim_start_matches(['v', 'V']) {
                "3.1.1" | "3" | "4" => Ok(Protocol::V311),
                "5" | "5.0" => Ok(Protocol::V5),
                _ => Err(bad(s)),
            },
        }
    }
}

/// What [`Publisher`](crate::Publisher) does with a publish while the broker
/// connection is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenDisconnected {
    /// Buffer up to `mqtt.max_buffered` messages in the client and send them
    /// after the reconnect (then fail with [`MqttError::BufferFull`]).
    #[default]
    Wait,
    /// Fail at once with [`MqttError::NotConnected`].
    Fail,
}

/// The `[mqtt]` table (DESIGN §5).
///
/// Missing keys take the defaults shown; unknown keys are rejected. Call
/// [`validate`](Self::validate) before use (`Publisher::connect` does).
///
/// ```
/// let cfg: nemo_mqtt::MqttConfig = serde_json::from_str(
///     r#"{"url": ["mqtts://a:8883", "mqtts://b:8883"], "username": "bridge", "password": "pw"}"#,
/// ).unwrap();
/// assert_eq!(cfg.url.len(), 2);
/// assert_eq!((cfg.qos, cfg.inflight, cfg.client_id.as_str()), (1, 256, "nemo-bridge"));
/// assert!(cfg.validate().is_ok());
/// assert!(!format!("{cfg:?}").contains("pw\""), "password redacted in Debug");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker URL, or a list of URLs tried in order (failover).
    /// Default `["mqtt://127.0.0.1:1883"]`.
    #[serde(deserialize_with = "one_or_many")]
    pub url: Vec<String>,
    /// MQTT client identifier. Default `"nemo-bridge"`. Must be unique per
    /// broker: a second client with the same id disconnects the first.
    pub client_id: String,
    /// Username; empty = anonymous.
    pub username: String,
    /// Password (never logged, `***` in `Debug`).
    pub password: Secret,
    /// PEM file of the CA(s) that signed the broker certificate; unset = the
    /// system trust store.
    #[serde(
        deserialize_with = "empty_path_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (mutual TLS); needs `client_key`.
    #[serde(
        deserialize_with = "empty_path_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(
        deserialize_with = "empty_path_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_key: Option<PathBuf>,
    /// Accept any server certificate and host name. Off by default; when on,
    /// every connect logs a warning.
    pub insecure_skip_verify: bool,
    /// Default QoS of published events, 0..=2. Default 1.
    pub qos: u8,
    /// Keep-alive interval in seconds (0 = off, max 65535). Default 60.
    pub keep_alive_s: u64,
    /// Maximum unconfirmed QoS 1/2 messages on the wire, 1..=65535. Default 256.
    pub inflight: u32,
    /// Clean session (3.1.1) / clean start (5). Default true. With `false`
    /// the broker keeps the session (subscriptions, queued and in-flight
    /// messages) across disconnects.
    pub clean_session: bool,
    /// `"3.1.1"` (default) or `"5"`.
    pub protocol: Protocol,
    /// Seconds to wait for a connection (TCP + TLS + CONNACK). Default 10.
    pub connect_timeout_s: u64,
    /// Seconds a publish may wait for its confirmation before it is reported
    /// unconfirmed ([`MqttError::Timeout`]). Default 30.
    pub confirm_timeout_s: u64,
    /// `"wait"` (default) or `"fail"`, see [`WhenDisconnected`].
    pub when_disconnected: WhenDisconnected,
    /// Messages buffered while disconnected in `"wait"` mode. Default 10000.
    pub max_buffered: usize,
    /// Retained online/offline status and last-will topic; empty = none.
    /// Default `"nemo/bridge/status"`.
    pub status_topic: String,
    /// Sign the status documents (online, offline and the last will) with this HMAC key, in
    /// the envelope every other message of the bridge uses. Not a configuration key: the
    /// bridge sets it from `[hmac]`, so a consumer that verifies everything under the prefix
    /// can verify the status too, and nobody without the key can fake it.
    #[serde(skip)]
    pub status_hmac_key: Option<Secret>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: vec!["mqtt://127.0.0.1:1883".into()],
            client_id: "nemo-bridge".into(),
            username: String::new(),
            password: Secret::default(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            insecure_skip_verify: false,
            qos: 1,
            keep_alive_s: 60,
            inflight: 256,
            clean_session: true,
            protocol: Protocol::V311,
            connect_timeout_s: 10,
            confirm_timeout_s: 30,
            when_disconnected: WhenDisconnected::Wait,
            max_buffered: 10_000,
            status_topic: "nemo/bridge/status".into(),
            status_hmac_key: None,
        }
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::One(s) => vec![s],
        Raw::Many(v) => v,
    })
}

fn empty_path_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    Ok(s.filter(|s| !s.trim().is_empty()).map(PathBuf::from))
}

impl MqttConfig {
    /// A default configuration for one broker URL (handy in tests and tools).
    ///
    /// ```
    /// let cfg = nemo_mqtt::MqttConfig::for_url("mqtt://127.0.0.1:1884");
    /// assert_eq!(cfg.url, ["mqtt://127.0.0.1:1884"]);
    /// ```
    pub fn for_url(url: impl Into<String>) -> Self {
        MqttConfig {
            url: vec![url.into()],
            ..Default::default()
        }
    }

    /// The parsed broker URLs, in failover order.
    ///
    /// # Errors
    /// [`MqttError::InvalidUrl`] for the first bad URL, [`MqttError::Config`]
    /// for an empty list.
    pub fn broker_urls(&self) -> Result<Vec<BrokerUrl>, MqttError> {
        if self.url.is_empty() {
            return Err(MqttError::config(
                "url",
                "[]",
                "is empty (give at least one broker URL, e.g. mqtt://127.0.0.1:1883)",
            ));
        }
        self.url.iter().map(|u| BrokerUrl::parse(u)).collect()
    }

    /// The configured QoS as a type (values over 2 fall back to 1; `validate` rejects them).
    pub fn default_qos(&self) -> Qos {
        Qos::from_u8(self.qos).unwrap_or(Qos::AtLeastOnce)
    }

    /// `keep_alive_s` as a duration.
    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.keep_alive_s)
    }

    /// `connect_timeout_s` as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_s)
    }

    /// `confirm_timeout_s` as a duration.
    pub fn confirm_timeout(&self) -> Duration {
        Duration::from_secs(self.confirm_timeout_s)
    }

    /// True if any URL uses TLS (`mqtts://`, `wss://`).
    pub fn uses_tls(&self) -> bool {
        self.broker_urls()
            .map(|u| u.iter().any(BrokerUrl::is_tls))
            .unwrap_or(false)
    }

    /// Check every value. The error names the key, the value and what is allowed.
    ///
    /// ```
    /// let mut cfg = nemo_mqtt::MqttConfig::for_url("http://x");
    /// assert_eq!(cfg.validate().unwrap_err().to_string(),
    ///     "mqtt.url: 'http://x' is not an MQTT URL (use mqtt://, mqtts://, ws://, wss://)");
    /// cfg.url = vec!["mqtt://x".into()];
    /// cfg.qos = 3;
    /// assert_eq!(cfg.validate().unwrap_err().to_string(), "mqtt.qos: 3 is not a QoS (allowed: 0, 1, 2)");
    /// ```
    ///
    /// # Errors
    /// [`MqttError::InvalidUrl`] or [`MqttError::Config`] for the first bad value.
    pub fn validate(&self) -> Result<(), MqttError> {
        self.broker_urls()?;
        if self.client_id.contains('\0') || self.client_id.len() > 65_535 {
            return Err(MqttError::config(
                "client_id",
                format!("'{}'", self.client_id.escape_debug()),
                "must be at most 65535 bytes without NUL",
            ));
        }
        if self.client_id.is_empty() && !self.clean_session {
            return Err(MqttError::config(
                "client_id",
                "''",
                "must not be empty when mqtt.clean_session = false (the broker keys the session by it)",
            ));
        }
        if self.username.is_empty() && !self.password.is_empty() {
            return Err(MqttError::config(
                "password",
                "(set)",
                "is set but mqtt.username is empty (MQTT sends a password only with a username)",
            ));
        }
        for (key, path) in [
            ("ca_file", &self.ca_file),
            ("client_cert", &self.client_cert),
            ("client_key", &self.client_key),
        ] {
            if let Some(p) = path {
                check_readable(key, p)?;
            }
        }
        match (&self.client_cert, &self.client_key) {
            (Some(_), None) => {
                return Err(MqttError::config(
                    "client_key",
                    "''",
                    "must be set when mqtt.client_cert is set (PEM private key of the client certificate)",
                ));
            }
            (None, Some(k)) => {
                return Err(MqttError::config(
                    "client_cert",
                    "''",
                    format!(
                        "must be set when mqtt.client_key is set ('{}')",
                        k.display()
                    ),
                ));
            }
            _ => {}
        }
        if self.qos > 2 {
            return Err(MqttError::config(
                "qos",
                self.qos,
                "is not a QoS (allowed: 0, 1, 2)",
            ));
        }
        if self.keep_alive_s > 65_535 {
            return Err(MqttError::config(
                "keep_alive_s",
                self.keep_alive_s,
                "is out of range (allowed: 0 = off, up to 65535)",
            ));
        }
        if !(1..=65_535).contains(&self.inflight) {
            return Err(MqttError::config(
                "inflight",
                self.inflight,
                "is out of range (allowed: 1..=65535)",
            ));
        }
        if self.max_buffered == 0 || self.max_buffered > i32::MAX as usize {
            return Err(MqttError::config(
                "max_buffered",
                self.max_buffered,
                "is out of range (allowed: 1..=2147483647)",
            ));
        }
        if self.connect_timeout_s == 0 || self.connect_timeout_s > 3600 {
            return Err(MqttError::config(
                "connect_timeout_s",
                self.connect_timeout_s,
                "is out of range (allowed: 1..=3600 seconds)",
            ));
        }
        if self.confirm_timeout_s == 0 || self.confirm_timeout_s > 86_400 {
            return Err(MqttError::config(
                "confirm_timeout_s",
                self.confirm_timeout_s,
                "is out of range (allowed: 1..=86400 seconds)",
            ));
        }
        let t = &self.status_topic;
        if !t.is_empty() {
            let problem = if t.contains(['+', '#']) {
                Some("must not contain the wildcards '+' or '#'")
            } else if t.contains('\0') {
                Some("must not contain NUL")
            } else if t.starts_with('$') {
                Some("must not start with '$' (reserved for the broker)")
            } else if t.len() > 65_535 {
                Some("is longer than 65535 bytes")
            } else {
                None
            };
            if let Some(p) = problem {
                return Err(MqttError::config(
                    "status_topic",
                    format!("'{}'", t.escape_debug()),
                    format!("{p} (empty = no status topic)"),
                ));
            }
        }
        Ok(())
    }
}

fn check_readable(key: &'static str, path: &Path) -> Result<(), MqttError> {
    match std::fs::File::open(path) {
        Ok(f) => match f.metadata() {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(MqttError::config(
                key,
                format!("'{}'", path.display()),
                "is not a file (give a PEM file)",
            )),
            Err(e) => Err(MqttError::config(
                key,
                format!("'{}'", path.display()),
                format!("cannot be read: {e}"),
            )),
        },
        Err(e) => Err(MqttError::config(
            key,
            format!("'{}'", path.display()),
            format!("cannot be read: {e}"),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn err(cfg: &MqttConfig) -> String {
        cfg.validate().unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid_and_match_the_design() {
        let cfg = MqttConfig::default();
        cfg.validate().unwrap();
        assert_eq!(cfg.url, ["mqtt://127.0.0.1:1883"]);
        assert_eq!(cfg.client_id, "nemo-bridge");
        assert_eq!(
            (cfg.qos, cfg.keep_alive_s, cfg.inflight, cfg.max_buffered),
            (1, 60, 256, 10_000)
        );
        assert_eq!(cfg.status_topic, "nemo/bridge/status");
        assert_eq!(cfg.when_disconnected, WhenDisconnected::Wait);
        assert!(!cfg.insecure_skip_verify);
        assert_eq!(cfg.confirm_timeout_s, 30);
    }

    #[test]
    fn url_is_a_string_or_a_list() {
        let one: MqttConfig = serde_json::from_str(r#"{"url": "mqtts://a"}"#).unwrap();
        assert_eq!(one.url, ["mqtts://a"]);
        let many: MqttConfig =
            serde_json::from_str(r#"{"url": ["mqtt://a", "ws://b/mqtt"]}"#).unwrap();
        assert_eq!(many.broker_urls().unwrap().len(), 2);
        let none: MqttConfig = serde_json::from_str(r#"{"url": []}"#).unwrap();
        assert!(
            err(&none).starts_with("mqtt.url: [] is empty"),
            "{}",
            err(&none)
        );
        let bad: MqttConfig = serde_json::from_str(r#"{"url": ["mqtt://a", "http://x"]}"#).unwrap();
        assert_eq!(
            err(&bad),
            "mqtt.url: 'http://x' is not an MQTT URL (use mqtt://, mqtts://, ws://, wss://)"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = serde_json::from_str::<MqttConfig>(r#"{"hots": "x"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `hots`"), "{e}");
    }

    #[test]
    fn protocol_spellings() {
        for (raw, want) in [
            (r#""3.1.1""#, Protocol::V311),
            (r#""v3.1.1""#, Protocol::V311),
            ("4", Protocol::V311),
            (r#""5""#, Protocol::V5),
            ("5", Protocol::V5),
            (r#""5.0""#, Protocol::V5),
        ] {
            let cfg: MqttConfig =
                serde_json::from_str(&format!(r#"{{"protocol": {raw}}}"#)).unwrap();
            assert_eq!(cfg.protocol, want, "{raw}");
        }
        let e = serde_json::from_str::<MqttConfig>(r#"{"protocol": "6"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "mqtt.protocol: '6' is not a supported MQTT version (use \"3.1.1\" or \"5\")"
            ),
            "{e}"
        );
        let e = serde_json::from_str::<MqttConfig>(r#"{"when_disconnected": "drop"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`wait`") && e.contains("`fail`"), "{e}");
    }

    #[test]
    fn empty_paths_mean_unset() {
        let cfg: MqttConfig =
            serde_json::from_str(r#"{"ca_file": "", "client_cert": " ", "client_key": ""}"#)
                .unwrap();
        assert_eq!(
            (cfg.ca_file, cfg.client_cert, cfg.client_key),
            (None, None, None)
        );
    }

    #[test]
    fn value_errors_name_key_value_and_allowed() {
        let d = MqttConfig::default;
        let cases: Vec<(MqttConfig, &str)> = vec![
            (
                MqttConfig { qos: 3, ..d() },
                "mqtt.qos: 3 is not a QoS (allowed: 0, 1, 2)",
            ),
            (
                MqttConfig { inflight: 0, ..d() },
                "mqtt.inflight: 0 is out of range (allowed: 1..=65535)",
            ),
            (
                MqttConfig {
                    inflight: 70_000,
                    ..d()
                },
                "mqtt.inflight: 70000 is out of range",
            ),
            (
                MqttConfig {
                    keep_alive_s: 70_000,
                    ..d()
                },
                "mqtt.keep_alive_s: 70000 is out of range",
            ),
            (
                MqttConfig {
                    max_buffered: 0,
                    ..d()
                },
                "mqtt.max_buffered: 0 is out of range",
            ),
            (
                MqttConfig {
                    connect_timeout_s: 0,
                    ..d()
                },
                "mqtt.connect_timeout_s: 0 is out of range",
            ),
            (
                MqttConfig {
                    confirm_timeout_s: 0,
                    ..d()
                },
                "mqtt.confirm_timeout_s: 0 is out of range",
            ),
            (
                MqttConfig {
                    status_topic: "nemo/#".into(),
                    ..d()
                },
                "mqtt.status_topic: 'nemo/#' must not contain the wildcards",
            ),
            (
                MqttConfig {
                    status_topic: "$SYS/x".into(),
                    ..d()
                },
                "mqtt.status_topic: '$SYS/x' must not start with '$'",
            ),
            (
                MqttConfig {
                    client_id: String::new(),
                    clean_session: false,
                    ..d()
                },
                "mqtt.client_id: '' must not be empty",
            ),
            (
                MqttConfig {
                    password: Secret::new("pw"),
                    ..d()
                },
                "mqtt.password: (set) is set but mqtt.username is empty",
            ),
            (
                MqttConfig {
                    ca_file: Some("/nonexistent/ca.pem".into()),
                    ..d()
                },
                "mqtt.ca_file: '/nonexistent/ca.pem' cannot be read",
            ),
            (
                MqttConfig {
                    client_key: Some("/nonexistent/k.pem".into()),
                    ..d()
                },
                "mqtt.client_key: '/nonexistent/k.pem' cannot be read",
            ),
            (
                MqttConfig {
                    ca_file: Some("/".into()),
                    ..d()
                },
                "mqtt.ca_file: '/' is not a file",
            ),
        ];
        for (cfg, want) in cases {
            let e = err(&cfg);
            assert!(e.starts_with(want), "want {want:?}, got {e:?}");
        }
        // Status topic off is fine; client id may be empty with a clean session.
        MqttConfig {
            status_topic: String::new(),
            client_id: String::new(),
            ..d()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn cert_without_key_is_rejected() {
        let file = std::env::current_exe().unwrap(); // any readable file
        let cfg = MqttConfig {
            client_cert: Some(file.clone()),
            ..Default::default()
        };
        assert!(
            err(&cfg).starts_with("mqtt.client_key: '' must be set when mqtt.client_cert is set")
        );
        let cfg = MqttConfig {
            client_key: Some(file),
            ..Default::default()
        };
        assert!(err(&cfg).starts_with("mqtt.client_cert: '' must be set"));
    }

    #[test]
    fn password_never_in_debug_or_errors() {
        let cfg = MqttConfig {
            username: "u".into(),
            password: Secret::new("s3cr3t-pw"),
            qos: 9,
            ..Default::default()
        };
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
        assert!(!err(&cfg).contains("s3cr3t"));
        let json = serde_json::to_string(&cfg).unwrap();
        let back: MqttConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.password.expose(),
            "s3cr3t-pw",
            "serialization round-trips the real value"
        );
    }
}
