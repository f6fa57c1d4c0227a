//! Broker stop (SIGTERM: mosquitto saves its state) and restart in the middle
//! of a QoS 1 stream: every publish resolves and no confirmed message is lost
//! at a persistent-session subscriber. See `crash_kill.rs` for the crash case.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::fault::{Fault, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_stop_and_restart_mid_stream_loses_no_confirmed_message() -> common::TestResult {
    let missing = run(Fault::Stop).await?;
    assert!(
        missing.is_empty(),
        "confirmed but never delivered: {missing:?}"
    );
    Ok(())
}
