//! `nemo_topics::TopicMapper` on arbitrary queue items and events, under three configurations:
//! the default (pass-through), rewrites + state topics, and routes + state topics.
//!
//! The input is tried as a queue item (`map_item` without and with the parsed event, and
//! `map_event` on its payload's event) and, if it is not an item, as an event payload.
//!
//! Asserts: mapping never panics; every produced topic passes `Topic::new` and has no `+`, `#`
//! or NUL; a rendered (routed, event or state) topic has no empty level and exactly its
//! template's number of levels; pass-through topics are the item's, rewritten by whole leading
//! levels; a state publication is retained, 5 levels, ends in `state`, and carries a JSON
//! document whose `event` is the kind; the only topic error is `TooLong`.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nemo_events::{NemoEvent, QueueItem, Topic, TopicError};
use nemo_topics::{MapError, PayloadRef, Publication, Rewrite, TopicMapper, TopicsConfig};
use serde_json::value::RawValue;

/// Which configuration a mapper was built from.
#[derive(Clone, Copy, PartialEq)]
enum Cfg {
    Default,
    Rewrites,
    Routes,
}

const PREFIX: &str = "site-a/nemo";

fn mappers() -> &'static [(Cfg, TopicMapper)] {
    static MAPPERS: OnceLock<Vec<(Cfg, TopicMapper)>> = OnceLock::new();
    MAPPERS.get_or_init(|| {
        let rewrites = TopicsConfig {
            prefix: PREFIX.into(),
            rewrites: vec![
                Rewrite {
                    from: "nemo".into(),
                    to: "site-a/nemo".into(),
                },
                Rewrite {
                    from: "legacy/lab".into(),
                    to: "site-a/nemo/legacy".into(),
                },
            ],
            state_topics: true,
            ..Default::default()
        };
        let mut routes = TopicsConfig {
            prefix: PREFIX.into(),
            state_topics: true,
            state_retain: true,
            state_template: "{prefix}/state/{tool_id}".into(),
            fallback: "{prefix}/fallback/{kind}".into(),
            ..Default::default()
        };
        for (k, t) in [
            ("tool_*", "{prefix}/by-name/{tool_name}/{kind}"),
            ("area_access", "{prefix}/areas/{area_id}/access/{user_name}"),
            ("*", "{prefix}/other/{kind}"),
        ] {
            routes.routes.insert(k.into(), t.into());
        }
        let build = |cfg: &TopicsConfig| match TopicMapper::from_config(cfg) {
            Ok(m) => m,
            Err(e) => panic!("fuzz configuration rejected: {e}"),
        };
        vec![
            (Cfg::Default, TopicMapper::default()),
            (Cfg::Rewrites, build(&rewrites)),
            (Cfg::Routes, build(&routes)),
        ]
    })
}

fn check_topic(t: &Topic) {
    let s = t.as_str();
    assert!(
        Topic::new(s).is_ok(),
        "produced topic fails Topic::new: {s:?}"
    );
    assert!(
        !s.contains(['+', '#', '\0']),
        "wildcard or NUL in produced topic: {s:?}"
    );
}

/// A rendered topic: no empty level, `levels` levels (if known), starting with `start`.
fn check_rendered(t: &Topic, levels: Option<usize>, start: &str) {
    let s = t.as_str();
    assert!(
        !s.split('/').any(str::is_empty),
        "empty level in rendered topic {s:?}"
    );
    if let Some(n) = levels {
        assert_eq!(
            s.split('/').count(),
            n,
            "level count of rendered topic {s:?}"
        );
    }
    assert!(
        s.starts_with(start),
        "rendered topic {s:?} does not start with {start:?}"
    );
}

fn check_error(e: &MapError) {
    if let MapError::InvalidTopic { source } = e {
        assert!(
            matches!(source, TopicError::TooLong { .. }),
            "unexpected topic error: {e}"
        );
    }
}

fn check_state(cfg: Cfg, p: &Publication, kind: &str) {
    check_topic(&p.topic);
    let (levels, start, last) = match cfg {
        Cfg::Routes => (4, "site-a/nemo/state/", None),
        _ => (5, "site-a/nemo/tools/", Some("state")),
    };
    check_rendered(&p.topic, Some(levels), start);
    if let Some(last) = last {
        assert_eq!(p.topic.as_str().rsplit('/').next(), Some(last));
    }
    assert!(p.retain, "state publication not retained");
    let PayloadRef::Generated(doc) = &p.payload else {
        panic!("state publication forwards the original payload");
    };
    // Raw values: the document copies the payload's numbers verbatim, and JSON allows numbers
    // (`1e999`) that `serde_json::Value` refuses.
    let doc: HashMap<String, Box<RawValue>> = match serde_json::from_str(doc) {
        Ok(d) => d,
        Err(e) => panic!("state document is not a JSON object: {e}: {doc:?}"),
    };
    let event = doc.get("event").map(|v| v.get());
    let event: Option<String> = event.and_then(|raw| serde_json::from_str(raw).ok());
    assert_eq!(event.as_deref(), Some(kind), "state document's event");
}

