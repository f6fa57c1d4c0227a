//! End-to-end benchmark of the bridge against a ceiling measured in the same run.
//!
//! ```sh
//! cargo bench --bench e2e                       # defaults: 200,000 events, 1,000,000 backlog
//! NEMO_BENCH_N=50000 NEMO_BENCH_BACKLOG=0 cargo bench --bench e2e   # quicker
//! ```
//!
//! It starts a private redis-server and mosquitto (DESIGN.md §6 config: nodelay,
//! unlimited queues) on free loopback ports, and prints a table:
//!
//! 1. **ceiling** — a direct paho publish of the same pre-generated payloads at
//!    QoS 1, with confirms, with the bridge's in-flight window;
//! 2. **drain** — N v1 items preloaded into the list (and into a stream); the
//!    bridge started; time until all are confirmed and acked;
//! 3. **latency and idle cost** — items pushed at 1,000/s (5 runs of 60 s), at 10,000/s,
//!    in bursts of 2,000; subscriber receive time minus push time, p50/p99/p99.9/max; CPU,
//!    wake-ups and Redis commands of an idle bridge, and the first event after the idle
//!    period (see `e2e/latency.rs`; `NEMO_BENCH_ONLY=latency` runs only this);
//! 4. **memory** — peak RSS of the bridge during the drain and under a
//!    1,000,000-item backlog (sampled as it drains, to show it stays flat);
//! 5. **recovery** — time from a broker restart to the first confirmed publish;
//! 6. **table** — the queue of plugin 2.x in PostgreSQL: drain of a 10,000-row backlog (and
//!    the plugin's own Python bridge on the same rows, when set up), memory under a
//!    1,000,000-row backlog, latency from INSERT + NOTIFY at 100/s (see `e2e/table.rs`;
//!    `NEMO_BENCH_ONLY=table` runs only this, `NEMO_BENCH_TABLE=0` skips it).
//!
//! Results also go to `target/bench-results/e2e-<unix time>.json`, with the
//! machine described, so runs can be compared over time.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fred::prelude::*;
use nemo_testkit::{Mosquitto, RedisServer, bench_item as item, cpu_seconds, rss_kib};
use paho_mqtt as mqtt;

#[path = "e2e/latency.rs"]
mod latency;
#[path = "e2e/table.rs"]
mod table;

