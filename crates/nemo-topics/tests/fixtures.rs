//! Table tests over the field fixtures and every event kind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nemo_events::{NemoEvent, QueueItem, Topic};
use nemo_topics::{PayloadRef, Rewrite, TopicMapper, TopicsConfig};
use serde_json::{Value, json};

const ITEMS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/v1-queue-items.jsonl"
));
const PAYLOADS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/payloads.json"
));

fn items() -> Vec<QueueItem> {
    let items: Vec<QueueItem> = ITEMS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| QueueItem::parse(l.as_bytes()).unwrap())
        .collect();
    assert!(items.len() >= 80, "fixture has {} items", items.len());
    items
}

fn mapper(cfg: TopicsConfig) -> TopicMapper {
    TopicMapper::from_config(&cfg).unwrap()
}

fn route(kind: &str, template: &str) -> TopicsConfig {
    let mut cfg = TopicsConfig::default();
    cfg.routes.insert(kind.into(), template.into());
    cfg
}

/// The kinds that get a state document (the crate docs' table), when they carry a `tool_id`.
fn state_kind(kind: &str) -> bool {
    matches!(
        kind,
        "tool_enabled"
            | "tool_disabled"
            | "tool_operational"
            | "tool_non_operational"
            | "task_shutdown"
    )
}

#[test]
fn default_mapper_passes_every_fixture_topic_through() {
    let m = TopicMapper::default();
    for item in items() {
        let event = NemoEvent::parse(&item.payload).unwrap();
        for ev in [None, Some(&event)] {
            let pubs = m.map_item(&item, ev).unwrap();
            assert_eq!(pubs[0].topic, item.topic);
            assert_eq!(pubs[0].payload, PayloadRef::Original);
            assert_eq!(pubs[0].retain, item.retain);
            // The default state documents (`state_topics`): one more, retained, for the kinds
            // that change a tool's state.
            assert_eq!(
                pubs.len(),
                1 + state_kind(event.kind()) as usize,
                "{}",
                item.topic
            );
            if let Some(state) = pubs.get(1) {
                assert!(state.topic.as_str().ends_with("/state") && state.retain);
            }
        }
    }
}

#[test]
fn templates_reproduce_every_fixture_topic() {
    let m = TopicMapper::default();
    let mut kinds = std::collections::BTreeSet::new();
    for item in items() {
        let event = NemoEvent::parse(&item.payload).unwrap();
        kinds.insert(event.kind().to_owned());
        let pubs = m.map_event(&event).unwrap();
        assert_eq!(pubs.len(), 1 + state_kind(event.kind()) as usize);
        assert_eq!(pubs[0].topic, item.topic, "kind {}", event.kind());
        assert_eq!(pubs[0].payload, PayloadRef::Generated(event.to_json()));
        assert!(!pubs[0].retain);
    }
    assert!(kinds.len() >= 10, "fixture covers {kinds:?}");
}

#[test]
fn templates_reproduce_payloads_json_topics() {
    let payloads: serde_json::Map<String, Value> = serde_json::from_str(PAYLOADS).unwrap();
    let want = [
        ("tool_enabled", "nemo/tools/1/enabled"),
        ("tool_disabled", "nemo/tools/1/disabled"),
        ("tool_updated", "nemo/tools/12"),
        ("tool_created", "nemo/tools/99"),
        ("area_updated", "nemo/areas/3"),
        ("reservation_created", "nemo/reservations/8812"),
        ("area_access", "nemo/area_access/1201"),
        ("tool_non_operational", "nemo/tools/23/non-operational"),
        ("task_shutdown", "nemo/tools/23/tasks"),
        ("tool_operational", "nemo/tools/23/operational"),
    ];
    assert_eq!(
        payloads.len(),
        want.len(),
        "a fixture kind has no expected topic here"
    );
    let m = TopicMapper::default();
    for (kind, topic) in want {
        let event = NemoEvent::parse(&payloads[kind].to_string()).unwrap();
        assert_eq!(event.kind(), kind);
        assert_eq!(
            m.map_event(&event).unwrap()[0].topic.as_str(),
            topic,
            "{kind}"
        );
    }
}

