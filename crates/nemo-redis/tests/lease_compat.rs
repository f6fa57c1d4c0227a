//! Lease handover, status key, control list, pub/sub, producer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use nemo_redis::{
    BridgeStatus, ControlCommand, EventSource, Lease, LeaseKeeper, Mode, PubSubSource, RedisConfig,
    RedisError, StatusRefresher,
};
use nemo_testkit::RedisServer;

#[tokio::test]
async fn lease_handover_between_two_holders() -> TestResult {
    let server = RedisServer::start()?;
    let cfg = RedisConfig {
        lease_ttl_ms: 600,
        ..config(&server, Mode::List, "q")
    };
    let redis = connect_cfg(&cfg).await;
    let mut first = redis.lease();
    let mut second = redis.lease();
    assert_eq!(first.key(), "{q}:lease");
    assert!(first.acquire("token-1").await?);
    assert!(
        first.acquire("token-1").await?,
        "re-acquire by the holder prolongs"
    );
    assert!(!second.acquire("token-2").await?, "held by the first");
    assert!(
        matches!(second.renew().await, Err(RedisError::LeaseLost { .. })),
        "renew by a non-holder fails"
    );
    let pttl: i64 = server.cli(&["PTTL", "{q}:lease"])?.parse()?;
    assert!(pttl > 0 && pttl <= 600, "{pttl}");
    first.renew().await?;
    // Release hands over at once.
    assert!(first.release().await?);
    assert!(second.acquire("token-2").await?);
    assert_eq!(second.holder().await?.as_deref(), Some("token-2"));
    assert!(matches!(
        first.renew().await,
        Err(RedisError::LeaseLost { .. })
    ));
    assert!(
        !first.release().await?,
        "release by a non-holder does nothing"
    );
    assert_eq!(second.holder().await?.as_deref(), Some("token-2"));
    // Second "dies" without release: its TTL lapses, first takes over (standby polling).
    let start = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(10),
        first.acquire_wait("token-1", Duration::from_millis(50)),
    )
    .await??;
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "took over only after the TTL lapsed"
    );
    assert!(matches!(
        second.renew().await,
        Err(RedisError::LeaseLost { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn lease_keeper_renews_and_reports_loss_at_once() -> TestResult {
    let server = RedisServer::start()?;
    let cfg = RedisConfig {
        lease_ttl_ms: 300,
        ..config(&server, Mode::List, "q")
    };
    let redis = connect_cfg(&cfg).await;
    let mut lease = redis.lease();
    let token = Lease::new_token();
    assert!(lease.acquire(&token).await?);
    let keeper = LeaseKeeper::spawn(lease);
    let mut held = keeper.watch();
    // Well past several TTLs it is still ours: the keeper renews.
    let mut other = redis.lease();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!other.acquire("intruder").await?);
        assert!(keeper.is_held());
    }
    // Someone steals it (e.g. an operator DEL + another bridge): reported false.
    server.cli(&["SET", "{q}:lease", "intruder"])?;
    tokio::time::timeout(Duration::from_secs(5), held.wait_for(|h| !*h)).await??;
    assert!(!keeper.is_held());
    assert!(
        !keeper.release().await?,
        "not ours any more: nothing released"
    );
    assert_eq!(server.cli(&["GET", "{q}:lease"])?, "intruder");

    // Clean release by the keeper.
    server.cli(&["DEL", "{q}:lease"])?;
    let mut l = redis.lease();
    assert!(l.acquire("t").await?);
    let k = LeaseKeeper::spawn(l);
    assert!(k.release().await?);
    assert_eq!(server.cli(&["EXISTS", "{q}:lease"])?, "0");
    Ok(())
}

#[tokio::test]
async fn status_key_setex_and_refresher() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect(&server, Mode::List, "q").await;
    let status = redis.status_key();
    assert_eq!(status.key(), "NEMO_mqtt_bridge_status");
    status.set(BridgeStatus::Connected).await?;
    assert_eq!(
        server.cli(&["GET", "NEMO_mqtt_bridge_status"])?,
        "connected"
    );
    let ttl: i64 = server.cli(&["TTL", "NEMO_mqtt_bridge_status"])?.parse()?;
    assert!(ttl > 0 && ttl <= 90, "{ttl}");
    // The refresher writes at once, on change, and periodically (keeps the TTL up).
    server.cli(&["DEL", "NEMO_mqtt_bridge_status"])?;
    let r = StatusRefresher::spawn(
        status,
        BridgeStatus::Disconnected,
        Duration::from_millis(100),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.cli(&["GET", "NEMO_mqtt_bridge_status"])? != "disconnected"
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.cli(&["GET", "NEMO_mqtt_bridge_status"])?,
        "disconnected"
    );
    r.set(BridgeStatus::Connected);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.cli(&["GET", "NEMO_mqtt_bridge_status"])? != "connected"
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.cli(&["GET", "NEMO_mqtt_bridge_status"])?,
        "connected"
    );
    server.cli(&["EXPIRE", "NEMO_mqtt_bridge_status", "5"])?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while server
        .cli(&["TTL", "NEMO_mqtt_bridge_status"])?
        .parse::<i64>()?
        <= 5
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ttl: i64 = server.cli(&["TTL", "NEMO_mqtt_bridge_status"])?.parse()?;
    assert!(ttl > 5 && ttl <= 90, "refreshed: {ttl}");
    r.stop(BridgeStatus::Disconnected).await?;
    assert_eq!(
        server.cli(&["GET", "NEMO_mqtt_bridge_status"])?,
        "disconnected"
    );
    Ok(())
}

