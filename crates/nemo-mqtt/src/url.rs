//! Broker URLs: `mqtt://`, `mqtts://`, `ws://`, `wss://`.
//!
//! The URL is parsed and checked here, once, so a typo is reported before any
//! connection attempt with the key, the value and what is allowed. The result
//! is turned into the URI form the Paho C library understands (`tcp://`,
//! `ssl://`, `ws://`, `wss://`), always with an explicit port.

use std::fmt;
use std::str::FromStr;

use crate::MqttError;

const ALLOWED: &str = "use mqtt://, mqtts://, ws://, wss://";

/// How the bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Plain TCP (`mqtt://`, alias `tcp://`), default port 1883.
    Tcp,
    /// TLS over TCP (`mqtts://`, alias `ssl://`), default port 8883.
    Tls,
    /// WebSocket (`ws://`), default port 80.
    Ws,
    /// WebSocket over TLS (`wss://`), default port 443.
    Wss,
}

impl Transport {
    /// True for `mqtts://` and `wss://`.
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// The scheme as written in our configuration (`mqtt`, `mqtts`, `ws`, `wss`).
    pub fn scheme(self) -> &'static str {
        match self {
            Transport::Tcp => "mqtt",
            Transport::Tls => "mqtts",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Transport::Tcp => 1883,
            Transport::Tls => 8883,
            Transport::Ws => 80,
            Transport::Wss => 443,
        }
    }
}

/// A checked broker URL.
///
/// ```
/// use nemo_mqtt::{BrokerUrl, Transport};
/// let u: BrokerUrl = "mqtts://broker.lab:8884".parse().unwrap();
/// assert_eq!((u.transport(), u.host(), u.port()), (Transport::Tls, "broker.lab", 8884));
/// assert_eq!(u.paho_uri(), "ssl://broker.lab:8884");
///
/// let err = "http://x".parse::<BrokerUrl>().unwrap_err();
/// assert_eq!(err.to_string(), "mqtt.url: 'http://x' is not an MQTT URL (use mqtt://, mqtts://, ws://, wss://)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerUrl {
    transport: Transport,
    host: String,
    port: u16,
    path: String,
}

impl BrokerUrl {
    /// Parse and check `url`. See the type docs.
    ///
    /// # Errors
    /// [`MqttError::InvalidUrl`] naming the URL and the problem: unknown scheme,
    /// missing host, bad port, credentials in the URL (use `mqtt.username` /
    /// `mqtt.password`), a path on a non-WebSocket URL, query or fragment.
    pub fn parse(url: &str) -> Result<BrokerUrl, MqttError> {
        let shown = nemo_config::redact_url(url);
        let bad = |problem: &str| MqttError::InvalidUrl {
            url: shown.clone(),
            problem: problem.to_string(),
        };
        let trimmed = url.trim();
        if trimmed.is_empty() {
            return Err(bad(&format!("is empty ({ALLOWED})")));
        }
        let Some((scheme, rest)) = trimmed.split_once("://") else {
            return Err(bad(&format!("is not an MQTT URL ({ALLOWED})")));
        };
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => Transport::Tcp,
            "mqtts" | "ssl" | "tls" => Transport::Tls,
            "ws" => Transport::Ws,
            "wss" => Transport::Wss,
            _ => return Err(bad(&format!("is not an MQTT URL ({ALLOWED})"))),
        };
        if rest.contains(['?', '#']) {
            return Err(bad(
                "has a query or fragment; a broker URL is scheme://host:port",
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad(
                "contains credentials; put them in mqtt.username and mqtt.password instead",
            ));
        }
        if !path.is_empty() && path != "/" && !matches!(transport, Transport::Ws | Transport::Wss) {
            return Err(bad("has a path; only ws:// and wss:// URLs take a path"));
        }
        let (host, port) = split_host_port(authority).map_err(|p| bad(&p))?;
        let port = port.unwrap_or(transport.default_port());
        let path = if path == "/" {
            String::new()
        } else {
            path.to_string()
        };
        Ok(BrokerUrl {
            transport,
            host: host.to_string(),
            port,
            path,
        })
    }

