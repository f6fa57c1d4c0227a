//! Typed NEMO events, parsed leniently and written back without loss.
//!
//! A payload is a JSON object whose `"event"` member names its kind. Each kind the plugin emits
//! has a variant of [`NemoEvent`] and a row of the table
//! [`EVENT_KINDS`](crate::kinds::EVENT_KINDS), both generated from one list (`event_kinds!`
//! below), where each kind is spelled once. Each variant holds a struct; several kinds share one (enabled/disabled share [`ToolUsage`]). Every
//! modelled field is an `Option`: the plugin's payloads are messy, and a missing field must not
//! make an event unreadable. Three rules keep parsing lenient and lossless:
//!
//! 1. an unknown kind becomes [`NemoEvent::Unknown`] with all its members;
//! 2. members this crate does not model go to the struct's [`Extra`], in place;
//! 3. a modelled member with an unexpected JSON type (say `"tool_id": "12"`) is kept verbatim in
//!    [`Extra`] as well, and its typed field stays `None`.
//!
//! Writing ([`NemoEvent::to_json`]) uses Python's `json.dumps` style and the source key order,
//! so a payload from the plugin comes out byte-identical.

use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::extra::{Entry, Extra, ObjectError, RawEntries, parse_object};
use crate::{EventError, EventTime, pyjson};

/// One kind of event the plugin sends: a row of [`EVENT_KINDS`](crate::kinds::EVENT_KINDS).
///
/// `#[non_exhaustive]`: columns may be added; rows are read, never built, outside this crate.
///
/// ```
/// let row = nemo_events::kinds::EventKind::get("tool_enabled").expect("a known kind");
/// assert_eq!(row.kind, "tool_enabled");
/// assert_eq!(row.members, ["tool_id", "tool_name", "usage_id", "user_name", "start_time"]);
/// assert_eq!(row.summary, "a user started using a tool");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventKind {
    /// The `"event"` string, e.g. `"tool_enabled"`.
    pub kind: &'static str,
    /// The topic the plugin publishes it on, `{member}` standing for that member's value, e.g.
    /// `"nemo/tools/{tool_id}/enabled"`. Always starts with the plugin's root `nemo/`.
    pub topic: &'static str,
    /// The members the plugin puts in its payload besides `"event"`, in the plugin's order.
    /// A subset of the fields of the kind's struct (enabled and disabled share
    /// [`ToolUsage`] but carry `start_time` and `end_time` respectively).
    pub members: &'static [&'static str],
    /// What happened, in the words a person reads on the monitor's line (`"IN USE"`,
    /// `"FREE"`, `"tool updated"`).
    pub words: &'static str,
    /// What happened, as a phrase for documentation (`"a user started using a tool"`).
    pub summary: &'static str,
    /// Other kinds treated like this one (same topic, same members): an exact kind, or a kind
    /// prefix ending in `*` (`"task_*"`), as in the keys of `[topics.routes]`. A kind of the
    /// table is always its own row, never another row's family member.
    pub family: &'static [&'static str],
}

/// How a modelled field's JSON value was taken.
enum Taken {
    Value,
    Null,
    Wrong,
}

/// A type a modelled field can have: read from raw JSON text, written Python-style.
trait FieldValue: Sized {
    fn from_json(text: &str) -> Option<Self>;
    fn write_json(&self, out: &mut String);
}

impl FieldValue for u64 {
    fn from_json(text: &str) -> Option<Self> {
        if text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse().ok()
        } else {
            None
        }
    }
    fn write_json(&self, out: &mut String) {
        out.push_str(&self.to_string());
    }
}

impl FieldValue for String {
    fn from_json(text: &str) -> Option<Self> {
        if text.starts_with('"') {
            serde_json::from_str(text).ok()
        } else {
            None
        }
    }
    fn write_json(&self, out: &mut String) {
        pyjson::write_str(out, self);
    }
}

