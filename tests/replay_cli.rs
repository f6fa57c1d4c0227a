//! `replay` without servers: --dry-run shows what would be sent, so input
//! parsing, bad-line handling, filters and the pacing plan are checked through
//! the real binary, exactly and without timers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(args)
        .env_remove("NEMO_MQTT__URL")
        .output()
        .expect("run replay")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fixture() -> PathBuf {
    nemo_testkit::fixtures_dir().join("v1-queue-items.jsonl")
}

/// Dry-run lines: (offset text, topic).
fn planned(out: &Output) -> Vec<(String, String)> {
    assert!(
        out.status.success(),
        "replay failed: {:?}\n{}",
        out.status,
        stderr(out)
    );
    stdout(out)
        .lines()
        .map(|l| {
            let mut parts = l.split_whitespace();
            (
                parts.next().unwrap().to_owned(),
                parts.next().unwrap().to_owned(),
            )
        })
        .collect()
}

fn dry(file: &Path, extra: &[&str]) -> Output {
    let mut args = vec![file.to_str().unwrap(), "--dry-run", "--utc", "--no-color"];
    args.extend_from_slice(extra);
    replay(&args)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn rec(t: &str, topic: &str, payload: &str) -> String {
    format!(
        "{{\"t\":\"{t}\",\"topic\":\"{topic}\",\"payload\":{},\"qos\":1,\"retain\":false}}\n",
        serde_json::to_string(payload).unwrap()
    )
}

#[test]
fn bad_lines_are_reported_with_numbers_and_skipped() -> TestResult {
    let dir = tempfile::tempdir()?;
    let lines: Vec<String> = std::fs::read_to_string(fixture())?
        .lines()
        .take(3)
        .map(str::to_owned)
        .collect();
    let text = format!(
        "{}\nnot json\n\n{}\n{{\"topic\": \"nemo/#\", \"payload\": \"{{}}\"}}\n{}\n",
        lines[0], lines[1], lines[2]
    );
    let file = write(dir.path(), "mixed.jsonl", &text);
    let out = dry(&file, &["--max-rate"]);
    let plan = planned(&out);
    assert_eq!(plan.len(), 3, "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("line 2: item is not JSON"), "{err}");
    assert!(err.contains("line 5: invalid \"topic\""), "{err}");
    assert!(!err.contains("line 3"), "blank lines are not bad: {err}");
    assert!(
        err.contains("sent 3, skipped 2 (0 filtered, 2 bad lines), failed 0"),
        "{err}"
    );
    Ok(())
}

#[test]
fn strict_stops_at_the_first_bad_line_before_sending_anything() -> TestResult {
    let dir = tempfile::tempdir()?;
    let good = std::fs::read_to_string(fixture())?
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let file = write(
        dir.path(),
        "bad.jsonl",
        &format!("{good}\n{good}\n[1, 2]\n{good}\nnope\n"),
    );
    let out = dry(&file, &["--strict", "--max-rate"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "",
        "nothing is sent with --strict and a bad line"
    );
    let err = stderr(&out);
    assert!(
        err.contains("line 3: item is JSON but not an object"),
        "{err}"
    );
    assert!(!err.contains("line 5"), "stops at the first: {err}");
    Ok(())
}

#[test]
fn fixture_bad_items_are_all_skipped() -> TestResult {
    let dir = tempfile::tempdir()?;
    let text = nemo_testkit::fixture("bad-queue-items.jsonl")?;
    let raws: String = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["raw"]
                .as_str()
                .unwrap()
                .to_owned()
                + "\n"
        })
        .collect();
    let file = write(dir.path(), "bad.jsonl", &raws);
    let out = dry(&file, &["--format", "queue-items", "--max-rate"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "");
    let n = text.lines().count();
    assert!(
        stderr(&out).contains(&format!("sent 0, skipped {n} (0 filtered, {n} bad lines)")),
        "{}",
        stderr(&out)
    );
    Ok(())
}

#[test]
fn speed_factor_scales_the_planned_offsets_exactly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let text: String = (0..=8)
        .map(|i| {
            rec(
                &format!("2025-10-16T14:00:{:02}.{:03}Z", i / 4, (i % 4) * 250),
                &format!("nemo/tools/{i}"),
                "{}",
            )
        })
        .collect();
    let file = write(dir.path(), "two-seconds.jsonl", &text);
    let offsets = |args: &[&str]| -> Vec<String> {
        planned(&dry(&file, args))
            .into_iter()
            .map(|p| p.0)
            .collect()
    };
    let at4 = offsets(&["--speed", "4"]);
    assert_eq!(at4.first().map(String::as_str), Some("+0.000s"));
    assert_eq!(at4.get(4).map(String::as_str), Some("+0.250s"));
    assert_eq!(
        at4.last().map(String::as_str),
        Some("+0.500s"),
        "2 s at --speed 4: {at4:?}"
    );
    assert_eq!(offsets(&[]).last().map(String::as_str), Some("+2.000s"));
    assert_eq!(
        offsets(&["--speed", "0.5"]).last().map(String::as_str),
        Some("+4.000s")
    );
    assert_eq!(
        offsets(&["--rate", "2"]).last().map(String::as_str),
        Some("+4.000s")
    );
    assert!(offsets(&["--max-rate"]).iter().all(|o| o == "+0.000s"));
    Ok(())
}

#[test]
fn fixture_plan_follows_the_queue_item_timestamps() -> TestResult {
    let text = std::fs::read_to_string(fixture())?;
    let times: Vec<f64> = text
        .lines()
        .filter_map(|l| nemo_events::QueueItem::parse(l.as_bytes()).ok()?.timestamp)
        .collect();
    let span = times.last().unwrap() - times.first().unwrap();
    let plan = planned(&dry(&fixture(), &["--speed", "1000"]));
    let last: f64 = plan
        .last()
        .unwrap()
        .0
        .trim_start_matches('+')
        .trim_end_matches('s')
        .parse()?;
    assert!(
        (last - span / 1000.0).abs() < 0.002,
        "planned {last}, expected {}",
        span / 1000.0
    );
    Ok(())
}

#[test]
fn filters_by_tool_kind_topic_and_window() -> TestResult {
    let f = fixture();
    let topics = |args: &[&str]| -> Vec<String> {
        planned(&dry(&f, args)).into_iter().map(|p| p.1).collect()
    };

    let t12 = topics(&["--max-rate", "--tool", "12"]);
    assert!(!t12.is_empty());
    assert!(
        t12.iter().all(|t| t.starts_with("nemo/tools/12")),
        "{t12:?}"
    );

    let two = topics(&["--max-rate", "--tool", "1", "--tool", "7"]);
    assert!(
        two.iter().any(|t| t.starts_with("nemo/tools/1/"))
            && two.iter().any(|t| t.starts_with("nemo/tools/7/"))
    );
    assert!(
        two.iter()
            .all(|t| t.starts_with("nemo/tools/1/") || t.starts_with("nemo/tools/7/")),
        "{two:?}"
    );

    let disabled = topics(&["--max-rate", "--kind", "tool_disabled"]);
    assert_eq!(disabled.len(), 40);
    assert!(
        disabled.iter().all(|t| t.ends_with("/disabled")),
        "{disabled:?}"
    );

    let enabled = topics(&["--max-rate", "--topic", "nemo/tools/+/enabled"]);
    assert_eq!(enabled.len(), 40);
    let mut non_tool = topics(&[
        "--max-rate",
        "--topic",
        "nemo/areas/#",
        "--topic",
        "nemo/reservations/+",
    ]);
    non_tool.sort();
    assert_eq!(non_tool, ["nemo/areas/3", "nemo/reservations/8812"]);

    let combined = topics(&["--max-rate", "--tool", "12", "--kind", "tool_enabled"]);
    assert!(
        combined.iter().all(|t| t == "nemo/tools/12/enabled") && !combined.is_empty(),
        "{combined:?}"
    );

    // The first item is at 2025-10-16T14:02:32.94Z, the second at 14:12:26.95Z.
    let window = topics(&[
        "--max-rate",
        "--from",
        "2025-10-16T14:02:00Z",
        "--until",
        "2025-10-16T16:12:27+02:00",
    ]);
    assert_eq!(window, ["nemo/tools/1/enabled", "nemo/tools/1/disabled"]);
    Ok(())
}

#[test]
fn same_input_and_flags_give_the_same_output() -> TestResult {
    let a = dry(&fixture(), &["--speed", "7", "--tool", "23"]);
    let b = dry(&fixture(), &["--speed", "7", "--tool", "23"]);
    assert!(a.status.success());
    assert_eq!(stdout(&a), stdout(&b));
    assert!(!stdout(&a).is_empty());
    Ok(())
}

#[test]
fn bad_flags_are_refused_before_anything_runs() {
    for (args, needle) in [
        (vec!["--speed", "0"], "invalid speed 0"),
        (vec!["--rate=-3"], "invalid rate -3"),
        (vec!["--from", "yesterday"], "RFC 3339"),
        (vec!["--topic", "nemo/#/x"], "invalid topic filter"),
    ] {
        let mut all = vec![fixture().to_str().unwrap().to_owned(), "--dry-run".into()];
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = replay(&refs);
        assert_ne!(out.status.code(), Some(0), "{args:?} accepted");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "");
    }
    let out = replay(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nothing to replay"));
}

#[test]
fn dry_run_shows_the_monitor_line_and_flags() -> TestResult {
    let dir = tempfile::tempdir()?;
    let payload = r#"{"event": "tool_enabled", "tool_id": 1, "tool_name": "Zeiss Supra 55 SEM", "usage_id": 1, "user_name": "Jane Doe", "start_time": "2025-10-16T14:02:32+00:00"}"#;
    let file = write(
        dir.path(),
        "one.jsonl",
        &rec("2025-10-16T14:02:33Z", "nemo/tools/1/enabled", payload),
    );
    let out = dry(&file, &["--qos", "2"]);
    let monitor = nemo_monitor::Formatter::new(nemo_monitor::FormatOptions {
        utc: true,
        ..Default::default()
    });
    let at = nemo_replay::parse_rfc3339("2025-10-16T14:02:33Z")?;
    let human = monitor.line("nemo/tools/1/enabled", payload.as_bytes(), false, at);
    assert!(human.contains("IN USE by Jane Doe"), "{human}");
    assert_eq!(
        stdout(&out).trim_end(),
        format!("+0.000s  nemo/tools/1/enabled qos 2  {human}")
    );
    Ok(())
}
