//! The flags of a replay run (`replay FILE …`, `replay --stream KEY …`), declared here next to
//! the code that reads them ([`crate::app`]), and turned into the library's values: a
//! [`Pacing`], a [`Filter`] and [`ReplayOptions`]. The connection flags `replay` shares with
//! `monitor` are `nemo_config::ConnectArgs`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use time::OffsetDateTime;

use crate::{Filter, Pacing, ReplayOptions, TopicFilter};

/// The line format of the input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Decide from the first line (a recording line has "t").
    Auto,
    /// The monitor's --record JSONL.
    Recording,
    /// v1 queue items, one per line (as the NEMO plugin writes them).
    QueueItems,
}

/// Where `--to-redis` puts the items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RedisTarget {
    /// LPUSH onto the list, like the NEMO plugin.
    List,
    /// XADD with field `item`.
    Stream,
}

impl From<RedisTarget> for nemo_redis::Mode {
    fn from(t: RedisTarget) -> Self {
        match t {
            RedisTarget::List => nemo_redis::Mode::List,
            RedisTarget::Stream => nemo_redis::Mode::Stream,
        }
    }
}

/// What to replay, where to, how fast, which items: flatten into a parser with
/// `#[command(flatten)]`.
///
/// ```
/// use clap::Parser;
/// use nemo_replay::Pacing;
/// use nemo_replay::cli::RunArgs;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     run: RunArgs,
/// }
///
/// let cli = Cli::try_parse_from(["replay", "incident.jsonl", "--speed", "10", "--tool", "12"])?;
/// assert_eq!(cli.run.pacing(), Pacing::Original { speed: 10.0 });
/// assert_eq!(cli.run.options()?.filter.tools, ["12"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Args)]
// Not the parser's description: without these, this doc comment would become it.
#[command(about = None, long_about = None)]
pub struct RunArgs {
    /// Input file: a monitor recording or v1 queue items, one JSON per line ("-" = stdin).
    #[arg(value_name = "FILE", conflicts_with = "stream")]
    pub input: Option<PathBuf>,
    /// Line format of FILE.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: FormatArg,
    /// Read a range of this Redis stream instead of a file (entries with field `item`).
    #[arg(long, value_name = "KEY")]
    pub stream: Option<String>,
    /// First stream id of the range ("-" = the oldest).
    #[arg(long, default_value = "-", requires = "stream", value_name = "ID")]
    pub from_id: String,
    /// Last stream id of the range ("+" = the newest).
    #[arg(long, default_value = "+", requires = "stream", value_name = "ID")]
    pub to_id: String,
    /// Read at most this many stream entries.
    #[arg(long, requires = "stream", value_name = "N")]
    pub count: Option<u64>,

    /// Enqueue into Redis (list or stream) instead of publishing to MQTT, so the items go
    /// through a bridge again.
    #[arg(long, value_enum, value_name = "list|stream")]
    pub to_redis: Option<RedisTarget>,
    /// Print what would be sent (the monitor's format, with planned offsets); send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Publish everything with this QoS instead of the recorded one.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: Option<u8>,

    /// Original pacing, this many times faster (10) or slower (0.5).
    #[arg(long, default_value_t = 1.0, conflicts_with_all = ["rate", "max_rate"])]
    pub speed: f64,
    /// Fixed rate instead of the recorded pacing: items per second.
    #[arg(long, value_name = "N", conflicts_with = "max_rate")]
    pub rate: Option<f64>,
    /// As fast as the output takes them.
    #[arg(long)]
    pub max_rate: bool,

    /// Only items at or after this time (RFC 3339, e.g. 2025-10-16T14:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = crate::parse_rfc3339)]
    pub from: Option<OffsetDateTime>,
    /// Only items at or before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = crate::parse_rfc3339)]
    pub until: Option<OffsetDateTime>,
    /// Only this tool id (repeatable).
    #[arg(long = "tool", value_name = "ID")]
    pub tools: Vec<String>,
    /// Only this event kind, e.g. tool_enabled (repeatable).
    #[arg(long = "kind", value_name = "KIND")]
    pub kinds: Vec<String>,
    /// Only topics matching this MQTT filter, e.g. nemo/tools/+/enabled (repeatable).
    #[arg(long = "topic", value_name = "FILTER")]
    pub topics: Vec<TopicFilter>,

    /// Stop at the first bad input line (exit 1) instead of reporting and skipping it.
    /// For files, the whole file is checked before anything is sent.
    #[arg(long)]
    pub strict: bool,
    /// Sent items that may await their confirmation at once.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub window: usize,
    /// No progress bar (it is shown only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    /// No colours in --dry-run output (also off when stdout is not a terminal).
    #[arg(long)]
    pub no_color: bool,
    /// Show --dry-run times in UTC instead of local time.
    #[arg(long)]
    pub utc: bool,
}