impl FieldValue for bool {
    fn from_json(text: &str) -> Option<Self> {
        match text {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
    fn write_json(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

impl FieldValue for EventTime {
    fn from_json(text: &str) -> Option<Self> {
        EventTime::from_json_text(text)
    }
    fn write_json(&self, out: &mut String) {
        EventTime::write_json(self, out);
    }
}

fn take_into<T: FieldValue>(slot: &mut Option<T>, raw: &RawValue) -> Taken {
    let text = raw.get();
    if text == "null" {
        *slot = None;
        return Taken::Null;
    }
    match T::from_json(text) {
        Some(v) => {
            *slot = Some(v);
            Taken::Value
        }
        None => Taken::Wrong,
    }
}

/// The modelled fields of one event struct (private machinery behind the macro below).
trait Schema: Default {
    /// Field names in canonical (plugin) order, without `"event"`.
    const FIELDS: &'static [&'static str];
    fn take(&mut self, idx: usize, raw: &RawValue) -> Taken;
    /// Unset modelled field `idx`.
    fn clear(&mut self, idx: usize) {
        if let Ok(null) = RawValue::from_string("null".to_owned()) {
            self.take(idx, &null);
        }
    }
    fn has(&self, idx: usize) -> bool;
    fn write_value(&self, idx: usize, out: &mut String);
    fn extra(&self) -> &Extra;
    fn extra_mut(&mut self) -> &mut Extra;

    fn from_entries(entries: RawEntries<'_>) -> Self {
        let mut s = Self::default();
        for (key, raw) in entries {
            if key == "event" {
                s.extra_mut().push_known("event", false);
                continue;
            }
            match Self::FIELDS.iter().position(|f| *f == key) {
                Some(idx) => {
                    let name = Self::FIELDS[idx];
                    // A repeated modelled key: the last one wins, as with Python's
                    // json.loads, so forget what an earlier occurrence left behind.
                    s.extra_mut().forget(name);
                    match s.take(idx, raw) {
                        Taken::Value => s.extra_mut().push_known(name, false),
                        Taken::Null => s.extra_mut().push_known(name, true),
                        Taken::Wrong => {
                            s.clear(idx);
                            s.extra_mut().push_value(key, raw);
                        }
                    }
                }
                None => s.extra_mut().push_value(key, raw),
            }
        }
        s
    }

    fn write(&self, kind: &str, out: &mut String) {
        let mut w = ObjectWriter::new(out);
        let mut done = vec![false; Self::FIELDS.len()];
        let entries = self.extra().entries();
        let has_event_slot = entries
            .iter()
            .any(|e| matches!(e, Entry::Known { key: "event", .. }));
        if !has_event_slot {
            w.key("event");
            pyjson::write_str(w.out, kind);
        }
        for e in entries {
            let (key, raw, null) = match e {
                Entry::Known { key: "event", .. } => {
                    w.key("event");
                    pyjson::write_str(w.out, kind);
                    continue;
                }
                Entry::Known { key, null } => (*key, None, *null),
                Entry::Value { key, raw, .. } => (key.as_str(), Some(raw), false),
            };
            if key == "event" {
                continue; // the kind always comes from the variant
            }
            match Self::FIELDS.iter().position(|f| *f == key) {
                Some(idx) if self.has(idx) => {
                    if !done[idx] {
                        done[idx] = true;
                        w.key(key);
                        self.write_value(idx, w.out);
                    }
                }
                Some(idx) if done[idx] => {}
                _ => match raw {
                    Some(raw) => {
                        w.key(key);
                        w.out.push_str(raw.get());
                    }
                    None if null => {
                        w.key(key);
                        w.out.push_str("null");
                    }
                    None => {}
                },
            }
        }
        for (idx, name) in Self::FIELDS.iter().enumerate() {
            if !done[idx] && self.has(idx) {
                w.key(name);
                self.write_value(idx, w.out);
            }
        }
        w.finish();
    }
}

/// Writes `{"k": v, ...}` with Python separators.
struct ObjectWriter<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    fn new(out: &'a mut String) -> Self {
        out.push('{');
        ObjectWriter { out, first: true }
    }
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push_str(", ");
        }
        self.first = false;
        pyjson::write_str(self.out, k);
        self.out.push_str(": ");
    }
    fn finish(self) {
        self.out.push('}');
    }
}

macro_rules! event_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: Option<$ty>, )*
            /// Members not modelled above, kept in place and byte for byte (see [`Extra`]).
            pub extra: Extra,
        }

        impl Schema for $name {
            const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            fn take(&mut self, idx: usize, raw: &RawValue) -> Taken {
                match Self::FIELDS.get(idx).copied() {
                    $( Some(stringify!($field)) => take_into(&mut self.$field, raw), )*
                    _ => Taken::Wrong,
                }
            }

            fn has(&self, idx: usize) -> bool {
                match Self::FIELDS.get(idx).copied() {
                    $( Some(stringify!($field)) => self.$field.is_some(), )*
                    _ => false,
                }
            }

            fn write_value(&self, idx: usize, out: &mut String) {
                match Self::FIELDS.get(idx).copied() {
                    $( Some(stringify!($field)) => {
                        if let Some(v) = &self.$field {
                            FieldValue::write_json(v, out);
                        }
                    } )*
                    _ => {}
                }
            }

            fn extra(&self) -> &Extra {
                &self.extra
            }

            fn extra_mut(&mut self) -> &mut Extra {
                &mut self.extra
            }
        }
    };
}

event_struct! {
    /// A tool was enabled (someone started using it) or disabled (stopped).
    ///
    /// Topic `nemo/tools/{tool_id}/enabled` or `/disabled`. Enabled carries `start_time`,
    /// disabled `end_time`.
    ///
    /// ```
    /// use nemo_events::{EventTime, NemoEvent, ToolUsage};
    ///
    /// let ev = NemoEvent::ToolEnabled(ToolUsage {
    ///     tool_id: Some(1),
    ///     tool_name: Some("Zeiss Supra 55 SEM".into()),
    ///     usage_id: Some(3401),
    ///     user_name: Some("Jane Doe".into()),
    ///     start_time: Some(EventTime::from_text("2025-10-16T14:02:32.944572+00:00")),
    ///     ..Default::default()
    /// });
    /// assert_eq!(
    ///     ev.to_json(),
    ///     r#"{"event": "tool_enabled", "tool_id": 1, "tool_name": "Zeiss Supra 55 SEM", "usage_id": 3401, "user_name": "Jane Doe", "start_time": "2025-10-16T14:02:32.944572+00:00"}"#
    /// );
    /// ```
    pub struct ToolUsage {
        /// NEMO id of the tool.
        tool_id: u64,
        /// Display name of the tool.
        tool_name: String,
        /// NEMO id of the usage event (the enable/disable pair shares it).
        usage_id: u64,
        /// Full name of the user.
        user_name: String,
        /// When the usage started (`tool_enabled`).
        start_time: EventTime,
        /// When the usage ended (`tool_disabled`).
        end_time: EventTime,
    }
}

