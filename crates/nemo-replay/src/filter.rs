//! Which items to replay: time window, tool ids, event kinds, topic filters.
//!
//! Tool id and kind are read from the payload the way downstream consumers read
//! it: the JSON field `event` is the kind and `tool_id` the tool (a number or a
//! string; compared as text). An HMAC envelope (`{"payload": "...", "hmac": ...}`)
//! is looked through. When the payload has no `tool_id`, the topic level after
//! `tools` is used (`nemo/tools/12/enabled` → `12`). A payload that is not JSON
//! has no kind and (unless its topic names one) no tool, so it only passes a
//! filter that does not ask for them.

use serde_json::Value;
use time::OffsetDateTime;

use crate::{ReplayItem, TopicFilter};

/// The item filters of a replay. Empty lists mean "no restriction"; several
/// values of one list are alternatives (OR); different lists must all match (AND).
///
/// ```
/// use nemo_replay::{Filter, ReplayItem};
/// let filter = Filter { tools: vec!["12".into()], kinds: vec!["tool_enabled".into()], ..Filter::default() };
/// let item = ReplayItem::new("nemo/tools/12/enabled", r#"{"event": "tool_enabled", "tool_id": 12}"#);
/// assert!(filter.check(&item, None).is_ok());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Keep only these tool ids (`--tool`, repeatable).
    pub tools: Vec<String>,
    /// Keep only these event kinds (`--kind`, repeatable), e.g. `tool_enabled`.
    pub kinds: Vec<String>,
    /// Keep only topics matching one of these filters (`--topic`, repeatable).
    pub topics: Vec<TopicFilter>,
    /// Keep only items at or after this time (`--from`).
    pub from: Option<OffsetDateTime>,
    /// Keep only items at or before this time (`--until`).
    pub until: Option<OffsetDateTime>,
}

/// Why an item was skipped by a [`Filter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Outside `--from`/`--until`, or no time known while a window is set.
    Window,
    /// Not one of the `--tool` ids.
    Tool,
    /// Not one of the `--kind`s.
    Kind,
    /// Matches none of the `--topic` filters.
    Topic,
}

impl Filter {
    /// True when the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
            && self.kinds.is_empty()
            && self.topics.is_empty()
            && self.from.is_none()
            && self.until.is_none()
    }

    /// Whether `item` passes; `at` is its effective time (the replayer gives an
    /// item without a time the time of the item before it).
    ///
    /// # Errors
    /// The first filter that rejects the item.
    pub fn check(&self, item: &ReplayItem, at: Option<OffsetDateTime>) -> Result<(), Skip> {
        if self.from.is_some() || self.until.is_some() {
            let Some(at) = at else {
                return Err(Skip::Window);
            };
            if self.from.is_some_and(|from| at < from) || self.until.is_some_and(|u| at > u) {
                return Err(Skip::Window);
            }
        }
        if !self.topics.is_empty() && !self.topics.iter().any(|f| f.matches(&item.topic)) {
            return Err(Skip::Topic);
        }
        if self.tools.is_empty() && self.kinds.is_empty() {
            return Ok(());
        }
        let body = probe(&item.payload);
        if !self.kinds.is_empty() {
            let kind = body
                .as_ref()
                .and_then(|b| b.get("event"))
                .and_then(Value::as_str);
            if !kind.is_some_and(|k| self.kinds.iter().any(|want| want == k)) {
                return Err(Skip::Kind);
            }
        }
        if !self.tools.is_empty() {
            let tool = body
                .as_ref()
                .and_then(|b| b.get("tool_id"))
                .and_then(id_text)
                .or_else(|| tool_from_topic(&item.topic).map(str::to_owned));
            if !tool.is_some_and(|t| self.tools.contains(&t)) {
                return Err(Skip::Tool);
            }
        }
        Ok(())
    }
}

