//! The crate against the field fixtures in `tests/fixtures/` of the workspace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use nemo_events::{EventTime, ItemError, NemoEvent, Qos, QueueItem, TopicError};
use serde_json::value::RawValue;

const V1: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/v1-queue-items.jsonl"
));
const BAD: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/bad-queue-items.jsonl"
));
const PAYLOADS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/payloads.json"
));

/// The variant a kind string must land in (no `Unknown` for the kinds the plugin emits).
fn variant_matches(kind: &str, ev: &NemoEvent) -> bool {
    use NemoEvent::*;
    matches!(
        (kind, ev),
        ("tool_enabled", ToolEnabled(_))
            | ("tool_disabled", ToolDisabled(_))
            | ("tool_operational", ToolOperational(_))
            | ("tool_non_operational", ToolNonOperational(_))
            | ("task_created", TaskCreated(_))
            | ("task_updated", TaskUpdated(_))
            | ("task_shutdown", TaskShutdown(_))
            | ("tool_created", ToolCreated(_))
            | ("tool_updated", ToolUpdated(_))
            | ("area_created", AreaCreated(_))
            | ("area_updated", AreaUpdated(_))
            | ("reservation_created", ReservationCreated(_))
            | ("reservation_updated", ReservationUpdated(_))
            | ("area_access", AreaAccess(_))
    )
}

#[test]
fn every_v1_item_round_trips_byte_for_byte() {
    let mut n = 0;
    for (i, line) in V1.lines().enumerate() {
        let item =
            QueueItem::parse(line.as_bytes()).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        assert_eq!(item.to_json(), line, "line {}", i + 1);
        assert_eq!(item.qos, Qos::AtLeastOnce);
        assert!(!item.retain);
        assert!(item.timestamp.is_some_and(|t| t > 1.7e9), "line {}", i + 1);

        // The payload, read independently with serde_json, names the kind.
        let doc: serde_json::Value = serde_json::from_str(&item.payload).unwrap();
        let kind = doc["event"].as_str().unwrap();
        let ev = item
            .event()
            .unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        assert!(
            variant_matches(kind, &ev),
            "line {}: {kind} parsed as {ev:?}",
            i + 1
        );
        assert_eq!(ev.kind(), kind);
        assert_eq!(ev.to_json(), item.payload, "line {}", i + 1);
        assert!(
            ev.extra().is_empty(),
            "line {}: unexpected extras {:?}",
            i + 1,
            ev.extra()
        );

        // Accessors agree with the document.
        assert_eq!(
            ev.tool_id(),
            doc.get("tool_id").and_then(|v| v.as_u64()),
            "line {}",
            i + 1
        );
        assert_eq!(
            ev.tool_name(),
            doc.get("tool_name").and_then(|v| v.as_str()),
            "line {}",
            i + 1
        );
        assert_eq!(
            ev.user_name(),
            doc.get("user_name").and_then(|v| v.as_str()),
            "line {}",
            i + 1
        );
        // Tool topics carry the tool id as their third level.
        let levels: Vec<&str> = item.topic.levels().collect();
        if levels[1] == "tools" {
            assert_eq!(
                levels[2].parse::<u64>().ok(),
                ev.tool_id(),
                "line {}",
                i + 1
            );
        }
        n += 1;
    }
    assert_eq!(n, 88);
}

#[test]
fn tool_usage_times_are_read() {
    let first = QueueItem::parse(V1.lines().next().unwrap().as_bytes()).unwrap();
    let ev = first.event().unwrap();
    let at = ev.occurred_at().unwrap();
    assert_eq!(at.unix_timestamp_nanos(), 1_760_623_352_944_572_000);
    // The item was queued at the same instant the usage started (to the float's precision).
    assert!((first.timestamp.unwrap() - 1_760_623_352.944_572).abs() < 1e-6);
}

fn payload_fixtures() -> BTreeMap<String, Box<RawValue>> {
    serde_json::from_str(PAYLOADS).unwrap()
}

/// Expected accessor values for each `payloads.json` entry.
struct Expect {
    tool_id: Option<u64>,
    tool_name: Option<&'static str>,
    user_name: Option<&'static str>,
    occurred_at: Option<&'static str>,
}

