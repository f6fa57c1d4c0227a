//! The `[display]` table, its validation, and the display time zone.

use std::fmt;
use std::path::PathBuf;

use nemo_mqtt::{MqttConfig, MqttError, Protocol, Secret, WhenDisconnected};
use serde::{Deserialize, Deserializer, Serialize};

use crate::DisplayError;

/// The `[display]` table: feed the tool displays directly (see the crate docs).
///
/// Off by default. With `url` unset the feed publishes to the events' broker with the `[mqtt]`
/// login and TLS settings; with `url` set it uses only the connection keys of this table, so
/// the events' credentials never go to the displays' broker. Unknown keys are rejected.
///
/// ```
/// let cfg: nemo_display::DisplayConfig = toml::from_str(r#"
///     enabled = true
///     url = "mqtts://displays.lab.example:8883"
///     username = "nemo-feed"
///     password = "s3cret"
///     timezone = "America/Los_Angeles"
/// "#).unwrap();
/// assert_eq!((cfg.topic_prefix.as_str(), cfg.max_name_length), ("nemo/esp32", 13));
/// assert!(cfg.validate().is_ok());
/// assert!(!format!("{cfg:?}").contains("s3cret"), "the password is redacted in Debug");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DisplayConfig {
    /// Run the feed. Default false.
    pub enabled: bool,
    /// The displays' broker URL, or a list tried in order (failover); empty (the default) = the
    /// events' broker (`[mqtt] url`), with `[mqtt]`'s login and TLS settings.
    #[serde(deserialize_with = "one_or_many")]
    pub url: Vec<String>,
    /// Client id on the displays' broker. Default `"nemo-bridge-display"`. The feed reads the
    /// events' broker as `"{client_id}-in"`.
    pub client_id: String,
    /// Username on the displays' broker; empty = anonymous. Only with `url` set.
    pub username: String,
    /// Password on the displays' broker (never logged). Only with `url` set.
    pub password: Secret,
    /// PEM file of the CA(s) of the displays' broker; unset = the system trust store.
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
    /// Accept any server certificate and host name (off; logs a warning on every connect).
    pub insecure_skip_verify: bool,
    /// Keep-alive in seconds (0 = off, max 65535). Default 60.
    pub keep_alive_s: u64,
    /// Seconds to wait for a connection. Default 10.
    pub connect_timeout_s: u64,
    /// `"3.1.1"` (default) or `"5"`.
    pub protocol: Protocol,
    /// The displays' topics: `{topic_prefix}/{tool_id}/status` and `{topic_prefix}/overall`.
    /// Default `"nemo/esp32"` (the firmware's `MQTT_TOPIC_PREFIX`).
    pub topic_prefix: String,
    /// Root of the event topics the feed reads: `{events_prefix}/tools/{id}/{type}`. Default
    /// `"nemo"` (the plugin's topics).
    pub events_prefix: String,
    /// The zone of the times shown: an IANA name (`"America/Los_Angeles"`, daylight saving
    /// followed), a fixed offset (`"-07:00"`, `"+05:30"`, `"UTC"`), or empty (the default) =
    /// the machine's zone.
    pub timezone: String,
    /// Longest user name shown; a longer one is cut to the first name, at most this long.
    /// 1..=50, default 13 (the relay's).
    pub max_name_length: usize,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        DisplayConfig {
            enabled: false,
            url: Vec::new(),
            client_id: "nemo-bridge-display".into(),
            username: String::new(),
            password: Secret::default(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            insecure_skip_verify: false,
            keep_alive_s: 60,
            connect_timeout_s: 10,
            protocol: Protocol::V311,
            topic_prefix: "nemo/esp32".into(),
            events_prefix: "nemo".into(),
            timezone: String::new(),
            max_name_length: 13,
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
        Raw::One(s) if s.trim().is_empty() => Vec::new(),
        Raw::One(s) => vec![s],
        Raw::Many(v) => v,
    })
}

fn empty_path_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    Ok(s.filter(|s| !s.trim().is_empty()).map(PathBuf::from))
}

fn invalid(key: &str, value: impl fmt::Display, allowed: impl Into<String>) -> DisplayError {
    DisplayError::Invalid {
        key: format!("display.{key}"),
        value: value.to_string(),
        allowed: allowed.into(),
    }
}

