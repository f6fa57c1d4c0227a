//! Section 3 of the e2e benchmark: how long an event waits, and what an idle bridge costs.
//!
//! One bridge (list mode, the default settings but for one message per event) on the run's
//! private Redis and mosquitto, and the counting subscriber:
//!
//! 1. **steady rate**: `NEMO_BENCH_LAT_RUNS` runs (default 5) of `NEMO_BENCH_LAT_S` seconds
//!    (default 60) at 1,000 events/s, one `LPUSH` per event as the plugin does; Redis push to
//!    subscriber receive, p50/p99/p99.9/max per run, and every event over 20 ms;
//! 2. **10,000/s** for 5 s (what a burst of activity looks like from the bridge; skipped with
//!    `NEMO_BENCH_LAT_RUNS=0`);
//! 3. **bursts** (`NEMO_BENCH_BURSTS`, default 5): idle, then 2,000 events at once (pipelined
//!    `LPUSH`es), idle; per burst the time from the last push answered by Redis to the last
//!    message at the subscriber;
//! 4. **idle cost**: a ready bridge with no events for `NEMO_BENCH_IDLE_S` seconds (default
//!    60): CPU time (all threads, from `schedstat`), wake-ups (voluntary context switches),
//!    Redis commands (counted with `MONITOR`, by command), RSS;
//! 5. **first event after idle**: the latency of one event after that idle period, and of
//!    events after shorter idle gaps.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::prelude::*;
use nemo_testkit::{Mosquitto, RedisServer, bench_item as item, rss_kib, task_stats};

use super::{Bridge, Counter, KEY, Latency, Res, bridge_config, env_usize, now_ns, summarize};

/// Latency over this is a stall (the target for the maximum).
const STALL_NS: u64 = 20_000_000;

/// One steady-rate run.
pub(crate) struct Run {
    pub lat: Latency,
    /// Events pushed.
    pub pushed: usize,
    /// Events over 20 ms, and (seconds into the run, ms) of each of the first ten.
    pub stalls: usize,
    pub stall_at: Vec<(f64, f64)>,
    /// Of those, the ones during which the machine itself paused (see [`Probe`]) or the
    /// pusher was more than 5 ms late: not the bridge's doing.
    pub stalls_machine: usize,
    /// Pauses of the probe thread over 5 ms during the run: (seconds into the run, ms).
    pub machine_pauses: Vec<(f64, f64)>,
    /// The pusher's worst lateness against its schedule, ms.
    pub push_late_max_ms: f64,
    /// CPU time the hypervisor gave to other guests (`steal` in `/proc/stat`), % of the
    /// machine's CPU time during the run.
    pub steal_pct: f64,
}

/// (steal, total) jiffies of all CPUs so far, from `/proc/stat`.
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    (
        fields.get(7).copied().unwrap_or(0),
        fields.iter().take(8).sum(),
    )
}

/// The share of CPU time stolen by the hypervisor between `before` and now, in %.
fn steal_since(before: (u64, u64)) -> f64 {
    let now = cpu_jiffies();
    let total = now.1.saturating_sub(before.1).max(1);
    now.0.saturating_sub(before.0) as f64 * 100.0 / total as f64
}

/// A thread that sleeps 1 ms at a time and records every oversleep over 5 ms: pauses of the
/// machine (another process, the hypervisor) that no process under test could avoid. Like
/// `cyclictest`, so that a slow event can be told apart from a paused machine.
struct Probe {
    stop: Arc<AtomicBool>,
    pauses: Arc<Mutex<Vec<(u64, u64)>>>,
}

