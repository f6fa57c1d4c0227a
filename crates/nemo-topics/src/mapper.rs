//! The mapper: from a queue item or a typed event to the publications to make.

use std::borrow::Cow;
use std::collections::HashMap;

use nemo_events::{NemoEvent, QueueItem, Topic, TopicError};

use crate::config::{ConfigError, Rewrite, TopicsConfig};
use nemo_events::kinds::{EVENT_KINDS, EventKind};

use crate::defaults;
use crate::fields::Fields;
use crate::state;
use crate::template::{Template, TemplateError, check_levels, check_literal};

/// The payload of a [`Publication`].
///
/// ```
/// use nemo_topics::PayloadRef;
/// let p = PayloadRef::Generated("{}".into());
/// assert_eq!(p.resolve("original"), "{}");
/// assert_eq!(PayloadRef::Original.resolve("original"), "original");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadRef {
    /// Forward the queue item's payload bytes untouched (never re-serialized: an HMAC signs
    /// the exact bytes).
    Original,
    /// A payload the mapper made (a typed event's JSON, a state document).
    Generated(String),
}

impl PayloadRef {
    /// The bytes to publish, given the item's original payload.
    ///
    /// ```
    /// assert_eq!(nemo_topics::PayloadRef::Original.resolve("x"), "x");
    /// ```
    pub fn resolve<'a>(&'a self, original: &'a str) -> &'a str {
        match self {
            PayloadRef::Original => original,
            PayloadRef::Generated(s) => s,
        }
    }
}

/// One MQTT publication decided by the mapper. QoS is the caller's (the item's or the
/// configured one).
///
/// ```
/// use nemo_topics::{PayloadRef, Publication};
/// let p = Publication { topic: nemo_events::Topic::new("nemo/tools/1/enabled")?,
///                       payload: PayloadRef::Original, retain: false };
/// assert_eq!(p.topic.as_str(), "nemo/tools/1/enabled");
/// # Ok::<(), nemo_events::TopicError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Validated topic name.
    pub topic: Topic,
    /// What to publish.
    pub payload: PayloadRef,
    /// The MQTT retain flag.
    pub retain: bool,
}

/// Why an item or event could not be mapped. The caller dead-letters the item with this
/// message (DESIGN §3: bad input is never silently dropped).
///
/// ```
/// use nemo_topics::TopicMapper;
/// let event = nemo_events::NemoEvent::parse(r#"{"event": "tool_enabled", "tool_name": "x"}"#)?;
/// let err = TopicMapper::default().map_event(&event).unwrap_err();
/// assert_eq!(err.to_string(),
///     "event tool_enabled has no scalar field 'tool_id' needed by route \"{prefix}/tools/{tool_id}/enabled\"");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The route's template needs a field the event does not have (or has as null, object or
    /// array).
    #[error("event {kind} has no scalar field '{field}' needed by route {template:?}")]
    MissingField {
        /// The event kind.
        kind: String,
        /// The missing field.
        field: String,
        /// The route template.
        template: String,
    },
    /// The produced topic is not a valid topic name (in practice: longer than 65,535 bytes).
    #[error("produced topic is invalid: {source}")]
    InvalidTopic {
        /// Why.
        #[source]
        source: TopicError,
    },
}

impl From<TopicError> for MapError {
    fn from(source: TopicError) -> Self {
        MapError::InvalidTopic { source }
    }
}

/// Decides the topics of events. Built once from [`TopicsConfig`]; immutable and cheap to
/// share (`Send + Sync`); mapping never allocates more than the publications it returns, plus a
/// parse of the payload when routes or state topics need its fields.
///
/// ```
/// use nemo_topics::{TopicMapper, TopicsConfig, Rewrite, PayloadRef};
/// use nemo_events::QueueItem;
///
/// let line = r#"{"topic": "nemo/tools/12/enabled", "payload": "{\"event\": \"tool_enabled\", \"tool_id\": 12}", "qos": 1, "retain": false, "timestamp": 1760623352.94}"#;
/// let item = QueueItem::parse(line.as_bytes())?;
///
/// // default: the producer's topic, untouched
/// let pubs = TopicMapper::default().map_item(&item, None)?;
/// assert_eq!(pubs[0].topic.as_str(), "nemo/tools/12/enabled");
/// assert_eq!(pubs[0].payload, PayloadRef::Original);
///
/// // a site prefix
/// let cfg = TopicsConfig { rewrites: vec![Rewrite { from: "nemo".into(), to: "site-a/nemo".into() }],
///                          ..Default::default() };
/// let pubs = TopicMapper::from_config(&cfg)?.map_item(&item, None)?;
/// assert_eq!(pubs[0].topic.as_str(), "site-a/nemo/tools/12/enabled");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct TopicMapper {
    prefix: String,
    rewrites: Vec<Rewrite>,
    /// Configured routes by exact kind.
    exact: HashMap<String, Template>,
    /// Configured routes by kind prefix, longest prefix first.
    patterns: Vec<(String, Template)>,
    /// The plugin's templates, parallel to `EVENT_KINDS`.
    defaults: Vec<Template>,
    fallback: Template,
    state: Option<StateTopics>,
}

