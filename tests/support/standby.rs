//! Two bridges on one NEMO (`tests/standby.rs`): the same `mqtt.client_id` for both, the
//! broker's own log read for the connections it made and the ones it closed.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Setup;

/// The client id both bridges take (as both take it from NEMO's configuration row).
pub const SHARED_ID: &str = "nemo-bridge-shared";

/// Give the config written by `write` the shared client id instead of its own.
pub fn share_client_id(path: &Path) -> PathBuf {
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find("client_id = \"").expect("a client_id line");
    let end = start + text[start..].find('\n').expect("end of line");
    let shared = format!(
        "{}client_id = \"{SHARED_ID}\"{}",
        &text[..start],
        &text[end..]
    );
    std::fs::write(path, shared).unwrap();
    path.to_path_buf()
}

/// A Redis list-mode config (lease on, `ttl_ms` from `Setup::config`) with the shared id.
pub fn list_config(setup: &Setup, name: &str, redis_url: &str, broker_url: &str) -> PathBuf {
    share_client_id(&setup.config(name, redis_url, broker_url, "", ""))
}

/// Lines of mosquitto's log where it closed a connection because a second one came with the
/// same client id (mosquitto 2.x: "Client <id> already connected, closing old connection.").
pub fn kicks(broker_log: &str) -> Vec<String> {
    broker_log
        .lines()
        .filter(|l| l.contains("already connected"))
        .map(str::to_string)
        .collect()
}

/// How many connections mosquitto accepted with client id `id` ("New client connected from
/// … as <id> …").
pub fn connections_as(broker_log: &str, id: &str) -> usize {
    let needle = format!(" as {id} ");
    broker_log
        .lines()
        .filter(|l| l.contains("New client connected") && l.contains(&needle))
        .count()
}

/// Poll `f` every 20 ms until it is true or `limit` passed; how long it took.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t = std::time::Instant::now();
    while t.elapsed() < limit {
        if f() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
