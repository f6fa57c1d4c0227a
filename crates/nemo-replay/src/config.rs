//! The part of the bridge's configuration a replay reads: `[mqtt]`, `[redis]`, `[hmac]` and
//! `[backoff]` of the same TOML file and `NEMO_*` environment, with the shared flags
//! ([`nemo_config::ConnectArgs`]) on top. The bridge's other sections (`[http]`, `[nemo]`,
//! `[topics]`, …) are ignored, so replay neither compiles the bridge nor breaks when the
//! bridge gains a section.

use nemo_backoff::BackoffConfig;
use nemo_config::{ConnectArgs, HmacConfig, LoadError};
use nemo_mqtt::{MqttConfig, WhenDisconnected};
use nemo_redis::RedisConfig;
use serde::{Deserialize, Serialize};

/// What a replay needs of the bridge's configuration.
///
/// ```
/// use figment::providers::{Format, Toml};
/// let fig = figment::Figment::from(Toml::string(
///     "[mqtt]\nurl = \"mqtt://lab:1883\"\n[http]\nlisten = \"\"\n[nemo]\ndatabase_url = \"\""));
/// let cfg: nemo_replay::ReplayConfig = nemo_config::extract(&fig)?;
/// assert_eq!(cfg.mqtt.url, ["mqtt://lab:1883"]);
/// assert_eq!(cfg.redis.key, "nemo_mqtt_events");
/// # Ok::<(), nemo_config::LoadError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplayConfig {
    /// `[mqtt]`: the broker to publish to.
    pub mqtt: MqttConfig,
    /// `[redis]`: the queue to enqueue into, read a stream range or dead letters from.
    pub redis: RedisConfig,
    /// `[hmac]`: the key `--dry-run` checks signatures with.
    pub hmac: HmacConfig,
    /// `[backoff]`: reconnect delays.
    pub backoff: BackoffConfig,
}

impl ReplayConfig {
    /// The file and environment with `connect`'s flags and `--key` applied: client id
    /// `nemo-replay-<pid>` unless given, and no status topic, so no online/offline status and
    /// no last will that could be mistaken for the bridge's (a replay is not a bridge).
    ///
    /// # Errors
    /// [`LoadError`] when the file cannot be read or a key of these sections is wrong.
    ///
    /// ```
    /// let cfg = nemo_replay::ReplayConfig::load(&nemo_config::ConnectArgs::default(), Some("q"))?;
    /// assert_eq!(cfg.redis.key, "q");
    /// assert!(cfg.mqtt.client_id.starts_with("nemo-replay-"));
    /// assert!(cfg.mqtt.status_topic.is_empty());
    /// # Ok::<(), nemo_config::LoadError>(())
    /// ```
    pub fn load(connect: &ConnectArgs, key: Option<&str>) -> Result<ReplayConfig, LoadError> {
        let mut cfg = connect.resolve::<ReplayConfig>("replay")?.config;
        if let Some(key) = key {
            cfg.redis.key = key.to_owned();
        }
        cfg.mqtt.status_topic = String::new();
        Ok(cfg)
    }

    /// The broker settings to publish with: no status topic, and `when_disconnected = "fail"`
    /// whatever the file says (like the bridge: a replay's window waits for confirmations,
    /// it does not let the client buffer while the broker is away).
    pub fn mqtt_config(&self) -> MqttConfig {
        let mut mqtt = self.mqtt.clone();
        mqtt.status_topic = String::new();
        mqtt.when_disconnected = WhenDisconnected::Fail;
        mqtt
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        connect: ConnectArgs,
    }

    #[test]
    fn reads_its_sections_of_a_full_bridge_file_and_ignores_the_rest() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(
            &mut f,
            b"[mqtt]\nurl = \"mqtt://file:1883\"\nstatus_topic = \"lab/bridge\"\nwhen_disconnected = \"wait\"\n\
              [redis]\nkey = \"q\"\n[backoff]\ninitial_ms = 7\n\
              [http]\nlisten = \"127.0.0.1:9187\"\n[status]\ntopic = \"x\"\n[nemo]\ndatabase_url = \"\"\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "replay",
            "--config",
            f.path().to_str().unwrap(),
            "--mqtt-url",
            "mqtt://flag:1",
        ])
        .unwrap();
        let cfg = ReplayConfig::load(&cli.connect, None).unwrap();
        assert_eq!(cfg.mqtt.url, ["mqtt://flag:1"]);
        assert_eq!(cfg.redis.key, "q");
        assert_eq!(cfg.backoff.initial_ms, 7);
        assert!(cfg.mqtt.status_topic.is_empty());
        assert_eq!(cfg.mqtt_config().when_disconnected, WhenDisconnected::Fail);

        std::io::Write::write_all(&mut f, b"[redis]\nkye = 1\n").unwrap();
        let e = ReplayConfig::load(&cli.connect, None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("configuration: "), "{e}");
    }
}
