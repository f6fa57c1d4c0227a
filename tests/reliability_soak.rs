//! Soak with faults (issue 10): a producer pushes numbered events (a unique, increasing `seq`
//! spread over several tools) into a Redis with AOF on, at a fixed rate, while a chaos loop
//! `kill -9`s and restarts mosquitto, `kill -9`s and restarts the bridge, and kills and restarts
//! redis-server. A persistent subscriber (clean_session = false, QoS 1, fixed client id) counts.
//!
//! At the end: every `seq` was seen (zero lost), on every tool topic the first deliveries come in
//! `seq` order (only re-deliveries may go back), and the duplicates are counted and printed.
//!
//! `ci_soak_5k_with_faults` runs by default (~8 s); the long variant is `#[ignore]`:
//! `cargo test --release --test reliability_soak -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nemo_backoff::{Backoff, BackoffConfig};
use nemo_events::Qos;
use nemo_mqtt::{MqttConfig, Subscriber};
use nemo_testkit::{Mosquitto, RedisServer};
use support::*;

struct Plan {
    events: usize,
    rate: usize,
    tools: usize,
    /// Pause between two faults.
    chaos_every: Duration,
    /// Mosquitto saves its persistence file after every change (`autosave_on_changes`) instead
    /// of once a second: a broker `kill -9` then no longer drops messages (or the subscriber's
    /// session) that it had acked but not yet saved (see the module docs).
    broker_saves_every_change: bool,
    /// Require zero lost. Otherwise, require that every lost event was in the broker's hands
    /// (in the broker's hands at a mosquitto kill -9), and print how many.
    strict: bool,
    /// Fail on first deliveries out of order (see the bug note on `ci_soak_5k_with_faults`).
    check_order: bool,
    /// Only mosquitto kills (no bridge or Redis faults).
    only_broker_kills: bool,
}

/// One fault injected by the chaos loop, with the time since the start.
#[derive(Debug)]
struct Fault {
    at: Duration,
    what: &'static str,
}

