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
