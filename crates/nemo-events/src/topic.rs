//! Validated MQTT topic names.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest topic MQTT can carry: its length is a 16-bit prefix (MQTT 3.1.1 §1.5.3).
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// A validated MQTT topic **name**, one a message can be published to.
///
/// Invariant (checked by [`Topic::new`] and on deserialize): non-empty, at most
/// [`MAX_TOPIC_BYTES`] bytes of UTF-8, no NUL character, and no wildcard `+` or `#` (those are
/// only legal in subscription *filters*; a broker disconnects a client that publishes to one).
/// Levels are separated by `/`; empty levels (`a//b`, `/a`) are legal MQTT and are kept.
///
/// ```
/// use nemo_events::{Topic, TopicError};
///
/// let t = Topic::new("nemo/tools/12/enabled")?;
/// assert_eq!(t.levels().nth(3), Some("enabled"));
/// assert_eq!(Topic::new("nemo/tools/+/enabled"), Err(TopicError::Wildcard { ch: '+' }));
/// # Ok::<(), TopicError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(String);

/// Why a string is not a valid MQTT topic name.
///
/// ```
/// use nemo_events::{Topic, TopicError};
///
/// assert_eq!(Topic::new(""), Err(TopicError::Empty));
/// assert_eq!(Topic::new("a\0b").unwrap_err().to_string(), "topic contains a NUL character");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic is the empty string.
    #[error("topic is empty")]
    Empty,
    /// The topic is longer than [`MAX_TOPIC_BYTES`].
    #[error("topic is {len} bytes long, the MQTT maximum is 65535")]
    TooLong {
        /// Length of the rejected topic in bytes.
        len: usize,
    },
    /// The topic contains U+0000, which MQTT forbids.
    #[error("topic contains a NUL character")]
    Nul,
    /// The topic contains a subscription wildcard, which cannot be published to.
    #[error("topic contains the wildcard '{ch}', which is only allowed in subscriptions")]
    Wildcard {
        /// The wildcard found: `+` or `#`.
        ch: char,
    },
}

impl Topic {
    /// Validates `s` as a topic name.
    ///
    /// # Errors
    ///
    /// [`TopicError::Empty`], [`TopicError::TooLong`], [`TopicError::Nul`] or
    /// [`TopicError::Wildcard`], checked in that order.
    ///
    /// ```
    /// assert!(nemo_events::Topic::new("nemo/areas/3").is_ok());
    /// assert!(nemo_events::Topic::new("nemo/#").is_err());
    /// ```
    pub fn new(s: impl Into<String>) -> Result<Topic, TopicError> {
        let s = s.into();
        validate(&s)?;
        Ok(Topic(s))
    }

    /// The topic as a string slice.
    ///
    /// ```
    /// assert_eq!(nemo_events::Topic::new("a/b")?.as_str(), "a/b");
    /// # Ok::<(), nemo_events::TopicError>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The topic as an owned `String`, without copying.
    ///
    /// ```
    /// assert_eq!(nemo_events::Topic::new("a/b")?.into_string(), "a/b");
    /// # Ok::<(), nemo_events::TopicError>(())
    /// ```
    pub fn into_string(self) -> String {
        self.0
    }

    /// The topic levels, split at `/` (always at least one, possibly empty, level).
    ///
    /// ```
    /// let t = nemo_events::Topic::new("nemo/tools/7/disabled")?;
    /// assert_eq!(t.levels().collect::<Vec<_>>(), ["nemo", "tools", "7", "disabled"]);
    /// # Ok::<(), nemo_events::TopicError>(())
    /// ```
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }
}

/// Checks the [`Topic`] invariant without allocating.
fn validate(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong { len: s.len() });
    }
    for b in s.bytes() {
        match b {
            0 => return Err(TopicError::Nul),
            b'+' | b'#' => return Err(TopicError::Wildcard { ch: char::from(b) }),
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Topic {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Topic {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl FromStr for Topic {
    type Err = TopicError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::new(s)
    }
}

impl TryFrom<String> for Topic {
    type Error = TopicError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Topic::new(s)
    }
}

impl TryFrom<&str> for Topic {
    type Error = TopicError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Topic::new(s)
    }
}

impl From<Topic> for String {
    fn from(t: Topic) -> String {
        t.0
    }
}

impl Serialize for Topic {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Topic::new(s).map_err(serde::de::Error::custom)
    }
}
