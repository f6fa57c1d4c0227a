//! List mode against a real redis-server: FIFO, crash recovery, nack, restarts, resync.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use nemo_redis::{EventSource, ListSource, Mode, Redis, RedisConfig};
use nemo_testkit::RedisServer;

const KEY: &str = "nemo_mqtt_events";
const PROCESSING: &str = "{nemo_mqtt_events}:processing";

#[tokio::test]
async fn fifo_10k_take_ack_in_order() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect(&server, Mode::List, KEY).await;
    let all = items(10_000);
    assert_eq!(redis.producer().enqueue_raw_many(&all).await?, 10_000);
    let mut src = ListSource::new(&redis).await?;
    let mut seen = Vec::new();
    let sizes = [1usize, 7, 100, 256, 33];
    let mut i = 0;
    while seen.len() < all.len() {
        let batch = src
            .take(sizes[i % sizes.len()], Duration::from_millis(50))
            .await?;
        assert!(batch.len() <= sizes[i % sizes.len()]);
        assert!(
            !batch.is_empty(),
            "queue ran dry after {} items",
            seen.len()
        );
        assert!(batch.iter().all(|d| !d.redelivered));
        src.ack(&batch).await?;
        seen.extend(batch.into_iter().map(|d| d.raw.to_vec()));
        i += 1;
    }
    assert_eq!(seen, all, "items must come out oldest first");
    assert!(src.take(10, Duration::from_millis(20)).await?.is_empty());
    assert_eq!(cli_len(&server, PROCESSING), 0);
    assert_eq!(cli_len(&server, KEY), 0);
    assert_eq!(src.in_flight(), 0);
    Ok(())
}

#[tokio::test]
async fn take_never_reads_ahead_of_max() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect(&server, Mode::List, KEY).await;
    redis.producer().enqueue_raw_many(&items(1000)).await?;
    let mut src = ListSource::new(&redis).await?;
    let batch = src.take(10, Duration::ZERO).await?;
    assert_eq!(batch.len(), 10);
    assert_eq!(cli_len(&server, PROCESSING), 10);
    assert_eq!(cli_len(&server, KEY), 990);
    assert_eq!(redis.stats().depth().await?, 990);
    assert_eq!(redis.stats().processing_len().await?, 10);
    assert_eq!(src.depth().await?, Some(990));
    Ok(())
}

#[tokio::test]
async fn crash_recovery_delivers_processing_first_in_order() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect(&server, Mode::List, KEY).await;
    let all = items(50);
    redis.producer().enqueue_raw_many(&all).await?;
    {
        let mut dead_bridge = ListSource::new(&redis).await?;
        let first = dead_bridge.take(8, Duration::ZERO).await?;
        assert_eq!(first.len(), 8);
        // Acks item 2 only, then "crashes" (dropped without ack/nack).
        dead_bridge.ack(&first[2..3]).await?;
    }
    assert_eq!(cli_len(&server, PROCESSING), 7);
    let mut src = ListSource::new(&redis).await?;
    let b1 = src.take(3, Duration::ZERO).await?;
    let b2 = src.take(10, Duration::ZERO).await?;
    let expect_recovered: Vec<&[u8]> = [0, 1, 3, 4, 5, 6, 7]
        .iter()
        .map(|&i| all[i].as_slice())
        .collect();
    let got: Vec<&[u8]> = b1.iter().chain(b2.iter()).map(|d| &d.raw[..]).collect();
    assert_eq!(
        &got[..7],
        &expect_recovered[..],
        "recovered items first, in original order"
    );
    assert!(
        b1.iter().chain(b2.iter().take(4)).all(|d| d.redelivered),
        "recovered items are flagged"
    );
    assert_eq!(
        &got[7..],
        [&all[8][..], &all[9], &all[10], &all[11], &all[12], &all[13]]
    );
    assert!(
        b2[4..].iter().all(|d| !d.redelivered),
        "fresh items are not flagged"
    );
    src.ack(&b1).await?;
    src.ack(&b2).await?;
    let rest = src.take(100, Duration::ZERO).await?;
    assert_eq!(rest.len(), 50 - 14);
    assert_eq!(rest[0].raw, all[14]);
    src.ack(&rest).await?;
    assert_eq!(cli_len(&server, PROCESSING), 0);
    Ok(())
}