/// Levels of the topic the `Routes` configuration renders for `kind` (the `*` route covers
/// every kind; the prefix has two levels).
fn route_levels(kind: &str) -> usize {
    if kind.starts_with("tool_") {
        5
    } else if kind == "area_access" {
        6
    } else {
        4
    }
}

/// The kind `map_item` sees: the event's, else the payload's `event` string (the last one
/// if duplicated). Values are kept raw, not decoded: the mapper accepts an object whose
/// numbers are out of `f64` range (`1e999`), which `serde_json::Value` would refuse.
fn item_kind(item: &QueueItem, event: Option<&NemoEvent>) -> Option<String> {
    match event {
        Some(e) => Some(e.kind().to_owned()),
        None => {
            let members: HashMap<String, Box<RawValue>> =
                serde_json::from_str(&item.payload).ok()?;
            let raw = members.get("event")?.get();
            if raw.starts_with('"') {
                serde_json::from_str(raw).ok()
            } else {
                None
            }
        }
    }
}

fn expected_pass_through(cfg: Cfg, topic: &str) -> String {
    let rewrite = |from: &str, to: &str| {
        topic
            .strip_prefix(from)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .map(|rest| format!("{to}{rest}"))
    };
    match cfg {
        Cfg::Rewrites => rewrite("nemo", "site-a/nemo")
            .or_else(|| rewrite("legacy/lab", "site-a/nemo/legacy"))
            .unwrap_or_else(|| topic.to_owned()),
        _ => topic.to_owned(),
    }
}

fn check_item(cfg: Cfg, mapper: &TopicMapper, item: &QueueItem, event: Option<&NemoEvent>) {
    let pubs = match mapper.map_item(item, event) {
        Ok(p) => p,
        Err(e) => return check_error(&e),
    };
    assert!(matches!(pubs.len(), 1 | 2), "{} publications", pubs.len());
    let main = &pubs[0];
    check_topic(&main.topic);
    assert_eq!(main.payload, PayloadRef::Original);
    assert_eq!(main.retain, item.retain);
    let kind = item_kind(item, event);
    match (cfg, kind.as_deref()) {
        (Cfg::Routes, Some(k)) => {
            check_rendered(&main.topic, Some(route_levels(k)), "site-a/nemo/")
        }
        _ => assert_eq!(
            main.topic.as_str(),
            expected_pass_through(cfg, item.topic.as_str())
        ),
    }
    if let Some(state) = pubs.get(1) {
        assert!(
            cfg != Cfg::Default,
            "state publication without state topics"
        );
        check_state(cfg, state, kind.as_deref().unwrap_or_default());
    }
}

fn check_event(cfg: Cfg, mapper: &TopicMapper, event: &NemoEvent) {
    let pubs = match mapper.map_event(event) {
        Ok(p) => p,
        Err(e) => return check_error(&e),
    };
    assert!(matches!(pubs.len(), 1 | 2), "{} publications", pubs.len());
    let main = &pubs[0];
    check_topic(&main.topic);
    let start = if cfg == Cfg::Default {
        "nemo/"
    } else {
        "site-a/nemo/"
    };
    let levels = (cfg == Cfg::Routes).then(|| route_levels(event.kind()));
    check_rendered(&main.topic, levels, start);
    assert_eq!(main.payload, PayloadRef::Generated(event.to_json()));
    assert!(!main.retain);
    if let Some(state) = pubs.get(1) {
        assert!(
            cfg != Cfg::Default,
            "state publication without state topics"
        );
        check_state(cfg, state, event.kind());
    }
}

fuzz_target!(|data: &[u8]| {
    match QueueItem::parse(data) {
        Ok(item) => {
            let event = item.event().ok();
            for (cfg, mapper) in mappers() {
                check_item(*cfg, mapper, &item, None);
                if let Some(ev) = &event {
                    check_item(*cfg, mapper, &item, Some(ev));
                    check_event(*cfg, mapper, ev);
                }
            }
        }
        Err(_) => {
            let Ok(text) = std::str::from_utf8(data) else {
                return;
            };
            let Ok(event) = NemoEvent::parse(text) else {
                return;
            };
            for (cfg, mapper) in mappers() {
                check_event(*cfg, mapper, &event);
            }
        }
    }
});