#[derive(Debug, Clone)]
struct StateTopics {
    template: Template,
    retain: bool,
    /// The template's levels, `{prefix}` filled in (for [`TopicMapper::is_state_topic`]).
    levels: Vec<String>,
}

impl Default for TopicMapper {
    /// The mapper of [`TopicsConfig::default`]: pass-through, plugin routes, state documents.
    fn default() -> Self {
        match TopicMapper::from_config(&TopicsConfig::default()) {
            Ok(m) => m,
            // The default configuration is covered by tests; this arm is unreachable.
            Err(e) => unreachable!("default topics config is invalid: {e}"),
        }
    }
}

/// A kind (`tool_enabled`), a kind prefix (`task_*`) or `*` (every kind).
fn route_key_ok(key: &str) -> bool {
    match key.strip_suffix('*') {
        Some(stem) => stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        None => {
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }
    }
}

fn levels_error(key: String, value: &str, reason: TemplateError) -> ConfigError {
    ConfigError::Levels {
        key,
        value: value.to_owned(),
        reason,
    }
}

fn check_topic_levels(key: impl Fn() -> String, value: &str) -> Result<(), ConfigError> {
    check_levels(value)
        .and_then(|()| check_literal(value))
        .map_err(|reason| levels_error(key(), value, reason))
}

fn template(
    key: impl Fn() -> String,
    value: &str,
    fields: Option<&[&str]>,
) -> Result<Template, ConfigError> {
    Template::parse(value, fields).map_err(|reason| ConfigError::Template {
        key: key(),
        value: value.to_owned(),
        reason,
    })
}

