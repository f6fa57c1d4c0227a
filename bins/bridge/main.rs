//! `bridge`: move NEMO tool events from the queue of NEMO's MQTT plugin (Redis for 1.x, the
//! PostgreSQL table for 2.x) to the MQTT broker, at least once, in order. Thin shell: parse
//! flags ([`nemo_bridge::cli`]), load the configuration, run `nemo_bridge::run`.

#[path = "../man.rs"]
mod man;

use std::process::ExitCode;

use clap::Parser;
use nemo_bridge::cli::{Cli, init_logging};
use nemo_bridge::settings::{Phase, Settings, connect_nemo_db};

fn main() -> ExitCode {
    if let Some(code) = man::print_if_asked::<Cli>("nemo-bridge") {
        return code;
    }
    let cli = Cli::parse();
    // One runtime thread: the pipeline, the Redis client's I/O, the lease keeper and the HTTP
    // endpoint are all short, non-blocking steps, and Paho brings its own two threads. With a
    // multi-thread runtime every Redis reply crossed threads to wake the pipeline; on one thread
    // the bridge used ~13 % less CPU per event and drained ~15 % faster, p99 at 1,000/s 0.5
    // instead of 0.7 ms (docs/performance.md).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bridge: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !cli.check_config {
        init_logging(cli.log_format);
    }
    runtime.block_on(async move {
        let layers = cli.clone();
        let mut settings =
            Settings::new(Box::new(move |row| layers.figment(row)), connect_nemo_db());
        let loaded = match settings.load(Phase::Start).await {
            Ok(loaded) => loaded,
            Err(e) => {
                eprintln!("bridge: {e}");
                return ExitCode::from(2);
            }
        };
        if cli.check_config {
            print!("{}", loaded.config.to_toml_with_sources(&loaded.figment));
            if let Some(note) = loaded.state.note() {
                eprintln!("bridge: {note}");
            }
            eprintln!("bridge: configuration is valid");
            return ExitCode::SUCCESS;
        }
        let rx = match nemo_bridge::control::signals() {
            Ok(rx) => rx,
            Err(e) => {
                eprintln!("bridge: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(config = ?cli.config, "starting");
        match nemo_bridge::run(loaded.config, settings, rx).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "bridge stopped with an error");
                eprintln!("bridge: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
