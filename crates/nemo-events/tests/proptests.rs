//! Property tests: writing then parsing is the identity, and no input makes a parser panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nemo_events::{
    Area, AreaAccess, EventTime, NemoEvent, QueueItem, Reservation, Task, ToolInfo,
    ToolOperational, ToolUsage, Topic, UnknownEvent,
};
use proptest::prelude::*;

/// Names as messy as the field's: quotes, backslashes, '/', '#', '+', controls, non-ASCII, emoji.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ]{0,12}",
        "[\"\\\\/#+\\- a-z]{0,12}",
        "\\PC{0,12}",
        any::<String>(),
        Just("Süss MA6 #2 / \"Savannah\" + 李雷 \u{1F52C}\u{7f}\u{0}".to_owned()),
    ]
}

fn time_value() -> impl Strategy<Value = EventTime> {
    prop_oneof![
        (0i64..4_102_444_800, 0u32..1_000_000).prop_map(|(s, us)| {
            EventTime::from_datetime(
                time::OffsetDateTime::from_unix_timestamp(s).unwrap()
                    + time::Duration::microseconds(us.into()),
            )
        }),
        any::<bool>().prop_map(EventTime::from_bool),
        (0.0f64..4e9).prop_map(|s| EventTime::from_unix_seconds(s).unwrap()),
        name().prop_map(EventTime::from_text),
    ]
}

fn id() -> impl Strategy<Value = Option<u64>> {
    proptest::option::of(any::<u64>())
}
fn text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(name())
}
fn flag() -> impl Strategy<Value = Option<bool>> {
    proptest::option::of(any::<bool>())
}
fn when() -> impl Strategy<Value = Option<EventTime>> {
    proptest::option::of(time_value())
}

fn extra() -> impl Strategy<Value = nemo_events::Extra> {
    proptest::collection::vec(("[a-z_]{1,8}", any::<i64>(), name()), 0..3).prop_map(|kvs| {
        let mut x = nemo_events::Extra::default();
        for (k, n, s) in kvs {
            // Keys that name modelled fields are a different test; avoid them here.
            let k = format!("x_{k}");
            x.insert(k, &(n, s)).unwrap();
        }
        x
    })
}

fn event() -> impl Strategy<Value = NemoEvent> {
    let usage = (id(), text(), id(), text(), when(), when(), extra())
        .prop_map(
            |(tool_id, tool_name, usage_id, user_name, start_time, end_time, extra)| ToolUsage {
                tool_id,
                tool_name,
                usage_id,
                user_name,
                start_time,
                end_time,
                extra,
            },
        )
        .boxed();
    let operational = (id(), text(), flag(), when(), extra())
        .prop_map(
            |(tool_id, tool_name, operational, timestamp, extra)| ToolOperational {
                tool_id,
                tool_name,
                operational,
                timestamp,
                extra,
            },
        )
        .boxed();
    let task = (
        id(),
        id(),
        text(),
        text(),
        (flag(), flag(), flag(), flag()),
        when(),
        when(),
        extra(),
    )
        .prop_map(
            |(
                task_id,
                tool_id,
                tool_name,
                problem_description,
                (force_shutdown, safety_hazard, cancelled, resolved),
                created_at,
                updated_at,
                extra,
            )| Task {
                task_id,
                tool_id,
                tool_name,
                problem_description,
                force_shutdown,
                safety_hazard,
                cancelled,
                resolved,
                created_at,
                updated_at,
                extra,
            },
        )
        .boxed();
    let info = (id(), text(), flag(), when(), extra())
        .prop_map(
            |(tool_id, tool_name, tool_status, timestamp, extra)| ToolInfo {
                tool_id,
                tool_name,
                tool_status,
                timestamp,
                extra,
            },
        )
        .boxed();
    let area = (id(), text(), flag(), when(), extra())
        .prop_map(
            |(area_id, area_name, area_requires_reservation, timestamp, extra)| Area {
                area_id,
                area_name,
                area_requires_reservation,
                timestamp,
                extra,
            },
        )
        .boxed();
    let reservation = (id(), id(), text(), when(), when(), when(), extra())
        .prop_map(
            |(reservation_id, user_id, user_name, start_time, end_time, timestamp, extra)| {
                Reservation {
                    reservation_id,
                    user_id,
                    user_name,
                    start_time,
                    end_time,
                    timestamp,
                    extra,
                }
            },
        )
        .boxed();
    let access = (id(), id(), text(), id(), text(), when(), when(), extra())
        .prop_map(
            |(access_id, user_id, user_name, area_id, area_name, access_time, timestamp, extra)| {
                AreaAccess {
                    access_id,
                    user_id,
                    user_name,
                    area_id,
                    area_name,
                    access_time,
                    timestamp,
                    extra,
                }
            },
        )
        .boxed();
    let unknown = ("[a-z_]{1,12}", extra())
        .prop_filter("known kinds have typed variants", |(k, _)| {
            !NemoEvent::KNOWN_KINDS.contains(&k.as_str())
        })
        .prop_map(|(kind, extra)| UnknownEvent { kind, extra });
    prop_oneof![
        usage.clone().prop_map(NemoEvent::ToolEnabled),
        usage.prop_map(NemoEvent::ToolDisabled),
        operational.clone().prop_map(NemoEvent::ToolOperational),
        operational.prop_map(NemoEvent::ToolNonOperational),
        task.clone().prop_map(NemoEvent::TaskCreated),
        task.clone().prop_map(NemoEvent::TaskUpdated),
        task.prop_map(NemoEvent::TaskShutdown),
        info.clone().prop_map(NemoEvent::ToolCreated),
        info.prop_map(NemoEvent::ToolUpdated),
        area.clone().prop_map(NemoEvent::AreaCreated),
        area.prop_map(NemoEvent::AreaUpdated),
        reservation.clone().prop_map(NemoEvent::ReservationCreated),
        reservation.prop_map(NemoEvent::ReservationUpdated),
        access.prop_map(NemoEvent::AreaAccess),
        unknown.prop_map(NemoEvent::Unknown),
    ]
}