impl TopicMapper {
    /// Validates `cfg` and builds the mapper.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first bad key: a prefix or rewrite with an empty level,
    /// wildcard or control character; a route key that is not a kind (or kind prefix with
    /// `*`); a template (route, `fallback`, `state_template`) with unbalanced braces, an
    /// invalid or unknown placeholder, a wildcard or an empty level. A placeholder is unknown
    /// when the route's key is a kind the plugin sends and that kind's payload has no such
    /// field (`{prefix}`, `{kind}`, `{tool_id}` and `{tool_name}` are always accepted); routes
    /// of other kinds and `*` patterns may name any field.
    ///
    /// ```
    /// use nemo_topics::{TopicMapper, TopicsConfig};
    /// let mut cfg = TopicsConfig::default();
    /// cfg.routes.insert("tool_enabled".into(), "{prefix}/in-use/{tool_idd}".into());
    /// let err = TopicMapper::from_config(&cfg).unwrap_err();
    /// assert_eq!(err.key(), "routes.tool_enabled");
    /// assert!(err.to_string().contains("unknown placeholder '{tool_idd}'"));
    /// ```
    pub fn from_config(cfg: &TopicsConfig) -> Result<TopicMapper, ConfigError> {
        check_topic_levels(|| "prefix".to_owned(), &cfg.prefix)?;
        for (i, r) in cfg.rewrites.iter().enumerate() {
            check_topic_levels(|| format!("rewrites[{i}].from"), &r.from)?;
            check_topic_levels(|| format!("rewrites[{i}].to"), &r.to)?;
        }
        let mut exact = HashMap::new();
        let mut patterns = Vec::new();
        for (kind, source) in &cfg.routes {
            let key = || format!("routes.{kind}");
            if !route_key_ok(kind) {
                return Err(ConfigError::RouteKey { key: key() });
            }
            match kind.strip_suffix('*') {
                Some(stem) => patterns.push((stem.to_owned(), template(key, source, None)?)),
                None => {
                    let fields = EventKind::family_of(kind).map(defaults::fields);
                    exact.insert(kind.clone(), template(key, source, fields.as_deref())?);
                }
            }
        }
        patterns.sort_by_key(|(stem, _)| std::cmp::Reverse(stem.len()));
        let defaults = EVENT_KINDS
            .iter()
            .map(|row| {
                let fields = defaults::fields(row);
                template(
                    || "routes".to_owned(),
                    &defaults::template(row),
                    Some(&fields),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let fallback = template(|| "fallback".to_owned(), &cfg.fallback, None)?;
        let state = if cfg.state_topics {
            Some(StateTopics {
                template: template(|| "state_template".to_owned(), &cfg.state_template, None)?,
                retain: cfg.state_retain,
                levels: cfg
                    .state_template
                    .replace("{prefix}", &cfg.prefix)
                    .split('/')
                    .map(str::to_owned)
                    .collect(),
            })
        } else {
            None
        };
        Ok(TopicMapper {
            prefix: cfg.prefix.clone(),
            rewrites: cfg.rewrites.clone(),
            exact,
            patterns,
            defaults,
            fallback,
            state,
        })
    }

    /// Whether `topic` is one of the tool-state documents this mapper adds (`state_template`;
    /// never when `state_topics` is off): documents of the bridge's own, not events the plugin
    /// queued, so NEMO's message log leaves them out. A placeholder matches one topic level.
    ///
    /// ```
    /// let m = nemo_topics::TopicMapper::default();
    /// assert!(m.is_state_topic("nemo/tools/12/state"));
    /// assert!(!m.is_state_topic("nemo/tools/12/enabled"));
    /// assert!(!m.is_state_topic("nemo/tools/12/x/state"));
    /// ```
    pub fn is_state_topic(&self, topic: &str) -> bool {
        let Some(state) = &self.state else {
            return false;
        };
        let levels: Vec<&str> = topic.split('/').collect();
        levels.len() == state.levels.len()
            && state.levels.iter().zip(&levels).all(|(want, got)| {
                match (want.find('{'), want.rfind('}')) {
                    (Some(open), Some(close)) => {
                        let (head, tail) = (&want[..open], &want[close + 1..]);
                        got.len() > head.len() + tail.len()
                            && got.starts_with(head)
                            && got.ends_with(tail)
                    }
                    _ => want == got,
                }
            })
    }

    /// The publications for a queue item (a v1 item from the plugin, which carries its topic).
    ///
    /// The first publication is the main one, with [`PayloadRef::Original`] and the item's
    /// retain flag. Its topic is the producer's, rewritten by the first matching rewrite, unless
    /// a configured route covers the item's kind: then the route's template. With state topics
    /// on, a tool state publication may follow (see the crate docs).
    ///
    /// `event` is the item's payload parsed, if the caller parsed it anyway (it supplies the
    /// kind). Without routes and state topics the payload is never looked at (the bridge's
    /// hot path: ~35 ns per item); otherwise its top-level members are read here with a
    /// borrowed parse that decodes only the fields a template needs (~0.5 µs). A payload that
    /// is not a JSON object, or has no `event` kind, is passed through (never rejected).
    ///
    /// # Errors
    ///
    /// [`MapError::MissingField`] when a route needs a field the payload lacks;
    /// [`MapError::InvalidTopic`] when a rewrite or route produces an invalid (too long) topic.
    ///
    /// ```
    /// use nemo_topics::{TopicMapper, TopicsConfig};
    /// use nemo_events::QueueItem;
    /// let mut cfg = TopicsConfig::default();
    /// cfg.routes.insert("tool_enabled".into(), "{prefix}/in-use/{tool_name}".into());
    /// let mapper = TopicMapper::from_config(&cfg)?;
    /// let item = QueueItem::parse(br#"{"topic": "nemo/tools/12/enabled", "payload": "{\"event\": \"tool_enabled\", \"tool_id\": 12, \"tool_name\": \"Etcher #2\"}", "qos": 1, "retain": false}"#)?;
    /// assert_eq!(mapper.map_item(&item, None)?[0].topic.as_str(), "nemo/in-use/Etcher _2");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_item(
        &self,
        item: &QueueItem,
        event: Option<&NemoEvent>,
    ) -> Result<Vec<Publication>, MapError> {
        if self.exact.is_empty() && self.patterns.is_empty() && self.state.is_none() {
            return Ok(vec![self.pass_through(item)?]);
        }
        // The item's payload is the event's JSON; re-serialize the event only if the payload
        // is somehow not an object although the caller parsed an event from it.
        let reserialized;
        let mut parsed = Fields::parse(&item.payload);
        if parsed.is_none()
            && let Some(e) = event
        {
            reserialized = e.to_json();
            parsed = Fields::parse(&reserialized);
        }
        let kind: Option<Cow<'_, str>> = match event {
            Some(e) => Some(Cow::Borrowed(e.kind())),
            None => parsed.as_ref().and_then(|f| f.str("event")),
        };
        let kind = kind.as_deref();
        let main = match kind.and_then(|k| self.route(k)) {
            Some(t) => Publication {
                topic: self.render(t, kind.unwrap_or_default(), parsed.as_ref())?,
                payload: PayloadRef::Original,
                retain: item.retain,
            },
            None => self.pass_through(item)?,
        };
        let mut out = Vec::with_capacity(2);
        out.push(main);
        if let (Some(kind), Some(fields)) = (kind, parsed.as_ref()) {
            out.extend(self.state_publication(kind, fields)?);
        }
        Ok(out)
    }

    /// The publications for a typed event (a Rust producer's event, which has no topic).
    ///
    /// The main topic is the configured route of the event's kind, else the plugin's topic for
    /// that kind (DESIGN §2), else the `fallback` route (`{prefix}/events/{kind}`). Its payload
    /// is the event's JSON ([`PayloadRef::Generated`]), not retained. With state topics on, a
    /// tool state publication may follow.
    ///
    /// # Errors
    ///
    /// As for [`map_item`](Self::map_item).
    ///
    /// ```
    /// use nemo_topics::TopicMapper;
    /// let event = nemo_events::NemoEvent::parse(r#"{"event": "area_access", "access_id": 1201, "area_id": 3}"#)?;
    /// let pubs = TopicMapper::default().map_event(&event)?;
    /// assert_eq!(pubs[0].topic.as_str(), "nemo/area_access/1201");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_event(&self, event: &NemoEvent) -> Result<Vec<Publication>, MapError> {
        let json = event.to_json();
        let kind = event.kind();
        let (topic, state) = {
            let fields = Fields::parse(&json);
            let template = self
                .route(kind)
                .or_else(|| self.default_route(kind))
                .unwrap_or(&self.fallback);
            let topic = self.render(template, kind, fields.as_ref())?;
            let state = match &fields {
                Some(f) => self.state_publication(kind, f)?,
                None => None,
            };
            (topic, state)
        };
        let mut out = Vec::with_capacity(2);
        out.push(Publication {
            topic,
            payload: PayloadRef::Generated(json),
            retain: false,
        });
        out.extend(state);
        Ok(out)
    }