/// A topic prefix: non-empty levels, no wildcards, no NUL, not `$…`.
fn check_prefix(key: &str, p: &str) -> Result<(), DisplayError> {
    let problem = if p.is_empty() || p.split('/').any(str::is_empty) {
        Some("must be one or more non-empty topic levels, e.g. nemo/esp32")
    } else if p.contains(['+', '#', '\0']) {
        Some("must not contain the wildcards '+', '#' or NUL")
    } else if p.starts_with('$') {
        Some("must not start with '$' (reserved for the broker)")
    } else {
        None
    };
    match problem {
        Some(why) => Err(invalid(key, format!("{p:?}"), why)),
        None => Ok(()),
    }
}

impl DisplayConfig {
    /// Check every value; the error names the key (`display.…`), the value and what is allowed.
    /// Checked whether or not the feed is enabled, so a mistake shows before it is turned on.
    ///
    /// ```
    /// let mut cfg = nemo_display::DisplayConfig::default();
    /// cfg.timezone = "Mars/Olympus_Mons".into();
    /// assert!(cfg.validate().unwrap_err().to_string().starts_with(
    ///     "invalid display.timezone = \"Mars/Olympus_Mons\": "));
    /// cfg.timezone = "-07:00".into();
    /// cfg.username = "feed".into();
    /// assert_eq!(cfg.validate().unwrap_err().to_string(),
    ///     "invalid display.username = \"feed\": is set but display.url is empty (the feed then \
    ///      uses the events' broker with the [mqtt] login; set display.url for another broker)");
    /// ```
    ///
    /// # Errors
    /// [`DisplayError::Invalid`] for the first bad value.
    pub fn validate(&self) -> Result<(), DisplayError> {
        check_prefix("topic_prefix", &self.topic_prefix)?;
        check_prefix("events_prefix", &self.events_prefix)?;
        if !(1..=50).contains(&self.max_name_length) {
            return Err(invalid(
                "max_name_length",
                self.max_name_length,
                "must be in 1..=50",
            ));
        }
        crate::DisplayZone::parse(&self.timezone)?;
        if self.client_id.is_empty() {
            return Err(invalid(
                "client_id",
                "\"\"",
                "must not be empty (the feed's client id on the displays' broker)",
            ));
        }
        if self.url.is_empty() {
            let own = [
                ("username", !self.username.is_empty()),
                ("password", !self.password.is_empty()),
                ("ca_file", self.ca_file.is_some()),
                ("client_cert", self.client_cert.is_some()),
                ("client_key", self.client_key.is_some()),
            ];
            if let Some((key, _)) = own.iter().find(|(_, set)| *set) {
                let value = match *key {
                    "username" => format!("{:?}", self.username),
                    "password" => "(set)".into(),
                    _ => "(set)".into(),
                };
                return Err(invalid(
                    key,
                    value,
                    "is set but display.url is empty (the feed then uses the events' broker with \
                     the [mqtt] login; set display.url for another broker)",
                ));
            }
            return Ok(());
        }
        self.own_broker(&MqttConfig::default())
            .validate()
            .map_err(rename_mqtt_error)
    }

    /// The connection to the displays' broker: `[mqtt]` (`events`) when `url` is empty, else
    /// this table's keys. Either way under this table's `client_id`, QoS 1, no status topic
    /// and no HMAC (the displays cannot verify it), and failing fast while disconnected: the
    /// feed publishes every tool again after a reconnect instead of buffering.
    ///
    /// ```
    /// let events = nemo_mqtt::MqttConfig::for_url("mqtt://events:1883");
    /// let mut cfg = nemo_display::DisplayConfig::default();
    /// assert_eq!(cfg.displays_broker(&events).url, ["mqtt://events:1883"]);
    /// cfg.url = vec!["mqtt://displays:1883".into()];
    /// let m = cfg.displays_broker(&events);
    /// assert_eq!((m.url[0].as_str(), m.client_id.as_str(), m.status_topic.as_str()),
    ///     ("mqtt://displays:1883", "nemo-bridge-display", ""));
    /// ```
    pub fn displays_broker(&self, events: &MqttConfig) -> MqttConfig {
        let mut m = if self.url.is_empty() {
            events.clone()
        } else {
            self.own_broker(events)
        };
        m.client_id = self.client_id.clone();
        m.qos = 1;
        m.clean_session = true;
        m.status_topic = String::new();
        m.status_hmac_key = None;
        m.when_disconnected = WhenDisconnected::Fail;
        m
    }

