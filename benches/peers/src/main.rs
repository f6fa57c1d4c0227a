//! Side-by-side throughput of the best Rust peer, `mq-bridge` 1.3.0, and the nemo
//! `bridge`, on the same job: drain N v1 queue items from a Redis stream
//! (`nemo_mqtt_events`, one field `item`, read through a consumer group) to an MQTT
//! broker at QoS 1, acking each entry only after the broker confirmed it.
//!
//! ```sh
//! cd benches/peers && cargo build --release && ./target/release/peer-bench
//! PEER_N=50000 PEER_RUNS=2 ./target/release/peer-bench      # smaller
//! ```
//!
//! Both bridges get a fresh stream of the same N items for every measurement, and
//! each measurement is timed from the start of the bridge (mq-bridge: `Route::run`;
//! nemo: process spawn) until the bridge's consumer group has every entry read,
//! nothing pending (all `XACK`ed), and — in the runs with a subscriber — a QoS 1
//! `mosquitto_sub` has received all N. The clock therefore includes each bridge's
//! start-up (a few ms) and is read every 50 ms.
//!
//! CPU per event: the nemo bridge's own process (`/proc/<pid>/stat`, utime + stime);
//! for mq-bridge, which runs as a library in this process, the delta of
//! `/proc/self/stat` — which also holds this harness's polling, whose cost is shown
//! separately (the "harness" column, measured during the nemo runs, where this
//! process does nothing else).
//!
//! The one design decision: **mq-bridge is configured through its own public config
//! (`Route` deserialised from JSON), not re-implemented**, with a single custom
//! output middleware that only moves the stream field `item` into the payload (the
//! `redis_streams` input maps only a field named `payload` to the payload and every
//! other field to metadata, which MQTT 3.1.1 would otherwise wrap in a JSON envelope).
//! That way the peer runs exactly the code its users run.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mq_bridge::traits::{
    CustomMiddlewareFactory, EndpointStatus, MessagePublisher, PublisherError, Sent, SentBatch,
};
use mq_bridge::{CanonicalMessage, Route};
use nemo_testkit::{Mosquitto, RedisServer, bench_item as item};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The queue key the NEMO plugin writes (here: a stream).
const KEY: &str = "nemo_mqtt_events";
/// mq-bridge's consumer group.
const MQB_GROUP: &str = "mqb-peer";
/// The nemo bridge's consumer group (its default, `redis.group`).
const NEMO_GROUP: &str = "nemo-bridge";
/// mq-bridge publishes every message to one configured topic (no per-message topic).
const MQB_TOPIC: &str = "nemo/tools/peer";
/// How often the harness reads the group state.
const POLL: Duration = Duration::from_millis(50);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Replace the stream with `n` fresh entries `XADD KEY * item <v1 item>` (oldest
/// first), piped through `redis-cli --pipe` into database 1 (NEMO's database).
fn reset_stream(redis: &RedisServer, n: usize) -> Res<()> {
    redis.cli(&["DEL", KEY])?;
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &redis.port().to_string()])
        .args(["-n", "1", "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("redis-cli: no stdin")?;
    let mut i = 0;
    while i < n {
        let end = n.min(i + 1000);
        let mut out = String::with_capacity((end - i) * 360);
        for seq in i..end {
            let v = item(seq, 0);
            let _ = write!(
                out,
                "*5\r\n$4\r\nXADD\r\n${}\r\n{KEY}\r\n$1\r\n*\r\n$4\r\nitem\r\n${}\r\n{v}\r\n",
                KEY.len(),
                v.len()
            );
        }
        stdin.write_all(out.as_bytes())?;
        i = end;
    }
    drop(stdin);
    if !child.wait()?.success() {
        return Err("redis-cli --pipe failed".into());
    }
    let len: usize = redis.cli(&["XLEN", KEY])?.parse()?;
    if len != n {
        return Err(format!("stream holds {len} entries, expected {n}").into());
    }
    Ok(())
}

/// A consumer group's progress, from `XINFO GROUPS`.
#[derive(Debug, Default, Clone, Copy)]
struct GroupState {
    pending: u64,
    entries_read: u64,
    /// `None` when Redis cannot tell (nil).
    lag: Option<u64>,
}

/// `XINFO GROUPS KEY` for `group`; `None` while the group does not exist yet.
///
/// `redis-cli` (not a TTY) prints the reply flattened, one value a line:
/// `name <g> consumers <n> pending <n> last-delivered-id <id> entries-read <n> lag <n>`
/// per group, a nil as an empty line.
fn group_state(redis: &RedisServer, group: &str) -> Res<Option<GroupState>> {
    let out = redis.cli(&["XINFO", "GROUPS", KEY])?;
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let Some(start) = lines
        .windows(2)
        .position(|w| w[0] == "name" && w[1] == group)
    else {
        return Ok(None);
    };
    let mut state = GroupState::default();
    let mut i = start + 2;
    while i + 1 < lines.len() && lines[i] != "name" {
        let value = lines[i + 1];
        match lines[i] {
            "pending" => state.pending = value.parse()?,
            "entries-read" => state.entries_read = value.parse().unwrap_or(0),
            "lag" => state.lag = value.parse().ok(),
            _ => {}
        }
        i += 2;
    }
    Ok(Some(state))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Wait (checking every 20 s, at most `max_wait`) until the 1-minute load average is
/// below `max_load`: another engineer benchmarks on this 2-core machine. Returns the
/// load average the measurement starts at.
async fn wait_for_quiet_machine(max_load: f64, max_wait: Duration) -> String {
    let start = Instant::now();
    loop {
        let la = loadavg();
        let one: f64 = la
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if one < max_load {
            return la;
        }
        if start.elapsed() >= max_wait {
            eprintln!("  load {la} still >= {max_load} after {max_wait:?}; measuring anyway");
            return la;
        }
        eprintln!("  load {la}: 1-min >= {max_load}, waiting 20 s");
        tokio::time::sleep(Duration::from_secs(20)).await;
    }
}

/// The custom output middleware `item_to_payload`: the MQTT payload becomes the
/// stream field `item` (the v1 item string as the plugin wrote it) and the message
/// carries no other metadata. Nothing else about the publisher changes.
#[derive(Debug)]
struct ItemToPayload;

#[async_trait]
impl CustomMiddlewareFactory for ItemToPayload {
    async fn apply_publisher(
        &self,
        publisher: Box<dyn MessagePublisher>,
        _route_name: &str,
        _config: &serde_json::Value,
    ) -> mq_bridge::anyhow::Result<Box<dyn MessagePublisher>> {
        Ok(Box::new(ItemToPayloadPublisher { inner: publisher }))
    }
}

struct ItemToPayloadPublisher {
    inner: Box<dyn MessagePublisher>,
}

fn item_to_payload(mut msg: CanonicalMessage) -> CanonicalMessage {
    if let Some(item) = msg.metadata.remove("item") {
        msg.payload = item.into();
    }
    msg.metadata.clear();
    msg
}

#[async_trait]
impl MessagePublisher for ItemToPayloadPublisher {
    async fn send(&self, message: CanonicalMessage) -> Result<Sent, PublisherError> {
        self.inner.send(item_to_payload(message)).await
    }

    async fn send_batch(
        &self,
        messages: Vec<CanonicalMessage>,
    ) -> Result<SentBatch, PublisherError> {
        let messages = messages.into_iter().map(item_to_payload).collect();
        self.inner.send_batch(messages).await
    }

    async fn flush(&self) -> mq_bridge::anyhow::Result<()> {
        self.inner.flush().await
    }

    async fn status(&self) -> EndpointStatus {
        self.inner.status().await
    }

    fn requires_ordered_publish(&self) -> bool {
        self.inner.requires_ordered_publish()
    }

    fn deferred_commit_interval(&self) -> Option<Duration> {
        self.inner.deferred_commit_interval()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// mq-bridge's tunables for this comparison (env overrides, defaults = its own
/// defaults except the in-flight window, set to the nemo bridge's 256).
#[derive(Debug, Clone, Copy)]
struct MqbTuning {
    window: usize,
    batch_size: usize,
    concurrency: usize,
}

/// The mq-bridge route: Redis stream (consumer group, from the start of the stream)
/// -> MQTT 3.1.1 at QoS 1. mq-bridge acks (`XACK`) a batch only after the output
/// reported it sent, and its MQTT output reports a QoS 1 batch sent only after every
/// PUBACK arrived (its only mode for QoS >= 1; nacked or unconfirmed entries stay
/// pending and are reclaimed): at-least-once.
fn mqb_route(redis: &RedisServer, broker: &Mosquitto, client_id: &str, t: MqbTuning) -> Res<Route> {
    let config = serde_json::json!({
        "input": {
            "redis_streams": {
                "url": redis.url(),
                "stream": KEY,
                "group": MQB_GROUP,
                "read_from_start": true
            }
        },
        "output": {
            "middlewares": [ { "custom": { "name": "item_to_payload", "config": {} } } ],
            "mqtt": {
                "url": broker.url(),
                "topic": MQB_TOPIC,
                "client_id": client_id,
                "qos": 1,
                "protocol": "v3",
                "max_inflight": t.window
            }
        },
        "batch_size": t.batch_size,
        "concurrency": t.concurrency,
        "required_delivery": "at_least_once"
    });
    Ok(serde_json::from_value(config)?)
}

/// A QoS 1 `mosquitto_sub` on `nemo/#` that exits after `n` messages.
struct Subscriber {
    child: Child,
}

impl Subscriber {
    fn start(broker: &Mosquitto, id: &str, n: usize, capture: bool) -> Res<Self> {
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
            .args(["-i", id, "-q", "1", "-t", "nemo/#", "-C", &n.to_string()])
            .stdout(if capture {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::null());
        let child = cmd.spawn()?;
        // Ready once the broker logged the connection; the SUBSCRIBE follows at once.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !broker.log().contains(&format!(" as {id} ")) {
            if Instant::now() > deadline {
                return Err(format!("subscriber {id} did not connect").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        Ok(Self { child })
    }

    /// Whether it has received all its messages (and exited cleanly).
    fn done(&mut self) -> Res<bool> {
        match self.child.try_wait()? {
            None => Ok(false),
            Some(s) if s.success() => Ok(true),
            Some(s) => Err(format!("mosquitto_sub failed: {s}").into()),
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // Our own child, by its handle (only if it is still running).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// When a drain ended, and when the group was first seen to have read an entry
/// (i.e. the bridge's start-up, to within the 50 ms poll), both from the bridge's start.
#[derive(Debug, Clone, Copy)]
struct Drained {
    wall_s: f64,
    first_read_s: f64,
}

/// CPU seconds used so far by this process, Redis and the broker.
#[derive(Debug, Clone, Copy)]
struct CpuSnap {
    own: f64,
    redis: f64,
    broker: f64,
}

impl CpuSnap {
    fn take(redis: &RedisServer, broker: &Mosquitto) -> Self {
        let pid = |p: Option<u32>| p.map(nemo_testkit::cpu_seconds).unwrap_or(0.0);
        Self {
            own: nemo_testkit::cpu_seconds(std::process::id()),
            redis: pid(redis.pid()),
            broker: pid(broker.pid()),
        }
    }
}

/// Poll until `group` has read all `n` entries with none pending (and the
/// subscriber, if any, received all `n`); returns the elapsed time since `t0`.
async fn wait_drained(
    redis: &RedisServer,
    group: &str,
    n: usize,
    mut sub: Option<&mut Subscriber>,
    t0: Instant,
    timeout: Duration,
) -> Res<Drained> {
    let mut last = None;
    let mut first_read = None;
    loop {
        let state = group_state(redis, group)?;
        if first_read.is_none() && state.is_some_and(|s| s.entries_read > 0) {
            first_read = Some(t0.elapsed().as_secs_f64());
        }
        let acked = state.is_some_and(|s| {
            s.pending == 0 && s.entries_read >= n as u64 && s.lag.is_none_or(|l| l == 0)
        });
        let received = match sub.as_deref_mut() {
            Some(s) => s.done()?,
            None => true,
        };
        if acked && received {
            let wall_s = t0.elapsed().as_secs_f64();
            return Ok(Drained {
                wall_s,
                first_read_s: first_read.unwrap_or(wall_s),
            });
        }
        last = state.or(last);
        if t0.elapsed() > timeout {
            return Err(format!(
                "{group}: not drained within {timeout:?} (last state {last:?}, subscriber done: {received})"
            )
            .into());
        }
        tokio::time::sleep(POLL).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    MqBridge,
    Nemo,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::MqBridge => "mq-bridge 1.3.0",
            Which::Nemo => "nemo bridge",
        }
    }
}

/// One row of the result table.
struct Measure {
    round: usize,
    which: Which,
    subscriber: bool,
    load: String,
    run: RunOutcome,
}

/// What one drain measured (CPU in seconds over the drain).
#[derive(Debug, Clone, Copy)]
struct RunOutcome {
    drained: Drained,
    /// The bridge's CPU (mq-bridge: this whole process).
    bridge_cpu: f64,
    /// This process's CPU while it only polled (nemo runs; `None` for mq-bridge).
    harness_cpu: Option<f64>,
    redis_cpu: f64,
    broker_cpu: f64,
}

struct Ctx<'a> {
    redis: &'a RedisServer,
    broker: &'a Mosquitto,
    dir: &'a Path,
    nemo_bin: &'a Path,
    n: usize,
    tuning: MqbTuning,
    timeout: Duration,
}

/// One drain by mq-bridge, in this process.
async fn run_mq_bridge(ctx: &Ctx<'_>, tag: &str, sub: Option<&mut Subscriber>) -> Res<RunOutcome> {
    let route = mqb_route(
        ctx.redis,
        ctx.broker,
        &format!("peer-mqb-{tag}"),
        ctx.tuning,
    )?;
    let cpu0 = CpuSnap::take(ctx.redis, ctx.broker);
    let t0 = Instant::now();
    let handle = route.run(&format!("peer-{tag}")).await?;
    let drained = wait_drained(ctx.redis, MQB_GROUP, ctx.n, sub, t0, ctx.timeout).await;
    let cpu1 = CpuSnap::take(ctx.redis, ctx.broker);
    handle.stop().await;
    handle.join().await?;
    Ok(RunOutcome {
        drained: drained?,
        bridge_cpu: cpu1.own - cpu0.own,
        harness_cpu: None,
        redis_cpu: cpu1.redis - cpu0.redis,
        broker_cpu: cpu1.broker - cpu0.broker,
    })
}

/// One drain by the nemo `bridge` process (config as in `benches/e2e.rs`).
async fn run_nemo(ctx: &Ctx<'_>, tag: &str, sub: Option<&mut Subscriber>) -> Res<RunOutcome> {
    let http = nemo_testkit::free_port()?;
    let config = ctx.dir.join(format!("bridge-{tag}.toml"));
    std::fs::write(
        &config,
        format!(
            "[redis]\nurl = \"{}\"\nmode = \"stream\"\nkey = \"{KEY}\"\n\n\
             [mqtt]\nurl = \"{}\"\nclient_id = \"peer-nemo-{tag}\"\nqos = 1\ninflight = 256\n\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n",
            ctx.redis.url(),
            ctx.broker.url()
        ),
    )?;
    let log = std::fs::File::create(ctx.dir.join(format!("bridge-{tag}.log")))?;
    let cpu0 = CpuSnap::take(ctx.redis, ctx.broker);
    let t0 = Instant::now();
    let mut child = Command::new(ctx.nemo_bin)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let pid = child.id().to_string();
    let drained = wait_drained(ctx.redis, NEMO_GROUP, ctx.n, sub, t0, ctx.timeout).await;
    let bridge_cpu = nemo_testkit::cpu_seconds(child.id());
    let cpu1 = CpuSnap::take(ctx.redis, ctx.broker);
    // Stop it gracefully (SIGTERM to our own child's pid), then kill if it lingers.
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait()?.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if child.try_wait()?.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(RunOutcome {
        drained: drained?,
        bridge_cpu,
        harness_cpu: Some(cpu1.own - cpu0.own),
        redis_cpu: cpu1.redis - cpu0.redis,
        broker_cpu: cpu1.broker - cpu0.broker,
    })
}

/// Before measuring: 3 items through mq-bridge, captured by a subscriber, must
/// arrive with the v1 item string as their MQTT payload.
async fn check_mqb_payload(ctx: &Ctx<'_>) -> Res<()> {
    reset_stream(ctx.redis, 3)?;
    let mut sub = Subscriber::start(ctx.broker, "peer-check", 3, true)?;
    let small = Ctx { n: 3, ..*ctx };
    run_mq_bridge(&small, "check", Some(&mut sub)).await?;
    let mut out = String::new();
    if let Some(mut stdout) = sub.child.stdout.take() {
        std::io::Read::read_to_string(&mut stdout, &mut out)?;
    }
    let want: Vec<String> = (0..3).map(|i| item(i, 0)).collect();
    let got: Vec<&str> = out.lines().collect();
    if got != want {
        return Err(format!("mq-bridge payloads differ from the items: {got:?}").into());
    }
    eprintln!("payload check: OK, mq-bridge publishes the stream field `item` verbatim (3/3)");
    Ok(())
}

/// CPU seconds over `n` events, in µs per event.
fn per_event(cpu_s: f64, n: usize) -> f64 {
    cpu_s * 1e6 / n as f64
}

fn header() -> String {
    format!(
        "{:<5} {:<16} {:<4} {:>7} {:>9} {:>8} {:>10} {:>8} {:>8} {:>8}  {}",
        "round",
        "bridge",
        "sub",
        "wall s",
        "events/s",
        "start s",
        "CPU us/ev",
        "harness",
        "redis",
        "broker",
        "load avg at run"
    )
}

/// A table row: wall time and rate from the bridge's start; `start s` = when its
/// group had first read an entry; CPU columns in µs per event.
fn row(m: &Measure, n: usize) -> String {
    let r = &m.run;
    format!(
        "{:<5} {:<16} {:<4} {:>7.2} {:>9.0} {:>8.2} {:>10.1} {:>8} {:>8.1} {:>8.1}  {}",
        m.round,
        m.which.name(),
        if m.subscriber { "yes" } else { "no" },
        r.drained.wall_s,
        n as f64 / r.drained.wall_s,
        r.drained.first_read_s,
        per_event(r.bridge_cpu, n),
        r.harness_cpu
            .map(|h| format!("{:.1}", per_event(h, n)))
            .unwrap_or_else(|| "-".into()),
        per_event(r.redis_cpu, n),
        per_event(r.broker_cpu, n),
        m.load
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        l if l % 2 == 1 => v[l / 2],
        l => (v[l / 2 - 1] + v[l / 2]) / 2.0,
    }
}

#[tokio::main]
async fn main() -> Res<()> {
    let n = env_usize("PEER_N", 200_000);
    let rounds = env_usize("PEER_RUNS", 2);
    // PEER_SUB: "0" = without subscriber only, "1" = with only, anything else = both.
    let subs: Vec<bool> = match std::env::var("PEER_SUB").as_deref() {
        Ok("0") => vec![false],
        Ok("1") => vec![true],
        _ => vec![false, true],
    };
    let max_load = env_f64("PEER_MAX_LOAD", 1.2);
    let max_wait = Duration::from_secs(env_usize("PEER_LOAD_WAIT_S", 300) as u64);
    let tuning = MqbTuning {
        window: env_usize("PEER_WINDOW", 256),
        batch_size: env_usize("PEER_MQB_BATCH", 512),
        concurrency: env_usize("PEER_MQB_CONCURRENCY", 1),
    };
    let nemo_bin = std::env::var_os("PEER_NEMO_BRIDGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/bridge")
        });
    if !nemo_bin.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release --bin bridge` in the repo root first",
            nemo_bin.display()
        )
        .into());
    }

    let load_at_start = loadavg();
    let redis = RedisServer::start()?;
    let broker = Mosquitto::builder().persistence(false).start()?;
    let dir = std::env::temp_dir().join(format!("nemo-peer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    mq_bridge::extensions::register_middleware_factory("item_to_payload", Arc::new(ItemToPayload))?;
    eprintln!(
        "redis pid {:?} port {}, mosquitto pid {:?} port {}, nemo bridge {}",
        redis.pid(),
        redis.port(),
        broker.pid(),
        broker.port(),
        nemo_bin.display()
    );
    let ctx = Ctx {
        redis: &redis,
        broker: &broker,
        dir: &dir,
        nemo_bin: &nemo_bin,
        n,
        tuning,
        timeout: Duration::from_secs(env_usize("PEER_TIMEOUT_S", 600) as u64),
    };
    check_mqb_payload(&ctx).await?;

    let mut results: Vec<Measure> = Vec::new();
    for round in 1..=rounds {
        for &subscriber in &subs {
            // Alternate which bridge goes first, so neither always meets a warmer machine.
            let order = if round % 2 == 1 {
                [Which::MqBridge, Which::Nemo]
            } else {
                [Which::Nemo, Which::MqBridge]
            };
            for which in order {
                reset_stream(&redis, n)?;
                let load = wait_for_quiet_machine(max_load, max_wait).await;
                let tag = format!(
                    "{}-r{round}-{}",
                    if which == Which::MqBridge {
                        "mqb"
                    } else {
                        "nemo"
                    },
                    if subscriber { "sub" } else { "nosub" }
                );
                let mut sub = if subscriber {
                    Some(Subscriber::start(
                        &broker,
                        &format!("peer-sub-{tag}"),
                        n,
                        false,
                    )?)
                } else {
                    None
                };
                let run = match which {
                    Which::MqBridge => run_mq_bridge(&ctx, &tag, sub.as_mut()).await?,
                    Which::Nemo => run_nemo(&ctx, &tag, sub.as_mut()).await?,
                };
                let m = Measure {
                    round,
                    which,
                    subscriber,
                    load,
                    run,
                };
                eprintln!("  {}", row(&m, n));
                results.push(m);
            }
        }
    }

    println!();
    println!("Redis stream -> MQTT QoS 1 drain, N = {n} v1 items (~300 B), fresh stream per run");
    println!(
        "load average at start: {load_at_start}; machine: {} cores",
        num_cores()
    );
    println!(
        "mq-bridge: redis_streams (group, XACK after send) -> mqtt v3.1.1 QoS 1 (batch confirmed by PUBACKs), \
         window {}, batch {}, concurrency {}; payload = stream field `item`; topic {MQB_TOPIC}",
        tuning.window, tuning.batch_size, tuning.concurrency
    );
    println!(
        "nemo: target/release/bridge, mode = stream, qos 1, inflight 256; topic from the item"
    );
    println!();
    println!("{}", header());
    for m in &results {
        println!("{}", row(m, n));
    }
    println!();
    println!("medians:");
    for &subscriber in &subs {
        for which in [Which::MqBridge, Which::Nemo] {
            let runs: Vec<&Measure> = results
                .iter()
                .filter(|m| m.which == which && m.subscriber == subscriber)
                .collect();
            let rate = median(
                runs.iter()
                    .map(|m| n as f64 / m.run.drained.wall_s)
                    .collect(),
            );
            let cpu = median(
                runs.iter()
                    .map(|m| per_event(m.run.bridge_cpu, n))
                    .collect(),
            );
            println!(
                "  {:<16} subscriber {:<3}: {rate:>8.0} events/s, {cpu:>6.1} µs CPU/event ({} runs)",
                which.name(),
                if subscriber { "yes" } else { "no" },
                runs.len()
            );
        }
    }
    println!(
        "(mq-bridge CPU is this whole process, which includes the harness's polling: see the \
         harness column of the nemo runs)"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn num_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0)
}
