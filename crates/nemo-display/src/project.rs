//! The projection: one tool event (or retained tool-state document) → the status document a
//! display reads. Pure functions, no I/O.
//!
//! The words are the relay's (`vm_server/main.py` of NEMO-Tool-Display), so a display cannot
//! tell the feeds apart, except where the relay is wrong:
//!
//! | topic type | `event_type` | `in_use` | `user_label` | `time_label`     | `timestamp` from                     |
//! |------------|--------------|----------|--------------|------------------|--------------------------------------|
//! | `enabled`  | `enabled`    | **true** | **`User`**   | `Enabled Since`  | **`start_time`**, `timestamp`, …     |
//! | `disabled` | `disabled`   | false    | `Last User`  | `Disabled Since` | **`end_time`**, `timestamp`, …       |
//! | `start`    | `active`     | true     | `User`       | `Enabled Since`  | `start_time`, `timestamp`            |
//! | `end`      | `enabled`    | false    | `Last User`  | `Enabled Since`  | `end_time`, `timestamp`              |
//! | `idle`     | `enabled`    | false    | `Last User`  | `Enabled Since`  | `timestamp`, `enabled_at`, …         |
//!
//! In bold what differs from the relay: the plugin's `enabled` means a usage started (NEMO
//! "enables" a tool for its user), so the tool is in use (the relay sends `in_use: false` and
//! `Last User`), and the time shown is the event's own (the relay reads only `timestamp`, which
//! the plugin's usage events do not have, and shows when *it* received the event). The
//! firmware colours the screen by `event_type` (`enabled` green, else red) and writes its own
//! "Current User" / "Last User"; both feeds agree there.

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::DisplayZone;

/// A tool event type the displays are fed, read from the fourth topic level
/// (`nemo/tools/{id}/{type}`), as the relay accepts them.
///
/// ```
/// use nemo_display::Kind;
/// assert_eq!(Kind::from_level("enabled"), Some(Kind::Enabled));
/// assert_eq!(Kind::from_level("operational"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `enabled`: the plugin's usage started (`start_time`).
    Enabled,
    /// `disabled`: the plugin's usage ended (`end_time`).
    Disabled,
    /// `start`: a usage session started (other producers).
    Start,
    /// `end`: a usage session ended (other producers).
    End,
    /// `idle`: the tool is free (other producers).
    Idle,
}

impl Kind {
    /// The type of a topic's fourth level; `None` for every type not forwarded
    /// (`operational`, `tasks`, `state`, …).
    pub fn from_level(level: &str) -> Option<Kind> {
        Some(match level {
            "enabled" => Kind::Enabled,
            "disabled" => Kind::Disabled,
            "start" => Kind::Start,
            "end" => Kind::End,
            "idle" => Kind::Idle,
            _ => return None,
        })
    }

    /// `event_type` on the display.
    pub fn event_type(self) -> &'static str {
        match self {
            Kind::Start => "active",
            Kind::Enabled | Kind::End | Kind::Idle => "enabled",
            Kind::Disabled => "disabled",
        }
    }

    /// True when the event says the tool is in use now.
    pub fn in_use(self) -> bool {
        matches!(self, Kind::Enabled | Kind::Start)
    }

    /// The payload keys holding the event's own time, in order of preference.
    fn time_keys(self) -> &'static [&'static str] {
        match self {
            Kind::Enabled => &["start_time", "timestamp", "enabled_at", "updated_at"],
            Kind::Disabled => &["end_time", "timestamp", "disabled_at", "updated_at"],
            Kind::Start => &["start_time", "timestamp"],
            Kind::End => &["end_time", "timestamp"],
            Kind::Idle => &["timestamp", "enabled_at", "disabled_at", "updated_at"],
        }
    }
}