const KEY: &str = "nemo_mqtt_events";
const PROCESSING: &str = "{nemo_mqtt_events}:processing";
const WINDOW: usize = 256;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Preload `n` items with `redis-cli --pipe` (LPUSH in batches of 1,000, as a
/// producer would; oldest first).
fn preload_list(redis: &RedisServer, n: usize, start: usize) -> Res<()> {
    preload(redis, n, start, |values, out| {
        let _ = write!(
            out,
            "*{}\r\n$5\r\nLPUSH\r\n${}\r\n{KEY}\r\n",
            values.len() + 2,
            KEY.len()
        );
        for v in values {
            let _ = write!(out, "${}\r\n{v}\r\n", v.len());
        }
    })
}

fn preload_stream(redis: &RedisServer, key: &str, n: usize) -> Res<()> {
    preload(redis, n, 0, |values, out| {
        for v in values {
            let _ = write!(
                out,
                "*5\r\n$4\r\nXADD\r\n${}\r\n{key}\r\n$1\r\n*\r\n$4\r\nitem\r\n${}\r\n{v}\r\n",
                key.len(),
                v.len()
            );
        }
    })
}

fn preload(
    redis: &RedisServer,
    n: usize,
    start: usize,
    encode: impl Fn(&[String], &mut String),
) -> Res<()> {
    let mut child = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &redis.port().to_string(),
            "-n",
            "1",
            "--pipe",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut i = start;
    let end = start + n;
    while i < end {
        let batch: Vec<String> = (i..end.min(i + 1000)).map(|s| item(s, 0)).collect();
        i += batch.len();
        let mut out = String::with_capacity(batch.len() * 340);
        // SELECT 1 is implied by -n 1 for --pipe.
        encode(&batch, &mut out);
        stdin.write_all(out.as_bytes())?;
    }
    drop(stdin);
    if !child.wait()?.success() {
        return Err("redis-cli --pipe failed".into());
    }
    Ok(())
}

/// The reconnect delay used for the recovery measure: fixed, no jitter, so that
/// the target "recovery <= backoff delay + 0.5 s" has a known backoff delay.
const RECOVERY_BACKOFF_MS: u64 = 200;

struct BridgeConfig {
    path: PathBuf,
    http_port: u16,
    log: PathBuf,
}

fn bridge_config(
    dir: &Path,
    redis: &RedisServer,
    broker: &Mosquitto,
    mode: &str,
    extra: &str,
) -> Res<BridgeConfig> {
    let http = nemo_testkit::free_port()?;
    let path = dir.join(format!("bridge-{mode}.toml"));
    std::fs::write(
        &path,
        format!(
            "[redis]\nurl = \"{}\"\nmode = \"{mode}\"\nkey = \"{KEY}\"\n\n\
             [mqtt]\nurl = \"{}\"\nclient_id = \"bench-bridge-{mode}\"\nqos = 1\ninflight = {WINDOW}\n\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n\n\
             # one message per event: the drains count them\n[topics]\nstate_topics = false\n{extra}",
            redis.url(),
            broker.url()
        ),
    )?;
    Ok(BridgeConfig {
        path,
        http_port: http,
        log: dir.join(format!("bridge-{mode}.log")),
    })
}

/// A running `bridge` process. Dropping it stops it gracefully (SIGTERM, so
/// that it releases its lease and the next bridge of the run is active at
/// once), and kills it if it has not stopped within 15 s.
struct Bridge {
    child: Child,
    http_port: u16,
    log: PathBuf,
}

/// Spawn the bridge binary (`NEMO_BENCH_BRIDGE=<path>` runs another build of it, for
/// before/after comparisons) on `config`, logging to its log file.
fn spawn_bridge(config: &BridgeConfig) -> Res<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&config.log)?;
    let program = std::env::var_os("NEMO_BENCH_BRIDGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_bridge")));
    Ok(Command::new(program)
        .arg("--config")
        .arg(&config.path)
        .env(
            "RUST_LOG",
            std::env::var("NEMO_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

impl Bridge {
    fn start(config: &BridgeConfig) -> Res<Self> {
        Ok(Self {
            child: spawn_bridge(config)?,
            http_port: config.http_port,
            log: config.log.clone(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until `/readyz` answers 200 (Redis and broker connected, lease held).
    async fn wait_ready(&self, timeout: Duration) -> Res<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if readyz(self.http_port).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!("bridge not ready within {timeout:?}; its log:\n{log}").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn readyz(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await,
        Ok(Ok(n)) if n >= 12 && &buf[9..12] == b"200"
    )
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let stopped = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if stopped {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A subscriber on `nemo/#` that counts messages and records latencies from
/// the `pushed_ns` field.
struct Counter {
    received: Arc<AtomicU64>,
    first_ns: Arc<AtomicU64>,
    last_ns: Arc<AtomicU64>,
    latencies: Arc<std::sync::Mutex<Vec<u64>>>,
    /// The `pushed_ns` of each latency sample, in the same order.
    pushed: Arc<std::sync::Mutex<Vec<u64>>>,
    _client: mqtt::AsyncClient,
}

impl Counter {
    async fn start(url: &str, id: &str) -> Res<Self> {
        let opts = mqtt::CreateOptionsBuilder::new_v3()
            .server_uri(url)
            .client_id(id)
            .persistence(mqtt::PersistenceType::None)
            .finalize();
        let mut client = mqtt::AsyncClient::new(opts)?;
        let stream = client.get_stream(100_000);
        client
            .connect(
                mqtt::ConnectOptionsBuilder::new_v3()
                    .clean_session(true)
                    .finalize(),
            )
            .await?;
        client.subscribe("nemo/tools/#", 1).await?;
        let received = Arc::new(AtomicU64::new(0));
        let first_ns = Arc::new(AtomicU64::new(0));
        let last_ns = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let pushed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (r, f, l, lat, pu) = (
            received.clone(),
            first_ns.clone(),
            last_ns.clone(),
            latencies.clone(),
            pushed.clone(),
        );
        tokio::spawn(async move {
            while let Ok(msg) = stream.recv().await {
                let Some(msg) = msg else { continue };
                let now = now_ns() as u64;
                if r.fetch_add(1, Ordering::Relaxed) == 0 {
                    f.store(now, Ordering::Relaxed);
                }
                l.store(now, Ordering::Relaxed);
                let text = msg.payload_str();
                if let Some(pos) = text.find("\"pushed_ns\": ") {
                    let digits: String = text[pos + 13..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    if let Ok(pushed) = digits.parse::<u64>()
                        && pushed > 0
                    {
                        lat.lock().unwrap().push(now.saturating_sub(pushed));
                        pu.lock().unwrap().push(pushed);
                    }
                }
            }
        });
        Ok(Self {
            received,
            first_ns,
            last_ns,
            latencies,
            pushed,
            _client: client,
        })
    }

    fn count(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Stop receiving (for the measurements without a subscriber).
    async fn pause(&self) -> Res<()> {
        self._client.unsubscribe("nemo/tools/#").await?;
        Ok(())
    }

    async fn resume(&self) -> Res<()> {
        self._client.subscribe("nemo/tools/#", 1).await?;
        Ok(())
    }

    fn reset(&self) {
        self.received.store(0, Ordering::Relaxed);
        self.first_ns.store(0, Ordering::Relaxed);
        self.last_ns.store(0, Ordering::Relaxed);
        self.latencies.lock().unwrap().clear();
        self.pushed.lock().unwrap().clear();
    }

    /// (latencies, pushed times), in arrival order, in ns.
    fn samples(&self) -> (Vec<u64>, Vec<u64>) {
        // The receiving task pushes to both under one lock order: latencies, then pushed.
        let lat = self.latencies.lock().unwrap();
        let pushed = self.pushed.lock().unwrap();
        let n = lat.len().min(pushed.len());
        (lat[..n].to_vec(), pushed[..n].to_vec())
    }

    async fn wait_for(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.count() < n {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

/// 1. Ceiling: direct paho QoS 1 publish with confirms and the same window.
async fn ceiling(url: &str, payloads: &[(String, String)]) -> Res<f64> {
    let opts = mqtt::CreateOptionsBuilder::new_v3()
        .server_uri(url)
        .client_id("bench-ceiling")
        .persistence(mqtt::PersistenceType::None)
        .max_buffered_messages(WINDOW as i32 * 2)
        .finalize();
    let client = mqtt::AsyncClient::new(opts)?;
    client
        .connect(mqtt::ConnectOptionsBuilder::new_v3().finalize())
        .await?;
    let start = Instant::now();
    let mut window: VecDeque<mqtt::DeliveryToken> = VecDeque::with_capacity(WINDOW);
    for (topic, payload) in payloads {
        if window.len() == WINDOW
            && let Some(t) = window.pop_front()
        {
            t.await?;
        }
        window.push_back(client.publish(mqtt::Message::new(topic.as_str(), payload.as_bytes(), 1)));
    }
    for t in window {
        t.await?;
    }
    let secs = start.elapsed().as_secs_f64();
    client.disconnect(None).await?;
    Ok(payloads.len() as f64 / secs)
}

async fn redis_client(redis: &RedisServer) -> Res<Client> {
    let client = Builder::from_config(Config::from_url(&redis.url())?).build()?;
    client.init().await?;
    Ok(client)
}

async fn list_remaining(c: &Client) -> Res<i64> {
    let a: i64 = c.llen(KEY).await?;
    let b: i64 = c.llen(PROCESSING).await?;
    Ok(a + b)
}

struct Drain {
    events_per_s: f64,
    wall_s: f64,
    peak_rss_kib: u64,
    samples_kib: Vec<u64>,
    /// Bridge CPU time (user + system) per event, microseconds.
    cpu_us_per_event: f64,
    /// Redis commands (all clients, scripts counted once) per event during the drain.
    redis_calls_per_event: f64,
}

/// The number of commands clients sent to Redis since the last `CONFIG RESETSTAT`
/// (`INFO commandstats`), i.e. round trips: without the INFO/CONFIG/LLEN/XPENDING of the
/// bench itself, and without LMOVE/LREM/LRANGE/LTRIM/LPUSH, which the bridge only runs inside
/// its Lua scripts (commandstats counts script-internal calls too; the EVALSHA itself is
/// counted; the preload's LPUSHes happen before the reset).
fn redis_calls(redis: &RedisServer) -> u64 {
    let out = redis.cli(&["INFO", "commandstats"]).unwrap_or_default();
    out.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter(|l| {
            ![
                "info", "config", "llen", "xpending", "ping", "hello", "client", "lmove", "lrem",
                "lrange", "ltrim", "lpush",
            ]
            .iter()
            .any(|c| l.starts_with(&format!("{c}:")) || l.starts_with(&format!("{c}|")))
        })
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// With `NEMO_BENCH_PERF=<file>`, `perf record` the bridge during the list drain.
struct PerfRecord(Option<Child>);

impl PerfRecord {
    fn start(pid: u32, mode: &str) -> Self {
        let Ok(out) = std::env::var("NEMO_BENCH_PERF") else {
            return Self(None);
        };
        let child = Command::new("perf")
            .args(["record", "-F", "999", "-g", "-o"])
            .arg(format!("{out}.{mode}"))
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        Self(child)
    }
}

impl Drop for PerfRecord {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

/// 2./4. Drain a preloaded backlog; wait until the subscriber saw all and the
/// queue is empty; sample the bridge's RSS as it goes.
async fn drain(
    redis: &RedisServer,
    broker: &Mosquitto,
    dir: &Path,
    mode: &str,
    n: usize,
    counter: &Counter,
) -> Res<Drain> {
    let rc = redis_client(redis).await?;
    counter.reset();
    let cfg = bridge_config(dir, redis, broker, mode, "")?;
    let _ = redis.cli(&["CONFIG", "RESETSTAT"]);
    let start = Instant::now();
    let bridge = Bridge::start(&cfg)?;
    let perf = PerfRecord::start(bridge.pid(), mode);
    let mut samples = Vec::new();
    let deadline = start + Duration::from_secs(600);
    loop {
        let seen = counter.count();
        if seen >= n as u64 {
            let remaining = if mode == "list" {
                list_remaining(&rc).await?
            } else {
                // Pending (delivered, not yet acked) entries of the bridge's group;
                // an answer that is not a count (e.g. NOGROUP) is an error, not 0.
                let out = redis
                    .cli(&["XPENDING", KEY, "nemo-bridge"])
                    .map_err(|e| e.to_string())?;
                out.lines()
                    .next()
                    .and_then(|l| l.trim().parse::<i64>().ok())
                    .ok_or_else(|| format!("XPENDING answered {out:?}"))?
            };
            if remaining == 0 {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err(format!("{mode} drain timed out at {seen}/{n}").into());
        }
        samples.push(rss_kib(bridge.pid()).unwrap_or_default().0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wall = start.elapsed().as_secs_f64();
    let (_, hwm) = rss_kib(bridge.pid()).unwrap_or_default();
    let cpu = cpu_seconds(bridge.pid());
    let calls = redis_calls(redis);
    if std::env::var_os("NEMO_BENCH_VERBOSE").is_some() {
        eprintln!(
            "{mode} drain, redis INFO commandstats:\n{}",
            redis.cli(&["INFO", "commandstats"]).unwrap_or_default()
        );
    }
    drop(perf);
    let first = counter.first_ns.load(Ordering::Relaxed);
    let last = counter.last_ns.load(Ordering::Relaxed);
    let steady = (last.saturating_sub(first)) as f64 / 1e9;
    drop(bridge);
    let _: () = rc.del(KEY).await?;
    Ok(Drain {
        events_per_s: if steady > 0.0 { n as f64 / steady } else { 0.0 },
        wall_s: wall,
        peak_rss_kib: hwm,
        samples_kib: samples,
        cpu_us_per_event: cpu * 1e6 / n as f64,
        redis_calls_per_event: calls as f64 / n as f64,
    })
}

/// A list drain with no subscriber on the broker, timed from Redis alone: from the first
/// item leaving the queue to the queue and processing list both empty (every item confirmed
/// by the broker and acked).
async fn drain_unobserved(
    redis: &RedisServer,
    broker: &Mosquitto,
    dir: &Path,
    n: usize,
) -> Res<(f64, CpuSplit)> {
    let rc = redis_client(redis).await?;
    let cfg = bridge_config(dir, redis, broker, "list", "")?;
    let bridge = Bridge::start(&cfg)?;
    // From the spawn: the bridge's start-up CPU (a few ms) counts against it.
    let cpu = CpuMeter::start(bridge.pid(), redis, broker);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first = None;
    loop {
        let left = list_remaining(&rc).await?;
        let queued: i64 = rc.llen(KEY).await?;
        if first.is_none() && queued < n as i64 {
            first = Some(Instant::now());
        }
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("unobserved drain timed out with {left} left").into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(0.0);
    let split = cpu.per_event(n);
    drop(bridge);
    Ok((if secs > 0.0 { n as f64 / secs } else { 0.0 }, split))
}

/// CPU time per event of the publishing process (the bench itself for the ceiling, the
/// bridge for a drain), the broker and Redis, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
struct CpuSplit {
    publisher_us: f64,
    broker_us: f64,
    redis_us: f64,
}

/// Samples the CPU time of the three processes at the start and the end of a measurement.
struct CpuMeter {
    pids: [u32; 3],
    start: [f64; 3],
}

impl CpuMeter {
    fn start(publisher: u32, redis: &RedisServer, broker: &Mosquitto) -> Self {
        let pids = [
            publisher,
            broker.pid().unwrap_or(0),
            redis.pid().unwrap_or(0),
        ];
        Self {
            pids,
            start: pids.map(cpu_seconds),
        }
    }

    fn per_event(&self, n: usize) -> CpuSplit {
        let us = |i: usize| (cpu_seconds(self.pids[i]) - self.start[i]) * 1e6 / n.max(1) as f64;
        CpuSplit {
            publisher_us: us(0),
            broker_us: us(1),
            redis_us: us(2),
        }
    }
}

struct Latency {
    rate: usize,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    n: usize,
}

/// Percentiles of latencies in ns (nearest rank), in ms.
fn summarize(rate: usize, mut lat: Vec<u64>) -> Latency {
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            return f64::NAN;
        }
        lat[((lat.len() - 1) as f64 * p).round() as usize] as f64 / 1e6
    };
    Latency {
        rate,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        p999_ms: pct(0.999),
        max_ms: pct(1.0),
        n: lat.len(),
    }
}

/// Step 5: the time from a broker restart to the first confirmed publish, seen
/// as the first ack (the queue getting shorter) after the restart.
async fn recovery(redis: &RedisServer, broker: &mut Mosquitto, dir: &Path) -> Res<f64> {
    let rc = redis_client(redis).await?;
    let backoff = format!(
        "\n[backoff]\ninitial_ms = {RECOVERY_BACKOFF_MS}\nmax_ms = {RECOVERY_BACKOFF_MS}\njitter = \"none\"\n"
    );
    let cfg = bridge_config(dir, redis, broker, "list", &backoff)?;
    let bridge = Bridge::start(&cfg)?;
    bridge.wait_ready(Duration::from_secs(30)).await?;
    broker.kill();
    for i in 0..200 {
        let _: i64 = rc.lpush(KEY, item(20_000_000 + i, 0)).await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = list_remaining(&rc).await?;
    broker.restart().map_err(|e| e.to_string())?;
    let restarted = Instant::now();
    loop {
        if list_remaining(&rc).await? < before {
            return Ok(restarted.elapsed().as_secs_f64());
        }
        if restarted.elapsed() > Duration::from_secs(60) {
            return Err("no publish confirmed within 60 s of the broker restart".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let version = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default()
    };
    format!(
        "{cores} cores, {cpu}; {}; {}",
        version("redis-server", "--version"),
        version("mosquitto", "-h")
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Res<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing
    // useful either way: this benchmark only runs when asked for by name.
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let n = env_usize("NEMO_BENCH_N", 200_000);
    let backlog = env_usize("NEMO_BENCH_BACKLOG", 1_000_000);
    let dir = tempfile::tempdir()?;
    if std::env::var_os("NEMO_BENCH_VERBOSE").is_some() {
        eprintln!("bridge configs and logs (kept): {}", dir.path().display());
    }
    let redis = RedisServer::start()?;
    let mut broker = Mosquitto::builder().persistence(false).start()?;
    let counter = Counter::start(&broker.url(), "bench-counter").await?;
    eprintln!("machine: {}", machine());
    eprintln!(
        "load average at start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    // NEMO_BENCH_ONLY=latency: only section 3 (latency, bursts, idle cost).
    if std::env::var("NEMO_BENCH_ONLY").as_deref() == Ok("latency") {
        let l = latency::run(&redis, &broker, &counter, dir.path()).await?;
        if std::env::var_os("NEMO_BENCH_VERBOSE").is_some() {
            let _ = dir.keep();
        }
        return section_only("latency", &l.rows(), l.json());
    }
    // NEMO_BENCH_ONLY=table: only section 6 (the queue of plugin 2.x).
    if std::env::var("NEMO_BENCH_ONLY").as_deref() == Ok("table") {
        let t = table::run(&broker, &counter, dir.path()).await?;
        return section_only("table", &t.rows(), t.json());
    }

    let payloads: Vec<(String, String)> = (0..n)
        .map(|s| {
            let tool = [1, 7, 12, 23, 42][s % 5];
            (format!("nemo/tools/{tool}/enabled"), item(s, 0))
        })
        .collect();
    eprintln!("1/5 ceiling: direct paho publish of {n} payloads, QoS 1, window {WINDOW}");
    counter.reset();
    let ceiling_before = ceiling(&broker.url(), &payloads).await?;

    eprintln!("2/5 drain: list mode, {n} items preloaded");
    preload_list(&redis, n, 0)?;
    let list = drain(&redis, &broker, dir.path(), "list", n, &counter).await?;
    eprintln!("2/5 drain: stream mode, {n} items preloaded");
    preload_stream(&redis, KEY, n)?;
    let stream = drain(&redis, &broker, dir.path(), "stream", n, &counter).await;
    let rc = redis_client(&redis).await?;
    let _: () = rc.del(KEY).await?;
    // The ceiling again, after the drains: on a shared machine the load moves;
    // the ratios use the higher of the two (the stricter target).
    eprintln!("1/5 ceiling again, after the drains");
    counter.reset();
    let ceiling_after = ceiling(&broker.url(), &payloads).await?;
    let ceiling_rate = ceiling_before.max(ceiling_after);

    // The same pair with nobody subscribed: the QoS 1 subscriber above makes the broker do
    // twice the work on the same cores; this shows what the bridge does on its own.
    eprintln!("2/5 ceiling and list drain without a subscriber (timed from Redis)");
    counter.pause().await?;
    let cpu = CpuMeter::start(std::process::id(), &redis, &broker);
    let ceiling_nosub = ceiling(&broker.url(), &payloads).await?;
    let ceiling_cpu = cpu.per_event(n);
    drop(payloads);
    preload_list(&redis, n, 0)?;
    let (drain_nosub, drain_cpu) = drain_unobserved(&redis, &broker, dir.path(), n).await?;
    let _: () = rc.del(KEY).await?;
    counter.resume().await?;

    let lat = latency::run(&redis, &broker, &counter, dir.path()).await?;

    let big = if backlog > 0 {
        eprintln!("4/5 memory: {backlog}-item backlog");
        preload_list(&redis, backlog, 0)?;
        Some(drain(&redis, &broker, dir.path(), "list", backlog, &counter).await?)
    } else {
        None
    };

    eprintln!("5/5 recovery after a broker restart");
    let recovery_s = recovery(&redis, &mut broker, dir.path()).await?;

    let table6 = if env_usize("NEMO_BENCH_TABLE", 1) > 0 {
        Some(table::run(&broker, &counter, dir.path()).await?)
    } else {
        None
    };

    // Report.
    let mut table = String::new();
    let _ = writeln!(
        table,
        "\n{:<44} {:>14} {:>10}",
        "measure", "value", "vs ceiling"
    );
    let _ = writeln!(table, "{}", "-".repeat(70));
    let _ = writeln!(
        table,
        "{:<44} {:>12.0}/s {:>10}",
        "ceiling: direct paho QoS 1, window 256", ceiling_rate, "1.00"
    );
    let _ = writeln!(
        table,
        "{:<44} {:>14}",
        "  (ceiling before / after the drains)",
        format!("{ceiling_before:.0}/{ceiling_after:.0}")
    );
    let _ = writeln!(
        table,
        "{:<44} {:>12.0}/s {:>10.2}",
        format!("drain list ({n}, wall {:.2} s)", list.wall_s),
        list.events_per_s,
        list.events_per_s / ceiling_rate
    );
    match &stream {
        Ok(s) => {
            let _ = writeln!(
                table,
                "{:<44} {:>12.0}/s {:>10.2}",
                format!("drain stream ({n}, wall {:.2} s)", s.wall_s),
                s.events_per_s,
                s.events_per_s / ceiling_rate
            );
        }
        Err(e) => {
            let _ = writeln!(
                table,
                "{:<44} {:>14}",
                "drain stream",
                format!("FAILED: {e}")
            );
        }
    }
    let _ = writeln!(
        table,
        "{:<44} {:>12.0}/s {:>10}",
        "ceiling without a subscriber", ceiling_nosub, "1.00"
    );
    let _ = writeln!(
        table,
        "{:<44} {:>12.0}/s {:>10.2}",
        "drain list without a subscriber (Redis-timed)",
        drain_nosub,
        drain_nosub / ceiling_nosub
    );
    for (label, c) in [
        ("  CPU/event: paho direct / broker / redis", ceiling_cpu),
        ("  CPU/event: bridge / broker / redis", drain_cpu),
    ] {
        let _ = writeln!(
            table,
            "{:<44} {:>14}",
            label,
            format!(
                "{:.1}/{:.1}/{:.1} us",
                c.publisher_us, c.broker_us, c.redis_us
            )
        );
    }
    let _ = writeln!(
        table,
        "{:<44} {:>14}",
        "bridge CPU per event, list / stream",
        format!(
            "{:.1}/{} us",
            list.cpu_us_per_event,
            stream
                .as_ref()
                .map(|s| format!("{:.1}", s.cpu_us_per_event))
                .unwrap_or_else(|_| "-".into())
        )
    );
    let _ = writeln!(
        table,
        "{:<44} {:>14}",
        "redis round trips per event, list / stream",
        format!(
            "{:.3}/{}",
            list.redis_calls_per_event,
            stream
                .as_ref()
                .map(|s| format!("{:.3}", s.redis_calls_per_event))
                .unwrap_or_else(|_| "-".into())
        )
    );
    table.push_str(&lat.rows());
    let _ = writeln!(
        table,
        "{:<44} {:>11.1} MB",
        "peak RSS during drain",
        list.peak_rss_kib as f64 / 1024.0
    );
    if let Some(b) = &big {
        let q = |f: f64| {
            b.samples_kib
                .get((b.samples_kib.len() as f64 * f) as usize)
                .copied()
                .unwrap_or(0)
        };
        let _ = writeln!(
            table,
            "{:<44} {:>11.1} MB",
            format!("peak RSS, {backlog} backlog ({:.0}/s)", b.events_per_s),
            b.peak_rss_kib as f64 / 1024.0
        );
        let _ = writeln!(
            table,
            "{:<44} {:>14}",
            "RSS at 10% / 50% / 90% of that drain",
            format!(
                "{:.1}/{:.1}/{:.1} MB",
                q(0.1) as f64 / 1024.0,
                q(0.5) as f64 / 1024.0,
                q(0.9) as f64 / 1024.0
            )
        );
    }
    let _ = writeln!(
        table,
        "{:<44} {:>12.3} s",
        format!("recovery: restart -> 1st confirm (backoff {RECOVERY_BACKOFF_MS}ms)"),
        recovery_s
    );
    if let Some(t) = &table6 {
        table.push_str(&t.rows());
    }
    println!("{table}");

    let stream_rate = stream.as_ref().map(|s| s.events_per_s).unwrap_or(0.0);
    let json = serde_json::json!({
        "when_unix": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "machine": machine(),
        "n": n,
        "window": WINDOW,
        "ceiling_per_s": ceiling_rate,
        "ceiling_before_per_s": ceiling_before,
        "ceiling_after_per_s": ceiling_after,
        "cpu_us_per_event_list": list.cpu_us_per_event,
        "cpu_us_per_event_stream": stream.as_ref().map(|s| s.cpu_us_per_event).ok(),
        "redis_calls_per_event_list": list.redis_calls_per_event,
        "redis_calls_per_event_stream": stream.as_ref().map(|s| s.redis_calls_per_event).ok(),
        "drain_list_per_s": list.events_per_s,
        "drain_list_ratio": list.events_per_s / ceiling_rate,
        "ceiling_no_subscriber_per_s": ceiling_nosub,
        "drain_list_no_subscriber_per_s": drain_nosub,
        "drain_list_no_subscriber_ratio": drain_nosub / ceiling_nosub,
        "cpu_us_per_event_no_subscriber": {
            "ceiling": {"publisher": ceiling_cpu.publisher_us, "broker": ceiling_cpu.broker_us, "redis": ceiling_cpu.redis_us},
            "drain": {"bridge": drain_cpu.publisher_us, "broker": drain_cpu.broker_us, "redis": drain_cpu.redis_us},
        },
        "drain_stream_per_s": stream_rate,
        "latency": lat.json(),
        "peak_rss_drain_mb": list.peak_rss_kib as f64 / 1024.0,
        "backlog": backlog,
        "peak_rss_backlog_mb": big.as_ref().map(|b| b.peak_rss_kib as f64 / 1024.0),
        "rss_samples_backlog_kib": big.as_ref().map(|b| b.samples_kib.clone()),
        "recovery_s": recovery_s,
        "recovery_backoff_ms": RECOVERY_BACKOFF_MS,
        "table": table6.as_ref().map(table::TableReport::json),
        "load_avg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    });
    if std::env::var_os("NEMO_BENCH_VERBOSE").is_some() {
        let _ = dir.keep();
    }
    write_results(&json)
}

/// `NEMO_BENCH_ONLY`: print one section's table and write its results file, with the time,
/// the machine and its load.
fn section_only(key: &str, rows: &str, value: serde_json::Value) -> Res<()> {
    println!("\n{rows}");
    let mut json = serde_json::json!({
        "when_unix": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "machine": machine(),
        "load_avg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    });
    json[key] = value;
    write_results(&json)
}

/// Write the results file `target/bench-results/e2e-<unix time>.json`.
fn write_results(json: &serde_json::Value) -> Res<()> {
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
    std::fs::create_dir_all(&out_dir)?;
    let out = out_dir.join(format!(
        "e2e-{}.json",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    ));
    std::fs::write(&out, serde_json::to_string_pretty(json)?)?;
    println!("results: {}", out.display());
    Ok(())
}
