//! Hostile input: size, nesting, broken encodings. Nothing may panic or overflow the stack.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nemo_events::{EventError, ItemError, MAX_ITEM_BYTES, NemoEvent, QueueItem};

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = "[".repeat(100_000);
    assert!(matches!(
        QueueItem::parse(deep.as_bytes()),
        Err(ItemError::NotAnObject | ItemError::NotJson(_))
    ));
    assert!(matches!(
        NemoEvent::parse(&deep),
        Err(EventError::NotAnObject | EventError::NotJson(_))
    ));

    let deep_obj = "{\"a\": ".repeat(100_000);
    assert!(matches!(
        QueueItem::parse(deep_obj.as_bytes()),
        Err(ItemError::NotJson(_))
    ));
    assert!(matches!(
        NemoEvent::parse(&deep_obj),
        Err(EventError::NotJson(_))
    ));

    // Nested inside a member we keep as raw text, closed properly: still no overflow.
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let item = format!(r#"{{"topic": "t", "payload": "", "x": {nested}}}"#);
    let res = QueueItem::parse(item.as_bytes());
    assert!(
        res.is_ok() || matches!(res, Err(ItemError::NotJson(_))),
        "{res:?}"
    );
    let ev = format!(r#"{{"event": "tool_enabled", "tool_id": {nested}}}"#);
    let res = NemoEvent::parse(&ev);
    assert!(
        res.is_ok() || matches!(res, Err(EventError::NotJson(_))),
        "{res:?}"
    );
    #[cfg(feature = "hmac")]
    assert!(nemo_events::hmac::verify(deep.as_bytes(), b"k").is_err());
}

#[test]
fn size_limit_is_checked_before_parsing() {
    let too_big = vec![b' '; MAX_ITEM_BYTES + 1];
    assert_eq!(
        QueueItem::parse(&too_big),
        Err(ItemError::TooLarge {
            len: MAX_ITEM_BYTES + 1,
            max: MAX_ITEM_BYTES
        })
    );
    // Garbage over the limit is TooLarge, not NotJson: the limit comes first.
    let garbage = vec![0xff; MAX_ITEM_BYTES + 10];
    assert!(matches!(
        QueueItem::parse(&garbage),
        Err(ItemError::TooLarge { .. })
    ));

    // Exactly at the limit is accepted.
    let head = r#"{"topic": "t", "payload": ""#;
    let tail = r#""}"#;
    let fill = "x".repeat(MAX_ITEM_BYTES - head.len() - tail.len());
    let item = format!("{head}{fill}{tail}");
    assert_eq!(item.len(), MAX_ITEM_BYTES);
    assert_eq!(
        QueueItem::parse(item.as_bytes()).unwrap().payload.len(),
        fill.len()
    );
}

#[test]
fn not_utf8_reports_where() {
    let mut bytes = br#"{"topic": "t", "payload": "caf"#.to_vec();
    let at = bytes.len();
    bytes.extend_from_slice(b"\xe9\"}"); // Latin-1 é
    assert_eq!(
        QueueItem::parse(&bytes),
        Err(ItemError::NotUtf8 { valid_up_to: at })
    );
}

#[test]
fn topic_edges() {
    use nemo_events::{MAX_TOPIC_BYTES, Topic, TopicError};
    assert!(Topic::new("x".repeat(MAX_TOPIC_BYTES)).is_ok());
    assert_eq!(
        Topic::new("x".repeat(MAX_TOPIC_BYTES + 1)),
        Err(TopicError::TooLong {
            len: MAX_TOPIC_BYTES + 1
        })
    );
    // Multi-byte characters count in bytes.
    assert_eq!(
        Topic::new("é".repeat(40_000)),
        Err(TopicError::TooLong { len: 80_000 })
    );
    assert!(Topic::new("/").is_ok());
    assert!(Topic::new("nemo/tools/Süss MA6").is_ok());
    // Serde validates.
    assert!(serde_json::from_str::<Topic>(r#""a/+""#).is_err());
    assert_eq!(
        serde_json::from_str::<Topic>(r#""a/b""#).unwrap().as_str(),
        "a/b"
    );
    assert_eq!(
        serde_json::to_string(&Topic::new("a/b").unwrap()).unwrap(),
        r#""a/b""#
    );
}

#[test]
fn qos_serde_is_a_number() {
    use nemo_events::Qos;
    assert_eq!(serde_json::to_string(&Qos::ExactlyOnce).unwrap(), "2");
    assert_eq!(serde_json::from_str::<Qos>("0").unwrap(), Qos::AtMostOnce);
    assert!(serde_json::from_str::<Qos>("3").is_err());
    assert!(serde_json::from_str::<Qos>("\"1\"").is_err());
    for v in [-1_i64, 3, 255, 256, i64::MIN, i64::MAX] {
        assert!(Qos::try_from(v).is_err(), "{v}");
    }
}

#[test]
fn closed_deep_nesting_in_a_kept_member_is_kept() {
    // serde_json skips raw values iteratively, so a deep but well-formed member is kept as-is.
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let item = format!(r#"{{"topic": "t", "payload": "", "x": {nested}}}"#);
    let parsed = QueueItem::parse(item.as_bytes()).unwrap();
    assert_eq!(
        parsed.extra().get("x").map(|v| v.get().len()),
        Some(200_000)
    );
}

/// Found by the `event` fuzz target (fuzz/regressions/event/): a modelled key
/// given twice, once with a wrong type. The last one wins, as with Python's
/// `json.loads`, and the event survives `to_json` → `parse` unchanged.
#[test]
fn repeated_modelled_key_last_one_wins_and_round_trips() {
    let cases = [
        (
            r#"{"event": "tool_enabled", "tool_name": "a", "tool_name": 1}"#,
            None,
        ),
        (
            r#"{"event": "tool_enabled", "tool_name": 1, "tool_name": "a"}"#,
            Some("a"),
        ),
        (
            r#"{"event": "tool_enabled", "tool_name": "a", "tool_name": "b"}"#,
            Some("b"),
        ),
    ];
    for (input, name) in cases {
        let event = NemoEvent::parse(input).unwrap();
        assert_eq!(event.tool_name(), name, "{input}");
        let json = event.to_json();
        let again = NemoEvent::parse(&json).unwrap();
        assert_eq!(again, event, "{input} -> {json}");
        assert_eq!(again.to_json(), json);
    }
    let wrong_last = NemoEvent::parse(cases[0].0).unwrap();
    assert_eq!(
        wrong_last.to_json(),
        r#"{"event": "tool_enabled", "tool_name": 1}"#
    );
}
