//! Board state after sequences of events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nemo_monitor::Board;
use nemo_monitor::board::Status;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2025-10-17 09:00:00 UTC);

fn at(min: i64) -> OffsetDateTime {
    T0 + Duration::minutes(min)
}

fn ev(board: &mut Board, topic: &str, json: &str, min: i64) {
    board.apply(topic, json.as_bytes(), at(min));
}

#[test]
fn lifecycle_of_one_tool() {
    let mut b = Board::new();
    let tool = |b: &Board| b.tool("23").cloned().unwrap();

    ev(
        &mut b,
        "nemo/tools/23/enabled",
        r#"{"event": "tool_enabled", "tool_id": 23, "tool_name": "Angstrom Evaporator", "usage_id": 1, "user_name": "Jane Doe", "start_time": "2025-10-17T09:00:00+00:00"}"#,
        0,
    );
    let t = tool(&b);
    assert_eq!(t.status, Status::InUse);
    assert_eq!(t.in_use.as_ref().unwrap().user, "Jane Doe");
    assert_eq!(t.in_use.as_ref().unwrap().since, T0);
    assert_eq!(t.name.as_deref(), Some("Angstrom Evaporator"));

    ev(
        &mut b,
        "nemo/tools/23/disabled",
        r#"{"event": "tool_disabled", "tool_id": 23, "tool_name": "Angstrom Evaporator", "usage_id": 1, "user_name": "Jane Doe", "end_time": "2025-10-17T09:30:00+00:00"}"#,
        30,
    );
    let t = tool(&b);
    assert_eq!(t.status, Status::Idle);
    assert!(t.in_use.is_none());
    assert_eq!(t.last_user.as_deref(), Some("Jane Doe"));

    ev(
        &mut b,
        "nemo/tools/23/tasks",
        r#"{"event": "task_shutdown", "task_id": 77, "tool_id": 23, "tool_name": "Angstrom Evaporator", "problem_description": "Chamber won't pump", "force_shutdown": true, "safety_hazard": false, "cancelled": false, "resolved": false}"#,
        40,
    );
    let t = tool(&b);
    assert_eq!(t.open_tasks.len(), 1);
    assert_eq!(t.open_tasks[0].task_id, "77");
    assert_eq!(t.open_tasks[0].description, "Chamber won't pump");
    assert!(t.open_tasks[0].force_shutdown);
    assert_eq!(
        t.status,
        Status::Idle,
        "a task alone does not mark the tool down"
    );

    ev(
        &mut b,
        "nemo/tools/23/non-operational",
        r#"{"event": "tool_non_operational", "tool_id": 23, "tool_name": "Angstrom Evaporator", "operational": false, "timestamp": "2025-10-17T09:41:00+00:00"}"#,
        41,
    );
    let t = tool(&b);
    assert_eq!(t.status, Status::Down);
    assert_eq!(t.down_since, Some(at(41)));

    // Someone starts using it while it is down: still shown as down.
    ev(
        &mut b,
        "nemo/tools/23/enabled",
        r#"{"event": "tool_enabled", "tool_id": 23, "user_name": "Ada", "start_time": "2025-10-17T09:50:00+00:00"}"#,
        50,
    );
    assert_eq!(tool(&b).status, Status::Down);

    ev(
        &mut b,
        "nemo/tools/23/operational",
        r#"{"event": "tool_operational", "tool_id": 23, "tool_name": "Angstrom Evaporator", "operational": true, "timestamp": true}"#,
        60,
    );
    let t = tool(&b);
    assert_eq!(t.status, Status::InUse);
    assert!(t.down_since.is_none());
    assert_eq!(t.open_tasks.len(), 1, "the task stays open until resolved");

    ev(
        &mut b,
        "nemo/tools/23/tasks",
        r#"{"event": "task_updated", "task_id": 77, "tool_id": 23, "problem_description": "Chamber won't pump", "resolved": true, "cancelled": false}"#,
        61,
    );
    assert!(tool(&b).open_tasks.is_empty());
    assert_eq!(b.tools().count(), 1);
}

