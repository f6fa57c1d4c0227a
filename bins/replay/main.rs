//! `replay`: send a recorded incident again, into an MQTT broker or the Redis queue.
//!
//! Thin shell around the `nemo-replay` library: parse the command line, resolve it against the
//! bridge's configuration (the same `[mqtt]`, `[redis]`, `[backoff]` tables and `NEMO_*`
//! environment), and hand over to `nemo_replay::app` (a replay, or the dead letters).
//!
//! Exit codes: 0 done; 1 bad usage, bad configuration, unreadable input or (with
//! `--strict`) a bad input line; 2 the replay ran but some items failed to send.

#[path = "../man.rs"]
mod man;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nemo_config::ConnectArgs;
use nemo_replay::cli::RunArgs;

#[derive(Debug, Parser)]
#[command(
    name = "replay",
    version,
    about = "Replay a recorded NEMO incident into an MQTT broker or the Redis queue",
    after_help = "Examples:\n  replay incident.jsonl --mqtt-url mqtt://test-broker:1883\n  replay incident.jsonl --speed 10 --tool 12 --dry-run\n  replay items.jsonl --to-redis list --max-rate\n  replay --stream nemo_mqtt_events --from-id 1760623352944-0 --to-id + --rate 50\n  replay dead-letters\n  replay dead-letters --requeue all",
    // The shared connection flags, in replay's words.
    mut_arg("config", |a| a.help("The bridge's TOML configuration ([mqtt], [redis], [backoff] are used)")),
    mut_arg("mqtt_url", |a| a.help("Broker URL (overrides mqtt.url), e.g. mqtt://127.0.0.1:1883")),
    mut_arg("client_id", |a| a.help("MQTT client id (default nemo-replay-<pid>; must differ from the bridge's)")),
    mut_arg("redis_url", |a| a.help("Redis URL (overrides redis.url), e.g. redis://127.0.0.1:6379/1")),
)]
struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Queue key (overrides redis.key): where --to-redis enqueues and whose dead letters are read.
    #[arg(long, global = true, value_name = "KEY")]
    key: Option<String>,
    #[command(flatten)]
    run: RunArgs,
    #[command(subcommand)]
    cmd: Option<Cmd>,
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
    let cfg = nemo_replay::app::load_config(&cli.connect, cli.key.as_deref())?;
    match cli.cmd {
        Some(Cmd::DeadLetters { requeue, limit }) => {
            let mut out = std::io::stdout();
            nemo_replay::app::dead_letters(&cfg, requeue.as_deref(), limit, &mut out).await?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let outcome = nemo_replay::app::replay(&cfg, &cli.run).await?;
            eprintln!("{outcome}");
            Ok(ExitCode::from(outcome.exit_code()))
        }
    }
}
