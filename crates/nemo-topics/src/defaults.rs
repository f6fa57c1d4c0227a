//! The plugin's topic layout (DESIGN §2): default template and known payload fields per kind,
//! derived from nemo-events' table of event kinds ([`EVENT_KINDS`]), not written here.

use nemo_events::kinds::{EVENT_KINDS, EventKind};

/// The template reproducing the plugin's topic of `row`: its `nemo` root becomes `{prefix}`
/// (`nemo/tools/{tool_id}/enabled` → `{prefix}/tools/{tool_id}/enabled`).
pub(crate) fn template(row: &EventKind) -> String {
    let below_root = row.topic.strip_prefix("nemo").unwrap_or(row.topic);
    format!("{{prefix}}{below_root}")
}

/// The fields the plugin puts in the payload of `row`'s kind: `event` and the row's members.
pub(crate) fn fields(row: &EventKind) -> Vec<&'static str> {
    let mut fields = Vec::with_capacity(row.members.len() + 1);
    fields.push("event");
    fields.extend_from_slice(row.members);
    fields
}

/// The position in [`EVENT_KINDS`] of the row `kind` is treated like (its own, or the row whose
/// family names it: `task_*`, `tool_deleted`, `area_*`, `reservation_*`).
pub(crate) fn row_index(kind: &str) -> Option<usize> {
    let row = EventKind::family_of(kind)?;
    EVENT_KINDS.iter().position(|k| k.kind == row.kind)
}

/// The event kinds the plugin sends, each with a default route: the kinds of
/// [`nemo_events::kinds::EVENT_KINDS`].
///
/// Other kinds of the same families (`task_*`, `tool_deleted`, `area_*`, `reservation_*`) get
/// their family's route too; any other kind gets the fallback route.
///
/// ```
/// assert!(nemo_topics::KNOWN_KINDS.contains(&"tool_non_operational"));
/// assert_eq!(nemo_topics::KNOWN_KINDS, nemo_events::NemoEvent::KNOWN_KINDS);
/// ```
pub const KNOWN_KINDS: &[&str] = nemo_events::NemoEvent::KNOWN_KINDS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_has_a_plugin_template_and_families_share_it() {
        assert_eq!(
            template(&EVENT_KINDS[0]),
            "{prefix}/tools/{tool_id}/enabled"
        );
        for (i, row) in EVENT_KINDS.iter().enumerate() {
            assert!(template(row).starts_with("{prefix}/"), "{}", row.kind);
            assert_eq!(row_index(row.kind), Some(i));
            assert_eq!(fields(row)[0], "event");
        }
        let topic_of = |k: &str| row_index(k).map(|i| template(&EVENT_KINDS[i]));
        assert_eq!(topic_of("tool_deleted"), topic_of("tool_updated"));
        assert_eq!(topic_of("task_reopened"), topic_of("task_shutdown"));
        assert_eq!(topic_of("area_deleted"), topic_of("area_updated"));
        assert_eq!(
            topic_of("reservation_deleted"),
            topic_of("reservation_created")
        );
        assert_eq!(topic_of("tool_maintenance"), None);
    }
}
