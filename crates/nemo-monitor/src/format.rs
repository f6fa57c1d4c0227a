//! The human one-line format: one aligned line per message.
//!
//! ```text
//! 14:02:32  Zeiss Supra 55 SEM #1              IN USE by Jane Doe
//! 14:12:26  Zeiss Supra 55 SEM #1              FREE after 9 min 54 s (Jane Doe)
//! 09:48:23  Angstrom Evaporator #23            task #77 SHUTDOWN: "Chamber won't pump below 1e-5 Torr" (force shutdown)
//! 09:48:24  Angstrom Evaporator #23            DOWN: "Chamber won't pump below 1e-5 Torr"
//! 10:54:54  Angstrom Evaporator #23            BACK UP after 1 h 6 min  [retained]  [HMAC ✓]
//! ```
//!
//! Columns: receive time (local, or UTC with [`FormatOptions::utc`]), the subject
//! (tool name and id, area, reservation, or the topic), then what happened in
//! words, then tags (`[retained]`, `[HMAC ✓]`/`[HMAC ✗]` when a key is set).
//! Unknown kinds fall back to compact one-line JSON, non-JSON and binary payloads
//! are described, and everything shown is stripped of control characters (a tool
//! name cannot move the cursor) and truncated with a visible marker.
//!
//! The formatter remembers a little state between lines — when a usage started,
//! when a tool went down, its last problem description — so that "FREE after
//! 1 h 12 min" and `DOWN: "reason"` can be said even though a single payload
//! does not carry that information.

use std::collections::HashMap;
use std::sync::Mutex;

use nemo_events::kinds::EventKind;
use serde_json::Value;
use time::OffsetDateTime;
pub use time::UtcOffset;

use crate::message::{self, Body, Signature};

/// Width of the subject column, in terminal cells.
const SUBJECT_WIDTH: usize = 34;
/// Longest free text (descriptions, names) shown inside a line, in characters.
const TEXT_MAX: usize = 80;
/// Longest fallback JSON / raw text shown, in characters.
const RAW_MAX: usize = 240;
/// Bound on remembered tools, so hostile input cannot grow memory forever.
const MEMORY_MAX: usize = 10_000;

/// How lines are rendered.
#[derive(Clone, Default)]
pub struct FormatOptions {
    /// Emit ANSI colours.
    pub color: bool,
    /// HMAC key: when set, every line says whether its signature checked out.
    pub hmac_key: Option<Vec<u8>>,
    /// Show times in UTC instead of the local time zone.
    pub utc: bool,
}

impl std::fmt::Debug for FormatOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FormatOptions")
            .field("color", &self.color)
            .field("hmac_key", &self.hmac_key.as_ref().map(|_| "<redacted>"))
            .field("utc", &self.utc)
            .finish()
    }
}

/// ANSI styling that can be switched off.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paint {
    pub on: bool,
}

impl Paint {
    pub const DIM: &'static str = "2";
    pub const BOLD: &'static str = "1";
    pub const RED: &'static str = "1;31";
    pub const GREEN: &'static str = "32";
    pub const YELLOW: &'static str = "33";
    pub const BLUE: &'static str = "34";
    pub const MAGENTA: &'static str = "35";
    pub const CYAN: &'static str = "36";

    pub fn paint(self, code: &str, text: &str) -> String {
        if self.on && !text.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

#[derive(Debug, Default)]
struct Memory {
    /// tool id -> (usage id, start time)
    started: HashMap<String, (Option<String>, OffsetDateTime)>,
    /// tool id -> time it went down
    down_since: HashMap<String, OffsetDateTime>,
    /// tool id -> last problem description
    problem: HashMap<String, String>,
}

impl Memory {
    fn bound(&mut self) {
        if self.started.len() > MEMORY_MAX {
            self.started.clear();
        }
        if self.down_since.len() > MEMORY_MAX {
            self.down_since.clear();
        }
        if self.problem.len() > MEMORY_MAX {
            self.problem.clear();
        }
    }
}

/// Turns messages into human lines. Cheap to share (`&self` methods, internally
/// locked memory).
///
/// ```
/// use nemo_monitor::{FormatOptions, Formatter};
/// let f = Formatter::new(FormatOptions { color: false, hmac_key: None, utc: true });
/// let at = time::macros::datetime!(2025-10-16 14:02:33 UTC);
/// let line = f.line(
///     "nemo/tools/1/enabled",
///     br#"{"event": "tool_enabled", "tool_id": 1, "tool_name": "Zeiss Supra 55 SEM", "user_name": "Jane Doe"}"#,
///     false,
///     at,
/// );
/// assert_eq!(line, "14:02:33  Zeiss Supra 55 SEM #1               IN USE by Jane Doe");
/// ```
#[derive(Debug)]
pub struct Formatter {
    opts: FormatOptions,
    offset: UtcOffset,
    memory: Mutex<Memory>,
}

/// The local UTC offset, or UTC when it cannot be determined (on Unix the `time`
/// crate refuses once the process has several threads; call this early).
pub fn local_offset() -> UtcOffset {
    UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC)
}

impl Formatter {
    /// A formatter. Times are shown in the local zone as far as it can be
    /// determined now (see [`local_offset`]), or UTC with `opts.utc`.
    pub fn new(opts: FormatOptions) -> Self {
        let offset = if opts.utc {
            UtcOffset::UTC
        } else {
            local_offset()
        };
        Formatter::with_offset(opts, offset)
    }

