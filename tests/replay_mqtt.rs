//! End-to-end tests of `replay` against real Mosquitto brokers: record → replay
//! into a fresh broker gives the same messages in the same order; the retained
//! end state is reproduced exactly; pacing never runs ahead of the schedule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nemo_events::Qos;
use nemo_monitor::RecordLine;
use nemo_mqtt::{MqttConfig, Received, Subscriber};
use nemo_testkit::Mosquitto;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Run `replay` with `input` on stdin; killed (and the test failed) after 60 s.
fn run_replay(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run replay");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().expect("wait replay").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait replay");
            panic!(
                "replay {args:?} still running after 60 s; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait replay")
}

fn replay(args: &[&str]) -> Output {
    run_replay(args, "")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "replay failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn subscribe(broker: &Mosquitto, name: &str, filters: &[&str]) -> Subscriber {
    let cfg = MqttConfig {
        client_id: format!("{name}-{}", std::process::id()),
        status_topic: String::new(),
        ..MqttConfig::for_url(broker.url())
    };
    Subscriber::connect(cfg, filters, Qos::AtLeastOnce)
        .await
        .expect("subscribe")
}

/// Receive exactly `n` messages (each within 10 s).
async fn take(sub: &mut Subscriber, n: usize) -> Vec<Received> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), sub.recv()).await {
            Ok(Some(m)) => got.push(m),
            other => panic!("after {} of {n} messages: {other:?}", got.len()),
        }
    }
    got
}

/// Receive messages until one arrives on `sentinel` (not included).
async fn until_sentinel(sub: &mut Subscriber, sentinel: &str) -> Vec<Received> {
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), sub.recv()).await {
            Ok(Some(m)) if m.topic == sentinel => return got,
            Ok(Some(m)) => got.push(m),
            other => panic!("no sentinel after {} messages: {other:?}", got.len()),
        }
    }
}

fn write_recording(path: &Path, lines: &[RecordLine]) -> std::io::Result<()> {
    let text: String = lines.iter().map(|l| l.to_json_line() + "\n").collect();
    std::fs::write(path, text)
}

fn at(secs: f64) -> nemo_replay::OffsetDateTime {
    nemo_replay::parse_rfc3339("2025-10-16T14:00:00Z").unwrap() + Duration::from_secs_f64(secs)
}

fn line(secs: f64, topic: &str, payload: &str, retain: bool) -> RecordLine {
    RecordLine {
        received_at: at(secs),
        topic: topic.into(),
        payload: payload.to_owned().into(),
        qos: 1,
        retain,
    }
}

fn shape(msgs: &[Received]) -> Vec<(String, Vec<u8>)> {
    msgs.iter()
        .map(|m| (m.topic.clone(), m.payload.to_vec()))
        .collect()
}

/// The field fixture → broker A, recorded by a subscriber the way the monitor
/// records; the recording → fresh broker B: B's subscriber sees exactly what A's saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_then_replay_into_fresh_broker_gives_same_sequence() -> TestResult {
    let fixture = nemo_testkit::fixtures_dir().join("v1-queue-items.jsonl");
    let n = std::fs::read_to_string(&fixture)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    let dir = tempfile::tempdir()?;

    let a = Mosquitto::start()?;
    let mut rec = subscribe(&a, "rec", &["nemo/#"]).await;
    let out = replay(&[
        fixture.to_str().unwrap(),
        "--mqtt-url",
        &a.url(),
        "--max-rate",
    ]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("sent {n},")),
        "{out:?}"
    );
    let seen_a = take(&mut rec, n).await;
    let recording: Vec<RecordLine> = seen_a
        .iter()
        .map(|m| RecordLine {
            received_at: m.received_at,
            topic: m.topic.clone(),
            payload: m.payload.clone(),
            qos: m.qos.as_u8(),
            retain: m.retain,
        })
        .collect();
    let file = dir.path().join("incident.jsonl");
    write_recording(&file, &recording)?;

    // The same order as the fixture: FIFO from file to broker.
    let fixture_topics: Vec<String> = std::fs::read_to_string(&fixture)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            nemo_events::QueueItem::parse(l.as_bytes())
                .unwrap()
                .topic
                .as_str()
                .to_owned()
        })
        .collect();
    let a_topics: Vec<String> = seen_a.iter().map(|m| m.topic.clone()).collect();
    assert_eq!(a_topics, fixture_topics);

    let b = Mosquitto::start()?;
    let mut sub_b = subscribe(&b, "check", &["nemo/#"]).await;
    // The recording spans the subscriber's receive times (milliseconds): original pacing.
    let out = replay(&[file.to_str().unwrap(), "--mqtt-url", &b.url()]);
    ok(&out);
    let seen_b = take(&mut sub_b, n).await;
    assert_eq!(shape(&seen_b), shape(&seen_a));
    Ok(())
}

