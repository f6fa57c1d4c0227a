//! The tool board: the current state of every tool seen, built from the stream.
//!
//! Relays republish tool state as retained messages, so a freshly subscribed
//! monitor receives the last known state first and the live stream after it; the
//! board simply folds every message into per-tool state, in arrival order:
//!
//! | event                       | effect                                      |
//! |-----------------------------|---------------------------------------------|
//! | `tool_enabled`              | in use by `user_name` since `start_time`    |
//! | `tool_disabled`             | idle since `end_time` (remembers the last user) |
//! | `tool_non_operational`      | down since `timestamp`                      |
//! | `tool_operational`          | up again                                    |
//! | `task_created/updated/shutdown` | open task, or closed when resolved/cancelled |
//! | `tool_created/updated`      | name (and nothing else) refreshed           |
//! | state document (`…/tools/{id}/state`, retained) | in use / idle / down / up as it says, since its `since` |
//!
//! The bridge publishes the retained state documents by default (`topics.state_topics`), so a
//! monitor started after the events were delivered — terminal board, web dashboard and
//! `/api/state` alike — shows every tool's current state at once, not an empty board.
//!
//! Times come from the event itself (`start_time`, `end_time`, `timestamp`, the state
//! document's `since`); only when a message carries none is the receive time used, and then it
//! is marked (`since_received`, `idle_since_received`, shown with a leading `~`).
//!
//! Messages on the bridge status topic (default `nemo/bridge/status`) update the
//! bridge line. The bridge's queue figures, published beside its status (`nemo/bridge/queue`),
//! are read and verified by the caller (the `monitor` program uses `nemo_mqtt::QueueFigures`)
//! and handed in with [`Board::set_queue_stats`], or [`Board::reject_queue_figures`] when a
//! document does not verify. Anything else is ignored by the board (the live feed still shows
//! it).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use time::{OffsetDateTime, UtcOffset};

use crate::format::{Paint, clean, clock, date_clock, human_duration, pad};
use crate::message::{self, Body, Signature};

/// Default topic of the bridge's retained status message.
pub const DEFAULT_STATUS_TOPIC: &str = "nemo/bridge/status";

/// Bound on the number of tools tracked (hostile input cannot grow memory).
const MAX_TOOLS: usize = 10_000;

/// Who is using a tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// The user's name as NEMO sent it.
    pub user: String,
    /// When the usage started (`start_time`, else the receive time).
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// `since` is the receive time: the message carried no time of its own.
    pub since_received: bool,
}

/// A task that is not resolved or cancelled yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenTask {
    /// The task id.
    pub task_id: String,
    /// The problem description.
    pub description: String,
    /// The task forced the tool to shut down.
    pub force_shutdown: bool,
    /// The task reports a safety hazard.
    pub safety_hazard: bool,
}

/// The summary state of a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Operational and nobody is using it.
    Idle,
    /// Someone is using it.
    InUse,
    /// Marked non-operational.
    Down,
}

/// Everything the board knows about one tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolState {
    /// The tool id (from the payload, else the topic).
    pub id: String,
    /// The tool's name, once seen.
    pub name: Option<String>,
    /// Current usage, if any.
    pub in_use: Option<Usage>,
    /// The last user, after a `tool_disabled`.
    pub last_user: Option<String>,
    /// Since when the tool is idle: the end of the last usage (`end_time` of `tool_disabled`,
    /// the state document's `since`); `None` = no usage ended since the monitor started.
    #[serde(with = "time::serde::rfc3339::option")]
    pub idle_since: Option<OffsetDateTime>,
    /// `idle_since` is the receive time: the message carried no `end_time` of its own.
    pub idle_since_received: bool,
    /// Since when the tool is down (`None` = operational or unknown).
    #[serde(with = "time::serde::rfc3339::option")]
    pub down_since: Option<OffsetDateTime>,
    /// `down_since` is the receive time: the message carried no time of its own.
    pub down_since_received: bool,
    /// Open tasks, oldest first.
    pub open_tasks: Vec<OpenTask>,
    /// When the last message about this tool arrived.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// Summary state (redundant, for consumers of the JSON).
    pub status: Status,
}

impl ToolState {
    fn new(id: String, at: OffsetDateTime) -> ToolState {
        ToolState {
            id,
            name: None,
            in_use: None,
            last_user: None,
            idle_since: None,
            idle_since_received: false,
            down_since: None,
            down_since_received: false,
            open_tasks: Vec::new(),
            last_seen: at,
            status: Status::Idle,
        }
    }

