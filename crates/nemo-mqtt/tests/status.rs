//! Status topic: retained `online` after connect, `offline` as last will after
//! a crash (a child process killed with SIGKILL: the broker sees the socket
//! close without DISCONNECT), and `offline` after a clean shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use nemo_mqtt::{MqttConfig, Publisher};
use nemo_testkit::Mosquitto;

const CHILD_ENV: &str = "NEMO_MQTT_TEST_CHILD_URL";

/// Not a test on its own: the body of the child process used by
/// `last_will_offline_after_a_crash`. Ignored in normal runs.
#[tokio::test]
#[ignore = "helper process for last_will_offline_after_a_crash"]
async fn child_publisher_that_gets_killed() -> TestResult {
    let url = std::env::var(CHILD_ENV)?;
    let _publisher = Publisher::connect(cfg(&url, "status-child"), fast_backoff()).await?;
    println!("READY");
    tokio::time::sleep(Duration::from_secs(120)).await;
    Ok(())
}

#[tokio::test]
async fn last_will_offline_after_a_crash_and_online_after_connect() -> TestResult {
    let broker = Mosquitto::start()?;
    let url = broker.url();
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "child_publisher_that_gets_killed",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("READY"))
    });
    let ready = tokio::time::timeout(Duration::from_secs(30), ready).await;
    if !matches!(ready, Ok(Ok(true))) {
        let _ = child.kill();
        let _ = child.wait();
        return Err("child publisher did not get ready".into());
    }

    let mut watcher = sub(&url, "status-watcher", "nemo/bridge/status").await;
    let online = next(&mut watcher, 5).await.ok_or("no retained status")?;
    assert!(online.retain);
    assert_eq!(status_state(&online), "online");
    let doc: serde_json::Value = serde_json::from_slice(&online.payload)?;
    assert_eq!(doc["version"], nemo_mqtt::VERSION);
    let since = doc["since"].as_str().ok_or("no since")?;
    time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339)?;

    child.kill()?; // SIGKILL: no DISCONNECT, the broker publishes the will
    child.wait()?;
    let offline = next(&mut watcher, 10)
        .await
        .ok_or("no last will after the crash")?;
    assert_eq!(status_state(&offline), "offline");
    // ...and it is retained for late subscribers.
    let mut late = sub(&url, "status-late", "nemo/bridge/status").await;
    let r = next(&mut late, 5).await.ok_or("will not retained")?;
    assert!(r.retain);
    assert_eq!(status_state(&r), "offline");
    Ok(())
}

#[tokio::test]
async fn offline_after_clean_shutdown() -> TestResult {
    let broker = Mosquitto::start()?;
    let url = broker.url();
    let c = MqttConfig {
        status_topic: "lab/bridge-2/status".into(),
        ..cfg(&url, "status-clean")
    };
    let publisher = Publisher::connect(c, fast_backoff()).await?;
    let mut watcher = sub(&url, "status-watcher2", "lab/+/status").await;
    assert_eq!(
        status_state(&next(&mut watcher, 5).await.ok_or("no online")?),
        "online"
    );
    publisher.shutdown().await?;
    let r = next(&mut watcher, 5)
        .await
        .ok_or("no offline after shutdown")?;
    assert_eq!(status_state(&r), "offline");
    assert!(
        next(&mut watcher, 1).await.is_none(),
        "exactly one offline (the will is not sent on clean disconnect)"
    );
    let mut late = sub(&url, "status-late2", "lab/+/status").await;
    assert_eq!(
        status_state(&next(&mut late, 5).await.ok_or("offline not retained")?),
        "offline"
    );
    Ok(())
}

#[tokio::test]
async fn online_again_after_reconnect() -> TestResult {
    let mut broker = Mosquitto::builder().persistence(false).start()?;
    let url = broker.url();
    let publisher = Publisher::connect(cfg(&url, "status-reconnect"), fast_backoff()).await?;
    let mut state = publisher.state();
    broker.kill();
    broker.restart()?; // no persistence: the retained status is gone
    let s = *tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| s.reconnects == 1 && s.is_connected()),
    )
    .await??;
    assert!(s.is_connected());
    let mut watcher = sub(&url, "status-watcher3", "nemo/bridge/status").await;
    let r = next(&mut watcher, 5)
        .await
        .ok_or("no status after reconnect")?;
    assert_eq!(status_state(&r), "online");
    publisher.shutdown().await?;
    Ok(())
}