impl Probe {
    fn start() -> Res<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let pauses = Arc::new(Mutex::new(Vec::new()));
        let (s, p) = (stop.clone(), pauses.clone());
        std::thread::Builder::new()
            .name("jitter-probe".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    let before = now_ns() as u64;
                    std::thread::sleep(Duration::from_millis(1));
                    let slept = (now_ns() as u64).saturating_sub(before);
                    if slept > PROBE_PAUSE_NS
                        && let Ok(mut v) = p.lock()
                    {
                        v.push((before, slept));
                    }
                }
            })?;
        Ok(Probe { stop, pauses })
    }

    /// The pauses (start ns, length ns) recorded so far, and forget them.
    fn take(&self) -> Vec<(u64, u64)> {
        self.pauses
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// An oversleep of the probe over this is a pause of the machine.
const PROBE_PAUSE_NS: u64 = 5_000_000;

/// One burst of events pushed at once.
pub(crate) struct Burst {
    pub n: usize,
    /// How long the pipelined pushes took (first sent to last answered).
    pub push_ms: f64,
    /// From the last push answered by Redis to the last message at the subscriber.
    pub done_after_push_ms: f64,
    pub lat: Latency,
}

/// What an idle bridge cost.
pub(crate) struct Idle {
    pub secs: f64,
    pub cpu_ms: f64,
    /// CPU in % of a core of each 10 s window, sorted.
    pub window_pct: Vec<f64>,
    pub voluntary_per_s: f64,
    pub involuntary_per_s: f64,
    /// (thread name, CPU ms, voluntary switches/s).
    pub threads: Vec<(String, f64, f64)>,
    /// Commands the bridge sent to Redis, per second, and by command (script-internal
    /// calls not counted).
    pub redis_per_s: f64,
    pub redis_by_command: BTreeMap<String, u64>,
    pub redis_cpu_ms: f64,
    pub rss_kib: u64,
    /// CPU steal during the idle period, % (see [`Run::steal_pct`]).
    pub steal_pct: f64,
}

pub(crate) struct LatencyReport {
    pub runs: Vec<Run>,
    pub fast: Option<Latency>,
    pub bursts: Vec<Burst>,
    pub idle: Option<Idle>,
    /// Latency of the first event after the long idle period, ms.
    pub first_after_idle_ms: Option<f64>,
    /// Latencies of single events after short idle gaps (1.3 s each), ms.
    pub after_gap_ms: Vec<f64>,
    /// Redis `LATENCY LATEST` after the runs (threshold 5 ms): empty when Redis never
    /// stalled.
    pub redis_latency: String,
}

pub(crate) async fn run(
    redis: &RedisServer,
    broker: &Mosquitto,
    counter: &Counter,
    dir: &Path,
) -> Res<LatencyReport> {
    let runs_n = env_usize("NEMO_BENCH_LAT_RUNS", 5);
    let secs = env_usize("NEMO_BENCH_LAT_S", 60);
    let idle_s = env_usize("NEMO_BENCH_IDLE_S", 60);
    let rc = super::redis_client(redis).await?;
    let cfg = bridge_config(dir, redis, broker, "list", "")?;
    let bridge = Bridge::start(&cfg)?;
    bridge.wait_ready(Duration::from_secs(30)).await?;
    let mut seq = 10_000_000usize;

    // 4 and 5 first, on a fresh bridge that has seen no event (the worst case for a first one).
    let idle = if idle_s > 0 {
        eprintln!("3/5 idle cost: a ready bridge, no events, {idle_s} s");
        tokio::time::sleep(Duration::from_secs(2)).await;
        Some(idle_cost(redis, bridge.pid(), idle_s).await?)
    } else {
        None
    };
    let first_after_idle_ms = if idle.is_some() {
        Some(one_event(&rc, counter, &mut seq).await?)
    } else {
        None
    };
    let mut after_gap_ms = Vec::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        after_gap_ms.push(one_event(&rc, counter, &mut seq).await?);
    }

    let probe = Probe::start()?;
    // Redis's own record of slow events (its event loop, commands, forks) over 5 ms.
    let _ = redis.cli(&["CONFIG", "SET", "latency-monitor-threshold", "5"]);
    let mut runs = Vec::new();
    for r in 0..runs_n {
        eprintln!("3/5 latency: run {}/{runs_n}, {secs} s at 1,000/s", r + 1);
        runs.push(steady(&rc, counter, &probe, 1_000, secs, &mut seq).await?);
        let last = runs.last().map(|r: &Run| &r.lat);
        if let Some(l) = last {
            let (stalls, machine) = runs.last().map_or((0, 0), |r| (r.stalls, r.stalls_machine));
            eprintln!(
                "    p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms, {stalls} over 20 ms ({machine} while the machine paused)",
                l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms,
            );
        }
    }
    let fast = if runs_n > 0 {
        eprintln!("3/5 latency: 5 s at 10,000/s");
        Some(steady(&rc, counter, &probe, 10_000, 5, &mut seq).await?.lat)
    } else {
        None
    };

    let mut bursts = Vec::new();
    for b in 0..env_usize("NEMO_BENCH_BURSTS", 5) {
        eprintln!("3/5 burst {}/5: idle, 2,000 events at once, idle", b + 1);
        tokio::time::sleep(Duration::from_secs(3)).await;
        bursts.push(burst(&rc, counter, 2_000, &mut seq).await?);
    }
    drop(bridge);
    let redis_latency = redis
        .cli(&["LATENCY", "LATEST"])
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Ok(LatencyReport {
        redis_latency,
        runs,
        fast,
        bursts,
        idle,
        first_after_idle_ms,
        after_gap_ms,
    })
}

