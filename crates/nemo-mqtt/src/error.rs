//! Typed errors: what went wrong talking to the broker, in words an operator
//! can act on (which server, which setting, what to change).

use std::time::Duration;

/// Errors of this crate.
///
/// Connect-time errors ([`Tls`](Self::Tls), [`Auth`](Self::Auth),
/// [`InvalidUrl`](Self::InvalidUrl), [`Config`](Self::Config)) are
/// *permanent*: retrying with the same settings cannot help (see
/// [`is_permanent`](Self::is_permanent)). Publish-time errors mean "this message
/// was not confirmed": the caller keeps it and publishes it again later.
///
/// ```
/// use nemo_mqtt::MqttError;
/// let e = MqttError::Auth { server: "mqtt://b:1883".into(), reason: "bad username or password".into() };
/// assert_eq!(e.to_string(), "broker mqtt://b:1883 refused the login: bad username or password");
/// assert!(e.is_permanent());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MqttError {
    /// A broker URL that cannot be used.
    #[error("mqtt.url: '{url}' {problem}")]
    InvalidUrl {
        /// The URL as written.
        url: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// A configuration value out of range.
    #[error("mqtt.{key}: {value} {problem}")]
    Config {
        /// The key inside `[mqtt]`.
        key: &'static str,
        /// The offending value, quoted as written (secrets are never shown).
        value: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// The TLS handshake failed (untrusted, expired or wrong-host certificate,
    /// missing client certificate, ...).
    #[error("TLS handshake with {server} failed: {reason}")]
    Tls {
        /// `host:port` of the broker.
        server: String,
        /// The cause as far as it could be determined.
        reason: String,
    },
    /// The broker refused the credentials (CONNACK 4/5 or reason 0x86/0x87).
    #[error("broker {server} refused the login: {reason}")]
    Auth {
        /// The broker URL.
        server: String,
        /// "bad username or password" or "not authorized".
        reason: String,
    },
    /// The broker could not be reached or refused the connection for another reason.
    #[error("cannot connect to MQTT broker {server}: {reason}")]
    Connect {
        /// The broker URL(s).
        server: String,
        /// The cause.
        reason: String,
    },
    /// Not connected and `mqtt.when_disconnected = "fail"`.
    #[error("not connected to the MQTT broker (mqtt.when_disconnected = \"fail\")")]
    NotConnected,
    /// The broker did not confirm in time.
    #[error("{what} not confirmed by the broker within {:.1} s", after.as_secs_f64())]
    Timeout {
        /// What timed out ("publish", "connect", "subscribe").
        what: &'static str,
        /// The limit that passed.
        after: Duration,
    },
    /// The connection dropped before the broker confirmed the message.
    #[error("connection to the broker lost before the message was confirmed")]
    ConnectionLost,
    /// Disconnected and the local buffer (`mqtt.max_buffered`) is full.
    #[error("publish buffer full while disconnected (mqtt.max_buffered = {max})")]
    BufferFull {
        /// The configured limit.
        max: usize,
    },
    /// The broker or the client library refused the message or request.
    #[error("broker rejected the {what}: {reason}")]
    Rejected {
        /// "publish" or "subscribe".
        what: &'static str,
        /// The reason (MQTT v5 reason code or library error).
        reason: String,
    },
    /// The publisher or subscriber was shut down.
    #[error("the MQTT client was shut down")]
    Closed,
    /// Another error from the MQTT client library.
    #[error("MQTT client error: {0}")]
    Client(String),
}

impl MqttError {
    /// True for errors that retrying with the same configuration cannot fix
    /// (bad URL, bad configuration, TLS verification, refused credentials).
    ///
    /// ```
    /// assert!(!nemo_mqtt::MqttError::NotConnected.is_permanent());
    /// ```
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::InvalidUrl { .. } | Self::Config { .. } | Self::Tls { .. } | Self::Auth { .. }
        )
    }

    pub(crate) fn config(
        key: &'static str,
        value: impl std::fmt::Display,
        problem: impl Into<String>,
    ) -> Self {
        Self::Config {
            key,
            value: value.to_string(),
            problem: problem.into(),
        }
    }
}
