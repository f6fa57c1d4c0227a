//! Publisher and Subscriber against a real mosquitto (nemo-testkit).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use nemo_events::Qos;
use nemo_mqtt::{
    ConnStatus, EventSink, MqttConfig, MqttError, Protocol, Publisher, Secret, WhenDisconnected,
};
use nemo_testkit::Mosquitto;

#[tokio::test]
async fn publish_confirm_qos_0_1_2_and_retain() -> TestResult {
    let broker = Mosquitto::start()?;
    let url = broker.url();
    let mut live = sub(&url, "live-sub", "t/#").await;
    let publisher = Publisher::connect(cfg(&url, "pub-qos"), fast_backoff()).await?;
    assert!(publisher.is_connected());

    // Binary, non-UTF-8 payload bytes must arrive unchanged.
    let cases: [(&str, &[u8], Qos, bool); 4] = [
        ("t/q0", b"zero \x00\xff", Qos::AtMostOnce, false),
        (
            "t/q1",
            b"{\"tool_id\": 12, \"name\": \"\\u00e9\"}",
            Qos::AtLeastOnce,
            false,
        ),
        ("t/q2", b"two \xc3\xa9", Qos::ExactlyOnce, false),
        ("t/r1", b"retained-state", Qos::AtLeastOnce, true),
    ];
    for (topic, payload, qos, retain) in cases {
        publisher.publish(msg(topic, payload, qos, retain)).await?;
    }
    // MQTT orders messages per QoS level only: a QoS 2 message (four packets) may arrive after
    // a QoS 1 one published after it. Match each case by its topic.
    let mut received = Vec::new();
    for _ in cases {
        received.push(
            next(&mut live, 5)
                .await
                .ok_or("live subscriber got nothing")?,
        );
    }
    for (topic, payload, qos, _) in cases {
        let r = received
            .iter()
            .find(|r| r.topic == topic)
            .ok_or_else(|| format!("{topic} not received"))?;
        assert_eq!(&r.payload[..], payload);
        assert_eq!(r.qos, qos, "delivered QoS = min(publish, subscribe)");
        assert!(!r.retain, "live delivery is not flagged retained");
    }
    // A late subscriber sees the retained message, flagged retained, and not the others.
    let mut late = sub(&url, "late-sub", "t/+").await;
    let r = next(&mut late, 5)
        .await
        .ok_or("late subscriber got no retained message")?;
    assert_eq!(
        (r.topic.as_str(), &r.payload[..], r.retain),
        ("t/r1", &b"retained-state"[..], true)
    );
    assert!(
        next(&mut late, 1).await.is_none(),
        "only retained messages replay"
    );
    publisher.shutdown().await?;
    assert!(!publisher.is_connected());
    assert!(matches!(
        publisher
            .publish(msg("t/x", b"", Qos::AtLeastOnce, false))
            .await,
        Err(MqttError::Closed)
    ));
    Ok(())
}

