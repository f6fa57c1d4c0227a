//! Recording files: write with `Recorder`, read back byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use nemo_monitor::record::{read_file, read_lines};
use nemo_monitor::{RecordLine, Recorder};
use proptest::prelude::*;
use time::OffsetDateTime;

fn v1_lines() -> Vec<RecordLine> {
    nemo_testkit::fixture("v1-queue-items.jsonl")
        .unwrap()
        .lines()
        .map(|line| {
            let item: serde_json::Value = serde_json::from_str(line).unwrap();
            let secs = item["timestamp"].as_f64().unwrap();
            RecordLine {
                received_at: OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9) as i128)
                    .unwrap(),
                topic: item["topic"].as_str().unwrap().to_owned(),
                payload: Bytes::from(item["payload"].as_str().unwrap().to_owned()),
                qos: item["qos"].as_u64().unwrap() as u8,
                retain: item["retain"].as_bool().unwrap(),
            }
        })
        .collect()
}

#[test]
fn file_round_trip_including_non_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.jsonl");
    let mut lines = v1_lines();
    lines.push(RecordLine {
        received_at: OffsetDateTime::now_utc(),
        topic: "nemo/tools/1/enabled".into(),
        payload: Bytes::from_static(&[0xff, 0x00, 0xc3, 0x28, b'\n', b'{']),
        qos: 0,
        retain: true,
    });
    lines.push(RecordLine {
        received_at: OffsetDateTime::UNIX_EPOCH,
        topic: "nemo/empty".into(),
        payload: Bytes::new(),
        qos: 2,
        retain: true,
    });
    let mut rec = Recorder::create(&path).unwrap();
    for l in &lines {
        rec.write(l).unwrap();
    }
    assert_eq!(rec.lines_written(), lines.len() as u64);
    drop(rec);

    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), lines.len(), "one line per message");
    // The payload is stored verbatim: the v1 strings appear as JSON strings.
    assert!(
        text.contains(r#""payload":"{\"event\": \"tool_enabled\", \"tool_id\": 1,"#),
        "{}",
        &text[..300]
    );
    assert!(text.contains(r#""payload_b64":true"#));

    let back = read_file(&path).unwrap();
    assert_eq!(back, lines);
    for (a, b) in back.iter().zip(&lines) {
        assert_eq!(a.payload, b.payload, "payload bytes changed");
    }

    // Appending keeps the earlier recording.
    let mut rec = Recorder::create(&path).unwrap();
    rec.write(&lines[0]).unwrap();
    assert_eq!(read_file(&path).unwrap().len(), lines.len() + 1);
}

#[test]
fn bad_line_is_reported_with_its_number() {
    let input = "\n{\"t\":\"2025-10-17T09:00:00Z\",\"topic\":\"a\",\"payload\":\"x\"}\nnot json\n";
    let err = read_lines(input.as_bytes()).unwrap_err();
    assert_eq!(err.0, 3);
}

proptest! {
    #[test]
    fn any_message_round_trips(
        topic in "\\PC{0,64}",
        payload in proptest::collection::vec(any::<u8>(), 0..512),
        qos in 0u8..=2,
        retain in any::<bool>(),
        nanos in 0i128..4_102_444_800_000_000_000i128,
    ) {
        let line = RecordLine {
            received_at: OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap(),
            topic,
            payload: Bytes::from(payload),
            qos,
            retain,
        };
        let json = line.to_json_line();
        prop_assert!(!json.contains('\n'));
        prop_assert_eq!(RecordLine::parse(&json).unwrap(), line);
    }
}
