//! The command line of the tools around the bridge: the connection flags that `monitor` and
//! `replay` share, the monitor's own flags, and their resolution against the bridge's
//! configuration.
//!
//! Both tools are clients of one bridge, so they read *its* configuration: the same TOML file
//! (`--config`), the same `NEMO_<SECTION>__<KEY>` environment, and a flag overrides a key
//! (`--mqtt-url` beats `mqtt.url`). [`ConnectArgs`] declares those flags once and
//! [`ConnectArgs::resolve`] applies them once; each program then adds what is its own (the
//! monitor's [`MonitorArgs::setup`], replay's queue key).
//!
//! Neither tool is a bridge: the resolved configuration has no status topic, so neither
//! publishes an online/offline status or leaves a last will that would be mistaken for the
//! bridge's.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nemo_backoff::BackoffConfig;
use nemo_bridge::config::{Config, ConfigError};
use nemo_mqtt::{MqttConfig, MqttError};
use nemo_redis::RedisConfig;

/// The connection flags shared by `monitor` and `replay`: flatten into a program's parser with
/// `#[command(flatten)]`. Every flag is global (accepted after a subcommand too).
///
/// A program may reword a flag's help with clap's `mut_arg` (ids: `config`, `mqtt_url`,
/// `client_id`, `redis_url`) to say what *it* uses the value for.
///
/// ```
/// use clap::Parser;
/// use nemo_monitor::cli::ConnectArgs;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     connect: ConnectArgs,
/// }
///
/// let cli = Cli::try_parse_from(["tool", "--mqtt-url", "mqtt://127.0.0.1:1884", "--client-id", "me"])?;
/// let resolved = cli.connect.resolve("tool")?;
/// assert_eq!(resolved.config.mqtt.url, ["mqtt://127.0.0.1:1884"]);
/// assert_eq!(resolved.config.mqtt.client_id, "me");
/// assert!(resolved.config.mqtt.status_topic.is_empty()); // not a bridge: no status, no last will
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
// Not the parser's description: without these, this doc comment would become it.
#[command(about = None, long_about = None)]
pub struct ConnectArgs {
    /// The bridge's TOML configuration (`[mqtt]`, `[redis]`, `[hmac]`, `[backoff]` are used).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Broker URL (overrides mqtt.url), e.g. mqtt://127.0.0.1:1883 or mqtts://host:8883.
    #[arg(long, global = true, value_name = "URL")]
    pub mqtt_url: Option<String>,
    /// MQTT client id (default `nemo-<program>-<pid>`; must differ from the bridge's).
    #[arg(long, global = true)]
    pub client_id: Option<String>,
    /// Redis URL of the bridge's queue (overrides redis.url), e.g. redis://127.0.0.1:6379/1.
    #[arg(long, global = true, value_name = "URL")]
    pub redis_url: Option<String>,
}

/// The bridge's configuration with the [`ConnectArgs`] applied.
#[derive(Debug, Clone)]
pub struct Connection {
    /// File < environment < flags. `mqtt.client_id` is set (the flag, else
    /// `nemo-<program>-<pid>`); `mqtt.status_topic` and `status.topic` are cleared.
    pub config: Config,
    /// The bridge's status topic, as the bridge would publish it (`[status] topic`, else
    /// `mqtt.status_topic`), for a tool that watches it.
    pub bridge_status_topic: String,
    /// True when a Redis URL was given on purpose (the flag, the file or the environment)
    /// rather than left at the built-in default.
    pub redis_configured: bool,
}

/// The configuration file or environment cannot be used. The message includes the cause (so
/// it is not also given as the error's source).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ResolveError(pub ConfigError);

impl From<ConfigError> for ResolveError {
    fn from(e: ConfigError) -> Self {
        ResolveError(e)
    }
}