    /// The connection on which the feed reads the events: `[mqtt]` under the client id
    /// `"{client_id}-in"`, a clean session, and no status topic (a reader must not publish
    /// the bridge's status or last will).
    ///
    /// ```
    /// let events = nemo_mqtt::MqttConfig::for_url("mqtt://events:1883");
    /// let m = nemo_display::DisplayConfig::default().events_broker(&events);
    /// assert_eq!((m.client_id.as_str(), m.status_topic.as_str()), ("nemo-bridge-display-in", ""));
    /// ```
    pub fn events_broker(&self, events: &MqttConfig) -> MqttConfig {
        let mut m = events.clone();
        m.client_id = format!("{}-in", self.client_id);
        m.clean_session = true;
        m.status_topic = String::new();
        m.status_hmac_key = None;
        m
    }

    fn own_broker(&self, events: &MqttConfig) -> MqttConfig {
        MqttConfig {
            url: self.url.clone(),
            client_id: self.client_id.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            insecure_skip_verify: self.insecure_skip_verify,
            keep_alive_s: self.keep_alive_s,
            connect_timeout_s: self.connect_timeout_s,
            protocol: self.protocol,
            confirm_timeout_s: events.confirm_timeout_s,
            ..MqttConfig::default()
        }
    }
}

/// `mqtt.<key>` errors of nemo-mqtt, named under `display.`.
fn rename_mqtt_error(e: MqttError) -> DisplayError {
    match e {
        MqttError::Config {
            key,
            value,
            problem,
        } => invalid(key, value, problem.replace("mqtt.", "display.")),
        MqttError::InvalidUrl { url, problem } => invalid(
            "url",
            format!("{url:?}"),
            problem.replace("mqtt.", "display."),
        ),
        other => DisplayError::Invalid {
            key: "display".into(),
            value: String::new(),
            allowed: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_are_the_relays() {
        let cfg: DisplayConfig = toml::from_str("").unwrap();
        assert!(!cfg.enabled);
        assert_eq!(cfg.topic_prefix, "nemo/esp32");
        assert_eq!(cfg.max_name_length, 13);
        assert!(cfg.url.is_empty());
        cfg.validate().unwrap();
    }

    #[test]
    fn bad_values_name_the_display_key() {
        let bad = [
            ("topic_prefix = \"nemo/#\"", "display.topic_prefix"),
            ("topic_prefix = \"nemo//esp32\"", "display.topic_prefix"),
            ("events_prefix = \"\"", "display.events_prefix"),
            ("max_name_length = 0", "display.max_name_length"),
            ("max_name_length = 51", "display.max_name_length"),
            ("timezone = \"+25:00\"", "display.timezone"),
            ("timezone = \"Nowhere/Land\"", "display.timezone"),
            ("url = \"http://displays\"", "display.url"),
            (
                "url = \"mqtt://d:1883\"\nkeep_alive_s = 70000",
                "display.keep_alive_s",
            ),
            (
                "url = \"mqtt://d:1883\"\npassword = \"x\"",
                "display.password",
            ),
            ("password = \"x\"", "display.password"),
            ("client_id = \"\"", "display.client_id"),
        ];
        for (toml_text, key) in bad {
            let cfg: DisplayConfig = toml::from_str(toml_text).unwrap();
            let msg = cfg.validate().unwrap_err().to_string();
            assert!(
                msg.starts_with(&format!("invalid {key} = ")),
                "{toml_text}: {msg}"
            );
            assert!(!msg.contains("\"x\""), "a password is never shown: {msg}");
        }
    }

    #[test]
    fn credentials_in_the_url_point_to_the_display_keys() {
        let cfg: DisplayConfig = toml::from_str("url = \"mqtt://u:pw@d:1883\"").unwrap();
        let msg = cfg.validate().unwrap_err().to_string();
        assert!(msg.starts_with("invalid display.url = "), "{msg}");
        assert!(
            msg.contains("display.username") && !msg.contains("pw@"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<DisplayConfig>("topic_prefx = \"a\"").is_err());
    }

    #[test]
    fn the_events_login_never_goes_to_another_broker() {
        let mut events = MqttConfig::for_url("mqtt://events:1883");
        events.username = "bridge".into();
        events.password = Secret::new("events-pw");
        events.status_topic = "nemo/bridge/status".into();
        let mut cfg = DisplayConfig::default();
        let same = cfg.displays_broker(&events);
        assert_eq!(same.username, "bridge", "same broker: same login");
        assert_eq!(
            same.status_topic, "",
            "no status or last will from the feed"
        );
        cfg.url = vec!["mqtt://displays:1883".into()];
        let other = cfg.displays_broker(&events);
        assert_eq!(other.username, "");
        assert!(other.password.is_empty());
        let reader = cfg.events_broker(&events);
        assert_eq!(reader.client_id, "nemo-bridge-display-in");
        assert_eq!(reader.status_topic, "");
        assert_eq!(reader.username, "bridge");
    }
}
