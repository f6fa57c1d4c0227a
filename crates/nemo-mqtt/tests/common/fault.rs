//! The mid-stream broker fault scenario shared by `crash_kill.rs` and
//! `crash_stop.rs` (separate test binaries, so the two never run in one
//! process at the same time; see the note in `crash_kill.rs`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use nemo_events::Qos;
use nemo_mqtt::{Confirm, EventSink, MqttConfig, Publisher, Subscriber};
use nemo_testkit::Mosquitto;

pub const N: usize = 5_000;
const WINDOW: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    Kill,
    Stop,
}

/// Publish N messages with a window of 256, fault the broker at N/2, restart
/// it; return the confirmed messages the subscriber never got (sorted).
pub async fn run(fault: Fault) -> Result<Vec<usize>, Box<dyn std::error::Error + Send + Sync>> {
    let mut broker = Mosquitto::start()?; // persistence on
    let url = broker.url();

    let sub_cfg = MqttConfig {
        clean_session: false,
        ..cfg(&url, "crash-persistent-sub")
    };
    let mut subscriber =
        Subscriber::connect_with_backoff(sub_cfg, &["stream/#"], Qos::AtLeastOnce, fast_backoff())
            .await?;
    let received: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
    let rec = Arc::clone(&received);
    let collector = tokio::spawn(async move {
        while let Some(m) = subscriber.recv().await {
            let i: usize = std::str::from_utf8(&m.payload[..8])
                .unwrap()
                .parse()
                .unwrap();
            *rec.lock().unwrap().entry(i).or_default() += 1;
        }
    });

    // Setup, not an assertion: mosquitto saves its persistence every second
    // (`autosave_interval 1`); a session younger than that does not survive
    // `kill -9`, and then nothing is subscribed while the publisher resumes.
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    let publisher = Publisher::connect(cfg(&url, "crash-pub"), fast_backoff()).await?;
    let mut state = publisher.state();
    let mut confirmed = HashSet::new();
    let mut errors: HashMap<String, usize> = HashMap::new();
    let mut window: VecDeque<(usize, Confirm)> = VecDeque::new();
    let mut settle = |i: usize, r: Result<(), nemo_mqtt::MqttError>| match r {
        Ok(()) => {
            confirmed.insert(i);
        }
        Err(e) => *errors.entry(e.to_string()).or_default() += 1,
    };
    for i in 0..N {
        if i == N / 2 {
            tokio::task::block_in_place(|| -> Result<(), nemo_testkit::HarnessError> {
                match fault {
                    Fault::Kill => broker.kill(),
                    Fault::Stop => broker.stop(),
                }
                std::thread::sleep(Duration::from_millis(200));
                broker.restart()
            })?;
        }
        let payload = format!("{i:08} {}", "x".repeat(200));
        window.push_back((
            i,
            publisher.publish(msg(
                &format!("stream/{}", i % 8),
                payload.as_bytes(),
                Qos::AtLeastOnce,
                false,
            )),
        ));
        if window.len() >= WINDOW {
            let (j, c) = window.pop_front().unwrap();
            settle(j, c.await);
        }
    }
    while let Some((j, c)) = window.pop_front() {
        settle(j, c.await);
    }
    let unconfirmed: usize = errors.values().sum();
    assert_eq!(confirmed.len() + unconfirmed, N, "every publish resolved");
    assert!(
        state.borrow_and_update().reconnects >= 1,
        "the publisher reconnected"
    );

    // Wait (bounded) until the subscriber has every confirmed message.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut missing = loop {
        let missing: Vec<usize> = {
            let got = received.lock().unwrap();
            confirmed
                .iter()
                .copied()
                .filter(|i| !got.contains_key(i))
                .collect()
        };
        if missing.is_empty() || tokio::time::Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let got = received.lock().unwrap().clone();
    let duplicates: usize = got.values().map(|n| n - 1).sum();
    let unconfirmed_but_received = got.keys().filter(|i| !confirmed.contains(i)).count();
    missing.sort_unstable();
    println!(
        "{fault:?}: published {N}: confirmed {}, unconfirmed {unconfirmed} {errors:?}; subscriber got {} distinct \
         ({duplicates} duplicates, {unconfirmed_but_received} of them unconfirmed); confirmed-but-missing {}",
        confirmed.len(),
        got.len(),
        missing.len()
    );
    assert!(confirmed.len() > N / 2, "most messages confirmed");
    publisher.shutdown().await?;
    collector.abort();
    Ok(missing)
}