impl ConnectArgs {
    /// Read the bridge's configuration (defaults < `--config` file < `NEMO_*` environment) and
    /// apply these flags. `program` names the default client id, `nemo-<program>-<pid>`, so two
    /// tools (and the bridge) never share one: a broker disconnects the older of two clients with
    /// the same id.
    ///
    /// # Errors
    /// [`ResolveError`] when the file cannot be read, or a key has a wrong type or is unknown.
    pub fn resolve(&self, program: &str) -> Result<Connection, ResolveError> {
        let fig = nemo_bridge::config::figment(self.config.as_deref());
        let from_outside = fig
            .find_metadata("redis.url")
            .is_some_and(|m| m.name.contains("file") || m.name.contains("environment"));
        let mut config = Config::from_figment(fig)?;
        if let Some(url) = &self.mqtt_url {
            config.mqtt.url = vec![url.clone()];
        }
        if let Some(url) = &self.redis_url {
            config.redis.url = url.clone();
        }
        config.mqtt.client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| format!("nemo-{program}-{}", std::process::id()));
        let bridge_status_topic = config
            .status
            .topic
            .take()
            .unwrap_or_else(|| std::mem::take(&mut config.mqtt.status_topic));
        config.mqtt.status_topic = String::new();
        Ok(Connection {
            config,
            bridge_status_topic,
            redis_configured: self.redis_url.is_some() || from_outside,
        })
    }
}

/// The monitor's own flags (besides [`ConnectArgs`]); all but `--json` are global.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
// Not the parser's description: without these, this doc comment would become it.
#[command(about = None, long_about = None)]
pub struct MonitorArgs {
    /// Topic filter to subscribe to; repeat for several. Default: nemo/#
    #[arg(long = "filter", global = true, value_name = "FILTER")]
    pub filters: Vec<String>,
    /// File holding the HMAC key (overrides `[hmac]`); lines then show HMAC ✓/✗.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        help = "File holding the HMAC key (overrides [hmac]); lines then show HMAC ✓/✗"
    )]
    pub hmac_key_file: Option<PathBuf>,
    /// Seconds between queue statistics reads.
    #[arg(long, global = true, default_value_t = 5, value_name = "SECONDS")]
    pub health_interval: u64,
    /// The bridge's status topic (default: `[status] topic`, else `nemo/bridge/status`).
    #[arg(
        long,
        global = true,
        value_name = "TOPIC",
        help = "The bridge's status topic (default: [status] topic, else nemo/bridge/status)"
    )]
    pub status_topic: Option<String>,
    /// Also write every received message to FILE as JSONL (appends; replay reads it).
    #[arg(long, global = true, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// No colours (they are also off when stdout is not a terminal).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Show times in UTC instead of local time.
    #[arg(long, global = true)]
    pub utc: bool,
    /// Print raw JSONL (the recording format) instead of readable lines.
    #[arg(long)]
    pub json: bool,
}

/// Everything the monitor needs, resolved from its flags and the bridge's configuration.
#[derive(Clone)]
pub struct Setup {
    /// The broker to subscribe at (validated; the monitor's client id, no status topic).
    pub mqtt: MqttConfig,
    /// Topic filters to subscribe to (`nemo/#` unless given).
    pub filters: Vec<String>,
    /// The bridge's queue, for the health line; `None` when no Redis URL was given anywhere.
    pub redis: Option<RedisConfig>,
    /// How to reconnect to Redis.
    pub backoff: BackoffConfig,
    /// The HMAC key to check signatures with (`--hmac-key-file`, else `[hmac]`).
    pub hmac_key: Option<Vec<u8>>,
    /// The bridge's status topic to show.
    pub status_topic: String,
    /// Time between queue statistics reads (at least 1 s).
    pub health_interval: Duration,
    /// Where to append the recording.
    pub record: Option<PathBuf>,
    /// `--no-color`.
    pub no_color: bool,
    /// `--utc`.
    pub utc: bool,
}

impl fmt::Debug for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Setup")
            .field("mqtt", &self.mqtt)
            .field("filters", &self.filters)
            .field("redis", &self.redis)
            .field("hmac_key", &self.hmac_key.as_ref().map(|_| "<redacted>"))
            .field("status_topic", &self.status_topic)
            .field("health_interval", &self.health_interval)
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// Why the monitor cannot start with these flags and this configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The file or environment cannot be used.
    #[error(transparent)]
    Config(#[from] ResolveError),
    /// A broker setting the MQTT client refuses.
    #[error("configuration: {0}")]
    Mqtt(MqttError),
    /// A Redis setting the Redis client refuses.
    #[error("configuration: {0}")]
    Redis(nemo_redis::ConfigError),
    /// `[hmac] key_file` cannot be read or is empty.
    #[error("configuration: {0}")]
    Hmac(ConfigError),
    /// `--hmac-key-file` cannot be read.
    #[error("--hmac-key-file {}", path.display())]
    HmacKeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `--hmac-key-file` holds no key.
    #[error("--hmac-key-file {}: the file is empty", path.display())]
    EmptyHmacKeyFile {
        /// The file.
        path: PathBuf,
    },
}