#[test]
fn every_kind_has_the_plugin_topic() {
    let table = [
        ("tool_enabled", "nemo/tools/5/enabled"),
        ("tool_disabled", "nemo/tools/5/disabled"),
        ("tool_operational", "nemo/tools/5/operational"),
        ("tool_non_operational", "nemo/tools/5/non-operational"),
        ("task_created", "nemo/tools/5/tasks"),
        ("task_updated", "nemo/tools/5/tasks"),
        ("task_shutdown", "nemo/tools/5/tasks"),
        ("tool_created", "nemo/tools/5"),
        ("tool_updated", "nemo/tools/5"),
        ("area_created", "nemo/areas/6"),
        ("area_updated", "nemo/areas/6"),
        ("reservation_created", "nemo/reservations/7"),
        ("reservation_updated", "nemo/reservations/7"),
        ("area_access", "nemo/area_access/8"),
        ("some_future_kind", "nemo/events/some_future_kind"),
    ];
    let known: Vec<&str> = table.iter().map(|(k, _)| *k).collect();
    for k in NemoEvent::KNOWN_KINDS {
        assert!(
            known.contains(k),
            "nemo-events knows kind {k} but this table does not"
        );
    }
    for k in nemo_topics::KNOWN_KINDS {
        assert!(known.contains(k), "{k}");
    }
    let m = TopicMapper::default();
    for (kind, topic) in table {
        let payload = json!({"event": kind, "tool_id": 5, "area_id": 6, "reservation_id": 7, "access_id": 8, "task_id": 9});
        let event = NemoEvent::parse(&payload.to_string()).unwrap();
        assert_eq!(
            m.map_event(&event).unwrap()[0].topic.as_str(),
            topic,
            "{kind}"
        );
    }
}

#[test]
fn prefix_applies_to_templates_not_to_pass_through() {
    let m = mapper(TopicsConfig {
        prefix: "site-a/nemo".into(),
        ..Default::default()
    });
    let item = &items()[0];
    let event = NemoEvent::parse(&item.payload).unwrap();
    assert_eq!(
        m.map_event(&event).unwrap()[0].topic.as_str(),
        "site-a/nemo/tools/1/enabled"
    );
    assert_eq!(
        m.map_item(item, None).unwrap()[0].topic.as_str(),
        "nemo/tools/1/enabled"
    );
}

#[test]
fn rewrites_match_whole_levels_first_rule_wins() {
    let m = mapper(TopicsConfig {
        rewrites: vec![
            Rewrite {
                from: "nemo/tools".into(),
                to: "lab/instruments".into(),
            },
            Rewrite {
                from: "nemo".into(),
                to: "site-a/nemo".into(),
            },
        ],
        ..Default::default()
    });
    let cases = [
        ("nemo/tools/12/enabled", "lab/instruments/12/enabled"),
        ("nemo/areas/3", "site-a/nemo/areas/3"),
        ("nemo", "site-a/nemo"),
        ("nemotron/tools/1", "nemotron/tools/1"),
        ("nemo-x/areas/3", "nemo-x/areas/3"),
        ("other/nemo/tools", "other/nemo/tools"),
    ];
    for (from, to) in cases {
        let item = QueueItem::from_payload(Topic::new(from).unwrap(), "not json at all");
        let pubs = m.map_item(&item, None).unwrap();
        assert_eq!(pubs[0].topic.as_str(), to, "{from}");
        assert_eq!(pubs[0].payload, PayloadRef::Original);
    }
}

