//! `replay`: send a recorded incident again, into an MQTT broker or the Redis queue.
//!
//! Thin shell around the `nemo-replay` library: parse the command line and the
//! bridge's configuration (the same `[mqtt]`, `[redis]`, `[backoff]` tables and
//! `NEMO_*` environment), build the input, filter, schedule and sink, run the
//! replayer, print the summary.
//!
//! Exit codes: 0 done; 1 bad usage, bad configuration, unreadable input or (with
//! `--strict`) a bad input line; 2 the replay ran but some items failed to send.

#[path = "../man.rs"]
mod man;

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use nemo_monitor::{FormatOptions, Formatter};
use nemo_replay::{
    DryRunSink, FakeClock, Filter, InputError, InputFormat, LineItems, MqttSink, Observer, Pacing,
    RedisSink, ReplayItem, ReplayOptions, Replayer, Schedule, SinkError, Summary, TokioClock,
    TopicFilter,
};

#[derive(Debug, Parser)]
#[command(
    name = "replay",
    version,
    about = "Replay a recorded NEMO incident into an MQTT broker or the Redis queue",
    after_help = "Examples:\n  replay incident.jsonl --mqtt-url mqtt://test-broker:1883\n  replay incident.jsonl --speed 10 --tool 12 --dry-run\n  replay items.jsonl --to-redis list --max-rate\n  replay --stream nemo_mqtt_events --from-id 1760623352944-0 --to-id + --rate 50\n  replay dead-letters\n  replay dead-letters --requeue all"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    run: RunArgs,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Args)]