async fn soak(plan: Plan) -> TestResult {
    let redis = RedisServer::builder().aof(true).start()?;
    let mut builder = Mosquitto::builder();
    if plan.broker_saves_every_change {
        // With autosave_on_changes, autosave_interval (1 in the harness) counts changes.
        builder = builder.extra_config("autosave_on_changes true");
    }
    let broker = builder.start()?;
    let broker_url = broker.url();
    let setup = Setup::new();
    let cfg = setup.config("soak.toml", &redis.url_db(1), &broker_url, "", "");
    let sub_cfg = MqttConfig {
        client_id: "reliability-soak-sub".into(),
        clean_session: false,
        ..MqttConfig::for_url(&broker_url)
    };
    let fast = BackoffConfig {
        initial_ms: 50,
        max_ms: 500,
        ..Default::default()
    };
    let mut sub = Subscriber::connect_with_backoff(
        sub_cfg,
        &["nemo/#"],
        Qos::AtLeastOnce,
        Backoff::new(&fast),
    )
    .await?;
    let bridge = setup.bridge(&cfg, "soak-0");
    assert!(
        bridge.wait_ready(Duration::from_secs(20)),
        "bridge not ready:\n{}",
        bridge.log()
    );

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));

    // Producer: batches every 50 ms at the planned rate; a failed batch is retried (a batch whose
    // reply was lost may then be queued twice: counted as producer retries).
    let retries = Arc::new(AtomicU64::new(0));
    let prod = {
        let producer = producer(&redis).await;
        let retries = retries.clone();
        let (n, rate, tools) = (plan.events, plan.rate, plan.tools);
        tokio::spawn(async move {
            let per_tick = (rate / 20).max(1);
            let t0 = tokio::time::Instant::now();
            let mut next = 0usize;
            while next < n {
                let end = (next + per_tick).min(n);
                let batch: Vec<String> = (next..end).map(|s| item(s % tools, s)).collect();
                loop {
                    match tokio::time::timeout(
                        Duration::from_secs(5),
                        producer.enqueue_raw_many(&batch),
                    )
                    .await
                    {
                        Ok(Ok(_)) => break,
                        _ => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                next = end;
                let due = t0 + Duration::from_secs_f64(next as f64 / rate as f64);
                tokio::time::sleep_until(due).await;
            }
            t0.elapsed()
        })
    };

    // Chaos loop on its own thread (the harness calls block): owns the servers and the bridge.
    let chaos = {
        let stop = stop.clone();
        let every = plan.chaos_every;
        let plan_only_broker = plan.only_broker_kills;
        std::thread::spawn(move || {
            let (mut redis, mut broker, mut bridge, setup) = (redis, broker, bridge, setup);
            let mut faults = Vec::new();
            let mut step = 0usize;
            let mut generation = 0;
            loop {
                let t = Instant::now();
                while t.elapsed() < every && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                    // Act as the service manager: a bridge that exited by itself (the
                    // watchdog's status 70) is started again, and counted.
                    if !bridge.alive() {
                        faults.push(Fault {
                            at: start.elapsed(),
                            what: "bridge exited by itself",
                        });
                        generation += 1;
                        bridge = setup.bridge(&cfg, &format!("soak-{generation}"));
                    }
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let kind = if plan_only_broker { 0 } else { step % 3 };
                match kind {
                    0 => {
                        broker.kill();
                        faults.push(Fault {
                            at: start.elapsed(),
                            what: "mosquitto kill -9",
                        });
                        std::thread::sleep(Duration::from_millis(300));
                        broker.restart().expect("restart mosquitto");
                    }
                    1 => {
                        bridge.kill9();
                        faults.push(Fault {
                            at: start.elapsed(),
                            what: "bridge kill -9",
                        });
                        std::thread::sleep(Duration::from_millis(200));
                        generation += 1;
                        bridge = setup.bridge(&cfg, &format!("soak-{generation}"));
                    }
                    _ => {
                        faults.push(Fault {
                            at: start.elapsed(),
                            what: "redis-server kill -9 + restart",
                        });
                        redis.restart().expect("restart redis");
                    }
                }
                step += 1;
            }
            (redis, broker, bridge, setup, faults)
        })
    };

    // Count until every seq is seen, or the producer is done and nothing new came for a while.
    let n = plan.events;
    let mut seen = vec![0u32; n];
    // When each seq was first received (seconds since the start).
    let mut first_at = vec![f64::NAN; n];
    let mut unique = 0usize;
    let mut total = 0usize;
    let mut order_violations: Vec<String> = Vec::new();
    let mut last_first: HashMap<String, usize> = HashMap::new();
    let produce_time = Duration::from_secs_f64(n as f64 / plan.rate as f64);
    let deadline = Instant::now() + produce_time + Duration::from_secs(90);
    let mut chaos_stopped_at = None;
    // Longest wait between two new (first-time) deliveries: how long a fault stalls the stream.
    let mut last_new_at: Option<Instant> = None;
    let mut longest_pause = Duration::ZERO;
    while unique < n && Instant::now() < deadline {
        if chaos_stopped_at.is_none()
            && (prod.is_finished() || start.elapsed() > produce_time + Duration::from_secs(30))
        {
            stop.store(true, Ordering::Relaxed);
            chaos_stopped_at = Some(start.elapsed());
        }
        let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await else {
            continue;
        };
        let Some(seq) = seq_of(&m) else { continue };
        total += 1;
        if seq >= n {
            continue;
        }
        seen[seq] += 1;
        if seen[seq] == 1 {
            unique += 1;
            first_at[seq] = start.elapsed().as_secs_f64();
            let now = Instant::now();
            if let Some(prev) = last_new_at {
                longest_pause = longest_pause.max(now.duration_since(prev));
            }
            last_new_at = Some(now);
            if let Some(prev) = last_first.insert(m.topic.clone(), seq)
                && prev > seq
            {
                order_violations.push(format!("{}: {prev} then {seq}", m.topic));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let produce_elapsed = prod.await?;
    let (redis, broker, mut bridge, setup, faults) = chaos.join().expect("chaos thread");
    let dups: usize = seen.iter().map(|c| c.saturating_sub(1) as usize).sum();
    let lost: Vec<usize> = (0..n).filter(|s| seen[*s] == 0).collect();
    let count = |w: &str| faults.iter().filter(|f| f.what.starts_with(w)).count();
    println!(
        "soak: {n} events over {} tools at {}/s (produced in {:.1} s), faults: {} mosquitto kill -9, {} bridge kill -9, {} redis restarts; bridge exits by itself (watchdog): {}",
        plan.tools,
        plan.rate,
        produce_elapsed.as_secs_f64(),
        count("mosquitto"),
        count("bridge kill"),
        count("redis"),
        count("bridge exited")
    );
    println!(
        "soak: received {total}, unique {unique}, lost {}, duplicates {dups}, first-delivery order violations {}, producer retries {}, all seen after {:.1} s",
        lost.len(),
        order_violations.len(),
        retries.load(Ordering::Relaxed),
        elapsed.as_secs_f64()
    );
    println!(
        "soak: longest pause between two new deliveries {:.2} s",
        longest_pause.as_secs_f64()
    );
    // The last confirmations may land just after the last delivery: give the acks a moment.
    let t = Instant::now();
    while llen(&redis, KEY) + llen(&redis, PROCESSING) > 0 && t.elapsed() < Duration::from_secs(15)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "soak: left in Redis: queue {}, processing {}, dead {}",
        llen(&redis, KEY),
        llen(&redis, PROCESSING),
        llen(&redis, DEAD)
    );
    for f in &faults {
        println!("  fault at {:>6.2} s: {}", f.at.as_secs_f64(), f.what);
    }
    if !lost.is_empty() {
        let mut ranges: Vec<String> = Vec::new();
        let mut k = 0;
        while k < lost.len() {
            let a = lost[k];
            while k + 1 < lost.len() && lost[k + 1] == lost[k] + 1 {
                k += 1;
            }
            let b = lost[k];
            let before = if a > 0 { first_at[a - 1] } else { f64::NAN };
            let after = first_at.get(b + 1).copied().unwrap_or(f64::NAN);
            ranges.push(format!(
                "{a}..={b} ({} events, produced at {:.2}..{:.2} s; seq {} received at {before:.2} s, seq {} at {after:.2} s)",
                b - a + 1,
                a as f64 / plan.rate as f64,
                b as f64 / plan.rate as f64,
                a.saturating_sub(1),
                b + 1
            ));
            k += 1;
        }
        println!("lost ranges: {ranges:?}");
        println!("mosquitto log tail:\n{}", tail(&broker.log(), 80));
    }
    assert!(
        faults.len() >= 3,
        "the chaos loop must inject every kind of fault: {faults:?}"
    );
    if !lost.is_empty() || !order_violations.is_empty() {
        // Keep every bridge generation's log and the broker log for the analysis.
        let keep = std::env::temp_dir().join(format!("reliability-soak-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&keep);
        if let Ok(rd) = std::fs::read_dir(setup.dir.path()) {
            for e in rd.flatten() {
                let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
            }
        }
        let _ = std::fs::write(keep.join("mosquitto.log"), broker.log());
        println!("soak: logs kept in {}", keep.display());
        println!(
            "soak: last bridge alive {}, /readyz {:?}",
            bridge.alive(),
            bridge.get("/readyz")
        );
        if let Some((_, m)) = bridge.get("/metrics") {
            for l in m.lines().filter(|l| l.starts_with("nemo_bridge_events")) {
                println!("  {l}");
            }
        }
    }
    if !order_violations.is_empty() {
        let first =
            std::fs::read_to_string(setup.dir.path().join("soak-0.log")).unwrap_or_default();
        let interesting: Vec<&str> = first
            .lines()
            .filter(|l| !l.contains("DEBUG") && !l.contains("TRACE"))
            .collect();
        println!("first bridge log (info+):\n{}", interesting.join("\n"));
    }
    // Which lost events were in the broker's hands when it was killed?
    let kills: Vec<f64> = faults
        .iter()
        .filter(|f| f.what.starts_with("mosquitto"))
        .map(|f| f.at.as_secs_f64())
        .collect();
    let at_broker_kill = lost
        .iter()
        .filter(|s| {
            let produced = **s as f64 / plan.rate as f64;
            // The last seq received before this one was lost.
            let prev = (0..**s)
                .rev()
                .map(|p| first_at[p])
                .find(|t| !t.is_nan())
                .unwrap_or(0.0);
            kills.iter().any(|k| {
                (produced >= k - 1.5 && produced <= k + 1.0) || (prev >= k - 1.5 && prev <= *k)
            })
        })
        .count();
    println!(
        "soak: lost {}, of them {at_broker_kill} in the broker's hands at a mosquitto kill -9 (broker autosave {})",
        lost.len(),
        if plan.broker_saves_every_change {
            "on every change"
        } else {
            "every 1 s"
        }
    );
    if !plan.strict {
        assert!(faults.len() >= 3, "too few faults: {faults:?}");
        assert_eq!(
            at_broker_kill,
            lost.len(),
            "events lost outside the broker-kill windows: {lost:?}"
        );
        return Ok(());
    }
    assert!(
        lost.is_empty(),
        "lost {} events (first {:?}); bridge log tail:\n{}",
        lost.len(),
        &lost[..lost.len().min(20)],
        bridge.tail(40)
    );
    if plan.check_order {
        assert!(
            order_violations.is_empty(),
            "first deliveries out of order: {:?}",
            &order_violations[..order_violations.len().min(20)]
        );
    }
    assert_eq!(llen(&redis, DEAD), 0, "valid events dead-lettered");
    assert_eq!(
        llen(&redis, KEY) + llen(&redis, PROCESSING),
        0,
        "events left in the queue or processing list"
    );
    drop(bridge);
    Ok(())
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_soak_5k_with_faults() -> TestResult {
    soak(Plan {
        events: 5_000,
        rate: 1_000,
        tools: 8,
        chaos_every: Duration::from_millis(700),
        broker_saves_every_change: true,
        strict: true,
        check_order: true,
        only_broker_kills: false,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long (~65 s, run with --release); see docs/reliability.md for its history"]
async fn long_soak_100k_at_2k_per_s_with_faults() -> TestResult {
    soak(Plan {
        events: 100_000,
        rate: 2_000,
        tools: 20,
        chaos_every: Duration::from_secs(3),
        broker_saves_every_change: true,
        strict: true,
        check_order: true,
        only_broker_kills: false,
    })
    .await
}

/// The same soak against the harness default (mosquitto autosave every 1 s): a broker kill -9 may
/// drop what it acked but had not saved (messages, or the subscriber's session itself). This
/// checks that every lost event was in the broker's hands at a kill (bridge kills and Redis
/// restarts lose nothing) and prints the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "analysis of mosquitto's own kill -9 window; prints figures"]
async fn soak_with_broker_autosave_every_second_attributes_losses() -> TestResult {
    soak(Plan {
        events: 5_000,
        rate: 1_000,
        tools: 8,
        chaos_every: Duration::from_millis(700),
        broker_saves_every_change: false,
        strict: false,
        check_order: false,
        only_broker_kills: false,
    })
    .await
}

/// Per-tool order of first deliveries across broker kill -9s (DESIGN §3: in-flight items are
/// published again right after the reconnect, in order). Two causes of newer items overtaking
/// older ones were found and fixed: (1) the bridge let paho buffer publishes during the outage
/// (`when_disconnected = "wait"`) and paho flushed that buffer on reconnect before the pipeline's
/// republish — 4 of 4 runs failed; the bridge now always uses `"fail"`. (2) Paho kept the
/// PUBLISH commands still queued (not yet written) at the connection loss and wrote them after
/// the reconnect, again ahead of the republish — 2 of 8 runs failed (`1440 then 1280`); fixed in
/// the vendored Paho (PATCHED.md, fix 2; `crates/nemo-mqtt/tests/queued_at_loss.rs`). After
/// both: 0 violations in 10 of 10 runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_deliveries_stay_in_order_across_broker_kills() -> TestResult {
    soak(Plan {
        events: 5_000,
        rate: 1_000,
        tools: 8,
        chaos_every: Duration::from_millis(600),
        broker_saves_every_change: true,
        strict: true,
        check_order: true,
        only_broker_kills: true,
    })
    .await
}

/// Focused reproducer of the stall seen in the long soak: a bridge takes over a queue whose
/// processing list holds a dead bridge's 256 in-flight items, and Redis is killed -9 and restarted
/// (AOF on) while it delivers them. Everything must still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_right_after_takeover_with_recovered_items_loses_nothing() -> TestResult {
    const RECOVERED: usize = 256;
    const N: usize = 30_000;
    let mut redis = RedisServer::builder().aof(true).start()?;
    let broker = Mosquitto::start()?;
    let setup = Setup::new();
    let mut sub = subscriber(&broker.url(), "reliability-takeover-sub", true).await;
    // A dead bridge's window: oldest at the right end, like BLMOVE ... RIGHT LEFT leaves it.
    let client =
        fred::prelude::Builder::from_config(fred::prelude::Config::from_url(&redis.url_db(1))?)
            .build()?;
    fred::prelude::ClientLike::init(&client).await?;
    for s in 0..RECOVERED {
        let _: i64 =
            fred::prelude::ListInterface::lpush(&client, PROCESSING, item(s % 8, s)).await?;
    }
    fred::prelude::ClientLike::quit(&client).await?;
    let rest: Vec<String> = (RECOVERED..N).map(|s| item(s % 8, s)).collect();
    producer(&redis).await.enqueue_raw_many(&rest).await?;
    let cfg = setup.config("takeover.toml", &redis.url_db(1), &broker.url(), "", "");
    let bridge = setup.bridge(&cfg, "takeover");
    assert!(
        bridge.wait_log(Duration::from_secs(20), |l| l.contains("recovered items")),
        "{}",
        bridge.tail(20)
    );
    redis.restart()?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    redis.restart()?;
    let mut got = Vec::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(40) {
        got.extend(collect(&mut sub, Duration::from_secs(1), |_| false).await);
        let mut s: Vec<usize> = got.iter().filter_map(seq_of).collect();
        s.sort_unstable();
        s.dedup();
        if s.len() == N {
            break;
        }
    }
    let mut seqs: Vec<usize> = got.iter().filter_map(seq_of).collect();
    seqs.sort_unstable();
    seqs.dedup();
    println!(
        "takeover + redis restart: {} of {N} delivered; queue {}, processing {}",
        seqs.len(),
        llen(&redis, KEY),
        llen(&redis, PROCESSING)
    );
    assert_eq!(seqs.len(), N, "stalled; bridge log:\n{}", bridge.tail(20));
    Ok(())
}
