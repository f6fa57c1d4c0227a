//! Messages the client had accepted but not yet written when the connection was lost must fail
//! — never be sent by the client on the next connection.
//!
//! Why it matters: the bridge republishes unconfirmed items in order after a reconnect. Paho C
//! 1.3.16, on a connection loss with a clean session, fails the messages in flight but keeps
//! the PUBLISH commands still waiting in its queue and writes them right after the reconnect,
//! *ahead of* the bridge's republish of the older, failed ones: later events overtook earlier
//! ones (the first-delivery order violations of the broker-kill soak, e.g. `1440 then 1280`).
//! The vendored Paho carries a fix (`vendor/paho-mqtt-sys/PATCHED.md`, patch 2).
//!
//! The scenario: a frozen broker (SIGSTOP) never answers, so with `inflight = 8` at most 8
//! messages are in flight and the rest wait in the client's queue; then the broker is killed and
//! restarted, a subscriber connects, and the publisher reconnects after its backoff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{cfg, msg, next, sub};
use nemo_backoff::{Backoff, BackoffConfig, Jitter};
use nemo_events::Qos;
use nemo_mqtt::{EventSink, MqttConfig, Publisher, WhenDisconnected};
use nemo_testkit::Mosquitto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_queued_in_the_client_at_a_connection_loss_fail_and_are_never_sent_later()
-> common::TestResult {
    const N: usize = 40;
    let mut broker = Mosquitto::builder().persistence(false).start()?;
    let url = broker.url();
    let pub_cfg = MqttConfig {
        inflight: 8,
        when_disconnected: WhenDisconnected::Fail,
        ..cfg(&url, "queued-pub")
    };
    // Reconnect only after a second: the subscriber must be on the new broker first.
    let backoff = Backoff::new(&BackoffConfig {
        initial_ms: 1_000,
        max_ms: 1_000,
        jitter: Jitter::None,
        ..Default::default()
    });
    let publisher = Publisher::connect(pub_cfg, backoff).await?;
    let mut state = publisher.state();

    broker.freeze()?;
    let confirms: Vec<_> = (0..N)
        .map(|i| {
            publisher.publish(msg(
                "queued/t",
                format!("{i}").as_bytes(),
                Qos::AtLeastOnce,
                false,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| {
        broker.kill();
        broker.restart()
    })?;
    let mut subscriber = sub(&url, "queued-sub", "queued/#").await;

    let results =
        tokio::time::timeout(Duration::from_secs(15), futures::future::join_all(confirms)).await?;
    let confirmed: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| i)
        .collect();
    // The publisher is back on the restarted broker ...
    tokio::time::timeout(Duration::from_secs(10), async {
        while state.borrow_and_update().reconnects < 1 {
            state.changed().await.unwrap();
        }
    })
    .await?;
    // ... and sends nothing of its own accord.
    let leaked = next(&mut subscriber, 2).await;
    println!(
        "{N} published into a frozen broker: {} confirmed, {} failed; first message the new broker got: {:?}",
        confirmed.len(),
        N - confirmed.len(),
        leaked
            .as_ref()
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
    );
    assert!(
        confirmed.is_empty(),
        "nothing can be confirmed by a frozen, then killed broker: {confirmed:?}"
    );
    assert!(
        leaked.is_none(),
        "the client sent a message queued before the loss on the new connection: {:?}",
        leaked.map(|m| String::from_utf8_lossy(&m.payload).into_owned())
    );
    publisher.shutdown().await?;
    Ok(())
}
