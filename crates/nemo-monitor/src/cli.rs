//! The monitor's command line: its own flags ([`MonitorArgs`]) beside the flags it shares with
//! `replay` ([`nemo_config::ConnectArgs`], [`nemo_config::HmacKeyArgs`]), and their resolution
//! against the bridge's configuration ([`MonitorArgs::setup`]).
//!
//! The monitor is a client of one bridge, so it reads *its* configuration: the same TOML file
//! (`--config`), the same `NEMO_<SECTION>__<KEY>` environment, and a flag overrides a key
//! (`--mqtt-url` beats `mqtt.url`). It reads only its part, `[mqtt]`, `[hmac]` and `[status]`,
//! through nemo-config's layering; the bridge's other sections are ignored, so the monitor
//! neither compiles the bridge nor its queue clients. It only listens to the broker: the queue
//! figures come from the bridge, published beside its status (`nemo/bridge/queue`).
//!
//! The monitor is not a bridge: its MQTT configuration has no status topic, so it never
//! publishes an online/offline status or leaves a last will that would be mistaken for the
//! bridge's.

use std::fmt;
use std::path::PathBuf;

use nemo_config::{ConnectArgs, HmacConfig, HmacKeyArgs, KeyFileError, LoadError};
use nemo_mqtt::{MqttConfig, MqttError};
use serde::{Deserialize, Serialize};

/// Default topic of the bridge's retained status message (`mqtt.status_topic`'s default).
pub use crate::board::DEFAULT_STATUS_TOPIC;

/// The monitor's own flags (besides [`ConnectArgs`] and [`HmacKeyArgs`]); all but `--json`
/// are global.
///
/// ```
/// use clap::Parser;
/// use nemo_monitor::cli::MonitorArgs;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     connect: nemo_config::ConnectArgs,
///     #[command(flatten)]
///     hmac: nemo_config::HmacKeyArgs,
///     #[command(flatten)]
///     monitor: MonitorArgs,
/// }
///
/// let cli = Cli::try_parse_from(["monitor", "--mqtt-url", "mqtt://127.0.0.1:1884", "--status-topic", "lab/status"])?;
/// let setup = cli.monitor.setup(&cli.connect, &cli.hmac)?;
/// assert_eq!(setup.mqtt.url, ["mqtt://127.0.0.1:1884"]);
/// assert_eq!(setup.figures_topic.as_deref(), Some("lab/queue"));
/// assert!(setup.mqtt.status_topic.is_empty()); // not a bridge: no status, no last will
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
// Not the parser's description: without these, this doc comment would become it.
#[command(about = None, long_about = None)]
pub struct MonitorArgs {
    /// Topic filter to subscribe to; repeat for several. Default: nemo/#
    #[arg(long = "filter", global = true, value_name = "FILTER")]
    pub filters: Vec<String>,
    /// The bridge's status topic (default: `[status] topic`, else `mqtt.status_topic`, else
    /// `nemo/bridge/status`); its queue figures are read from the sibling `queue`.
    #[arg(
        long,
        global = true,
        value_name = "TOPIC",
        help = "The bridge's status topic (default: [status] topic, else nemo/bridge/status); \
                its queue figures are read from the sibling topic queue (nemo/bridge/queue)"
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

/// The sections of the bridge's configuration the monitor reads; the others are ignored.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Part {
    mqtt: MqttConfig,
    hmac: HmacConfig,
    status: StatusPart,
}

/// `[status]`: only its topic (the bridge's own schema checks the rest).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct StatusPart {
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
}

/// Everything the monitor needs, resolved from its flags and the bridge's configuration.
#[derive(Clone)]
pub struct Setup {
    /// The broker to subscribe at (validated; the monitor's client id, no status topic).
    pub mqtt: MqttConfig,
    /// Topic filters to subscribe to (`nemo/#` unless given).
    pub filters: Vec<String>,
    /// The HMAC key to check signatures with (`--hmac-key-file`, else `[hmac]`).
    pub hmac_key: Option<Vec<u8>>,
    /// The bridge's status topic to show.
    pub status_topic: String,
    /// Where the bridge publishes its queue figures (`nemo_mqtt::figures_topic` of the status
    /// topic); `None` when there is no status topic.
    pub figures_topic: Option<String>,
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
            .field("hmac_key", &self.hmac_key.as_ref().map(|_| "<redacted>"))
            .field("status_topic", &self.status_topic)
            .field("figures_topic", &self.figures_topic)
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// Why the monitor cannot start with these flags and this configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The file or environment cannot be used.
    #[error(transparent)]
    Config(#[from] LoadError),
    /// A broker setting the MQTT client refuses.
    #[error("configuration: {0}")]
    Mqtt(MqttError),
    /// The HMAC key file (`--hmac-key-file`, else `[hmac] key_file`) cannot be read
    /// (`source`) or is empty (no `source`).
    #[error(
        "{from} {}: {}",
        path.display(),
        if source.is_some() { "cannot be read" } else { "the file is empty" }
    )]
    KeyFile {
        /// `--hmac-key-file` or `configuration: hmac.key_file`.
        from: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: Option<std::io::Error>,
    },
    /// `--redis-url`: the monitor does not read the queue any more.
    #[error(
        "--redis-url: the monitor does not read the queue; it shows the queue figures the bridge \
         publishes on {figures_topic} (drop the flag)"
    )]
    RedisUrl {
        /// Where the figures are read from.
        figures_topic: String,
    },
}