#[tokio::test]
async fn websocket_url_works() -> TestResult {
    let broker = Mosquitto::builder().websockets(true).start()?;
    let ws = broker.ws_url().ok_or("no ws url")?;
    let mut s = sub(&broker.url(), "ws-sub", "ws/#").await;
    let publisher = Publisher::connect(cfg(&ws, "ws-pub"), fast_backoff()).await?;
    publisher
        .publish(msg("ws/a", b"over websocket", Qos::AtLeastOnce, false))
        .await?;
    let r = next(&mut s, 5).await.ok_or("nothing received")?;
    assert_eq!(&r.payload[..], b"over websocket");
    // and a subscriber over ws too
    let mut ws_sub = sub(&ws, "ws-sub2", "ws/#").await;
    publisher
        .publish(msg("ws/b", b"2", Qos::ExactlyOnce, false))
        .await?;
    assert_eq!(
        next(&mut ws_sub, 5)
            .await
            .ok_or("ws subscriber got nothing")?
            .topic,
        "ws/b"
    );
    publisher.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn mqtt5_works() -> TestResult {
    let broker = Mosquitto::start()?;
    let url = broker.url();
    let mut s = sub(&url, "v5-sub", "v5/#").await;
    let c = MqttConfig {
        protocol: Protocol::V5,
        ..cfg(&url, "v5-pub")
    };
    let publisher = Publisher::connect(c, fast_backoff()).await?;
    publisher
        .publish(msg("v5/x", b"five", Qos::ExactlyOnce, false))
        .await?;
    assert_eq!(
        &next(&mut s, 5).await.ok_or("nothing")?.payload[..],
        b"five"
    );
    publisher.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn failover_list_skips_a_dead_broker() -> TestResult {
    let broker = Mosquitto::start()?;
    let dead = format!("mqtt://127.0.0.1:{}", nemo_testkit::free_port()?);
    let c = MqttConfig {
        url: vec![dead, broker.url()],
        ..cfg("mqtt://unused", "failover")
    };
    let publisher = Publisher::connect(c, no_retry()).await?;
    publisher
        .publish(msg("f/x", b"1", Qos::AtLeastOnce, false))
        .await?;
    publisher.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn refused_connection_is_a_clear_connect_error() -> TestResult {
    let url = format!("mqtt://127.0.0.1:{}", nemo_testkit::free_port()?);
    let err = Publisher::connect(cfg(&url, "nobody"), no_retry())
        .await
        .unwrap_err();
    assert!(matches!(err, MqttError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("refused"), "{err}");
    Ok(())
}

#[tokio::test]
async fn username_password_good_and_bad() -> TestResult {
    let broker = Mosquitto::builder().user("bridge", "right-pw").start()?;
    let url = broker.url();
    let good = MqttConfig {
        username: "bridge".into(),
        password: Secret::new("right-pw"),
        ..cfg(&url, "auth-ok")
    };
    let publisher = Publisher::connect(good, no_retry()).await?;
    publisher
        .publish(msg("a/x", b"1", Qos::AtLeastOnce, false))
        .await?;
    publisher.shutdown().await?;

    let bad = MqttConfig {
        username: "bridge".into(),
        password: Secret::new("wrong-pw"),
        ..cfg(&url, "auth-bad")
    };
    let err = Publisher::connect(bad, no_retry()).await.unwrap_err();
    println!("bad password: {err}");
    assert!(matches!(err, MqttError::Auth { .. }), "{err:?}");
    assert!(err.is_permanent());
    assert!(!err.to_string().contains("wrong-pw"));

    let anonymous = cfg(&url, "auth-anon");
    let err = Publisher::connect(anonymous, no_retry()).await.unwrap_err();
    println!("anonymous: {err}");
    assert!(matches!(err, MqttError::Auth { .. }), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn fail_mode_rejects_at_once_while_disconnected_and_recovers() -> TestResult {
    let mut broker = Mosquitto::start()?;
    let url = broker.url();
    let c = MqttConfig {
        when_disconnected: WhenDisconnected::Fail,
        ..cfg(&url, "fail-mode")
    };
    let publisher = Publisher::connect(c, fast_backoff()).await?;
    let mut state = publisher.state();
    assert_eq!(state.borrow().status, ConnStatus::Connected);
    broker.kill();
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| s.status == ConnStatus::Disconnected),
    )
    .await??;
    let err = publisher
        .publish(msg("x/y", b"1", Qos::AtLeastOnce, false))
        .await
        .unwrap_err();
    assert_eq!(err, MqttError::NotConnected);
    broker.restart()?;
    let s = *tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| s.is_connected()),
    )
    .await??;
    assert_eq!(s.reconnects, 1);
    publisher
        .publish(msg("x/y", b"2", Qos::AtLeastOnce, false))
        .await?;
    publisher.shutdown().await?;
    assert_eq!(publisher.state().borrow().status, ConnStatus::Closed);
    Ok(())
}

#[tokio::test]
async fn wait_mode_buffers_while_disconnected_then_confirms() -> TestResult {
    let mut broker = Mosquitto::start()?;
    let url = broker.url();
    let publisher = Publisher::connect(cfg(&url, "wait-mode"), fast_backoff()).await?;
    let mut state = publisher.state();
    broker.kill();
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| s.status == ConnStatus::Disconnected),
    )
    .await??;
    let pending: Vec<_> = (0..10)
        .map(|i| {
            // retained, so a subscriber that joins later can check they arrived
            publisher.publish(msg(
                &format!("w/{i}"),
                format!("{i}").as_bytes(),
                Qos::AtLeastOnce,
                true,
            ))
        })
        .collect();
    broker.restart()?;
    // Buffered in the client while the broker was down, sent after the reconnect.
    for p in pending {
        p.await?;
    }
    let mut s = sub(&url, "wait-sub", "w/#").await;
    let mut got = Vec::new();
    while let Some(r) = next(&mut s, 3).await {
        got.push(String::from_utf8(r.payload.to_vec())?);
        if got.len() == 10 {
            break;
        }
    }
    got.sort_by_key(|p| p.parse::<u32>().unwrap_or(u32::MAX));
    assert_eq!(got, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    assert!(state.borrow().reconnects >= 1);
    publisher.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn wait_mode_buffer_is_bounded() -> TestResult {
    let mut broker = Mosquitto::start()?;
    let url = broker.url();
    let c = MqttConfig {
        max_buffered: 5,
        ..cfg(&url, "bounded")
    };
    let publisher = Publisher::connect(c, fast_backoff()).await?;
    let mut state = publisher.state();
    broker.kill();
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| s.status == ConnStatus::Disconnected),
    )
    .await??;
    let pending: Vec<_> = (0..8)
        .map(|_| publisher.publish(msg("b/x", b"1", Qos::AtLeastOnce, false)))
        .collect();
    let results = futures::future::join_all(pending.into_iter().skip(5)).await;
    for r in results {
        assert_eq!(r.unwrap_err(), MqttError::BufferFull { max: 5 });
    }
    drop(publisher);
    Ok(())
}