event_struct! {
    /// A tool went operational again or became non-operational (problem reported).
    ///
    /// Topic `nemo/tools/{tool_id}/operational` or `/non-operational`.
    ///
    /// ```
    /// use nemo_events::{NemoEvent, ToolOperational};
    ///
    /// let ev = NemoEvent::ToolNonOperational(ToolOperational { tool_id: Some(23), operational: Some(false), ..Default::default() });
    /// assert_eq!(ev.to_json(), r#"{"event": "tool_non_operational", "tool_id": 23, "operational": false}"#);
    /// ```
    pub struct ToolOperational {
        /// NEMO id of the tool.
        tool_id: u64,
        /// Display name of the tool.
        tool_name: String,
        /// Whether the tool is operational now.
        operational: bool,
        /// When the state changed.
        timestamp: EventTime,
    }
}

event_struct! {
    /// A task (problem report) on a tool was created, updated, or shut the tool down.
    ///
    /// Topic `nemo/tools/{tool_id}/tasks`.
    ///
    /// ```
    /// use nemo_events::{NemoEvent, Task};
    ///
    /// let ev = NemoEvent::parse(r#"{"event": "task_created", "task_id": 77, "tool_id": 23, "force_shutdown": false}"#)?;
    /// let NemoEvent::TaskCreated(task) = &ev else { panic!() };
    /// assert_eq!((task.task_id, task.force_shutdown), (Some(77), Some(false)));
    /// # Ok::<(), nemo_events::EventError>(())
    /// ```
    pub struct Task {
        /// NEMO id of the task.
        task_id: u64,
        /// NEMO id of the tool.
        tool_id: u64,
        /// Display name of the tool.
        tool_name: String,
        /// The user's description of the problem.
        problem_description: String,
        /// Whether the task shut the tool down.
        force_shutdown: bool,
        /// Whether the problem is a safety hazard.
        safety_hazard: bool,
        /// Whether the task was cancelled.
        cancelled: bool,
        /// Whether the task was resolved.
        resolved: bool,
        /// When the task was created.
        created_at: EventTime,
        /// When the task was last updated.
        updated_at: EventTime,
    }
}

event_struct! {
    /// A tool was created or its configuration updated.
    ///
    /// Topic `nemo/tools/{tool_id}`. The plugin writes `timestamp` as a boolean here (a bug);
    /// it is kept as such and [`NemoEvent::occurred_at`] is `None`.
    ///
    /// ```
    /// use nemo_events::NemoEvent;
    ///
    /// let ev = NemoEvent::parse(r#"{"event": "tool_updated", "tool_id": 12, "tool_status": true, "timestamp": false}"#)?;
    /// assert_eq!(ev.occurred_at(), None);
    /// assert_eq!(ev.tool_id(), Some(12));
    /// # Ok::<(), nemo_events::EventError>(())
    /// ```
    pub struct ToolInfo {
        /// NEMO id of the tool.
        tool_id: u64,
        /// Display name of the tool.
        tool_name: String,
        /// Whether the tool is visible/enabled in NEMO.
        tool_status: bool,
        /// When it changed (often a boolean: see above).
        timestamp: EventTime,
    }
}

event_struct! {
    /// An area was created or updated. Topic `nemo/areas/{area_id}`.
    ///
    /// ```
    /// use nemo_events::{Area, NemoEvent};
    ///
    /// let ev = NemoEvent::AreaUpdated(Area { area_id: Some(3), area_requires_reservation: Some(true), ..Default::default() });
    /// assert_eq!(ev.kind(), "area_updated");
    /// ```
    pub struct Area {
        /// NEMO id of the area.
        area_id: u64,
        /// Display name of the area.
        area_name: String,
        /// Whether entering the area needs a reservation.
        area_requires_reservation: bool,
        /// When it changed (often a boolean, a plugin bug).
        timestamp: EventTime,
    }
}

event_struct! {
    /// A reservation was created or updated. Topic `nemo/reservations/{reservation_id}`.
    ///
    /// ```
    /// use nemo_events::NemoEvent;
    ///
    /// let ev = NemoEvent::parse(r#"{"event": "reservation_created", "reservation_id": 8812, "user_name": "Jane Doe", "timestamp": true}"#)?;
    /// assert_eq!(ev.user_name(), Some("Jane Doe"));
    /// # Ok::<(), nemo_events::EventError>(())
    /// ```
    pub struct Reservation {
        /// NEMO id of the reservation.
        reservation_id: u64,
        /// NEMO id of the user.
        user_id: u64,
        /// Full name of the user.
        user_name: String,
        /// When the reservation starts.
        start_time: EventTime,
        /// When the reservation ends.
        end_time: EventTime,
        /// When it changed (often a boolean, a plugin bug).
        timestamp: EventTime,
    }
}

