//! A Rust subscriber: what a tool display does — verify, parse, keep each tool's state.
//!
//! ```sh
//! cargo run --example subscriber -- mqtt://127.0.0.1:1883
//! NEMO_MQTT_URL=mqtts://broker.lab.example:8883 NEMO_HMAC_KEY=... cargo run --example subscriber
//! ```
//!
//! It subscribes to `nemo/tools/+/+` and `nemo/tools/+` with the `nemo-mqtt` [`Subscriber`]
//! (reconnects included), and for every message:
//!
//! 1. with an HMAC key, checks the envelope `{"payload", "hmac", "algo"}` with
//!    [`nemo_events::hmac::verify`] and **rejects** anything else — an unsigned payload, a wrong
//!    key, a payload changed after signing — as a relay holding the key must;
//! 2. parses the payload with [`NemoEvent::parse`] (unknown kinds and extra fields are fine);
//! 3. folds it into a [`Board`]: per tool, *in use by whom since when*, *idle*, or *down* (with
//!    the problem description), and prints a line whenever a tool's state changes.
//!
//! The key is read from `$NEMO_HMAC_KEY`, never from the command line (where `ps` shows it), and
//! never printed. `tests/examples.rs` runs [`subscribe`] + [`watch`] against a private Mosquitto
//! with fixture payloads and signed and tampered envelopes, so this file cannot rot.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;

use nemo_events::{EventTime, NemoEvent, Qos};
use nemo_mqtt::{MqttConfig, Received, Subscriber};

/// What tool displays subscribe to: `nemo/tools/{id}/{event}` and `nemo/tools/{id}`.
pub const FILTERS: [&str; 2] = ["nemo/tools/+/+", "nemo/tools/+"];

/// How to subscribe and when to stop.
#[derive(Clone)]
pub struct Options {
    /// Broker URL (`mqtt://`, `mqtts://`, `ws://`, `wss://`).
    pub broker_url: String,
    /// MQTT client id; must differ from the bridge's and from every other client's.
    pub client_id: String,
    /// The shared HMAC key; `None` accepts plain payloads (and rejects nothing for lack of one).
    pub hmac_key: Option<Vec<u8>>,
    /// Stop after this many messages (accepted, rejected or ignored); `None` = run until the
    /// subscription ends.
    pub max_messages: Option<usize>,
}

impl fmt::Debug for Options {
    // By hand, so that the key never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("broker_url", &self.broker_url)
            .field("client_id", &self.client_id)
            .field("hmac_key", &self.hmac_key.as_ref().map(|_| "***"))
            .field("max_messages", &self.max_messages)
            .finish()
    }
}

/// What a display shows for one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Known (created or updated in NEMO) but no usage or outage seen yet.
    Unknown,
    /// Nobody is using it; `since` is the end of the last use (or when it came back up).
    Idle {
        /// The event's time text, as NEMO wrote it.
        since: Option<String>,
    },
    /// Someone is using it.
    InUse {
        /// Full name of the user.
        user: String,
        /// When the use started, as NEMO wrote it.
        since: Option<String>,
    },
    /// Out of order until a `tool_operational` event.
    Down {
        /// The problem description of the task that shut it down, if any.
        reason: Option<String>,
        /// When it went down, as NEMO wrote it.
        since: Option<String>,
    },
}

/// One tool on the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolState {
    /// The tool's display name, from the latest event that had one.
    pub name: Option<String>,
    /// What it is doing.
    pub status: Status,
}