    fn refresh_status(&mut self) {
        self.status = if self.down_since.is_some() {
            Status::Down
        } else if self.in_use.is_some() {
            Status::InUse
        } else {
            Status::Idle
        };
    }

    /// `name #id`, or `tool #id`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} #{}", self.id),
            None => format!("tool #{}", self.id),
        }
    }
}

/// The bridge's last published status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BridgeStatus {
    /// `online`, `offline`, or whatever the bridge said.
    pub state: String,
    /// The `since` field as sent, if any.
    pub since: Option<String>,
    /// When the status message arrived.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

/// The bridge's queue figures, as it published them beside its status (the fields of
/// `nemo_mqtt::QueueFigures`; this crate's core does not depend on nemo-mqtt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Which queue the bridge reads: `list`, `stream`, `pubsub` (Redis) or `database` (NEMO's
    /// queue table).
    pub source: String,
    /// Events waiting in the queue.
    pub pending: u64,
    /// Events taken by a bridge and not yet confirmed.
    pub processing: u64,
    /// Dead letters.
    pub dead: u64,
    /// Whether the displays' broker (`[display]`) is connected; `None` = that feed is off.
    pub display_connected: Option<bool>,
    /// When the bridge read these numbers.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl QueueStats {
    /// `queue (database): 3 pending · 1 in processing · 0 dead`, then `· displays' broker
    /// connected` (or `NOT connected`) when the bridge has a display feed.
    ///
    /// ```
    /// let q = nemo_monitor::QueueStats {
    ///     source: "database".into(), pending: 3, processing: 1, dead: 0,
    ///     display_connected: Some(true), at: time::OffsetDateTime::UNIX_EPOCH,
    /// };
    /// assert_eq!(q.summary(false), "queue (database): 3 pending · 1 in processing · 0 dead · displays' broker connected");
    /// ```
    pub fn summary(&self, color: bool) -> String {
        let p = Paint { on: color };
        let dead = format!("{} dead", self.dead);
        let dead = if self.dead > 0 {
            p.paint(Paint::RED, &dead)
        } else {
            dead
        };
        let mut text = format!(
            "queue ({}): {} pending · {} in processing · {dead}",
            clean(&self.source, 20),
            self.pending,
            self.processing
        );
        match self.display_connected {
            Some(true) => text.push_str(" · displays' broker connected"),
            Some(false) => text.push_str(&format!(
                " · {}",
                p.paint(Paint::RED, "displays' broker NOT connected")
            )),
            None => {}
        }
        text
    }
}

/// A queue figures document that was not used: with a key, one that does not verify; without,
/// one that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedFigures {
    /// Why (e.g. `queue figures: signature: …`).
    pub reason: String,
    /// When it arrived.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

