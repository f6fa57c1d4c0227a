//! Two bridges on one NEMO (issue 28, part 8), and a reload of what cannot change live (part 7),
//! against a real redis-server, mosquitto and PostgreSQL (nemo-testkit) with the `bridge` binary.
//!
//! Both bridges take the SAME `mqtt.client_id` (as both take it from NEMO's configuration row).
//! Two connections with one client id close each other: the standby must hold no broker
//! connection until it holds the lock, and must not write the Redis status key. Mosquitto's own
//! log is the witness: it names every connection it accepted and every one it closed because
//! the same id came again ("Client … already connected, closing old connection").
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nemo_testkit::{Mosquitto, RedisServer};
use support::nemo_db::{NemoDatabase, PluginQueue, table_config};
use support::standby::{SHARED_ID, connections_as, kicks, list_config, wait_until};
use support::*;

/// The compatibility status key (nemo-redis `STATUS_KEY`), in the bridge's database (db 1).
const STATUS_KEY: &str = "NEMO_mqtt_bridge_status";

/// The producer: events `0..n` at ~300/s (3 every 10 ms), each batch pushed again until Redis
/// takes it.
fn stream(redis_url: String, n: usize) -> tokio::task::JoinHandle<()> {
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
        let items: Vec<String> = (0..n).map(|s| item(s % 8, s)).collect();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for batch in items.chunks(3) {
            tick.tick().await;
            while p.enqueue_raw_many(batch).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
}

/// Everything the subscriber receives, counted by sequence number, in the background.
fn count_arrivals(mut sub: nemo_mqtt::Subscriber, n: usize) -> Arc<Mutex<Arrivals>> {
    let arrivals = Arc::new(Mutex::new(Arrivals::new(n)));
    let a = arrivals.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.recv().await {
            a.lock().unwrap().note(seq_of(&m));
        }
    });
    arrivals
}

