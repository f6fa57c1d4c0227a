//! Items/s moved through take + ack in list mode, single (max = 1) vs batched
//! (max = 256), 100,000 items, on a private redis-server (nemo-testkit).
//!
//! `cargo bench -p nemo-redis --bench take_ack` (prints numbers; no assertions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use nemo_redis::{EventSource, ListSource, Mode, Redis, RedisConfig};

const N: usize = 100_000;

async fn run(redis: &Redis, max: usize) -> f64 {
    let items: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            format!(
                r#"{{"topic": "nemo/tools/{}/enabled", "payload": "{{\"event\": \"tool_enabled\", \"n\": {i}}}", "qos": 1, "retain": false, "timestamp": 1760623352.94}}"#,
                i % 97
            )
            .into_bytes()
        })
        .collect();
    redis.producer().enqueue_raw_many(&items).await.unwrap();
    let mut src = ListSource::new(redis).await.unwrap();
    let start = Instant::now();
    let mut n = 0;
    while n < N {
        let batch = src.take(max, Duration::from_millis(100)).await.unwrap();
        n += batch.len();
        src.ack(&batch).await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(redis.stats().processing_len().await.unwrap(), 0);
    N as f64 / secs
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes with --list
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = nemo_testkit::RedisServer::start().unwrap();
    rt.block_on(async {
        let cfg = RedisConfig {
            url: server.url(),
            mode: Mode::List,
            ..Default::default()
        };
        let redis = Redis::connect(&cfg, &nemo_backoff::BackoffConfig::default())
            .await
            .unwrap();
        for max in [1usize, 16, 256] {
            let rate = run(&redis, max).await;
            println!("take_ack list mode: max={max:<4} {N} items  {rate:>10.0} items/s");
        }
    });
}