    /// The configured route for `kind`: exact key, else the longest matching `prefix*` key.
    fn route(&self, kind: &str) -> Option<&Template> {
        if let Some(t) = self.exact.get(kind) {
            return Some(t);
        }
        self.patterns
            .iter()
            .find(|(stem, _)| kind.starts_with(stem.as_str()))
            .map(|(_, t)| t)
    }

    /// The plugin's route for `kind`, if it is a kind of the table of event kinds or of a
    /// family of one.
    fn default_route(&self, kind: &str) -> Option<&Template> {
        defaults::row_index(kind).and_then(|i| self.defaults.get(i))
    }

    fn pass_through(&self, item: &QueueItem) -> Result<Publication, MapError> {
        let topic = match self
            .rewrites
            .iter()
            .find_map(|r| r.apply(item.topic.as_str()))
        {
            Some(rewritten) => Topic::new(rewritten)?,
            None => item.topic.clone(),
        };
        Ok(Publication {
            topic,
            payload: PayloadRef::Original,
            retain: item.retain,
        })
    }

    fn render(
        &self,
        t: &Template,
        kind: &str,
        fields: Option<&Fields<'_>>,
    ) -> Result<Topic, MapError> {
        let text = t
            .render(&self.prefix, kind, fields)
            .map_err(|m| MapError::MissingField {
                kind: kind.to_owned(),
                field: m.0,
                template: t.source().to_owned(),
            })?;
        Ok(Topic::new(text)?)
    }

    fn state_publication(
        &self,
        kind: &str,
        fields: &Fields<'_>,
    ) -> Result<Option<Publication>, MapError> {
        let Some(st) = &self.state else {
            return Ok(None);
        };
        let Some(doc) = state::document(kind, fields) else {
            return Ok(None);
        };
        // An event without a usable tool_id gets no state publication (its main one is fine).
        let Ok(text) = st.template.render(&self.prefix, kind, Some(fields)) else {
            return Ok(None);
        };
        Ok(Some(Publication {
            topic: Topic::new(text)?,
            payload: PayloadRef::Generated(doc),
            retain: st.retain,
        }))
    }
}
