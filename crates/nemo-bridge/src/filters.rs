//! The event filters of NEMO's MQTT page, applied by the bridge.
//!
//! A row of `nemo_mqtt_mqtteventfilter` names a signal of the plugin (`usage_event_save`, …);
//! [`nemo_events::filter`] says which event kinds each one governs. For an item whose payload's
//! `"event"` falls under a row:
//!
//! * `enabled = false`: the item is acked without being published, and counted
//!   (`nemo_bridge_filtered_total{event_type}`);
//! * `topic_override`: published on that topic instead (checked like any topic, and refused
//!   with wildcards, NUL or an empty level: the item is then dead-lettered with the reason,
//!   never published on a bad topic);
//! * `include_payload = false`: published with the kind, the ids and the times only
//!   ([`nemo_events::filter::reduced_payload`]).
//!
//! No row = as is. Kinds no row can name (`tool_operational`, `task_*`, unknown) pass as is.
//!
//! ```
//! use nemo_bridge::filters::{EventFilters, Verdict};
//! use nemo_db::FilterRow;
//!
//! let rows = [FilterRow { id: 1, event_type: Some("usage_event_save".into()), enabled: Some(false),
//!     include_payload: Some(true), ..Default::default() }];
//! let filters = EventFilters::from_rows(&rows);
//! let line = br#"{"topic": "nemo/tools/1/enabled", "payload": "{\"event\": \"tool_enabled\", \"tool_id\": 1}", "qos": 1, "retain": false}"#;
//! let mut item = nemo_events::QueueItem::parse(line).unwrap();
//! assert_eq!(filters.apply(&mut item), Ok(Verdict::Drop("usage_event_save")));
//! ```

use std::collections::BTreeMap;

use nemo_db::FilterRow;
use nemo_events::QueueItem;
use nemo_events::Topic;
use nemo_events::filter::{FILTER_EVENT_TYPES, event_kind, filter_event_type, reduced_payload};

/// What one filter row asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filter {
    enabled: bool,
    /// `Err(reason)` for an override that is not a publishable topic.
    topic_override: Option<Result<Topic, String>>,
    include_payload: bool,
}

/// What to do with an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Publish it (possibly changed: topic, payload).
    Publish,
    /// Do not publish; ack it. The filter type that said so.
    Drop(&'static str),
}

/// The page's filters, checked. Empty = off (the table is absent, or has no rows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilters {
    by_type: BTreeMap<&'static str, Filter>,
    problems: Vec<String>,
}

impl EventFilters {
    /// Filters from the table's rows. A row with an unknown `event_type` is ignored and listed
    /// in [`problems`](Self::problems); so is a bad `topic_override` (its events are then
    /// dead-lettered, see the module docs).
    pub fn from_rows(rows: &[FilterRow]) -> EventFilters {
        let mut by_type = BTreeMap::new();
        let mut problems = Vec::new();
        let table = nemo_db::FILTER_TABLE;
        for row in rows {
            let name = row.event_type.as_deref().unwrap_or("");
            let Some(known) = FILTER_EVENT_TYPES.iter().find(|t| t.name == name) else {
                let allowed: Vec<&str> = FILTER_EVENT_TYPES.iter().map(|t| t.name).collect();
                problems.push(format!(
                    "{table} id={}: event_type = {name:?}: not a filter type of the page ({}); row ignored",
                    row.id,
                    allowed.join(", ")
                ));
                continue;
            };
            let topic_override = row
                .topic_override
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(|t| {
                    check_override(t).map_err(|why| {
                        let reason =
                            format!("{table} id={}: topic_override = {t:?}: {why}", row.id);
                        problems.push(format!("{reason}; events of {name} go to the dead letters"));
                        reason
                    })
                });
            by_type.insert(
                known.name,
                Filter {
                    enabled: row.enabled.unwrap_or(true),
                    topic_override,
                    include_payload: row.include_payload.unwrap_or(true),
                },
            );
        }
        EventFilters { by_type, problems }
    }

    /// True when no filter applies to anything.
    pub fn is_empty(&self) -> bool {
        self.by_type.is_empty()
    }