fn status_key(redis: &RedisServer) -> String {
    redis
        .cli(&["GET", STATUS_KEY])
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Redis list mode with the lease (ttl 2 s): a standby with the same client id stays up for
/// 10 s of a 300 events/s stream without one broker connection; the active one is `kill -9`ed
/// mid-stream; the standby takes over within the lease TTL (plus its poll), connects once, and
/// every event arrives. The broker never closes a connection for a duplicate id, and the
/// status key reads `connected` throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_holds_no_broker_connection_and_takes_over_after_kill9() -> TestResult {
    const N: usize = 4_500; // 15 s at 300/s
    const TTL: Duration = Duration::from_millis(2_000);
    let redis = RedisServer::start()?;
    let broker = Mosquitto::start()?;
    let arrivals = count_arrivals(subscriber(&broker.url(), "standby-sub", true).await, N);

    let (setup_a, setup_b) = (Setup::new(), Setup::new());
    let mut a = setup_a.bridge(
        &list_config(&setup_a, "a.toml", &redis.url(), &broker.url()),
        "a",
    );
    assert!(a.wait_ready(Duration::from_secs(20)), "{}", a.log());
    let mut b = setup_b.bridge(
        &list_config(&setup_b, "b.toml", &redis.url(), &broker.url()),
        "b",
    );
    assert!(
        b.wait_log(Duration::from_secs(20), |l| l
            .contains("another bridge is active; waiting as standby")),
        "b is no standby:\n{}",
        b.log()
    );
    assert_eq!(status_key(&redis), "connected", "{}", a.tail(20));

    let producer = stream(redis.url(), N);
    // 10 s of the stream with the standby waiting; the key is looked at every 100 ms.
    let t = Instant::now();
    let mut key_seen = std::collections::BTreeSet::new();
    while t.elapsed() < Duration::from_secs(10) {
        key_seen.insert(status_key(&redis));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = broker.log();
    assert!(b.alive(), "the standby ended:\n{}", b.log());
    assert!(kicks(&log).is_empty(), "kicked: {:?}", kicks(&log));
    assert_eq!(
        connections_as(&log, SHARED_ID),
        1,
        "only the active bridge is connected; broker log:\n{log}"
    );
    assert!(!b.log().contains("mqtt: connected"), "{}", b.log());
    assert_eq!(
        key_seen.into_iter().collect::<Vec<_>>(),
        ["connected"],
        "the status key while a standby waits"
    );
    let before = arrivals.lock().unwrap().unique;
    assert!(before >= 2_500, "{before} events in 10 s; {}", a.tail(20));

    // The active one dies mid-stream; the standby takes over within the lease TTL.
    a.kill9();
    let killed = Instant::now();
    let took_over = wait_until(TTL * 4, || b.log().contains("mqtt: connected"));
    let took_over = took_over.unwrap_or_else(|| panic!("no take-over:\n{}", b.log()));
    // The lease lapses after TTL; the standby tries every TTL/4; connecting takes a moment.
    assert!(
        took_over <= TTL + TTL / 4 + Duration::from_millis(1_000),
        "take-over after {took_over:?}"
    );
    producer.await?;
    let complete = wait_until(Duration::from_secs(30), || {
        arrivals.lock().unwrap().complete()
    });
    let (unique, missing) = {
        let a = arrivals.lock().unwrap();
        (a.unique, a.missing())
    };
    println!(
        "standby: {before} events before the kill, take-over (connected) {took_over:?} after it \
         (lease ttl {TTL:?}); {unique} of {N} delivered; {:?} since the kill",
        killed.elapsed()
    );
    assert!(
        complete.is_some(),
        "lost {} (first {:?}); b:\n{}",
        missing.len(),
        &missing[..missing.len().min(20)],
        b.tail(30)
    );
    let log = broker.log();
    assert!(kicks(&log).is_empty(), "kicked: {:?}", kicks(&log));
    assert_eq!(connections_as(&log, SHARED_ID), 2, "{log}");
    assert!(
        wait_until(Duration::from_secs(5), || status_key(&redis) == "connected").is_some(),
        "status key after the take-over: {}",
        status_key(&redis)
    );
    Ok(())
}

/// A bridge that loses the lock (frozen past the lease TTL, then thawed) leaves the broker and
/// the status key to the one that holds it now: it publishes no `offline`, it does not connect
/// again (no second duplicate-id close after the one its frozen connection got), and the status
/// key keeps reading `connected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_that_lost_the_lock_leaves_broker_and_status_key_alone() -> TestResult {
    let redis = RedisServer::start()?;
    let broker = Mosquitto::start()?;
    let mut status_sub = {
        let cfg = nemo_mqtt::MqttConfig {
            client_id: "standby-status-sub".into(),
            ..nemo_mqtt::MqttConfig::for_url(broker.url())
        };
        nemo_mqtt::Subscriber::connect(cfg, &["test/bridge/status"], nemo_events::Qos::AtLeastOnce)
            .await?
    };
    let (setup_a, setup_b) = (Setup::new(), Setup::new());
    let a = setup_a.bridge(
        &list_config(&setup_a, "a.toml", &redis.url(), &broker.url()),
        "a",
    );
    assert!(a.wait_ready(Duration::from_secs(20)), "{}", a.log());
    let b = setup_b.bridge(
        &list_config(&setup_b, "b.toml", &redis.url(), &broker.url()),
        "b",
    );
    assert!(
        b.wait_log(Duration::from_secs(20), |l| l
            .contains("waiting as standby")),
        "{}",
        b.log()
    );

    a.signal("-STOP");
    assert!(
        b.wait_log(Duration::from_secs(10), |l| l.contains("mqtt: connected")),
        "{}",
        b.log()
    );
    // B's connection closed A's (frozen) one: that is the one close expected.
    assert_eq!(kicks(&broker.log()).len(), 1, "{}", broker.log());
    // Drain the status messages so far (A's and B's `online`).
    let _ = collect(&mut status_sub, Duration::from_millis(500), |_| false).await;
    a.signal("-CONT");
    assert!(
        a.wait_log(Duration::from_secs(10), |l| l.contains("lock lost")),
        "{}",
        a.log()
    );
    // Watch for 5 s: the status key, the broker's closes, the status topic.
    let t = Instant::now();
    let mut key_seen = std::collections::BTreeSet::new();
    while t.elapsed() < Duration::from_secs(5) {
        key_seen.insert(status_key(&redis));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = collect(&mut status_sub, Duration::from_millis(500), |_| false).await;
    let offline: Vec<String> = after
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).to_string())
        .filter(|p| p.contains("offline"))
        .collect();
    let log = broker.log();
    assert_eq!(kicks(&log).len(), 1, "the thawed bridge came back: {log}");
    assert!(offline.is_empty(), "offline published: {offline:?}");
    assert_eq!(
        key_seen.into_iter().collect::<Vec<_>>(),
        ["connected"],
        "the status key after the lock was lost; a:\n{}",
        a.tail(20)
    );
    assert!(
        a.wait_log(Duration::from_secs(10), |l| l
            .contains("waiting as standby")),
        "{}",
        a.tail(20)
    );
    Ok(())
}