event_struct! {
    /// Someone entered an area (area access record). Topic `nemo/area_access/{access_id}`.
    ///
    /// ```
    /// use nemo_events::NemoEvent;
    ///
    /// let ev = NemoEvent::parse(r#"{"event": "area_access", "access_id": 1, "access_time": "2025-10-17T09:48:14+00:00"}"#)?;
    /// assert_eq!(ev.occurred_at().map(|t| t.unix_timestamp()), Some(1760694494));
    /// # Ok::<(), nemo_events::EventError>(())
    /// ```
    pub struct AreaAccess {
        /// NEMO id of the access record.
        access_id: u64,
        /// NEMO id of the user.
        user_id: u64,
        /// Full name of the user.
        user_name: String,
        /// NEMO id of the area.
        area_id: u64,
        /// Display name of the area.
        area_name: String,
        /// When the user entered.
        access_time: EventTime,
        /// When the record changed (often a boolean, a plugin bug).
        timestamp: EventTime,
    }
}

/// An event of a kind this crate does not know (yet), kept whole.
///
/// All members other than `"event"` are in its `extra` field, in order, as raw JSON; the
/// accessors of [`NemoEvent`] look there (`tool_id`, `tool_name`, `user_name`, `timestamp`).
///
/// ```
/// use nemo_events::NemoEvent;
///
/// let ev = NemoEvent::parse(r#"{"event": "tool_maintenance", "tool_id": 5, "note": "x"}"#)?;
/// assert_eq!(ev.kind(), "tool_maintenance");
/// assert_eq!(ev.tool_id(), Some(5));
/// assert_eq!(ev.to_json(), r#"{"event": "tool_maintenance", "tool_id": 5, "note": "x"}"#);
/// # Ok::<(), nemo_events::EventError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnknownEvent {
    /// The `"event"` string.
    pub kind: String,
    /// Every other member, in order, byte for byte.
    pub extra: Extra,
}

impl Schema for UnknownEvent {
    const FIELDS: &'static [&'static str] = &[];
    fn take(&mut self, _idx: usize, _raw: &RawValue) -> Taken {
        Taken::Wrong
    }
    fn has(&self, _idx: usize) -> bool {
        false
    }
    fn write_value(&self, _idx: usize, _out: &mut String) {}
    fn extra(&self) -> &Extra {
        &self.extra
    }
    fn extra_mut(&mut self) -> &mut Extra {
        &mut self.extra
    }
}