/// `--window 0`: no item could ever be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("--window 0: must be at least 1")]
pub struct ZeroWindow;

impl RunArgs {
    /// The pacing the flags ask for: `--max-rate`, else `--rate N`, else `--speed X` (1 =
    /// the recorded pacing). Not validated yet: [`Schedule::new`](crate::Schedule::new) does.
    pub fn pacing(&self) -> Pacing {
        if self.max_rate {
            Pacing::Max
        } else if let Some(per_second) = self.rate {
            Pacing::Rate { per_second }
        } else {
            Pacing::Original { speed: self.speed }
        }
    }

    /// The filter, `--strict`, `--window` and `--qos` as [`ReplayOptions`].
    ///
    /// # Errors
    /// [`ZeroWindow`] for `--window 0`.
    pub fn options(&self) -> Result<ReplayOptions, ZeroWindow> {
        if self.window == 0 {
            return Err(ZeroWindow);
        }
        Ok(ReplayOptions {
            filter: Filter {
                tools: self.tools.clone(),
                kinds: self.kinds.clone(),
                topics: self.topics.clone(),
                from: self.from,
                until: self.until,
            },
            strict: self.strict,
            window: self.window,
            qos: self.qos.and_then(nemo_events::Qos::from_u8),
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
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("replay").chain(args.iter().copied())).map(|c| c.run)
    }

    #[test]
    fn pacing_from_the_flags() {
        assert_eq!(
            parse(&["f"]).unwrap().pacing(),
            Pacing::Original { speed: 1.0 }
        );
        assert_eq!(
            parse(&["f", "--speed", "0.5"]).unwrap().pacing(),
            Pacing::Original { speed: 0.5 }
        );
        assert_eq!(
            parse(&["f", "--rate", "50"]).unwrap().pacing(),
            Pacing::Rate { per_second: 50.0 }
        );
        assert_eq!(parse(&["f", "--max-rate"]).unwrap().pacing(), Pacing::Max);
        assert!(parse(&["f", "--speed", "2", "--max-rate"]).is_err());
        assert!(parse(&["f", "--rate", "2", "--max-rate"]).is_err());
    }

    #[test]
    fn options_from_the_flags() {
        let a = parse(&[
            "f",
            "--tool",
            "1",
            "--tool",
            "2",
            "--kind",
            "tool_enabled",
            "--topic",
            "nemo/tools/+/enabled",
            "--from",
            "2025-10-16T14:00:00Z",
            "--qos",
            "2",
            "--strict",
            "--window",
            "8",
        ])
        .unwrap();
        let o = a.options().unwrap();
        assert_eq!(o.filter.tools, ["1", "2"]);
        assert_eq!(o.filter.kinds, ["tool_enabled"]);
        assert_eq!(o.filter.topics[0].as_str(), "nemo/tools/+/enabled");
        assert_eq!(
            o.filter.from,
            Some(time::macros::datetime!(2025-10-16 14:00 UTC))
        );
        assert_eq!(o.filter.until, None);
        assert_eq!(o.qos, Some(nemo_events::Qos::ExactlyOnce));
        assert!(o.strict);
        assert_eq!(o.window, 8);

        let d = parse(&["f"]).unwrap().options().unwrap();
        assert!(d.filter.is_empty() && !d.strict && d.qos.is_none());
        assert_eq!(d.window, 64);
        assert_eq!(
            parse(&["f", "--window", "0"])
                .unwrap()
                .options()
                .unwrap_err(),
            ZeroWindow
        );
    }

    #[test]
    fn bad_values_are_refused_by_the_parser() {
        assert!(parse(&["f", "--qos", "3"]).is_err());
        assert!(parse(&["f", "--from", "yesterday"]).is_err());
        assert!(parse(&["f", "--topic", "nemo/#/x"]).is_err());
        assert!(parse(&["f", "--stream", "k"]).is_err(), "FILE and --stream");
        assert!(
            parse(&["--from-id", "0"]).is_err(),
            "--from-id needs --stream"
        );
        let a = parse(&["--stream", "k", "--to-redis", "stream"]).unwrap();
        assert_eq!(
            a.to_redis.map(nemo_redis::Mode::from),
            Some(nemo_redis::Mode::Stream)
        );
        assert_eq!((a.from_id.as_str(), a.to_id.as_str()), ("-", "+"));
    }
}