#[tokio::test]
async fn recovery_of_a_large_processing_list_keeps_order() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect(&server, Mode::List, KEY).await;
    let all = items(25_000); // more than one recovery chunk
    redis.producer().enqueue_raw_many(&all).await?;
    {
        let mut dead = ListSource::new(&redis).await?;
        let mut n = 0;
        while n < 25_000 {
            n += dead.take(5_000, Duration::ZERO).await?.len();
        }
    }
    let mut src = ListSource::new(&redis).await?;
    assert_eq!(src.recover().await?, 25_000);
    let mut seen = Vec::new();
    loop {
        let b = src.take(4096, Duration::ZERO).await?;
        if b.is_empty() {
            break;
        }
        assert!(b.iter().all(|d| d.redelivered));
        src.ack(&b).await?;
        seen.extend(b.into_iter().map(|d| d.raw.to_vec()));
    }
    assert_eq!(seen, all);
    Ok(())
}

#[tokio::test]
async fn nack_puts_items_back_at_the_head_in_order() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect(&server, Mode::List, KEY).await;
    let all = items(20);
    redis.producer().enqueue_raw_many(&all).await?;
    let mut src = ListSource::new(&redis).await?;
    let b = src.take(6, Duration::ZERO).await?;
    src.ack(&b[..2]).await?;
    src.nack(&b[2..]).await?;
    assert_eq!(cli_len(&server, PROCESSING), 0);
    let again = src.take(6, Duration::ZERO).await?;
    let raws: Vec<&[u8]> = again.iter().map(|d| &d.raw[..]).collect();
    assert_eq!(
        raws,
        [&all[2][..], &all[3], &all[4], &all[5], &all[6], &all[7]]
    );
    assert_eq!(
        again.iter().map(|d| d.redelivered).collect::<Vec<_>>(),
        [true, true, true, true, false, false]
    );
    // nack of everything, twice in a row, keeps order
    src.nack(&again).await?;
    let again2 = src.take(6, Duration::ZERO).await?;
    assert_eq!(
        again2.iter().map(|d| d.raw.clone()).collect::<Vec<_>>(),
        again.iter().map(|d| d.raw.clone()).collect::<Vec<_>>()
    );
    Ok(())
}

/// Acks normally remove the rightmost items of `processing` in one trim; acks that are not the
/// oldest items (out of order, or with a gap) must still remove exactly the acked ones.
#[tokio::test]
async fn acks_out_of_order_and_with_gaps_remove_exactly_the_acked_items() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect(&server, Mode::List, KEY).await;
    let all = items(6);
    redis.producer().enqueue_raw_many(&all).await?;
    let mut src = ListSource::new(&redis).await?;
    let b = src.take(6, Duration::ZERO).await?;
    let raw = |i: usize| String::from_utf8_lossy(&b[i].raw).into_owned();
    src.ack(&[b[4].clone(), b[5].clone()]).await?; // the newest two, not at the tail
    src.ack(&[b[1].clone(), b[3].clone()]).await?; // a gap
    let left = server.cli(&["LRANGE", PROCESSING, "0", "-1"])?;
    assert_eq!(left, format!("{}\n{}", raw(2), raw(0)), "newest first");
    src.ack(&[b[0].clone(), b[2].clone()]).await?; // the tail again, now with a gap in between
    assert_eq!(cli_len(&server, PROCESSING), 0);
    Ok(())
}

/// A take larger than one `LPUSH` chunk (1,000) keeps the order.
#[tokio::test]
async fn a_take_of_several_thousand_keeps_the_order() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect(&server, Mode::List, KEY).await;
    let all = items(2_500);
    redis.producer().enqueue_raw_many(&all).await?;
    let mut src = ListSource::new(&redis).await?;
    let b = src.take(2_400, Duration::ZERO).await?;
    let got: Vec<Vec<u8>> = b.iter().map(|d| d.raw.to_vec()).collect();
    assert_eq!(got, all[..2_400].to_vec(), "oldest first");
    assert_eq!(cli_len(&server, PROCESSING), 2_400);
    assert_eq!(cli_len(&server, KEY), 100);
    // A crash now: recovery gives them back in the same order, before the 100 left.
    drop(src);
    let mut again = ListSource::new(&redis).await?;
    let mut seen = Vec::new();
    while seen.len() < all.len() {
        let batch = again.take(700, Duration::ZERO).await?;
        assert!(!batch.is_empty());
        again.ack(&batch).await?;
        seen.extend(batch.into_iter().map(|d| d.raw.to_vec()));
    }
    assert_eq!(seen, all);
    assert_eq!(cli_len(&server, PROCESSING), 0);
    Ok(())
}

