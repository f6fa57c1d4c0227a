//! Shared helpers of the end-to-end tests (`tests/bridge_e2e.rs`, `tests/reliability_*.rs`):
//! spawn the `bridge` binary with a TOML config, read its log, its RSS and its HTTP endpoints,
//! push raw items, subscribe and collect.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod nemo_db;
pub mod standby;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nemo_events::Qos;
use nemo_mqtt::{MqttConfig, Received, Subscriber};
use nemo_testkit::RedisServer;

/// Result of a test body.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The queue key (the NEMO plugin's).
pub const KEY: &str = "nemo_mqtt_events";
/// The dead-letter list.
pub const DEAD: &str = "{nemo_mqtt_events}:dead";
/// The processing list.
pub const PROCESSING: &str = "{nemo_mqtt_events}:processing";

/// A running bridge child process (stdout and stderr into one log file); killed on drop.
pub struct Bridge {
    pub child: Child,
    pub http: u16,
    pub log: PathBuf,
}

impl Bridge {
    /// Spawn `bridge --config <config>` with `RUST_LOG=<level>`.
    pub fn spawn(config: &Path, http: u16, log: PathBuf, level: &str) -> Bridge {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_bridge"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", level)
            .env_remove("NO_COLOR")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn bridge");
        Bridge { child, http, log }
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    /// Send a signal by name (`"-TERM"`, `"-HUP"`, …) with `kill`.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig}");
    }
    /// Wait up to `limit` for the process to end; its exit status (`None`: still running, or
    /// ended by a signal).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Option<i32>> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
    /// SIGTERM, and assert a clean stop: exit status 0 within `limit` (the log otherwise).
    pub fn stop_cleanly(&mut self, limit: Duration) {
        self.signal("-TERM");
        assert_eq!(self.wait_exit(limit), Some(Some(0)), "{}", self.log());
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// Last `n` lines of the log (for assertion messages).
    pub fn tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.http, path)
    }
    pub fn wait_ready(&self, limit: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < limit {
            if matches!(self.get("/readyz"), Some((200, _))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
    /// Wait until the log satisfies `pred`.
    pub fn wait_log(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let t = Instant::now();
        while t.elapsed() < limit {
            if pred(&self.log()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        pred(&self.log())
    }
    /// (VmRSS, VmHWM) in KiB from /proc/<pid>/status.
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        rss_kib(self.pid())
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use nemo_testkit::rss_kib;

/// A plain HTTP/1.1 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Some((code, body))
}

/// The fault and order tests count one message per event: they turn the retained per-tool state
/// documents (on by default) off; `tests/state_topics.rs` tests those.
pub const NO_STATE_TOPICS: &str = "[topics]\nstate_topics = false\n\n";

/// A temp dir for configs and logs, and the bridge's HTTP port.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub http: u16,
}

impl Setup {
    pub fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().unwrap(),
            http: nemo_testkit::free_port().unwrap(),
        }
    }
    /// Write a config: redis url, broker url, fast backoff, short lease, then `extra` TOML
    /// (which may add keys to `[mqtt]` through `mqtt_extra`).
    pub fn config(
        &self,
        name: &str,
        redis_url: &str,
        broker_url: &str,
        mqtt_extra: &str,
        extra: &str,
    ) -> PathBuf {
        self.config_with(name, redis_url, "", broker_url, mqtt_extra, extra)
    }
    /// [`config`](Self::config) with extra `[redis]` keys.
    pub fn config_with(
        &self,
        name: &str,
        redis_url: &str,
        redis_extra: &str,
        broker_url: &str,
        mqtt_extra: &str,
        extra: &str,
    ) -> PathBuf {
        let path = self.dir.path().join(name);
        let text = format!(
            "[redis]\nurl = \"{redis_url}\"\nkey = \"{KEY}\"\n{redis_extra}\n[mqtt]\nurl = \"{broker_url}\"\nclient_id = \"bridge-{name}\"\n{mqtt_extra}\n\
             [status]\ntopic = \"test/bridge/status\"\n\n[http]\nlisten = \"127.0.0.1:{}\"\n\n\
             [lease]\nttl_ms = 2000\n\n[shutdown]\ndrain_timeout_s = 5\n\n[backoff]\ninitial_ms = 50\nmax_ms = 500\n\n\
             {NO_STATE_TOPICS}{extra}",
            self.http
        );
        std::fs::write(&path, text).unwrap();
        path
    }
    /// A bridge logging at `info`, or at `$NEMO_TEST_BRIDGE_LOG` when set (for diagnosing a
    /// failed soak: e.g. `NEMO_TEST_BRIDGE_LOG=info,nemo_bridge=debug,nemo_redis=debug`).
    pub fn bridge(&self, config: &Path, tag: &str) -> Bridge {
        let level = std::env::var("NEMO_TEST_BRIDGE_LOG").unwrap_or_else(|_| "info".into());
        self.bridge_at(config, tag, &level)
    }
    /// [`bridge`](Self::bridge), ready within 20 s, or the test fails with its log.
    #[track_caller]
    pub fn ready_bridge(&self, config: &Path, tag: &str) -> Bridge {
        let bridge = self.bridge(config, tag);
        assert!(
            bridge.wait_ready(Duration::from_secs(20)),
            "{}",
            bridge.log()
        );
        bridge
    }
    pub fn bridge_at(&self, config: &Path, tag: &str, level: &str) -> Bridge {
        Bridge::spawn(
            config,
            self.http,
            self.dir.path().join(format!("{tag}.log")),
            level,
        )
    }
}

/// A producer on db 1 of `redis` (the harness URL, password included).
pub async fn producer(redis: &RedisServer) -> nemo_redis::Producer {
    producer_url(&redis.url_db(1), None).await
}

/// A producer for a URL (with an optional CA for rediss://).
pub async fn producer_url(url: &str, ca: Option<PathBuf>) -> nemo_redis::Producer {
    let cfg = nemo_redis::RedisConfig {
        url: url.into(),
        key: KEY.into(),
        ca_file: ca,
        ..Default::default()
    };
    let r = nemo_redis::Redis::connect(&cfg, &nemo_backoff::BackoffConfig::default())
        .await
        .unwrap();
    r.producer()
}

/// Subscribe `nemo/#` at QoS 1.
pub async fn subscriber(url: &str, id: &str, persistent: bool) -> Subscriber {
    let cfg = MqttConfig {
        client_id: id.into(),
        clean_session: !persistent,
        ..MqttConfig::for_url(url)
    };
    Subscriber::connect(cfg, &["nemo/#"], Qos::AtLeastOnce)
        .await
        .unwrap()
}

/// Receive until `done(received)` or the time limit.
pub async fn collect(
    sub: &mut Subscriber,
    limit: Duration,
    mut done: impl FnMut(&[Received]) -> bool,
) -> Vec<Received> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while !done(&got) {
        match tokio::time::timeout_at(deadline, sub.recv()).await {
            Ok(Some(m)) => got.push(m),
            _ => break,
        }
    }
    got
}