impl MonitorArgs {
    /// The monitor's setup: [`ConnectArgs::resolve`] for `monitor`, then the status
    /// topic to watch, the HMAC key, the queue to read statistics from (only when a Redis URL
    /// was given somewhere: the default URL would point the health line at whatever Redis runs
    /// on the machine) and the topic filters.
    ///
    /// # Errors
    /// [`SetupError`]: an unusable configuration, broker or Redis settings, or HMAC key file.
    pub fn setup(&self, connect: &ConnectArgs) -> Result<Setup, SetupError> {
        let Connection {
            config,
            bridge_status_topic,
            redis_configured,
        } = connect.resolve("monitor")?;
        let status_topic = self.status_topic.clone().unwrap_or(bridge_status_topic);
        config.mqtt.validate().map_err(SetupError::Mqtt)?;
        let hmac_key = match &self.hmac_key_file {
            Some(path) => Some(read_key_file(path)?),
            None => config.hmac.key_bytes().map_err(SetupError::Hmac)?,
        };
        let redis = if redis_configured {
            let r = config.redis_config();
            r.validate().map_err(SetupError::Redis)?;
            Some(r)
        } else {
            None
        };
        let filters = if self.filters.is_empty() {
            vec!["nemo/#".to_owned()]
        } else {
            self.filters.clone()
        };
        Ok(Setup {
            mqtt: config.mqtt,
            filters,
            redis,
            backoff: config.backoff,
            hmac_key,
            status_topic,
            health_interval: Duration::from_secs(self.health_interval.max(1)),
            record: self.record.clone(),
            no_color: self.no_color,
            utc: self.utc,
        })
    }
}