/// The board: tool states by id, plus the bridge's health.
///
/// ```
/// use nemo_monitor::{Board, board::Status};
/// let mut board = Board::new();
/// let at = time::macros::datetime!(2025-10-16 14:02:33 UTC);
/// board.apply(
///     "nemo/tools/1/enabled",
///     br#"{"event": "tool_enabled", "tool_id": 1, "tool_name": "SEM", "user_name": "Jane Doe"}"#,
///     at,
/// );
/// let tool = board.tools().next().unwrap();
/// assert_eq!(tool.status, Status::InUse);
/// assert_eq!(tool.in_use.as_ref().unwrap().user, "Jane Doe");
/// ```
#[derive(Clone)]
pub struct Board {
    tools: BTreeMap<(u64, String), ToolState>,
    bridge: Option<BridgeStatus>,
    queue: Option<QueueStats>,
    rejected: Option<RejectedFigures>,
    status_topic: String,
    offset: UtcOffset,
    hmac_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("tools", &self.tools.len())
            .field("bridge", &self.bridge)
            .field("queue", &self.queue)
            .field("rejected", &self.rejected)
            .field("status_topic", &self.status_topic)
            .field("hmac_key", &self.hmac_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Default for Board {
    fn default() -> Self {
        Board::new()
    }
}

/// Sort key: numeric ids in numeric order, others after them by text.
fn key(id: &str) -> (u64, String) {
    (id.parse::<u64>().unwrap_or(u64::MAX), id.to_owned())
}

impl Board {
    /// An empty board showing times in UTC, watching [`DEFAULT_STATUS_TOPIC`].
    pub fn new() -> Board {
        Board {
            tools: BTreeMap::new(),
            bridge: None,
            queue: None,
            rejected: None,
            status_topic: DEFAULT_STATUS_TOPIC.to_owned(),
            offset: UtcOffset::UTC,
            hmac_key: None,
        }
    }

    /// Show times at this offset (e.g. [`crate::format::local_offset`]).
    pub fn with_offset(mut self, offset: UtcOffset) -> Board {
        self.offset = offset;
        self
    }

    /// Require a valid HMAC envelope for tool and task events, as relays holding
    /// a key do: a forged or unsigned `tool_enabled` then does not change the
    /// board (the live feed still shows it, marked ✗). The bridge status topic is
    /// not signed and stays accepted.
    pub fn with_hmac_key(mut self, key: Option<Vec<u8>>) -> Board {
        self.hmac_key = key;
        self
    }

    /// Watch another topic for the bridge's status.
    pub fn with_status_topic(mut self, topic: impl Into<String>) -> Board {
        self.status_topic = topic.into();
        self
    }

    /// Fold one message into the board. Never fails: what it cannot use, it ignores.
    /// Returns the id of the tool whose state changed, if any.
    pub fn apply(&mut self, topic: &str, payload: &[u8], at: OffsetDateTime) -> Option<String> {
        let decoded = message::decode(payload, self.hmac_key.as_deref());
        let signed_ok = self.hmac_key.is_none() || decoded.signature == Signature::Valid;
        let Body::Json(v) = decoded.body else {
            return None;
        };
        if topic == self.status_topic {
            if !signed_ok {
                // With a key, a status that does not verify is not the bridge's.
                return None;
            }
            self.bridge = Some(BridgeStatus {
                state: message::text_field(&v, "state")
                    .or_else(|| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "?".into()),
                since: message::text_field(&v, "since"),
                received_at: at,
            });
            return None;
        }
        let info = message::topic_info(topic);
        if info.family.as_deref() == Some("tools")
            && info.suffix.as_deref() == Some("state")
            && let Some(state) = v.get("state").and_then(Value::as_str)
        {
            if !signed_ok {
                return None;
            }
            let id = message::tool_id(&info, Some(&v))?;
            let state = state.to_owned();
            let tool = self.tool_entry(&id, at)?;
            apply_state_document(tool, &state, &v, at);
            tool.refresh_status();
            return Some(id);
        }
        let kind = message::event_kind(&info, Some(&v))?;
        if !(kind.starts_with("tool_") || kind.starts_with("task_")) || !signed_ok {
            return None;
        }
        let id = message::tool_id(&info, Some(&v))?;
        let tool = self.tool_entry(&id, at)?;
        if let Some(name) = message::text_field(&v, "tool_name") {
            tool.name = Some(name);
        }
        apply_event(tool, &kind, &v, at);
        tool.refresh_status();
        Some(id)
    }

    /// The tool's entry (made when new, within [`MAX_TOOLS`]), seen `at`.
    fn tool_entry(&mut self, id: &str, at: OffsetDateTime) -> Option<&mut ToolState> {
        let k = key(id);
        if !self.tools.contains_key(&k) && self.tools.len() >= MAX_TOOLS {
            return None;
        }
        let tool = self
            .tools
            .entry(k)
            .or_insert_with(|| ToolState::new(id.to_owned(), at));
        tool.last_seen = at;
        Some(tool)
    }

    /// Tools in id order.
    pub fn tools(&self) -> impl Iterator<Item = &ToolState> {
        self.tools.values()
    }

    /// One tool by id.
    pub fn tool(&self, id: &str) -> Option<&ToolState> {
        self.tools.get(&key(id))
    }

    /// The bridge's last status message, if seen.
    pub fn bridge(&self) -> Option<&BridgeStatus> {
        self.bridge.as_ref()
    }

    /// The last verified queue figures, if any.
    pub fn queue_stats(&self) -> Option<&QueueStats> {
        self.queue.as_ref()
    }

    /// Record fresh (verified) queue figures.
    pub fn set_queue_stats(&mut self, stats: QueueStats) {
        self.queue = Some(stats);
        self.rejected = None;
    }

    /// A figures document was not used (`reason`): the figures shown so far stay, and the
    /// health line says that a later document was ignored, as long as no verified one follows.
    pub fn reject_queue_figures(&mut self, reason: impl Into<String>, at: OffsetDateTime) {
        self.rejected = Some(RejectedFigures {
            reason: reason.into(),
            received_at: at,
        });
    }

    /// The last figures document that was ignored, unless verified figures came after it.
    pub fn rejected_figures(&self) -> Option<&RejectedFigures> {
        self.rejected.as_ref()
    }

    /// The board as text, durations counted up to now.
    pub fn render(&self, color: bool) -> String {
        self.render_at(color, OffsetDateTime::now_utc())
    }

    /// The bridge health line (status topic and queue figures), ages counted up to now.
    pub fn health_line(&self, color: bool) -> String {
        self.health_line_at(color, OffsetDateTime::now_utc())
    }

    /// The bridge health line with the figures' age counted up to `now`:
    /// `bridge: ONLINE since … | queue (list): 3 pending · 0 in processing · 1 dead (at 10:10:00, 2 min 0 s old)`.
    pub fn health_line_at(&self, color: bool, now: OffsetDateTime) -> String {
        let p = Paint { on: color };
        let mut line = String::from("bridge: ");
        match &self.bridge {
            Some(b) => {
                let code = if b.state == "online" {
                    Paint::GREEN
                } else {
                    Paint::RED
                };
                line.push_str(&p.paint(code, &clean(&b.state, 20).to_uppercase()));
                if let Some(since) = &b.since {
                    let shown = message::parse_time(since)
                        .map(|t| date_clock(t, self.offset))
                        .unwrap_or_else(|| clean(since, 40));
                    line.push_str(&format!(" since {shown}"));
                }
            }
            None => line.push_str(&p.paint(Paint::DIM, "no status seen")),
        }
        match &self.queue {
            Some(q) => line.push_str(&format!(
                " | {} (at {}, {} old)",
                q.summary(color),
                clock(q.at, self.offset),
                human_duration(now - q.at)
            )),
            None if self.rejected.is_none() => {
                line.push_str(&format!(
                    " | {}",
                    p.paint(Paint::DIM, "queue: no figures seen")
                ));
            }
            None => {}
        }
        if let Some(r) = &self.rejected {
            line.push_str(&format!(
                " | {}",
                p.paint(
                    Paint::RED,
                    &format!(
                        "queue figures NOT VERIFIED at {}, ignored",
                        clock(r.received_at, self.offset)
                    )
                )
            ));
        }
        line
    }

    /// The board as text with durations counted up to `now` (deterministic for tests).
    pub fn render_at(&self, color: bool, now: OffsetDateTime) -> String {
        let p = Paint { on: color };
        let mut out = String::new();
        out.push_str(&self.health_line_at(color, now));
        out.push('\n');
        out.push_str(&p.paint(
            Paint::BOLD,
            &format!(
                "{}  {:<7}  {:<16}  DETAIL",
                pad("TOOL", 34),
                "STATE",
                "SINCE"
            ),
        ));
        out.push('\n');
        for tool in self.tools() {
            let (state, code, since, received, detail) = match tool.status {
                Status::Down => {
                    let since = tool.down_since.unwrap_or(tool.last_seen);
                    let received = tool.down_since.is_none() || tool.down_since_received;
                    let detail = tool
                        .open_tasks
                        .last()
                        .map(|t| format!("\"{}\"", clean(&t.description, 60)))
                        .unwrap_or_default();
                    ("DOWN", Paint::RED, since, received, detail)
                }
                Status::InUse => {
                    let usage = tool.in_use.as_ref();
                    let since = usage.map(|u| u.since).unwrap_or(tool.last_seen);
                    let received = usage.is_none_or(|u| u.since_received);
                    let detail = format!(
                        "{} ({})",
                        clean(usage.map(|u| u.user.as_str()).unwrap_or("?"), 40),
                        human_duration(now - since)
                    );
                    ("IN USE", Paint::YELLOW, since, received, detail)
                }
                Status::Idle => {
                    let detail = tool
                        .last_user
                        .as_ref()
                        .map(|u| format!("last: {}", clean(u, 40)))
                        .unwrap_or_default();
                    let since = tool.idle_since.unwrap_or(tool.last_seen);
                    let received = tool.idle_since.is_none() || tool.idle_since_received;
                    ("idle", Paint::GREEN, since, received, detail)
                }
            };
            let tasks = match tool.open_tasks.len() {
                0 => String::new(),
                1 => "  [1 open task]".to_owned(),
                n => format!("  [{n} open tasks]"),
            };
            out.push_str(&format!(
                "{}  {}  {:<16}  {}{}\n",
                pad(&tool.label(), 34),
                p.paint(code, &format!("{state:<7}")),
                since_cell(since, received, now, self.offset),
                detail,
                p.paint(Paint::MAGENTA, &tasks)
            ));
        }
        if self.tools.is_empty() {
            out.push_str("(no tools seen yet)\n");
        }
        out
    }
}

/// A retained state document (`{"state": "in_use", "user_name": …, "since": …, "event": …}`,
/// see `nemo_topics`): the tool as the bridge last saw it. The document holds the latest
/// event only (not a merge of usage and operational status).
fn apply_state_document(tool: &mut ToolState, state: &str, v: &Value, at: OffsetDateTime) {
    if let Some(name) = message::text_field(v, "tool_name") {
        tool.name = Some(name);
    }
    let since = message::time_field(v, "since");
    match state {
        "in_use" => {
            tool.in_use = Some(Usage {
                user: message::text_field(v, "user_name").unwrap_or_else(|| "?".into()),
                since: since.unwrap_or(at),
                since_received: since.is_none(),
            });
            tool.idle_since = None;
            tool.idle_since_received = false;
        }
        "idle" => {
            tool.in_use = None;
            if let Some(user) = message::text_field(v, "user_name") {
                tool.last_user = Some(user);
            }
            tool.idle_since = Some(since.unwrap_or(at));
            tool.idle_since_received = since.is_none();
        }
        "down" if tool.down_since.is_none() => {
            tool.down_since = Some(since.unwrap_or(at));
            tool.down_since_received = since.is_none();
        }
        "up" => {
            tool.down_since = None;
            tool.down_since_received = false;
        }
        _ => {}
    }
}

/// The SINCE cell: `14:02` today, `16 Oct 14:02` earlier this year, `2024-10-16 14:02` before
/// (days as seen at `offset`); `~` in front when the time is the receive time.
fn since_cell(
    at: OffsetDateTime,
    received: bool,
    now: OffsetDateTime,
    offset: UtcOffset,
) -> String {
    let (t, today) = (at.to_offset(offset), now.to_offset(offset));
    let text = if t.date() == today.date() {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else if t.year() == today.year() {
        format!(
            "{} {} {:02}:{:02}",
            t.day(),
            month_abbr(t.month()),
            t.hour(),
            t.minute()
        )
    } else {
        date_clock(at, offset)
    };
    if received { format!("~{text}") } else { text }
}

fn month_abbr(m: time::Month) -> &'static str {
    use time::Month::*;
    match m {
        January => "Jan",
        February => "Feb",
        March => "Mar",
        April => "Apr",
        May => "May",
        June => "Jun",
        July => "Jul",
        August => "Aug",
        September => "Sep",
        October => "Oct",
        November => "Nov",
        December => "Dec",
    }
}

fn apply_event(tool: &mut ToolState, kind: &str, v: &Value, at: OffsetDateTime) {
    match kind {
        "tool_enabled" => {
            let started = message::time_field(v, "start_time");
            tool.in_use = Some(Usage {
                user: message::text_field(v, "user_name").unwrap_or_else(|| "?".into()),
                since: started.unwrap_or(at),
                since_received: started.is_none(),
            });
            tool.idle_since = None;
            tool.idle_since_received = false;
        }
        "tool_disabled" => {
            let user = tool
                .in_use
                .take()
                .map(|u| u.user)
                .or_else(|| message::text_field(v, "user_name"));
            tool.last_user = user;
            // Idle since the usage ended, not since the monitor heard of it.
            let ended = message::time_field(v, "end_time");
            tool.idle_since = Some(ended.unwrap_or(at));
            tool.idle_since_received = ended.is_none();
        }
        "tool_non_operational" if tool.down_since.is_none() => {
            let t = message::time_field(v, "timestamp");
            tool.down_since = Some(t.unwrap_or(at));
            tool.down_since_received = t.is_none();
        }
        "tool_operational" => {
            tool.down_since = None;
            tool.down_since_received = false;
        }
        "task_created" | "task_updated" | "task_shutdown" => {
            let Some(task_id) = message::text_field(v, "task_id") else {
                return;
            };
            let closed = message::bool_field(v, "resolved") == Some(true)
                || message::bool_field(v, "cancelled") == Some(true);
            tool.open_tasks.retain(|t| t.task_id != task_id);
            if !closed {
                tool.open_tasks.push(OpenTask {
                    task_id,
                    description: message::text_field(v, "problem_description").unwrap_or_default(),
                    force_shutdown: message::bool_field(v, "force_shutdown") == Some(true),
                    safety_hazard: message::bool_field(v, "safety_hazard") == Some(true),
                });
                // Keep a runaway producer from growing one tool without bound.
                if tool.open_tasks.len() > 100 {
                    tool.open_tasks.remove(0);
                }
            }
        }
        _ => {}
    }
}