/// The payload as a JSON object, looking through an HMAC envelope.
fn probe(payload: &[u8]) -> Option<serde_json::Map<String, Value>> {
    let Value::Object(outer) = serde_json::from_slice::<Value>(payload).ok()? else {
        return None;
    };
    if outer.contains_key("hmac")
        && let Some(Value::String(inner)) = outer.get("payload")
    {
        return match serde_json::from_str::<Value>(inner).ok()? {
            Value::Object(map) => Some(map),
            _ => None,
        };
    }
    Some(outer)
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn tool_from_topic(topic: &str) -> Option<&str> {
    let mut levels = topic.split('/');
    levels.by_ref().find(|l| *l == "tools")?;
    levels.next().filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn item(topic: &str, payload: &str) -> ReplayItem {
        ReplayItem::new(topic, payload.to_owned())
    }

    fn tools(ids: &[&str]) -> Filter {
        Filter {
            tools: ids.iter().map(|s| s.to_string()).collect(),
            ..Filter::default()
        }
    }

    #[test]
    fn empty_filter_passes_everything() {
        assert!(Filter::default().is_empty());
        assert_eq!(
            Filter::default().check(&item("x", "not json"), None),
            Ok(())
        );
    }

    #[test]
    fn tool_from_payload_number_or_string_or_topic() {
        let f = tools(&["12"]);
        assert_eq!(f.check(&item("a/b", r#"{"tool_id": 12}"#), None), Ok(()));
        assert_eq!(f.check(&item("a/b", r#"{"tool_id": "12"}"#), None), Ok(()));
        assert_eq!(
            f.check(&item("a/b", r#"{"tool_id": 1}"#), None),
            Err(Skip::Tool)
        );
        assert_eq!(
            f.check(&item("nemo/tools/12/enabled", "garbage"), None),
            Ok(())
        );
        assert_eq!(
            f.check(&item("nemo/areas/12", r#"{"area_id": 12}"#), None),
            Err(Skip::Tool)
        );
        assert_eq!(
            tools(&["1", "12"]).check(&item("x", r#"{"tool_id": 1}"#), None),
            Ok(())
        );
    }

    #[test]
    fn kind_looks_through_hmac_envelope() {
        let f = Filter {
            kinds: vec!["tool_disabled".into()],
            ..Filter::default()
        };
        let env = r#"{"payload": "{\"event\": \"tool_disabled\", \"tool_id\": 3}", "hmac": "ab", "algo": "sha256"}"#;
        assert_eq!(f.check(&item("t", env), None), Ok(()));
        assert_eq!(
            f.check(&item("t", r#"{"event": "tool_enabled"}"#), None),
            Err(Skip::Kind)
        );
        assert_eq!(f.check(&item("t", "[1]"), None), Err(Skip::Kind));
    }

    #[test]
    fn topic_filters_are_alternatives() -> Result<(), crate::TopicFilterError> {
        let f = Filter {
            topics: vec!["nemo/tools/+/enabled".parse()?, "nemo/areas/#".parse()?],
            ..Filter::default()
        };
        assert_eq!(f.check(&item("nemo/tools/1/enabled", "{}"), None), Ok(()));
        assert_eq!(f.check(&item("nemo/areas/3", "{}"), None), Ok(()));
        assert_eq!(
            f.check(&item("nemo/tools/1/disabled", "{}"), None),
            Err(Skip::Topic)
        );
        Ok(())
    }

    #[test]
    fn window_is_inclusive_and_needs_a_time() {
        let f = Filter {
            from: Some(datetime!(2025-10-16 14:00 UTC)),
            until: Some(datetime!(2025-10-16 15:00 UTC)),
            ..Filter::default()
        };
        let i = item("t", "{}");
        assert_eq!(f.check(&i, Some(datetime!(2025-10-16 14:00 UTC))), Ok(()));
        assert_eq!(f.check(&i, Some(datetime!(2025-10-16 15:00 UTC))), Ok(()));
        assert_eq!(
            f.check(&i, Some(datetime!(2025-10-16 15:00:01 UTC))),
            Err(Skip::Window)
        );
        assert_eq!(
            f.check(&i, Some(datetime!(2025-10-16 13:59 UTC))),
            Err(Skip::Window)
        );
        assert_eq!(f.check(&i, None), Err(Skip::Window));
    }

    #[test]
    fn all_categories_must_match() {
        let f = Filter {
            kinds: vec!["tool_enabled".into()],
            ..tools(&["7"])
        };
        assert_eq!(
            f.check(
                &item("t", r#"{"event": "tool_enabled", "tool_id": 7}"#),
                None
            ),
            Ok(())
        );
        assert_eq!(
            f.check(
                &item("t", r#"{"event": "tool_enabled", "tool_id": 8}"#),
                None
            ),
            Err(Skip::Tool)
        );
    }
}
