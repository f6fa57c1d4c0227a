//! The `replay` program's runs: a replay ([`replay`]) and the dead-letter listing or requeue
//! ([`dead_letters`]), from parsed flags and the bridge's configuration.
//!
//! A replay checks its input before it connects anywhere: a file is read once to count its
//! items (for the progress bar) and, with `--strict`, to refuse it whole if one line is bad, so
//! that a half-sent incident never needs explaining. Then the items go to the chosen sink (MQTT,
//! Redis, or the dry run's stdout) and the [`Outcome`] says what happened and with which exit
//! code.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nemo_bridge::config::{Config, ConfigError};
use nemo_config::ConnectArgs;
use nemo_monitor::{FormatOptions, Formatter};
use nemo_mqtt::MqttError;
use nemo_redis::RedisError;

use crate::cli::{FormatArg, RunArgs, ZeroWindow};
use crate::{
    DryRunSink, FakeClock, InputError, InputFormat, LineItems, MqttSink, Observer, RedisSink,
    ReplayError, ReplayItem, Replayer, Schedule, ScheduleError, SinkError, Summary, TokioClock,
};

/// Log target of the program's own lines (as when the `replay` binary wrote them).
const LOG: &str = "replay";

/// Why a run could not start or ended early. The program prints it (with its causes) and
/// exits with 1.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The configuration file or environment cannot be used.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// A broker setting the MQTT client refuses.
    #[error("configuration: {0}")]
    Mqtt(MqttError),
    /// A Redis setting the Redis client refuses.
    #[error("configuration: {0}")]
    Redis(nemo_redis::ConfigError),
    /// Neither a FILE nor `--stream`.
    #[error("nothing to replay: give a FILE, --stream KEY, or the dead-letters command")]
    NoInput,
    /// Both a FILE and `--stream` (the parser refuses that already).
    #[error("give either a FILE or --stream, not both")]
    TwoInputs,
    /// `--strict` with stdin, which cannot be read twice.
    #[error("--strict needs a file (stdin cannot be checked before sending)")]
    StrictStdin,
    /// `--format auto` with stdin, which cannot be read twice.
    #[error("--format is required with stdin")]
    StdinFormat,
    /// A `--requeue` value that is neither a count nor `all`.
    #[error("{0}")]
    Requeue(String),
    /// `--window 0`.
    #[error(transparent)]
    Window(#[from] ZeroWindow),
    /// `--speed` or `--rate` out of range.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// Redis cannot be reached.
    #[error("connecting to Redis at {url}")]
    RedisConnect {
        /// The URL, password redacted.
        url: String,
        /// Why.
        source: RedisError,
    },
    /// A Redis command failed.
    #[error("{command}")]
    RedisCommand {
        /// What was being done (`requeue`, `LLEN`, `LRANGE`).
        command: &'static str,
        /// Why.
        source: RedisError,
    },
    /// The broker cannot be reached.
    #[error("connecting to the MQTT broker")]
    MqttConnect(#[source] MqttError),
    /// The input file cannot be opened.
    #[error("opening {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The input file cannot be read to its end.
    #[error("{}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: InputError,
    },
    /// The stream range cannot be read.
    #[error(transparent)]
    Stream(InputError),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How a replay ended; [`Display`](fmt::Display) gives the lines for stderr.
#[derive(Debug)]
pub enum Outcome {
    /// The replay ran to its end (some items may have failed).
    Ran {
        /// What was done, e.g. `replayed to MQTT`.
        label: &'static str,
        /// The counts.
        summary: Summary,
    },
    /// `--strict` found a bad item before anything was sent.
    Refused {
        /// Where, e.g. `incident.jsonl: line 3` or `stream nemo_mqtt_events: item 3`.
        place: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The replay stopped part-way.
    Stopped(ReplayError),
}

impl Outcome {
    /// 0 done; 1 refused or stopped; 2 the replay ran but some items failed to send.
    ///
    /// ```
    /// use nemo_replay::{Summary, app::Outcome};
    /// let ran = |failed| Outcome::Ran { label: "replayed to MQTT", summary: Summary { failed, ..Summary::default() } };
    /// assert_eq!(ran(0).exit_code(), 0);
    /// assert_eq!(ran(1).exit_code(), 2);
    /// let refused = Outcome::Refused { place: "f.jsonl: line 2".into(), reason: "not JSON".into() };
    /// assert_eq!(refused.exit_code(), 1);
    /// assert_eq!(refused.to_string(), "replay: f.jsonl: line 2: not JSON\nreplay: --strict: nothing sent");
    /// ```
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Ran { summary, .. } if summary.failed > 0 => 2,
            Outcome::Ran { .. } => 0,
            Outcome::Refused { .. } | Outcome::Stopped(_) => 1,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ran { label, summary } => write!(f, "replay: {label}: {summary}"),
            Outcome::Refused { place, reason } => {
                write!(
                    f,
                    "replay: {place}: {reason}\nreplay: --strict: nothing sent"
                )
            }
            Outcome::Stopped(e) => write!(f, "replay: {e}"),
        }
    }
}

