//! The human line format: every fixture kind, v1 items, HMAC, and hostile input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nemo_monitor::{FormatOptions, Formatter};
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::datetime;

const AT: OffsetDateTime = datetime!(2025-10-17 09:48:30 UTC);

fn plain() -> Formatter {
    Formatter::new(FormatOptions {
        color: false,
        hmac_key: None,
        utc: true,
    })
}

fn with_key(key: &[u8]) -> Formatter {
    Formatter::new(FormatOptions {
        color: false,
        hmac_key: Some(key.to_vec()),
        utc: true,
    })
}

/// The topic the NEMO plugin uses for a fixture payload.
fn topic_for(v: &Value) -> String {
    let ev = v["event"].as_str().unwrap();
    let id = |k: &str| v[k].to_string();
    match ev {
        "tool_enabled" => format!("nemo/tools/{}/enabled", id("tool_id")),
        "tool_disabled" => format!("nemo/tools/{}/disabled", id("tool_id")),
        "tool_operational" => format!("nemo/tools/{}/operational", id("tool_id")),
        "tool_non_operational" => format!("nemo/tools/{}/non-operational", id("tool_id")),
        e if e.starts_with("task_") => format!("nemo/tools/{}/tasks", id("tool_id")),
        e if e.starts_with("tool_") => format!("nemo/tools/{}", id("tool_id")),
        e if e.starts_with("area_access") => format!("nemo/area_access/{}", id("access_id")),
        e if e.starts_with("area_") => format!("nemo/areas/{}", id("area_id")),
        e if e.starts_with("reservation_") => format!("nemo/reservations/{}", id("reservation_id")),
        other => panic!("unexpected fixture kind {other}"),
    }
}

fn payloads() -> Vec<(String, String, String)> {
    let text = nemo_testkit::fixture("payloads.json").unwrap();
    let map: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    map.into_iter()
        .map(|(name, v)| (name, topic_for(&v), serde_json::to_string(&v).unwrap()))
        .collect()
}

/// Every kind in payloads.json, each through a fresh formatter (no memory).
#[test]
fn every_fixture_kind_alone() {
    let expected = [
        (
            "tool_enabled",
            "09:48:30  Zeiss Supra 55 SEM #1               IN USE by Jane Doe",
        ),
        (
            "tool_disabled",
            "09:48:30  Zeiss Supra 55 SEM #1               FREE (Jane Doe)",
        ),
        (
            "tool_updated",
            "09:48:30  Oxford ICP Etcher #2 #12            tool updated (status on)",
        ),
        (
            "tool_created",
            "09:48:30  New ALD / Cambridge \"Savannah\" #99  tool created (status off)",
        ),
        (
            "area_updated",
            "09:48:30  area Cleanroom Bay 3 #3             area updated (reservation required)",
        ),
        (
            "reservation_created",
            "09:48:30  reservation #8812                   reservation created for Jane Doe, 2025-10-17 10:48 – 11:48",
        ),
        (
            "area_access",
            "09:48:30  area Cleanroom Bay 3 #3             ACCESS by Jane Doe",
        ),
        (
            "tool_non_operational",
            "09:48:30  Angstrom Evaporator #23             DOWN",
        ),
        (
            "task_shutdown",
            "09:48:30  Angstrom Evaporator #23             task #77 SHUTDOWN: \"Chamber won't pump below 1e-5 Torr\" (force shutdown)",
        ),
        (
            "tool_operational",
            "09:48:30  Angstrom Evaporator #23             BACK UP",
        ),
    ];
    let all = payloads();
    assert_eq!(
        all.len(),
        expected.len(),
        "a fixture kind without an expected line"
    );
    for (name, want) in expected {
        let (_, topic, payload) = all.iter().find(|(n, _, _)| n == name).unwrap();
        let got = plain().line(topic, payload.as_bytes(), false, AT);
        assert_eq!(got, want, "fixture {name}");
    }
}