/// Push at a fixed rate (one `LPUSH` per event, each answered before the next) and collect
/// the latencies.
async fn steady(
    rc: &Client,
    counter: &Counter,
    probe: &Probe,
    rate: usize,
    secs: usize,
    seq: &mut usize,
) -> Res<Run> {
    counter.reset();
    let _ = probe.take();
    let jiffies = cpu_jiffies();
    let total = rate * secs;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let start_ns = now_ns() as u64;
    // (pushed ns, how late against the schedule ns) of pushes more than 5 ms late.
    let mut late = Vec::new();
    let mut late_max = Duration::ZERO;
    for i in 0..total {
        let due = start + period * i as u32;
        tokio::time::sleep_until(due).await;
        let behind = tokio::time::Instant::now().saturating_duration_since(due);
        late_max = late_max.max(behind);
        if behind > Duration::from_millis(5) {
            late.push((now_ns() as u64, behind.as_nanos() as u64));
        }
        let _: i64 = rc.lpush(KEY, item(*seq, now_ns())).await?;
        *seq += 1;
    }
    counter
        .wait_for(total as u64, Duration::from_secs(60))
        .await;
    let pauses = probe.take();
    let steal_pct = steal_since(jiffies);
    let (lat, pushed_at) = counter.samples();
    // A slow event is the machine's doing when a probe pause or a late push (which ends
    // when the push happens) overlaps the time it was on its way.
    let overlaps = |from: u64, to: u64| pauses.iter().any(|&(s, len)| s < to && s + len > from);
    let late_ends: Vec<(u64, u64)> = late.iter().map(|&(end, len)| (end - len, len)).collect();
    let overlaps_late =
        |from: u64, to: u64| late_ends.iter().any(|&(s, len)| s < to && s + len > from);
    let mut stall_at = Vec::new();
    let mut stalls = 0;
    let mut stalls_machine = 0;
    for (l, p) in lat.iter().zip(&pushed_at) {
        if *l > STALL_NS {
            stalls += 1;
            if overlaps(*p, p + l) || overlaps_late(*p, p + l) {
                stalls_machine += 1;
            }
            if stall_at.len() < 10 {
                stall_at.push((p.saturating_sub(start_ns) as f64 / 1e9, *l as f64 / 1e6));
            }
        }
    }
    if std::env::var_os("NEMO_BENCH_VERBOSE").is_some() {
        // Pushed time and latency in arrival order, for looking at stalls.
        let path = std::env::temp_dir().join(format!("nemo-bench-latency-{rate}.txt"));
        let text: Vec<String> = lat
            .iter()
            .zip(&pushed_at)
            .map(|(l, p)| format!("{p} {l}"))
            .collect();
        let _ = std::fs::write(&path, text.join("\n"));
        eprintln!(
            "    pushed_ns latency_ns at {rate}/s, arrival order: {}",
            path.display()
        );
    }
    Ok(Run {
        lat: summarize(rate, lat),
        pushed: total,
        stalls,
        stall_at,
        stalls_machine,
        machine_pauses: pauses
            .iter()
            .map(|&(s, len)| (s.saturating_sub(start_ns) as f64 / 1e9, len as f64 / 1e6))
            .collect(),
        push_late_max_ms: late_max.as_secs_f64() * 1e3,
        steal_pct,
    })
}