/// The bridge's configuration with the shared connection flags and `--key` applied, as a
/// replay needs it: client id `nemo-replay-<pid>` unless given, no status topic and no last
/// will (a replay is not a bridge).
///
/// # Errors
/// [`AppError::Config`] when the file or environment cannot be used.
pub fn load_config(connect: &ConnectArgs, key: Option<&str>) -> Result<Config, AppError> {
    let mut cfg = Config::from_figment(nemo_bridge::config::figment(connect.config.as_deref()))?;
    if let Some(url) = &connect.mqtt_url {
        cfg.mqtt.url = vec![url.clone()];
    }
    if let Some(url) = &connect.redis_url {
        cfg.redis.url = url.clone();
    }
    cfg.mqtt.client_id = connect
        .client_id
        .clone()
        .unwrap_or_else(|| format!("nemo-replay-{}", std::process::id()));
    // Not a bridge: no status and no last will of its own.
    cfg.status.topic = None;
    cfg.mqtt.status_topic = String::new();
    if let Some(key) = key {
        cfg.redis.key = key.to_owned();
    }
    Ok(cfg)
}

/// Connect to the bridge's Redis in `mode`, without the bridge's lease.
async fn connect_redis(
    cfg: &Config,
    mode: nemo_redis::Mode,
) -> Result<nemo_redis::Redis, AppError> {
    let mut r = cfg.redis.clone();
    r.mode = mode;
    r.lease = false;
    r.validate().map_err(AppError::Redis)?;
    nemo_redis::Redis::connect(&r, &cfg.backoff)
        .await
        .map_err(|source| AppError::RedisConnect {
            url: r.redacted_url(),
            source,
        })
}

/// Close the Redis connection, without letting a stuck QUIT hold the exit.
async fn quit(redis: &nemo_redis::Redis) {
    if tokio::time::timeout(Duration::from_secs(2), redis.quit())
        .await
        .is_err()
    {
        tracing::warn!(target: LOG, "redis: QUIT took over 2 s; exiting anyway");
    }
}

/// `replay dead-letters`: list the oldest `limit` dead letters of the queue to `out`, or, with
/// `requeue` (`all` or a count), move the oldest back into the queue and say so.
///
/// # Errors
/// A bad `requeue` value, Redis unreachable or failing, or `out` not writable.
pub async fn dead_letters(
    cfg: &Config,
    requeue: Option<&str>,
    limit: u64,
    out: &mut impl Write,
) -> Result<(), AppError> {
    let which = requeue
        .map(crate::parse_requeue)
        .transpose()
        .map_err(AppError::Requeue)?;
    let redis = connect_redis(cfg, cfg.redis.mode).await?;
    let result = list_or_requeue(&redis, which, limit, out).await;
    quit(&redis).await;
    result
}

