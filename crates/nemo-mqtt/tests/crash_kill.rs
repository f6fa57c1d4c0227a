//! Broker crash (`kill -9`) or stop (SIGTERM) and restart in the middle of a
//! QoS 1 stream: every publish resolves (confirmed or reported unconfirmed),
//! the publisher reconnects by itself, and confirmed messages reach a
//! persistent-session subscriber.
//!
//! What the broker can promise differs between the two: mosquitto answers
//! PUBACK before it writes anything to disk and saves its state once a second
//! (`autosave_interval 1`), so after `kill -9` the messages it confirmed in
//! its last moments may be gone for good — a broker property no client can
//! fix (it would need the broker to fsync before PUBACK). The crash test
//! therefore requires that any confirmed-but-missing message was published
//! *before* the kill (none after the restart) and prints the count; the stop
//! test, where mosquitto saves on the way down, requires none at all.
//!
//! Note: this scenario and `crash_stop.rs` live in separate test binaries on
//! purpose. Run concurrently in one process (four Paho clients reconnecting at
//! once), Paho C 1.3 aborted about one run in three with heap corruption
//! ("double free" in `MQTTProtocol_removePublication` via
//! `MQTTProtocol_emptyMessageList` / `MQTTAsync_cleanSession`); each alone
//! passed 8 of 8 runs. See the crate report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::fault::{Fault, N, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_kill_9_and_restart_mid_stream() -> common::TestResult {
    let missing = run(Fault::Kill).await?;
    assert!(
        missing.iter().all(|&i| i < N / 2),
        "confirmed but missing after the restart (a client bug, not the broker's unsaved second): {missing:?}"
    );
    Ok(())
}
