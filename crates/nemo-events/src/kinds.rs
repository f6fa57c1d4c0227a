//! The one table of event kinds: for each kind the plugin sends, its topic, the members of its
//! payload and the words a person reads.
//!
//! [`EVENT_KINDS`] is generated from the same list as the variants of
//! [`NemoEvent`](crate::NemoEvent) (the kinds are spelled once, in `event.rs`), so the enum,
//! [`NemoEvent::KNOWN_KINDS`](crate::NemoEvent::KNOWN_KINDS), parsing and this table cannot
//! disagree. Other crates derive from it rather than keep their own list:
//! `nemo-topics` its default routes and the placeholders a route may use, `nemo-monitor` the
//! words of its event lines.
//!
//! A few kinds the plugin does not send (yet) are treated like a row of the table: the row's
//! [`family`](EventKind::family) names them (`"task_*"`, `"tool_deleted"`), and
//! [`EventKind::family_of`] finds the row for them.
//!
//! | kind | topic | members (besides `event`) | words |
//! |---|---|---|---|
//! | `tool_enabled` | `nemo/tools/{tool_id}/enabled` | `tool_id`, `tool_name`, `usage_id`, `user_name`, `start_time` | IN USE |
//! | `tool_disabled` | `nemo/tools/{tool_id}/disabled` | `tool_id`, `tool_name`, `usage_id`, `user_name`, `end_time` | FREE |
//! | `tool_operational` | `nemo/tools/{tool_id}/operational` | `tool_id`, `tool_name`, `operational`, `timestamp` | BACK UP |
//! | `tool_non_operational` | `nemo/tools/{tool_id}/non-operational` | `tool_id`, `tool_name`, `operational`, `timestamp` | DOWN |
//! | `task_created`, `task_updated`, `task_shutdown` (family `task_*`) | `nemo/tools/{tool_id}/tasks` | `task_id`, `tool_id`, `tool_name`, `problem_description`, `force_shutdown`, `safety_hazard`, `cancelled`, `resolved`, `created_at`, `updated_at` | created, updated, SHUTDOWN |
//! | `tool_created`, `tool_updated` (family `tool_deleted`) | `nemo/tools/{tool_id}` | `tool_id`, `tool_name`, `tool_status`, `timestamp` | tool created, tool updated |
//! | `area_created`, `area_updated` (family `area_*`) | `nemo/areas/{area_id}` | `area_id`, `area_name`, `area_requires_reservation`, `timestamp` | area created, area updated |
//! | `reservation_created`, `reservation_updated` (family `reservation_*`) | `nemo/reservations/{reservation_id}` | `reservation_id`, `user_id`, `user_name`, `start_time`, `end_time`, `timestamp` | reservation created, reservation updated |
//! | `area_access` | `nemo/area_access/{access_id}` | `access_id`, `user_id`, `user_name`, `area_id`, `area_name`, `access_time`, `timestamp` | ACCESS |
//!
//! ```
//! use nemo_events::kinds::{EVENT_KINDS, EventKind};
//!
//! assert_eq!(EVENT_KINDS.len(), 14);
//! let row = EventKind::get("tool_non_operational").expect("a known kind");
//! assert_eq!(row.topic, "nemo/tools/{tool_id}/non-operational");
//! assert_eq!(row.words, "DOWN");
//! ```

pub use crate::event::EventKind;

/// Every kind the plugin sends, one row each, in the order of the variants of
/// [`NemoEvent`](crate::NemoEvent).
///
/// ```
/// use nemo_events::{NemoEvent, kinds::EVENT_KINDS};
///
/// let kinds: Vec<&str> = EVENT_KINDS.iter().map(|k| k.kind).collect();
/// assert_eq!(kinds, NemoEvent::KNOWN_KINDS);
/// ```
pub const EVENT_KINDS: &[EventKind] = crate::event::TABLE;