/// The same on NEMO's queue table (plugin 2.x, `[nemo] source = "database"`), both bridges
/// taking the client id from NEMO's configuration row: the standby waits on the table's
/// advisory lock with no broker connection through 10 s of a 300 rows/s stream; the active one
/// is `kill -9`ed; its session's lock goes with it and the standby takes over within its lock
/// poll (1 s), connects once, and every row arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_standby_holds_no_broker_connection_and_takes_over_after_kill9() -> TestResult {
    const N: usize = 4_500;
    const ROW_ID: &str = "nemo-bridge-page"; // the client id of the page's row
    let db = NemoDatabase::postgres_v2();
    let broker = Mosquitto::start()?;
    db.insert_configuration_with(broker.port(), None, false);
    let arrivals = count_arrivals(
        subscriber(&broker.url(), "table-standby-sub", true).await,
        N,
    );
    let (setup_a, setup_b) = (Setup::new(), Setup::new());
    let config = |setup: &Setup, name: &str| {
        // The file's broker does not exist: only the row's settings can work.
        table_config(
            setup.dir.path(),
            name,
            &db.url(),
            "mqtt://127.0.0.1:9",
            setup.http,
            "",
        )
    };
    let mut a = setup_a.bridge(&config(&setup_a, "a.toml"), "a");
    assert!(a.wait_ready(Duration::from_secs(20)), "{}", a.log());
    let mut b = setup_b.bridge(&config(&setup_b, "b.toml"), "b");
    assert!(
        b.wait_log(Duration::from_secs(20), |l| l
            .contains("waiting as standby")),
        "b is no standby:\n{}",
        b.log()
    );

    let producer = tokio::spawn({
        let url = db.url();
        async move {
            let mut q = PluginQueue::connect(&url).await;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for chunk in (0..N).collect::<Vec<_>>().chunks(3) {
                tick.tick().await;
                for seq in chunk {
                    q.publish_seq(*seq).await;
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    let log = broker.log();
    assert!(b.alive(), "the standby ended:\n{}", b.log());
    assert!(kicks(&log).is_empty(), "kicked: {:?}", kicks(&log));
    assert_eq!(
        connections_as(&log, ROW_ID),
        1,
        "only the active bridge is connected; broker log:\n{log}"
    );
    assert!(!b.log().contains("mqtt: connected"), "{}", b.log());
    let before = arrivals.lock().unwrap().unique;
    assert!(before >= 2_000, "{before} rows in 10 s; {}", a.tail(20));

    a.kill9();
    let took_over = wait_until(Duration::from_secs(10), || {
        b.log().contains("mqtt: connected")
    });
    let took_over = took_over.unwrap_or_else(|| panic!("no take-over:\n{}", b.log()));
    assert!(
        took_over <= Duration::from_secs(3),
        "take-over after {took_over:?}"
    );
    producer.await?;
    let complete = wait_until(Duration::from_secs(30), || {
        arrivals.lock().unwrap().complete()
    });
    let (unique, missing) = {
        let a = arrivals.lock().unwrap();
        (a.unique, a.missing())
    };
    println!(
        "table standby: {before} rows before the kill, take-over (connected) {took_over:?} \
         after it; {unique} of {N} delivered"
    );
    assert!(
        complete.is_some(),
        "lost {} (first {:?}); b:\n{}",
        missing.len(),
        &missing[..missing.len().min(20)],
        b.tail(30)
    );
    let log = broker.log();
    assert!(kicks(&log).is_empty(), "kicked: {:?}", kicks(&log));
    assert_eq!(connections_as(&log, ROW_ID), 2, "{log}");
    b.kill9();
    Ok(())
}

/// Part 7: a SIGHUP after `[redis] key` and `nemo.database_url` changed in the file gives one
/// warning naming both and saying a restart is needed; the bridge keeps serving the old queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_names_the_settings_that_need_a_restart() -> TestResult {
    let redis = RedisServer::start()?;
    let broker = Mosquitto::start()?;
    let db = NemoDatabase::postgres();
    let setup = Setup::new();
    let nemo = |url: &str| format!("\n[nemo]\ndatabase_url = \"{url}\"\npoll_s = 0\n");
    let cfg = setup.config(
        "reload.toml",
        &redis.url(),
        &broker.url(),
        "",
        &nemo(&db.url()),
    );
    let bridge = setup.ready_bridge(&cfg, "reload");
    let mut sub = subscriber(&broker.url(), "reload-sub", false).await;
    let p = producer(&redis).await;

    let text = std::fs::read_to_string(&cfg)?;
    let new_url = format!("{}?application_name=reloaded", db.url());
    let changed = text
        .replace(&format!("key = \"{KEY}\""), "key = \"another_queue\"")
        .replace(&db.url(), &new_url);
    assert_ne!(changed, text);
    std::fs::write(&cfg, changed)?;
    bridge.signal("-HUP");
    assert!(
        bridge.wait_log(Duration::from_secs(10), |l| l
            .contains("reload: configuration re-read")),
        "{}",
        bridge.log()
    );
    let warnings: Vec<String> = bridge
        .log()
        .lines()
        .filter(|l| l.contains("cannot change while the bridge runs"))
        .map(str::to_string)
        .collect();
    assert_eq!(warnings.len(), 1, "{}", bridge.log());
    let w = &warnings[0];
    assert!(w.contains("WARN"), "{w}");
    assert!(
        w.contains("[redis]") && w.contains("nemo.database_url"),
        "{w}"
    );
    assert!(w.contains("restart"), "{w}");
    assert!(!w.contains("[lease]") && !w.contains("[http]"), "{w}");

    // Events still flow on the old queue.
    for seq in 0..50 {
        p.enqueue_raw(item(seq % 8, seq).as_bytes()).await?;
    }
    let got = collect(&mut sub, Duration::from_secs(10), |g| g.len() >= 50).await;
    assert_eq!(got.len(), 50, "{}", bridge.tail(20));
    assert_eq!(llen(&redis, KEY), 0);
    Ok(())
}
