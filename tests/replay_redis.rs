//! End-to-end tests of `replay` against a real Redis: enqueue into the list and
//! the stream, read a stream range, inspect and requeue dead letters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use nemo_redis::DeadLetter;
use nemo_testkit::RedisServer;

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

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "replay failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fixture_lines() -> Vec<String> {
    nemo_testkit::fixture("v1-queue-items.jsonl")
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The list as the bridge will consume it (it takes from the right: oldest first).
fn list_in_consume_order(redis: &RedisServer, key: &str) -> Vec<String> {
    let out = redis.cli(&["LRANGE", key, "0", "-1"]).unwrap();
    let mut items: Vec<String> = out
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect();
    items.reverse();
    items
}

#[test]
fn queue_items_enqueued_into_the_list_unchanged_and_in_order() -> TestResult {
    let redis = RedisServer::start()?;
    let fixture = nemo_testkit::fixtures_dir().join("v1-queue-items.jsonl");
    let out = replay(&[
        fixture.to_str().unwrap(),
        "--redis-url",
        &redis.url(),
        "--to-redis",
        "list",
        "--max-rate",
    ]);
    ok(&out);
    assert_eq!(
        list_in_consume_order(&redis, "nemo_mqtt_events"),
        fixture_lines()
    );
    Ok(())
}