    /// A formatter showing times at a fixed offset (ignores `opts.utc`).
    pub fn with_offset(opts: FormatOptions, offset: UtcOffset) -> Self {
        Formatter {
            opts,
            offset,
            memory: Mutex::new(Memory::default()),
        }
    }

    /// The options this formatter was built with.
    pub fn options(&self) -> &FormatOptions {
        &self.opts
    }

    /// The offset times are shown at.
    pub fn offset(&self) -> UtcOffset {
        self.offset
    }

    /// Check a payload's HMAC envelope against the configured key.
    pub fn signature(&self, payload: &[u8]) -> Signature {
        message::decode(payload, self.opts.hmac_key.as_deref()).signature
    }

    /// One line (no trailing newline) for a message received at `at`.
    pub fn line(&self, topic: &str, payload: &[u8], retain: bool, at: OffsetDateTime) -> String {
        let parts = self.parts(topic, payload, retain, at);
        let p = Paint {
            on: self.opts.color,
        };
        let time = p.paint(Paint::DIM, &clock(at, self.offset));
        let subject = pad(&parts.subject, SUBJECT_WIDTH);
        let subject = p.paint(Paint::BOLD, &subject);
        let what = p.paint(parts.color, &parts.what);
        let mut line = format!("{time}  {subject}  {what}");
        for (tag, code) in &parts.tags {
            line.push_str("  ");
            line.push_str(&p.paint(code, tag));
        }
        line
    }

    /// The pieces of a line, uncoloured (used by the web feed too).
    pub(crate) fn parts(
        &self,
        topic: &str,
        payload: &[u8],
        retain: bool,
        at: OffsetDateTime,
    ) -> Parts {
        let decoded = message::decode(payload, self.opts.hmac_key.as_deref());
        let info = message::topic_info(topic);
        let mut parts = match &decoded.body {
            Body::Json(v) => self.describe_json(topic, &info, v, at),
            Body::Empty => Parts::plain(clean(topic, SUBJECT_WIDTH), "(empty payload)".into()),
            Body::Text(text) => Parts::plain(
                clean(topic, SUBJECT_WIDTH),
                format!(
                    "non-JSON payload, {} bytes: \"{}\"",
                    decoded.len,
                    clean_raw(text, RAW_MAX)
                ),
            ),
            Body::Binary(len) => Parts::plain(
                clean(topic, SUBJECT_WIDTH),
                format!("binary payload, {len} bytes (not UTF-8)"),
            ),
        };
        if retain {
            parts.tags.push(("[retained]".into(), Paint::DIM));
        }
        match decoded.signature {
            Signature::Valid => parts.tags.push(("[HMAC ✓]".into(), Paint::GREEN)),
            Signature::Invalid => parts.tags.push(("[HMAC ✗]".into(), Paint::RED)),
            Signature::Unchecked => parts.tags.push(("[signed]".into(), Paint::DIM)),
            Signature::Unsigned if self.opts.hmac_key.is_some() => {
                parts.tags.push(("[HMAC ✗ unsigned]".into(), Paint::RED))
            }
            Signature::Unsigned => {}
        }
        parts.signature = decoded.signature;
        parts
    }

