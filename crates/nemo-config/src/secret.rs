//! [`Secret`]: a string that never shows itself.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::REDACTED;

/// A secret string (a broker password, an HMAC key). Shown as `***` in `Debug` and
/// `Display`, so it cannot leak through logs or `{:?}` of a configuration; an empty secret
/// shows as empty (so "not set" stays visible). Serialization writes the real value (needed to
/// layer configurations); print [`redacted`](Secret::redacted) copies instead.
///
/// ```
/// use nemo_config::Secret;
/// let s = Secret::new("hunter2");
/// assert_eq!(format!("{s:?} {s}"), "\"***\" ***");
/// assert_eq!(s.expose(), "hunter2");
/// assert_eq!(s.redacted().expose(), "***");
/// assert_eq!(format!("{:?}", Secret::default()), "\"\"");
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself; only for handing it to a client library or a signer.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no secret is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `***` in place of a set secret, empty when none is set: a copy fit for printing
    /// (e.g. a configuration serialized for `--check-config`).
    pub fn redacted(&self) -> Secret {
        if self.0.is_empty() {
            Secret::default()
        } else {
            Secret::new(REDACTED)
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            write!(f, "\"{REDACTED}\"")
        }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            f.write_str(REDACTED)
        }
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}
