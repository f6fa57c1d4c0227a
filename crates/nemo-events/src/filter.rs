//! The event filters of NEMO's MQTT page: which event kinds a filter row governs, and the
//! reduced payload a filter with `include_payload = false` publishes.
//!
//! The page's filter table (`nemo_mqtt_mqtteventfilter`) names Django *signals*
//! (`usage_event_save`, `tool_save`, …), not the event kinds in the payloads. One signal of the
//! plugin produces one or two kinds; [`FILTER_EVENT_TYPES`] is that table, the one place it is
//! written down. Kinds that no filter row can name (`tool_operational`, the `task_*` kinds, any
//! unknown kind) are never filtered.
//!
//! ```
//! use nemo_events::filter::{filter_event_type, reduced_payload};
//!
//! assert_eq!(filter_event_type("tool_enabled"), Some("usage_event_save"));
//! assert_eq!(filter_event_type("tool_operational"), None);
//!
//! let full = r#"{"event": "tool_enabled", "tool_id": 1, "tool_name": "Zeiss Supra 55 SEM", "usage_id": 3401, "user_name": "Jane Doe", "start_time": "2025-10-16T14:02:32.944572+00:00"}"#;
//! assert_eq!(reduced_payload(full)?,
//!     r#"{"event": "tool_enabled", "tool_id": 1, "usage_id": 3401, "start_time": "2025-10-16T14:02:32.944572+00:00"}"#);
//! # Ok::<(), nemo_events::EventError>(())
//! ```

use crate::error::EventError;
use crate::extra::{ObjectError, parse_object};

/// One filter type of NEMO's page and the event kinds its signal produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterEventType {
    /// The value of `nemo_mqtt_mqtteventfilter.event_type`.
    pub name: &'static str,
    /// The `"event"` kinds it governs.
    pub kinds: &'static [&'static str],
}

/// Every filter type the plugin's page offers, with the kinds of its signal.
///
/// The plugin 1.x registers handlers for the `*_save` signals; the `*_delete` types are offered
/// by the page but no handler publishes anything for them, so their kinds (`tool_deleted`,
/// `area_deleted`, `reservation_deleted`) are what a delete handler would send.
pub const FILTER_EVENT_TYPES: &[FilterEventType] = &[
    FilterEventType {
        name: "usage_event_save",
        kinds: &["tool_enabled", "tool_disabled"],
    },
    FilterEventType {
        name: "tool_save",
        kinds: &["tool_created", "tool_updated"],
    },
    FilterEventType {
        name: "tool_delete",
        kinds: &["tool_deleted"],
    },
    FilterEventType {
        name: "area_save",
        kinds: &["area_created", "area_updated"],
    },
    FilterEventType {
        name: "area_delete",
        kinds: &["area_deleted"],
    },
    FilterEventType {
        name: "reservation_save",
        kinds: &["reservation_created", "reservation_updated"],
    },
    FilterEventType {
        name: "reservation_delete",
        kinds: &["reservation_deleted"],
    },
    FilterEventType {
        name: "area_access_save",
        kinds: &["area_access"],
    },
];

/// The members a reduced payload keeps besides `event` and the ids (`id` and every `*_id`).
pub const REDUCED_TIME_FIELDS: &[&str] = &[
    "start_time",
    "end_time",
    "access_time",
    "timestamp",
    "created_at",
    "updated_at",
];

/// The filter type that governs events of `kind`; `None` when no filter row can name it.
///
/// ```
/// assert_eq!(nemo_events::filter::filter_event_type("area_access"), Some("area_access_save"));
/// assert_eq!(nemo_events::filter::filter_event_type("task_created"), None);
/// ```
pub fn filter_event_type(kind: &str) -> Option<&'static str> {
    FILTER_EVENT_TYPES
        .iter()
        .find(|t| t.kinds.contains(&kind))
        .map(|t| t.name)
}

/// True when `name` is one of the page's filter types.
///
/// ```
/// assert!(nemo_events::filter::is_filter_event_type("tool_save"));
/// assert!(!nemo_events::filter::is_filter_event_type("tool_saved"));
/// ```
pub fn is_filter_event_type(name: &str) -> bool {
    FILTER_EVENT_TYPES.iter().any(|t| t.name == name)
}