#[test]
fn render_shows_every_state() {
    let mut b = Board::new();
    ev(
        &mut b,
        "nemo/tools/1/enabled",
        r#"{"event": "tool_enabled", "tool_id": 1, "tool_name": "Zeiss Supra 55 SEM", "user_name": "Jane Doe", "start_time": "2025-10-17T09:00:00+00:00"}"#,
        0,
    );
    ev(
        &mut b,
        "nemo/tools/7/disabled",
        r#"{"event": "tool_disabled", "tool_id": 7, "tool_name": "Heidelberg MLA150", "user_name": "Ada Lovelace"}"#,
        5,
    );
    ev(
        &mut b,
        "nemo/tools/23/tasks",
        r#"{"event": "task_shutdown", "task_id": 77, "tool_id": 23, "tool_name": "Angstrom Evaporator", "problem_description": "Chamber won't pump below 1e-5 Torr", "force_shutdown": true}"#,
        9,
    );
    ev(
        &mut b,
        "nemo/tools/23/non-operational",
        r#"{"event": "tool_non_operational", "tool_id": 23, "tool_name": "Angstrom Evaporator", "operational": false, "timestamp": false}"#,
        10,
    );
    ev(
        &mut b,
        "nemo/bridge/status",
        r#"{"state":"online","since":"2025-10-17T08:00:00Z"}"#,
        0,
    );
    b.set_queue_stats(nemo_monitor::QueueStats {
        source: "list".into(),
        pending: 4,
        processing: 1,
        dead: 2,
        display_connected: None,
        at: at(70),
    });
    let text = b.render_at(false, at(72));
    let want = "\
bridge: ONLINE since 2025-10-17 08:00 | queue (list): 4 pending · 1 in processing · 2 dead (at 10:10:00, 2 min 0 s old)
TOOL                                STATE    SINCE             DETAIL
Zeiss Supra 55 SEM #1               IN USE   09:00             Jane Doe (1 h 12 min)
Heidelberg MLA150 #7                idle     ~09:05            last: Ada Lovelace
Angstrom Evaporator #23             DOWN     ~09:10            \"Chamber won't pump below 1e-5 Torr\"  [1 open task]
";
    assert_eq!(text, want);
    assert!(!text.contains('\x1b'));
    assert!(b.render_at(true, at(72)).contains("\x1b[1;31mDOWN"));
    assert!(
        Board::new()
            .render_at(false, T0)
            .contains("no tools seen yet")
    );
}

