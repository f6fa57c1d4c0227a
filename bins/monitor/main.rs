//! `monitor`: watch the NEMO MQTT stream as people read it.
//!
//! Thin shell around the `nemo-monitor` library: parse the command line and the
//! bridge's configuration file (the same `[mqtt]`, `[redis]`, `[hmac]` tables),
//! subscribe, and hand every message to the terminal view, the board or the web
//! dashboard, plus the optional recording.

#[path = "../man.rs"]
mod man;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use nemo_monitor::format::UtcOffset;
use nemo_monitor::web::Hub;
use nemo_monitor::{Board, FormatOptions, Formatter, QueueStats, RecordLine, Recorder};
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    name = "monitor",
    version,
    about = "Watch the NEMO MQTT stream: readable lines, a tool board, or a web dashboard",
    after_help = "Examples:\n  monitor --config /etc/nemo/bridge.toml\n  monitor --mqtt-url mqtt://broker:1883 --record incident.jsonl\n  monitor board\n  monitor web --listen 127.0.0.1:8088"
)]
struct Cli {
    /// The bridge's TOML configuration ([mqtt], [redis], [hmac], [status] are used).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Broker URL (overrides mqtt.url), e.g. mqtt://127.0.0.1:1883 or mqtts://host:8883.
    #[arg(long, global = true, value_name = "URL")]
    mqtt_url: Option<String>,
    /// MQTT client id (default nemo-monitor-<pid>; must differ from the bridge's).
    #[arg(long, global = true)]
    client_id: Option<String>,
    /// Topic filter to subscribe to; repeat for several. Default: nemo/#
    #[arg(long = "filter", global = true, value_name = "FILTER")]
    filters: Vec<String>,
    /// File holding the HMAC key (overrides [hmac]); lines then show HMAC ✓/✗.
    #[arg(long, global = true, value_name = "PATH")]
    hmac_key_file: Option<PathBuf>,
    /// Redis URL of the bridge's queue (overrides redis.url) for the health line.
    #[arg(long, global = true, value_name = "URL")]
    redis_url: Option<String>,
    /// Seconds between queue statistics reads.
    #[arg(long, global = true, default_value_t = 5, value_name = "SECONDS")]
    health_interval: u64,
    /// The bridge's status topic (default: [status] topic, else nemo/bridge/status).
    #[arg(long, global = true, value_name = "TOPIC")]
    status_topic: Option<String>,
    /// Also write every received message to FILE as JSONL (appends; replay reads it).
    #[arg(long, global = true, value_name = "FILE")]
    record: Option<PathBuf>,
    /// No colours (they are also off when stdout is not a terminal).
    #[arg(long, global = true)]
    no_color: bool,
    /// Show times in UTC instead of local time.
    #[arg(long, global = true)]
    utc: bool,
    /// Print raw JSONL (the recording format) instead of readable lines.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The current state of every tool, refreshed in place every second.
    Board,
    /// Serve the live dashboard (one page, pushed over SSE) and /api/state.
    Web {
        /// Address to listen on. Non-loopback addresses require --token.
        #[arg(long, default_value = "127.0.0.1:8088")]
        listen: SocketAddr,
        /// Require this token on every request (?token=T or Authorization: Bearer T).
        #[arg(long, env = "NEMO_MONITOR_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

/// Everything resolved from flags and configuration.
struct Setup {
    mqtt: nemo_mqtt::MqttConfig,
    filters: Vec<String>,
    redis: Option<nemo_redis::RedisConfig>,
    config: nemo_bridge::config::Config,
    hmac_key: Option<Vec<u8>>,
    status_topic: String,
}

fn resolve(cli: &Cli) -> anyhow::Result<Setup> {
    let fig = nemo_bridge::config::figment(cli.config.as_deref());
    let from_outside = |key: &str| {
        fig.find_metadata(key)
            .is_some_and(|m| m.name.contains("file") || m.name.contains("environment"))
    };
    let redis_configured = cli.redis_url.is_some() || from_outside("redis.url");
    let mut cfg = nemo_bridge::config::Config::from_figment(fig.clone())
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    if let Some(url) = &cli.mqtt_url {
        cfg.mqtt.url = vec![url.clone()];
    }
    if let Some(url) = &cli.redis_url {
        cfg.redis.url = url.clone();
    }
    cfg.mqtt.client_id = cli
        .client_id
        .clone()
        .unwrap_or_else(|| format!("nemo-monitor-{}", std::process::id()));
    // The monitor never publishes a status or a last will.
    let status_topic = cli
        .status_topic
        .clone()
        .or_else(|| cfg.status.topic.clone())
        .unwrap_or_else(|| cfg.mqtt.status_topic.clone());
    cfg.mqtt.status_topic = String::new();
    cfg.mqtt
        .validate()
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    let hmac_key = match &cli.hmac_key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--hmac-key-file {}", path.display()))?;
            let key = text.trim_end_matches(['\r', '\n']);
            if key.is_empty() {
                bail!("--hmac-key-file {}: the file is empty", path.display());
            }
            Some(key.as_bytes().to_vec())
        }
        None => cfg
            .hmac
            .key_bytes()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?,
    };
    let redis = if redis_configured {
        let r = cfg.redis_config();
        r.validate()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        Some(r)
    } else {
        None
    };
    let filters = if cli.filters.is_empty() {
        vec!["nemo/#".to_owned()]
    } else {
        cli.filters.clone()
    };
    Ok(Setup {
        mqtt: cfg.mqtt.clone(),
        filters,
        redis,
        config: cfg,
        hmac_key,
        status_topic,
    })
}

