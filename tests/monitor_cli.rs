//! `monitor` terminal view, `--json`, `--record` and `board` against a real Mosquitto; the
//! queue figures as a real bridge (on a real Redis) publishes them, and as published by hand,
//! signed with the right and with a wrong key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod monitor_support;

use std::time::Duration;

use monitor_support::{Pub, figures, monitor, monitor_output, payload};
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

/// The whole chain: a real bridge on a real Redis publishes its (signed) status and queue
/// figures; a monitor given the bridge's own configuration file (its `[redis]`, `[http]`, …
/// sections ignored) finds the figures beside the status topic of `[status]`, verifies them
/// with the key of `[hmac]`, and shows them on the board.
#[test]
fn board_shows_the_figures_a_real_bridge_publishes() {
    let broker = Mosquitto::start().unwrap();
    let redis = RedisServer::start().unwrap();
    // One dead letter, nothing waiting.
    redis
        .cli(&["LPUSH", "{nemo_mqtt_events}:dead", "bad"])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[redis]\nurl = \"{}\"\nkey = \"nemo_mqtt_events\"\n\n\
             [mqtt]\nurl = \"{}\"\nclient_id = \"bridge-monitor-test\"\n\n\
             [status]\ntopic = \"lab/bridge/status\"\n\n[http]\nlisten = \"\"\n\n\
             [hmac]\nkey = \"monitor-figures-key\"\n\n[backoff]\ninitial_ms = 50\nmax_ms = 500\n",
            redis.url(),
            broker.url()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("bridge.log")).unwrap();
    let bridge = std::process::Command::new(env!("CARGO_BIN_EXE_bridge"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let _bridge = monitor_support::Killed(bridge);

    let mut mon = monitor(&["--config", config.to_str().unwrap(), "--utc", "board"]);
    let line = mon.expect_line(WAIT, "the bridge's figures", |l| {
        l.starts_with("bridge: ONLINE") && l.contains("| queue (")
    });
    assert!(
        line.contains("| queue (list): 0 pending · 0 in processing · 1 dead (at "),
        "{line}\nbridge log:\n{}",
        std::fs::read_to_string(dir.path().join("bridge.log")).unwrap_or_default()
    );
    assert!(!line.contains("NOT VERIFIED"), "{line}");

    // A second dead letter: the bridge publishes the change, the board follows.
    redis
        .cli(&["LPUSH", "{nemo_mqtt_events}:dead", "worse"])
        .unwrap();
    mon.expect_line(WAIT, "the new figures", |l| {
        l.starts_with("bridge: ONLINE")
            && l.contains("| queue (list): 0 pending · 0 in processing · 2 dead")
    });
}

/// A retained, signed figures document published before the monitor starts is on the board at
/// once, also when the topic filters leave the figures topic out (it is subscribed to anyway).
#[test]
fn retained_signed_figures_appear_on_the_board() {
    let key = b"figures-test-key";
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, b"figures-test-key\n").unwrap();
    let broker = Mosquitto::start().unwrap();
    let publisher = Pub::connect(&broker.url());
    publisher.send(
        "nemo/bridge/status",
        nemo_events::hmac::sign(r#"{"state":"online","since":"2025-10-17T08:00:00Z"}"#, key),
        true,
    );
    publisher.send(
        "nemo/bridge/queue",
        figures("database", (3, 1, 0), Some(true), Some(key)),
        true,
    );
    let url = broker.url();
    let mut mon = monitor(&[
        "--mqtt-url",
        &url,
        "--utc",
        "--hmac-key-file",
        key_file.to_str().unwrap(),
        "--filter",
        "nemo/tools/#",
        "--filter",
        "nemo/bridge/status",
        "board",
    ]);
    // Not a terminal: each refresh is printed whole, followed by "---".
    let line = mon.expect_line(WAIT, "the retained figures", |l| {
        l.starts_with("bridge: ONLINE since 2025-10-17 08:00 | queue (")
    });
    assert!(
        line.starts_with(
            "bridge: ONLINE since 2025-10-17 08:00 | queue (database): 3 pending · 1 in processing · 0 dead · displays' broker connected (at "
        ),
        "{line}"
    );
    assert!(line.ends_with(" old)"), "the age is shown: {line}");

    // Live figures replace them.
    publisher.send(
        "nemo/bridge/queue",
        figures("database", (0, 0, 0), Some(false), Some(key)),
        true,
    );
    mon.expect_line(WAIT, "the live figures", |l| {
        l.contains("| queue (database): 0 pending · 0 in processing · 0 dead · displays' broker NOT connected")
    });
}

/// Figures signed with another key than the monitor's are not shown as verified figures: the
/// board says they were ignored and shows no numbers; the lines say so too.
#[test]
fn figures_signed_with_a_wrong_key_are_not_verified() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, b"the-right-key\n").unwrap();
    let broker = Mosquitto::start().unwrap();
    let publisher = Pub::connect(&broker.url());
    publisher.send(
        "nemo/bridge/queue",
        figures("list", (9, 0, 0), None, Some(b"a-wrong-key")),
        true,
    );
    let url = broker.url();
    let key_path = key_file.to_str().unwrap();
    let mut board = monitor(&[
        "--mqtt-url",
        &url,
        "--utc",
        "--hmac-key-file",
        key_path,
        "board",
    ]);
    let line = board.expect_line(WAIT, "the ignored figures", |l| {
        l.starts_with("bridge: ") && l.contains("NOT VERIFIED")
    });
    assert!(line.contains("| queue figures NOT VERIFIED at "), "{line}");
    assert!(
        !line.contains("pending"),
        "numbers of a forged document: {line}"
    );

    let mut lines = monitor(&["--mqtt-url", &url, "--utc", "--hmac-key-file", key_path]);
    let line = lines.expect_line(WAIT, "the ignored figures line", |l| {
        l.contains("bridge queue")
    });
    assert!(
        line.contains("NOT VERIFIED, ignored (queue figures: signature"),
        "{line}"
    );
    assert!(!line.contains("9 pending"), "{line}");

    // Without a key, nothing can be verified: the document is read (as the status would be).
    let mut unkeyed = monitor(&["--mqtt-url", &url, "--utc"]);
    unkeyed.expect_line(WAIT, "the figures read without a key", |l| {
        l.contains("bridge queue") && l.contains("queue (list): 9 pending")
    });
}

/// The monitor no longer reads Redis: `--redis-url` is refused with a pointer to the figures.
#[test]
fn redis_url_is_refused() {
    let out = monitor_output(&["--redis-url", "redis://127.0.0.1:1/0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--redis-url: the monitor does not read the queue")
            && err.contains("nemo/bridge/queue"),
        "{err}"
    );
    let help = monitor_output(&["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(!help.contains("redis"), "{help}");
    assert!(!help.contains("--health-interval"), "{help}");
}