/// The formatter remembers start times, downtimes and problem descriptions.
#[test]
fn sequence_uses_memory() {
    let f = plain();
    let all = payloads();
    let get = |n: &str| all.iter().find(|(name, _, _)| name == n).unwrap().clone();
    let mut lines = Vec::new();
    for name in [
        "tool_enabled",
        "tool_disabled",
        "task_shutdown",
        "tool_non_operational",
        "tool_operational",
    ] {
        let (_, topic, payload) = get(name);
        lines.push(f.line(&topic, payload.as_bytes(), false, AT));
    }
    assert_eq!(
        lines,
        [
            "09:48:30  Zeiss Supra 55 SEM #1               IN USE by Jane Doe",
            "09:48:30  Zeiss Supra 55 SEM #1               FREE after 9 min 54 s (Jane Doe)",
            "09:48:30  Angstrom Evaporator #23             task #77 SHUTDOWN: \"Chamber won't pump below 1e-5 Torr\" (force shutdown)",
            "09:48:30  Angstrom Evaporator #23             DOWN: \"Chamber won't pump below 1e-5 Torr\"",
            "09:48:30  Angstrom Evaporator #23             BACK UP after 1 h 6 min",
        ]
    );
}

#[test]
fn free_uses_start_time_from_payload_when_enable_not_seen() {
    let payload = br#"{"event": "tool_disabled", "tool_id": 5, "tool_name": "Dicer", "user_name": "Bo", "start_time": "2025-10-17T08:00:00+00:00", "end_time": "2025-10-17T09:12:00+00:00"}"#;
    assert_eq!(
        plain().line("nemo/tools/5/disabled", payload, false, AT),
        "09:48:30  Dicer #5                            FREE after 1 h 12 min (Bo)"
    );
}

#[test]
fn task_updates_and_flags() {
    let f = plain();
    let created = br#"{"event": "task_created", "task_id": 9, "tool_id": 3, "tool_name": "Wet bench", "problem_description": "Leaking valve", "force_shutdown": false, "safety_hazard": true, "cancelled": false, "resolved": false}"#;
    let resolved = br#"{"event": "task_updated", "task_id": 9, "tool_id": 3, "tool_name": "Wet bench", "problem_description": "Leaking valve", "force_shutdown": false, "safety_hazard": false, "cancelled": false, "resolved": true}"#;
    assert_eq!(
        f.line("nemo/tools/3/tasks", created, false, AT),
        "09:48:30  Wet bench #3                        task #9 created: \"Leaking valve\" (SAFETY HAZARD)"
    );
    assert_eq!(
        f.line("nemo/tools/3/tasks", resolved, false, AT),
        "09:48:30  Wet bench #3                        task #9 updated: \"Leaking valve\" (resolved)"
    );
}

#[test]
fn retained_and_local_offset() {
    let (_, topic, payload) = payloads()
        .into_iter()
        .find(|(n, _, _)| n == "tool_enabled")
        .unwrap();
    let f = Formatter::with_offset(FormatOptions::default(), time::macros::offset!(+2));
    assert_eq!(
        f.line(&topic, payload.as_bytes(), true, AT),
        "11:48:30  Zeiss Supra 55 SEM #1               IN USE by Jane Doe  [retained]"
    );
}

#[test]
fn colours_only_when_asked() {
    let (_, topic, payload) = payloads()
        .into_iter()
        .find(|(n, _, _)| n == "tool_non_operational")
        .unwrap();
    let f = Formatter::new(FormatOptions {
        color: true,
        hmac_key: None,
        utc: true,
    });
    let line = f.line(&topic, payload.as_bytes(), false, AT);
    assert!(line.contains("\x1b[1;31mDOWN\x1b[0m"), "{line:?}");
    assert!(
        !plain()
            .line(&topic, payload.as_bytes(), false, AT)
            .contains('\x1b')
    );
}

