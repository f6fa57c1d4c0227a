//! Stream mode against a real redis-server: group, own pending first, nack, XAUTOCLAIM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use nemo_redis::{DeliveryId, EventSource, Mode, RedisConfig, StreamSource};
use nemo_testkit::RedisServer;

const KEY: &str = "nemo_mqtt_stream";

fn cfg(server: &RedisServer, consumer: &str) -> RedisConfig {
    RedisConfig {
        consumer: Some(consumer.into()),
        claim_idle_ms: 300,
        ..config(server, Mode::Stream, KEY)
    }
}

fn raws(b: &[nemo_redis::Delivery]) -> Vec<Vec<u8>> {
    b.iter().map(|d| d.raw.to_vec()).collect()
}

#[tokio::test]
async fn take_ack_in_order_and_group_created_from_the_start() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect_cfg(&cfg(&server, "a")).await;
    let all = items(1000);
    // Entries added before the group exists are delivered too.
    redis.producer().enqueue_raw_many(&all).await?;
    let mut src = StreamSource::new(&redis).await?;
    let mut seen = Vec::new();
    loop {
        let b = src.take(128, Duration::from_millis(50)).await?;
        if b.is_empty() {
            break;
        }
        assert!(
            b.iter()
                .all(|d| matches!(d.id, DeliveryId::Stream(_)) && !d.redelivered)
        );
        src.ack(&b).await?;
        seen.extend(raws(&b));
    }
    assert_eq!(seen, all);
    assert_eq!(redis.stats().processing_len().await?, 0);
    assert_eq!(redis.stats().depth().await?, 0, "group lag");
    assert_eq!(
        server.cli(&["XLEN", KEY])?,
        "1000",
        "XDEL is off by default"
    );
    Ok(())
}

#[tokio::test]
async fn delete_acked_removes_entries() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect_cfg(&RedisConfig {
        delete_acked: true,
        ..cfg(&server, "a")
    })
    .await;
    redis.producer().enqueue_raw_many(&items(10)).await?;
    let mut src = StreamSource::new(&redis).await?;
    let b = src.take(10, Duration::ZERO).await?;
    src.ack(&b).await?;
    assert_eq!(server.cli(&["XLEN", KEY])?, "0");
    Ok(())
}

#[tokio::test]
async fn restarted_consumer_gets_its_own_pending_first_in_order() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect_cfg(&cfg(&server, "bridge-1")).await;
    let all = items(20);
    redis.producer().enqueue_raw_many(&all).await?;
    {
        let mut dead = StreamSource::new(&redis).await?;
        let b = dead.take(6, Duration::ZERO).await?;
        dead.ack(&b[1..2]).await?;
    }
    let mut src = StreamSource::new(&redis).await?;
    let b = src.take(3, Duration::ZERO).await?;
    assert_eq!(
        raws(&b),
        vec![all[0].clone(), all[2].clone(), all[3].clone()]
    );
    assert!(b.iter().all(|d| d.redelivered));
    let b2 = src.take(10, Duration::ZERO).await?;
    assert_eq!(
        raws(&b2),
        vec![all[4].clone(), all[5].clone()],
        "rest of own pending, before new entries"
    );
    let b3 = src.take(100, Duration::ZERO).await?;
    assert_eq!(raws(&b3), all[6..].to_vec());
    assert!(!b3[0].redelivered);
    src.ack(&b).await?;
    src.ack(&b2).await?;
    src.ack(&b3).await?;
    assert_eq!(redis.stats().processing_len().await?, 0);
    Ok(())
}

#[tokio::test]
async fn nack_redelivers_in_order_without_repeating_outstanding_entries() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect_cfg(&cfg(&server, "a")).await;
    let all = items(12);
    redis.producer().enqueue_raw_many(&all).await?;
    let mut src = StreamSource::new(&redis).await?;
    let first = src.take(4, Duration::ZERO).await?; // 0..4
    let second = src.take(4, Duration::ZERO).await?; // 4..8
    src.nack(&second).await?;
    src.nack(&first[2..]).await?; // 2,3 back; 0,1 still held
    let again = src.take(10, Duration::ZERO).await?;
    assert_eq!(
        raws(&again),
        all[2..8].to_vec(),
        "nacked entries in stream order, outstanding ones skipped"
    );
    assert!(again.iter().all(|d| d.redelivered));
    let fresh = src.take(10, Duration::ZERO).await?;
    assert_eq!(raws(&fresh), all[8..].to_vec());
    Ok(())
}

#[tokio::test]
async fn two_consumers_share_a_group_and_a_dead_ones_entries_are_claimed() -> TestResult {
    let server = RedisServer::start()?;
    let ra = connect_cfg(&cfg(&server, "a")).await;
    let rb = connect_cfg(&cfg(&server, "b")).await;
    let all = items(100);
    ra.producer().enqueue_raw_many(&all).await?;
    let mut a = StreamSource::new(&ra).await?;
    let mut b = StreamSource::new(&rb).await?;
    let from_a = a.take(10, Duration::ZERO).await?;
    let from_b = b.take(10, Duration::ZERO).await?;
    assert_eq!(raws(&from_a), all[..10].to_vec());
    assert_eq!(
        raws(&from_b),
        all[10..20].to_vec(),
        "each entry goes to one consumer"
    );
    b.ack(&from_b).await?;
    drop(a); // dies with 10 pending
    // b works on; once a's entries are idle > claim_idle_ms, b claims them.
    let mut claimed = Vec::new();
    let mut fresh = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (claimed.len() < 10 || fresh.len() < 80) && Instant::now() < deadline {
        let got = b.take(16, Duration::from_millis(100)).await?;
        for d in &got {
            if d.redelivered {
                claimed.push(d.raw.to_vec())
            } else {
                fresh.push(d.raw.to_vec())
            }
        }
        b.ack(&got).await?;
    }
    assert_eq!(
        claimed,
        all[..10].to_vec(),
        "dead consumer's entries claimed, in order, flagged"
    );
    assert_eq!(fresh, all[20..].to_vec());
    assert_eq!(rb.stats().processing_len().await?, 0);
    Ok(())
}

