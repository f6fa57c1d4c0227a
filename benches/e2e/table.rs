//! Section 6 of the e2e benchmark: the queue of plugin 2.x (`[nemo] source = "database"`).
//!
//! A private PostgreSQL (nemo-testkit, switched to `fsync = on` as a real NEMO server runs) with
//! the plugin's exact DDL, and the run's mosquitto and counting subscriber:
//!
//! 1. **drain** of a `NEMO_BENCH_TABLE_N`-row backlog (default 10,000), 3 rounds, fresh rows
//!    each: from the bridge's start to the last message at the subscriber and every row
//!    processed;
//! 2. the same backlog drained by **the plugin's own 2.x bridge** (Python), when
//!    `benches/peers/plugin2/run.sh setup` has made its venv (`NEMO_BENCH_PLUGIN2=1` makes it);
//! 3. **memory** under a `NEMO_BENCH_TABLE_BACKLOG`-row backlog (default 1,000,000; 0 skips):
//!    RSS sampled while it drains;
//! 4. **latency** from INSERT + NOTIFY (the plugin's two statements) to the subscriber, at
//!    100 events/s for `NEMO_BENCH_TABLE_LATENCY_S` seconds (default 60).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nemo_testkit::{Mosquitto, PostgresServer, cpu_seconds, fixtures_dir, rss_kib};
use sqlx::Connection as _;

use super::{Bridge, BridgeConfig, Counter, Latency, Res, env_usize, now_ns, summarize};
use std::fmt::Write as _;

/// What section 6 measured.
pub(crate) struct TableReport {
    pub n: usize,
    /// Events/s of each round (start of the process to the last message).
    pub drain_per_s: Vec<f64>,
    pub drain_cpu_us: f64,
    pub drain_peak_rss_kib: u64,
    /// The plugin's own bridge: events/s per round and its peak RSS.
    pub plugin_per_s: Option<Vec<f64>>,
    pub plugin_peak_rss_kib: Option<u64>,
    pub plugin_error: Option<String>,
    pub backlog: usize,
    pub backlog_per_s: Option<f64>,
    pub backlog_rss_kib: Vec<u64>,
    pub backlog_peak_rss_kib: Option<u64>,
    /// `fsync` and `synchronous_commit` of the server.
    pub durability: String,
    /// From before the producer's INSERT.
    pub latency: Latency,
    /// From the producer's NOTIFY returned (the row committed and announced).
    pub latency_after_notify: Latency,
}

fn payload(seq: usize, pushed_ns: u128) -> String {
    let tool = [1, 7, 12, 23, 42][seq % 5];
    format!(
        "{{\"event\": \"tool_enabled\", \"tool_id\": {tool}, \"tool_name\": \"Zeiss Supra 55 SEM\", \
         \"usage_id\": {seq}, \"user_name\": \"Jane Doe\", \"start_time\": \"2025-10-16T14:02:32.944572+00:00\", \
         \"pushed_ns\": {pushed_ns}}}"
    )
}

/// `n` unprocessed rows, inserted in one statement (the backlog of a bridge that was down).
fn preload(pg: &PostgresServer, n: usize) -> Res<()> {
    pg.psql(&format!(
        "TRUNCATE nemo_mqtt_mqtt_eventqueue RESTART IDENTITY; \
         INSERT INTO nemo_mqtt_mqtt_eventqueue (topic, payload, qos, retain, processed, created_at) \
         SELECT 'nemo/tools/' || (ARRAY[1,7,12,23,42])[s % 5 + 1] || '/enabled', \
         '{{\"event\": \"tool_enabled\", \"tool_id\": ' || (ARRAY[1,7,12,23,42])[s % 5 + 1] || \
         ', \"tool_name\": \"Zeiss Supra 55 SEM\", \"usage_id\": ' || s || \
         ', \"user_name\": \"Jane Doe\", \"start_time\": \"2025-10-16T14:02:32.944572+00:00\", \"pushed_ns\": 0}}', \
         1, false, false, now() FROM generate_series(0, {}) s; ANALYZE nemo_mqtt_mqtt_eventqueue",
        n.saturating_sub(1)
    ))
    .map_err(|e| e.to_string())?;
    Ok(())
}

fn unprocessed(pg: &PostgresServer) -> Res<usize> {
    let out = pg
        .psql("SELECT count(*) FROM nemo_mqtt_mqtt_eventqueue WHERE NOT processed")
        .map_err(|e| e.to_string())?;
    Ok(out.trim().parse()?)
}