fn main() -> std::process::ExitCode {
    if let Some(code) = man::print_if_asked::<Cli>("nemo-monitor") {
        return code;
    }
    // Determine the local UTC offset while the process is single-threaded (the
    // `time` crate refuses afterwards on Unix).
    let offset = nemo_monitor::format::local_offset();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,monitor=info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("monitor: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, offset)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monitor: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, offset: UtcOffset) -> anyhow::Result<()> {
    let setup = resolve(&cli)?;
    let color = !cli.no_color && std::io::stdout().is_terminal();
    let offset = if cli.utc { UtcOffset::UTC } else { offset };
    let formatter = Formatter::with_offset(
        FormatOptions {
            color,
            hmac_key: setup.hmac_key.clone(),
            utc: cli.utc,
        },
        offset,
    );
    let board = Board::new()
        .with_offset(offset)
        .with_status_topic(setup.status_topic.clone())
        .with_hmac_key(setup.hmac_key.clone());

    // Refuse a public web listener without a token before connecting anywhere.
    let web = match &cli.cmd {
        Some(Cmd::Web { listen, token }) => {
            nemo_monitor::web::check_listen(*listen, token.as_deref())?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            Some((listener, token.clone()))
        }
        _ => None,
    };

    let mut recorder = match &cli.record {
        Some(path) => Some(
            Recorder::create(path)
                .with_context(|| format!("--record {}: cannot open", path.display()))?,
        ),
        None => None,
    };

    let filters: Vec<&str> = setup.filters.iter().map(String::as_str).collect();
    let mut sub =
        nemo_mqtt::Subscriber::connect(setup.mqtt.clone(), &filters, nemo_events::Qos::ExactlyOnce)
            .await
            .map_err(|e| anyhow::anyhow!("MQTT: {e}"))?;
    tracing::info!(filters = ?setup.filters, "subscribed");

    let (stats_tx, mut stats_rx) = watch::channel::<Option<QueueStats>>(None);
    if let Some(redis) = setup.redis.clone() {
        let every = Duration::from_secs(cli.health_interval.max(1));
        tokio::spawn(poll_queue(redis, setup.config.clone(), every, stats_tx));
    }

    let mode = Mode::from(&cli);
    let mut view = View {
        mode,
        formatter: None,
        board: None,
        hub: None,
        color,
        last_health: String::new(),
    };
    match web {
        Some((listener, token)) => {
            let hub = Hub::new(formatter, board);
            let addr = listener.local_addr()?;
            let shown = if token.is_some() {
                format!("http://{addr}/?token=<token>")
            } else {
                format!("http://{addr}/")
            };
            eprintln!("monitor: web dashboard on {shown}");
            let serve_hub = hub.clone();
            tokio::spawn(async move {
                let stop = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                if let Err(e) = nemo_monitor::web::serve(listener, serve_hub, token, stop).await {
                    tracing::error!(error = %e, "web server stopped");
                }
            });
            view.hub = Some(hub);
        }
        None if mode == Mode::Board => view.board = Some(board),
        None => view.formatter = Some(formatter),
    }

    let mut stats_open = true;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            msg = sub.recv() => {
                let Some(msg) = msg else { break };
                let line = RecordLine {
                    received_at: msg.received_at,
                    topic: msg.topic,
                    payload: msg.payload,
                    qos: msg.qos.as_u8(),
                    retain: msg.retain,
                };
                if let Some(rec) = recorder.as_mut()
                    && let Err(e) = rec.write(&line)
                {
                    bail!("--record: write failed: {e}");
                }
                if !view.message(&line, &mut stdout)? {
                    break;
                }
            }
            changed = stats_rx.changed(), if stats_open => {
                // Err: the poller ended (no Redis configured); stop polling this branch.
                stats_open = changed.is_ok();
                let stats = *stats_rx.borrow_and_update();
                if let Some(stats) = stats
                    && !view.stats(stats, &mut stdout)?
                {
                    break;
                }
            }
            _ = tick.tick(), if mode == Mode::Board => {
                if !view.redraw(&mut stdout)? {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let _ = sub.shutdown().await;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Lines,
    Json,
    Board,
    Web,
}

impl From<&Cli> for Mode {
    fn from(cli: &Cli) -> Mode {
        match (&cli.cmd, cli.json) {
            (Some(Cmd::Board), _) => Mode::Board,
            (Some(Cmd::Web { .. }), _) => Mode::Web,
            (None, true) => Mode::Json,
            (None, false) => Mode::Lines,
        }
    }
}

struct View {
    mode: Mode,
    formatter: Option<Formatter>,
    board: Option<Board>,
    hub: Option<Arc<Hub>>,
    color: bool,
    last_health: String,
}

/// Write a line; `Ok(false)` when stdout is closed (e.g. `monitor | head`).
fn emit(out: &mut impl Write, text: &str) -> anyhow::Result<bool> {
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl View {
    fn message(&mut self, line: &RecordLine, out: &mut impl Write) -> anyhow::Result<bool> {
        match self.mode {
            Mode::Json => emit(out, &line.to_json_line()),
            Mode::Lines => match &self.formatter {
                Some(f) => emit(
                    out,
                    &f.line(&line.topic, &line.payload, line.retain, line.received_at),
                ),
                None => Ok(true),
            },
            Mode::Board => {
                if let Some(b) = self.board.as_mut() {
                    b.apply(&line.topic, &line.payload, line.received_at);
                }
                Ok(true)
            }
            Mode::Web => {
                if let Some(hub) = &self.hub {
                    hub.ingest(&line.topic, &line.payload, line.retain, line.received_at);
                }
                Ok(true)
            }
        }
    }

    fn stats(&mut self, stats: QueueStats, out: &mut impl Write) -> anyhow::Result<bool> {
        match self.mode {
            Mode::Board => {
                if let Some(b) = self.board.as_mut() {
                    b.set_queue_stats(stats);
                }
                Ok(true)
            }
            Mode::Web => {
                if let Some(hub) = &self.hub {
                    hub.set_queue_stats(stats);
                }
                Ok(true)
            }
            Mode::Lines | Mode::Json => {
                // Say it when the numbers change, not every few seconds.
                let key = format!("{} {} {}", stats.depth, stats.processing, stats.dead);
                if key == self.last_health {
                    return Ok(true);
                }
                self.last_health = key;
                if self.mode == Mode::Json {
                    // Keep stdout pure JSONL; health goes to stderr.
                    eprintln!(
                        "queue: depth {} · processing {} · dead {}",
                        stats.depth, stats.processing, stats.dead
                    );
                    return Ok(true);
                }
                let mut b = Board::new();
                if let Some(f) = &self.formatter {
                    b = b.with_offset(f.offset());
                }
                b.set_queue_stats(stats);
                let text = b.health_line(self.color);
                // Only the queue part: the status topic has its own lines.
                let text = text
                    .split_once(" | ")
                    .map(|(_, q)| q.to_owned())
                    .unwrap_or(text);
                emit(out, &text)
            }
        }
    }

    fn redraw(&mut self, out: &mut impl Write) -> anyhow::Result<bool> {
        let Some(board) = &self.board else {
            return Ok(true);
        };
        let text = board.render(self.color);
        if std::io::stdout().is_terminal() {
            // Clear the screen and home the cursor, then draw.
            emit(out, &format!("\x1b[2J\x1b[H{text}"))
        } else {
            emit(out, &format!("{text}---"))
        }
    }
}

async fn poll_queue(
    redis_cfg: nemo_redis::RedisConfig,
    cfg: nemo_bridge::config::Config,
    every: Duration,
    tx: watch::Sender<Option<QueueStats>>,
) {
    let backoff = cfg.backoff;
    loop {
        let redis = match nemo_redis::Redis::connect(&redis_cfg, &backoff).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(url = %redis_cfg.redacted_url(), error = %e, "redis: cannot connect for queue statistics; retrying");
                tokio::time::sleep(every).await;
                continue;
            }
        };
        let stats = redis.stats();
        loop {
            let read = async {
                Ok::<_, nemo_redis::RedisError>(QueueStats::now(
                    stats.depth().await?,
                    stats.processing_len().await?,
                    stats.dead_len().await?,
                ))
            };
            match read.await {
                Ok(s) => {
                    if tx.send(Some(s)).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "redis: reading queue statistics failed"),
            }
            tokio::time::sleep(every).await;
        }
    }
}
