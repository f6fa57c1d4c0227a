//! The bridge through Redis Sentinel: the master is `kill -9`ed mid-stream, a replica is
//! promoted, and every event still arrives (list mode).
//!
//! Redis replicates asynchronously: a write the master confirmed can be lost with it. A
//! producer that must not lose events therefore waits for a replica (`WAIT 1 …`) before it
//! counts a push as done, and pushes again when it cannot tell. What the bridge adds: it
//! follows the fail-over (fred asks the sentinels for the new master), takes over what its
//! processing list holds there, and acks only what the broker confirmed — so what the
//! producer got confirmed reaches the subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fred::prelude::*;
use nemo_testkit::{Mosquitto, RedisSentinelSet};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_mid_stream_loses_nothing() -> TestResult {
    const N: usize = 3_000;
    const BATCH: usize = 20;
    let mut set = RedisSentinelSet::start("nemo")?;
    let broker = Mosquitto::start()?;
    let setup = Setup::new();
    let mut sub = subscriber(&broker.url(), "ha-sub", true).await;
    let cfg = setup.config("ha.toml", &set.url(), &broker.url(), "", "");
    let bridge = setup.ready_bridge(&cfg, "ha");

    // The HA producer: push a batch, then WAIT for one replica; push again when unsure.
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let redis_url = set.url();
        let done = done.clone();
        tokio::spawn(async move {
            let cfg = nemo_redis::RedisConfig {
                url: redis_url,
                key: KEY.into(),
                ..Default::default()
            };
            let redis = nemo_redis::Redis::connect(&cfg, &nemo_backoff::BackoffConfig::default())
                .await
                .unwrap();
            let p = redis.producer();
            // Never re-sent by fred after a reconnect: a WAIT on a new connection would
            // "confirm" writes made on the old one.
            let once = Options {
                max_attempts: Some(1),
                timeout: Some(Duration::from_secs(3)),
                ..Default::default()
            };
            let (mut repushed, mut unconfirmed) = (0, 0);
            let items: Vec<String> = (0..N).map(|s| item(s % 8, s)).collect();
            for batch in items.chunks(BATCH) {
                loop {
                    if p.enqueue_raw_many(batch).await.is_err() {
                        repushed += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    // No replica yet (the killed master is still coming back as one): wait
                    // for one, up to 15 s, on the same connection; only then count the batch
                    // as unconfirmed.
                    let mut waited = Ok(0);
                    for _ in 0..15 {
                        waited = redis
                            .client()
                            .with_options(&once)
                            .wait::<i64>(1, 1000)
                            .await;
                        if !matches!(waited, Ok(0)) {
                            break;
                        }
                    }
                    match waited {
                        Ok(n) if n >= 1 => break,
                        Ok(_) => {
                            unconfirmed += 1;
                            break;
                        }
                        Err(_) => {
                            repushed += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            done.store(true, Ordering::SeqCst);
            (repushed, unconfirmed)
        })
    };

    let mut got = collect(&mut sub, Duration::from_secs(30), |g| g.len() >= N / 3).await;
    assert!(got.len() >= N / 3, "{}", bridge.log());
    let killed = set.kill_master()?;
    let t = Instant::now();
    let promoted = set.wait_failover(Duration::from_secs(60))?;
    let failover = t.elapsed();
    // The killed server comes back as a replica of the new master (so WAIT 1 can succeed).
    set.restart_killed()?;

    let deadline = Instant::now() + Duration::from_secs(180);
    let mut arrived = Arrivals::new(N);
    loop {
        for m in &got {
            arrived.note(seq_of(m));
        }
        got.clear();
        // Count only what could have arrived: wait for the producer, then 15 s of silence.
        let quiet =
            done.load(Ordering::SeqCst) && arrived.last_new.elapsed() > Duration::from_secs(15);
        if arrived.complete() || quiet || Instant::now() > deadline {
            break;
        }
        got = collect(&mut sub, Duration::from_millis(500), |g| g.len() >= 500).await;
    }
    let (unique, longest_gap) = (arrived.unique, arrived.longest_gap);
    let (repushed, unconfirmed) = producer.await?;
    assert!(done.load(Ordering::SeqCst));
    println!(
        "sentinel: master {killed} killed, {promoted} promoted after {failover:?}; {unique} of {N} \
         delivered; longest wait for a new event {longest_gap:?}; producer pushed {repushed} \
         batches again, {unconfirmed} not confirmed by a replica"
    );
    if unique != N {
        let missing = arrived.missing();
        let master = set.master_port()?;
        let lens: Vec<String> = [KEY, PROCESSING, DEAD]
            .iter()
            .map(|k| format!("{k}={}", set.cli(master, &["LLEN", k]).unwrap_or_default()))
            .collect();
        let _ = std::fs::write("/tmp/reliability-ha-bridge.log", bridge.log());
        println!(
            "missing {} (first {:?}); on the new master: {}",
            missing.len(),
            &missing[..missing.len().min(30)],
            lens.join(" ")
        );
    }
    assert_eq!(
        unique,
        N,
        "lost {}; bridge log:\n{}",
        N - unique,
        bridge.tail(60)
    );
    assert_eq!(unconfirmed, 0, "every batch was confirmed by a replica");
    Ok(())
}