/// One event into an idle bridge; its latency in ms.
async fn one_event(rc: &Client, counter: &Counter, seq: &mut usize) -> Res<f64> {
    counter.reset();
    let _: i64 = rc.lpush(KEY, item(*seq, now_ns())).await?;
    *seq += 1;
    if !counter.wait_for(1, Duration::from_secs(10)).await {
        return Err("a single event was not delivered within 10 s".into());
    }
    let (lat, _) = counter.samples();
    Ok(lat.first().map_or(f64::NAN, |ns| *ns as f64 / 1e6))
}

/// `n` events pushed at once (pipelined, each its own `LPUSH`).
async fn burst(rc: &Client, counter: &Counter, n: usize, seq: &mut usize) -> Res<Burst> {
    counter.reset();
    let pipeline = rc.pipeline();
    let first = now_ns();
    for _ in 0..n {
        let _: () = pipeline.lpush(KEY, item(*seq, now_ns())).await?;
        *seq += 1;
    }
    let _: Vec<Value> = pipeline.all().await?;
    let pushed = now_ns();
    if !counter.wait_for(n as u64, Duration::from_secs(30)).await {
        return Err(format!("burst: {} of {n} delivered within 30 s", counter.count()).into());
    }
    let last = counter.last_ns.load(std::sync::atomic::Ordering::Relaxed) as u128;
    let (lat, _) = counter.samples();
    Ok(Burst {
        n,
        push_ms: (pushed - first) as f64 / 1e6,
        done_after_push_ms: last.saturating_sub(pushed) as f64 / 1e6,
        lat: summarize(n, lat),
    })
}

/// Length of one window of the idle measurement, seconds.
const IDLE_WINDOW_S: usize = 10;

/// CPU, wake-ups, Redis commands and memory of the bridge `pid` over `secs` without events.
async fn idle_cost(redis: &RedisServer, pid: u32, secs: usize) -> Res<Idle> {
    let monitor_out = tempfile::NamedTempFile::new()?;
    let mut monitor = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "monitor"])
        .stdout(Stdio::from(monitor_out.reopen()?))
        .stderr(Stdio::null())
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let redis_pid = redis.pid().unwrap_or(0);
    let redis_before = task_stats(redis_pid).unwrap_or_default();
    let jiffies = cpu_jiffies();
    let before = task_stats(pid).ok_or("cannot read the bridge's /proc entries")?;
    let t0 = std::time::Instant::now();
    // In windows of 10 s: a shared machine slows every wake-up now and then (the same idle
    // bridge measured 0.03 % and 0.07 % of a core a minute apart), so the median window is
    // reported next to the whole.
    let mut windows = Vec::new();
    let mut last = before.clone();
    let mut last_t = t0;
    for _ in 0..secs.div_ceil(IDLE_WINDOW_S) {
        tokio::time::sleep(Duration::from_secs(IDLE_WINDOW_S as u64)).await;
        let now = task_stats(pid).ok_or("cannot read the bridge's /proc entries")?;
        let dt = last_t.elapsed().as_secs_f64();
        windows.push(now.since(&last).cpu_ns as f64 / 1e6 / (dt * 10.0));
        last = now;
        last_t = std::time::Instant::now();
    }
    let after = last;
    let elapsed = t0.elapsed().as_secs_f64();
    let redis_spent = task_stats(redis_pid)
        .unwrap_or_default()
        .since(&redis_before);
    let _ = monitor.kill();
    let _ = monitor.wait();
    let spent = after.since(&before);
    windows.sort_by(f64::total_cmp);
    // MONITOR lines: `<time> [<db> <client addr>] "CMD" ...`; script-internal calls show
    // `[<db> lua]`. The first line is MONITOR's own OK.
    let text = std::fs::read_to_string(monitor_out.path())?;
    let mut by_command: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines() {
        let Some((head, rest)) = line.split_once("] ") else {
            continue;
        };
        if head.ends_with(" lua") {
            continue;
        }
        let cmd = rest.split('"').nth(1).unwrap_or("?").to_ascii_uppercase();
        *by_command.entry(cmd).or_default() += 1;
    }
    let total: u64 = by_command.values().sum();
    Ok(Idle {
        secs: elapsed,
        cpu_ms: spent.cpu_ns as f64 / 1e6,
        window_pct: windows,
        voluntary_per_s: spent.voluntary as f64 / elapsed,
        involuntary_per_s: spent.involuntary as f64 / elapsed,
        threads: spent
            .threads
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    t.cpu_ns as f64 / 1e6,
                    t.voluntary as f64 / elapsed,
                )
            })
            .collect(),
        redis_per_s: total as f64 / elapsed,
        redis_by_command: by_command,
        redis_cpu_ms: redis_spent.cpu_ns as f64 / 1e6,
        rss_kib: rss_kib(pid).map_or(0, |(rss, _)| rss),
        steal_pct: steal_since(jiffies),
    })
}

