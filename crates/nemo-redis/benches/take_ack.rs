//! Items/s moved through take + ack in list mode, single (max = 1) vs batched
//! (max = 256), 100,000 items, on a private redis-server (nemo-testkit).
//!
//! `cargo bench -p nemo-redis --bench take_ack` (prints numbers; no assertions). Also prints
//! redis-server's CPU time per item (`/proc/<pid>/stat`), the figure to compare when a script
//! changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use nemo_redis::{EventSource, ListSource, Mode, Redis, RedisConfig};

const N: usize = 100_000;

/// Items/s and redis-server CPU µs per item.
async fn run(redis: &Redis, server_pid: u32, max: usize) -> (f64, f64) {
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
    let cpu0 = nemo_testkit::cpu_seconds(server_pid);
    let start = Instant::now();
    let mut n = 0;
    while n < N {
        let batch = src.take(max, Duration::from_millis(100)).await.unwrap();
        n += batch.len();
        src.ack(&batch).await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = nemo_testkit::cpu_seconds(server_pid) - cpu0;
    assert_eq!(redis.stats().processing_len().await.unwrap(), 0);
    (N as f64 / secs, cpu * 1e6 / N as f64)
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
        let pid = server.pid().unwrap_or(0);
        for max in [1usize, 16, 32, 256] {
            let (rate, cpu) = run(&redis, pid, max).await;
            println!(
                "take_ack list mode: max={max:<4} {N} items  {rate:>10.0} items/s  redis-server {cpu:>5.2} us/item"
            );
        }
    });
}