#[tokio::test]
async fn dead_letters_and_entries_without_item_field() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect_cfg(&cfg(&server, "a")).await;
    redis.producer().enqueue_raw(b"not json").await?;
    server.cli(&["XADD", KEY, "*", "other", "x"])?;
    redis.producer().enqueue_raw(b"fine").await?;
    let mut src = StreamSource::new(&redis).await?;
    let b = src.take(10, Duration::ZERO).await?;
    assert_eq!(
        raws(&b),
        vec![b"not json".to_vec(), b"fine".to_vec()],
        "entry without `item` is not delivered"
    );
    src.dead_letter(&b[0], "not JSON").await?;
    src.ack(&b[1..]).await?;
    let dead = redis.dead_letters().list(0, 10).await?;
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].error, "stream entry has no `item` field");
    assert_eq!(&dead[0].raw[..], br#"{"other":"x"}"#);
    assert_eq!(
        (&dead[1].raw[..], dead[1].error.as_str()),
        (&b"not json"[..], "not JSON")
    );
    assert_eq!(redis.stats().processing_len().await?, 0);
    // Requeue in stream mode appends an entry with the original item.
    assert_eq!(
        redis
            .dead_letters()
            .requeue(nemo_redis::Requeue::Count(1))
            .await?,
        1
    );
    let b = src.take(10, Duration::ZERO).await?;
    assert_eq!(&b[0].raw[..], br#"{"other":"x"}"#);
    Ok(())
}

#[tokio::test]
async fn blocking_read_returns_new_entry() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect_cfg(&cfg(&server, "a")).await;
    let mut src = StreamSource::new(&redis).await?;
    assert!(src.take(5, Duration::from_millis(100)).await?.is_empty());
    let p = redis.producer();
    let t = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        p.enqueue_raw(b"late").await
    });
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.is_empty() && Instant::now() < deadline {
        got = src.take(5, Duration::from_secs(2)).await?;
    }
    t.await??;
    assert_eq!(raws(&got), vec![b"late".to_vec()]);
    Ok(())
}

/// kill -9 and restart of Redis (AOF) while a stream consumer takes and acks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_kill_and_restart_during_stream_consumption_loses_nothing() -> TestResult {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut server = RedisServer::builder().aof(true).start()?;
    let c = RedisConfig {
        command_timeout_ms: 1000,
        block_ms: 200,
        ..cfg(&server, "a")
    };
    let redis = connect_cfg(&c).await;
    const N: usize = 10_000;
    let all = items(N);
    redis.producer().enqueue_raw_many(&all).await?;
    let progress = Arc::new(AtomicUsize::new(0));
    let p = progress.clone();
    let consumer = tokio::spawn(async move {
        let mut src = StreamSource::new(&redis).await?;
        let (mut seen, mut taken, mut errors) = (HashSet::new(), 0usize, 0usize);
        let deadline = Instant::now() + Duration::from_secs(90);
        while seen.len() < N && Instant::now() < deadline {
            match src.take(64, Duration::from_millis(100)).await {
                Ok(batch) => {
                    taken += batch.len();
                    seen.extend(batch.iter().map(|d| d.raw.to_vec()));
                    p.store(seen.len(), Ordering::Relaxed);
                    while src.ack(&batch).await.is_err() {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                Err(_) => {
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        Ok::<_, nemo_redis::RedisError>((seen, taken, errors, redis))
    });
    for round in 0..2 {
        let target = (round + 1) * N / 4;
        let deadline = Instant::now() + Duration::from_secs(30);
        while progress.load(Ordering::Relaxed) < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.restart()?;
    }
    let (seen, taken, errors, redis) = consumer.await??;
    println!(
        "stream restart test: {} distinct of {N}, {taken} deliveries, {errors} errors",
        seen.len()
    );
    assert_eq!(seen.len(), N, "every entry seen at least once");
    assert_eq!(
        redis.stats().processing_len().await?,
        0,
        "nothing left pending"
    );
    Ok(())
}

/// The interrupter ends a long `XREADGROUP BLOCK` at once with nothing read (so nothing enters
/// the pending list), and the source goes on as before.
#[tokio::test]
async fn an_interrupted_blocking_read_returns_at_once_and_reads_nothing() -> TestResult {
    let server = RedisServer::start()?;
    let cfg = RedisConfig {
        block_ms: 60_000,
        ..config(&server, Mode::Stream, KEY)
    };
    let redis = connect_cfg(&cfg).await;
    let mut src = StreamSource::new(&redis).await?;
    take_interrupted(&mut src).await?;
    let pending = server.cli(&["XPENDING", KEY, "nemo-bridge"])?;
    assert!(pending.starts_with('0'), "nothing pending: {pending}");
    redis
        .producer()
        .enqueue_raw_many(&[b"after".as_slice()])
        .await?;
    let got = src.take(10, Duration::from_secs(60)).await?;
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].raw[..], b"after");
    src.ack(&got).await?;
    Ok(())
}