/// A valid plugin-format item for tool `tool` carrying sequence number `seq`.
pub fn item(tool: usize, seq: usize) -> String {
    format!(
        "{{\"topic\": \"nemo/tools/{tool}/enabled\", \"payload\": \"{{\\\"event\\\": \\\"tool_enabled\\\", \\\"tool_id\\\": {tool}, \\\"seq\\\": {seq}}}\", \"qos\": 1, \"retain\": false, \"timestamp\": 1760623352.94}}"
    )
}

/// `seq` of a received message made by [`item`].
pub fn seq_of(m: &Received) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_slice(&m.payload).ok()?;
    v["seq"].as_u64().map(|s| s as usize)
}

/// Which of the sequence numbers `0..n` have arrived at least once, and the longest wait for a
/// new one (the loss and outage figures of the fault tests).
pub struct Arrivals {
    seen: Vec<bool>,
    /// How many distinct numbers arrived.
    pub unique: usize,
    /// When the last new number arrived.
    pub last_new: Instant,
    /// The longest wait between two new numbers.
    pub longest_gap: Duration,
}

impl Arrivals {
    pub fn new(n: usize) -> Arrivals {
        Arrivals {
            seen: vec![false; n],
            unique: 0,
            last_new: Instant::now(),
            longest_gap: Duration::ZERO,
        }
    }
    /// Count `seq` (ignored when `None` or out of range); true when it is new.
    pub fn note(&mut self, seq: Option<usize>) -> bool {
        let Some(s) = seq.filter(|s| *s < self.seen.len()) else {
            return false;
        };
        if std::mem::replace(&mut self.seen[s], true) {
            return false;
        }
        self.unique += 1;
        self.longest_gap = self.longest_gap.max(self.last_new.elapsed());
        self.last_new = Instant::now();
        true
    }
    /// True when every number arrived.
    pub fn complete(&self) -> bool {
        self.unique == self.seen.len()
    }
    /// The numbers that did not arrive, in order.
    pub fn missing(&self) -> Vec<usize> {
        (0..self.seen.len()).filter(|s| !self.seen[*s]).collect()
    }
}

/// LLEN of a key in db 1; panics (with what redis-cli said) if the server does not answer.
pub fn llen(redis: &RedisServer, key: &str) -> usize {
    let out = redis.cli(&["LLEN", key]).expect("redis-cli");
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("LLEN {key}: redis-cli said {out:?}"))
}

/// Wait (up to `limit`) until the queue and the processing list are both empty, and return
/// their lengths. A subscriber having received an event does not mean the bridge has acked it
/// yet: the ack follows the broker's confirmation.
pub fn wait_drained(redis: &RedisServer, limit: Duration) -> (usize, usize) {
    let until = Instant::now() + limit;
    loop {
        let lens = (llen(redis, KEY), llen(redis, PROCESSING));
        if lens == (0, 0) || Instant::now() > until {
            return lens;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run the bridge binary to completion with extra args and env.
pub fn run_bridge(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bridge"));
    c.args(args).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}