/// Retained updates, overwrites and a clear (empty retained payload): a replay into a
/// fresh broker leaves exactly the final retained value per topic, and a rerun into
/// another fresh broker leaves the identical state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_end_state_is_reproduced_exactly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("retained.jsonl");
    let rec = [
        line(
            0.0,
            "nemo/tools/1",
            r#"{"event": "tool_updated", "tool_id": 1, "tool_status": true}"#,
            true,
        ),
        line(
            0.1,
            "nemo/tools/7",
            r#"{"event": "tool_updated", "tool_id": 7, "tool_status": true}"#,
            true,
        ),
        line(
            0.2,
            "nemo/tools/1/enabled",
            r#"{"event": "tool_enabled", "tool_id": 1}"#,
            false,
        ),
        line(
            0.3,
            "nemo/tools/1",
            r#"{"event": "tool_updated", "tool_id": 1, "tool_status": false}"#,
            true,
        ),
        line(
            0.4,
            "nemo/tools/9",
            r#"{"event": "tool_created", "tool_id": 9}"#,
            true,
        ),
        line(0.5, "nemo/tools/9", "", true),
        line(
            0.6,
            "nemo/areas/3",
            r#"{"event": "area_updated", "area_id": 3, "area_name": "Bay #3 / \"north\""}"#,
            true,
        ),
    ];
    write_recording(&file, &rec)?;
    let mut expected = vec![
        ("nemo/areas/3".to_owned(), rec[6].payload.to_vec()),
        ("nemo/tools/1".to_owned(), rec[3].payload.to_vec()),
        ("nemo/tools/7".to_owned(), rec[1].payload.to_vec()),
    ];
    expected.sort();

    let mut states = Vec::new();
    for run in 0..2 {
        let broker = Mosquitto::start()?;
        ok(&replay(&[
            file.to_str().unwrap(),
            "--mqtt-url",
            &broker.url(),
            "--speed",
            "100",
        ]));
        let mut sub = subscribe(&broker, &format!("state{run}"), &["nemo/#", "sentinel"]).await;
        // Retained messages are delivered on subscribe, before anything published later.
        ok(&run_replay(
            &[
                "-",
                "--format",
                "queue-items",
                "--mqtt-url",
                &broker.url(),
                "--max-rate",
            ],
            r#"{"topic": "sentinel", "payload": "end", "qos": 1, "retain": false}"#,
        ));
        let got = until_sentinel(&mut sub, "sentinel").await;
        assert!(
            got.iter().all(|m| m.retain),
            "only retained messages expected: {got:?}"
        );
        let mut state = shape(&got);
        state.sort();
        assert_eq!(state, expected, "run {run}");
        states.push(state);
    }
    assert_eq!(states[0], states[1]);
    Ok(())
}

/// A recording spanning 2 s at --speed 4 is planned over 0.5 s: the real run never
/// sends before the plan (lower bound, a property of the schedule) and, on a loaded
/// machine, within a generous upper bound. The plan itself is checked exactly in
/// `replay_cli.rs` through --dry-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speed_factor_is_honoured_against_a_real_broker() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("two-seconds.jsonl");
    let rec: Vec<RecordLine> = (0..=8)
        .map(|i| line(f64::from(i) * 0.25, &format!("nemo/tools/{i}"), "{}", false))
        .collect();
    write_recording(&file, &rec)?;
    let broker = Mosquitto::start()?;
    let mut sub = subscribe(&broker, "speed", &["nemo/#"]).await;
    let started = Instant::now();
    ok(&replay(&[
        file.to_str().unwrap(),
        "--mqtt-url",
        &broker.url(),
        "--speed",
        "4",
    ]));
    let took = started.elapsed();
    let got = take(&mut sub, rec.len()).await;
    assert_eq!(got.len(), 9);
    let first = got.first().unwrap().received_at;
    let last = got.last().unwrap().received_at;
    let span = (last - first).as_seconds_f64();
    println!(
        "2 s recording at --speed 4: receive span {span:.3} s, process {:.3} s",
        took.as_secs_f64()
    );
    assert!(span >= 0.45, "sent faster than planned: {span} s");
    assert!(
        took.as_secs_f64() < 10.0,
        "far slower than planned: {took:?}"
    );
    Ok(())
}