#[tokio::test]
async fn ack_removes_exactly_one_copy_of_duplicates() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect(&server, Mode::List, KEY).await;
    redis
        .producer()
        .enqueue_raw_many(&[b"same".as_slice(), b"same", b"other"])
        .await?;
    let mut src = ListSource::new(&redis).await?;
    let b = src.take(3, Duration::ZERO).await?;
    assert_eq!(b.len(), 3);
    src.ack(&b[..1]).await?;
    assert_eq!(cli_len(&server, PROCESSING), 2);
    src.ack(&b[1..2]).await?;
    assert_eq!(server.cli(&["LRANGE", PROCESSING, "0", "-1"])?, "other");
    Ok(())
}

#[tokio::test]
async fn blocking_take_waits_then_returns_empty_or_the_new_item() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect(&server, Mode::List, KEY).await;
    let mut src = ListSource::new(&redis).await?;
    assert!(
        src.take(10, Duration::from_millis(100)).await?.is_empty(),
        "timeout is not an error"
    );
    let producer = redis.producer();
    let push = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        producer
            .enqueue_raw_many(&[b"a".as_slice(), b"b", b"c"])
            .await
    });
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < 3 && start.elapsed() < Duration::from_secs(10) {
        got.extend(src.take(10, Duration::from_secs(5)).await?);
    }
    push.await??;
    assert_eq!(
        got.iter().map(|d| &d.raw[..]).collect::<Vec<_>>(),
        [b"a", b"b", b"c"]
    );
    src.ack(&got).await?;
    // While the blocking client waits, the shared client still answers.
    let redis2 = redis.clone();
    let blocked = tokio::spawn(async move {
        let mut s = ListSource::new(&redis2).await?;
        s.take(1, Duration::from_millis(400)).await
    });
    assert_eq!(redis.stats().depth().await?, 0);
    assert!(blocked.await??.is_empty());
    Ok(())
}

/// A command whose reply is lost (the server is frozen past the client-side
/// timeout, then runs it anyway) leaves orphans in processing; the next take
/// puts them back at the head and delivers them, in order.
#[tokio::test]
async fn interrupted_take_is_resynchronised_without_loss_or_reorder() -> TestResult {
    let server = RedisServer::start()?;
    let cfg = RedisConfig {
        command_timeout_ms: 300,
        ..config(&server, Mode::List, KEY)
    };
    let redis = connect_cfg(&cfg).await;
    let all = items(30);
    redis.producer().enqueue_raw_many(&all).await?;
    let mut src = ListSource::new(&redis).await?;
    let first = src.take(5, Duration::ZERO).await?; // 0..5 outstanding
    server.freeze()?;
    let r = src.take(10, Duration::ZERO).await;
    server.thaw()?;
    assert!(
        r.is_err(),
        "the frozen take must fail (client-side timeout)"
    );
    // Wait until the server has executed the delayed script: items 5..15 orphaned in processing.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cli_len(&server, PROCESSING) != 15 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        cli_len(&server, PROCESSING),
        15,
        "the delayed take ran on the server"
    );
    let next = src.take(10, Duration::ZERO).await?;
    let raws: Vec<Vec<u8>> = next.iter().map(|d| d.raw.to_vec()).collect();
    assert_eq!(raws, all[5..15].to_vec(), "orphans come next, in order");
    src.ack(&first).await?;
    src.ack(&next).await?;
    let rest = src.take(100, Duration::ZERO).await?;
    assert_eq!(
        rest.iter().map(|d| d.raw.to_vec()).collect::<Vec<_>>(),
        all[15..].to_vec()
    );
    src.ack(&rest).await?;
    assert_eq!(cli_len(&server, PROCESSING), 0);
    Ok(())
}

