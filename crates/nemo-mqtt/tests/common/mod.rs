//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fault;

use std::time::Duration;

use bytes::Bytes;
use nemo_backoff::{Backoff, BackoffConfig, Jitter};
use nemo_events::Qos;
use nemo_mqtt::{MqttConfig, OutMessage, Received, Subscriber};

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Quick reconnects for tests (50 ms .. 500 ms).
pub fn fast_backoff() -> Backoff {
    Backoff::new(&BackoffConfig {
        initial_ms: 50,
        max_ms: 500,
        multiplier: 2.0,
        jitter: Jitter::None,
        ..Default::default()
    })
}

/// A backoff that never retries: connect errors come back at once.
pub fn no_retry() -> Backoff {
    Backoff::new(&BackoffConfig {
        max_attempts: Some(0),
        ..Default::default()
    })
}

pub fn cfg(url: &str, client_id: &str) -> MqttConfig {
    MqttConfig {
        client_id: client_id.into(),
        connect_timeout_s: 5,
        confirm_timeout_s: 10,
        ..MqttConfig::for_url(url)
    }
}

pub fn msg(topic: &str, payload: &[u8], qos: Qos, retain: bool) -> OutMessage {
    OutMessage {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload),
        qos,
        retain,
    }
}

/// Subscribe with a fresh client id and wait for one message.
pub async fn sub(url: &str, id: &str, filter: &str) -> Subscriber {
    Subscriber::connect_with_backoff(cfg(url, id), &[filter], Qos::ExactlyOnce, fast_backoff())
        .await
        .unwrap()
}

/// The next message within `secs`, or `None`.
pub async fn next(sub: &mut Subscriber, secs: u64) -> Option<Received> {
    tokio::time::timeout(Duration::from_secs(secs), sub.recv())
        .await
        .ok()
        .flatten()
}

/// Parse a status document.
pub fn status_state(r: &Received) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
    v["state"].as_str().unwrap_or_default().to_string()
}