#[tokio::test]
async fn control_list_reads_commands_oldest_first() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect(&server, Mode::List, "q").await;
    let control = redis.control_list().await?;
    assert_eq!(control.poll().await?, None);
    assert_eq!(
        control.next(Duration::from_millis(100)).await?,
        None,
        "timeout is not an error"
    );
    // The plugin LPUSHes.
    server.cli(&["LPUSH", "NEMO_mqtt_bridge_control", "reload_config"])?;
    server.cli(&["LPUSH", "NEMO_mqtt_bridge_control", "self_destruct"])?;
    assert_eq!(
        control.next(Duration::from_secs(1)).await?,
        Some(ControlCommand::ReloadConfig)
    );
    assert_eq!(
        control.poll().await?,
        Some(ControlCommand::Unknown("self_destruct".into()))
    );
    let c2 = control.clone();
    let waiter = tokio::spawn(async move { c2.next(Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.cli(&["LPUSH", "NEMO_mqtt_bridge_control", "reload_config"])?;
    assert_eq!(waiter.await??, Some(ControlCommand::ReloadConfig));
    Ok(())
}

#[tokio::test]
async fn pubsub_receives_and_counts_drops_when_buffer_full() -> TestResult {
    let server = RedisServer::start()?;
    let cfg = RedisConfig {
        pubsub_buffer: 10,
        ..config(&server, Mode::Pubsub, "chan")
    };
    let redis = connect_cfg(&cfg).await;
    let mut src = PubSubSource::new(&redis).await?;
    redis.producer().enqueue_raw(b"hello").await?;
    let got = src.take(10, Duration::from_secs(5)).await?;
    assert_eq!(&got[0].raw[..], b"hello");
    src.ack(&got).await?;
    // 100 more without taking: 10 buffered, 90 dropped and counted.
    redis.producer().enqueue_raw_many(&items(100)).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while src.dropped() < 90 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(src.dropped(), 90);
    let got = src.take(100, Duration::ZERO).await?;
    let got_raw: Vec<Vec<u8>> = got.iter().map(|d| d.raw.to_vec()).collect();
    assert_eq!(got_raw.len(), 10, "exactly the buffer's worth survives");
    let all = items(100);
    let pos: Vec<usize> = got_raw
        .iter()
        .map(|r| all.iter().position(|a| a == r).unwrap())
        .collect();
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "survivors keep their order: {pos:?}"
    );
    src.dead_letter(&got[0], "bad").await?;
    assert_eq!(redis.stats().dead_len().await?, 1);
    Ok(())
}

#[tokio::test]
async fn producer_enqueue_item_like_the_plugin() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect(&server, Mode::List, "nemo_mqtt_events").await;
    let raw = br#"{"topic": "nemo/tools/12/enabled", "payload": "{\"event\": \"tool_enabled\"}", "qos": 1, "retain": false, "timestamp": 1760623352.94}"#;
    let item = nemo_events::QueueItem::parse(raw)?;
    redis.producer().enqueue(&item).await?;
    let stored = server.cli(&["LINDEX", "nemo_mqtt_events", "0"])?;
    assert_eq!(stored, item.to_json());
    let back = nemo_events::QueueItem::parse(stored.as_bytes())?;
    assert_eq!(back.to_json(), item.to_json());
    Ok(())
}
