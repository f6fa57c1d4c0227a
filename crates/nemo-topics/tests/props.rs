//! Property tests: no value inserted into a topic can add a level or a wildcard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nemo_events::{NemoEvent, QueueItem, Topic};
use nemo_topics::{Rewrite, TopicMapper, TopicsConfig, sanitize_level};
use proptest::prelude::*;
use serde_json::json;

/// Strings rich in the characters that matter.
fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z/+#\u{0}\u{1f}\u{7f}\u{85} \"'é李]{0,12}",
        Just(String::new()),
        Just("/".to_owned()),
        Just("#".to_owned()),
        Just("+/+".to_owned()),
    ]
}

fn no_wildcards(topic: &str) -> bool {
    !topic.contains(['+', '#', '\0'])
}

proptest! {
    #[test]
    fn sanitized_level_is_one_safe_nonempty_level(v in nasty()) {
        let s = sanitize_level(&v);
        prop_assert!(!s.is_empty());
        prop_assert!(!s.contains(['/', '+', '#']));
        prop_assert!(!s.chars().any(char::is_control));
        if !v.is_empty() {
            prop_assert_eq!(s.chars().count(), v.chars().count(), "one char replaced by one char");
        }
        // safe text is left alone
        prop_assert_eq!(sanitize_level(&s), s.clone());
    }

    /// Values in placeholders never change the number of levels nor add wildcards, whatever
    /// the kind, the name or the id (string or number).
    #[test]
    fn inserted_values_cannot_add_levels_or_wildcards(
        kind in nasty(),
        name in nasty(),
        user in nasty(),
        id_str in nasty(),
        id_num in any::<i64>(),
        id_float in any::<f64>().prop_filter("finite", |f| f.is_finite()),
        which in 0usize..3,
    ) {
        let mut cfg = TopicsConfig::default();
        cfg.routes.insert("*".into(), "{prefix}/x/{kind}/{tool_name}-{user_name}/{tool_id}".into());
        cfg.state_topics = true;
        cfg.state_template = "{prefix}/state/{tool_id}/{kind}".into();
        let m = TopicMapper::from_config(&cfg).unwrap();
        let id = match which { 0 => json!(id_str), 1 => json!(id_num), _ => json!(id_float) };
        let payload = json!({"event": kind, "tool_id": id, "tool_name": name, "user_name": user}).to_string();
        let item = QueueItem::from_payload(Topic::new("nemo/in").unwrap(), payload.clone());
        let pubs = m.map_item(&item, None).unwrap();
        let t = pubs[0].topic.as_str();
        prop_assert_eq!(t.split('/').count(), 5, "{}", t);
        prop_assert!(no_wildcards(t), "{}", t);
        prop_assert!(t.split('/').all(|l| !l.is_empty()), "{}", t);

        // typed events: the plugin's template for tool_enabled, and the state topic
        let payload = json!({"event": "tool_enabled", "tool_id": id, "tool_name": name, "user_name": user}).to_string();
        let event = NemoEvent::parse(&payload).unwrap();
        let m = TopicMapper::from_config(&TopicsConfig { state_topics: true, ..Default::default() }).unwrap();
        let pubs = m.map_event(&event).unwrap();
        for p in &pubs {
            prop_assert_eq!(p.topic.as_str().split('/').count(), 4, "{}", p.topic);
            prop_assert!(no_wildcards(p.topic.as_str()));
        }
        prop_assert_eq!(pubs.len(), 2);
    }

    /// A rewrite only touches whole leading levels and keeps the rest byte for byte.
    #[test]
    fn rewrite_keeps_the_remaining_levels(rest in "[a-z0-9/ _-]{0,30}", glued in "[a-z]{1,5}") {
        let r = Rewrite { from: "nemo".into(), to: "site-a/nemo".into() };
        let topic = format!("nemo/{rest}");
        prop_assert_eq!(r.apply(&topic), Some(format!("site-a/nemo/{rest}")));
        let glued_topic = format!("nemo{glued}/{rest}");
        prop_assert_eq!(r.apply(&glued_topic), None);
    }
}
