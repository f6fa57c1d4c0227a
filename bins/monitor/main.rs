//! `monitor`: watch the NEMO MQTT stream as people read it.
//!
//! Thin shell around the `nemo-monitor` library: parse the command line, resolve it against the
//! bridge's configuration file (its `[mqtt]`, `[hmac]` and `[status]` tables), and hand over to
//! `nemo_monitor::app::run`, which shows every message as a line, on the board or on the web
//! dashboard, plus the optional recording. The queue figures are the ones the bridge publishes
//! beside its status; the monitor only listens to the broker. Ctrl-C stops it.

#[path = "../man.rs"]
mod man;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nemo_config::{ConnectArgs, HmacKeyArgs};
use nemo_monitor::app::Output;
use nemo_monitor::cli::MonitorArgs;
use nemo_monitor::format::UtcOffset;

#[derive(Debug, Parser)]
#[command(
    name = "monitor",
    version,
    about = "Watch the NEMO MQTT stream: readable lines, a tool board, or a web dashboard",
    after_help = "Examples:\n  monitor --config /etc/nemo/bridge.toml\n  monitor --mqtt-url mqtt://broker:1883 --record incident.jsonl\n  monitor board\n  monitor web --listen 127.0.0.1:8088",
    // The shared flags, in the monitor's words. --redis-url (shared with replay) is hidden and
    // refused: the queue figures come from the bridge, over the broker.
    mut_arg("config", |a| a.help("The bridge's TOML configuration ([mqtt], [hmac], [status] are used)")),
    mut_arg("client_id", |a| a.help("MQTT client id (default nemo-monitor-<pid>; must differ from the bridge's)")),
    mut_arg("hmac_key_file", |a| a.help("File holding the HMAC key (overrides [hmac]); lines then show HMAC ✓/✗, and the status and queue figures must be signed with it")),
    mut_arg("redis_url", |a| a.hide(true)),
)]
struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    hmac: HmacKeyArgs,
    #[command(flatten)]
    monitor: MonitorArgs,
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

fn main() -> ExitCode {
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
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, offset)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monitor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, offset: UtcOffset) -> anyhow::Result<()> {
    let setup = cli.monitor.setup(&cli.connect, &cli.hmac)?;
    let output = match cli.cmd {
        Some(Cmd::Board) => Output::Board,
        Some(Cmd::Web { listen, token }) => Output::Web { listen, token },
        None if cli.monitor.json => Output::Json,
        None => Output::Lines,
    };
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    nemo_monitor::app::run(setup, output, offset, ctrl_c).await?;
    Ok(())
}