struct Common {
    /// The bridge's TOML configuration ([mqtt], [redis], [backoff] are used).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Broker URL (overrides mqtt.url), e.g. mqtt://127.0.0.1:1883.
    #[arg(long, global = true, value_name = "URL")]
    mqtt_url: Option<String>,
    /// MQTT client id (default nemo-replay-<pid>; must differ from the bridge's).
    #[arg(long, global = true)]
    client_id: Option<String>,
    /// Redis URL (overrides redis.url), e.g. redis://127.0.0.1:6379/1.
    #[arg(long, global = true, value_name = "URL")]
    redis_url: Option<String>,
    /// Queue key (overrides redis.key): where --to-redis enqueues and whose dead letters are read.
    #[arg(long, global = true, value_name = "KEY")]
    key: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// List the dead-letter list `{key}:dead` (oldest first), or requeue from it.
    DeadLetters {
        /// Move the oldest N (or all) dead letters back into the queue, for the bridge to
        /// publish again once the cause is fixed.
        #[arg(long, value_name = "N|all", num_args = 0..=1, default_missing_value = "all")]
        requeue: Option<String>,
        /// Show at most this many records.
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    /// Decide from the first line (a recording line has "t").
    Auto,
    /// The monitor's --record JSONL.
    Recording,
    /// v1 queue items, one per line (as the NEMO plugin writes them).
    QueueItems,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RedisTarget {
    /// LPUSH onto the list, like the NEMO plugin.
    List,
    /// XADD with field `item`.
    Stream,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Input file: a monitor recording or v1 queue items, one JSON per line ("-" = stdin).
    #[arg(value_name = "FILE", conflicts_with = "stream")]
    input: Option<PathBuf>,
    /// Line format of FILE.
    #[arg(long, value_enum, default_value = "auto")]
    format: FormatArg,
    /// Read a range of this Redis stream instead of a file (entries with field `item`).
    #[arg(long, value_name = "KEY")]
    stream: Option<String>,
    /// First stream id of the range ("-" = the oldest).
    #[arg(long, default_value = "-", requires = "stream", value_name = "ID")]
    from_id: String,
    /// Last stream id of the range ("+" = the newest).
    #[arg(long, default_value = "+", requires = "stream", value_name = "ID")]
    to_id: String,
    /// Read at most this many stream entries.
    #[arg(long, requires = "stream", value_name = "N")]
    count: Option<u64>,

    /// Enqueue into Redis (list or stream) instead of publishing to MQTT, so the items go
    /// through a bridge again.
    #[arg(long, value_enum, value_name = "list|stream")]
    to_redis: Option<RedisTarget>,
    /// Print what would be sent (the monitor's format, with planned offsets); send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Publish everything with this QoS instead of the recorded one.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: Option<u8>,

    /// Original pacing, this many times faster (10) or slower (0.5).
    #[arg(long, default_value_t = 1.0, conflicts_with_all = ["rate", "max_rate"])]
    speed: f64,
    /// Fixed rate instead of the recorded pacing: items per second.
    #[arg(long, value_name = "N", conflicts_with = "max_rate")]
    rate: Option<f64>,
    /// As fast as the output takes them.
    #[arg(long)]
    max_rate: bool,

    /// Only items at or after this time (RFC 3339, e.g. 2025-10-16T14:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = nemo_replay::parse_rfc3339)]
    from: Option<nemo_replay::OffsetDateTime>,
    /// Only items at or before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = nemo_replay::parse_rfc3339)]
    until: Option<nemo_replay::OffsetDateTime>,
    /// Only this tool id (repeatable).
    #[arg(long = "tool", value_name = "ID")]
    tools: Vec<String>,
    /// Only this event kind, e.g. tool_enabled (repeatable).
    #[arg(long = "kind", value_name = "KIND")]
    kinds: Vec<String>,
    /// Only topics matching this MQTT filter, e.g. nemo/tools/+/enabled (repeatable).
    #[arg(long = "topic", value_name = "FILTER")]
    topics: Vec<TopicFilter>,

    /// Stop at the first bad input line (exit 1) instead of reporting and skipping it.
    /// For files, the whole file is checked before anything is sent.
    #[arg(long)]
    strict: bool,
    /// Sent items that may await their confirmation at once.
    #[arg(long, default_value_t = 64, value_name = "N")]
    window: usize,
    /// No progress bar (it is shown only when stderr is a terminal anyway).
    #[arg(long)]
    no_progress: bool,
    /// No colours in --dry-run output (also off when stdout is not a terminal).
    #[arg(long)]
    no_color: bool,
    /// Show --dry-run times in UTC instead of local time.
    #[arg(long)]
    utc: bool,
}

fn main() -> ExitCode {
    if let Some(code) = man::print_if_asked::<Cli>("nemo-replay") {
        return code;
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("replay: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("replay: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let cfg = load_config(&cli.common)?;
    match cli.cmd {
        Some(Cmd::DeadLetters { requeue, limit }) => {
            dead_letters(&cfg, requeue.as_deref(), limit).await
        }
        None => replay(&cfg, &cli.run).await,
    }
}

fn load_config(c: &Common) -> anyhow::Result<nemo_bridge::config::Config> {
    let fig = nemo_bridge::config::figment(c.config.as_deref());
    let mut cfg = nemo_bridge::config::Config::from_figment(fig)
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    if let Some(url) = &c.mqtt_url {
        cfg.mqtt.url = vec![url.clone()];
    }
    if let Some(url) = &c.redis_url {
        cfg.redis.url = url.clone();
    }
    if let Some(key) = &c.key {
        cfg.redis.key = key.clone();
    }
    cfg.mqtt.client_id = c
        .client_id
        .clone()
        .unwrap_or_else(|| format!("nemo-replay-{}", std::process::id()));
    // A replay is not a bridge: no status topic, no last will.
    cfg.mqtt.status_topic = String::new();
    cfg.status.topic = None;
    Ok(cfg)
}

async fn connect_redis(
    cfg: &nemo_bridge::config::Config,
    mode: nemo_redis::Mode,
) -> anyhow::Result<nemo_redis::Redis> {
    let mut r = cfg.redis.clone();
    r.mode = mode;
    r.lease = false;
    r.validate()
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    nemo_redis::Redis::connect(&r, &cfg.backoff)
        .await
        .with_context(|| format!("connecting to Redis at {}", r.redacted_url()))
}

async fn dead_letters(
    cfg: &nemo_bridge::config::Config,
    requeue: Option<&str>,
    limit: u64,
) -> anyhow::Result<ExitCode> {
    let which = requeue
        .map(nemo_replay::parse_requeue)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let redis = connect_redis(cfg, cfg.redis.mode).await?;
    let dead = redis.dead_letters();
    let keys = redis.keys().clone();
    let result = match which {
        Some(which) => {
            let moved = dead.requeue(which).await.context("requeue")?;
            let left = dead.len().await.context("LLEN")?;
            println!(
                "requeued {moved} item(s) from {} into {} ({left} left)",
                keys.dead, keys.source
            );
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let total = dead.len().await.context("LLEN")?;
            let records = dead.list(0, limit).await.context("LRANGE")?;
            let mut out = std::io::stdout().lock();
            for (i, d) in records.iter().enumerate() {
                writeln!(out, "{}", nemo_replay::dead_letter_line(i as u64 + 1, d))?;
            }
            writeln!(
                out,
                "{total} dead letter(s) in {}{}",
                keys.dead,
                if total > limit {
                    format!(", first {limit} shown")
                } else {
                    String::new()
                }
            )?;
            Ok(ExitCode::SUCCESS)
        }
    };
    quit(&redis).await;
    result
}

/// Close the Redis connection, without letting a stuck QUIT hold the exit.
async fn quit(redis: &nemo_redis::Redis) {
    if tokio::time::timeout(Duration::from_secs(2), redis.quit())
        .await
        .is_err()
    {
        tracing::warn!("redis: QUIT took over 2 s; exiting anyway");
    }
}

/// Where the items come from.
enum Input {
    File { path: PathBuf, format: InputFormat },
    Items(Vec<Result<ReplayItem, InputError>>),
}

fn open(path: &Path) -> anyhow::Result<Box<dyn BufRead + Send>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(Box::new(BufReader::new(f)))
}

fn detect_format(path: &Path) -> anyhow::Result<InputFormat> {
    let mut reader = open(path)?;
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        if !line.trim().is_empty() {
            return Ok(InputFormat::detect(line.trim()));
        }
        line.clear();
    }
    Ok(InputFormat::QueueItems)
}

async fn replay(cfg: &nemo_bridge::config::Config, a: &RunArgs) -> anyhow::Result<ExitCode> {
    let pacing = if a.max_rate {
        Pacing::Max
    } else if let Some(per_second) = a.rate {
        Pacing::Rate { per_second }
    } else {
        Pacing::Original { speed: a.speed }
    };
    let schedule = Schedule::new(pacing)?;
    if a.window == 0 {
        bail!("--window 0: must be at least 1");
    }
    let filter = Filter {
        tools: a.tools.clone(),
        kinds: a.kinds.clone(),
        topics: a.topics.clone(),
        from: a.from,
        until: a.until,
    };
    let options = ReplayOptions {
        filter,
        strict: a.strict,
        window: a.window,
        qos: a.qos.and_then(nemo_events::Qos::from_u8),
    };

    // Input, checked before anything is connected.
    let (input, total) = match (&a.input, &a.stream) {
        (Some(path), None) => {
            if path.as_os_str() == "-" && a.strict {
                bail!("--strict needs a file (stdin cannot be checked before sending)");
            }
            let format = match a.format {
                FormatArg::Recording => InputFormat::Recording,
                FormatArg::QueueItems => InputFormat::QueueItems,
                FormatArg::Auto if path.as_os_str() == "-" => {
                    bail!("--format is required with stdin")
                }
                FormatArg::Auto => detect_format(path)?,
            };
            let mut total = 0u64;
            if path.as_os_str() != "-" {
                // One pass to count (for the progress bar) and, with --strict, to refuse a
                // file with a bad line before anything is sent.
                for item in LineItems::new(open(path)?, format) {
                    total += 1;
                    match item {
                        Err(InputError::Bad { line, reason }) if a.strict => {
                            eprintln!("replay: {}: line {line}: {reason}", path.display());
                            eprintln!("replay: --strict: nothing sent");
                            return Ok(ExitCode::from(1));
                        }
                        Err(e @ InputError::Io { .. }) => bail!("{}: {e}", path.display()),
                        _ => {}
                    }
                }
            }
            (
                Input::File {
                    path: path.clone(),
                    format,
                },
                total,
            )
        }
        (None, Some(key)) => {
            let redis = connect_redis(cfg, cfg.redis.mode).await?;
            let items =
                nemo_replay::read_stream_range(redis.client(), key, &a.from_id, &a.to_id, a.count)
                    .await?;
            quit(&redis).await;
            if a.strict
                && let Some(Err(InputError::Bad { line, reason })) =
                    items.iter().find(|i| i.is_err())
            {
                eprintln!("replay: stream {key}: item {line}: {reason}");
                eprintln!("replay: --strict: nothing sent");
                return Ok(ExitCode::from(1));
            }
            let total = items.len() as u64;
            (Input::Items(items), total)
        }
        (None, None) => {
            bail!("nothing to replay: give a FILE, --stream KEY, or the dead-letters command")
        }
        (Some(_), Some(_)) => bail!("give either a FILE or --stream, not both"),
    };
    let items: Box<dyn Iterator<Item = Result<ReplayItem, InputError>> + Send> = match input {
        Input::File { path, format } => Box::new(LineItems::new(open(&path)?, format)),
        Input::Items(v) => Box::new(v.into_iter()),
    };

    let show_progress = !a.no_progress && !a.dry_run && std::io::stderr().is_terminal();
    let mut observer = Report::new(if show_progress { Some(total) } else { None });

    let (result, label) = if a.dry_run {
        let clock = Arc::new(FakeClock::default());
        let color = !a.no_color && std::io::stdout().is_terminal();
        let formatter = Formatter::new(FormatOptions {
            color,
            hmac_key: cfg.hmac.key_bytes().ok().flatten(),
            utc: a.utc,
        });
        let mut sink = DryRunSink::new(std::io::stdout(), formatter, clock.clone());
        let r = Replayer::new(&*clock, schedule, options)
            .run(items, &mut sink, &mut observer)
            .await;
        (r, "dry run (planned time)")
    } else if let Some(target) = a.to_redis {
        let mode = match target {
            RedisTarget::List => nemo_redis::Mode::List,
            RedisTarget::Stream => nemo_redis::Mode::Stream,
        };
        let redis = connect_redis(cfg, mode).await?;
        let mut sink = RedisSink::new(redis.producer());
        let clock = TokioClock::new();
        let r = Replayer::new(&clock, schedule, options)
            .run(items, &mut sink, &mut observer)
            .await;
        quit(&redis).await;
        (r, "replayed into Redis")
    } else {
        let mut mqtt = cfg.mqtt_config();
        mqtt.status_topic = String::new();
        mqtt.validate()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        let publisher = nemo_mqtt::Publisher::connect(mqtt, cfg.backoff.build())
            .await
            .context("connecting to the MQTT broker")?;
        let mut sink = MqttSink::new(publisher.clone());
        let clock = TokioClock::new();
        let r = Replayer::new(&clock, schedule, options)
            .run(items, &mut sink, &mut observer)
            .await;
        if let Err(e) = publisher.shutdown().await {
            tracing::warn!(error = %e, "disconnecting from the broker");
        }
        (r, "replayed to MQTT")
    };
    observer.clear();
    match result {
        Ok(summary) => {
            eprintln!("replay: {label}: {summary}");
            Ok(if summary.failed > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(e) => {
            eprintln!("replay: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Bad lines and failures to stderr, and a progress bar when stderr is a terminal.
struct Report {
    total: Option<u64>,
    last_draw: Option<Instant>,
    drawn: bool,
}

impl Report {
    fn new(total: Option<u64>) -> Self {
        Report {
            total,
            last_draw: None,
            drawn: false,
        }
    }

    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
            self.drawn = false;
        }
    }
}

impl Observer for Report {
    fn bad_line(&mut self, line: usize, reason: &str) {
        self.clear();
        eprintln!("replay: line {line}: {reason} (skipped)");
    }

    fn failed(&mut self, line: usize, error: &SinkError) {
        self.clear();
        eprintln!("replay: line {line}: not sent: {error}");
    }

    fn progress(&mut self, s: &Summary) {
        let Some(total) = self.total else { return };
        if self
            .last_draw
            .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        const WIDTH: u64 = 30;
        let filled = (s.read.min(total) * WIDTH)
            .checked_div(total)
            .unwrap_or(WIDTH);
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '=' } else { ' ' })
            .collect();
        eprint!(
            "\r\x1b[2K[{bar}] {}/{total}  sent {}  skipped {}  failed {}",
            s.read,
            s.sent,
            s.skipped(),
            s.failed
        );
        self.drawn = true;
    }
}