impl fmt::Display for ToolState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name}: ")?;
        }
        let since = |s: &Option<String>| {
            s.as_deref()
                .map(|s| format!(" since {s}"))
                .unwrap_or_default()
        };
        match &self.status {
            Status::Unknown => write!(f, "state unknown"),
            Status::Idle { since: s } => write!(f, "idle{}", since(s)),
            Status::InUse { user, since: s } => write!(f, "IN USE by {user}{}", since(s)),
            Status::Down { reason, since: s } => {
                write!(f, "DOWN{}", since(s))?;
                match reason {
                    Some(r) => write!(f, ": {r:?}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Every tool seen so far, by NEMO tool id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Board {
    tools: BTreeMap<u64, ToolState>,
}

/// A time field as text; a missing time or the plugin's boolean `timestamp` bug gives `None`.
fn text(t: &Option<EventTime>) -> Option<String> {
    t.as_ref().and_then(EventTime::as_str).map(str::to_owned)
}

impl Board {
    /// The state of tool `id`, if any event about it was seen.
    pub fn get(&self, id: u64) -> Option<&ToolState> {
        self.tools.get(&id)
    }

    /// All tools, by id.
    pub fn tools(&self) -> impl Iterator<Item = (u64, &ToolState)> {
        self.tools.iter().map(|(id, t)| (*id, t))
    }

    /// Fold one event in. Returns the tool's id and new state when something a display shows
    /// changed; `None` for events without a tool id, kinds that change nothing (reservations,
    /// areas, unknown kinds), and repeats (at-least-once delivery may repeat an event).
    pub fn apply(&mut self, event: &NemoEvent) -> Option<(u64, &ToolState)> {
        let id = event.tool_id()?;
        let prev = self.tools.get(&id).cloned();
        let prev_status = prev.as_ref().map_or(Status::Unknown, |t| t.status.clone());
        let status = match event {
            NemoEvent::ToolEnabled(u) => Status::InUse {
                user: u.user_name.clone().unwrap_or_else(|| "someone".to_owned()),
                since: text(&u.start_time),
            },
            // Ending a use does not bring a broken tool back.
            NemoEvent::ToolDisabled(_) if matches!(prev_status, Status::Down { .. }) => prev_status,
            NemoEvent::ToolDisabled(u) => Status::Idle {
                since: text(&u.end_time),
            },
            NemoEvent::ToolNonOperational(o) => match prev_status {
                // Keep the reason a task_shutdown gave; the two often arrive together.
                Status::Down { reason, since } => Status::Down {
                    reason,
                    since: since.or_else(|| text(&o.timestamp)),
                },
                _ => Status::Down {
                    reason: None,
                    since: text(&o.timestamp),
                },
            },
            NemoEvent::TaskShutdown(t) => Status::Down {
                reason: t.problem_description.clone(),
                since: text(&t.updated_at).or_else(|| text(&t.created_at)),
            },
            NemoEvent::ToolOperational(o) => Status::Idle {
                since: text(&o.timestamp),
            },
            NemoEvent::ToolCreated(_)
            | NemoEvent::ToolUpdated(_)
            | NemoEvent::TaskCreated(_)
            | NemoEvent::TaskUpdated(_) => prev_status,
            _ => return None,
        };
        let name = event
            .tool_name()
            .map(str::to_owned)
            .or_else(|| prev.as_ref().and_then(|t| t.name.clone()));
        let next = ToolState { name, status };
        if prev.as_ref() == Some(&next) {
            return None;
        }
        self.tools.insert(id, next);
        self.tools.get(&id).map(|t| (id, t))
    }
}

/// How a subscription went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The final state of every tool seen.
    pub board: Board,
    /// Messages that were (verified and) parsed as events.
    pub accepted: usize,
    /// Messages refused by the HMAC check.
    pub rejected: usize,
    /// Messages that were not events (not UTF-8, not JSON, no `event`) or were retained
    /// `nemo/tools/{id}/state` documents (they repeat what the events said).
    pub ignored: usize,
}

/// Connect and subscribe to [`FILTERS`] at QoS 1.
///
/// # Errors
///
/// A bad URL, TLS or authentication failure, or the broker refusing a filter.
pub async fn subscribe(opts: &Options) -> anyhow::Result<Subscriber> {
    let cfg = MqttConfig {
        client_id: opts.client_id.clone(),
        // A display announces nothing: no retained online/offline status, no last will.
        status_topic: String::new(),
        ..MqttConfig::for_url(opts.broker_url.clone())
    };
    Ok(Subscriber::connect(cfg, &FILTERS, Qos::AtLeastOnce).await?)
}

/// Read messages from `sub` until [`Options::max_messages`] or the end of the subscription,
/// writing one line to `out` per state change, rejection or unreadable message.
///
/// # Errors
///
/// Only when writing to `out` fails; bad messages are counted, never fatal.
pub async fn watch(
    sub: &mut Subscriber,
    opts: &Options,
    out: &mut impl Write,
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    let mut seen = 0usize;
    while opts.max_messages.is_none_or(|max| seen < max) {
        let Some(msg) = sub.recv().await else { break };
        seen += 1;
        handle(&msg, opts, &mut summary, out)?;
    }
    Ok(summary)
}

fn handle(
    msg: &Received,
    opts: &Options,
    summary: &mut Summary,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if msg.topic.split('/').nth(3) == Some("state") {
        summary.ignored += 1;
        return Ok(());
    }
    let payload = match &opts.hmac_key {
        Some(key) => match nemo_events::hmac::verify(&msg.payload, key) {
            Ok(payload) => payload,
            Err(e) => {
                summary.rejected += 1;
                writeln!(out, "rejected {}: {e}", msg.topic)?;
                return Ok(());
            }
        },
        None => match std::str::from_utf8(&msg.payload) {
            Ok(s) => s.to_owned(),
            Err(_) => {
                summary.ignored += 1;
                writeln!(out, "unreadable {}: not UTF-8", msg.topic)?;
                return Ok(());
            }
        },
    };
    let event = match NemoEvent::parse(&payload) {
        Ok(event) => event,
        Err(e) => {
            summary.ignored += 1;
            writeln!(out, "unreadable {}: {e}", msg.topic)?;
            return Ok(());
        }
    };
    summary.accepted += 1;
    if let Some((id, state)) = summary.board.apply(&event) {
        writeln!(out, "tool {id} {state}")?;
    }
    Ok(())
}

/// [`subscribe`], [`watch`], then disconnect cleanly.
///
/// # Errors
///
/// As [`subscribe`] and [`watch`].
pub async fn run(opts: &Options, out: &mut impl Write) -> anyhow::Result<Summary> {
    let mut sub = subscribe(opts).await?;
    let summary = watch(&mut sub, opts, out).await;
    if let Err(e) = sub.shutdown().await {
        writeln!(out, "disconnect: {e}")?;
    }
    summary
}

/// `subscriber [BROKER_URL]`; the URL defaults to `$NEMO_MQTT_URL`, then to the local broker.
/// `$NEMO_HMAC_KEY` turns verification on; `$NEMO_MAX_MESSAGES` stops after that many.
#[allow(dead_code)] // tests/examples.rs includes this file and calls `subscribe`/`watch`
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let broker_url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("NEMO_MQTT_URL").ok())
        .unwrap_or_else(|| "mqtt://127.0.0.1:1883".to_owned());
    let hmac_key = std::env::var("NEMO_HMAC_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .map(String::into_bytes);
    let max_messages = match std::env::var("NEMO_MAX_MESSAGES") {
        Ok(n) => Some(
            n.parse()
                .map_err(|e| anyhow::anyhow!("NEMO_MAX_MESSAGES = {n:?}: {e}"))?,
        ),
        Err(_) => None,
    };
    let opts = Options {
        broker_url,
        client_id: format!("nemo-subscriber-example-{}", std::process::id()),
        hmac_key,
        max_messages,
    };
    let mut out = std::io::stdout();
    let summary = tokio::select! {
        summary = run(&opts, &mut out) => summary?,
        _ = tokio::signal::ctrl_c() => return Ok(()),
    };
    println!(
        "{} accepted, {} rejected, {} ignored",
        summary.accepted, summary.rejected, summary.ignored
    );
    for (id, state) in summary.board.tools() {
        println!("tool {id} {state}");
    }
    Ok(())
}
