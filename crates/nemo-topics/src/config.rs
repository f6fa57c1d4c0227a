//! The `[topics]` configuration table and its errors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::template::TemplateError;

/// The default state topic template.
pub const DEFAULT_STATE_TEMPLATE: &str = "{prefix}/tools/{tool_id}/state";
/// The default route of event kinds that no route or family covers.
pub const DEFAULT_FALLBACK: &str = "{prefix}/events/{kind}";

/// The `[topics]` table (DESIGN §5).
///
/// ```toml
/// [topics]
/// prefix = "nemo"                  # {prefix} of templates; may span levels ("site-a/nemo")
/// rewrites = [{ from = "nemo", to = "site-a/nemo" }]   # producer topics, whole levels, first match
/// state_topics = true              # also publish {prefix}/tools/{tool_id}/state (the default)
/// state_retain = true              # ... retained
/// # state_template = "{prefix}/tools/{tool_id}/state"
/// # fallback = "{prefix}/events/{kind}"     # typed events of a kind without any route
///
/// [topics.routes]                  # kind -> template; overrides the producer's topic
/// tool_enabled = "{prefix}/tools/{tool_id}/in-use"
/// "task_*" = "{prefix}/tasks/{task_id}"    # a trailing '*' matches a kind prefix
/// ```
///
/// Missing keys take the defaults; unknown keys are rejected. Checked by
/// [`TopicMapper::from_config`](crate::TopicMapper::from_config).
///
/// ```
/// let cfg = nemo_topics::TopicsConfig::default();
/// assert_eq!(cfg.prefix, "nemo");
/// assert!(cfg.rewrites.is_empty() && cfg.routes.is_empty() && cfg.state_topics && cfg.state_retain);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// Inserted for `{prefix}`: one or more non-empty levels, no wildcards. Default `"nemo"`.
    pub prefix: String,
    /// Rewrites of producer topics (pass-through items), tried in order; the first whose
    /// `from` matches whole leading levels wins.
    pub rewrites: Vec<Rewrite>,
    /// Per-kind templates. Key: an exact kind, a kind prefix ending in `*` (`"task_*"`), or
    /// `"*"` (every kind); exact keys win over patterns, longer patterns over shorter. For queue items a route
    /// replaces the producer's topic; for typed events it replaces the default route.
    pub routes: BTreeMap<String, String>,
    /// Route for typed events of a kind no route and no default family covers.
    pub fallback: String,
    /// Publish the retained per-tool state document too (default on: a display, dashboard or
    /// monitor that subscribes gets every tool's current state at once).
    pub state_topics: bool,
    /// Retain flag of the state publications.
    pub state_retain: bool,
    /// Template of the state topic.
    pub state_template: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            prefix: "nemo".to_owned(),
            rewrites: Vec::new(),
            routes: BTreeMap::new(),
            fallback: DEFAULT_FALLBACK.to_owned(),
            state_topics: true,
            state_retain: true,
            state_template: DEFAULT_STATE_TEMPLATE.to_owned(),
        }
    }
}

/// One topic rewrite: a producer topic whose leading levels equal `from` gets them replaced by
/// `to` (`nemo` → `site-a/nemo` turns `nemo/tools/1/enabled` into
/// `site-a/nemo/tools/1/enabled`, and leaves `nemotron/x` alone).
///
/// ```
/// let r = nemo_topics::Rewrite { from: "nemo".into(), to: "site-a/nemo".into() };
/// assert_eq!(r.apply("nemo/tools/1/enabled").as_deref(), Some("site-a/nemo/tools/1/enabled"));
/// assert_eq!(r.apply("nemotron/x"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// Leading levels to match (whole levels only).
    pub from: String,
    /// Their replacement.
    pub to: String,
}

impl Rewrite {
    /// `topic` with `from` replaced by `to`, or `None` if `from` does not match whole leading
    /// levels of `topic`.
    ///
    /// ```
    /// let r = nemo_topics::Rewrite { from: "a/b".into(), to: "c".into() };
    /// assert_eq!(r.apply("a/b").as_deref(), Some("c"));
    /// assert_eq!(r.apply("a/b/x").as_deref(), Some("c/x"));
    /// assert_eq!(r.apply("a/bx"), None);
    /// ```
    pub fn apply(&self, topic: &str) -> Option<String> {
        let rest = topic.strip_prefix(self.from.as_str())?;
        if rest.is_empty() || rest.starts_with('/') {
            let mut out = String::with_capacity(self.to.len() + rest.len());
            out.push_str(&self.to);
            out.push_str(rest);
            Some(out)
        } else {
            None
        }
    }
}

/// A `[topics]` value that cannot be used. The message names the key, the value and what is
/// wrong, e.g. ``invalid topics.routes.tool_enabled = "{prefix}/{tool_idd}": unknown
/// placeholder '{tool_idd}'; allowed: prefix, kind, tool_id, tool_name, ...``.
///
/// ```
/// use nemo_topics::{TopicMapper, TopicsConfig};
/// let mut cfg = TopicsConfig::default();
/// cfg.routes.insert("tool_enabled".into(), "{prefix}/tools/{tool_id".into());
/// let err = TopicMapper::from_config(&cfg).unwrap_err();
/// assert_eq!(err.to_string(),
///     "invalid topics.routes.tool_enabled = \"{prefix}/tools/{tool_id\": unbalanced braces: '{' at byte 15 is not closed");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A template (a route, `fallback` or `state_template`) is invalid.
    #[error("invalid topics.{key} = {value:?}: {reason}")]
    Template {
        /// The key: `routes.<kind>`, `fallback` or `state_template`.
        key: String,
        /// The template as written.
        value: String,
        /// What is wrong.
        #[source]
        reason: TemplateError,
    },
    /// `prefix` or a rewrite's `from`/`to` is not a list of non-empty topic levels without
    /// wildcards.
    #[error(
        "invalid topics.{key} = {value:?}: {reason}; expected non-empty topic levels without wildcards, e.g. \"site-a/nemo\""
    )]
    Levels {
        /// The key: `prefix`, `rewrites[<i>].from` or `rewrites[<i>].to`.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong.
        #[source]
        reason: TemplateError,
    },
    /// A route key that is neither a kind nor a kind prefix ending in `*`.
    #[error(
        "invalid topics.{key}: the route key must be an event kind (letters, digits, '_', '-'), optionally ending in '*', or '*'"
    )]
    RouteKey {
        /// `routes.<key as written>`.
        key: String,
    },
}

impl ConfigError {
    /// The configuration key at fault, relative to `[topics]` (e.g. `routes.tool_enabled`).
    ///
    /// ```
    /// use nemo_topics::{TopicMapper, TopicsConfig};
    /// let cfg = TopicsConfig { prefix: "nemo/#".into(), ..Default::default() };
    /// assert_eq!(TopicMapper::from_config(&cfg).unwrap_err().key(), "prefix");
    /// ```
    pub fn key(&self) -> &str {
        match self {
            ConfigError::Template { key, .. }
            | ConfigError::Levels { key, .. }
            | ConfigError::RouteKey { key } => key,
        }
    }
}