/// What a display reads on `{topic_prefix}/{tool_id}/status`: the relay's fields, in the
/// relay's order. [`to_json`](Self::to_json) writes it as the relay does (Python's
/// `json.dumps`).
///
/// ```
/// use nemo_display::{DisplayZone, Kind, project};
/// let zone = DisplayZone::parse("America/Los_Angeles")?;
/// let payload = r#"{"event": "tool_enabled", "tool_id": 1, "tool_name": "Zeiss Supra 55 SEM", "usage_id": 3401, "user_name": "Jane Doe", "start_time": "2025-10-16T14:02:32.944572+00:00"}"#;
/// let p = project(Kind::Enabled, "1", payload, &zone, 13, None, jiff::Timestamp::now()).unwrap();
/// assert_eq!(p.tool_id, "1");
/// assert_eq!(p.status.to_json(), r#"{"event_type": "enabled", "in_use": true, "timestamp": "Oct 16, 07:02 AM", "time_label": "Enabled Since", "user_label": "User", "user_name": "Jane Doe", "tool_name": "Zeiss Supra 55 SEM"}"#);
/// # Ok::<(), nemo_display::DisplayError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisplayStatus {
    /// `enabled`, `disabled` or `active` (see [`Kind::event_type`]).
    pub event_type: &'static str,
    /// True exactly when the tool is in use.
    pub in_use: bool,
    /// The event's time in the display zone, `%b %d, %I:%M %p`; `Invalid Time` when the event
    /// has a time that cannot be read (as the relay).
    pub timestamp: String,
    /// `Enabled Since` or `Disabled Since`.
    pub time_label: &'static str,
    /// `User` while in use, else `Last User`.
    pub user_label: &'static str,
    /// The user's name, shortened ([`display_name`]); the tool's last user when the event
    /// names none.
    pub user_name: String,
    /// The tool's name (the topic's tool id when the event has none).
    pub tool_name: String,
}

impl DisplayStatus {
    /// The document as the relay writes it: `json.dumps` (`", "` and `": "` separators,
    /// non-ASCII as `\uXXXX`).
    pub fn to_json(&self) -> String {
        nemo_events::pyjson::to_string(self)
    }
}

/// One projected event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projected {
    /// The tool's id as it goes into the topic `{topic_prefix}/{tool_id}/status`: the payload's
    /// `tool_id`, else the topic's (when it is a number), as the relay.
    pub tool_id: String,
    /// The document.
    pub status: DisplayStatus,
    /// The event's own time, when it has one that can be read (the receive time does not
    /// count): a retained message replaces a tool's status only when it is not older.
    pub event_time: Option<Timestamp>,
    /// The user named by the event (shortened), to remember as the tool's last user.
    pub user: Option<String>,
}

/// The name shown, by the relay's rule: drop a trailing ` (role)` (`Alex Denton (admin)` →
/// `Alex Denton`); if still longer than `max` characters, the first name, cut to `max`.
/// Characters are Unicode scalar values, as Python's `len` counts them.
///
/// ```
/// use nemo_display::display_name;
/// assert_eq!(display_name("Alex Denton (admin)", 13), "Alex Denton");
/// assert_eq!(display_name("Maximilian Featherstonehaugh", 13), "Maximilian");
/// assert_eq!(display_name("Bartholomew-Alexander Smith", 13), "Bartholomew-A");
/// assert_eq!(display_name("李雷", 13), "李雷");
/// ```
pub fn display_name(full: &str, max: usize) -> String {
    let mut name = full.trim();
    if name.ends_with(')')
        && let Some(open) = name.rfind('(')
    {
        name = name[..open].trim();
    }
    if name.chars().count() <= max {
        return name.to_string();
    }
    let first = name.split_whitespace().next().unwrap_or(name);
    first.chars().take(max).collect()
}

/// The event's own time, and the text shown for it.
fn event_time(obj: &Map<String, Value>, keys: &[&str], zone: &DisplayZone) -> TimeShown {
    for key in keys {
        let t = match obj.get(*key) {
            Some(Value::String(s)) if !s.trim().is_empty() => {
                nemo_events::parse_time(s).and_then(|t| to_timestamp(t.unix_timestamp_nanos()))
            }
            // Epoch seconds (nemo-events accepts them too); booleans are the plugin's bug.
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|f| f.is_finite() && *f > 0.0)
                .and_then(|f| to_timestamp((f * 1e9) as i128)),
            _ => continue,
        };
        return match t {
            Some(t) => TimeShown::Event(t, zone.format(t)),
            None => TimeShown::Invalid,
        };
    }
    TimeShown::None
}