async fn list_or_requeue(
    redis: &nemo_redis::Redis,
    which: Option<nemo_redis::Requeue>,
    limit: u64,
    out: &mut impl Write,
) -> Result<(), AppError> {
    let dead = redis.dead_letters();
    let keys = redis.keys();
    let failed = |command| move |source| AppError::RedisCommand { command, source };
    if let Some(which) = which {
        let moved = dead.requeue(which).await.map_err(failed("requeue"))?;
        let left = dead.len().await.map_err(failed("LLEN"))?;
        writeln!(
            out,
            "requeued {moved} item(s) from {} into {} ({left} left)",
            keys.dead, keys.source
        )?;
        return Ok(());
    }
    let total = dead.len().await.map_err(failed("LLEN"))?;
    let records = dead.list(0, limit).await.map_err(failed("LRANGE"))?;
    for (i, d) in records.iter().enumerate() {
        writeln!(out, "{}", crate::dead_letter_line(i as u64 + 1, d))?;
    }
    let shown = if total > limit {
        format!(", first {limit} shown")
    } else {
        String::new()
    };
    writeln!(out, "{total} dead letter(s) in {}{shown}", keys.dead)?;
    Ok(())
}

fn open(path: &Path) -> Result<Box<dyn BufRead + Send>, AppError> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let f = File::open(path).map_err(|source| AppError::Open {
        path: path.to_owned(),
        source,
    })?;
    Ok(Box::new(BufReader::new(f)))
}