#[test]
fn bridge_status_line() {
    let line = plain().line(
        "nemo/bridge/status",
        br#"{"state":"online","since":"2025-10-17T09:00:00Z","version":"0.1.0"}"#,
        true,
        AT,
    );
    assert_eq!(
        line,
        "09:48:30  bridge                              bridge ONLINE since 2025-10-17 09:00  [retained]"
    );
}

/// Every v1 queue item, in order, against a reviewed snapshot.
#[test]
fn v1_items_snapshot() {
    let f = plain();
    let text = nemo_testkit::fixture("v1-queue-items.jsonl").unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let item: Value = serde_json::from_str(line).unwrap();
        let secs = item["timestamp"].as_f64().unwrap();
        let at = OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9) as i128).unwrap();
        out.push_str(&f.line(
            item["topic"].as_str().unwrap(),
            item["payload"].as_str().unwrap().as_bytes(),
            item["retain"].as_bool().unwrap(),
            at,
        ));
        out.push('\n');
    }
    let snapshot_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/v1-lines.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot_path, &out).unwrap();
    }
    let want = std::fs::read_to_string(&snapshot_path).unwrap();
    for (i, (got, want)) in out.lines().zip(want.lines()).enumerate() {
        assert_eq!(got, want, "v1 item {} differs", i + 1);
    }
    assert_eq!(out.lines().count(), want.lines().count());
    assert!(
        !out.contains('{'),
        "a v1 kind fell back to raw JSON:\n{out}"
    );
}

#[test]
fn hmac_envelopes_from_fixture() {
    let text = nemo_testkit::fixture("hmac-envelopes.json").unwrap();
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert!(!cases.is_empty());
    for case in &cases {
        let key = case["key"].as_str().unwrap().as_bytes();
        let envelope = case["envelope"].as_str().unwrap();
        let payload = case["payload"].as_str().unwrap();
        let inner: Value = serde_json::from_str(payload).unwrap();
        let topic = topic_for(&inner);
        // Valid: the inner event is shown, tagged ✓, and reads like the unsigned line.
        let good = with_key(key).line(&topic, envelope.as_bytes(), false, AT);
        let unsigned = plain().line(&topic, payload.as_bytes(), false, AT);
        assert_eq!(good, format!("{unsigned}  [HMAC ✓]"));
        // Wrong key: ✗.
        let bad = with_key(b"not-the-key").line(&topic, envelope.as_bytes(), false, AT);
        assert_eq!(bad, format!("{unsigned}  [HMAC ✗]"));
        // Tampered inner payload: ✗.
        // (the envelope starts with the payload, so the first digit 3 is inside it)
        let tampered = envelope.replacen('3', "4", 1);
        assert!(tampered.find('4') < tampered.find("hmac"));
        assert_ne!(tampered, envelope);
        let t = with_key(key).line(&topic, tampered.as_bytes(), false, AT);
        assert!(t.ends_with("[HMAC ✗]"), "{t}");
        // No key: unwrapped and marked as signed (unchecked).
        let nokey = plain().line(&topic, envelope.as_bytes(), false, AT);
        assert_eq!(nokey, format!("{unsigned}  [signed]"));
        // Key set but message unsigned: flagged.
        let naked = with_key(key).line(&topic, payload.as_bytes(), false, AT);
        assert_eq!(naked, format!("{unsigned}  [HMAC ✗ unsigned]"));
    }
}

fn assert_one_bounded_line(line: &str) {
    assert!(
        !line.contains('\n') && !line.contains('\r'),
        "not one line: {line:?}"
    );
    assert!(
        !line.chars().any(char::is_control),
        "control character in {line:?}"
    );
    assert!(
        line.chars().count() < 500,
        "line too long ({} chars)",
        line.chars().count()
    );
}

