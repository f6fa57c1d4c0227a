//! Feeds the NEMO tool displays directly, so the displays' Python relay becomes optional.
//!
//! The tool displays (github alexanderenrique/NEMO-Tool-Display) do not read `nemo/tools/…`:
//! each subscribes to the retained JSON document on `nemo/esp32/{tool_id}/status`
//! (`event_type`, `in_use`, `timestamp`, `time_label`, `user_label`, `user_name`, `tool_name`),
//! which that repository's relay writes from the plugin's events. With `[display] enabled =
//! true` the bridge writes those documents itself, with the relay's field names and words,
//! plus two corrections: the time shown is the event's own (`start_time` / `end_time`), not
//! when it was received, and `in_use` is true exactly while the tool is in use.
//!
//! * [`DisplayConfig`] — the `[display]` table and its validation;
//! * [`DisplayZone`] — the zone and format of the times shown (IANA zones follow daylight
//!   saving);
//! * [`project`], [`project_state`], [`display_name`] — the projection, pure functions;
//! * [`DisplayFeed`] — the task that reads the events and publishes the documents.
//!
//! # Key design decision: a projection of each tool's state, not a second queue
//!
//! A display shows one thing: its tool's *current* status. So the feed keeps exactly that —
//! one document per tool, the latest — and publishes a tool's document when it changes, and
//! every tool's document whenever the displays' broker (re)connects. It reads the events from
//! the events' broker like any other consumer, after they were published; it never sits
//! between the queue and the broker. An outage of the displays' broker therefore never holds
//! back the events' queue, grows no backlog (a tool that changed five times while the broker
//! was away is published once, as it is now), and ends with every display correct. At a
//! bridge start the board is rebuilt from the retained tool-state documents
//! (`nemo/tools/{id}/state`) the bridge itself keeps on the events' broker. The price: a
//! display sees only the latest status, never the intermediate ones — which is all a display
//! can show anyway.
//!
//! ```
//! use nemo_display::{DisplayZone, Kind, project};
//! let zone = DisplayZone::parse("-07:00")?;
//! let payload = r#"{"event": "tool_disabled", "tool_id": 1, "tool_name": "Zeiss Supra 55 SEM", "usage_id": 3401, "user_name": "Alex Denton (admin)", "end_time": "2025-10-16T14:12:26.950648+00:00"}"#;
//! let shown = project(Kind::Disabled, "1", payload, &zone, 13, None, jiff::Timestamp::now()).unwrap();
//! assert_eq!(shown.status.to_json(), r#"{"event_type": "disabled", "in_use": false, "timestamp": "Oct 16, 07:12 AM", "time_label": "Disabled Since", "user_label": "Last User", "user_name": "Alex Denton", "tool_name": "Zeiss Supra 55 SEM"}"#);
//! # Ok::<(), nemo_display::DisplayError>(())
//! ```
#![deny(missing_docs)]

mod config;
mod feed;
mod project;
mod zone;

pub use config::DisplayConfig;
pub use feed::DisplayFeed;
pub use project::{DisplayStatus, Kind, Projected, display_name, project, project_state};
pub use zone::DisplayZone;

/// A `[display]` value that cannot be used.
///
/// ```
/// let e = nemo_display::DisplayError::Invalid {
///     key: "display.max_name_length".into(), value: "0".into(), allowed: "must be in 1..=50".into() };
/// assert_eq!(e.to_string(), "invalid display.max_name_length = 0: must be in 1..=50");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DisplayError {
    /// A value out of range; names the key, the value (secrets never shown) and what is
    /// allowed.
    #[error("invalid {key} = {value}: {allowed}")]
    Invalid {
        /// Dotted key, e.g. `display.timezone`.
        key: String,
        /// The value as written.
        value: String,
        /// What is allowed.
        allowed: String,
    },
}