/// The format of the first non-blank line (queue items for an empty file).
fn detect_format(path: &Path) -> Result<InputFormat, AppError> {
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

/// An input file, checked: its format and item count, or the bad line `--strict` refuses.
#[derive(Debug)]
enum Checked {
    File { format: InputFormat, total: u64 },
    Refused(Outcome),
}

/// Decide the format of `path` and, for a file (not stdin), count its items and, with
/// `strict`, find the first bad line, so that nothing is sent from a file that would stop.
fn check_file(path: &Path, format: FormatArg, strict: bool) -> Result<Checked, AppError> {
    let stdin = path.as_os_str() == "-";
    if stdin && strict {
        return Err(AppError::StrictStdin);
    }
    let format = match format {
        FormatArg::Recording => InputFormat::Recording,
        FormatArg::QueueItems => InputFormat::QueueItems,
        FormatArg::Auto if stdin => {
            return Err(AppError::StdinFormat);
        }
        FormatArg::Auto => detect_format(path)?,
    };
    let mut total = 0u64;
    if !stdin {
        for item in LineItems::new(open(path)?, format) {
            total += 1;
            match item {
                Err(InputError::Bad { line, reason }) if strict => {
                    let place = format!("{}: line {line}", path.display());
                    return Ok(Checked::Refused(Outcome::Refused { place, reason }));
                }
                Err(error @ InputError::Io { .. }) => {
                    return Err(AppError::Read {
                        path: path.to_owned(),
                        error,
                    });
                }
                _ => {}
            }
        }
    }
    Ok(Checked::File { format, total })
}

/// The first bad item of a stream range, as `--strict` refuses it.
fn refuse_bad_item(key: &str, items: &[Result<ReplayItem, InputError>]) -> Option<Outcome> {
    match items.iter().find(|i| i.is_err()) {
        Some(Err(InputError::Bad { line, reason })) => Some(Outcome::Refused {
            place: format!("stream {key}: item {line}"),
            reason: reason.clone(),
        }),
        _ => None,
    }
}

type Items = Box<dyn Iterator<Item = Result<ReplayItem, InputError>> + Send>;

/// Replay as `args` say: check the input, then send to MQTT, into Redis (`--to-redis`) or, with
/// `--dry-run`, print what would be sent. Bad lines, failures and (when stderr is a terminal) a
/// progress bar go to stderr while it runs.
///
/// # Errors
/// [`AppError`] when the flags do not make a run, or the input, Redis or the broker cannot be
/// used; a run that started ends with an [`Outcome`].
pub async fn replay(cfg: &Config, args: &RunArgs) -> Result<Outcome, AppError> {
    let schedule = Schedule::new(args.pacing())?;
    let options = args.options()?;

    // Input, checked before anything is connected.
    let (items, total): (Items, u64) = match (&args.input, &args.stream) {
        (Some(path), None) => match check_file(path, args.format, args.strict)? {
            Checked::Refused(outcome) => return Ok(outcome),
            Checked::File { format, total } => {
                (Box::new(LineItems::new(open(path)?, format)), total)
            }
        },
        (None, Some(key)) => {
            let redis = connect_redis(cfg, cfg.redis.mode).await?;
            let items = crate::read_stream_range(
                redis.client(),
                key,
                &args.from_id,
                &args.to_id,
                args.count,
            )
            .await
            .map_err(AppError::Stream)?;
            quit(&redis).await;
            if args.strict
                && let Some(outcome) = refuse_bad_item(key, &items)
            {
                return Ok(outcome);
            }
            let total = items.len() as u64;
            (Box::new(items.into_iter()), total)
        }
        (None, None) => {
            return Err(AppError::NoInput);
        }
        (Some(_), Some(_)) => {
            return Err(AppError::TwoInputs);
        }
    };

    let show_progress = !args.no_progress && !args.dry_run && std::io::stderr().is_terminal();
    let mut observer = Report::new(std::io::stderr(), show_progress.then_some(total));

    let (result, label) = if args.dry_run {
        let clock = Arc::new(FakeClock::default());
        let color = !args.no_color && std::io::stdout().is_terminal();
        let formatter = Formatter::new(FormatOptions {
            color,
            hmac_key: cfg.hmac.key_bytes().ok().flatten(),
            utc: args.utc,
        });
        let mut sink = DryRunSink::new(std::io::stdout(), formatter, clock.clone());
        let r = Replayer::new(&*clock, schedule, options)
            .run(items, &mut sink, &mut observer)
            .await;
        (r, "dry run (planned time)")
    } else if let Some(target) = args.to_redis {
        let redis = connect_redis(cfg, target.into()).await?;
        let mut sink = RedisSink::new(redis.producer());
        let r = Replayer::new(&TokioClock::new(), schedule, options)
            .run(items, &mut sink, &mut observer)
            .await;
        quit(&redis).await;
        (r, "replayed into Redis")
    } else {
        let mut mqtt = cfg.mqtt_config();
        mqtt.status_topic = String::new();
        mqtt.validate().map_err(AppError::Mqtt)?;
        let publisher = nemo_mqtt::Publisher::connect(mqtt, cfg.backoff.build())
            .await
            .map_err(AppError::MqttConnect)?;
        let mut sink = MqttSink::new(publisher.clone());
        let r = Replayer::new(&TokioClock::new(), schedule, options)
            .run(items, &mut sink, &mut observer)
            .await;
        if let Err(e) = publisher.shutdown().await {
            tracing::warn!(target: LOG, error = %e, "disconnecting from the broker");
        }
        (r, "replayed to MQTT")
    };
    observer.clear();
    Ok(match result {
        Ok(summary) => Outcome::Ran { label, summary },
        Err(e) => Outcome::Stopped(e),
    })
}

/// An [`Observer`] for people: bad lines and failures as lines on `out` (stderr), and, given
/// the number of items, a progress bar redrawn at most every 100 ms.
///
/// Writing to `out` is best effort: it is the place of last resort for these messages, and a
/// replay is not stopped because nobody reads them.
#[derive(Debug)]
pub struct Report<W> {
    out: W,
    total: Option<u64>,
    last_draw: Option<Instant>,
    drawn: bool,
}

impl<W: Write> Report<W> {
    /// Report to `out`; a progress bar when `total` (the number of items) is given.
    pub fn new(out: W, total: Option<u64>) -> Self {
        Report {
            out,
            total,
            last_draw: None,
            drawn: false,
        }
    }

    /// Erase the progress bar, if drawn.
    pub fn clear(&mut self) {
        if self.drawn {
            let _ = write!(self.out, "\r\x1b[2K");
            self.drawn = false;
        }
    }

    /// The output back (for a test to read what was written).
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Observer for Report<W> {
    fn bad_line(&mut self, line: usize, reason: &str) {
        self.clear();
        let _ = writeln!(self.out, "replay: line {line}: {reason} (skipped)");
    }

    fn failed(&mut self, line: usize, error: &SinkError) {
        self.clear();
        let _ = writeln!(self.out, "replay: line {line}: not sent: {error}");
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
        let _ = write!(
            self.out,
            "\r\x1b[2K[{bar}] {}/{total}  sent {}  skipped {}  failed {}",
            s.read,
            s.sent,
            s.skipped(),
            s.failed
        );
        self.drawn = true;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const REC: &str = r#"{"t":"2025-10-16T14:00:00Z","topic":"nemo/tools/1/enabled","payload":"{}","qos":1,"retain":false}"#;
    const ITEM: &str =
        r#"{"topic": "nemo/tools/1/enabled", "payload": "{}", "qos": 1, "retain": false}"#;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn args(extra: &[&str]) -> RunArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        Cli::try_parse_from(std::iter::once("replay").chain(extra.iter().copied()))
            .unwrap()
            .run
    }

    #[test]
    fn the_format_is_detected_from_the_first_non_blank_line() {
        let f = file(&format!("\n  \n{REC}\n"));
        assert_eq!(detect_format(f.path()).unwrap(), InputFormat::Recording);
        let f = file(&format!("{ITEM}\n"));
        assert_eq!(detect_format(f.path()).unwrap(), InputFormat::QueueItems);
        assert_eq!(
            detect_format(file("").path()).unwrap(),
            InputFormat::QueueItems
        );
    }

    #[test]
    fn a_file_is_counted_and_with_strict_refused_whole() {
        let f = file(&format!("{REC}\nnot json\n{REC}\n"));
        match check_file(f.path(), FormatArg::Auto, false).unwrap() {
            Checked::File { format, total } => {
                assert_eq!(format, InputFormat::Recording);
                assert_eq!(total, 3);
            }
            other => panic!("{other:?}"),
        }
        let Checked::Refused(outcome) = check_file(f.path(), FormatArg::Auto, true).unwrap() else {
            panic!("a bad line passed --strict");
        };
        assert_eq!(outcome.exit_code(), 1);
        let text = outcome.to_string();
        assert!(
            text.starts_with(&format!("replay: {}: line 2: ", f.path().display())),
            "{text}"
        );
        assert!(text.ends_with("\nreplay: --strict: nothing sent"), "{text}");
    }

    #[test]
    fn stdin_needs_a_format_and_cannot_be_strict() {
        let e = check_file(Path::new("-"), FormatArg::Auto, false).unwrap_err();
        assert_eq!(e.to_string(), "--format is required with stdin");
        let e = check_file(Path::new("-"), FormatArg::Recording, true).unwrap_err();
        assert!(e.to_string().starts_with("--strict needs a file"), "{e}");
        match check_file(Path::new("-"), FormatArg::QueueItems, false).unwrap() {
            Checked::File { format, total } => {
                assert_eq!((format, total), (InputFormat::QueueItems, 0));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_file_names_itself() {
        let e = check_file(
            Path::new("/nonexistent/x.jsonl"),
            FormatArg::Recording,
            false,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "opening /nonexistent/x.jsonl");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn a_bad_stream_item_is_refused_by_its_number() {
        let items = vec![
            Ok(ReplayItem::new("a", "{}")),
            Err(InputError::Bad {
                line: 2,
                reason: "no item field".into(),
            }),
        ];
        let outcome = refuse_bad_item("q", &items).unwrap();
        assert_eq!(
            outcome.to_string(),
            "replay: stream q: item 2: no item field\nreplay: --strict: nothing sent"
        );
        assert!(refuse_bad_item("q", &items[..1]).is_none());
    }

    #[test]
    fn outcomes_and_exit_codes() {
        let summary = Summary {
            read: 3,
            sent: 2,
            failed: 1,
            ..Summary::default()
        };
        let ran = Outcome::Ran {
            label: "replayed to MQTT",
            summary: summary.clone(),
        };
        assert_eq!(ran.exit_code(), 2);
        assert_eq!(
            ran.to_string(),
            format!("replay: replayed to MQTT: {summary}")
        );
        let stopped = Outcome::Stopped(ReplayError::Input("gone".into()));
        assert_eq!(stopped.exit_code(), 1);
        assert_eq!(stopped.to_string(), "replay: reading input: gone");
    }

    #[tokio::test]
    async fn usage_errors_come_before_any_connection() {
        let cfg = Config::default();
        let e = replay(&cfg, &args(&[])).await.unwrap_err();
        assert!(e.to_string().starts_with("nothing to replay"), "{e}");
        let e = replay(&cfg, &args(&["f", "--window", "0"]))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "--window 0: must be at least 1");
        let e = replay(&cfg, &args(&["f", "--speed", "0"]))
            .await
            .unwrap_err();
        assert!(e.to_string().starts_with("invalid speed 0"), "{e}");
        let e = replay(&cfg, &args(&["-", "--strict", "--format", "recording"]))
            .await
            .unwrap_err();
        assert!(e.to_string().starts_with("--strict needs a file"), "{e}");
    }

    #[tokio::test]
    async fn strict_refuses_a_bad_file_before_connecting() {
        // The configuration points nowhere: a connection attempt would fail the test.
        let mut cfg = Config::default();
        cfg.mqtt.url = vec!["mqtt://127.0.0.1:1".into()];
        let f = file(&format!("{REC}\n{{\n"));
        let outcome = replay(&cfg, &args(&[f.path().to_str().unwrap(), "--strict"]))
            .await
            .unwrap();
        assert!(matches!(outcome, Outcome::Refused { .. }), "{outcome:?}");
    }

    #[test]
    fn load_config_applies_key_and_names_the_client() {
        let cfg = load_config(&ConnectArgs::default(), Some("other_queue")).unwrap();
        assert_eq!(cfg.redis.key, "other_queue");
        assert!(cfg.mqtt.client_id.starts_with("nemo-replay-"));
        assert!(cfg.mqtt.status_topic.is_empty());
        assert_eq!(cfg.status.topic, None);
    }

    #[test]
    fn report_lines_and_progress_bar() {
        let mut r = Report::new(Vec::new(), Some(4));
        r.bad_line(2, "not JSON");
        r.progress(&Summary {
            read: 2,
            sent: 1,
            ..Summary::default()
        });
        // Within 100 ms of the last drawing: not drawn again.
        r.progress(&Summary {
            read: 3,
            ..Summary::default()
        });
        r.failed(3, &SinkError::Batch("timeout".into()));
        r.clear();
        let out = String::from_utf8(r.into_inner()).unwrap();
        let bar = format!(
            "[{}{}] 2/4  sent 1  skipped 0  failed 0",
            "=".repeat(15),
            " ".repeat(15)
        );
        assert_eq!(
            out,
            format!(
                "replay: line 2: not JSON (skipped)\n\r\x1b[2K{bar}\r\x1b[2Kreplay: line 3: not sent: {}\n",
                SinkError::Batch("timeout".into())
            )
        );
    }

    #[test]
    fn without_a_total_no_bar() {
        let mut r = Report::new(Vec::new(), None);
        r.progress(&Summary::default());
        r.clear();
        assert!(r.into_inner().is_empty());
    }
}
