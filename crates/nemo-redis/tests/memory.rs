//! Bounded memory: a 1,000,000-item backlog is consumed in batches of 256
//! without the process growing (nothing is read ahead of the batch).
//! Its own test binary, so no other test shares the process RSS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use nemo_redis::{EventSource, ListSource, Mode};
use nemo_testkit::RedisServer;

const KEY: &str = "nemo_mqtt_events";

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn million_item_backlog_keeps_rss_flat() -> TestResult {
    const N: u64 = 1_000_000;
    // How much of the backlog to drain: 300k by default (~7 s in a debug build);
    // NEMO_MEMORY_DRAIN=1000000 drains it all (~21 s debug).
    let drain: u64 = std::env::var("NEMO_MEMORY_DRAIN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let server = RedisServer::start()?;
    let t0 = Instant::now();
    // Fill the backlog server-side (a Lua loop), 100k per call.
    let script = r#"for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  redis.call('LPUSH', KEYS[1], string.format('{"topic": "nemo/tools/%d/enabled", "payload": "{\\"event\\": \\"tool_enabled\\", \\"n\\": %d}", "qos": 1, "retain": false, "timestamp": 1760623352.94}', i % 97, i))
end
return 1"#;
    for start in (0..N).step_by(100_000) {
        let (a, b) = (start.to_string(), (start + 99_999).to_string());
        assert_eq!(server.cli(&["EVAL", script, "1", KEY, &a, &b])?, "1");
    }
    assert_eq!(cli_len(&server, KEY), N);
    let fill = t0.elapsed();

    let redis = connect(&server, Mode::List, KEY).await;
    let mut src = ListSource::new(&redis).await?;
    // Warm up (allocator, script cache, connection buffers).
    let mut taken = 0u64;
    let mut next_expected = 0u64;
    for _ in 0..20 {
        let b = src.take(256, Duration::ZERO).await?;
        taken += b.len() as u64;
        next_expected += b.len() as u64;
        src.ack(&b).await?;
    }
    assert_eq!(redis.stats().processing_len().await?, 0);
    let before = rss_kib();
    let mut peak = before;
    let t1 = Instant::now();
    let mut batches = 0u64;
    while taken < drain {
        let b = src.take(256, Duration::ZERO).await?;
        assert!(!b.is_empty());
        if batches == 0 {
            // Nothing read ahead: only this batch left the backlog.
            assert_eq!(redis.stats().processing_len().await?, b.len() as u64);
            assert_eq!(redis.stats().depth().await?, N - taken - b.len() as u64);
        }
        // FIFO spot check on the sequence number.
        let first = String::from_utf8_lossy(&b[0].raw).into_owned();
        assert!(
            first.contains(&format!("\\\"n\\\": {next_expected}}}")),
            "{first}"
        );
        next_expected += b.len() as u64;
        taken += b.len() as u64;
        src.ack(&b).await?;
        batches += 1;
        if batches.is_multiple_of(100) {
            peak = peak.max(rss_kib());
        }
    }
    let after = rss_kib();
    peak = peak.max(after);
    let secs = t1.elapsed().as_secs_f64();
    println!(
        "memory: backlog {N} (filled in {:.1}s), drained {} in batches of 256 in {secs:.1}s ({:.0} items/s); \
         RSS before {} KiB, after {} KiB, peak {} KiB, growth {} KiB",
        fill.as_secs_f64(),
        taken - 20 * 256,
        (taken - 20 * 256) as f64 / secs,
        before,
        after,
        peak,
        peak.saturating_sub(before)
    );
    assert!(
        peak.saturating_sub(before) < 20 * 1024,
        "RSS grew by {} KiB",
        peak - before
    );
    assert_eq!(cli_len(&server, "{nemo_mqtt_events}:processing"), 0);
    assert_eq!(cli_len(&server, KEY), N - taken);
    Ok(())
}
