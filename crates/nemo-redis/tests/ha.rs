//! Redis high availability against real servers: a Sentinel fail-over under load
//! (nothing lost, first deliveries in order), and every queue feature on a
//! three-master Redis Cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use fred::prelude::*;
use nemo_redis::{
    DeadLetter, Delivery, EventSource, Lease, LeaseKeeper, ListSource, Mode, Redis, RedisConfig,
    RedisError, Requeue, StreamSource,
};
use nemo_testkit::{RedisClusterSet, RedisSentinelSet};

const KEY: &str = "nemo_mqtt_events";
const PROCESSING: &str = "{nemo_mqtt_events}:processing";
const DEAD: &str = "{nemo_mqtt_events}:dead";
const LEASE: &str = "{nemo_mqtt_events}:lease";

fn raws(b: &[Delivery]) -> Vec<Vec<u8>> {
    b.iter().map(|d| d.raw.to_vec()).collect()
}

/// Seconds since `t0`, for the timeline printed by the fail-over test.
fn at(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------
// URLs
// ---------------------------------------------------------------------------

/// The host-list form some clients accept (`host1:p1,host2:p2`) is not a URL to
/// fred: the other nodes go into `node=` query parameters.
#[test]
fn sentinel_and_cluster_urls_take_other_nodes_as_node_parameters() {
    let ok = |url: &str| {
        RedisConfig {
            url: url.into(),
            ..Default::default()
        }
        .validate()
    };
    ok("redis-sentinel://127.0.0.1:26001/1?sentinelServiceName=nemo&node=127.0.0.1:26002&node=127.0.0.1:26003").unwrap();
    ok("redis-cluster://127.0.0.1:7001?node=127.0.0.1:7002&node=127.0.0.1:7003").unwrap();
    for comma in [
        "redis-sentinel://127.0.0.1:26001,127.0.0.1:26002,127.0.0.1:26003/1?sentinelServiceName=nemo",
        "redis-cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
    ] {
        let e = ok(comma).unwrap_err();
        assert_eq!(e.key, "redis.url", "{e}");
        assert!(e.to_string().contains("not a usable Redis URL"), "{e}");
    }
    // A sentinel URL without the service name is refused before connecting.
    let e = ok("redis-sentinel://127.0.0.1:26001/1").unwrap_err();
    assert_eq!(e.key, "redis.url", "{e}");
}

// ---------------------------------------------------------------------------
// Sentinel
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct ProducerReport {
    /// Batches a replica confirmed (`WAIT 1 1000` answered 1).
    confirmed: usize,
    /// Batches in the master that no replica confirmed within 1 s.
    unconfirmed: Vec<usize>,
    /// Batches pushed again because the push or the WAIT failed (duplicates possible).
    repushed: usize,
    /// (seconds since start, error) of every failure.
    errors: Vec<(f64, String)>,
}

#[derive(Debug, Default)]
struct ConsumerReport {
    /// Items in the order of their first delivery.
    first_seen: Vec<Vec<u8>>,
    /// All deliveries, duplicates included.
    taken: usize,
    /// Deliveries flagged `redelivered`.
    redelivered: usize,
    /// (seconds since start, error) of every failed take or ack.
    errors: Vec<(f64, String)>,
    /// Seconds since start of the first successful take + ack after the first error.
    back_at: Option<f64>,
}

/// A producer and a consumer on the Sentinel URL; the master is killed
/// mid-stream. The producer waits for the replica after each batch (Redis
/// replication is asynchronous: without `WAIT`, the last writes before a crash
/// may never reach the replica that is promoted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_mid_stream_loses_nothing_and_keeps_fifo() -> TestResult {
    const N: usize = 2_000;
    const BATCH: usize = 20;
    let t0 = Instant::now();
    let mut set = RedisSentinelSet::start("nemo")?;
    let startup = t0.elapsed();
    let cfg = RedisConfig {
        command_timeout_ms: 1_000,
        block_ms: 200,
        ..config_url(&set.url(), Mode::List, KEY)
    };
    cfg.validate()?;
    let first_master = set.master_port()?;
    let consumer_redis = connect_cfg(&cfg).await;
    let producer_redis = connect_cfg(&cfg).await;
    assert_eq!(
        consumer_redis.client().sentinel_primary().map(|s| s.port),
        Some(first_master),
        "fred asked the sentinels for the master"
    );

    // The consumer holds the lease, as the bridge does.
    let token = Lease::new_token();
    let mut lease = consumer_redis.lease();
    assert!(lease.acquire(&token).await?);
    let keeper = LeaseKeeper::spawn(lease);

    let all = items(N);
    let progress = Arc::new(AtomicUsize::new(0));
    let produced = Arc::new(AtomicBool::new(false));

    let producer = {
        let all = all.clone();
        let produced = produced.clone();
        let redis = producer_redis.clone();
        tokio::spawn(async move {
            let p = redis.producer();
            // Never re-sent by fred after a reconnect: a WAIT on a new connection
            // would "confirm" writes made on the old one.
            let once = Options {
                max_attempts: Some(1),
                timeout: Some(Duration::from_secs(3)),
                ..Default::default()
            };
            let mut r = ProducerReport::default();
            for (i, batch) in all.chunks(BATCH).enumerate() {
                loop {
                    if let Err(e) = p.enqueue_raw_many(batch).await {
                        r.errors.push((at(t0), format!("push {i}: {e}")));
                        r.repushed += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    match redis
                        .client()
                        .with_options(&once)
                        .wait::<i64>(1, 1000)
                        .await
                    {
                        Ok(n) if n >= 1 => r.confirmed += 1,
                        Ok(_) => r.unconfirmed.push(i),
                        Err(e) => {
                            // Unknown whether the push reached the replica: push again.
                            r.errors.push((at(t0), format!("wait {i}: {e}")));
                            r.repushed += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    }
                    break;
                }
                // Spread the pushes over a few seconds, so the kill falls in the middle.
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            produced.store(true, Ordering::SeqCst);
            r
        })
    };

    let consumer = {
        let progress = progress.clone();
        let produced = produced.clone();
        let redis = consumer_redis.clone();
        tokio::spawn(async move {
            let mut src = ListSource::new(&redis).await?;
            let mut r = ConsumerReport::default();
            let mut seen = HashSet::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                if Instant::now() > deadline {
                    break;
                }
                match src.take(50, Duration::from_millis(200)).await {
                    Ok(batch) => {
                        let drained = batch.is_empty() && produced.load(Ordering::SeqCst);
                        r.taken += batch.len();
                        r.redelivered += batch.iter().filter(|d| d.redelivered).count();
                        for d in &batch {
                            if seen.insert(d.raw.to_vec()) {
                                r.first_seen.push(d.raw.to_vec());
                            }
                        }
                        progress.store(r.first_seen.len(), Ordering::SeqCst);
                        // "Publish", then ack; a failed ack is retried until it succeeds.
                        while let Err(e) = src.ack(&batch).await {
                            r.errors.push((at(t0), format!("ack: {e}")));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        if !r.errors.is_empty() && r.back_at.is_none() && !batch.is_empty() {
                            r.back_at = Some(at(t0));
                        }
                        if drained && r.first_seen.len() >= N {
                            break;
                        }
                    }
                    Err(e) => {
                        r.errors.push((at(t0), format!("take: {e}")));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            Ok::<_, RedisError>((r, src))
        })
    };

    // Mid-stream: a third of the items delivered, the producer still busy.
    let deadline = Instant::now() + Duration::from_secs(30);
    while progress.load(Ordering::SeqCst) < N / 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered_before_kill = progress.load(Ordering::SeqCst);
    let killed_at = at(t0);
    let killed = set.kill_master()?;
    assert_eq!(killed, first_master);
    let new_master = set.wait_failover(Duration::from_secs(60))?;
    let failover = at(t0) - killed_at;
    assert_ne!(new_master, killed);
    // The crashed server comes back as a replica, so WAIT 1 can succeed again.
    set.restart_killed()?;
    let rejoined_at = at(t0);

    let report = producer.await?;
    let (consumer_report, src) = consumer.await??;
    let r = consumer_report;
    let done_at = at(t0);
    // Under load the sentinels may have failed over again since (a master that did
    // not answer for a second): what follows is checked on the master of now.
    let master = set.agreed_master(Duration::from_secs(30))?;

    println!("--- sentinel fail-over under load ({N} items, batches of {BATCH}) ---");
    println!("set start-up: {:.2} s", startup.as_secs_f64());
    println!(
        "kill of master :{killed} at {killed_at:.2} s after {delivered_before_kill} first deliveries"
    );
    println!("sentinels agreed on :{new_master} (ROLE master) {failover:.2} s after the kill");
    println!("crashed server back as a replica at {rejoined_at:.2} s; all done at {done_at:.2} s");
    if master != new_master {
        println!("the sentinels failed over again under load: the master is now :{master}");
        println!("{}", set.log_tail());
    }
    println!(
        "consumer: {} distinct, {} deliveries ({} duplicates, {} flagged redelivered), {} errors, \
         first good take+ack after the errors at {:?} s ({:.2} s after the kill)",
        r.first_seen.len(),
        r.taken,
        r.taken - r.first_seen.len(),
        r.redelivered,
        r.errors.len(),
        r.back_at,
        r.back_at.map(|b| b - killed_at).unwrap_or(f64::NAN)
    );
    println!(
        "producer: {} batches confirmed by WAIT, {} unconfirmed {:?}, {} pushed again, {} errors",
        report.confirmed,
        report.unconfirmed.len(),
        report.unconfirmed,
        report.repushed,
        report.errors.len()
    );
    for (t, e) in r.errors.iter().take(8) {
        println!("  consumer error at {t:.2} s: {e}");
    }
    for (t, e) in report.errors.iter().take(3) {
        println!("  producer error at {t:.2} s: {e}");
    }

    // Zero lost, and the first deliveries in exactly the producer's order.
    assert_eq!(
        r.first_seen.len(),
        N,
        "items lost; logs:\n{}",
        set.log_tail()
    );
    assert!(r.first_seen == all, "first deliveries out of FIFO order");
    assert!(r.back_at.is_some(), "the consumer failed at least once");
    // fred followed the fail-over(s): the clients talk to the master of now.
    assert_eq!(
        consumer_redis.client().sentinel_primary().map(|s| s.port),
        Some(master)
    );
    assert_eq!(
        producer_redis.client().sentinel_primary().map(|s| s.port),
        Some(master)
    );
    assert_eq!(set.cli(master, &["LLEN", KEY])?, "0", "queue drained");
    // Acks the crashed master took but never replicated leave items in
    // `processing` on the new one: delivered already, they are delivered again
    // by the next recovery (duplicates, never loss).
    let left = set.cli(master, &["LRANGE", PROCESSING, "0", "-1"])?;
    let left: Vec<&str> = left.lines().filter(|l| !l.is_empty()).collect();
    println!("left in processing after the run: {}", left.len());
    let known: HashSet<&[u8]> = all.iter().map(Vec::as_slice).collect();
    assert!(left.iter().all(|l| known.contains(l.as_bytes())));
    assert_eq!(src.in_flight(), 0);
    drop(src);
    let mut next_run = ListSource::new(&consumer_redis).await?;
    assert_eq!(next_run.recover().await?, left.len() as u64);
    let again = next_run.take(N, Duration::ZERO).await?;
    assert!(again.iter().all(|d| d.redelivered));
    next_run.ack(&again).await?;
    assert_eq!(set.cli(master, &["LLEN", PROCESSING])?, "0");

    // The lease survived the fail-over (its key was replicated, renewals resumed). Not
    // after a second, spurious one: the renewals went to the deposed master until the
    // sentinels reconfigured it, and Redis discarded them with its data.
    if master == new_master {
        assert!(keeper.is_held(), "lease kept through the fail-over");
        assert_eq!(
            consumer_redis.lease().holder().await?.as_deref(),
            Some(token.as_str())
        );
        let pttl: i64 = set.cli(master, &["PTTL", LEASE])?.parse()?;
        assert!(pttl > 0, "{pttl}");
        assert!(keeper.release().await?);
        assert_eq!(set.cli(master, &["EXISTS", LEASE])?, "0");
    } else {
        println!("lease not checked after the second fail-over");
        let _ = keeper.release().await;
    }

    // Every batch pushed after the rejoin was confirmed by the new replica.
    assert!(report.confirmed > 0);
    Ok(())
}

// ---------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------

async fn cluster_redis(cluster: &RedisClusterSet, mode: Mode, key: &str) -> Redis {
    let cfg = config_url(&cluster.url(), mode, key);
    cfg.validate().unwrap();
    connect_cfg(&cfg).await
}

/// A key of the queue's companion keys (all one slot thanks to the hash tag),
/// and `LLEN` answered only by the node that owns it.
fn assert_on_node(cluster: &RedisClusterSet, key: &str, owner: u16, len: usize) {
    assert_eq!(cluster.port_for_key(key).unwrap(), owner, "{key}");
    assert_eq!(
        cluster.cli_at(owner, &["LLEN", key]).unwrap(),
        len.to_string()
    );
    for other in cluster.ports().into_iter().filter(|&p| p != owner) {
        let moved = cluster.cli_at(other, &["LLEN", key]).unwrap();
        assert!(moved.starts_with("MOVED"), "{key} on :{other}: {moved}");
    }
}

/// Take everything in batches of varying size, ack each batch; returns the items in order.
async fn drain(
    src: &mut dyn EventSource<Error = RedisError>,
    expect: usize,
) -> Result<Vec<Vec<u8>>, RedisError> {
    let sizes = [1usize, 7, 100, 256, 33];
    let mut seen = Vec::new();
    let mut i = 0;
    while seen.len() < expect {
        let max = sizes[i % sizes.len()];
        let batch = src.take(max, Duration::from_millis(50)).await?;
        assert!(batch.len() <= max);
        assert!(!batch.is_empty(), "ran dry after {} items", seen.len());
        src.ack(&batch).await?;
        seen.extend(raws(&batch));
        i += 1;
    }
    assert!(src.take(10, Duration::from_millis(20)).await?.is_empty());
    Ok(seen)
}

#[tokio::test]
async fn cluster_list_mode_fifo_recovery_nack_and_blocking_take() -> TestResult {
    let t = Instant::now();
    let cluster = RedisClusterSet::start()?;
    println!("cluster start-up: {:.2} s", t.elapsed().as_secs_f64());
    let redis = cluster_redis(&cluster, Mode::List, KEY).await;
    let owner = cluster.port_for_key(KEY)?;
    for k in [PROCESSING, DEAD, LEASE] {
        assert_eq!(cluster.port_for_key(k)?, owner, "{k} in the queue's slot");
    }

    // FIFO through take/ack.
    let all = items(5_000);
    assert_eq!(redis.producer().enqueue_raw_many(&all).await?, 5_000);
    assert_on_node(&cluster, KEY, owner, 5_000);
    let mut src = ListSource::new(&redis).await?;
    let seen = drain(&mut src, all.len()).await?;
    assert_eq!(seen, all, "oldest first");
    assert_on_node(&cluster, PROCESSING, owner, 0);
    assert_eq!(redis.stats().depth().await?, 0);
    assert_eq!(redis.stats().processing_len().await?, 0);

    // A crashed consumer's items come first, in order, flagged.
    let all = items(300);
    redis.producer().enqueue_raw_many(&all).await?;
    {
        let mut dead = ListSource::new(&redis).await?;
        let b = dead.take(120, Duration::ZERO).await?;
        assert_eq!(raws(&b), all[..120].to_vec());
        dead.ack(&b[10..20]).await?;
    }
    assert_on_node(&cluster, PROCESSING, owner, 110);
    let mut src = ListSource::new(&redis).await?;
    let b = src.take(300, Duration::ZERO).await?;
    let expect: Vec<Vec<u8>> = all[..10].iter().chain(&all[20..]).cloned().collect();
    assert_eq!(raws(&b), expect);
    assert!(b[..110].iter().all(|d| d.redelivered));
    assert!(b[110..].iter().all(|d| !d.redelivered));
    // nack gives the tail back to the head of the queue, in order.
    src.ack(&b[..200]).await?;
    src.nack(&b[200..]).await?;
    let again = src.take(500, Duration::ZERO).await?;
    assert_eq!(raws(&again), raws(&b[200..]));
    assert!(again.iter().all(|d| d.redelivered));
    src.ack(&again).await?;
    assert_on_node(&cluster, PROCESSING, owner, 0);
    assert_on_node(&cluster, KEY, owner, 0);

    // A blocking take (BLMOVE on the blocking client, routed by its first key).
    let t = Instant::now();
    assert!(src.take(10, Duration::from_millis(300)).await?.is_empty());
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    let producer = redis.producer();
    let push = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        producer.enqueue_raw_many(&[b"x".as_slice(), b"y"]).await
    });
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 2 && Instant::now() < deadline {
        got.extend(src.take(10, Duration::from_secs(2)).await?);
    }
    push.await??;
    assert_eq!(raws(&got), vec![b"x".to_vec(), b"y".to_vec()]);
    src.ack(&got).await?;
    assert_on_node(&cluster, PROCESSING, owner, 0);
    Ok(())
}

/// The ack script trims the tail when the acked items are the oldest ones, and
/// removes item by item otherwise: out of order and with gaps, on a cluster too.
#[tokio::test]
async fn cluster_acks_out_of_order_and_with_gaps_remove_exactly_the_acked_items() -> TestResult {
    let cluster = RedisClusterSet::start()?;
    let redis = cluster_redis(&cluster, Mode::List, KEY).await;
    let all = items(6);
    redis.producer().enqueue_raw_many(&all).await?;
    let mut src = ListSource::new(&redis).await?;
    let b = src.take(6, Duration::ZERO).await?;
    assert_eq!(raws(&b), all);
    let raw = |i: usize| String::from_utf8_lossy(&b[i].raw).into_owned();
    src.ack(&[b[4].clone(), b[5].clone()]).await?; // the newest two, not at the tail
    src.ack(&[b[1].clone(), b[3].clone()]).await?; // a gap
    let left = cluster.cli(&["LRANGE", PROCESSING, "0", "-1"])?;
    assert_eq!(left, format!("{}\n{}", raw(2), raw(0)), "newest first");
    src.ack(&[b[0].clone(), b[2].clone()]).await?; // the tail again, with a gap in between
    assert_eq!(cluster.cli(&["LLEN", PROCESSING])?, "0");
    assert_eq!(src.in_flight(), 0);

    // Duplicates: one ack removes one copy.
    redis
        .producer()
        .enqueue_raw_many(&[b"same".as_slice(), b"same", b"other"])
        .await?;
    let b = src.take(3, Duration::ZERO).await?;
    src.ack(&b[..1]).await?;
    assert_eq!(cluster.cli(&["LLEN", PROCESSING])?, "2");
    src.ack(&b[1..2]).await?;
    assert_eq!(cluster.cli(&["LRANGE", PROCESSING, "0", "-1"])?, "other");
    Ok(())
}

#[tokio::test]
async fn cluster_stream_mode_fifo_own_pending_first_and_dead_letters() -> TestResult {
    let cluster = RedisClusterSet::start()?;
    let cfg = RedisConfig {
        consumer: Some("bridge-1".into()),
        claim_idle_ms: 300,
        ..config_url(&cluster.url(), Mode::Stream, KEY)
    };
    let redis = connect_cfg(&cfg).await;
    let all = items(2_000);
    redis.producer().enqueue_raw_many(&all).await?;
    let owner = cluster.port_for_key(KEY)?;
    assert_eq!(cluster.cli_at(owner, &["XLEN", KEY])?, "2000");
    let mut src = StreamSource::new(&redis).await?;
    let seen = drain(&mut src, all.len()).await?;
    assert_eq!(seen, all);
    assert_eq!(redis.stats().processing_len().await?, 0, "nothing pending");
    assert_eq!(redis.stats().depth().await?, 0, "group lag");
    // XINFO GROUPS goes to the node that owns the key: no node rejected it (MOVED), so the
    // client never had to resync the topology for a metrics poll.
    for port in cluster.ports() {
        let stats = cluster.cli_at(port, &["INFO", "commandstats"])?;
        let xinfo = stats
            .lines()
            .find(|l| l.starts_with("cmdstat_xinfo|groups:"));
        if let Some(line) = xinfo {
            assert!(line.contains("rejected_calls=0"), "node {port}: {line}");
        }
    }
    assert_eq!(
        cluster.cli(&["XLEN", KEY])?,
        "2000",
        "XDEL is off by default"
    );

    // A restarted consumer gets its own pending entries first, in order.
    let more = items(2_020)[2_000..].to_vec();
    redis.producer().enqueue_raw_many(&more).await?;
    {
        let mut dead = StreamSource::new(&redis).await?;
        let b = dead.take(6, Duration::ZERO).await?;
        assert_eq!(raws(&b), more[..6].to_vec());
        dead.ack(&b[1..2]).await?;
    }
    assert_eq!(redis.stats().processing_len().await?, 5);
    let mut src = StreamSource::new(&redis).await?;
    let b = src.take(3, Duration::ZERO).await?;
    assert_eq!(
        raws(&b),
        vec![more[0].clone(), more[2].clone(), more[3].clone()]
    );
    assert!(b.iter().all(|d| d.redelivered));
    let b2 = src.take(100, Duration::ZERO).await?;
    assert_eq!(raws(&b2), vec![more[4].clone(), more[5].clone()]);
    let b3 = src.take(100, Duration::ZERO).await?;
    assert_eq!(raws(&b3), more[6..].to_vec());
    assert!(b3.iter().all(|d| !d.redelivered));
    src.ack(&b).await?;
    src.ack(&b2).await?;
    src.ack(&b3).await?;
    assert_eq!(redis.stats().processing_len().await?, 0);

    // Dead letters in stream mode (one script over the stream and `{key}:dead`).
    redis.producer().enqueue_raw(b"not json").await?;
    let b = src.take(10, Duration::ZERO).await?;
    assert_eq!(raws(&b), vec![b"not json".to_vec()]);
    src.dead_letter(&b[0], "not JSON").await?;
    assert_eq!(redis.stats().processing_len().await?, 0);
    let dead = redis.dead_letters().list(0, 10).await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (&dead[0].raw[..], dead[0].error.as_str()),
        (&b"not json"[..], "not JSON")
    );
    assert_eq!(redis.dead_letters().requeue(Requeue::All).await?, 1);
    let b = src.take(10, Duration::ZERO).await?;
    assert_eq!(raws(&b), vec![b"not json".to_vec()]);
    assert!(!b[0].redelivered, "requeued as a new entry");
    src.ack(&b).await?;
    assert_eq!(cluster.cli(&["XLEN", KEY])?, "2022");
    Ok(())
}

#[tokio::test]
async fn cluster_lease_acquire_renew_release_and_keeper() -> TestResult {
    let cluster = RedisClusterSet::start()?;
    let cfg = RedisConfig {
        lease_ttl_ms: 600,
        ..config_url(&cluster.url(), Mode::List, KEY)
    };
    let redis = connect_cfg(&cfg).await;
    let mut first = redis.lease();
    let mut second = redis.lease();
    assert_eq!(first.key(), LEASE);
    assert!(first.acquire("token-1").await?);
    assert!(first.acquire("token-1").await?, "the holder prolongs");
    assert!(!second.acquire("token-2").await?, "held by the first");
    assert!(matches!(
        second.renew().await,
        Err(RedisError::LeaseLost { .. })
    ));
    let owner = cluster.port_for_key(LEASE)?;
    assert_eq!(cluster.cli_at(owner, &["GET", LEASE])?, "token-1");
    let pttl: i64 = cluster.cli(&["PTTL", LEASE])?.parse()?;
    assert!(pttl > 0 && pttl <= 600, "{pttl}");
    first.renew().await?;
    assert!(first.release().await?);
    assert!(second.acquire("token-2").await?);
    assert_eq!(second.holder().await?.as_deref(), Some("token-2"));
    assert!(
        !first.release().await?,
        "release by a non-holder does nothing"
    );
    // The second "dies": the first takes over once the TTL lapsed.
    let start = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(10),
        first.acquire_wait("token-1", Duration::from_millis(50)),
    )
    .await??;
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(matches!(
        second.renew().await,
        Err(RedisError::LeaseLost { .. })
    ));

    // The keeper renews past several TTLs, then releases.
    let keeper = LeaseKeeper::spawn(first);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(keeper.is_held());
    assert_eq!(cluster.cli(&["GET", LEASE])?, "token-1");
    assert!(keeper.release().await?);
    assert_eq!(cluster.cli(&["EXISTS", LEASE])?, "0");
    Ok(())
}

#[tokio::test]
async fn cluster_dead_letters_with_exact_bytes_then_requeued_in_order() -> TestResult {
    let cluster = RedisClusterSet::start()?;
    let redis = cluster_redis(&cluster, Mode::List, KEY).await;
    let bad: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        br#"{"topic": "nemo/tools/1/enabled"}"#.to_vec(),
        vec![0xc3, 0x28, 0x00, 0xff],
        b"{\"payload\": \"\xff\xfe\"}".to_vec(),
    ];
    let good = br#"{"topic": "nemo/tools/1/enabled", "payload": "{}", "qos": 1}"#.to_vec();
    let mut all = bad.clone();
    all.insert(2, good.clone());
    redis.producer().enqueue_raw_many(&all).await?;
    let mut src = ListSource::new(&redis).await?;
    let batch = src.take(10, Duration::ZERO).await?;
    assert_eq!(raws(&batch), all);
    for (i, d) in batch.iter().enumerate() {
        if d.raw[..] == good[..] {
            src.ack(std::slice::from_ref(d)).await?;
        } else {
            src.dead_letter(d, &format!("reason {i}")).await?;
        }
    }
    assert_eq!(cluster.cli(&["LLEN", PROCESSING])?, "0", "nothing stuck");
    let dead = redis.dead_letters();
    assert_eq!(dead.len().await?, 4);
    assert_eq!(redis.stats().dead_len().await?, 4);
    let owner = cluster.port_for_key(KEY)?;
    assert_on_node(&cluster, DEAD, owner, 4);
    let listed = dead.list(0, 100).await?;
    assert_eq!(
        listed.iter().map(|d| d.raw.to_vec()).collect::<Vec<_>>(),
        bad,
        "exact bytes, oldest first"
    );
    assert_eq!(
        listed.iter().map(|d| d.error.as_str()).collect::<Vec<_>>(),
        ["reason 0", "reason 1", "reason 3", "reason 4"]
    );
    let stored = cluster.cli(&["LINDEX", DEAD, "2"])?;
    let v: serde_json::Value = serde_json::from_str(&stored)?;
    assert_eq!(v["raw_base64"], true, "not UTF-8: kept as base64");
    assert_eq!(
        DeadLetter::parse(stored.as_bytes())?.raw.to_vec(),
        bad[2],
        "round trip"
    );
    assert_eq!(dead.list(1, 2).await?[0].raw.to_vec(), bad[1]);

    assert_eq!(dead.requeue(Requeue::Count(1)).await?, 1);
    assert_eq!(dead.len().await?, 3);
    assert_eq!(dead.requeue(Requeue::All).await?, 3);
    assert!(dead.is_empty().await?);
    let again = src.take(10, Duration::ZERO).await?;
    assert_eq!(
        raws(&again),
        bad,
        "requeued as the original bytes, in order"
    );
    src.ack(&again).await?;
    assert_eq!(cluster.cli(&["LLEN", KEY])?, "0");
    Ok(())
}

/// Another queue whose slot lives on another node: the source, the scripts
/// (loaded there on first use) and the companion keys all follow the slot.
#[tokio::test]
async fn cluster_a_second_queue_on_another_node_works_alongside() -> TestResult {
    let cluster = RedisClusterSet::start()?;
    let owner = cluster.port_for_key(KEY)?;
    let other_key = (0..1000)
        .map(|i| format!("nemo_mqtt_events_{i}"))
        .find(|k| cluster.port_for_key(k).unwrap() != owner)
        .expect("a key on another node");
    let other_owner = cluster.port_for_key(&other_key)?;
    assert_ne!(other_owner, owner);
    let other_processing = format!("{{{other_key}}}:processing");
    let other_dead = format!("{{{other_key}}}:dead");

    let r1 = cluster_redis(&cluster, Mode::List, KEY).await;
    let r2 = cluster_redis(&cluster, Mode::List, &other_key).await;
    let one = items(500);
    let two: Vec<Vec<u8>> = (0..700)
        .map(|i| format!("two-{i:05}").into_bytes())
        .collect();
    r1.producer().enqueue_raw_many(&one).await?;
    r2.producer().enqueue_raw_many(&two).await?;
    assert_on_node(&cluster, KEY, owner, 500);
    assert_on_node(&cluster, &other_key, other_owner, 700);

    let mut s1 = ListSource::new(&r1).await?;
    let mut s2 = ListSource::new(&r2).await?;
    // Interleaved, so each script runs on both nodes in turn.
    let (mut seen1, mut seen2) = (Vec::new(), Vec::new());
    while seen1.len() < one.len() || seen2.len() < two.len() {
        let b1 = s1.take(64, Duration::ZERO).await?;
        let b2 = s2.take(64, Duration::ZERO).await?;
        assert!(!(b1.is_empty() && b2.is_empty()), "ran dry");
        if let Some(d) = b2.first() {
            assert_eq!(
                cluster.cli_at(other_owner, &["LLEN", &other_processing])?,
                b2.len().to_string()
            );
            assert!(d.raw.starts_with(b"two-"));
        }
        s1.ack(&b1).await?;
        s2.ack(&b2).await?;
        seen1.extend(raws(&b1));
        seen2.extend(raws(&b2));
    }
    assert_eq!(seen1, one);
    assert_eq!(seen2, two);
    assert_on_node(&cluster, &other_processing, other_owner, 0);

    // Dead letters and the lease of the second queue live on its node.
    r2.producer().enqueue_raw(b"bad").await?;
    let b = s2.take(1, Duration::ZERO).await?;
    s2.dead_letter(&b[0], "bad item").await?;
    assert_on_node(&cluster, &other_dead, other_owner, 1);
    assert_eq!(r2.dead_letters().requeue(Requeue::All).await?, 1);
    assert_eq!(
        raws(&s2.take(1, Duration::ZERO).await?),
        vec![b"bad".to_vec()]
    );
    let mut l1 = r1.lease();
    let mut l2 = r2.lease();
    assert!(l1.acquire("a").await?);
    assert!(l2.acquire("b").await?, "separate leases per queue");
    let lease2 = format!("{{{other_key}}}:lease");
    assert_eq!(cluster.cli_at(other_owner, &["GET", &lease2])?, "b");
    assert_eq!(cluster.cli_at(owner, &["GET", LEASE])?, "a");
    assert!(l1.release().await? && l2.release().await?);
    Ok(())
}