    /// What is wrong with the rows (one line each), for the log.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Apply the filter of the item's kind: drop it, or change its topic or payload in place.
    ///
    /// # Errors
    /// The reason, when the row's `topic_override` is not a publishable topic or the reduced
    /// payload cannot be made: the caller dead-letters the item.
    pub fn apply(&self, item: &mut QueueItem) -> Result<Verdict, String> {
        if self.by_type.is_empty() {
            return Ok(Verdict::Publish);
        }
        let Some(name) = event_kind(&item.payload).and_then(|k| filter_event_type(&k)) else {
            return Ok(Verdict::Publish);
        };
        let Some(filter) = self.by_type.get(name) else {
            return Ok(Verdict::Publish);
        };
        if !filter.enabled {
            return Ok(Verdict::Drop(name));
        }
        match &filter.topic_override {
            Some(Ok(topic)) => item.topic = topic.clone(),
            Some(Err(reason)) => return Err(reason.clone()),
            None => {}
        }
        if !filter.include_payload {
            item.payload = reduced_payload(&item.payload).map_err(|e| e.to_string())?;
        }
        Ok(Verdict::Publish)
    }
}

/// A topic the page may name: publishable, and no empty level (`a//b`, `/a`, `a/`).
fn check_override(t: &str) -> Result<Topic, String> {
    let topic = Topic::new(t).map_err(|e| e.to_string())?;
    if t.split('/').any(str::is_empty) {
        return Err("topic has an empty level".into());
    }
    Ok(topic)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row(id: i64, t: &str, enabled: bool, over: Option<&str>, full: bool) -> FilterRow {
        FilterRow {
            id,
            event_type: Some(t.into()),
            enabled: Some(enabled),
            topic_override: over.map(str::to_string),
            include_payload: Some(full),
            updated_at: None,
        }
    }

    fn item(topic: &str, payload: &str) -> QueueItem {
        QueueItem::from_payload(Topic::new(topic).unwrap(), payload)
    }

    const ENABLED: &str = r#"{"event": "tool_enabled", "tool_id": 1, "tool_name": "SEM", "usage_id": 9, "user_name": "Jane", "start_time": "2025-10-16T14:02:32+00:00"}"#;

    #[test]
    fn no_rows_and_unnamed_kinds_pass_unchanged() {
        let mut it = item("nemo/tools/1/enabled", ENABLED);
        assert_eq!(EventFilters::default().apply(&mut it), Ok(Verdict::Publish));
        let f = EventFilters::from_rows(&[row(1, "usage_event_save", false, None, true)]);
        let mut op = item(
            "nemo/tools/1/operational",
            r#"{"event": "tool_operational", "tool_id": 1}"#,
        );
        assert_eq!(f.apply(&mut op), Ok(Verdict::Publish));
        let mut not_json = item("nemo/x", "plain text");
        assert_eq!(f.apply(&mut not_json), Ok(Verdict::Publish));
    }

    #[test]
    fn disabled_drops_override_moves_and_reduced_payload_strips_names() {
        let f = EventFilters::from_rows(&[
            row(1, "tool_save", false, None, true),
            row(2, "usage_event_save", true, Some("lab/usage"), false),
        ]);
        let mut upd = item(
            "nemo/tools/1",
            r#"{"event": "tool_updated", "tool_id": 1, "tool_name": "SEM", "tool_status": true, "timestamp": false}"#,
        );
        assert_eq!(f.apply(&mut upd), Ok(Verdict::Drop("tool_save")));
        let mut en = item("nemo/tools/1/enabled", ENABLED);
        assert_eq!(f.apply(&mut en), Ok(Verdict::Publish));
        assert_eq!(en.topic.as_str(), "lab/usage");
        assert_eq!(
            en.payload,
            r#"{"event": "tool_enabled", "tool_id": 1, "usage_id": 9, "start_time": "2025-10-16T14:02:32+00:00"}"#
        );
        assert!(f.problems().is_empty());
    }

    #[test]
    fn bad_rows_are_reported_and_bad_overrides_dead_letter() {
        let f = EventFilters::from_rows(&[
            row(1, "tool_saved", false, None, true),
            row(2, "usage_event_save", true, Some("nemo/+/x"), true),
            row(3, "area_access_save", true, Some("nemo//door"), true),
            row(4, "area_save", true, Some("nemo/a\0b"), true),
        ]);
        let p = f.problems();
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(
            p[0].contains("id=1: event_type = \"tool_saved\": not a filter type"),
            "{}",
            p[0]
        );
        assert!(p[1].contains("wildcard"), "{}", p[1]);
        assert!(p[2].contains("empty level"), "{}", p[2]);
        assert!(p[3].contains("NUL"), "{}", p[3]);
        let mut en = item("nemo/tools/1/enabled", ENABLED);
        let err = f.apply(&mut en).unwrap_err();
        assert!(err.contains("topic_override = \"nemo/+/x\""), "{err}");
        // The unknown row is ignored: tool_updated passes.
        let mut upd = item("nemo/tools/1", r#"{"event": "tool_updated", "tool_id": 1}"#);
        assert_eq!(f.apply(&mut upd), Ok(Verdict::Publish));
    }
}
