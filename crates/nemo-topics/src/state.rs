//! The retained per-tool state document.
//!
//! Built for the kinds listed in the crate docs' table. Document: `{"tool_id": 12,
//! "tool_name": "...", "state": "in_use", "user_name": "...", "since":
//! "2025-10-16T14:02:32.944572+00:00", "event": "tool_enabled"}`; every key is always present,
//! `null` when unknown (`since` is null unless the payload has it as a string: the plugin
//! sometimes sends `timestamp` as a bool). The latest event wins: the document is not a merge
//! of usage and operational status (that would need memory across bridge restarts).

use serde::Serialize;
use serde_json::value::RawValue;

use crate::fields::Fields;

/// Values are the payload's raw JSON, copied verbatim (`None` is written as `null`).
#[derive(Serialize)]
struct ToolState<'a> {
    tool_id: &'a RawValue,
    tool_name: Option<&'a RawValue>,
    state: &'static str,
    user_name: Option<&'a RawValue>,
    since: Option<&'a RawValue>,
    event: &'a str,
}

/// The state document for `kind`, or `None` when the kind does not change a tool's state or
/// the payload has no (non-null) `tool_id`.
pub(crate) fn document(kind: &str, fields: &Fields<'_>) -> Option<String> {
    let (state, since_keys, with_user): (&'static str, &[&str], bool) = match kind {
        "tool_enabled" => ("in_use", &["start_time"], true),
        "tool_disabled" => ("idle", &["end_time"], true),
        "tool_operational" => ("up", &["timestamp"], false),
        "tool_non_operational" => ("down", &["timestamp"], false),
        "task_shutdown" => ("down", &["updated_at", "created_at"], false),
        _ => return None,
    };
    let tool_id = fields.raw("tool_id").filter(|v| v.get() != "null")?;
    let since = since_keys
        .iter()
        .filter_map(|k| fields.raw(k))
        .find(|v| v.get().starts_with('"'));
    let doc = ToolState {
        tool_id,
        tool_name: fields.raw("tool_name"),
        state,
        user_name: if with_user {
            fields.raw("user_name")
        } else {
            None
        },
        since,
        event: kind,
    };
    serde_json::to_string(&doc).ok()
}