fn topic() -> impl Strategy<Value = Topic> {
    "[^+#\u{0}]{1,40}".prop_map(|s| Topic::new(s).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn event_parse_after_to_json_is_identity(ev in event()) {
        let json = ev.to_json();
        let back = NemoEvent::parse(&json).unwrap();
        prop_assert_eq!(&back, &ev);
        // Stable: a parsed event writes the same bytes again.
        prop_assert_eq!(back.to_json(), json.clone());
        // Valid JSON for any other reader, and only ASCII like Python's default.
        prop_assert!(json.is_ascii());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(v["event"].as_str(), Some(ev.kind()));
    }

    #[test]
    fn item_parse_after_to_json_is_identity(ev in event(), t in topic(), qos in 0u8..3, retain in any::<bool>()) {
        let mut item = QueueItem::new(t, &ev);
        item.qos = nemo_events::Qos::from_u8(qos).unwrap();
        item.retain = retain;
        let json = item.to_json();
        let back = QueueItem::parse(json.as_bytes()).unwrap();
        prop_assert_eq!(&back, &item);
        prop_assert_eq!(back.to_json(), json);
        prop_assert_eq!(back.event().unwrap(), ev);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = QueueItem::parse(&bytes);
        let _ = NemoEvent::parse(&String::from_utf8_lossy(&bytes));
        #[cfg(feature = "hmac")]
        let _ = nemo_events::hmac::verify(&bytes, b"key");
    }

    #[test]
    fn json_like_text_never_panics(s in "[\\[\\]{}\":,0-9a-z\\\\ .eE+-]{0,200}") {
        let _ = QueueItem::parse(s.as_bytes());
        let _ = NemoEvent::parse(&s);
        #[cfg(feature = "hmac")]
        let _ = nemo_events::hmac::verify(s.as_bytes(), b"key");
    }

    #[test]
    fn mutated_items_never_panic_and_reparse_stably(
        pos in any::<proptest::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let line = r#"{"topic": "nemo/tools/1/enabled", "payload": "{\"event\": \"tool_enabled\", \"tool_id\": 1, \"tool_name\": \"Zeiss\", \"usage_id\": 3401, \"user_name\": \"Jos\\u00e9\", \"start_time\": \"2025-10-16T14:02:32.944572+00:00\"}", "qos": 1, "retain": false, "timestamp": 1760623352.944572}"#;
        let mut bytes = line.as_bytes().to_vec();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        if let Ok(item) = QueueItem::parse(&bytes) {
            // Whatever was accepted writes out to something that parses to the same item.
            let again = QueueItem::parse(item.to_json().as_bytes()).unwrap();
            prop_assert_eq!(&again, &item);
            if let Ok(ev) = item.event() {
                prop_assert_eq!(NemoEvent::parse(&ev.to_json()).unwrap(), ev);
            }
        }
    }

    #[test]
    fn hmac_round_trip(payload in any::<String>(), key in proptest::collection::vec(any::<u8>(), 0..100)) {
        #[cfg(feature = "hmac")]
        {
            let env = nemo_events::hmac::sign(&payload, &key);
            prop_assert_eq!(nemo_events::hmac::verify(env.as_bytes(), &key), Ok(payload));
        }
        #[cfg(not(feature = "hmac"))]
        let _ = (payload, key);
    }
}