impl MonitorArgs {
    /// The monitor's setup: the bridge's `[mqtt]`, `[hmac]` and `[status]` (defaults <
    /// `--config` file < `NEMO_*` environment < flags; client id `nemo-monitor-<pid>` unless
    /// given), then the status topic to watch and the figures topic beside it, the HMAC key
    /// and the topic filters.
    ///
    /// # Errors
    /// [`SetupError`]: an unusable configuration, broker settings, or HMAC key file, or
    /// `--redis-url` (shared with replay, refused here).
    pub fn setup(&self, connect: &ConnectArgs, hmac: &HmacKeyArgs) -> Result<Setup, SetupError> {
        let Part {
            mut mqtt,
            hmac: hmac_config,
            status,
        } = connect.resolve::<Part>("monitor")?.config;
        let bridge_status_topic = status
            .topic
            .unwrap_or_else(|| std::mem::take(&mut mqtt.status_topic));
        let status_topic = self.status_topic.clone().unwrap_or(bridge_status_topic);
        let figures_topic = nemo_mqtt::figures_topic(&status_topic);
        if connect.redis_url.is_some() {
            return Err(SetupError::RedisUrl {
                figures_topic: figures_topic.unwrap_or_else(|| "(no status topic)".into()),
            });
        }
        // Not a bridge: no status of its own, no last will.
        mqtt.status_topic = String::new();
        mqtt.validate().map_err(SetupError::Mqtt)?;
        let hmac_key = hmac.key(&hmac_config).map_err(|e| {
            let from = if hmac.hmac_key_file.is_some() {
                "--hmac-key-file"
            } else {
                "configuration: hmac.key_file"
            };
            match e {
                KeyFileError::Unreadable { path, source } => SetupError::KeyFile {
                    from,
                    path,
                    source: Some(source),
                },
                KeyFileError::Empty { path } => SetupError::KeyFile {
                    from,
                    path,
                    source: None,
                },
            }
        })?;
        let filters = if self.filters.is_empty() {
            vec!["nemo/#".to_owned()]
        } else {
            self.filters.clone()
        };
        Ok(Setup {
            mqtt,
            filters,
            hmac_key,
            status_topic,
            figures_topic,
            record: self.record.clone(),
            no_color: self.no_color,
            utc: self.utc,
        })
    }
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
        hmac: HmacKeyArgs,
        #[command(flatten)]
        monitor: MonitorArgs,
    }

    impl Cli {
        fn setup(&self) -> Result<Setup, SetupError> {
            self.monitor.setup(&self.connect, &self.hmac)
        }
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
    fn flags_override_the_file_and_other_sections_are_ignored() {
        let file = config_file(
            "[mqtt]\nurl = [\"mqtt://file-broker:1883\"]\nclient_id = \"nemo-bridge\"\n\
             [redis]\nurl = \"redis://file-redis:6379/1\"\nkey = \"q\"\n\
             [database]\nurl = \"postgres://nemo@db/nemo\"\n[http]\nlisten = \"\"\n",
        );
        let path = file.path().to_str().unwrap();
        let setup = parse(&["--config", path]).setup().unwrap();
        assert_eq!(setup.mqtt.url, ["mqtt://file-broker:1883"]);
        assert_eq!(
            setup.mqtt.client_id,
            format!("nemo-monitor-{}", std::process::id()),
            "never the bridge's client id"
        );
        let setup = parse(&[
            "--config",
            path,
            "--mqtt-url",
            "mqtt://flag:1884",
            "--client-id",
            "me",
        ])
        .setup()
        .unwrap();
        assert_eq!(setup.mqtt.url, ["mqtt://flag:1884"]);
        assert_eq!(setup.mqtt.client_id, "me");
    }

    #[test]
    fn redis_url_is_refused_and_names_the_figures_topic() {
        let e = parse(&["--redis-url", "redis://127.0.0.1:6390/3"])
            .setup()
            .unwrap_err();
        assert!(matches!(e, SetupError::RedisUrl { .. }), "{e}");
        assert!(e.to_string().contains("nemo/bridge/queue"), "{e}");
    }

    #[test]
    fn the_status_topic_is_watched_not_published_and_the_figures_sit_beside_it() {
        let file = config_file("[status]\ntopic = \"lab/bridge/state\"\n");
        let setup = parse(&["--config", file.path().to_str().unwrap()])
            .setup()
            .unwrap();
        assert_eq!(setup.status_topic, "lab/bridge/state");
        assert_eq!(setup.figures_topic.as_deref(), Some("lab/bridge/queue"));
        assert!(setup.mqtt.status_topic.is_empty());

        let file = config_file("[mqtt]\nstatus_topic = \"site/status\"\n");
        let setup = parse(&["--config", file.path().to_str().unwrap()])
            .setup()
            .unwrap();
        assert_eq!(setup.status_topic, "site/status");
        assert_eq!(setup.figures_topic.as_deref(), Some("site/queue"));

        let setup = parse(&[]).setup().unwrap();
        assert_eq!(setup.status_topic, "nemo/bridge/status");
        assert_eq!(setup.figures_topic.as_deref(), Some("nemo/bridge/queue"));
        let setup = parse(&["--status-topic", "x/status"]).setup().unwrap();
        assert_eq!(setup.status_topic, "x/status");
        assert_eq!(setup.figures_topic.as_deref(), Some("x/queue"));
    }

    #[test]
    fn a_bad_file_is_a_configuration_error() {
        let file = config_file("[mqtt]\nnot_a_key = 1\n");
        let e = parse(&["--config", file.path().to_str().unwrap()])
            .setup()
            .unwrap_err();
        assert!(matches!(e, SetupError::Config(_)), "{e}");
        assert!(e.to_string().starts_with("configuration: "), "{e}");
        assert!(e.to_string().contains("not_a_key"), "{e}");
    }

    #[test]
    fn monitor_defaults() {
        let setup = parse(&[]).setup().unwrap();
        assert_eq!(setup.filters, ["nemo/#"]);
        assert!(setup.hmac_key.is_none());
        assert!(setup.mqtt.client_id.starts_with("nemo-monitor-"));

        let setup = parse(&["--filter", "nemo/tools/#", "--filter", "nemo/bridge/#"])
            .setup()
            .unwrap();
        assert_eq!(setup.filters, ["nemo/tools/#", "nemo/bridge/#"]);
    }

    #[test]
    fn hmac_key_file_beats_the_configuration() {
        let file = config_file("[hmac]\nkey = \"from-config\"\n");
        let key = config_file("s3cret\r\n");
        let config = file.path().to_str().unwrap();
        let setup = parse(&["--config", config]).setup().unwrap();
        assert_eq!(setup.hmac_key.as_deref(), Some(&b"from-config"[..]));
        let setup = parse(&[
            "--config",
            config,
            "--hmac-key-file",
            key.path().to_str().unwrap(),
        ])
        .setup()
        .unwrap();
        assert_eq!(setup.hmac_key.as_deref(), Some(&b"s3cret"[..]));
        assert!(!format!("{setup:?}").contains("s3cret"), "the key in Debug");

        let empty = config_file("\n");
        let e = parse(&["--hmac-key-file", empty.path().to_str().unwrap()])
            .setup()
            .unwrap_err();
        assert!(e.to_string().starts_with("--hmac-key-file "), "{e}");
        assert!(e.to_string().ends_with(": the file is empty"), "{e}");
        let e = parse(&["--hmac-key-file", "/nonexistent/key"])
            .setup()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--hmac-key-file /nonexistent/key: cannot be read"
        );
        assert!(std::error::Error::source(&e).is_some());

        let bad = config_file("[hmac]\nkey_file = \"/nonexistent/key\"\n");
        let e = parse(&["--config", bad.path().to_str().unwrap()])
            .setup()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "configuration: hmac.key_file /nonexistent/key: cannot be read"
        );
    }

    #[test]
    fn bad_broker_settings_are_refused() {
        let e = parse(&["--mqtt-url", "http://nope"]).setup().unwrap_err();
        assert!(e.to_string().starts_with("configuration: mqtt.url"), "{e}");
    }
}
