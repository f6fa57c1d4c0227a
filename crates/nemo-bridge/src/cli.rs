//! The `bridge` program's command line (feature `cli`): its flags, how they layer over the
//! configuration, and its logging. The binary (`bins/bridge`) only parses, loads and runs.
//!
//! ```
//! use clap::Parser;
//! use nemo_bridge::cli::Cli;
//! let cli = Cli::parse_from(["bridge", "--mqtt-url", "mqtt://10.0.0.5:1883", "--no-lease"]);
//! let cfg = nemo_bridge::Config::from_figment(cli.figment(None)).unwrap();
//! assert_eq!(cfg.mqtt.url, vec!["mqtt://10.0.0.5:1883".to_string()]);
//! assert_eq!(cfg.lease.enabled, Some(false));
//! ```

// The doc comments below are the program's --help, where `[nemo]` names a TOML section, not a
// rustdoc link.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::config::{flag, layered};
use crate::settings::RowLayer;

/// `--log-format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (default on a terminal).
    Human,
    /// One JSON object per line (for log collectors).
    Json,
}

/// `--mode` (`redis.mode`).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Mode {
    /// Redis list (the NEMO plugin's format), at-least-once.
    List,
    /// Redis stream with a consumer group, at-least-once.
    Stream,
    /// Redis pub/sub, at-most-once.
    Pubsub,
}

/// Forward NEMO tool events to MQTT: at-least-once, in order, with a single active bridge per
/// queue. The queue is the Redis list of NEMO's MQTT plugin 1.x (the default), or, with
/// --source database ([nemo] source = "database"), the table nemo_mqtt_mqtt_eventqueue of plugin
/// 2.x in NEMO's PostgreSQL at [nemo] database_url (then no Redis is used).
///
/// Configuration layers, weakest first: built-in defaults < --config FILE < NEMO's MQTT
/// configuration page (the enabled row of NEMO's database, when [nemo] database_url is set) <
/// NEMO_<SECTION>__<KEY> environment variables (e.g. NEMO_MQTT__URL) < these flags.
/// Every key is described in docs/configuration.md.
///
/// Signals: SIGINT/SIGTERM stop gracefully (drain, return unconfirmed items, publish the offline
/// status), always within shutdown.drain_timeout_s + 5 s (a second signal exits at once); SIGHUP re-reads the configuration (a new broker address is applied without losing
/// events), as do `reload_config` or NOTIFY nemo_mqtt_reload (a save on NEMO's page) and a changed row found by the poll. Exit codes: 0 = stopped cleanly, 1 = runtime error, 2 = invalid configuration, 70 = the
/// watchdog found the pipeline stalled (let the service manager restart the bridge).
#[derive(Debug, Clone, Parser)]
#[command(name = "bridge", version)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Validate the configuration, print it as TOML with secrets redacted and the layer each
    /// value came from, and exit (0 = valid, 2 = invalid). Reads NEMO's database when
    /// [nemo] database_url is set; connects to nothing else.
    #[arg(long)]
    pub check_config: bool,
    /// Log format: human-readable lines, or one JSON object per line. RUST_LOG sets the level (default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Redis URL, e.g. redis://127.0.0.1:6379/1 (redis.url).
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Queue kind (redis.mode).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Queue key (redis.key), default nemo_mqtt_events.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Broker URL, e.g. mqtt://127.0.0.1:1883 or mqtts://host:8883 (mqtt.url).
    #[arg(long, value_name = "URL")]
    pub mqtt_url: Option<String>,
    /// MQTT client id (mqtt.client_id).
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// HTTP listen address for /healthz /readyz /metrics; "" = off (http.listen).
    #[arg(long, value_name = "HOST:PORT")]
    pub http_listen: Option<String>,
    /// Turn the single-active lease off (lease.enabled = false).
    #[arg(long)]
    pub no_lease: bool,
    /// NEMO's database, whose MQTT configuration page then drives the bridge, e.g.
    /// postgres://bridge@db/nemo?sslmode=verify-full or sqlite:///srv/nemo/nemo.sqlite3
    /// (nemo.database_url).
    #[arg(long, value_name = "URL")]
    pub nemo_database_url: Option<String>,
    /// Where events come from: redis (NEMO's MQTT plugin 1.x) or database (plugin 2.x: the
    /// queue table in NEMO's PostgreSQL at --nemo-database-url) (nemo.source).
    #[arg(long, value_enum, value_name = "SOURCE")]
    pub source: Option<SourceArg>,
}

/// `--source` (`nemo.source`).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SourceArg {
    /// The Redis queue of plugin 1.x ([redis]).
    Redis,
    /// The PostgreSQL table of plugin 2.x (nemo_mqtt_mqtt_eventqueue).
    Database,
}

impl Cli {
    /// Every layer, with NEMO's row (if any) between the file and the environment, and the
    /// flags on top.
    pub fn figment(&self, row: Option<&RowLayer>) -> figment::Figment {
        let mut fig = layered(self.config.as_deref(), row);
        let mut set = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                fig = std::mem::take(&mut fig).merge(flag(key, v));
            }
        };
        set("redis.url", self.redis_url.clone());
        set(
            "redis.mode",
            self.mode.map(|m| {
                match m {
                    Mode::List => "list",
                    Mode::Stream => "stream",
                    Mode::Pubsub => "pubsub",
                }
                .to_string()
            }),
        );
        set("redis.key", self.key.clone());
        set("mqtt.url", self.mqtt_url.clone());
        set("mqtt.client_id", self.client_id.clone());
        set("http.listen", self.http_listen.clone());
        set("nemo.database_url", self.nemo_database_url.clone());
        set(
            "nemo.source",
            self.source.map(|s| {
                match s {
                    SourceArg::Redis => "redis",
                    SourceArg::Database => "database",
                }
                .to_string()
            }),
        );
        if self.no_lease {
            fig = fig.merge(flag("lease.enabled", false));
        }
        fig
    }
}

/// Log through `tracing` to standard error, in `format`; `RUST_LOG` sets the level (default
/// `info`).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}
