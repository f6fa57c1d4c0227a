//! `monitor` terminal view, `--json`, `--record` and `board` against a real Mosquitto
//! (and Redis for the queue health line).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod monitor_support;

use std::time::Duration;

use monitor_support::{Pub, monitor, payload};
use nemo_testkit::{Mosquitto, RedisServer};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn terminal_lines_and_recording() {
    let broker = Mosquitto::start().unwrap();
    let publisher = Pub::connect(&broker.url());
    publisher.send(
        "nemo/tools/1/enabled",
        payload("tool_enabled").into_bytes(),
        true,
    );
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.jsonl");
    let url = broker.url();
    // No --no-color: stdout is a pipe, so colours must be off by themselves.
    let mut mon = monitor(&[
        "--mqtt-url",
        &url,
        "--utc",
        "--record",
        rec.to_str().unwrap(),
    ]);

    let line = mon.expect_line(WAIT, "for the retained enable", |l| {
        l.contains("IN USE by Jane Doe")
    });
    assert!(
        line.ends_with("Zeiss Supra 55 SEM #1               IN USE by Jane Doe  [retained]"),
        "{line}"
    );
    assert!(!line.contains('\x1b'), "colour codes on a pipe: {line:?}");

    publisher.send(
        "nemo/tools/1/disabled",
        payload("tool_disabled").into_bytes(),
        false,
    );
    let line = mon.expect_line(WAIT, "for the disable", |l| l.contains("FREE"));
    assert!(
        line.ends_with("Zeiss Supra 55 SEM #1               FREE after 9 min 54 s (Jane Doe)"),
        "{line}"
    );

    publisher.send(
        "nemo/tools/23/tasks",
        payload("task_shutdown").into_bytes(),
        false,
    );
    publisher.send(
        "nemo/tools/23/non-operational",
        payload("tool_non_operational").into_bytes(),
        false,
    );
    let line = mon.expect_line(WAIT, "for DOWN", |l| l.contains("  DOWN"));
    assert!(
        line.ends_with(r#"DOWN: "Chamber won't pump below 1e-5 Torr""#),
        "{line}"
    );

    publisher.send("nemo/junk", vec![0xff, 0xfe, 0x00], false);
    mon.expect_line(WAIT, "for the binary payload", |l| {
        l.contains("binary payload, 3 bytes (not UTF-8)")
    });
    let huge = "h".repeat(1 << 20);
    publisher.send("nemo/huge", huge.clone().into_bytes(), false);
    let line = mon.expect_line(WAIT, "for the 1 MB payload", |l| l.contains("nemo/huge"));
    assert!(
        line.len() < 600 && line.contains("1048576 bytes") && line.contains("…[+"),
        "{}",
        &line[..line.len().min(600)]
    );

    drop(mon);
    let lines = nemo_monitor::record::read_file(&rec).unwrap();
    assert_eq!(lines.len(), 6);
    assert!(lines[0].retain);
    assert_eq!(&lines[0].payload[..], payload("tool_enabled").as_bytes());
    assert_eq!(&lines[4].payload[..], &[0xff, 0xfe, 0x00]);
    assert_eq!(&lines[5].payload[..], huge.as_bytes());
    assert!(
        lines
            .windows(2)
            .all(|w| w[0].received_at <= w[1].received_at)
    );
}

#[test]
fn json_mode_prints_record_lines_and_filters_apply() {
    let broker = Mosquitto::start().unwrap();
    let publisher = Pub::connect(&broker.url());
    publisher.send(
        "nemo/tools/7/enabled",
        b"{\"event\": \"tool_enabled\"}".to_vec(),
        true,
    );
    publisher.send("other/thing", b"ignored".to_vec(), true);
    let url = broker.url();
    let mut mon = monitor(&[
        "--mqtt-url",
        &url,
        "--json",
        "--filter",
        "nemo/tools/+/+",
        "--filter",
        "nemo/areas/#",
    ]);
    let line = mon.expect_line(WAIT, "a JSON line", |l| l.starts_with('{'));
    let rec = nemo_monitor::RecordLine::parse(&line).unwrap();
    assert_eq!(rec.topic, "nemo/tools/7/enabled");
    assert!(rec.retain);
    assert_eq!(&rec.payload[..], b"{\"event\": \"tool_enabled\"}");

    publisher.send("other/thing", b"still ignored".to_vec(), false);
    publisher.send(
        "nemo/areas/3",
        b"{\"event\": \"area_updated\"}".to_vec(),
        false,
    );
    let line = mon.expect_line(WAIT, "the area line", |_| true);
    let rec = nemo_monitor::RecordLine::parse(&line).unwrap();
    assert_eq!(
        rec.topic, "nemo/areas/3",
        "a message outside the filters came through"
    );
    assert!(!rec.retain);
}

#[test]
fn hmac_key_file_marks_lines() {
    let text = nemo_testkit::fixture("hmac-envelopes.json").unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(
        &key_file,
        format!("{}\n", cases[0]["key"].as_str().unwrap()),
    )
    .unwrap();
    let broker = Mosquitto::start().unwrap();
    let publisher = Pub::connect(&broker.url());
    let url = broker.url();
    publisher.send(
        "nemo/tools/1/enabled",
        cases[0]["envelope"].as_str().unwrap().as_bytes().to_vec(),
        true,
    );
    let mut mon = monitor(&[
        "--mqtt-url",
        &url,
        "--utc",
        "--hmac-key-file",
        key_file.to_str().unwrap(),
    ]);
    let line = mon.expect_line(WAIT, "the signed line", |l| l.contains("IN USE"));
    assert!(
        line.ends_with("IN USE by Jane Doe  [retained]  [HMAC ✓]"),
        "{line}"
    );
    publisher.send(
        "nemo/tools/1/enabled",
        cases[0]["payload"].as_str().unwrap().as_bytes().to_vec(),
        false,
    );
    let line = mon.expect_line(WAIT, "the unsigned line", |l| l.contains("IN USE"));
    assert!(
        line.ends_with("IN USE by Jane Doe  [HMAC ✗ unsigned]"),
        "{line}"
    );
}

#[test]
fn board_with_queue_health() {
    let broker = Mosquitto::start().unwrap();
    let redis = RedisServer::start().unwrap();
    // Three items waiting, one dead letter.
    for i in 0..3 {
        redis
            .cli(&["LPUSH", "nemo_mqtt_events", &format!("item{i}")])
            .unwrap();
    }
    redis
        .cli(&["LPUSH", "{nemo_mqtt_events}:dead", "bad"])
        .unwrap();
    let publisher = Pub::connect(&broker.url());
    publisher.send(
        "nemo/bridge/status",
        br#"{"state":"online","since":"2025-10-17T08:00:00Z"}"#.to_vec(),
        true,
    );
    publisher.send(
        "nemo/tools/1/enabled",
        payload("tool_enabled").into_bytes(),
        true,
    );
    publisher.send(
        "nemo/tools/23/non-operational",
        payload("tool_non_operational").into_bytes(),
        true,
    );
    let url = broker.url();
    let redis_url = redis.url();
    let mut mon = monitor(&[
        "--mqtt-url",
        &url,
        "--utc",
        "--redis-url",
        &redis_url,
        "--health-interval",
        "1",
        "board",
    ]);
    // Not a terminal: each refresh is printed whole, followed by "---".
    mon.expect_line(WAIT, "queue numbers", |l| {
        l.starts_with("bridge: ONLINE since 2025-10-17 08:00 | queue 3 · processing 0 · dead 1")
    });
    mon.expect_line(WAIT, "tool 1 in use", |l| {
        l.starts_with("Zeiss Supra 55 SEM #1") && l.contains("IN USE") && l.contains("Jane Doe")
    });
    mon.expect_line(WAIT, "tool 23 down", |l| {
        l.starts_with("Angstrom Evaporator #23") && l.contains("DOWN")
    });
}