#[test]
fn routes_override_item_topics_per_kind() {
    let mut cfg = route("tool_enabled", "{prefix}/in-use/{tool_id}/{user_name}");
    cfg.routes
        .insert("task_*".into(), "{prefix}/tasks/{task_id}".into());
    cfg.routes.insert(
        "task_shutdown".into(),
        "{prefix}/shutdowns/{tool_id}".into(),
    );
    cfg.routes.insert("t*".into(), "{prefix}/t/{kind}".into());
    let m = mapper(cfg);
    let cases = [
        (
            "nemo/tools/1/enabled",
            r#"{"event": "tool_enabled", "tool_id": 1, "user_name": "Jos\u00e9 / #1"}"#,
            "nemo/in-use/1/José _ _1",
        ),
        (
            "nemo/tools/1/tasks",
            r#"{"event": "task_created", "task_id": 77, "tool_id": 1}"#,
            "nemo/tasks/77",
        ),
        (
            "nemo/tools/1/tasks",
            r#"{"event": "task_shutdown", "task_id": 77, "tool_id": 1}"#,
            "nemo/shutdowns/1",
        ),
        (
            "nemo/tools/1/disabled",
            r#"{"event": "tool_disabled", "tool_id": 1}"#,
            "nemo/t/tool_disabled",
        ),
        (
            "nemo/areas/3",
            r#"{"event": "area_updated", "area_id": 3}"#,
            "nemo/areas/3",
        ),
        ("nemo/x", "not json", "nemo/x"),
        ("nemo/x", r#"{"no_event": 1}"#, "nemo/x"),
        ("nemo/x", r#"[1, 2]"#, "nemo/x"),
    ];
    for (topic, payload, want) in cases {
        let item = QueueItem::from_payload(Topic::new(topic).unwrap(), payload);
        let pubs = m.map_item(&item, None).unwrap();
        assert_eq!(pubs[0].topic.as_str(), want, "{payload}");
        assert_eq!(pubs[0].payload, PayloadRef::Original);
        if let Ok(event) = NemoEvent::parse(payload) {
            assert_eq!(
                m.map_item(&item, Some(&event)).unwrap()[0].topic.as_str(),
                want,
                "with event: {payload}"
            );
        }
    }
}

#[test]
fn catch_all_route() {
    let m = mapper(route("*", "{prefix}/all/{kind}"));
    let item = &items()[0];
    assert_eq!(
        m.map_item(item, None).unwrap()[0].topic.as_str(),
        "nemo/all/tool_enabled"
    );
}

#[test]
fn route_missing_field_is_an_error_naming_it() {
    let m = mapper(route("area_updated", "{prefix}/areas/{area_name}"));
    let item = QueueItem::from_payload(
        Topic::new("nemo/areas/3").unwrap(),
        r#"{"event": "area_updated", "area_id": 3, "area_name": null}"#,
    );
    let err = m.map_item(&item, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "event area_updated has no scalar field 'area_name' needed by route \"{prefix}/areas/{area_name}\""
    );
}

#[test]
fn map_event_missing_tool_id_is_an_error() {
    let event = NemoEvent::parse(r#"{"event": "tool_enabled", "tool_name": "x"}"#).unwrap();
    let err = TopicMapper::default().map_event(&event).unwrap_err();
    assert!(
        matches!(err, nemo_topics::MapError::MissingField { ref field, .. } if field == "tool_id"),
        "{err}"
    );
}

fn state_doc(pubs: &[nemo_topics::Publication]) -> Value {
    match &pubs[1].payload {
        PayloadRef::Generated(s) => serde_json::from_str(s).unwrap(),
        PayloadRef::Original => panic!("state payload must be generated"),
    }
}

#[test]
fn state_topics_for_every_state_kind() {
    let m = mapper(TopicsConfig {
        state_topics: true,
        ..Default::default()
    });
    let payloads: serde_json::Map<String, Value> = serde_json::from_str(PAYLOADS).unwrap();
    let cases = [
        (
            "tool_enabled",
            "nemo/tools/1/state",
            json!({"tool_id": 1, "tool_name": "Zeiss Supra 55 SEM", "state": "in_use", "user_name": "Jane Doe", "since": "2025-10-16T14:02:32.944572+00:00", "event": "tool_enabled"}),
        ),
        (
            "tool_disabled",
            "nemo/tools/1/state",
            json!({"tool_id": 1, "tool_name": "Zeiss Supra 55 SEM", "state": "idle", "user_name": "Jane Doe", "since": "2025-10-16T14:12:26.950648+00:00", "event": "tool_disabled"}),
        ),
        (
            "tool_non_operational",
            "nemo/tools/23/state",
            json!({"tool_id": 23, "tool_name": "Angstrom Evaporator", "state": "down", "user_name": null, "since": "2025-10-17T09:48:24.665736+00:00", "event": "tool_non_operational"}),
        ),
        (
            "tool_operational",
            "nemo/tools/23/state",
            json!({"tool_id": 23, "tool_name": "Angstrom Evaporator", "state": "up", "user_name": null, "since": "2025-10-17T10:54:54.665736+00:00", "event": "tool_operational"}),
        ),
        (
            "task_shutdown",
            "nemo/tools/23/state",
            json!({"tool_id": 23, "tool_name": "Angstrom Evaporator", "state": "down", "user_name": null, "since": "2025-10-17T09:48:23.665736+00:00", "event": "task_shutdown"}),
        ),
    ];
    for (kind, topic, doc) in cases {
        let payload = payloads[kind].to_string();
        let item = QueueItem::from_payload(Topic::new("nemo/whatever").unwrap(), payload.clone());
        let event = NemoEvent::parse(&payload).unwrap();
        for pubs in [
            m.map_item(&item, None).unwrap(),
            m.map_item(&item, Some(&event)).unwrap(),
            m.map_event(&event).unwrap(),
        ] {
            assert_eq!(pubs.len(), 2, "{kind}");
            assert_eq!(pubs[1].topic.as_str(), topic);
            assert!(pubs[1].retain);
            assert_eq!(state_doc(&pubs), doc, "{kind}");
        }
    }
    for kind in [
        "tool_updated",
        "tool_created",
        "area_updated",
        "reservation_created",
        "area_access",
    ] {
        let event = NemoEvent::parse(&payloads[kind].to_string()).unwrap();
        assert_eq!(
            m.map_event(&event).unwrap().len(),
            1,
            "{kind} has no state topic"
        );
    }
}

#[test]
fn state_topic_details() {
    let m = mapper(TopicsConfig {
        state_topics: true,
        state_retain: false,
        prefix: "lab".into(),
        ..Default::default()
    });
    // bool timestamp (plugin bug) -> since null; retain flag from config; prefix applied
    let item = QueueItem::from_payload(
        Topic::new("nemo/tools/4/operational").unwrap(),
        r#"{"event": "tool_operational", "tool_id": 4, "tool_name": "A/B", "operational": true, "timestamp": true}"#,
    );
    let pubs = m.map_item(&item, None).unwrap();
    assert_eq!(pubs[0].topic.as_str(), "nemo/tools/4/operational");
    assert_eq!(pubs[1].topic.as_str(), "lab/tools/4/state");
    assert!(!pubs[1].retain);
    assert_eq!(state_doc(&pubs)["since"], Value::Null);
    assert_eq!(
        state_doc(&pubs)["tool_name"],
        "A/B",
        "the document keeps the real name"
    );
    // no tool_id: the main publication still goes out, without a state publication
    let item = QueueItem::from_payload(
        Topic::new("nemo/tools/x/enabled").unwrap(),
        r#"{"event": "tool_enabled"}"#,
    );
    let pubs = m.map_item(&item, None).unwrap();
    assert_eq!(pubs.len(), 1);
    assert_eq!(pubs[0].topic.as_str(), "nemo/tools/x/enabled");
}
