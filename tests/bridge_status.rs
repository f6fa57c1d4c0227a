//! With `[hmac]` set, the bridge's status is signed like every other message: the retained
//! online and offline documents and the Last Will, which the broker publishes for a bridge
//! that died.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use nemo_events::Qos;
use nemo_mqtt::{MqttConfig, Subscriber};
use nemo_testkit::{Mosquitto, RedisServer};
use support::*;

const KEY: &str = "status-key";
/// `[status] topic` in `Setup::config`.
const STATUS: &str = "test/bridge/status";

/// The next status document, checked against `KEY`; its `state`.
async fn next_state(sub: &mut Subscriber) -> String {
    let got = collect(sub, Duration::from_secs(15), |g| !g.is_empty()).await;
    let m = got.first().expect("a status message");
    let inner = nemo_events::hmac::verify(&m.payload, KEY.as_bytes()).unwrap_or_else(|e| {
        panic!(
            "status not signed with the key ({e}): {:?}",
            String::from_utf8_lossy(&m.payload)
        )
    });
    let v: serde_json::Value = serde_json::from_str(&inner).unwrap();
    v["state"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_offline_and_the_last_will_are_signed() -> TestResult {
    let redis = RedisServer::start()?;
    let broker = Mosquitto::start()?;
    let setup = Setup::new();
    let cfg = setup.config(
        "status.toml",
        &redis.url(),
        &broker.url(),
        "",
        &format!("\n[hmac]\nkey = \"{KEY}\"\n"),
    );
    let sub_cfg = MqttConfig {
        client_id: "status-sub".into(),
        ..MqttConfig::for_url(broker.url())
    };
    let mut sub = Subscriber::connect(sub_cfg, &[STATUS], Qos::AtLeastOnce).await?;

    let mut bridge = setup.bridge(&cfg, "status");
    assert_eq!(next_state(&mut sub).await, "online", "{}", bridge.log());
    bridge.kill9();
    assert_eq!(next_state(&mut sub).await, "offline", "the Last Will");

    let mut bridge = setup.bridge(&cfg, "status-2");
    assert_eq!(next_state(&mut sub).await, "online", "{}", bridge.log());
    bridge.signal("-TERM");
    assert_eq!(next_state(&mut sub).await, "offline", "the graceful stop");
    assert!(bridge.wait_exit(Duration::from_secs(15)).is_some());
    Ok(())
}
