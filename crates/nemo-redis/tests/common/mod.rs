//! Shared helpers of the integration tests (each test owns its redis-server).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use nemo_backoff::BackoffConfig;
use nemo_redis::{Mode, Redis, RedisConfig};
use nemo_testkit::RedisServer;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A quick-reconnect backoff for fault tests.
pub fn fast_backoff() -> BackoffConfig {
    BackoffConfig {
        initial_ms: 50,
        max_ms: 500,
        ..Default::default()
    }
}

pub fn config(server: &RedisServer, mode: Mode, key: &str) -> RedisConfig {
    RedisConfig {
        url: server.url(),
        mode,
        key: key.into(),
        block_ms: 500,
        ..Default::default()
    }
}

pub async fn connect(server: &RedisServer, mode: Mode, key: &str) -> Redis {
    Redis::connect(&config(server, mode, key), &fast_backoff())
        .await
        .expect("connect")
}

pub async fn connect_cfg(cfg: &RedisConfig) -> Redis {
    Redis::connect(cfg, &fast_backoff()).await.expect("connect")
}

/// `item-00042`-style unique items, oldest first.
pub fn items(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("item-{i:07}").into_bytes())
        .collect()
}

pub fn cli_len(server: &RedisServer, key: &str) -> u64 {
    server.cli(&["LLEN", key]).unwrap().parse().unwrap()
}

/// A configuration for `url` (e.g. a Sentinel or Cluster set of nemo-testkit).
pub fn config_url(url: &str, mode: Mode, key: &str) -> RedisConfig {
    RedisConfig {
        url: url.into(),
        mode,
        key: key.into(),
        block_ms: 500,
        ..Default::default()
    }
}

/// A take of `src` with a 60 s wait, interrupted by its interrupter after 200 ms: it must
/// return nothing (a nil reply, not an error), long before the wait ends.
pub async fn take_interrupted<S: nemo_redis::EventSource>(src: &mut S) -> TestResult
where
    S::Error: Send + Sync + 'static,
{
    let interrupt = src.interrupter().expect("the source can be interrupted");
    let t = std::time::Instant::now();
    let (got, ()) = tokio::join!(src.take(10, std::time::Duration::from_secs(60)), async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        interrupt.interrupt().await;
    });
    assert!(got?.is_empty());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t.elapsed()
    );
    Ok(())
}
