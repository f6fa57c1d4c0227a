//! Confirmed QoS 1 publishes per second through `Publisher` by in-flight
//! window, against a harness mosquitto (nodelay, unlimited queues), next to
//! the ceiling of Paho used directly (same run, same broker).
//!
//! `cargo bench -p nemo-mqtt --bench publish`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nemo_backoff::{Backoff, BackoffConfig};
use nemo_events::Qos;
use nemo_mqtt::{Confirm, EventSink, MqttConfig, OutMessage, Publisher};
use paho_mqtt as paho;

const MESSAGES: usize = 20_000;
const PAYLOAD: usize = 250;
const WINDOWS: [usize; 4] = [1, 16, 64, 256];

async fn through_publisher(publisher: &Publisher, window: usize, payload: &Bytes) -> Duration {
    let start = Instant::now();
    let mut pending: VecDeque<Confirm> = VecDeque::with_capacity(window);
    for i in 0..MESSAGES {
        pending.push_back(publisher.publish(OutMessage {
            topic: format!("nemo/tools/{}/enabled", i % 50),
            payload: payload.clone(),
            qos: Qos::AtLeastOnce,
            retain: false,
        }));
        if pending.len() >= window {
            pending.pop_front().unwrap().await.unwrap();
        }
    }
    while let Some(c) = pending.pop_front() {
        c.await.unwrap();
    }
    start.elapsed()
}

async fn paho_direct(cli: &paho::AsyncClient, window: usize, payload: &[u8]) -> Duration {
    let start = Instant::now();
    let mut pending = VecDeque::with_capacity(window);
    for i in 0..MESSAGES {
        pending.push_back(cli.publish(paho::Message::new(
            format!("nemo/tools/{}/enabled", i % 50),
            payload,
            1,
        )));
        if pending.len() >= window {
            pending.pop_front().unwrap().await.unwrap();
        }
    }
    while let Some(t) = pending.pop_front() {
        t.await.unwrap();
    }
    start.elapsed()
}

fn rate(d: Duration) -> f64 {
    MESSAGES as f64 / d.as_secs_f64()
}

fn main() {
    let broker = nemo_testkit::Mosquitto::builder()
        .persistence(false)
        .start()
        .expect("mosquitto");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let payload = Bytes::from(format!(
            "{{\"event\": \"tool_enabled\", \"data\": \"{}\"}}",
            "x".repeat(PAYLOAD - 40)
        ));
        let cfg = MqttConfig {
            client_id: "bench-publisher".into(),
            ..MqttConfig::for_url(broker.url())
        };
        let publisher = Publisher::connect(cfg, Backoff::new(&BackoffConfig::default()))
            .await
            .unwrap();

        let uri = broker.url().replace("mqtt://", "tcp://");
        let create = paho::CreateOptionsBuilder::new()
            .server_uri(uri)
            .client_id("bench-direct")
            .persistence(paho::PersistenceType::None)
            .max_buffered_messages(100_000)
            .finalize();
        let cli = paho::AsyncClient::new(create).unwrap();
        let opts = paho::ConnectOptionsBuilder::with_mqtt_version(paho::MqttVersion::V3_1_1)
            .max_inflight(65_535)
            .clean_session(true)
            .finalize();
        cli.connect(opts).await.unwrap();

        // Warm up both paths.
        through_publisher(&publisher, 256, &payload).await;
        paho_direct(&cli, 256, &payload).await;

        println!(
            "confirmed QoS 1 publishes/s, {MESSAGES} messages of {} bytes, loopback mosquitto",
            payload.len()
        );
        println!(
            "{:>8} | {:>16} | {:>16} | {:>7}",
            "window", "Publisher msg/s", "paho direct", "ratio"
        );
        println!("{:->8}-+-{:->16}-+-{:->16}-+-{:->7}", "", "", "", "");
        for w in WINDOWS {
            // best of 3 for each, alternating
            let mut ours = Duration::MAX;
            let mut direct = Duration::MAX;
            for _ in 0..3 {
                ours = ours.min(through_publisher(&publisher, w, &payload).await);
                direct = direct.min(paho_direct(&cli, w, &payload).await);
            }
            println!(
                "{w:>8} | {:>16.0} | {:>16.0} | {:>6.0}%",
                rate(ours),
                rate(direct),
                100.0 * rate(ours) / rate(direct)
            );
        }
        publisher.shutdown().await.unwrap();
        let _ = cli.disconnect(None).await;
    });
}
