//! Decides the MQTT topic(s) of every NEMO event the bridge publishes.
//!
//! Two kinds of input arrive:
//!
//! - **queue items** from the NEMO plugin (v1), which already carry a topic
//!   (`nemo/tools/12/enabled`). By default the mapper passes that topic through unchanged;
//!   `rewrites` move it under another root (`nemo` → `site-a/nemo`, whole levels only) and
//!   `routes` (event kind → template) override it per kind. See [`TopicMapper::map_item`].
//! - **typed events** from Rust producers, which have no topic. The mapper renders a template:
//!   a configured route, else the plugin's own topic for that kind (so Rust producers and the
//!   plugin publish to the same places, DESIGN §2), else `{prefix}/events/{kind}`. See
//!   [`TopicMapper::map_event`]. The plugin's topics, and the fields a route of a kind may name,
//!   come from nemo-events' table of kinds ([`nemo_events::kinds::EVENT_KINDS`]); this crate
//!   keeps no list of its own.
//!
//! By default (`state_topics = true`; `false` turns it off) a retained
//! `{prefix}/tools/{tool_id}/state` document follows the main publication for the kinds that
//! change what a tool display shows, so a display, dashboard or monitor that (re)subscribes
//! shows the current status at once (see the `state` table below). Consumers that subscribe
//! `nemo/tools/+/+` and read the fourth level as the event type see one more type, `state`,
//! which they ignore as they ignore any type they do not know (DESIGN §2: unknown kinds pass
//! through).
//!
//! | kind                   | `state`   | `since` from                    | `user_name` |
//! |------------------------|-----------|---------------------------------|-------------|
//! | `tool_enabled`         | `in_use`  | `start_time`                    | yes         |
//! | `tool_disabled`        | `idle`    | `end_time`                      | yes         |
//! | `tool_operational`     | `up`      | `timestamp`                     | null        |
//! | `tool_non_operational` | `down`    | `timestamp`                     | null        |
//! | `task_shutdown`        | `down`    | `updated_at`, else `created_at` | null        |
//!
//! # Key design decision: validate templates once, sanitize values on every insert
//!
//! Real payloads are messy: tool names contain `/`, `#`, `+` and quotes
//! (`Oxford ICP Etcher #2`, `New ALD / Cambridge "Savannah"`). Inserted into a topic as is, a
//! `/` would add a level (consumers read the *fourth* level as the event type) and a `#` would
//! make the broker drop the connection. So templates are parsed and checked when the
//! configuration is loaded (balanced braces, known placeholders, no wildcards, no empty
//! levels: [`TopicMapper::from_config`] names the bad route), and every value inserted at run
//! time goes through [`sanitize_level`], which replaces `/`, `+`, `#`, NUL and control
//! characters with `_`. A rendered topic therefore always has exactly the levels of its
//! template, and the final [`Topic::new`](nemo_events::Topic::new) check can only fail on
//! length. The alternative — validate each rendered topic and reject the event — would drop
//! real events over a tool's name.
//!
//! The pass-through path is the bridge's hot path (≥ 50k events/s): without routes and state
//! topics, [`TopicMapper::map_item`] never parses the payload; it clones (or rewrites) the
//! topic and returns [`PayloadRef::Original`], so the payload bytes are forwarded untouched.
//!
//! ```
//! use nemo_topics::{TopicMapper, TopicsConfig};
//!
//! let cfg: TopicsConfig = toml::from_str(r#"
//!     prefix = "nemo"
//!     state_topics = true
//! "#)?;
//! let mapper = TopicMapper::from_config(&cfg)?;
//! let event = nemo_events::NemoEvent::parse(
//!     r#"{"event": "tool_enabled", "tool_id": 12, "tool_name": "Oxford ICP Etcher #2", "usage_id": 1, "user_name": "Jane", "start_time": "2025-10-16T14:02:32+00:00"}"#)?;
//! let pubs = mapper.map_event(&event)?;
//! assert_eq!(pubs[0].topic.as_str(), "nemo/tools/12/enabled");
//! assert_eq!(pubs[1].topic.as_str(), "nemo/tools/12/state");
//! assert!(pubs[1].retain);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod config;
mod defaults;
mod fields;
mod mapper;
mod state;
mod template;

pub use config::{ConfigError, DEFAULT_FALLBACK, DEFAULT_STATE_TEMPLATE, Rewrite, TopicsConfig};
pub use defaults::KNOWN_KINDS;
pub use mapper::{MapError, PayloadRef, Publication, TopicMapper};
pub use template::{TemplateError, sanitize_level};
