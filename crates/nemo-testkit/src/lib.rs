//! Dev-only test harness: private `redis-server` and `mosquitto` processes on free
//! loopback ports, with optional TLS, for tests and benchmarks of nemo-mqtt.
//!
//! The one design decision: **a test owns the servers it talks to.** Labs and
//! developer machines often run Redis on 6379 and Mosquitto on 1883; a test that
//! used them could lose someone's queue or disturb a live display. So every server
//! here is a child process of the test, bound to `127.0.0.1` on a port the kernel
//! picked, with its files in a temporary directory, and it is killed when its
//! handle is dropped — also when the test panics. Nothing here ever stops a
//! process it did not start.
//!
//! The servers can be stopped (SIGTERM), killed (SIGKILL) and restarted on the same
//! port with the same data directory, which is what fault-injection tests need.
//!
//! [`PostgresServer`] does the same for PostgreSQL (NEMO's database): a cluster of
//! its own made by `initdb` in a temporary directory, with a database `nemo`, for
//! tests that read or write the NEMO plugin's tables.
//!
//! [`RedisSentinelSet`] (a master, a replica and three sentinels, with
//! `kill_master` and `wait_failover`) and [`RedisClusterSet`] (three masters)
//! do the same for Redis high availability, with the URLs nemo-redis accepts.
//!
//! ```no_run
//! # fn main() -> Result<(), nemo_testkit::HarnessError> {
//! let redis = nemo_testkit::RedisServer::start()?;
//! let broker = nemo_testkit::Mosquitto::start()?;
//! println!("{} {}", redis.url(), broker.url());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod bench;
pub mod browser;
mod certs;
mod mosquitto;
mod postgres;
mod process;
mod procstat;
mod redis;
mod redis_ha;

pub use bench::bench_item;
pub use certs::{CertOptions, Certs};
pub use mosquitto::{Mosquitto, MosquittoBuilder};
pub use postgres::PostgresServer;
pub use process::HarnessError;
pub use procstat::{TaskStats, ThreadStats, cpu_seconds, rss_kib, task_stats};
pub use redis::{RedisBuilder, RedisServer};
pub use redis_ha::{RedisClusterSet, RedisSentinelSet, SentinelPorts};

use std::path::PathBuf;

/// A free TCP port on 127.0.0.1, as the kernel hands it out.
///
/// The port is free when this returns; another process may take it before the
/// caller binds it, so the server starters retry with a new port if the bind fails.
///
/// ```
/// let port = nemo_testkit::free_port().unwrap();
/// assert_ne!(port, 0);
/// ```
pub fn free_port() -> Result<u16, HarnessError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(HarnessError::Io)?;
    Ok(listener.local_addr().map_err(HarnessError::Io)?.port())
}

/// The workspace's `tests/fixtures` directory (copies of the shapes the NEMO
/// plugin produces).
///
/// ```
/// assert!(nemo_testkit::fixtures_dir().join("v1-queue-items.jsonl").exists());
/// ```
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Read a fixture file from [`fixtures_dir`].
///
/// ```
/// let text = nemo_testkit::fixture("payloads.json").unwrap();
/// assert!(text.contains("tool_enabled"));
/// ```
pub fn fixture(name: &str) -> Result<String, HarnessError> {
    std::fs::read_to_string(fixtures_dir().join(name)).map_err(HarnessError::Io)
}

/// Whether a binary is on `PATH` (for skipping with a loud message where a
/// server is genuinely absent; CI installs both, so CI never skips).
///
/// ```
/// assert!(!nemo_testkit::have_binary("surely-not-a-binary-here"));
/// ```
pub fn have_binary(name: &str) -> bool {
    process::find_binary(name).is_some()
}

/// Poll `f` every 100 ms until it returns `Some`, and return that; panic naming `what` once
/// `within` has passed (a test helper: the panic is the test's failure message).
///
/// ```
/// let mut tries = 0;
/// let n = nemo_testkit::wait_for(std::time::Duration::from_secs(5), "the third try", || {
///     tries += 1;
///     (tries == 3).then_some(tries)
/// });
/// assert_eq!(n, 3);
/// ```
pub fn wait_for<T>(within: std::time::Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