fn config(dir: &Path, pg: &PostgresServer, broker: &Mosquitto, tag: &str) -> Res<BridgeConfig> {
    let http = nemo_testkit::free_port()?;
    let path = dir.join(format!("bridge-table-{tag}.toml"));
    std::fs::write(
        &path,
        format!(
            "[nemo]\nsource = \"database\"\ndatabase_url = \"{}\"\n\n\
             [mqtt]\nurl = \"{}\"\nclient_id = \"bench-bridge-table\"\nqos = 1\ninflight = {}\n\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n\n\
             # one message per event: the drains count them\n[topics]\nstate_topics = false\n",
            pg.url(),
            broker.url(),
            super::WINDOW
        ),
    )?;
    Ok(BridgeConfig {
        path,
        http_port: http,
        log: dir.join(format!("bridge-table-{tag}.log")),
    })
}

struct Drained {
    per_s: f64,
    cpu_s: f64,
    peak_rss_kib: u64,
    samples_kib: Vec<u64>,
}

/// Start `start()` (the process to measure) on a preloaded table of `n` rows; wait for `n`
/// messages and every row processed.
async fn drain_with(
    pg: &PostgresServer,
    counter: &Counter,
    n: usize,
    start: impl FnOnce() -> Res<Child>,
) -> Res<Drained> {
    counter.reset();
    let t0 = Instant::now();
    let mut child = start()?;
    let pid = child.id();
    let mut samples = Vec::new();
    let deadline = t0 + Duration::from_secs(1_800);
    loop {
        if counter.count() >= n as u64 && unprocessed(pg)? == 0 {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the bridge exited ({status}) at {}/{n}", counter.count()).into());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("drain timed out at {}/{n}", counter.count()).into());
        }
        samples.push(rss_kib(pid).unwrap_or_default().0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = counter.last_ns.load(std::sync::atomic::Ordering::Relaxed) as u128;
    let started_ns = now_ns() - t0.elapsed().as_nanos();
    let wall = (last.saturating_sub(started_ns)) as f64 / 1e9;
    let (_, hwm) = rss_kib(pid).unwrap_or_default();
    let cpu_s = cpu_seconds(pid);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let stop = Instant::now();
    while stop.elapsed() < Duration::from_secs(15) {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(Drained {
        per_s: if wall > 0.0 { n as f64 / wall } else { 0.0 },
        cpu_s,
        peak_rss_kib: hwm,
        samples_kib: samples,
    })
}

fn plugin_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peers/plugin2/run.sh")
}

/// The plugin's own bridge, if its venv exists (made now when `NEMO_BENCH_PLUGIN2=1`).
fn plugin_available() -> Result<bool, String> {
    let script = plugin_script();
    if !script.exists() {
        return Ok(false);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/peers/plugin2-venv");
    if !venv.exists() {
        if std::env::var_os("NEMO_BENCH_PLUGIN2").is_none() {
            return Ok(false);
        }
        let ok = Command::new("bash")
            .arg(&script)
            .arg("setup")
            .status()
            .map_err(|e| e.to_string())?;
        if !ok.success() {
            return Err(format!("{} setup failed", script.display()));
        }
    }
    Ok(true)
}

fn plugin_bridge(pg: &PostgresServer, broker: &Mosquitto, log: &Path) -> Res<Child> {
    let log = std::fs::File::create(log)?;
    Ok(Command::new("bash")
        .arg(plugin_script())
        .arg("bridge")
        .arg(pg.url())
        .arg("127.0.0.1")
        .arg(broker.port().to_string())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

/// INSERT + NOTIFY at `rate`/s into a running bridge; latency to the subscriber.
async fn latency(
    pg: &PostgresServer,
    counter: &Counter,
    rate: usize,
    secs: usize,
) -> Res<(Latency, Latency)> {
    let mut conn = sqlx::postgres::PgConnection::connect(&pg.url()).await?;
    counter.reset();
    let total = rate * secs;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    // Per event: how long the producer's two statements took (INSERT, then pg_notify, each
    // committed), to tell the database's share from the bridge's.
    let mut commit_ns = Vec::with_capacity(total);
    let start = tokio::time::Instant::now();
    for i in 0..total {
        tokio::time::sleep_until(start + period * i as u32).await;
        let pushed = now_ns();
        let id: i32 = sqlx::query_scalar(
            "INSERT INTO nemo_mqtt_mqtt_eventqueue (topic, payload, qos, retain, processed, created_at) \
             VALUES ($1, $2, 1, false, false, now()) RETURNING id",
        )
        .bind("nemo/tools/1/enabled")
        .bind(payload(i, pushed))
        .fetch_one(&mut conn)
        .await?;
        sqlx::query("SELECT pg_notify('nemo_mqtt_events', $1)")
            .bind(id.to_string())
            .execute(&mut conn)
            .await?;
        commit_ns.push((now_ns() - pushed) as u64);
    }
    counter
        .wait_for(total as u64, Duration::from_secs(60))
        .await;
    let lat = counter
        .latencies
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    // One bridge publishes in row order: the k-th arrival is the k-th row.
    let after_notify: Vec<u64> = if lat.len() == commit_ns.len() {
        lat.iter()
            .zip(&commit_ns)
            .map(|(l, c)| l.saturating_sub(*c))
            .collect()
    } else {
        Vec::new()
    };
    Ok((summarize(rate, lat), summarize(rate, after_notify)))
}

pub(crate) async fn run(broker: &Mosquitto, counter: &Counter, dir: &Path) -> Res<TableReport> {
    let n = env_usize("NEMO_BENCH_TABLE_N", 10_000);
    let backlog = env_usize("NEMO_BENCH_TABLE_BACKLOG", 1_000_000);
    let latency_s = env_usize("NEMO_BENCH_TABLE_LATENCY_S", 60);
    // A real NEMO server syncs its commits: so does this one (the test harness's default is
    // fsync = off).
    let pg = PostgresServer::start_with(&["fsync=on"]).map_err(|e| e.to_string())?;
    pg.psql_file(fixtures_dir().join("nemo-plugin-schema/v2-postgresql.sql"))
        .map_err(|e| e.to_string())?;
    let durability = pg
        .psql("SELECT current_setting('fsync') || ', synchronous_commit ' || current_setting('synchronous_commit')")
        .map_err(|e| e.to_string())?;
    eprintln!("6/6 table: PostgreSQL fsync {}", durability.trim());
    let cfg = config(dir, &pg, broker, "drain")?;

    let mut drain_per_s = Vec::new();
    let (mut cpu, mut peak) = (0.0, 0);
    for round in 1..=3 {
        eprintln!("6/6 table: drain of {n} rows, round {round}/3 (this bridge)");
        preload(&pg, n)?;
        let d = drain_with(&pg, counter, n, || super::spawn_bridge(&cfg)).await?;
        drain_per_s.push(d.per_s);
        cpu += d.cpu_s;
        peak = peak.max(d.peak_rss_kib);
    }

    let (mut plugin_per_s, mut plugin_peak, mut plugin_error) = (None, None, None);
    match plugin_available() {
        Ok(true) => {
            let mut rates = Vec::new();
            let mut hwm = 0;
            for round in 1..=3 {
                eprintln!("6/6 table: drain of {n} rows, round {round}/3 (the plugin's bridge)");
                preload(&pg, n)?;
                let log = dir.join(format!("plugin2-{round}.log"));
                match drain_with(&pg, counter, n, || plugin_bridge(&pg, broker, &log)).await {
                    Ok(d) => {
                        rates.push(d.per_s);
                        hwm = hwm.max(d.peak_rss_kib);
                    }
                    Err(e) => {
                        let tail = std::fs::read_to_string(&log).unwrap_or_default();
                        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                        plugin_error = Some(format!("{e}; log: {}", tail.join(" | ")));
                        break;
                    }
                }
            }
            if !rates.is_empty() {
                plugin_per_s = Some(rates);
                plugin_peak = Some(hwm);
            }
        }
        Ok(false) => eprintln!(
            "6/6 table: the plugin's own bridge is not set up (bash benches/peers/plugin2/run.sh setup); skipped"
        ),
        Err(e) => plugin_error = Some(e),
    }

    // The plugin's runner inserted its configuration row (with "log messages" on): the
    // measurements below are of the bridge alone, configured by its file.
    pg.psql("DELETE FROM nemo_mqtt_mqttconfiguration")
        .map_err(|e| e.to_string())?;
    let (mut backlog_per_s, mut backlog_rss, mut backlog_peak) = (None, Vec::new(), None);
    if backlog > 0 {
        eprintln!("6/6 table: memory under a {backlog}-row backlog");
        preload(&pg, backlog)?;
        let d = drain_with(&pg, counter, backlog, || super::spawn_bridge(&cfg)).await?;
        backlog_per_s = Some(d.per_s);
        backlog_rss = d.samples_kib;
        backlog_peak = Some(d.peak_rss_kib);
    }

    eprintln!("6/6 table: latency INSERT + NOTIFY -> subscriber at 100/s for {latency_s} s");
    pg.psql("TRUNCATE nemo_mqtt_mqtt_eventqueue RESTART IDENTITY")
        .map_err(|e| e.to_string())?;
    let bridge = Bridge::start(&cfg)?;
    bridge.wait_ready(Duration::from_secs(30)).await?;
    let (lat, lat_bridge) = latency(&pg, counter, 100, latency_s).await?;
    drop(bridge);

    Ok(TableReport {
        n,
        drain_per_s,
        drain_cpu_us: cpu * 1e6 / (3 * n) as f64,
        drain_peak_rss_kib: peak,
        plugin_per_s,
        plugin_peak_rss_kib: plugin_peak,
        plugin_error,
        backlog,
        backlog_per_s,
        backlog_rss_kib: backlog_rss,
        backlog_peak_rss_kib: backlog_peak,
        durability: durability.trim().to_string(),
        latency: lat,
        latency_after_notify: lat_bridge,
    })
}

impl TableReport {
    /// The rows of the printed table.
    pub(crate) fn rows(&self) -> String {
        let mut t = String::new();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let list = |v: &[f64]| {
            v.iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join("/")
        };
        let _ = writeln!(
            t,
            "{:<44} {:>12.0}/s {:>10}",
            format!(
                "table: drain {} rows (rounds {})",
                self.n,
                list(&self.drain_per_s)
            ),
            mean(&self.drain_per_s),
            ""
        );
        match (&self.plugin_per_s, &self.plugin_error) {
            (Some(p), _) => {
                let _ = writeln!(
                    t,
                    "{:<44} {:>12.0}/s {:>10}",
                    format!("table: the plugin's 2.x bridge (rounds {})", list(p)),
                    mean(p),
                    format!(
                        "x{:.1}",
                        mean(&self.drain_per_s) / mean(p).max(f64::MIN_POSITIVE)
                    )
                );
            }
            (None, Some(e)) => {
                let _ = writeln!(t, "{:<44} FAILED: {e}", "table: the plugin's 2.x bridge");
            }
            (None, None) => {
                let _ = writeln!(
                    t,
                    "{:<44} {:>14}",
                    "table: the plugin's 2.x bridge", "not set up"
                );
            }
        }
        let _ = writeln!(
            t,
            "{:<44} {:>14}",
            "table: CPU per event, peak RSS (this / plugin)",
            format!(
                "{:.1} us, {:.1}/{} MB",
                self.drain_cpu_us,
                self.drain_peak_rss_kib as f64 / 1024.0,
                self.plugin_peak_rss_kib
                    .map(|k| format!("{:.1}", k as f64 / 1024.0))
                    .unwrap_or_else(|| "-".into())
            )
        );
        if let (Some(rate), Some(peak)) = (self.backlog_per_s, self.backlog_peak_rss_kib) {
            let q = |f: f64| {
                self.backlog_rss_kib
                    .get((self.backlog_rss_kib.len() as f64 * f) as usize)
                    .copied()
                    .unwrap_or(0) as f64
                    / 1024.0
            };
            let _ = writeln!(
                t,
                "{:<44} {:>11.1} MB",
                format!("table: peak RSS, {} rows ({rate:.0}/s)", self.backlog),
                peak as f64 / 1024.0
            );
            let _ = writeln!(
                t,
                "{:<44} {:>14}",
                "table: RSS at 10% / 50% / 90% of that drain",
                format!("{:.1}/{:.1}/{:.1} MB", q(0.1), q(0.5), q(0.9))
            );
        }
        for (label, l) in [
            ("INSERT -> sub", &self.latency),
            ("NOTIFY done -> sub", &self.latency_after_notify),
        ] {
            let _ = writeln!(
                t,
                "{:<44} {:>14}",
                format!(
                    "table: {label} at {}/s (n={}) p50/p99/p99.9/max",
                    l.rate, l.n
                ),
                format!(
                    "{:.2}/{:.2}/{:.2}/{:.2} ms",
                    l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
                )
            );
        }
        t
    }

    /// The results file's `table` member.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "n": self.n,
            "drain_per_s": self.drain_per_s,
            "drain_cpu_us_per_event": self.drain_cpu_us,
            "drain_peak_rss_mb": self.drain_peak_rss_kib as f64 / 1024.0,
            "plugin2_drain_per_s": self.plugin_per_s,
            "plugin2_peak_rss_mb": self.plugin_peak_rss_kib.map(|k| k as f64 / 1024.0),
            "plugin2_error": self.plugin_error,
            "backlog": self.backlog,
            "backlog_per_s": self.backlog_per_s,
            "backlog_peak_rss_mb": self.backlog_peak_rss_kib.map(|k| k as f64 / 1024.0),
            "backlog_rss_samples_kib": self.backlog_rss_kib,
            "latency_100_ms": {"p50": self.latency.p50_ms, "p99": self.latency.p99_ms, "p999": self.latency.p999_ms, "max": self.latency.max_ms, "n": self.latency.n},
            "latency_100_after_notify_ms": {"p50": self.latency_after_notify.p50_ms, "p99": self.latency_after_notify.p99_ms, "p999": self.latency_after_notify.p999_ms, "max": self.latency_after_notify.max_ms, "n": self.latency_after_notify.n},
            "postgres": format!("nemo-testkit PostgreSQL, fsync {}, shared_buffers = 16MB", self.durability),
        })
    }
}