/// Spells every typed kind once and generates from that list: [`NemoEvent`] (one variant per
/// row), [`NemoEvent::KNOWN_KINDS`], the table [`EVENT_KINDS`](crate::kinds::EVENT_KINDS), and
/// the per-variant dispatch of parsing, writing and [`NemoEvent::kind`]. `members` are field
/// idents of the variant's struct: a member the struct does not have does not compile.
macro_rules! event_kinds {
    (
        $(#[$meta:meta])*
        pub enum NemoEvent {
            $(
                $variant:ident($ty:ident) {
                    kind: $kind:literal,
                    topic: $topic:literal,
                    members: [$($member:ident),* $(,)?],
                    words: $words:literal,
                    summary: $summary:literal,
                    family: [$($family:literal),* $(,)?] $(,)?
                }
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum NemoEvent {
            $(
                #[doc = concat!("`", $kind, "`: ", $summary, ".")]
                $variant($ty),
            )*
            /// Any other kind, kept whole.
            Unknown(UnknownEvent),
        }

        /// The rows of [`EVENT_KINDS`](crate::kinds::EVENT_KINDS), in [`NemoEvent`]'s order.
        pub(crate) const TABLE: &[EventKind] = &[
            $(
                EventKind {
                    kind: $kind,
                    topic: $topic,
                    members: &[$(stringify!($member)),*],
                    words: $words,
                    summary: $summary,
                    family: &[$($family),*],
                },
            )*
        ];

        /// Every kind with a typed variant, as written in `"event"`.
        const KNOWN: &[&str] = &[$($kind),*];

        /// `members` name fields of the variant's struct (checked by the compiler, never run).
        #[allow(dead_code)]
        fn members_are_fields() {
            $( let _ = |s: &$ty| { $( let _ = &s.$member; )* }; )*
        }

        impl NemoEvent {
            /// The typed event of `kind` made of `entries`, or [`NemoEvent::Unknown`].
            fn from_entries(kind: String, entries: RawEntries<'_>) -> NemoEvent {
                match kind.as_str() {
                    $( $kind => NemoEvent::$variant(Schema::from_entries(entries)), )*
                    _ => {
                        let mut u: UnknownEvent = Schema::from_entries(entries);
                        u.kind = kind;
                        NemoEvent::Unknown(u)
                    }
                }
            }

            /// The `"event"` string of a typed variant; `None` for [`NemoEvent::Unknown`].
            fn typed_kind(&self) -> Option<&'static str> {
                match self {
                    $( NemoEvent::$variant(_) => Some($kind), )*
                    NemoEvent::Unknown(_) => None,
                }
            }

            fn write_into(&self, kind: &str, out: &mut String) {
                match self {
                    $( NemoEvent::$variant(s) => Schema::write(s, kind, out), )*
                    NemoEvent::Unknown(s) => Schema::write(s, kind, out),
                }
            }

            fn extra_ref(&self) -> &Extra {
                match self {
                    $( NemoEvent::$variant(s) => &s.extra, )*
                    NemoEvent::Unknown(s) => &s.extra,
                }
            }
        }
    };
}

event_kinds! {
    /// A NEMO tool event: the decoded `payload` of a queue item.
    ///
    /// One variant per row of [`EVENT_KINDS`](crate::kinds::EVENT_KINDS), plus
    /// [`NemoEvent::Unknown`] for any other kind.
    ///
    /// ```
    /// use nemo_events::NemoEvent;
    ///
    /// let payload = r#"{"event": "tool_disabled", "tool_id": 7, "tool_name": "Heidelberg MLA150", "usage_id": 3402, "user_name": "Ada Lovelace", "end_time": "2025-10-16T14:18:42.308270+00:00"}"#;
    /// let ev = NemoEvent::parse(payload)?;
    /// assert!(matches!(ev, NemoEvent::ToolDisabled(_)));
    /// assert_eq!((ev.tool_id(), ev.user_name()), (Some(7), Some("Ada Lovelace")));
    /// assert_eq!(ev.occurred_at().map(|t| t.unix_timestamp()), Some(1760624322));
    /// assert_eq!(ev.to_json(), payload);
    /// # Ok::<(), nemo_events::EventError>(())
    /// ```
    pub enum NemoEvent {
        ToolEnabled(ToolUsage) {
            kind: "tool_enabled",
            topic: "nemo/tools/{tool_id}/enabled",
            members: [tool_id, tool_name, usage_id, user_name, start_time],
            words: "IN USE",
            summary: "a user started using a tool",
            family: [],
        },
        ToolDisabled(ToolUsage) {
            kind: "tool_disabled",
            topic: "nemo/tools/{tool_id}/disabled",
            members: [tool_id, tool_name, usage_id, user_name, end_time],
            words: "FREE",
            summary: "a user stopped using a tool",
            family: [],
        },
        ToolOperational(ToolOperational) {
            kind: "tool_operational",
            topic: "nemo/tools/{tool_id}/operational",
            members: [tool_id, tool_name, operational, timestamp],
            words: "BACK UP",
            summary: "the tool works again",
            family: [],
        },
        ToolNonOperational(ToolOperational) {
            kind: "tool_non_operational",
            topic: "nemo/tools/{tool_id}/non-operational",
            members: [tool_id, tool_name, operational, timestamp],
            words: "DOWN",
            summary: "the tool is down",
            family: [],
        },
        TaskCreated(Task) {
            kind: "task_created",
            topic: "nemo/tools/{tool_id}/tasks",
            members: [task_id, tool_id, tool_name, problem_description, force_shutdown,
                      safety_hazard, cancelled, resolved, created_at, updated_at],
            words: "created",
            summary: "a problem was reported",
            family: ["task_*"],
        },
        TaskUpdated(Task) {
            kind: "task_updated",
            topic: "nemo/tools/{tool_id}/tasks",
            members: [task_id, tool_id, tool_name, problem_description, force_shutdown,
                      safety_hazard, cancelled, resolved, created_at, updated_at],
            words: "updated",
            summary: "a problem report changed",
            family: [],
        },
        TaskShutdown(Task) {
            kind: "task_shutdown",
            topic: "nemo/tools/{tool_id}/tasks",
            members: [task_id, tool_id, tool_name, problem_description, force_shutdown,
                      safety_hazard, cancelled, resolved, created_at, updated_at],
            words: "SHUTDOWN",
            summary: "a problem report shut the tool down",
            family: [],
        },
        ToolCreated(ToolInfo) {
            kind: "tool_created",
            topic: "nemo/tools/{tool_id}",
            members: [tool_id, tool_name, tool_status, timestamp],
            words: "tool created",
            summary: "a tool was added to NEMO",
            family: ["tool_deleted"],
        },
        ToolUpdated(ToolInfo) {
            kind: "tool_updated",
            topic: "nemo/tools/{tool_id}",
            members: [tool_id, tool_name, tool_status, timestamp],
            words: "tool updated",
            summary: "a tool's configuration changed",
            family: [],
        },
        AreaCreated(Area) {
            kind: "area_created",
            topic: "nemo/areas/{area_id}",
            members: [area_id, area_name, area_requires_reservation, timestamp],
            words: "area created",
            summary: "an area was added",
            family: ["area_*"],
        },
        AreaUpdated(Area) {
            kind: "area_updated",
            topic: "nemo/areas/{area_id}",
            members: [area_id, area_name, area_requires_reservation, timestamp],
            words: "area updated",
            summary: "an area changed",
            family: [],
        },
        ReservationCreated(Reservation) {
            kind: "reservation_created",
            topic: "nemo/reservations/{reservation_id}",
            members: [reservation_id, user_id, user_name, start_time, end_time, timestamp],
            words: "reservation created",
            summary: "a reservation was made",
            family: ["reservation_*"],
        },
        ReservationUpdated(Reservation) {
            kind: "reservation_updated",
            topic: "nemo/reservations/{reservation_id}",
            members: [reservation_id, user_id, user_name, start_time, end_time, timestamp],
            words: "reservation updated",
            summary: "a reservation changed",
            family: [],
        },
        AreaAccess(AreaAccess) {
            kind: "area_access",
            topic: "nemo/area_access/{access_id}",
            members: [access_id, user_id, user_name, area_id, area_name, access_time, timestamp],
            words: "ACCESS",
            summary: "someone entered an area",
            family: [],
        },
    }
}

impl NemoEvent {
    /// Every kind with a typed variant, as written in `"event"`: the kinds of
    /// [`EVENT_KINDS`](crate::kinds::EVENT_KINDS), in the same order.
    ///
    /// ```
    /// use nemo_events::NemoEvent;
    /// assert_eq!(NemoEvent::KNOWN_KINDS.len(), nemo_events::kinds::EVENT_KINDS.len());
    /// assert!(NemoEvent::KNOWN_KINDS.contains(&"area_access"));
    /// ```
    pub const KNOWN_KINDS: &'static [&'static str] = KNOWN;

    /// Parses an event payload, leniently (see the [module docs](crate::event)).
    ///
    /// # Errors
    ///
    /// [`EventError::NotJson`], [`EventError::NotAnObject`], [`EventError::MissingKind`] when
    /// there is no `"event"`, [`EventError::WrongType`] when `"event"` is not a string. Never
    /// panics; nesting deeper than 128 levels is `NotJson`.
    ///
    /// ```
    /// use nemo_events::NemoEvent;
    ///
    /// let ev = NemoEvent::parse(r#"{"event": "tool_enabled", "tool_id": "12"}"#)?;
    /// // A mistyped member is kept, not rejected:
    /// assert_eq!(ev.tool_id(), None);
    /// assert_eq!(ev.to_json(), r#"{"event": "tool_enabled", "tool_id": "12"}"#);
    /// # Ok::<(), nemo_events::EventError>(())
    /// ```
    pub fn parse(payload: &str) -> Result<NemoEvent, EventError> {
        let entries = parse_object(payload).map_err(|e| match e {
            ObjectError::NotJson(m) => EventError::NotJson(m),
            ObjectError::NotAnObject => EventError::NotAnObject,
        })?;
        // Like Python's json.loads, the last duplicate wins.
        let kind_raw = entries
            .iter()
            .rev()
            .find(|(k, _)| k == "event")
            .map(|(_, v)| *v)
            .ok_or(EventError::MissingKind)?;
        let kind: String = if kind_raw.get().starts_with('"') {
            serde_json::from_str(kind_raw.get()).map_err(|e| EventError::NotJson(e.to_string()))?
        } else {
            return Err(EventError::WrongType {
                field: "event",
                expected: "a string",
            });
        };
        Ok(NemoEvent::from_entries(kind, entries))
    }

    /// The payload as Python's `json.dumps` writes it, members in source order (or, for
    /// fields set in code, in the plugin's order after the source members).
    ///
    /// ```
    /// use nemo_events::{NemoEvent, UnknownEvent};
    ///
    /// let ev = NemoEvent::Unknown(UnknownEvent { kind: "ping".into(), ..Default::default() });
    /// assert_eq!(ev.to_json(), r#"{"event": "ping"}"#);
    /// ```
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(192);
        let kind = self.kind();
        self.write_into(kind, &mut out);
        out
    }

    /// The `"event"` string, e.g. `"tool_enabled"`.
    ///
    /// ```
    /// let ev = nemo_events::NemoEvent::ToolCreated(Default::default());
    /// assert_eq!(ev.kind(), "tool_created");
    /// ```
    pub fn kind(&self) -> &str {
        match self {
            NemoEvent::Unknown(u) => &u.kind,
            typed => typed.typed_kind().unwrap_or_default(),
        }
    }

    /// The row of [`EVENT_KINDS`](crate::kinds::EVENT_KINDS) of this event's kind: `None` for
    /// [`NemoEvent::Unknown`], whatever its kind (see [`EventKind::family_of`] for kinds of a
    /// known family).
    ///
    /// ```
    /// let ev = nemo_events::NemoEvent::parse(r#"{"event": "tool_enabled", "tool_id": 1}"#)?;
    /// let row = ev.kind_info().expect("a typed kind");
    /// assert_eq!((row.topic, row.words), ("nemo/tools/{tool_id}/enabled", "IN USE"));
    /// # Ok::<(), nemo_events::EventError>(())
    /// ```
    pub fn kind_info(&self) -> Option<&'static EventKind> {
        self.typed_kind().and_then(EventKind::get)
    }

    /// The members not modelled by the variant's struct.
    ///
    /// ```
    /// let ev = nemo_events::NemoEvent::parse(r#"{"event": "area_updated", "site": "B"}"#)?;
    /// assert_eq!(ev.extra().get_as::<String>("site").as_deref(), Some("B"));
    /// # Ok::<(), nemo_events::EventError>(())
    /// ```
    pub fn extra(&self) -> &Extra {
        self.extra_ref()
    }

    /// The tool this event is about (`tool_id`), if any.
    ///
    /// Area, reservation and area-access events have no typed `tool_id`; for them and for
    /// unknown kinds an extra `tool_id` member is used if it is a non-negative integer.
    ///
    /// ```
    /// let ev = nemo_events::NemoEvent::parse(r#"{"event": "tool_enabled", "tool_id": 12}"#)?;
    /// assert_eq!(ev.tool_id(), Some(12));
    /// # Ok::<(), nemo_events::EventError>(())
    /// ```
    pub fn tool_id(&self) -> Option<u64> {
        let typed = match self {
            NemoEvent::ToolEnabled(s) | NemoEvent::ToolDisabled(s) => s.tool_id,
            NemoEvent::ToolOperational(s) | NemoEvent::ToolNonOperational(s) => s.tool_id,
            NemoEvent::TaskCreated(s) | NemoEvent::TaskUpdated(s) | NemoEvent::TaskShutdown(s) => {
                s.tool_id
            }
            NemoEvent::ToolCreated(s) | NemoEvent::ToolUpdated(s) => s.tool_id,
            _ => None,
        };
        typed.or_else(|| {
            self.extra()
                .get("tool_id")
                .and_then(|v| u64::from_json(v.get()))
        })
    }

    /// The tool's display name (`tool_name`), if any; extra members are consulted like
    /// [`NemoEvent::tool_id`] does.
    ///
    /// ```
    /// let ev = nemo_events::NemoEvent::parse(r#"{"event": "tool_updated", "tool_name": "S\u00fcss MA6"}"#)?;
    /// assert_eq!(ev.tool_name(), Some("Süss MA6"));
    /// # Ok::<(), nemo_events::EventError>(())
    /// ```
    pub fn tool_name(&self) -> Option<&str> {
        let typed = match self {
            NemoEvent::ToolEnabled(s) | NemoEvent::ToolDisabled(s) => s.tool_name.as_deref(),
            NemoEvent::ToolOperational(s) | NemoEvent::ToolNonOperational(s) => {
                s.tool_name.as_deref()
            }
            NemoEvent::TaskCreated(s) | NemoEvent::TaskUpdated(s) | NemoEvent::TaskShutdown(s) => {
                s.tool_name.as_deref()
            }
            NemoEvent::ToolCreated(s) | NemoEvent::ToolUpdated(s) => s.tool_name.as_deref(),
            _ => None,
        };
        typed.or_else(|| self.extra().get_str("tool_name"))
    }

    /// The user's full name (`user_name`), if any; extra members are consulted like
    /// [`NemoEvent::tool_id`] does.
    ///
    /// ```
    /// let ev = nemo_events::NemoEvent::parse(r#"{"event": "tool_enabled", "user_name": "Jos\u00e9"}"#)?;
    /// assert_eq!(ev.user_name(), Some("José"));
    /// # Ok::<(), nemo_events::EventError>(())
    /// ```
    pub fn user_name(&self) -> Option<&str> {
        let typed = match self {
            NemoEvent::ToolEnabled(s) | NemoEvent::ToolDisabled(s) => s.user_name.as_deref(),
            NemoEvent::ReservationCreated(s) | NemoEvent::ReservationUpdated(s) => {
                s.user_name.as_deref()
            }
            NemoEvent::AreaAccess(s) => s.user_name.as_deref(),
            _ => None,
        };
        typed.or_else(|| self.extra().get_str("user_name"))
    }

    /// When the event happened, if the payload says so in a readable way.
    ///
    /// | kind | field |
    /// |---|---|
    /// | `tool_enabled` | `start_time` |
    /// | `tool_disabled` | `end_time` (else `start_time`) |
    /// | `tool_operational`, `tool_non_operational`, `tool_*`, `area_*`, `reservation_*` | `timestamp` |
    /// | `task_*` | `updated_at` (else `created_at`) |
    /// | `area_access` | `access_time` (else `timestamp`) |
    /// | unknown | `timestamp` |
    ///
    /// A boolean `timestamp` (a plugin bug) or unreadable text gives `None`.
    ///
    /// ```
    /// let ev = nemo_events::NemoEvent::parse(r#"{"event": "reservation_created", "start_time": "2025-10-17T10:48:14+00:00", "timestamp": true}"#)?;
    /// assert_eq!(ev.occurred_at(), None);
    /// # Ok::<(), nemo_events::EventError>(())
    /// ```
    pub fn occurred_at(&self) -> Option<OffsetDateTime> {
        fn dt(t: &Option<EventTime>) -> Option<OffsetDateTime> {
            t.as_ref().and_then(EventTime::datetime)
        }
        match self {
            NemoEvent::ToolEnabled(s) => dt(&s.start_time),
            NemoEvent::ToolDisabled(s) => dt(&s.end_time).or_else(|| dt(&s.start_time)),
            NemoEvent::ToolOperational(s) | NemoEvent::ToolNonOperational(s) => dt(&s.timestamp),
            NemoEvent::TaskCreated(s) | NemoEvent::TaskUpdated(s) | NemoEvent::TaskShutdown(s) => {
                dt(&s.updated_at).or_else(|| dt(&s.created_at))
            }
            NemoEvent::ToolCreated(s) | NemoEvent::ToolUpdated(s) => dt(&s.timestamp),
            NemoEvent::AreaCreated(s) | NemoEvent::AreaUpdated(s) => dt(&s.timestamp),
            NemoEvent::ReservationCreated(s) | NemoEvent::ReservationUpdated(s) => dt(&s.timestamp),
            NemoEvent::AreaAccess(s) => dt(&s.access_time).or_else(|| dt(&s.timestamp)),
            NemoEvent::Unknown(u) => u
                .extra
                .get("timestamp")
                .and_then(|v| EventTime::from_json_text(v.get()))
                .and_then(|t| t.datetime()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_interleaved_extras_survive() -> Result<(), EventError> {
        let src = r#"{"tool_id": 3, "x": [1,2], "event": "tool_enabled", "user_name": null, "tool_name": 5, "start_time": 1760623352}"#;
        let ev = NemoEvent::parse(src)?;
        let NemoEvent::ToolEnabled(u) = &ev else {
            panic!("wrong variant")
        };
        assert_eq!(u.tool_id, Some(3));
        assert_eq!(u.tool_name, None);
        assert_eq!(u.user_name, None);
        assert_eq!(
            u.start_time
                .as_ref()
                .and_then(EventTime::datetime)
                .map(|t| t.unix_timestamp()),
            Some(1760623352)
        );
        assert_eq!(
            ev.to_json(),
            r#"{"tool_id": 3, "x": [1,2], "event": "tool_enabled", "user_name": null, "tool_name": 5, "start_time": 1760623352}"#
        );
        Ok(())
    }

    #[test]
    fn setting_a_field_replaces_the_mistyped_raw_in_place() -> Result<(), EventError> {
        let ev = NemoEvent::parse(
            r#"{"event": "tool_enabled", "tool_id": "12", "user_name": null, "z": 1}"#,
        )?;
        let NemoEvent::ToolEnabled(mut u) = ev else {
            panic!("wrong variant")
        };
        u.tool_id = Some(12);
        u.user_name = Some("A".into());
        u.usage_id = Some(9);
        let out = NemoEvent::ToolEnabled(u).to_json();
        assert_eq!(
            out,
            r#"{"event": "tool_enabled", "tool_id": 12, "user_name": "A", "z": 1, "usage_id": 9}"#
        );
        Ok(())
    }

    #[test]
    fn unknown_kind_is_kept() -> Result<(), EventError> {
        let src = r#"{"event": "x", "a": {"b": [1, 2.50, "\u00e9"]}, "event_extra": null}"#;
        let ev = NemoEvent::parse(src)?;
        assert_eq!(ev.kind(), "x");
        assert_eq!(ev.to_json(), src);
        Ok(())
    }

    #[test]
    fn accessors_read_escaped_extras_and_equality_ignores_layout() -> Result<(), EventError> {
        let ev = NemoEvent::parse(
            r#"{"event": "reservation_updated", "tool_id": 7, "tool_name": "S\u00fcss", "user_name": null}"#,
        )?;
        assert_eq!(
            (ev.tool_id(), ev.tool_name(), ev.user_name()),
            (Some(7), Some("Süss"), None)
        );
        let NemoEvent::ReservationUpdated(mut r) = ev else {
            panic!("wrong variant")
        };
        r.user_name = Some("A".into());
        let ev = NemoEvent::ReservationUpdated(r);
        assert_eq!(NemoEvent::parse(&ev.to_json())?, ev);
        assert_eq!(
            NemoEvent::parse(r#"{"event": "area_updated", "area_id": null}"#)?,
            NemoEvent::parse(r#"{"area_id": null, "event": "area_updated"}"#)?
        );
        Ok(())
    }

    #[test]
    fn errors() {
        assert!(matches!(NemoEvent::parse("{"), Err(EventError::NotJson(_))));
        assert!(matches!(
            NemoEvent::parse("{} x"),
            Err(EventError::NotJson(_))
        ));
        assert_eq!(NemoEvent::parse("\"s\""), Err(EventError::NotAnObject));
        assert_eq!(NemoEvent::parse("null"), Err(EventError::NotAnObject));
        assert_eq!(
            NemoEvent::parse(r#"{"Event": "tool_enabled"}"#),
            Err(EventError::MissingKind)
        );
        assert_eq!(
            NemoEvent::parse(r#"{"event": null}"#),
            Err(EventError::WrongType {
                field: "event",
                expected: "a string"
            })
        );
    }
}