    /// Transport (TCP, TLS, WebSocket, secure WebSocket).
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Port (explicit or the scheme's default).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True for `mqtts://` and `wss://`.
    pub fn is_tls(&self) -> bool {
        self.transport.is_tls()
    }

    /// `host:port` (IPv6 in brackets), as used in messages.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URI for the Paho C library (`tcp://`, `ssl://`, `ws://`, `wss://`).
    pub fn paho_uri(&self) -> String {
        let scheme = match self.transport {
            Transport::Tcp => "tcp",
            Transport::Tls => "ssl",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        };
        format!("{scheme}://{}{}", self.host_port(), self.path)
    }
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err("has an unclosed '[' in the host".into());
        };
        let host = &rest[..end];
        let after = &rest[end + 1..];
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err("has garbage after the IPv6 address".into()),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host (e.g. mqtt://broker.example:1883)".into());
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("has whitespace in the host".into());
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("has an invalid port '{p}' (1..=65535)")),
            Ok(n) => Some(n),
        },
    };
    Ok((host, port))
}

impl FromStr for BrokerUrl {
    type Err = MqttError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BrokerUrl::parse(s)
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.transport.scheme(),
            self.host_port(),
            self.path
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_default_ports() {
        let cases = [
            ("mqtt://h", Transport::Tcp, 1883, "tcp://h:1883"),
            ("tcp://h:1", Transport::Tcp, 1, "tcp://h:1"),
            ("MQTTS://h", Transport::Tls, 8883, "ssl://h:8883"),
            ("ssl://h:8884", Transport::Tls, 8884, "ssl://h:8884"),
            ("ws://h", Transport::Ws, 80, "ws://h:80"),
            ("ws://h:9001/mqtt", Transport::Ws, 9001, "ws://h:9001/mqtt"),
            ("wss://h", Transport::Wss, 443, "wss://h:443"),
            (
                "mqtt://[::1]:1884",
                Transport::Tcp,
                1884,
                "tcp://[::1]:1884",
            ),
            (
                "mqtt://127.0.0.1:1883/",
                Transport::Tcp,
                1883,
                "tcp://127.0.0.1:1883",
            ),
        ];
        for (input, t, port, paho) in cases {
            let u = BrokerUrl::parse(input).unwrap();
            assert_eq!(u.transport(), t, "{input}");
            assert_eq!(u.port(), port, "{input}");
            assert_eq!(u.paho_uri(), paho, "{input}");
        }
        assert_eq!(BrokerUrl::parse("mqtt://[::1]").unwrap().host(), "::1");
        assert_eq!(
            BrokerUrl::parse("wss://h:1/p").unwrap().to_string(),
            "wss://h:1/p"
        );
    }

    #[test]
    fn rejects_with_clear_messages() {
        let cases = [
            (
                "http://x",
                "is not an MQTT URL (use mqtt://, mqtts://, ws://, wss://)",
            ),
            ("broker:1883", "is not an MQTT URL"),
            ("", "is empty"),
            ("mqtt://", "has no host"),
            ("mqtt://:1883", "has no host"),
            ("mqtt://h:0", "invalid port '0'"),
            ("mqtt://h:70000", "invalid port '70000'"),
            ("mqtt://h:abc", "invalid port 'abc'"),
            ("mqtt://h:1/a@b", "only ws:// and wss:// URLs take a path"),
            ("mqtt://h/topic", "only ws:// and wss:// URLs take a path"),
            ("mqtt://h?x=1", "query or fragment"),
            ("mqtt://[::1", "unclosed"),
        ];
        for (input, want) in cases {
            let err = BrokerUrl::parse(input).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("mqtt.url: '{input}'")),
                "{input}: {err}"
            );
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn credentials_in_url_are_refused_and_redacted() {
        let err = BrokerUrl::parse("mqtt://user:s3cret@h:1883")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "mqtt.url: 'mqtt://user:***@h:1883' contains credentials; put them in mqtt.username and mqtt.password instead"
        );
    }
}