#[test]
fn ignores_what_it_cannot_use() {
    let mut b = Board::new();
    for (topic, payload) in [
        ("nemo/tools/1/enabled", &b"not json"[..]),
        ("nemo/tools/1/enabled", &[0xff, 0xfe][..]),
        ("nemo/tools/1/enabled", &b""[..]),
        (
            "nemo/areas/3",
            &br#"{"event": "area_updated", "area_id": 3}"#[..],
        ),
        (
            "nemo/reservations/1",
            &br#"{"event": "reservation_created"}"#[..],
        ),
        ("nemo/whatever", &br#"{"event": "zzz"}"#[..]),
        ("nemo/tools", &br#"{"event": "tool_enabled"}"#[..]),
    ] {
        b.apply(topic, payload, T0);
    }
    assert_eq!(b.tools().count(), 0);
}

#[test]
fn event_kind_from_topic_when_payload_lacks_it() {
    let mut b = Board::new();
    b.apply("nemo/tools/5/enabled", br#"{"user_name": "Kim"}"#, T0);
    assert_eq!(b.tool("5").unwrap().status, Status::InUse);
    b.apply("nemo/tools/5/non-operational", br#"{}"#, T0);
    assert_eq!(b.tool("5").unwrap().status, Status::Down);
}

#[test]
fn tools_sorted_numerically() {
    let mut b = Board::new();
    for id in ["12", "7", "abc", "100", "1"] {
        b.apply(
            &format!("nemo/tools/{id}/enabled"),
            br#"{"user_name": "x"}"#,
            T0,
        );
    }
    let ids: Vec<_> = b.tools().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["1", "7", "12", "100", "abc"]);
}

#[test]
fn with_key_only_signed_tool_events_count() {
    let text = nemo_testkit::fixture("hmac-envelopes.json").unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let key = cases[0]["key"].as_str().unwrap().as_bytes().to_vec();
    let envelope = cases[0]["envelope"].as_str().unwrap();
    let payload = cases[0]["payload"].as_str().unwrap();

    let mut b = Board::new().with_hmac_key(Some(key));
    b.apply("nemo/tools/1/enabled", payload.as_bytes(), T0);
    assert!(b.tool("1").is_none(), "unsigned event accepted");
    b.apply(
        "nemo/tools/1/enabled",
        envelope.replacen('3', "4", 1).as_bytes(),
        T0,
    );
    assert!(b.tool("1").is_none(), "tampered event accepted");
    b.apply("nemo/tools/1/enabled", envelope.as_bytes(), T0);
    assert_eq!(
        b.tool("1").unwrap().in_use.as_ref().unwrap().user,
        "Jane Doe"
    );
    // With a key the bridge signs its status too: a signed one counts, an unsigned one
    // (anybody could have published it) does not.
    let key = cases[0]["key"].as_str().unwrap().as_bytes();
    let signed = nemo_events::hmac::sign(r#"{"state":"online"}"#, key);
    b.apply("nemo/bridge/status", signed.as_bytes(), T0);
    assert_eq!(b.bridge().unwrap().state, "online");
    b.apply("nemo/bridge/status", br#"{"state":"offline"}"#, T0);
    assert_eq!(
        b.bridge().unwrap().state,
        "online",
        "unsigned status accepted"
    );
    assert!(!format!("{b:?}").contains("nemo-fixture-secret"));
}

#[test]
fn fixture_stream_ends_in_expected_state() {
    let mut b = Board::new();
    for line in nemo_testkit::fixture("v1-queue-items.jsonl")
        .unwrap()
        .lines()
    {
        let item: serde_json::Value = serde_json::from_str(line).unwrap();
        b.apply(
            item["topic"].as_str().unwrap(),
            item["payload"].as_str().unwrap().as_bytes(),
            T0,
        );
    }
    let ids: Vec<_> = b.tools().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["1", "7", "12", "23", "42", "99"]);
    assert!(
        b.tools()
            .filter(|t| t.id != "23")
            .all(|t| t.status == Status::Idle)
    );
    let evap = b.tool("23").unwrap();
    assert_eq!(evap.status, Status::Idle, "operational again at the end");
    assert_eq!(evap.open_tasks.len(), 1);
    assert_eq!(
        b.tool("99").unwrap().name.as_deref(),
        Some("New ALD / Cambridge \"Savannah\"")
    );
}

mod hub {
    use nemo_monitor::web::Hub;
    use nemo_monitor::{Board, FormatOptions, Formatter};

    #[test]
    fn hub_state_and_hmac_rejection() {
        let text = nemo_testkit::fixture("hmac-envelopes.json").unwrap();
        let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        let key = cases[0]["key"].as_str().unwrap().as_bytes().to_vec();
        let opts = FormatOptions {
            color: false,
            hmac_key: Some(key.clone()),
            utc: true,
        };
        let hub = Hub::new(Formatter::new(opts), Board::new().with_hmac_key(Some(key)));
        let now = time::OffsetDateTime::now_utc();
        // Unsigned: shown in the feed (as ✗) but not on the board.
        hub.ingest(
            "nemo/tools/1/enabled",
            cases[0]["payload"].as_str().unwrap().as_bytes(),
            false,
            now,
        );
        let state = hub.state_json();
        assert_eq!(state["tools"].as_array().unwrap().len(), 0);
        assert_eq!(state["messages"], 1);
        // Signed: on the board.
        hub.ingest(
            "nemo/tools/1/enabled",
            cases[0]["envelope"].as_str().unwrap().as_bytes(),
            true,
            now,
        );
        let state = hub.state_json();
        assert_eq!(state["tools"][0]["status"], "in_use");
        assert_eq!(state["tools"][0]["in_use"]["user"], "Jane Doe");
        assert_eq!(state["sse_clients"], 0);
        assert_eq!(hub.board().tools().count(), 1);
        hub.set_queue_stats(nemo_monitor::QueueStats {
            source: "database".into(),
            pending: 5,
            processing: 0,
            dead: 1,
            display_connected: Some(true),
            at: now,
        });
        let state = hub.state_json();
        assert_eq!(state["queue"]["pending"], 5);
        assert_eq!(state["queue"]["source"], "database");
        assert_eq!(state["queue"]["display_connected"], true);
        assert!(state["queue_rejected"].is_null());
    }
}

/// A monitor started after the events were delivered rebuilds the board from the retained
/// per-tool state documents the bridge publishes (`topics.state_topics`, on by default): the
/// SINCE column and the durations come from the documents' `since`, not from when the monitor
/// received them; a date is shown when it is not today, durations over a day in days.
#[test]
fn board_rebuilt_from_retained_state_documents() {
    let now = datetime!(2025-12-01 10:00:00 UTC);
    let mut b = Board::new();
    for (topic, doc) in [
        (
            "nemo/tools/1/state",
            r#"{"tool_id":1,"tool_name":"Zeiss Supra 55 SEM","state":"in_use","user_name":"Jane Doe","since":"2025-10-16T14:02:32.944572+00:00","event":"tool_enabled"}"#,
        ),
        (
            "nemo/tools/7/state",
            r#"{"tool_id":7,"tool_name":"Heidelberg MLA150","state":"idle","user_name":"Ada Lovelace","since":"2025-12-01T09:12:00+00:00","event":"tool_disabled"}"#,
        ),
        (
            "nemo/tools/23/state",
            r#"{"tool_id":23,"tool_name":"Angstrom Evaporator","state":"down","user_name":null,"since":"2024-11-30T08:00:00+00:00","event":"tool_non_operational"}"#,
        ),
        (
            "nemo/tools/42/state",
            r#"{"tool_id":42,"tool_name":"李雷's etcher","state":"in_use","user_name":"José Álvarez","since":null,"event":"tool_enabled"}"#,
        ),
    ] {
        b.apply(topic, doc.as_bytes(), now);
    }
    let sem = b.tool("1").unwrap();
    assert_eq!(sem.status, Status::InUse);
    assert_eq!(
        sem.in_use.as_ref().unwrap().since,
        datetime!(2025-10-16 14:02:32.944572 UTC)
    );
    assert!(!sem.in_use.as_ref().unwrap().since_received);
    assert_eq!(b.tool("7").unwrap().status, Status::Idle);
    assert_eq!(b.tool("23").unwrap().status, Status::Down);
    assert!(
        b.tool("42")
            .unwrap()
            .in_use
            .as_ref()
            .unwrap()
            .since_received
    );
    let text = b.render_at(false, now + Duration::minutes(5));
    let rows: Vec<&str> = text.lines().skip(2).collect();
    assert_eq!(
        rows,
        vec![
            "Zeiss Supra 55 SEM #1               IN USE   16 Oct 14:02      Jane Doe (45 d)",
            "Heidelberg MLA150 #7                idle     09:12             last: Ada Lovelace",
            "Angstrom Evaporator #23             DOWN     2024-11-30 08:00  ",
            "李雷's etcher #42                   IN USE   ~10:00            José Álvarez (5 min 0 s)",
        ]
    );
    // The live stream after the documents: an event and its own state document again agree.
    ev(
        &mut b,
        "nemo/tools/1/disabled",
        r#"{"event": "tool_disabled", "tool_id": 1, "user_name": "Jane Doe", "end_time": "2025-12-01T10:06:00+00:00"}"#,
        0,
    );
    b.apply(
        "nemo/tools/1/state",
        br#"{"tool_id":1,"tool_name":"Zeiss Supra 55 SEM","state":"idle","user_name":"Jane Doe","since":"2025-12-01T10:06:00+00:00","event":"tool_disabled"}"#,
        now,
    );
    assert_eq!(b.tool("1").unwrap().status, Status::Idle);
    assert_eq!(b.tool("1").unwrap().last_user.as_deref(), Some("Jane Doe"));
    b.apply(
        "nemo/tools/23/state",
        br#"{"tool_id":23,"state":"up","user_name":null,"since":null,"event":"tool_operational"}"#,
        now,
    );
    assert_eq!(b.tool("23").unwrap().status, Status::Idle);
}

/// With a key, a state document that does not verify does not change the board.
#[test]
fn with_key_an_unsigned_state_document_is_ignored() {
    let mut b = Board::new().with_hmac_key(Some(b"k".to_vec()));
    b.apply(
        "nemo/tools/1/state",
        br#"{"tool_id":1,"state":"in_use","user_name":"Mallory","since":null,"event":"tool_enabled"}"#,
        T0,
    );
    assert!(b.tool("1").is_none());
}

/// Issue #28, part 9: "idle since" is the end of the last usage (`end_time` of the
/// `tool_disabled` payload), not the time the monitor received the message marked `~`. Only a
/// payload without `end_time` falls back to the receive time, marked.
#[test]
fn idle_since_is_the_end_of_the_last_usage() {
    let payloads: serde_json::Value =
        serde_json::from_str(&nemo_testkit::fixture("payloads.json").unwrap()).unwrap();
    let enabled = serde_json::to_string(&payloads["tool_enabled"]).unwrap();
    let disabled = serde_json::to_string(&payloads["tool_disabled"]).unwrap();
    let end = payloads["tool_disabled"]["end_time"].as_str().unwrap();
    let end =
        time::OffsetDateTime::parse(end, &time::format_description::well_known::Rfc3339).unwrap();
    // Received long after the usage ended (a monitor started later, a slow queue).
    let received = end + Duration::hours(3);
    let mut b = Board::new();
    b.apply("nemo/tools/1/enabled", enabled.as_bytes(), received);
    assert_eq!(b.tool("1").unwrap().idle_since, None, "in use, not idle");
    b.apply("nemo/tools/1/disabled", disabled.as_bytes(), received);
    let t = b.tool("1").unwrap();
    assert_eq!(t.status, Status::Idle);
    assert_eq!(t.idle_since, Some(end));
    assert!(!t.idle_since_received);
    let row = b
        .render_at(false, received)
        .lines()
        .nth(2)
        .unwrap()
        .to_owned();
    assert_eq!(
        row,
        "Zeiss Supra 55 SEM #1               idle     14:12             last: Jane Doe"
    );

    // Without end_time: the receive time, marked with `~`.
    let mut no_end = payloads["tool_disabled"].clone();
    no_end.as_object_mut().unwrap().remove("end_time");
    b.apply(
        "nemo/tools/1/disabled",
        serde_json::to_string(&no_end).unwrap().as_bytes(),
        received,
    );
    let t = b.tool("1").unwrap();
    assert_eq!(t.idle_since, Some(received));
    assert!(t.idle_since_received);
    assert!(
        b.render_at(false, received).contains("idle     ~17:12 "),
        "{}",
        b.render_at(false, received)
    );

    // The dashboard's JSON carries it too.
    let json = serde_json::to_value(b.tool("1").unwrap()).unwrap();
    assert_eq!(json["idle_since_received"], true);
    assert!(
        json["idle_since"]
            .as_str()
            .unwrap()
            .starts_with("2025-10-16T17:12:26")
    );
}

/// Verified figures are shown with their source and age; an ignored document is said so.
#[test]
fn queue_figures_and_an_ignored_document_on_the_health_line() {
    let mut b = Board::new();
    assert!(
        b.health_line_at(false, T0)
            .ends_with("| queue: no figures seen"),
        "{}",
        b.health_line_at(false, T0)
    );
    b.set_queue_stats(nemo_monitor::QueueStats {
        source: "database".into(),
        pending: 3,
        processing: 1,
        dead: 0,
        display_connected: Some(false),
        at: T0,
    });
    assert_eq!(
        b.health_line_at(false, at(1)),
        "bridge: no status seen | queue (database): 3 pending · 1 in processing · 0 dead · displays' broker NOT connected (at 09:00:00, 1 min 0 s old)"
    );
    b.reject_queue_figures("queue figures: signature: mismatch", at(2));
    let line = b.health_line_at(false, at(2));
    assert!(
        line.contains("3 pending"),
        "the verified figures stay: {line}"
    );
    assert!(
        line.ends_with("| queue figures NOT VERIFIED at 09:02:00, ignored"),
        "{line}"
    );
    b.set_queue_stats(nemo_monitor::QueueStats {
        source: "database".into(),
        pending: 0,
        processing: 0,
        dead: 0,
        display_connected: None,
        at: at(3),
    });
    assert!(b.rejected_figures().is_none());
    assert!(!b.health_line_at(false, at(3)).contains("NOT VERIFIED"));
}