#[test]
fn every_payload_fixture_parses_to_its_variant_with_right_accessors() {
    let table: [(&str, Expect); 10] = [
        (
            "tool_enabled",
            Expect {
                tool_id: Some(1),
                tool_name: Some("Zeiss Supra 55 SEM"),
                user_name: Some("Jane Doe"),
                occurred_at: Some("2025-10-16T14:02:32.944572+00:00"),
            },
        ),
        (
            "tool_disabled",
            Expect {
                tool_id: Some(1),
                tool_name: Some("Zeiss Supra 55 SEM"),
                user_name: Some("Jane Doe"),
                occurred_at: Some("2025-10-16T14:12:26.950648+00:00"),
            },
        ),
        (
            "tool_updated",
            Expect {
                tool_id: Some(12),
                tool_name: Some("Oxford ICP Etcher #2"),
                user_name: None,
                occurred_at: None,
            },
        ),
        (
            "tool_created",
            Expect {
                tool_id: Some(99),
                tool_name: Some("New ALD / Cambridge \"Savannah\""),
                user_name: None,
                occurred_at: None,
            },
        ),
        (
            "area_updated",
            Expect {
                tool_id: None,
                tool_name: None,
                user_name: None,
                occurred_at: None,
            },
        ),
        (
            "reservation_created",
            Expect {
                tool_id: None,
                tool_name: None,
                user_name: Some("Jane Doe"),
                occurred_at: None,
            },
        ),
        (
            "area_access",
            Expect {
                tool_id: None,
                tool_name: None,
                user_name: Some("Jane Doe"),
                occurred_at: Some("2025-10-17T09:48:14.665736+00:00"),
            },
        ),
        (
            "tool_non_operational",
            Expect {
                tool_id: Some(23),
                tool_name: Some("Angstrom Evaporator"),
                user_name: None,
                occurred_at: Some("2025-10-17T09:48:24.665736+00:00"),
            },
        ),
        (
            "task_shutdown",
            Expect {
                tool_id: Some(23),
                tool_name: Some("Angstrom Evaporator"),
                user_name: None,
                occurred_at: Some("2025-10-17T09:48:23.665736+00:00"),
            },
        ),
        (
            "tool_operational",
            Expect {
                tool_id: Some(23),
                tool_name: Some("Angstrom Evaporator"),
                user_name: None,
                occurred_at: Some("2025-10-17T10:54:54.665736+00:00"),
            },
        ),
    ];
    let fixtures = payload_fixtures();
    assert_eq!(
        fixtures.len(),
        table.len(),
        "a payloads.json entry has no row in the table"
    );
    let v1_payloads: Vec<String> = V1
        .lines()
        .map(|l| QueueItem::parse(l.as_bytes()).unwrap().payload)
        .collect();

    for (name, want) in table {
        let raw = fixtures
            .get(name)
            .unwrap_or_else(|| panic!("no fixture {name}"));
        let ev = NemoEvent::parse(raw.get()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(variant_matches(name, &ev), "{name}: {ev:?}");
        assert_eq!(ev.kind(), name);
        assert_eq!(ev.tool_id(), want.tool_id, "{name} tool_id");
        assert_eq!(ev.tool_name(), want.tool_name, "{name} tool_name");
        assert_eq!(ev.user_name(), want.user_name, "{name} user_name");
        let want_at = want
            .occurred_at
            .map(|s| nemo_events::parse_time(s).unwrap());
        assert_eq!(ev.occurred_at(), want_at, "{name} occurred_at");
        // Written back, it is exactly what the plugin put in the queue (fixture v1 has them all).
        let json = ev.to_json();
        assert!(
            v1_payloads.contains(&json),
            "{name}: {json} is not a plugin payload"
        );
        assert_eq!(NemoEvent::parse(&json).unwrap(), ev);
    }
}

#[test]
fn payload_fixture_details() {
    let fixtures = payload_fixtures();
    let parse = |k: &str| NemoEvent::parse(fixtures[k].get()).unwrap();

    let NemoEvent::ToolUpdated(t) = parse("tool_updated") else {
        panic!()
    };
    assert_eq!(
        (
            t.tool_status,
            t.timestamp.as_ref().and_then(EventTime::as_bool)
        ),
        (Some(true), Some(false))
    );
    let NemoEvent::ToolCreated(t) = parse("tool_created") else {
        panic!()
    };
    assert_eq!(
        (
            t.tool_status,
            t.timestamp.as_ref().and_then(EventTime::as_bool)
        ),
        (Some(false), Some(true))
    );

    let NemoEvent::AreaUpdated(a) = parse("area_updated") else {
        panic!()
    };
    assert_eq!(
        (
            a.area_id,
            a.area_name.as_deref(),
            a.area_requires_reservation
        ),
        (Some(3), Some("Cleanroom Bay 3"), Some(true))
    );

    let NemoEvent::ReservationCreated(r) = parse("reservation_created") else {
        panic!()
    };
    assert_eq!((r.reservation_id, r.user_id), (Some(8812), Some(55)));
    let span = r.end_time.as_ref().and_then(EventTime::datetime).unwrap()
        - r.start_time.as_ref().and_then(EventTime::datetime).unwrap();
    assert_eq!(span, time::Duration::hours(1));

    let NemoEvent::AreaAccess(a) = parse("area_access") else {
        panic!()
    };
    assert_eq!(
        (a.access_id, a.user_id, a.area_id),
        (Some(1201), Some(55), Some(3))
    );

    let NemoEvent::TaskShutdown(t) = parse("task_shutdown") else {
        panic!()
    };
    assert_eq!(t.task_id, Some(77));
    assert_eq!(
        t.problem_description.as_deref(),
        Some("Chamber won't pump below 1e-5 Torr")
    );
    assert_eq!(
        (t.force_shutdown, t.safety_hazard, t.cancelled, t.resolved),
        (Some(true), Some(false), Some(false), Some(false))
    );

    let NemoEvent::ToolNonOperational(o) = parse("tool_non_operational") else {
        panic!()
    };
    assert_eq!(o.operational, Some(false));
    let NemoEvent::ToolOperational(o) = parse("tool_operational") else {
        panic!()
    };
    assert_eq!(o.operational, Some(true));
}

#[derive(serde::Deserialize)]
struct Bad {
    why: String,
    raw: String,
}

#[test]
fn every_bad_item_gets_its_typed_error() {
    type Check = fn(&ItemError) -> bool;
    let table: &[(&str, Check)] = &[
        ("not json", |e| matches!(e, ItemError::NotJson(_))),
        ("truncated", |e| matches!(e, ItemError::NotJson(_))),
        ("array", |e| *e == ItemError::NotAnObject),
        ("missing topic", |e| {
            *e == ItemError::MissingField { field: "topic" }
        }),
        ("missing payload", |e| {
            *e == ItemError::MissingField { field: "payload" }
        }),
        ("wildcard in topic", |e| {
            *e == ItemError::InvalidTopic(TopicError::Wildcard { ch: '+' })
        }),
        ("hash in topic", |e| {
            *e == ItemError::InvalidTopic(TopicError::Wildcard { ch: '#' })
        }),
        ("empty topic", |e| {
            *e == ItemError::InvalidTopic(TopicError::Empty)
        }),
        ("nul in topic", |e| {
            *e == ItemError::InvalidTopic(TopicError::Nul)
        }),
        ("qos 3", |e| *e == ItemError::QosOutOfRange { value: 3 }),
        ("qos string", |e| {
            matches!(e, ItemError::WrongType { field: "qos", .. })
        }),
        ("topic not a string", |e| {
            matches!(
                e,
                ItemError::WrongType {
                    field: "topic",
                    expected: "a string"
                }
            )
        }),
        (
            "huge topic",
            |e| matches!(e, ItemError::InvalidTopic(TopicError::TooLong { len }) if *len > 65_535),
        ),
    ];
    let mut seen = 0;
    for line in BAD.lines() {
        let bad: Bad = serde_json::from_str(line).unwrap();
        let check = table
            .iter()
            .find(|(why, _)| *why == bad.why)
            .unwrap_or_else(|| panic!("no expectation for {:?}", bad.why))
            .1;
        let err = QueueItem::parse(bad.raw.as_bytes()).expect_err(&bad.why);
        assert!(check(&err), "{}: got {err:?}", bad.why);
        // Every error has a message fit for the dead-letter record.
        assert!(!err.to_string().is_empty());
        seen += 1;
    }
    assert_eq!(
        seen,
        table.len(),
        "fixture and table disagree on the number of cases"
    );
}

#[test]
fn bad_item_fields_are_reported() {
    for line in BAD.lines() {
        let bad: Bad = serde_json::from_str(line).unwrap();
        let err = QueueItem::parse(bad.raw.as_bytes()).unwrap_err();
        let want = match bad.why.as_str() {
            "not json" | "truncated" | "array" => None,
            "missing payload" => Some("payload"),
            w if w.starts_with("qos") => Some("qos"),
            _ => Some("topic"),
        };
        assert_eq!(err.field(), want, "{}", bad.why);
    }
}

#[cfg(feature = "hmac")]
mod hmac_envelopes {
    use nemo_events::hmac::{self, Envelope, HmacError};

    const ENVELOPES: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/hmac-envelopes.json"
    ));

    #[derive(serde::Deserialize)]
    struct Case {
        key: String,
        payload: String,
        envelope: String,
    }

    fn cases() -> Vec<Case> {
        serde_json::from_str(ENVELOPES).unwrap()
    }

    #[test]
    fn sign_is_byte_identical_and_verify_returns_the_payload() {
        let cases = cases();
        assert_eq!(cases.len(), 6);
        for c in &cases {
            assert_eq!(hmac::sign(&c.payload, c.key.as_bytes()), c.envelope);
            assert_eq!(
                hmac::verify(c.envelope.as_bytes(), c.key.as_bytes()).as_deref(),
                Ok(c.payload.as_str())
            );
            assert_eq!(
                Envelope::parse(c.envelope.as_bytes()).unwrap().to_json(),
                c.envelope
            );
            assert_eq!(
                hmac::verify(c.envelope.as_bytes(), b"wrong key"),
                Err(HmacError::Mismatch)
            );
        }
    }

    #[test]
    fn a_changed_payload_byte_is_a_mismatch() {
        for c in cases() {
            // Change one letter inside the payload string ("tool_" -> "tOol_").
            let at = c.envelope.find("tool_").unwrap() + 1;
            let mut bytes = c.envelope.clone().into_bytes();
            bytes[at] = b'O';
            assert_eq!(
                hmac::verify(&bytes, c.key.as_bytes()),
                Err(HmacError::Mismatch)
            );
            // Change one hex digit of the tag.
            let at = c.envelope.find("\"hmac\": \"").unwrap() + 9;
            let mut bytes = c.envelope.clone().into_bytes();
            bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
            assert_eq!(
                hmac::verify(&bytes, c.key.as_bytes()),
                Err(HmacError::Mismatch)
            );
        }
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        for c in cases() {
            for i in 0..c.envelope.len() {
                let mut bytes = c.envelope.clone().into_bytes();
                bytes[i] ^= 0x01;
                assert!(
                    hmac::verify(&bytes, c.key.as_bytes()).is_err(),
                    "flip at {i} verified: {}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
    }

    #[test]
    fn malformed_envelopes() {
        let k = b"k";
        assert_eq!(hmac::verify(b"", k), Err(HmacError::NotAnEnvelope));
        assert_eq!(hmac::verify(b"[]", k), Err(HmacError::NotAnEnvelope));
        assert_eq!(
            hmac::verify(br#"{"payload": 1, "hmac": "", "algo": "sha256"}"#, k),
            Err(HmacError::NotAnEnvelope)
        );
        assert_eq!(
            hmac::verify(br#"{"payload": "", "hmac": "zz", "algo": "sha256"}"#, k),
            Err(HmacError::BadHex)
        );
        assert_eq!(
            hmac::verify(br#"{"payload": "", "hmac": "00", "algo": "sha256"}"#, k),
            Err(HmacError::BadHex)
        );
        assert_eq!(
            hmac::verify(br#"{"payload": "", "hmac": "00", "algo": "SHA1"}"#, k),
            Err(HmacError::UnsupportedAlgo("SHA1".into()))
        );
        // Uppercase hex is the same tag.
        let env = Envelope::new("p", k);
        let upper = Envelope {
            hmac: env.hmac.to_uppercase(),
            ..env.clone()
        };
        assert_eq!(upper.verify(k), Ok(()));
    }
}