impl LatencyReport {
    pub(crate) fn rows(&self) -> String {
        let mut t = String::new();
        for (i, r) in self.runs.iter().enumerate() {
            let l = &r.lat;
            let _ = writeln!(
                t,
                "{:<44} {:>14}",
                format!(
                    "latency 1,000/s run {} (n={}/{}) p50/p99/p99.9/max",
                    i + 1,
                    l.n,
                    r.pushed
                ),
                format!(
                    "{:.2}/{:.2}/{:.2}/{:.2} ms",
                    l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
                )
            );
            if r.stalls > 0 {
                let at: Vec<String> = r
                    .stall_at
                    .iter()
                    .map(|(s, ms)| format!("{ms:.0} ms at {s:.1} s"))
                    .collect();
                let _ = writeln!(
                    t,
                    "    {} events over 20 ms ({} while the machine paused): {}",
                    r.stalls,
                    r.stalls_machine,
                    at.join(", ")
                );
            }
            let worst = r.machine_pauses.iter().map(|p| p.1).fold(0.0, f64::max);
            let _ = writeln!(
                t,
                "    machine paused {} times over 5 ms (worst {worst:.1} ms); pusher late by up to {:.1} ms; CPU steal {:.1}%",
                r.machine_pauses.len(),
                r.push_late_max_ms,
                r.steal_pct
            );
        }
        if let Some(l) = &self.fast {
            let _ = writeln!(
                t,
                "{:<44} {:>14}",
                format!("latency 10,000/s (n={}) p50/p99/p99.9/max", l.n),
                format!(
                    "{:.2}/{:.2}/{:.2}/{:.2} ms",
                    l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
                )
            );
        }
        for (i, b) in self.bursts.iter().enumerate() {
            let _ = writeln!(
                t,
                "{:<44} {:>14}",
                format!(
                    "burst {} of {}: pushed in / done after last push",
                    i + 1,
                    b.n
                ),
                format!("{:.1}/{:.1} ms", b.push_ms, b.done_after_push_ms)
            );
        }
        if let Some(i) = &self.idle {
            let _ = writeln!(
                t,
                "{:<44} {:>14}",
                format!(
                    "idle {:.0} s (CPU steal {:.1}%): CPU, % of a core",
                    i.secs, i.steal_pct
                ),
                format!("{:.1} ms ({:.3}%)", i.cpu_ms, i.cpu_ms / (i.secs * 10.0))
            );
            let w = &i.window_pct;
            if !w.is_empty() {
                let _ = writeln!(
                    t,
                    "{:<44} {:>14}",
                    format!("idle: 10 s windows (n={}) min/median/max", w.len()),
                    format!("{:.3}/{:.3}/{:.3}%", w[0], w[w.len() / 2], w[w.len() - 1])
                );
            }
            let _ = writeln!(
                t,
                "{:<44} {:>14}",
                "idle: wake-ups/s (voluntary) / preempted/s",
                format!("{:.1}/{:.1}", i.voluntary_per_s, i.involuntary_per_s)
            );
            let threads: Vec<String> = i
                .threads
                .iter()
                .map(|(n, ms, w)| format!("{n} {ms:.1} ms {w:.1}/s"))
                .collect();
            let _ = writeln!(t, "    threads: {}", threads.join("; "));
            let _ = writeln!(
                t,
                "{:<44} {:>14}",
                "idle: Redis commands/s",
                format!("{:.2}", i.redis_per_s)
            );
            let cmds: Vec<String> = i
                .redis_by_command
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            let _ = writeln!(
                t,
                "    by command: {}; Redis CPU {:.1} ms",
                cmds.join(", "),
                i.redis_cpu_ms
            );
            let _ = writeln!(
                t,
                "{:<44} {:>11.1} MB",
                "idle: RSS",
                i.rss_kib as f64 / 1024.0
            );
        }
        if let Some(ms) = self.first_after_idle_ms {
            let _ = writeln!(
                t,
                "{:<44} {:>11.2} ms",
                "first event after the idle period", ms
            );
        }
        let _ = writeln!(
            t,
            "{:<44} {:>14}",
            "Redis LATENCY LATEST (events over 5 ms)",
            if self.redis_latency.is_empty() {
                "none"
            } else {
                &self.redis_latency
            }
        );
        if !self.after_gap_ms.is_empty() {
            let max = self.after_gap_ms.iter().copied().fold(0.0, f64::max);
            let mut sorted = self.after_gap_ms.clone();
            sorted.sort_by(f64::total_cmp);
            let _ = writeln!(
                t,
                "{:<44} {:>14}",
                format!("one event after 1.3 s idle (n={}) p50/max", sorted.len()),
                format!("{:.2}/{:.2} ms", sorted[sorted.len() / 2], max)
            );
        }
        t
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        let lat = |l: &Latency| serde_json::json!({"rate": l.rate, "n": l.n, "p50": l.p50_ms, "p99": l.p99_ms, "p999": l.p999_ms, "max": l.max_ms});
        serde_json::json!({
            "runs_1k": self.runs.iter().map(|r| serde_json::json!({
                "pushed": r.pushed,
                "ms": lat(&r.lat),
                "over_20ms": r.stalls,
                "over_20ms_while_machine_paused": r.stalls_machine,
                "over_20ms_at_s_ms": r.stall_at,
                "machine_pauses_over_5ms_at_s_ms": r.machine_pauses,
                "pusher_late_max_ms": r.push_late_max_ms,
                "cpu_steal_pct": r.steal_pct,
            })).collect::<Vec<_>>(),
            "rate_10k_ms": self.fast.as_ref().map(lat),
            "bursts": self.bursts.iter().map(|b| serde_json::json!({
                "n": b.n,
                "push_ms": b.push_ms,
                "done_after_last_push_ms": b.done_after_push_ms,
                "ms": lat(&b.lat),
            })).collect::<Vec<_>>(),
            "idle": self.idle.as_ref().map(|i| serde_json::json!({
                "secs": i.secs,
                "cpu_ms": i.cpu_ms,
                "cpu_pct_of_core": i.cpu_ms / (i.secs * 10.0),
                "cpu_pct_of_core_10s_windows_sorted": i.window_pct,
                "wakeups_per_s": i.voluntary_per_s,
                "preempted_per_s": i.involuntary_per_s,
                "threads": i.threads.iter().map(|(n, ms, w)| serde_json::json!({"name": n, "cpu_ms": ms, "wakeups_per_s": w})).collect::<Vec<_>>(),
                "redis_commands_per_s": i.redis_per_s,
                "redis_commands": i.redis_by_command,
                "redis_cpu_ms": i.redis_cpu_ms,
                "rss_mb": i.rss_kib as f64 / 1024.0,
                "cpu_steal_pct": i.steal_pct,
            })),
            "first_after_idle_ms": self.first_after_idle_ms,
            "after_1_3s_gap_ms": self.after_gap_ms,
            "redis_latency_latest": self.redis_latency,
        })
    }
}