#[test]
fn tolerates_non_json_binary_empty_and_huge() {
    let f = plain();
    let t = "nemo/tools/1/enabled";
    let line = f.line(t, b"not json at all", false, AT);
    assert_eq!(
        line,
        "09:48:30  nemo/tools/1/enabled                non-JSON payload, 15 bytes: \"not json at all\""
    );
    let line = f.line(t, &[0xff, 0xfe, 0x00, 0x41], false, AT);
    assert_eq!(
        line,
        "09:48:30  nemo/tools/1/enabled                binary payload, 4 bytes (not UTF-8)"
    );
    let line = f.line(t, b"", true, AT);
    assert_eq!(
        line,
        "09:48:30  nemo/tools/1/enabled                (empty payload)  [retained]"
    );

    // 1 MB of text that is not JSON.
    let huge = "x".repeat(1 << 20);
    let line = f.line(t, huge.as_bytes(), false, AT);
    assert_one_bounded_line(&line);
    assert!(line.contains("1048576 bytes"), "{line}");
    assert!(
        line.ends_with(&format!("…[+{} bytes]\"", (1 << 20) - 239)),
        "{line}"
    );

    // 1 MB JSON document of an unknown kind: compact JSON, truncated with a marker.
    let doc = serde_json::json!({"event": "mystery", "blob": "y".repeat(1 << 20)}).to_string();
    let line = f.line("nemo/other", doc.as_bytes(), false, AT);
    assert_one_bounded_line(&line);
    assert!(line.contains(r#"{"blob":"yyyy"#), "{line}");
    assert!(line.contains("…[+"), "{line}");

    // A 1 MB problem description in a known kind is cut too.
    let doc = serde_json::json!({"event": "task_created", "task_id": 1, "tool_id": 2, "tool_name": "T", "problem_description": "z".repeat(1 << 20)}).to_string();
    let line = f.line("nemo/tools/2/tasks", doc.as_bytes(), false, AT);
    assert_one_bounded_line(&line);
    assert!(line.contains("task #1 created: \"zzz"), "{line}");
    assert!(line.contains('…'), "{line}");
}

#[test]
fn unknown_kinds_and_odd_json_fall_back_to_compact_json() {
    let f = plain();
    let line = f.line(
        "nemo/tools/4/calibrated",
        br#"{"event": "tool_calibrated", "tool_id": 4, "tool_name": "AFM", "extra": [1, 2]}"#,
        false,
        AT,
    );
    assert_eq!(
        line,
        r#"09:48:30  AFM #4                              {"event":"tool_calibrated","extra":[1,2],"tool_id":4,"tool_name":"AFM"}"#
    );
    let line = f.line("nemo/x", b"[1, 2, 3]", false, AT);
    assert_eq!(
        line,
        "09:48:30  nemo/x                              [1,2,3]"
    );
    let line = f.line("nemo/x", b"42", false, AT);
    assert_eq!(line, "09:48:30  nemo/x                              42");
    // Wrong types in known fields do not break the known kinds.
    let line = f.line(
        "nemo/tools/8/enabled",
        br#"{"event": "tool_enabled", "tool_id": "8", "tool_name": null, "user_name": 12, "start_time": false}"#,
        false,
        AT,
    );
    assert_eq!(
        line,
        "09:48:30  tool #8                             IN USE by 12"
    );
}

#[test]
fn names_cannot_inject_terminal_escapes() {
    let payload = serde_json::json!({
        "event": "tool_enabled", "tool_id": 1,
        "tool_name": "Evil\u{1b}[2J\u{1b}[HTool\nsecond line",
        "user_name": "Mal\u{7}lory\r"
    })
    .to_string();
    let line = plain().line("nemo/tools/1/enabled", payload.as_bytes(), false, AT);
    assert_one_bounded_line(&line);
    assert!(line.contains("Evil [2J [HTool second line"), "{line}");
    // Long names are cut to the column and the columns stay aligned.
    let payload = serde_json::json!({"event": "tool_enabled", "tool_id": 1, "tool_name": "N".repeat(100), "user_name": "U"}).to_string();
    let line = plain().line("nemo/tools/1/enabled", payload.as_bytes(), false, AT);
    assert_eq!(
        line,
        format!("09:48:30  {}… #1  IN USE by U", "N".repeat(30))
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_input_gives_one_clean_line(
            topic in "\\PC{0,80}",
            payload in proptest::collection::vec(any::<u8>(), 0..2000),
            retain in any::<bool>(),
        ) {
            let line = plain().line(&topic, &payload, retain, AT);
            assert_one_bounded_line(&line);
        }

        #[test]
        fn any_json_object_gives_one_clean_line(
            kind in prop_oneof![Just("tool_enabled"), Just("tool_disabled"), Just("task_shutdown"),
                                Just("tool_non_operational"), Just("area_access"), Just("reservation_created"), Just("zzz")],
            name in "\\PC{0,300}",
            user in any::<String>(),
            when in any::<String>(),
        ) {
            let doc = serde_json::json!({"event": kind, "tool_id": 1, "tool_name": name, "user_name": user,
                "start_time": when, "end_time": when, "timestamp": when, "problem_description": name});
            let line = plain().line("nemo/tools/1/x", doc.to_string().as_bytes(), false, AT);
            assert_one_bounded_line(&line);
        }
    }
}

/// A payload of `kind` carrying every member of `row` (ids 5, names "N", times, flags true),
/// and the topic the plugin would publish it on.
fn sample(row: &nemo_events::EventKind, kind: &str) -> (String, String) {
    let mut obj = serde_json::Map::new();
    obj.insert("event".into(), Value::from(kind));
    for m in row.members {
        let v = match *m {
            m if m.ends_with("_id") => Value::from(5),
            m if m.ends_with("_time") || m.ends_with("_at") || m == "timestamp" => {
                Value::from("2025-10-17T09:00:00+00:00")
            }
            "tool_name" | "user_name" | "area_name" | "problem_description" => Value::from("N"),
            _ => Value::from(true),
        };
        obj.insert((*m).to_owned(), v);
    }
    let topic = row.topic.replace(
        &row.topic[row.topic.find('{').unwrap()..=row.topic.find('}').unwrap()],
        "5",
    );
    (topic, Value::Object(obj).to_string())
}

/// Every kind of nemo-events' table has a line in words (its words), never the compact-JSON
/// fallback of an unknown kind: a kind added to the table without a wording fails here.
#[test]
fn every_kind_of_the_table_has_words() {
    for row in nemo_events::EVENT_KINDS {
        let (topic, payload) = sample(row, row.kind);
        let line = plain().line(&topic, payload.as_bytes(), false, AT);
        assert!(
            !line.contains("{\""),
            "{}: falls back to JSON: {line}",
            row.kind
        );
        assert!(
            line.contains(row.words),
            "{}: {line:?} lacks {:?}",
            row.kind,
            row.words
        );
    }
}

/// Kinds the plugin does not send but that belong to a row's family read like the row, with
/// their own verb.
#[test]
fn family_kinds_read_like_their_row() {
    let cases = [
        ("tool_deleted", "N #5", "tool deleted (status on)"),
        ("task_reopened", "N #5", "task #5 reopened: \"N\""),
        (
            "area_deleted",
            "area N #5",
            "area deleted (reservation required)",
        ),
        (
            "reservation_deleted",
            "reservation #5",
            "reservation deleted for N",
        ),
    ];
    for (kind, subject, what) in cases {
        let row = nemo_events::EventKind::family_of(kind).unwrap();
        let (topic, payload) = sample(row, kind);
        let line = plain().line(&topic, payload.as_bytes(), false, AT);
        let want = format!("09:48:30  {subject:<34}  {what}");
        assert!(line.starts_with(&want), "{kind}: {line:?}, want {want:?}");
    }
}