/// The `"event"` member of a payload, if it is a JSON object with a string `"event"` (the last
/// one when repeated, as Python reads it). One scan, no tree.
///
/// ```
/// assert_eq!(nemo_events::filter::event_kind(r#"{"event": "tool_enabled", "tool_id": 1}"#).as_deref(), Some("tool_enabled"));
/// assert_eq!(nemo_events::filter::event_kind("[1]"), None);
/// ```
pub fn event_kind(payload: &str) -> Option<String> {
    let entries = parse_object(payload).ok()?;
    let raw = entries.iter().rev().find(|(k, _)| k == "event")?.1;
    serde_json::from_str::<String>(raw.get()).ok()
}

fn keeps(key: &str) -> bool {
    key == "event" || key == "id" || key.ends_with("_id") || REDUCED_TIME_FIELDS.contains(&key)
}

/// The payload with only the event kind, the ids and the times: `event`, `id`, every `*_id`
/// member, and [`REDUCED_TIME_FIELDS`]; in the original order, each value byte for byte as it
/// was, written with Python's separators. Names, descriptions and statuses are left out.
///
/// # Errors
/// [`EventError::NotJson`] or [`EventError::NotAnObject`] when the payload is not a JSON object.
pub fn reduced_payload(payload: &str) -> Result<String, EventError> {
    let entries = parse_object(payload).map_err(|e| match e {
        ObjectError::NotJson(m) => EventError::NotJson(m),
        ObjectError::NotAnObject => EventError::NotAnObject,
    })?;
    let mut out = String::with_capacity(payload.len());
    out.push('{');
    let mut first = true;
    for (key, value) in entries.iter().filter(|(k, _)| keeps(k)) {
        if !first {
            out.push_str(", ");
        }
        first = false;
        crate::pyjson::write_str(&mut out, key);
        out.push_str(": ");
        out.push_str(value.get());
    }
    out.push('}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_typed_kind_of_a_filterable_signal_is_in_the_table_once() {
        let mut seen = std::collections::HashSet::new();
        for t in FILTER_EVENT_TYPES {
            for k in t.kinds {
                assert!(seen.insert(*k), "{k} twice");
            }
        }
        // Every typed kind is governed by a filter type, except the ones the page cannot name.
        let unfilterable = |k: &str| k.starts_with("task_") || k.contains("operational");
        for kind in crate::NemoEvent::KNOWN_KINDS {
            assert_eq!(
                filter_event_type(kind).is_some(),
                !unfilterable(kind),
                "{kind}"
            );
        }
        assert_eq!(FILTER_EVENT_TYPES.len(), 8);
        // ... and every kind a filter type names is a kind of the table or of a row's family
        // (`tool_deleted`, `area_deleted`, `reservation_deleted`), so it has a default topic.
        for t in FILTER_EVENT_TYPES {
            for k in t.kinds {
                assert!(crate::EventKind::family_of(k).is_some(), "{k}");
            }
        }
    }

    #[test]
    fn reduced_payloads_of_the_fixtures_keep_kind_ids_and_times_only() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/payloads.json"),
        )
        .unwrap();
        let all: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
        for (name, v) in all {
            let payload = crate::pyjson::to_string(&v);
            let reduced = reduced_payload(&payload).unwrap();
            let r: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&reduced).unwrap();
            assert_eq!(r.get("event"), v.get("event"), "{name}");
            for (k, val) in v.as_object().unwrap() {
                assert_eq!(r.contains_key(k), keeps(k), "{name}: {k}");
                if keeps(k) {
                    assert_eq!(&r[k], val, "{name}: {k}");
                }
            }
            for k in ["tool_name", "user_name", "area_name", "problem_description"] {
                assert!(!r.contains_key(k), "{name}: {k} kept");
            }
        }
    }

    #[test]
    fn values_stay_byte_exact_and_non_objects_are_errors() {
        let p = r#"{"event": "tool_disabled", "tool_id": 7, "user_name": "Jos\u00e9", "end_time": "2025-10-16T14:18:42.308270+00:00", "usage_id": 1.50}"#;
        assert_eq!(
            reduced_payload(p).unwrap(),
            r#"{"event": "tool_disabled", "tool_id": 7, "end_time": "2025-10-16T14:18:42.308270+00:00", "usage_id": 1.50}"#
        );
        assert!(matches!(
            reduced_payload("[]"),
            Err(EventError::NotAnObject)
        ));
        assert!(matches!(reduced_payload("{"), Err(EventError::NotJson(_))));
    }
}