#[test]
fn stream_range_round_trip_with_ids_and_count() -> TestResult {
    let redis = RedisServer::start()?;
    let url = redis.url();
    let fixture = nemo_testkit::fixtures_dir().join("v1-queue-items.jsonl");
    let lines = fixture_lines();
    // Items → stream `s1` (XADD item=...), then the stream range → list `l1`.
    ok(&replay(&[
        fixture.to_str().unwrap(),
        "--redis-url",
        &url,
        "--to-redis",
        "stream",
        "--key",
        "s1",
        "--max-rate",
    ]));
    assert_eq!(redis.cli(&["XLEN", "s1"])?, lines.len().to_string());
    ok(&replay(&[
        "--stream",
        "s1",
        "--redis-url",
        &url,
        "--to-redis",
        "list",
        "--key",
        "l1",
        "--max-rate",
    ]));
    assert_eq!(list_in_consume_order(&redis, "l1"), lines);

    // A sub-range: from the 3rd entry's id, 5 entries.
    let ids: Vec<String> = redis
        .cli(&["XRANGE", "s1", "-", "+"])?
        .lines()
        .filter(|l| l.contains('-') && l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), lines.len(), "ids: {ids:?}");
    ok(&replay(&[
        "--stream",
        "s1",
        "--from-id",
        &ids[2],
        "--count",
        "5",
        "--redis-url",
        &url,
        "--to-redis",
        "list",
        "--key",
        "l2",
        "--max-rate",
    ]));
    assert_eq!(list_in_consume_order(&redis, "l2"), lines[2..7].to_vec());

    // A bad entry in the range is reported with its position and skipped; --strict refuses.
    redis.cli(&["XADD", "s1", "*", "item", "not json"])?;
    let out = replay(&[
        "--stream",
        "s1",
        "--redis-url",
        &url,
        "--to-redis",
        "list",
        "--key",
        "l3",
        "--max-rate",
    ]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("line {}: entry ", lines.len() + 1)),
        "{err}"
    );
    assert!(err.contains("skipped 1"), "{err}");
    assert_eq!(list_in_consume_order(&redis, "l3").len(), lines.len());
    let out = replay(&[
        "--stream",
        "s1",
        "--redis-url",
        &url,
        "--to-redis",
        "list",
        "--key",
        "l4",
        "--strict",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(redis.cli(&["LLEN", "l4"])?, "0", "--strict sends nothing");
    Ok(())
}

#[test]
fn dead_letters_are_listed_and_requeued_into_the_queue() -> TestResult {
    let redis = RedisServer::start()?;
    let url = redis.url();
    let lines = fixture_lines();
    // Three dead letters, oldest first, in the format nemo-redis writes (RPUSH).
    let records = [
        DeadLetter {
            raw: lines[0].clone().into(),
            error: "broker refused: payload too large".into(),
            at: 1760623352.5,
        },
        DeadLetter {
            raw: lines[1].clone().into(),
            error: "broker refused: not authorized".into(),
            at: 1760623353.0,
        },
        DeadLetter {
            raw: b"\xff\xfe not utf8".to_vec().into(),
            error: "not UTF-8".into(),
            at: 1760623354.0,
        },
    ];
    for r in &records {
        redis.cli(&["RPUSH", "{nemo_mqtt_events}:dead", &r.to_json()])?;
    }

    let listing = ok(&replay(&["dead-letters", "--redis-url", &url]));
    let rows: Vec<&str> = listing.lines().collect();
    assert_eq!(rows.len(), 4, "{listing}");
    assert!(
        rows[0].starts_with(
            "#1  2025-10-16T14:02:32.5Z  broker refused: payload too large  raw: {\"topic\""
        ),
        "{listing}"
    );
    assert!(rows[1].contains("not authorized"), "{listing}");
    assert!(rows[2].contains("not UTF-8"), "{listing}");
    assert!(
        rows[3].starts_with("3 dead letter(s) in {nemo_mqtt_events}:dead"),
        "{listing}"
    );

    // Requeue the oldest two: they are back in the queue, in order, byte for byte.
    let out = ok(&replay(&[
        "dead-letters",
        "--requeue",
        "2",
        "--redis-url",
        &url,
    ]));
    assert!(out.contains("requeued 2 item(s)"), "{out}");
    assert_eq!(
        list_in_consume_order(&redis, "nemo_mqtt_events"),
        lines[..2].to_vec()
    );
    assert_eq!(redis.cli(&["LLEN", "{nemo_mqtt_events}:dead"])?, "1");

    // --requeue without a value means all.
    let out = ok(&replay(&["dead-letters", "--requeue", "--redis-url", &url]));
    assert!(
        out.contains("requeued 1 item(s)") && out.contains("(0 left)"),
        "{out}"
    );
    assert_eq!(redis.cli(&["LLEN", "nemo_mqtt_events"])?, "3");
    assert_eq!(redis.cli(&["LLEN", "{nemo_mqtt_events}:dead"])?, "0");

    let out = replay(&["dead-letters", "--requeue", "zero", "--redis-url", &url]);
    assert_eq!(out.status.code(), Some(1));
    Ok(())
}

#[test]
fn recording_enqueued_as_v1_items_with_recorded_time() -> TestResult {
    let redis = RedisServer::start()?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("rec.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"t":"2025-10-16T14:02:32.5Z","topic":"nemo/tools/1/enabled","payload":"{\"event\": \"tool_enabled\", \"tool_id\": 1}","qos":1,"retain":false}"#,
            "\n",
            r#"{"t":"2025-10-16T14:02:33Z","topic":"nemo/tools/1","payload":"{\"tool_id\": 1}","qos":0,"retain":true}"#,
            "\n"
        ),
    )?;
    ok(&replay(&[
        file.to_str().unwrap(),
        "--redis-url",
        &redis.url(),
        "--to-redis",
        "list",
        "--max-rate",
    ]));
    assert_eq!(
        list_in_consume_order(&redis, "nemo_mqtt_events"),
        [
            r#"{"topic": "nemo/tools/1/enabled", "payload": "{\"event\": \"tool_enabled\", \"tool_id\": 1}", "qos": 1, "retain": false, "timestamp": 1760623352.5}"#,
            r#"{"topic": "nemo/tools/1", "payload": "{\"tool_id\": 1}", "qos": 0, "retain": true, "timestamp": 1760623353.0}"#,
        ]
    );
    Ok(())
}