enum TimeShown {
    Event(Timestamp, String),
    Invalid,
    None,
}

fn to_timestamp(nanos: i128) -> Option<Timestamp> {
    Timestamp::from_nanosecond(nanos).ok()
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Project one tool event: `kind` from the topic's fourth level, `topic_id` its third,
/// `payload` the event (already unwrapped from its HMAC envelope). `last_user` is the tool's
/// last user, shown when the event names none; `received_at` is shown when the event has no
/// time of its own.
///
/// `None` when the event cannot be placed: no `tool_id` in the payload and a topic id that is
/// not a number (the relay drops those too).
pub fn project(
    kind: Kind,
    topic_id: &str,
    payload: &str,
    zone: &DisplayZone,
    max_name_length: usize,
    last_user: Option<&str>,
    received_at: Timestamp,
) -> Option<Projected> {
    let obj = match serde_json::from_str::<Value>(payload) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    project_fields(
        kind,
        kind.time_keys(),
        topic_id,
        &obj,
        zone,
        max_name_length,
        last_user,
        received_at,
    )
}

/// Project a retained tool-state document (`nemo/tools/{id}/state`, written by the bridge:
/// `{"tool_id", "tool_name", "state", "user_name", "since", "event"}`): a `tool_enabled` or
/// `tool_disabled` document reads as that event, with `since` as its time. Other documents
/// (operational status) give `None`: the relay does not forward those.
///
/// ```
/// use nemo_display::{DisplayZone, project_state};
/// let zone = DisplayZone::parse("UTC")?;
/// let doc = r#"{"tool_id":12,"tool_name":"Oxford ICP Etcher #2","state":"in_use","user_name":"Jos\u00e9 \u00c1lvarez","since":"2025-10-16T14:19:31.001769+00:00","event":"tool_enabled"}"#;
/// let p = project_state("12", doc, &zone, 13, None, jiff::Timestamp::now()).unwrap();
/// assert_eq!((p.status.in_use, p.status.user_name.as_str(), p.status.timestamp.as_str()),
///     (true, "José Álvarez", "Oct 16, 02:19 PM"));
/// # Ok::<(), nemo_display::DisplayError>(())
/// ```
pub fn project_state(
    topic_id: &str,
    document: &str,
    zone: &DisplayZone,
    max_name_length: usize,
    last_user: Option<&str>,
    received_at: Timestamp,
) -> Option<Projected> {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(document) else {
        return None;
    };
    let kind = match obj.get("event").and_then(Value::as_str)? {
        "tool_enabled" => Kind::Enabled,
        "tool_disabled" => Kind::Disabled,
        _ => return None,
    };
    project_fields(
        kind,
        &["since"],
        topic_id,
        &obj,
        zone,
        max_name_length,
        last_user,
        received_at,
    )
}

#[allow(clippy::too_many_arguments)]
fn project_fields(
    kind: Kind,
    time_keys: &[&str],
    topic_id: &str,
    obj: &Map<String, Value>,
    zone: &DisplayZone,
    max_name_length: usize,
    last_user: Option<&str>,
    received_at: Timestamp,
) -> Option<Projected> {
    let tool_id = match text(obj.get("tool_id")).filter(|s| !s.is_empty()) {
        Some(id) => nemo_topics::sanitize_level(&id).into_owned(),
        None => topic_id.parse::<u64>().ok()?.to_string(),
    };
    let tool_name = text(obj.get("tool_name")).unwrap_or_else(|| topic_id.to_string());
    let user = obj
        .get("user_name")
        .and_then(Value::as_str)
        .map(|u| display_name(u, max_name_length))
        .filter(|u| !u.is_empty());
    let (event_time, timestamp) = match event_time(obj, time_keys, zone) {
        TimeShown::Event(t, shown) => (Some(t), shown),
        TimeShown::Invalid => (None, "Invalid Time".to_string()),
        TimeShown::None => (None, zone.format(received_at)),
    };
    let in_use = kind.in_use();
    let status = DisplayStatus {
        event_type: kind.event_type(),
        in_use,
        timestamp,
        time_label: if kind == Kind::Disabled {
            "Disabled Since"
        } else {
            "Enabled Since"
        },
        user_label: if in_use { "User" } else { "Last User" },
        user_name: user
            .clone()
            .or_else(|| last_user.map(str::to_string))
            .unwrap_or_default(),
        tool_name,
    };
    Some(Projected {
        tool_id,
        status,
        event_time,
        user,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn utc() -> DisplayZone {
        DisplayZone::parse("UTC").unwrap()
    }

    fn now() -> Timestamp {
        "2026-01-02T03:04:05Z".parse().unwrap()
    }

    #[test]
    fn names_with_roles_accents_cjk_and_overlong() {
        let cases = [
            ("Alex Denton (admin)", "Alex Denton"),
            ("Jane Doe", "Jane Doe"),
            ("José Álvarez", "José Álvarez"),
            ("José Álvarez (staff)", "José Álvarez"),
            ("Zoë Ångström-Øberg (user)", "Zoë"),
            ("李雷", "李雷"),
            ("李雷 (管理员)", "李雷"),
            (
                "欧阳娜娜欧阳娜娜欧阳娜娜欧阳娜娜",
                "欧阳娜娜欧阳娜娜欧阳娜娜欧",
            ),
            ("Maximilian Featherstonehaugh", "Maximilian"),
            ("Wolfeschlegelsteinhausenbergerdorff Sr", "Wolfeschlegel"),
            ("Ana (Annie) Smith", "Ana"),
            ("Al (Bo) Cy", "Al (Bo) Cy"),
            ("  Padded Name  ", "Padded Name"),
            ("(admin)", ""),
            ("", ""),
        ];
        for (full, shown) in cases {
            assert_eq!(display_name(full, 13), shown, "{full}");
            assert!(display_name(full, 13).chars().count() <= 13);
        }
        assert_eq!(display_name("José Álvarez", 4), "José");
        assert_eq!(display_name("Émilie", 3), "Émi");
    }

    #[test]
    fn the_fixture_payloads() {
        let all: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/fixtures/payloads.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let zone = DisplayZone::parse("America/Los_Angeles").unwrap();
        let payload = |k: &str| all[k].to_string();

        let on = project(
            Kind::Enabled,
            "1",
            &payload("tool_enabled"),
            &zone,
            13,
            None,
            now(),
        )
        .unwrap();
        assert_eq!(on.tool_id, "1");
        assert_eq!(
            on.status,
            DisplayStatus {
                event_type: "enabled",
                in_use: true,
                timestamp: "Oct 16, 07:02 AM".into(),
                time_label: "Enabled Since",
                user_label: "User",
                user_name: "Jane Doe".into(),
                tool_name: "Zeiss Supra 55 SEM".into(),
            }
        );
        assert_eq!(on.user.as_deref(), Some("Jane Doe"));

        let off = project(
            Kind::Disabled,
            "1",
            &payload("tool_disabled"),
            &zone,
            13,
            None,
            now(),
        )
        .unwrap();
        assert_eq!(
            off.status,
            DisplayStatus {
                event_type: "disabled",
                in_use: false,
                timestamp: "Oct 16, 07:12 AM".into(),
                time_label: "Disabled Since",
                user_label: "Last User",
                user_name: "Jane Doe".into(),
                tool_name: "Zeiss Supra 55 SEM".into(),
            }
        );
        assert!(off.event_time > on.event_time);
    }

    #[test]
    fn the_receive_time_only_when_the_event_has_none() {
        let p = project(
            Kind::Idle,
            "4",
            r#"{"tool_id": 4, "tool_name": "Idle one", "timestamp": true}"#,
            &utc(),
            13,
            Some("Ada"),
            now(),
        )
        .unwrap();
        assert_eq!(p.status.timestamp, "Jan 02, 03:04 AM");
        assert_eq!(p.event_time, None);
        assert_eq!(p.status.event_type, "enabled");
        assert!(!p.status.in_use);
        assert_eq!(
            p.status.user_name, "Ada",
            "the last user when none is named"
        );
        assert_eq!(p.user, None);

        let bad = project(
            Kind::Enabled,
            "4",
            r#"{"tool_id": 4, "start_time": "yesterday"}"#,
            &utc(),
            13,
            None,
            now(),
        )
        .unwrap();
        assert_eq!(bad.status.timestamp, "Invalid Time");
    }

    #[test]
    fn start_end_and_the_tool_id() {
        let s = project(
            Kind::Start,
            "woollam",
            r#"{"event": "tool_usage_start", "usage_id": 232, "user_id": 1, "user_name": "Alex Denton (admin)", "tool_id": 1, "tool_name": "woollam", "start_time": "2025-10-14T19:00:11.106294+00:00", "end_time": null}"#,
            &DisplayZone::parse("-07:00").unwrap(),
            13,
            None,
            now(),
        )
        .unwrap();
        assert_eq!(
            s.status.to_json(),
            r#"{"event_type": "active", "in_use": true, "timestamp": "Oct 14, 12:00 PM", "time_label": "Enabled Since", "user_label": "User", "user_name": "Alex Denton", "tool_name": "woollam"}"#
        );
        assert_eq!(
            s.tool_id, "1",
            "the payload's tool_id wins over the topic's"
        );

        let e = project(Kind::End, "7", "not json", &utc(), 13, None, now()).unwrap();
        assert_eq!(
            (e.tool_id.as_str(), e.status.tool_name.as_str()),
            ("7", "7")
        );
        assert_eq!(e.status.event_type, "enabled");
        assert!(project(Kind::End, "woollam", "{}", &utc(), 13, None, now()).is_none());
        let odd = project(
            Kind::End,
            "x",
            r#"{"tool_id": "a/b#"}"#,
            &utc(),
            13,
            None,
            now(),
        )
        .unwrap();
        assert_eq!(odd.tool_id, "a_b_", "never a new level or a wildcard");
    }

    #[test]
    fn non_ascii_is_written_as_the_relay_writes_it() {
        let p = project(
            Kind::Enabled,
            "3",
            r#"{"tool_id": 3, "tool_name": "Süss \"MA6\"", "user_name": "李雷", "start_time": "2025-10-16T14:02:32+00:00"}"#,
            &utc(),
            13,
            None,
            now(),
        )
        .unwrap();
        assert_eq!(
            p.status.to_json(),
            r#"{"event_type": "enabled", "in_use": true, "timestamp": "Oct 16, 02:02 PM", "time_label": "Enabled Since", "user_label": "User", "user_name": "\u674e\u96f7", "tool_name": "S\u00fcss \"MA6\""}"#
        );
    }

    #[test]
    fn state_documents() {
        let zone = utc();
        let off = project_state(
            "1",
            r#"{"tool_id":1,"tool_name":"SEM","state":"idle","user_name":"Jane Doe","since":"2025-10-16T14:12:26.950648+00:00","event":"tool_disabled"}"#,
            &zone,
            13,
            None,
            now(),
        )
        .unwrap();
        assert_eq!(off.status.event_type, "disabled");
        assert_eq!(off.status.timestamp, "Oct 16, 02:12 PM");
        let down = r#"{"tool_id":23,"tool_name":"E","state":"down","user_name":null,"since":"2025-10-17T09:48:24+00:00","event":"tool_non_operational"}"#;
        assert!(project_state("23", down, &zone, 13, None, now()).is_none());
        assert!(project_state("23", "[]", &zone, 13, None, now()).is_none());
    }
}