    fn describe_json(
        &self,
        topic: &str,
        info: &message::TopicInfo,
        v: &Value,
        at: OffsetDateTime,
    ) -> Parts {
        let kind = message::event_kind(info, Some(v));
        let tool = message::tool_id(info, Some(v));
        let tool_name = message::text_field(v, "tool_name");
        let user = message::text_field(v, "user_name").map(|u| clean(&u, TEXT_MAX));
        let tool_subject = || subject_for("", tool_name.as_deref(), tool.as_deref(), "tool");
        // The retained per-tool state document (`…/tools/{id}/state`): the tool as the bridge
        // last saw it, not a new event (it carries the event's kind too, but must not read as
        // a second `tool_enabled`).
        if info.family.as_deref() == Some("tools")
            && info.suffix.as_deref() == Some("state")
            && let Some(state) = v.get("state").and_then(Value::as_str)
        {
            let since = message::time_field(v, "since")
                .map(|t| format!(" since {}", date_clock(t, self.offset)))
                .unwrap_or_default();
            let what = match state {
                "in_use" => format!("state: IN USE by {}{since}", user.as_deref().unwrap_or("?")),
                "idle" => "state: idle".to_owned(),
                "down" => format!("state: DOWN{since}"),
                "up" => "state: operational".to_owned(),
                other => format!("state: {}", clean(other, TEXT_MAX)),
            };
            return Parts::new(tool_subject(), what, Paint::DIM);
        }
        let Ok(mut mem) = self.memory.lock() else {
            return Parts::plain(clean(topic, SUBJECT_WIDTH), compact_json(v));
        };
        mem.bound();
        let kind = kind.as_deref().unwrap_or("");
        // The row of nemo-events' table of kinds this kind is (or is treated like: `tool_deleted`
        // like `tool_created`, `task_*` like `task_created`): the words come from there.
        let row = EventKind::family_of(kind);
        let words = row.map(|r| words(r, kind)).unwrap_or_default();
        match row.map(|r| r.kind) {
            Some("tool_enabled") => {
                let start = message::time_field(v, "start_time").unwrap_or(at);
                if let Some(id) = &tool {
                    mem.started
                        .insert(id.clone(), (message::text_field(v, "usage_id"), start));
                }
                Parts::new(
                    tool_subject(),
                    format!("{words} by {}", user.as_deref().unwrap_or("someone")),
                    Paint::YELLOW,
                )
            }
            Some("tool_disabled") => {
                let usage = message::text_field(v, "usage_id");
                let remembered = tool
                    .as_ref()
                    .and_then(|id| mem.started.remove(id))
                    .filter(|(u, _)| u.is_none() || usage.is_none() || *u == usage)
                    .map(|(_, start)| start);
                let start = remembered.or_else(|| message::time_field(v, "start_time"));
                let end = message::time_field(v, "end_time").unwrap_or(at);
                let mut what = words;
                if let Some(start) = start {
                    what.push_str(" after ");
                    what.push_str(&human_duration(end - start));
                }
                if let Some(u) = &user {
                    what.push_str(&format!(" ({u})"));
                }
                Parts::new(tool_subject(), what, Paint::GREEN)
            }
            Some("tool_non_operational") => {
                let since = message::time_field(v, "timestamp").unwrap_or(at);
                let mut what = words;
                if let Some(id) = &tool {
                    mem.down_since.insert(id.clone(), since);
                    if let Some(problem) = mem.problem.get(id) {
                        what.push_str(&format!(": \"{problem}\""));
                    }
                }
                Parts::new(tool_subject(), what, Paint::RED)
            }
            Some("tool_operational") => {
                let now = message::time_field(v, "timestamp").unwrap_or(at);
                let mut what = words;
                if let Some(since) = tool.as_ref().and_then(|id| mem.down_since.remove(id)) {
                    what.push_str(" after ");
                    what.push_str(&human_duration(now - since));
                }
                Parts::new(tool_subject(), what, Paint::GREEN)
            }
            Some(row_kind @ ("task_created" | "task_updated" | "task_shutdown")) => {
                let task = message::text_field(v, "task_id")
                    .map(|t| format!("task #{}", clean(&t, 20)))
                    .unwrap_or_else(|| "task".into());
                let mut what = format!("{task} {words}");
                let desc = message::text_field(v, "problem_description")
                    .map(|d| clean(&d, TEXT_MAX))
                    .filter(|d| !d.is_empty());
                if let Some(d) = &desc {
                    what.push_str(&format!(": \"{d}\""));
                    if let Some(id) = &tool {
                        mem.problem.insert(id.clone(), d.clone());
                    }
                }
                let flags: Vec<&str> = [
                    ("force_shutdown", "force shutdown"),
                    ("safety_hazard", "SAFETY HAZARD"),
                    ("cancelled", "cancelled"),
                    ("resolved", "resolved"),
                ]
                .iter()
                .filter(|(field, _)| message::bool_field(v, field) == Some(true))
                .map(|(_, word)| *word)
                .collect();
                if !flags.is_empty() {
                    what.push_str(&format!(" ({})", flags.join(", ")));
                }
                let color = if row_kind == "task_shutdown" {
                    Paint::RED
                } else {
                    Paint::MAGENTA
                };
                Parts::new(tool_subject(), what, color)
            }
            Some("tool_created" | "tool_updated") => {
                let mut what = words;
                if let Some(status) = message::bool_field(v, "tool_status") {
                    what.push_str(if status {
                        " (status on)"
                    } else {
                        " (status off)"
                    });
                }
                Parts::new(tool_subject(), what, Paint::BLUE)
            }
            Some("area_access") => {
                let subject = subject_for(
                    "area ",
                    message::text_field(v, "area_name").as_deref(),
                    message::text_field(v, "area_id").as_deref(),
                    "area",
                );
                let what = format!("{words} by {}", user.as_deref().unwrap_or("someone"));
                Parts::new(subject, what, Paint::CYAN)
            }
            Some("area_created" | "area_updated") => {
                let subject = subject_for(
                    "area ",
                    message::text_field(v, "area_name").as_deref(),
                    message::text_field(v, "area_id")
                        .or_else(|| info.id.clone())
                        .as_deref(),
                    "area",
                );
                let mut what = words;
                if let Some(req) = message::bool_field(v, "area_requires_reservation") {
                    what.push_str(if req {
                        " (reservation required)"
                    } else {
                        " (no reservation required)"
                    });
                }
                Parts::new(subject, what, Paint::BLUE)
            }
            Some("reservation_created" | "reservation_updated") => {
                let id = message::text_field(v, "reservation_id").or_else(|| info.id.clone());
                let subject = match id {
                    Some(id) => format!("reservation #{}", clean(&id, 20)),
                    None => "reservation".into(),
                };
                let mut what = words;
                if let Some(u) = &user {
                    what.push_str(&format!(" for {u}"));
                }
                let start = message::time_field(v, "start_time");
                let end = message::time_field(v, "end_time");
                if let (Some(s), Some(e)) = (start, end) {
                    let (from, to) = (date_clock(s, self.offset), date_clock(e, self.offset));
                    // Same day: "2025-10-17 10:48 – 11:48".
                    let to = match (from.split_once(' '), to.split_once(' ')) {
                        (Some((d1, _)), Some((d2, t2))) if d1 == d2 => t2.to_owned(),
                        _ => to,
                    };
                    what.push_str(&format!(", {from} – {to}"));
                }
                Parts::new(clean(&subject, SUBJECT_WIDTH), what, Paint::CYAN)
            }
            _ if info.family.as_deref() == Some("bridge") => {
                let state = message::text_field(v, "state")
                    .map(|s| clean(&s, 20))
                    .unwrap_or_else(|| "?".into());
                let mut what = format!("bridge {}", state.to_uppercase());
                if let Some(since) = message::time_field(v, "since") {
                    what.push_str(&format!(" since {}", date_clock(since, self.offset)));
                }
                let color = if state == "online" {
                    Paint::GREEN
                } else {
                    Paint::RED
                };
                Parts::new("bridge".into(), what, color)
            }
            _ => {
                let subject = if tool.is_some() && tool_name.is_some() {
                    tool_subject()
                } else {
                    clean(topic, SUBJECT_WIDTH)
                };
                Parts::new(subject, compact_json(v), Paint::DIM)
            }
        }
    }
}

/// What happened, in words: the table's words of `row` for its own kind; for another kind of
/// the row's family, the row's words with the row's verb (the part after the first `_`)
/// replaced by the kind's (`tool_deleted` in `tool_created`'s family: "tool deleted";
/// `task_reopened`: "reopened").
fn words(row: &EventKind, kind: &str) -> String {
    if row.kind == kind {
        return row.words.to_owned();
    }
    let verb = |k: &'static str| k.split_once('_').map_or(k, |(_, v)| v);
    let own = verb(row.kind);
    let theirs = clean(kind.split_once('_').map_or(kind, |(_, v)| v), 20);
    match row.words.strip_suffix(own) {
        Some(head) => format!("{head}{theirs}"),
        None => theirs,
    }
}

/// The uncoloured pieces of one line.
#[derive(Debug, Clone)]
pub(crate) struct Parts {
    pub subject: String,
    pub what: String,
    pub color: &'static str,
    pub tags: Vec<(String, &'static str)>,
    pub signature: Signature,
}

impl Parts {
    fn new(subject: String, what: String, color: &'static str) -> Parts {
        Parts {
            subject,
            what,
            color,
            tags: Vec::new(),
            signature: Signature::Unsigned,
        }
    }
    fn plain(subject: String, what: String) -> Parts {
        Parts::new(subject, what, Paint::DIM)
    }
}

fn subject_for(prefix: &str, name: Option<&str>, id: Option<&str>, noun: &str) -> String {
    let id = id.map(|i| clean(i, 20));
    let id_part = id.as_ref().map(|i| format!(" #{i}")).unwrap_or_default();
    match name.filter(|n| !n.is_empty()) {
        Some(name) => {
            let room = SUBJECT_WIDTH.saturating_sub(prefix.len() + display_width(&id_part));
            format!("{prefix}{}{id_part}", clean(name, room.max(8)))
        }
        None => format!("{noun}{id_part}"),
    }
}

/// `HH:MM:SS` at the given offset.
pub(crate) fn clock(at: OffsetDateTime, offset: UtcOffset) -> String {
    let t = at.to_offset(offset);
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

/// `YYYY-MM-DD HH:MM` at the given offset.
pub(crate) fn date_clock(at: OffsetDateTime, offset: UtcOffset) -> String {
    let t = at.to_offset(offset);
    format!(
        "{}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// A duration the way people say it: `42 s`, `9 min 54 s`, `1 h 12 min`; over a day in days
/// only (`46 d`: a tool in use since October is not "1104 h").
///
/// ```
/// use nemo_monitor::format::human_duration;
/// assert_eq!(human_duration(time::Duration::seconds(4320)), "1 h 12 min");
/// assert_eq!(human_duration(time::Duration::days(46) + time::Duration::hours(5)), "46 d");
/// assert_eq!(human_duration(time::Duration::seconds(594)), "9 min 54 s");
/// assert_eq!(human_duration(time::Duration::seconds(-5)), "0 s");
/// ```
pub fn human_duration(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    let (days, hours, mins, secs) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if days > 0 {
        format!("{days} d")
    } else if hours > 0 {
        format!("{hours} h {mins} min")
    } else if mins > 0 {
        format!("{mins} min {secs} s")
    } else {
        format!("{secs} s")
    }
}

/// Compact one-line JSON, truncated.
fn compact_json(v: &Value) -> String {
    let text = serde_json::to_string(v).unwrap_or_default();
    clean_raw(&text, RAW_MAX)
}

/// Strip control characters and cut to `max` cells with an ellipsis.
pub(crate) fn clean(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut width = 0;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let c = if c.is_control() { ' ' } else { c };
        let w = char_width(c);
        if width + w > max.saturating_sub(1) && (width + w > max || chars.peek().is_some()) {
            out.push('…');
            return out;
        }
        width += w;
        out.push(c);
    }
    out
}

/// Like [`clean`] but for raw payload text: says how many bytes were cut.
fn clean_raw(s: &str, max: usize) -> String {
    let short = clean(s, max);
    if short.ends_with('…') && !s.ends_with('…') {
        let kept = short.len() - '…'.len_utf8();
        let dropped = s.len().saturating_sub(kept);
        format!("{short}[+{dropped} bytes]")
    } else {
        short
    }
}

/// Pad (or cut) to exactly `width` terminal cells.
pub(crate) fn pad(s: &str, width: usize) -> String {
    let cut = clean(s, width);
    let w = display_width(&cut);
    format!("{cut}{}", " ".repeat(width.saturating_sub(w)))
}

/// Approximate terminal width: East Asian wide characters count 2.
pub(crate) fn display_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

fn char_width(c: char) -> usize {
    let u = c as u32;
    let wide = matches!(u,
        0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF |
        0x4E00..=0x9FFF | 0xA000..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF |
        0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x1F300..=0x1F64F |
        0x1F900..=0x1F9FF | 0x20000..=0x3FFFD);
    if wide { 2 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_strips_escapes_and_truncates() {
        assert_eq!(clean("a\x1b[2Jb", 20), "a [2Jb");
        assert_eq!(clean("abcdef", 4), "abc…");
        assert_eq!(clean("abcd", 4), "abcd");
        assert_eq!(display_width("李雷"), 4);
        assert_eq!(pad("李雷", 6), "李雷  ");
    }

    #[test]
    fn raw_truncation_has_a_marker() {
        let long = "x".repeat(1000);
        let out = clean_raw(&long, 10);
        assert_eq!(out, "xxxxxxxxx…[+991 bytes]");
    }
}