impl EventKind {
    /// The row of `kind`, if it is a kind of the table.
    ///
    /// ```
    /// use nemo_events::kinds::EventKind;
    /// assert_eq!(EventKind::get("area_access").map(|k| k.topic), Some("nemo/area_access/{access_id}"));
    /// assert_eq!(EventKind::get("tool_deleted"), None);
    /// ```
    pub fn get(kind: &str) -> Option<&'static EventKind> {
        EVENT_KINDS.iter().find(|k| k.kind == kind)
    }

    /// The row `kind` is treated like: its own row, else the first row whose
    /// [`family`](EventKind::family) names it; `None` for any other kind.
    ///
    /// ```
    /// use nemo_events::kinds::EventKind;
    /// assert_eq!(EventKind::family_of("task_shutdown").map(|k| k.kind), Some("task_shutdown"));
    /// assert_eq!(EventKind::family_of("task_reopened").map(|k| k.kind), Some("task_created"));
    /// assert_eq!(EventKind::family_of("tool_deleted").map(|k| k.kind), Some("tool_created"));
    /// assert_eq!(EventKind::family_of("area_deleted").map(|k| k.topic), Some("nemo/areas/{area_id}"));
    /// assert_eq!(EventKind::family_of("tool_maintenance"), None);
    /// ```
    pub fn family_of(kind: &str) -> Option<&'static EventKind> {
        EventKind::get(kind).or_else(|| {
            EVENT_KINDS.iter().find(|k| {
                k.family
                    .iter()
                    .any(|pattern| match pattern.strip_suffix('*') {
                        Some(stem) => kind.starts_with(stem),
                        None => *pattern == kind,
                    })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::NemoEvent;
    use std::collections::HashSet;

    /// The enum/parse side covers exactly the table: every row parses to a typed variant whose
    /// kind is the row's, `KNOWN_KINDS` is the table's kinds, and nothing else is typed.
    #[test]
    fn the_enum_covers_exactly_the_table() {
        let mut seen = HashSet::new();
        for row in EVENT_KINDS {
            assert!(seen.insert(row.kind), "{} twice in the table", row.kind);
            let ev = NemoEvent::parse(&format!(r#"{{"event": "{}"}}"#, row.kind)).unwrap();
            assert!(
                !matches!(ev, NemoEvent::Unknown(_)),
                "{} is in the table but parses as Unknown",
                row.kind
            );
            assert_eq!(ev.kind(), row.kind);
            assert_eq!(ev.kind_info(), Some(row));
            assert_eq!(EventKind::family_of(row.kind), Some(row));
        }
        let known: Vec<&str> = EVENT_KINDS.iter().map(|k| k.kind).collect();
        assert_eq!(NemoEvent::KNOWN_KINDS, known.as_slice());
        for other in ["tool_deleted", "task_reopened", "x", ""] {
            let ev = NemoEvent::parse(&format!(r#"{{"event": "{other}"}}"#)).unwrap();
            assert!(matches!(ev, NemoEvent::Unknown(_)), "{other}");
            assert_eq!(ev.kind_info(), None);
        }
    }

    /// The placeholders of each topic are members of its row, and the rows that share a topic
    /// share their members. (That the members are fields of the row's struct is checked by the
    /// compiler: `event_kinds!` in `event.rs`.)
    #[test]
    fn topics_use_members_and_shared_topics_share_members() {
        for row in EVENT_KINDS {
            assert!(row.topic.starts_with("nemo/"), "{}", row.topic);
            for level in row.topic.split('/') {
                if let Some(name) = level.strip_prefix('{').and_then(|l| l.strip_suffix('}')) {
                    assert!(row.members.contains(&name), "{}: {{{name}}}", row.kind);
                }
            }
            for other in EVENT_KINDS.iter().filter(|o| o.topic == row.topic) {
                assert_eq!(row.members, other.members, "{} / {}", row.kind, other.kind);
            }
        }
    }

    /// Families do not overlap (the first row would hide the second), every pattern is a kind
    /// or a kind prefix with `*`, and a table kind a pattern matches stays its own row.
    #[test]
    fn families_do_not_overlap() {
        let patterns: Vec<(&str, &str)> = EVENT_KINDS
            .iter()
            .flat_map(|row| row.family.iter().map(move |p| (row.kind, *p)))
            .collect();
        assert!(patterns.len() >= 4);
        let stem = |p: &'static str| p.strip_suffix('*').unwrap_or(p);
        for (i, (_, a)) in patterns.iter().enumerate() {
            assert!(!a.is_empty() && !stem(a).contains('*'), "{a}");
            for (_, b) in &patterns[i + 1..] {
                let (x, y) = (stem(a), stem(b));
                assert!(
                    !x.starts_with(y) && !y.starts_with(x),
                    "{a} and {b} overlap"
                );
            }
        }
        for (row, p) in patterns {
            let member = format!("{}example", stem(p));
            let want = if p.ends_with('*') { member.as_str() } else { p };
            assert_eq!(EventKind::family_of(want).map(|k| k.kind), Some(row), "{p}");
        }
        // area_* would match area_access, but a kind of the table is its own row.
        assert_eq!(
            EventKind::family_of("area_access").map(|k| k.topic),
            Some("nemo/area_access/{access_id}")
        );
    }

    /// The members of each row are exactly the members of the plugin's payload in the fixtures.
    #[test]
    fn members_are_those_of_the_fixture_payloads() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/payloads.json"),
        )
        .unwrap();
        let all: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
        assert!(all.len() >= 10);
        for v in all.values() {
            let kind = v["event"].as_str().unwrap();
            let row = EventKind::get(kind).unwrap();
            let keys: Vec<&str> = v
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "event")
                .collect();
            let mut want = row.members.to_vec();
            let mut got = keys.clone();
            want.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, want, "{kind}");
        }
    }
}
