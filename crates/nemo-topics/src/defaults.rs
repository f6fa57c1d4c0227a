//! The plugin's topic layout (DESIGN §2): default template and known payload fields per kind.

/// A family of event kinds with the same topic and the same payload fields.
pub(crate) struct Family {
    /// Does `kind` belong to the family?
    pub(crate) matches: fn(&str) -> bool,
    /// The template reproducing the plugin's topic.
    pub(crate) template: &'static str,
    /// Fields the plugin puts in the payload (besides `event`).
    pub(crate) fields: &'static [&'static str],
}

const TOOL_USAGE_ON: &[&str] = &[
    "event",
    "tool_id",
    "tool_name",
    "usage_id",
    "user_name",
    "start_time",
];
const TOOL_USAGE_OFF: &[&str] = &[
    "event",
    "tool_id",
    "tool_name",
    "usage_id",
    "user_name",
    "end_time",
];
const TOOL_OPERATIONAL: &[&str] = &["event", "tool_id", "tool_name", "operational", "timestamp"];
const TASK: &[&str] = &[
    "event",
    "task_id",
    "tool_id",
    "tool_name",
    "problem_description",
    "force_shutdown",
    "safety_hazard",
    "cancelled",
    "resolved",
    "created_at",
    "updated_at",
];
const TOOL: &[&str] = &["event", "tool_id", "tool_name", "tool_status", "timestamp"];
const AREA: &[&str] = &[
    "event",
    "area_id",
    "area_name",
    "area_requires_reservation",
    "timestamp",
];
const RESERVATION: &[&str] = &[
    "event",
    "reservation_id",
    "user_id",
    "user_name",
    "start_time",
    "end_time",
    "timestamp",
];
const AREA_ACCESS: &[&str] = &[
    "event",
    "access_id",
    "user_id",
    "user_name",
    "area_id",
    "area_name",
    "access_time",
    "timestamp",
];

/// In lookup order: the first family whose `matches` accepts a kind is its family.
pub(crate) const FAMILIES: &[Family] = &[
    Family {
        matches: |k| k == "tool_enabled",
        template: "{prefix}/tools/{tool_id}/enabled",
        fields: TOOL_USAGE_ON,
    },
    Family {
        matches: |k| k == "tool_disabled",
        template: "{prefix}/tools/{tool_id}/disabled",
        fields: TOOL_USAGE_OFF,
    },
    Family {
        matches: |k| k == "tool_operational",
        template: "{prefix}/tools/{tool_id}/operational",
        fields: TOOL_OPERATIONAL,
    },
    Family {
        matches: |k| k == "tool_non_operational",
        template: "{prefix}/tools/{tool_id}/non-operational",
        fields: TOOL_OPERATIONAL,
    },
    Family {
        matches: |k| k.starts_with("task_"),
        template: "{prefix}/tools/{tool_id}/tasks",
        fields: TASK,
    },
    Family {
        matches: |k| matches!(k, "tool_created" | "tool_updated" | "tool_deleted"),
        template: "{prefix}/tools/{tool_id}",
        fields: TOOL,
    },
    Family {
        matches: |k| k == "area_access",
        template: "{prefix}/area_access/{access_id}",
        fields: AREA_ACCESS,
    },
    Family {
        matches: |k| k.starts_with("area_"),
        template: "{prefix}/areas/{area_id}",
        fields: AREA,
    },
    Family {
        matches: |k| k.starts_with("reservation_"),
        template: "{prefix}/reservations/{reservation_id}",
        fields: RESERVATION,
    },
];

/// The family of `kind`, if it is one the plugin produces.
pub(crate) fn family(kind: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| (f.matches)(kind))
}

/// The event kinds DESIGN §2 and the field fixtures name, each with a default route.
///
/// Other kinds of the same families (`task_*`, `area_*`, `reservation_*`) get their family's
/// route too; any other kind gets the fallback route.
///
/// ```
/// assert!(nemo_topics::KNOWN_KINDS.contains(&"tool_non_operational"));
/// ```
pub const KNOWN_KINDS: &[&str] = &[
    "tool_enabled",
    "tool_disabled",
    "tool_operational",
    "tool_non_operational",
    "task_created",
    "task_updated",
    "task_shutdown",
    "tool_created",
    "tool_updated",
    "area_updated",
    "reservation_created",
    "area_access",
];
