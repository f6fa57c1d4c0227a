//! Bad items from the field are dead-lettered with the reason and exact bytes, then requeued.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use nemo_events::QueueItem;
use nemo_redis::{DeadLetter, EventSource, ListSource, Mode, Requeue};
use nemo_testkit::RedisServer;

fn bad_items() -> Vec<Vec<u8>> {
    let text = nemo_testkit::fixture("bad-queue-items.jsonl").unwrap();
    let mut out: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["raw"].as_str().unwrap().as_bytes().to_vec()
        })
        .collect();
    // Not UTF-8 at all (the fixture file cannot hold it).
    out.push(
        b"{\"topic\": \"nemo/tools/1/enabled\", \"payload\": \"\xff\xfe\xfd\", \"qos\": 1}"
            .to_vec(),
    );
    out.push(vec![0xc3, 0x28, 0x00, 0xff]);
    out
}

#[tokio::test]
async fn bad_items_are_dead_lettered_with_reason_and_exact_bytes_then_requeued() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect(&server, Mode::List, "nemo_mqtt_events").await;
    let bad = bad_items();
    assert!(bad.len() >= 14);
    let good = br#"{"topic": "nemo/tools/1/enabled", "payload": "{}", "qos": 1, "retain": false, "timestamp": 1.5}"#;
    let mut all = bad.clone();
    all.insert(3, good.to_vec());
    redis.producer().enqueue_raw_many(&all).await?;

    let mut src = ListSource::new(&redis).await?;
    let batch = src.take(100, Duration::ZERO).await?;
    assert_eq!(batch.len(), all.len());
    let mut reasons = Vec::new();
    for d in &batch {
        match QueueItem::parse(&d.raw) {
            Ok(_) => src.ack(std::slice::from_ref(d)).await?,
            Err(e) => {
                reasons.push(e.to_string());
                src.dead_letter(d, &e.to_string()).await?;
            }
        }
    }
    assert_eq!(
        reasons.len(),
        bad.len(),
        "every bad item rejected, the good one passed"
    );
    assert_eq!(
        cli_len(&server, "{nemo_mqtt_events}:processing"),
        0,
        "nothing stuck"
    );
    let dead = redis.dead_letters();
    assert_eq!(dead.len().await?, bad.len() as u64);
    assert_eq!(redis.stats().dead_len().await?, bad.len() as u64);
    let listed = dead.list(0, 100).await?;
    assert_eq!(
        listed.iter().map(|d| d.raw.to_vec()).collect::<Vec<_>>(),
        bad,
        "raw preserved, oldest first"
    );
    assert_eq!(
        listed.iter().map(|d| d.error.clone()).collect::<Vec<_>>(),
        reasons
    );
    assert!(listed.iter().all(|d| d.at > 1.7e9));
    // Stored format: JSON with raw as string, base64 + flag for non-UTF-8.
    let last = server.cli(&["LINDEX", "{nemo_mqtt_events}:dead", "-1"])?;
    let v: serde_json::Value = serde_json::from_str(&last)?;
    assert_eq!(v["raw_base64"], true);
    assert!(v["error"].as_str().is_some() && v["at"].as_f64().is_some());
    let first = server.cli(&["LINDEX", "{nemo_mqtt_events}:dead", "0"])?;
    let v: serde_json::Value = serde_json::from_str(&first)?;
    assert_eq!(v["raw"], "not json at all");
    assert!(v.get("raw_base64").is_none());
    assert_eq!(dead.list(2, 3).await?.len(), 3);
    assert_eq!(dead.list(2, 3).await?[0].raw.to_vec(), bad[2]);

    // Requeue two, then the rest: back in the queue as the original bytes, in order.
    assert_eq!(dead.requeue(Requeue::Count(2)).await?, 2);
    assert_eq!(dead.len().await?, bad.len() as u64 - 2);
    assert_eq!(dead.requeue(Requeue::All).await?, bad.len() as u64 - 2);
    assert_eq!(dead.len().await?, 0);
    let again = src.take(100, Duration::ZERO).await?;
    assert_eq!(
        again.iter().map(|d| d.raw.to_vec()).collect::<Vec<_>>(),
        bad
    );
    Ok(())
}

#[tokio::test]
async fn a_hand_written_dead_record_does_not_block_requeue() -> TestResult {
    let server = RedisServer::start()?;
    let redis = connect(&server, Mode::List, "q").await;
    server.cli(&["RPUSH", "{q}:dead", "garbage that is not a record"])?;
    let rec = DeadLetter::new(b"ok-item", "why").to_json();
    server.cli(&["RPUSH", "{q}:dead", &rec])?;
    let listed = redis.dead_letters().list(0, 10).await?;
    assert!(listed[0].error.starts_with("not a dead-letter record"));
    assert_eq!(redis.dead_letters().requeue(Requeue::All).await?, 2);
    assert_eq!(
        server.cli(&["LRANGE", "q", "0", "-1"])?,
        "ok-item\ngarbage that is not a record"
    );
    Ok(())
}