/// kill -9 and restart of Redis (AOF) while a consumer takes and acks: every
/// item is seen at least once, and nothing stays behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_kill_and_restart_during_consumption_loses_nothing() -> TestResult {
    let mut server = RedisServer::builder().aof(true).start()?;
    let cfg = RedisConfig {
        command_timeout_ms: 1000,
        block_ms: 200,
        ..config(&server, Mode::List, KEY)
    };
    let redis = connect_cfg(&cfg).await;
    const N: usize = 20_000;
    let all = items(N);
    redis.producer().enqueue_raw_many(&all).await?;
    let progress = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (p, d) = (progress.clone(), done.clone());
    let consumer = tokio::spawn(async move {
        let mut src = ListSource::new(&redis).await?;
        let mut seen = HashSet::new();
        let mut taken = 0usize;
        let mut errors = 0usize;
        let deadline = Instant::now() + Duration::from_secs(90);
        while seen.len() < N && Instant::now() < deadline {
            match src.take(64, Duration::from_millis(100)).await {
                Ok(batch) => {
                    // "publish", then ack; a failed ack is retried until it succeeds.
                    taken += batch.len();
                    for d in &batch {
                        seen.insert(d.raw.to_vec());
                    }
                    p.store(seen.len(), Ordering::Relaxed);
                    while let Err(_e) = src.ack(&batch).await {
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
        d.store(true, Ordering::Relaxed);
        Ok::<_, nemo_redis::RedisError>((seen, taken, errors))
    });
    // Let it get going, then crash the server twice.
    for round in 0..2 {
        let target = (round + 1) * N / 4;
        let deadline = Instant::now() + Duration::from_secs(30);
        while progress.load(Ordering::Relaxed) < target
            && Instant::now() < deadline
            && !done.load(Ordering::Relaxed)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.restart()?;
    }
    let (seen, taken, errors) = consumer.await??;
    println!(
        "restart test: {} distinct of {N}, {taken} deliveries ({} duplicates), {errors} errors",
        seen.len(),
        taken - seen.len()
    );
    assert_eq!(seen.len(), N, "every item seen at least once");
    assert!(all.iter().all(|i| seen.contains(i)));
    assert_eq!(
        cli_len(&server, PROCESSING),
        0,
        "nothing left in processing"
    );
    assert_eq!(cli_len(&server, KEY), 0);
    Ok(())
}

#[tokio::test]
async fn password_in_url_works_and_is_never_shown() -> TestResult {
    let server = RedisServer::builder().password("s3cret-pw").start()?;
    let redis = connect(&server, Mode::List, KEY).await;
    redis.producer().enqueue_raw(b"x").await?;
    let mut src = ListSource::new(&redis).await?;
    assert_eq!(src.take(1, Duration::ZERO).await?[0].raw, &b"x"[..]);
    assert!(!format!("{redis:?}").contains("s3cret-pw"));
    let bad = RedisConfig {
        url: server.url().replace("s3cret-pw", "wrong-pw"),
        ..Default::default()
    };
    let err = Redis::connect(&bad, &fast_backoff()).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("***") && !msg.contains("wrong-pw"), "{msg}");
    Ok(())
}

#[tokio::test]
async fn tls_with_private_ca() -> TestResult {
    let certs = nemo_testkit::Certs::generate()?;
    let server = RedisServer::builder().tls(certs.clone()).start()?;
    assert!(server.url().starts_with("rediss://"));
    let cfg = RedisConfig {
        ca_file: Some(certs.ca.clone()),
        ..config(&server, Mode::List, KEY)
    };
    let redis = connect_cfg(&cfg).await;
    redis.producer().enqueue_raw(b"over tls").await?;
    let mut src = ListSource::new(&redis).await?;
    let b = src.take(1, Duration::ZERO).await?;
    assert_eq!(b[0].raw, &b"over tls"[..]);
    src.ack(&b).await?;
    // Without the CA the server certificate is not trusted.
    let untrusted = config(&server, Mode::List, KEY);
    assert!(Redis::connect(&untrusted, &fast_backoff()).await.is_err());
    Ok(())
}

/// A TCP front for `to` that cuts the first `cut` connections off in the middle of the TLS
/// handshake (reads the ClientHello, then closes), and forwards the rest. Returns its port and
/// the number of connections it accepted.
fn cutting_front(to: u16, cut: usize) -> (u16, Arc<AtomicUsize>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let n = count.fetch_add(1, Ordering::SeqCst);
            if n < cut {
                let mut c = conn;
                let mut hello = [0u8; 512];
                let _ = c.read(&mut hello);
                let _ = c.shutdown(std::net::Shutdown::Both);
                continue;
            }
            let Ok(up) = std::net::TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            let (mut a, mut b) = (conn.try_clone().unwrap(), up.try_clone().unwrap());
            let (mut c, mut d) = (conn, up);
            std::thread::spawn(move || std::io::copy(&mut a, &mut b));
            std::thread::spawn(move || std::io::copy(&mut d, &mut c));
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn a_tls_handshake_cut_off_at_the_start_is_retried_a_certificate_verdict_is_not() -> TestResult
{
    let certs = nemo_testkit::Certs::generate()?;
    let server = RedisServer::builder().tls(certs.clone()).start()?;
    let (front, accepted) = cutting_front(server.port(), 3);
    let cfg = RedisConfig {
        url: server
            .url()
            .replace(&format!(":{}/", server.port()), &format!(":{front}/")),
        ca_file: Some(certs.ca.clone()),
        ..config(&server, Mode::List, KEY)
    };
    assert!(cfg.url.contains(&format!(":{front}/")), "{}", cfg.url);
    // One attempt (tools): the cut-off handshake is reported at once, as transient.
    let err = Redis::connect(&cfg, &fast_backoff()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    // The service's connect waits it out.
    let redis = tokio::time::timeout(
        Duration::from_secs(20),
        Redis::connect_retrying(&cfg, &fast_backoff()),
    )
    .await
    .expect("connect retried the cut-off handshakes")?;
    assert!(
        accepted.load(Ordering::SeqCst) >= 4,
        "three cut off, then through"
    );
    redis
        .producer()
        .enqueue_raw(b"after the cut-off handshakes")
        .await?;
    // Without the CA: the certificate verdict is final, at once (no retrying forever).
    let untrusted = RedisConfig {
        ca_file: None,
        ..cfg.clone()
    };
    let t = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        Redis::connect_retrying(&untrusted, &fast_backoff()),
    )
    .await
    .expect("a certificate verdict is not retried")
    .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("certificate verify failed"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    Ok(())
}

#[tokio::test]
async fn source_for_mode_and_invalid_config_rejected_before_connecting() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect(&server, Mode::List, KEY).await;
    let mut s = redis.source().await?;
    assert!(s.take(1, Duration::ZERO).await?.is_empty());
    let bad = RedisConfig {
        key: "a{b".into(),
        ..config(&server, Mode::List, KEY)
    };
    assert!(matches!(
        Redis::connect(&bad, &fast_backoff()).await,
        Err(nemo_redis::RedisError::Config(_))
    ));
    Ok(())
}

/// The interrupter ends a long blocking take at once, with nothing taken (a nil reply, not an
/// error), and the source goes on as before; interrupting when nothing waits does nothing.
#[tokio::test]
async fn an_interrupted_blocking_take_returns_at_once_and_the_source_goes_on() -> TestResult {
    let server = RedisServer::start()?;
    let cfg = RedisConfig {
        block_ms: 60_000,
        ..config(&server, Mode::List, KEY)
    };
    let redis = connect_cfg(&cfg).await;
    let mut src = ListSource::new(&redis).await?;
    let interrupt = src.interrupter().expect("list mode can be interrupted");
    interrupt.interrupt().await; // nothing blocked: no effect, no error
    for _ in 0..3 {
        take_interrupted(&mut src).await?;
    }
    assert_eq!(cli_len(&server, PROCESSING), 0);
    redis
        .producer()
        .enqueue_raw_many(&[b"after".as_slice()])
        .await?;
    let got = src.take(10, Duration::from_secs(60)).await?;
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].raw[..], b"after");
    src.ack(&got).await?;
    assert_eq!(cli_len(&server, PROCESSING), 0);
    Ok(())
}

/// Interrupts racing with pushes (every few ms, 2,000 items pushed one by one): every item is
/// delivered exactly once, in order — an unblocked BLMOVE either moved an item and returned it,
/// or moved nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupts_racing_with_pushes_lose_and_reorder_nothing() -> TestResult {
    const N: usize = 2_000;
    let server = RedisServer::start()?;
    let cfg = RedisConfig {
        block_ms: 60_000,
        ..config(&server, Mode::List, KEY)
    };
    let redis = connect_cfg(&cfg).await;
    let mut src = ListSource::new(&redis).await?;
    let interrupt = src.interrupter().expect("list mode can be interrupted");
    let all = items(N);
    let producer = redis.producer();
    let to_push = all.clone();
    let push = tokio::spawn(async move {
        for (i, item) in to_push.iter().enumerate() {
            producer.enqueue_raw_many(&[item.as_slice()]).await?;
            if i % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Ok::<_, nemo_redis::RedisError>(())
    });
    let done = Arc::new(AtomicBool::new(false));
    let (d, i) = (done.clone(), interrupt.clone());
    let interrupts = tokio::spawn(async move {
        let mut n = 0u64;
        while !d.load(Ordering::Relaxed) {
            i.interrupt().await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        n
    });
    let mut got = Vec::new();
    let t = Instant::now();
    while got.len() < N && t.elapsed() < Duration::from_secs(60) {
        let batch = src.take(7, Duration::from_secs(60)).await?;
        src.ack(&batch).await?;
        got.extend(batch.into_iter().map(|d| d.raw.to_vec()));
    }
    done.store(true, Ordering::Relaxed);
    push.await??;
    let sent = interrupts.await?;
    assert!(sent > 10, "the interrupts ran ({sent})");
    assert_eq!(got.len(), N, "all delivered");
    assert!(got == all, "exactly once, in order");
    assert!(
        src.take(10, Duration::from_millis(50)).await?.is_empty(),
        "nothing left"
    );
    assert_eq!(cli_len(&server, PROCESSING), 0);
    assert_eq!(cli_len(&server, KEY), 0);
    Ok(())
}