/// The key in a key file: its text without the trailing line break.
fn read_key_file(path: &Path) -> Result<Vec<u8>, SetupError> {
    let text = std::fs::read_to_string(path).map_err(|source| SetupError::HmacKeyFile {
        path: path.to_owned(),
        source,
    })?;
    let key = text.trim_end_matches(['\r', '\n']);
    if key.is_empty() {
        return Err(SetupError::EmptyHmacKeyFile {
            path: path.to_owned(),
        });
    }
    Ok(key.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        monitor: MonitorArgs,
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("monitor").chain(args.iter().copied())).unwrap()
    }

    fn config_file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn flags_override_the_file_and_the_program_names_the_client_id() {
        let file = config_file(
            "[mqtt]\nurl = [\"mqtt://file-broker:1883\"]\nclient_id = \"nemo-bridge\"\n\
             [redis]\nurl = \"redis://file-redis:6379/1\"\nkey = \"q\"\n",
        );
        let path = file.path().to_str().unwrap();
        let r = parse(&["--config", path])
            .connect
            .resolve("replay")
            .unwrap();
        assert_eq!(r.config.mqtt.url, ["mqtt://file-broker:1883"]);
        assert_eq!(
            r.config.mqtt.client_id,
            format!("nemo-replay-{}", std::process::id())
        );
        assert_eq!(r.config.redis.key, "q");
        assert!(r.redis_configured, "the file names a Redis URL");

        let cli = parse(&[
            "--config",
            path,
            "--mqtt-url",
            "mqtt://flag:1884",
            "--redis-url",
            "redis://flag:6380/2",
            "--client-id",
            "me",
        ]);
        let r = cli.connect.resolve("replay").unwrap();
        assert_eq!(r.config.mqtt.url, ["mqtt://flag:1884"]);
        assert_eq!(r.config.redis.url, "redis://flag:6380/2");
        assert_eq!(r.config.mqtt.client_id, "me");
    }

    #[test]
    fn the_default_redis_url_is_not_a_configured_one() {
        let r = parse(&[]).connect.resolve("monitor").unwrap();
        assert!(!r.redis_configured);
        let r = parse(&["--redis-url", "redis://127.0.0.1:1/0"])
            .connect
            .resolve("monitor")
            .unwrap();
        assert!(r.redis_configured);
    }

    #[test]
    fn the_status_topic_is_reported_not_published() {
        let file = config_file("[status]\ntopic = \"lab/bridge\"\n");
        let cli = parse(&["--config", file.path().to_str().unwrap()]);
        let r = cli.connect.resolve("monitor").unwrap();
        assert_eq!(r.bridge_status_topic, "lab/bridge");
        assert!(r.config.mqtt.status_topic.is_empty());
        assert_eq!(r.config.status.topic, None);

        let r = parse(&[]).connect.resolve("monitor").unwrap();
        assert_eq!(r.bridge_status_topic, "nemo/bridge/status");
        let setup = parse(&["--status-topic", "x/status"])
            .monitor
            .setup(&ConnectArgs::default())
            .unwrap();
        assert_eq!(setup.status_topic, "x/status");
    }

    #[test]
    fn a_bad_file_is_a_configuration_error() {
        let file = config_file("[mqtt]\nnot_a_key = 1\n");
        let cli = parse(&["--config", file.path().to_str().unwrap()]);
        let e = cli.connect.resolve("monitor").unwrap_err();
        assert!(e.to_string().starts_with("configuration: "), "{e}");
        assert!(e.to_string().contains("not_a_key"), "{e}");
        let e = cli.monitor.setup(&cli.connect).unwrap_err();
        assert!(matches!(e, SetupError::Config(_)), "{e}");
    }

    #[test]
    fn monitor_defaults() {
        let setup = parse(&[]).monitor.setup(&ConnectArgs::default()).unwrap();
        assert_eq!(setup.filters, ["nemo/#"]);
        assert!(setup.redis.is_none());
        assert!(setup.hmac_key.is_none());
        assert_eq!(setup.health_interval, Duration::from_secs(5));
        assert!(setup.mqtt.client_id.starts_with("nemo-monitor-"));

        let cli = parse(&[
            "--filter",
            "nemo/tools/#",
            "--filter",
            "nemo/bridge/#",
            "--health-interval",
            "0",
            "--redis-url",
            "redis://127.0.0.1:6390/3",
        ]);
        let setup = cli.monitor.setup(&cli.connect).unwrap();
        assert_eq!(setup.filters, ["nemo/tools/#", "nemo/bridge/#"]);
        assert_eq!(setup.health_interval, Duration::from_secs(1));
        assert_eq!(setup.redis.unwrap().url, "redis://127.0.0.1:6390/3");
    }

    #[test]
    fn hmac_key_file_beats_the_configuration() {
        let file = config_file("[hmac]\nkey = \"from-config\"\n");
        let key = config_file("s3cret\r\n");
        let config = file.path().to_str().unwrap();
        let cli = parse(&["--config", config]);
        let setup = cli.monitor.setup(&cli.connect).unwrap();
        assert_eq!(setup.hmac_key.as_deref(), Some(&b"from-config"[..]));
        let cli = parse(&[
            "--config",
            config,
            "--hmac-key-file",
            key.path().to_str().unwrap(),
        ]);
        let setup = cli.monitor.setup(&cli.connect).unwrap();
        assert_eq!(setup.hmac_key.as_deref(), Some(&b"s3cret"[..]));
        assert!(!format!("{setup:?}").contains("s3cret"), "the key in Debug");

        let empty = config_file("\n");
        let cli = parse(&["--hmac-key-file", empty.path().to_str().unwrap()]);
        let e = cli.monitor.setup(&cli.connect).unwrap_err();
        assert!(e.to_string().ends_with(": the file is empty"), "{e}");
        let cli = parse(&["--hmac-key-file", "/nonexistent/key"]);
        let e = cli.monitor.setup(&cli.connect).unwrap_err();
        assert_eq!(e.to_string(), "--hmac-key-file /nonexistent/key");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn bad_broker_settings_are_refused() {
        let cli = parse(&["--mqtt-url", "http://nope"]);
        let e = cli.monitor.setup(&cli.connect).unwrap_err();
        assert!(e.to_string().starts_with("configuration: mqtt.url"), "{e}");
    }
}
