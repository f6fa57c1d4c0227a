//! Runs the examples so they cannot rot: the Rust producer against a private `redis-server`, the
//! Rust subscriber against a private Mosquitto (plain and HMAC-signed payloads, tampered
//! envelopes), and the Django snippet against the plugin's bytes in `tests/fixtures`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../examples/producer.rs"]
mod producer;

#[allow(dead_code)]
#[path = "../examples/subscriber.rs"]
mod subscriber;

use std::time::Duration;

use nemo_events::hmac::{self, Envelope};
use nemo_events::{NemoEvent, Qos, QueueItem};
use nemo_mqtt::{EventSink, MqttConfig, OutMessage, Publisher};
use nemo_testkit::{Mosquitto, RedisServer};
use subscriber::{Options, Status, ToolState};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A guard against a hang if a message never arrives; not a timing assertion.
const GUARD: Duration = Duration::from_secs(60);

/// The plugin's queue items, one per line (`tests/fixtures/v1-queue-items.jsonl`).
fn fixture_lines() -> Vec<String> {
    nemo_testkit::fixture("v1-queue-items.jsonl")
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The fixture item whose topic is `topic` (the first one).
fn fixture_item(topic: &str) -> QueueItem {
    fixture_lines()
        .iter()
        .map(|l| QueueItem::parse(l.as_bytes()).unwrap())
        .find(|i| i.topic.as_str() == topic)
        .unwrap_or_else(|| panic!("no fixture item on {topic}"))
}

/// Item `n` (0-based) of the fixture file.
fn fixture_nth(n: usize) -> QueueItem {
    QueueItem::parse(fixture_lines()[n].as_bytes()).unwrap()
}

async fn publisher(broker: &Mosquitto) -> Result<Publisher, Box<dyn std::error::Error>> {
    let cfg = MqttConfig {
        client_id: "examples-test-publisher".into(),
        status_topic: String::new(),
        ..MqttConfig::for_url(broker.url())
    };
    Ok(Publisher::connect(
        cfg,
        nemo_backoff::Backoff::new(&nemo_backoff::BackoffConfig::default()),
    )
    .await?)
}

/// Publish in order, each confirmed (PUBACK) before the next.
async fn publish_all(p: &Publisher, msgs: &[(String, String)]) -> TestResult {
    for (topic, payload) in msgs {
        p.publish(OutMessage {
            topic: topic.clone(),
            payload: payload.clone().into_bytes().into(),
            qos: Qos::AtLeastOnce,
            retain: false,
        })
        .await?;
    }
    Ok(())
}

fn options(broker: &Mosquitto, id: &str, key: Option<&[u8]>, max: usize) -> Options {
    Options {
        broker_url: broker.url(),
        client_id: id.into(),
        hmac_key: key.map(<[u8]>::to_vec),
        max_messages: Some(max),
    }
}

#[tokio::test]
async fn producer_queues_plugin_compatible_items_oldest_first() -> TestResult {
    let redis = RedisServer::start()?;
    let queued = producer::run(&redis.url(), "nemo_mqtt_events").await?;
    assert_eq!(queued.len(), 2);

    // LPUSH puts the newest at the head; the bridge takes from the tail (oldest first).
    let listed = redis.cli(&["LRANGE", "nemo_mqtt_events", "0", "-1"])?;
    let mut raw: Vec<&str> = listed.lines().collect();
    assert_eq!(raw.len(), 2, "LRANGE gave {listed:?}");
    raw.reverse();

    let kinds: Vec<String> = raw
        .iter()
        .zip(&queued)
        .map(|(line, sent)| {
            let item = QueueItem::parse(line.as_bytes()).unwrap();
            assert_eq!(&item, sent);
            // Written like Python's json.dumps: re-serializing gives the same bytes.
            assert_eq!(item.to_json(), *line);
            assert_eq!((item.qos, item.retain), (Qos::AtLeastOnce, false));
            let event = item.event().unwrap();
            assert_eq!(event.tool_id(), Some(12));
            assert_eq!(event.user_name(), Some("José Álvarez"));
            assert!(
                event.occurred_at().is_some(),
                "isoformat time expected in {line}"
            );
            format!("{} {}", item.topic, event.kind())
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "nemo/tools/12/enabled tool_enabled",
            "nemo/tools/12/disabled tool_disabled"
        ]
    );
    // Non-ASCII is escaped the plugin's way.
    assert!(raw[0].contains(r#"Jos\\u00e9 \\u00c1lvarez"#), "{}", raw[0]);
    Ok(())
}

#[tokio::test]
async fn subscriber_keeps_per_tool_state_from_fixture_payloads() -> TestResult {
    let broker = Mosquitto::start()?;
    let opts = options(&broker, "examples-test-subscriber-plain", None, 11);
    let mut sub = subscriber::subscribe(&opts).await?;
    let publisher = publisher(&broker).await?;

    let mut msgs: Vec<(String, String)> = (0..5)
        .map(fixture_nth)
        .map(|i| (i.topic.to_string(), i.payload))
        .collect();
    // A duplicate, as at-least-once delivery may produce: no second state line.
    msgs.push(msgs[4].clone());
    for topic in [
        "nemo/tools/23/non-operational",
        "nemo/tools/23/tasks",
        "nemo/tools/12",
    ] {
        let i = fixture_item(topic);
        msgs.push((i.topic.to_string(), i.payload));
    }
    msgs.push(("nemo/tools/5/enabled".into(), "not json".into()));
    msgs.push((
        "nemo/tools/1/state".into(),
        r#"{"tool_id": 1, "state": "in_use", "event": "tool_enabled", "user_name": "Nobody"}"#
            .into(),
    ));
    assert_eq!(msgs.len(), 11);
    publish_all(&publisher, &msgs).await?;

    let mut out = Vec::new();
    let summary =
        tokio::time::timeout(GUARD, subscriber::watch(&mut sub, &opts, &mut out)).await??;
    sub.shutdown().await?;
    publisher.shutdown().await?;
    let out = String::from_utf8(out)?;

    assert_eq!(
        (summary.accepted, summary.rejected, summary.ignored),
        (9, 0, 2),
        "{out}"
    );
    let b = &summary.board;
    let idle = |since: &str, name: &str| ToolState {
        name: Some(name.into()),
        status: Status::Idle {
            since: Some(since.into()),
        },
    };
    assert_eq!(
        b.get(1),
        Some(&idle(
            "2025-10-16T14:12:26.950648+00:00",
            "Zeiss Supra 55 SEM"
        ))
    );
    assert_eq!(
        b.get(7),
        Some(&idle(
            "2025-10-16T14:18:42.308270+00:00",
            "Heidelberg MLA150"
        ))
    );
    assert_eq!(
        b.get(12),
        Some(&ToolState {
            name: Some("Oxford ICP Etcher #2".into()),
            status: Status::InUse {
                user: "José Álvarez".into(),
                since: Some("2025-10-16T14:19:31.001769+00:00".into())
            },
        })
    );
    assert_eq!(
        b.get(23),
        Some(&ToolState {
            name: Some("Angstrom Evaporator".into()),
            status: Status::Down {
                reason: Some("Chamber won't pump below 1e-5 Torr".into()),
                since: Some("2025-10-17T09:48:23.665736+00:00".into()),
            },
        })
    );
    assert_eq!(b.tools().count(), 4, "{b:?}");

    let in_use_12 = "tool 12 Oxford ICP Etcher #2: IN USE by José Álvarez since 2025-10-16T14:19:31.001769+00:00";
    assert_eq!(out.lines().filter(|l| *l == in_use_12).count(), 1, "{out}");
    assert!(
        out.contains(
            "tool 1 Zeiss Supra 55 SEM: IN USE by Jane Doe since 2025-10-16T14:02:32.944572+00:00\n"
        ),
        "{out}"
    );
    assert!(out.contains(r#"tool 23 Angstrom Evaporator: DOWN since 2025-10-17T09:48:23.665736+00:00: "Chamber won't pump below 1e-5 Torr""#), "{out}");
    assert!(out.contains("unreadable nemo/tools/5/enabled: "), "{out}");
    Ok(())
}

#[tokio::test]
async fn subscriber_verifies_hmac_and_rejects_tampered_envelopes() -> TestResult {
    let key: &[u8] = b"nemo-fixture-secret";
    let broker = Mosquitto::start()?;
    let opts = options(&broker, "examples-test-subscriber-hmac", Some(key), 9);
    let mut sub = subscriber::subscribe(&opts).await?;
    let publisher = publisher(&broker).await?;

    // The plugin's own envelopes for fixture items 1..6; ours must be the same bytes.
    let envelopes: serde_json::Value =
        serde_json::from_str(&nemo_testkit::fixture("hmac-envelopes.json")?)?;
    let plugin_envelope = |n: usize| envelopes[n]["envelope"].as_str().unwrap().to_owned();
    let mut msgs = Vec::new();
    for n in 0..5 {
        let item = fixture_nth(n);
        let signed = hmac::sign(&item.payload, key);
        assert_eq!(signed, plugin_envelope(n), "envelope of fixture item {n}");
        msgs.push((item.topic.to_string(), signed));
    }
    // Tool 12 is now in use by José. Three forged "disabled" events must not change that:
    let disabled_12 = fixture_nth(5);
    assert_eq!(disabled_12.topic.as_str(), "nemo/tools/12/disabled");
    // 1. the plugin's envelope with the payload changed after signing,
    let mut tampered = Envelope::parse(plugin_envelope(5).as_bytes())?;
    let forged = tampered
        .payload
        .replace(r#"Jos\u00e9 \u00c1lvarez"#, "Mallory");
    assert_ne!(forged, tampered.payload);
    tampered.payload = forged;
    msgs.push((disabled_12.topic.to_string(), tampered.to_json()));
    // 2. signed with another key, 3. not signed at all.
    msgs.push((
        disabled_12.topic.to_string(),
        hmac::sign(&disabled_12.payload, b"wrong key"),
    ));
    msgs.push((disabled_12.topic.to_string(), disabled_12.payload.clone()));
    // A valid one after the forgeries: they were skipped, not fatal.
    let enabled_42 = fixture_item("nemo/tools/42/enabled");
    msgs.push((
        enabled_42.topic.to_string(),
        hmac::sign(&enabled_42.payload, key),
    ));
    assert_eq!(msgs.len(), 9);
    publish_all(&publisher, &msgs).await?;

    let mut out = Vec::new();
    let summary =
        tokio::time::timeout(GUARD, subscriber::watch(&mut sub, &opts, &mut out)).await??;
    sub.shutdown().await?;
    publisher.shutdown().await?;
    let out = String::from_utf8(out)?;

    assert_eq!(
        (summary.accepted, summary.rejected, summary.ignored),
        (6, 3, 0),
        "{out}"
    );
    let rejections: Vec<&str> = out.lines().filter(|l| l.starts_with("rejected ")).collect();
    assert_eq!(
        rejections,
        [
            "rejected nemo/tools/12/disabled: HMAC mismatch: wrong key or tampered payload",
            "rejected nemo/tools/12/disabled: HMAC mismatch: wrong key or tampered payload",
            "rejected nemo/tools/12/disabled: not an HMAC envelope (expected a JSON object with string members payload, hmac, algo)",
        ],
        "{out}"
    );
    assert_eq!(
        summary.board.get(12).map(|t| &t.status),
        Some(&Status::InUse {
            user: "José Álvarez".into(),
            since: Some("2025-10-16T14:19:31.001769+00:00".into())
        })
    );
    assert!(!out.contains("Mallory"), "{out}");
    assert!(
        matches!(summary.board.get(42).map(|t| &t.status), Some(Status::InUse { user, .. }) if user == "Jane Doe")
    );
    Ok(())
}

#[test]
fn django_snippet_prints_the_plugin_bytes() -> TestResult {
    let out = std::process::Command::new("python3")
        .arg("examples/django/nemo_mqtt_signals.py")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map_err(|e| {
            format!("cannot run python3 (install it; the snippet is tested with it): {e}")
        })?;
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout)?;
    let printed: Vec<&str> = stdout.lines().collect();
    let fixture = fixture_lines();
    assert_eq!(printed, [fixture[0].as_str(), fixture[5].as_str()]);
    for line in printed {
        let item = QueueItem::parse(line.as_bytes())?;
        assert_eq!(item.to_json(), line);
        assert!(matches!(
            item.event()?,
            NemoEvent::ToolEnabled(_) | NemoEvent::ToolDisabled(_)
        ));
    }
    Ok(())
}

/// Not an example, but documentation that rots the same way: every metric the bridge records
/// (`metrics::counter!/gauge!/histogram!("nemo_bridge_…")` in its sources) is in
/// `docs/metrics.md` with its Prometheus type, and the reference lists no metric that is gone.
#[test]
fn metrics_reference_lists_every_bridge_metric() -> TestResult {
    use std::collections::BTreeMap;
    use std::path::Path;

    fn sources(dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                sources(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(std::fs::read_to_string(&path)?);
            }
        }
        Ok(())
    }

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts = Vec::new();
    sources(&root.join("crates/nemo-bridge/src"), &mut texts)?;
    sources(&root.join("bins/bridge"), &mut texts)?;
    // Prometheus type as rendered by metrics-exporter-prometheus (histograms are summaries
    // unless buckets are configured).
    let mut in_code = BTreeMap::new();
    for text in &texts {
        for (macro_name, prom_type) in [
            ("counter!(\"", "counter"),
            ("gauge!(\"", "gauge"),
            ("histogram!(\"", "summary"),
        ] {
            for (at, _) in text.match_indices(macro_name) {
                let rest = &text[at + macro_name.len()..];
                let name = &rest[..rest.find('"').unwrap()];
                if name.starts_with("nemo_bridge_") {
                    in_code.insert(name.to_owned(), prom_type);
                }
            }
        }
    }
    assert!(
        in_code.len() >= 5,
        "found too few metrics in the bridge sources: {in_code:?}"
    );

    let doc = std::fs::read_to_string(root.join("docs/metrics.md"))?;
    let in_doc: BTreeMap<String, &str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `nemo_bridge_"))
        .map(|rest| {
            let cells: Vec<&str> = rest.split('|').map(str::trim).collect();
            (
                format!("nemo_bridge_{}", cells[0].trim_end_matches('`')),
                cells[1],
            )
        })
        .collect();
    assert_eq!(
        in_doc, in_code,
        "docs/metrics.md (left) vs the bridge's sources (right)"
    );
    Ok(())
}
