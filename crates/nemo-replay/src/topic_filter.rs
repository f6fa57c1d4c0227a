//! MQTT topic filters (`+` one level, `#` the rest) for `--topic`.

use std::fmt;

/// A validated MQTT topic filter such as `nemo/tools/+/enabled` or `nemo/#`.
///
/// Matching follows MQTT 3.1.1 §4.7: `+` matches exactly one level (possibly
/// empty), `#` must be last and matches the parent level and everything below;
/// topics starting with `$` are not matched by a filter starting with a wildcard.
///
/// ```
/// use nemo_replay::TopicFilter;
/// let f: TopicFilter = "nemo/tools/+/enabled".parse()?;
/// assert!(f.matches("nemo/tools/12/enabled"));
/// assert!(!f.matches("nemo/tools/12/disabled"));
/// assert!("nemo/#".parse::<TopicFilter>()?.matches("nemo"));
/// # Ok::<(), nemo_replay::TopicFilterError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TopicFilter(String);

/// Why a topic filter is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic filter {filter:?}: {reason}")]
pub struct TopicFilterError {
    filter: String,
    reason: &'static str,
}

impl std::str::FromStr for TopicFilter {
    type Err = TopicFilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| {
            Err(TopicFilterError {
                filter: s.to_owned(),
                reason,
            })
        };
        if s.is_empty() {
            return err("empty");
        }
        if s.contains('\0') {
            return err("contains NUL");
        }
        let levels: Vec<&str> = s.split('/').collect();
        for (i, level) in levels.iter().enumerate() {
            if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
                return err("'#' must be a whole level and the last one");
            }
            if level.contains('+') && *level != "+" {
                return err("'+' must be a whole level");
            }
        }
        Ok(TopicFilter(s.to_owned()))
    }
}

impl TopicFilter {
    /// The filter text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `topic` (a topic name, no wildcards) matches this filter.
    pub fn matches(&self, topic: &str) -> bool {
        if topic.starts_with('$') && (self.0.starts_with('+') || self.0.starts_with('#')) {
            return false;
        }
        let mut f = self.0.split('/');
        let mut t = topic.split('/');
        loop {
            match (f.next(), t.next()) {
                (Some("#"), _) => return true,
                (Some("+"), Some(_)) => {}
                (Some(fl), Some(tl)) if fl == tl => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicFilter({:?})", self.0)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(filter: &str, topic: &str) -> bool {
        filter
            .parse::<TopicFilter>()
            .map(|f| f.matches(topic))
            .unwrap_or(false)
    }

    #[test]
    fn exact_plus_and_hash() {
        assert!(m("nemo/tools/12/enabled", "nemo/tools/12/enabled"));
        assert!(!m("nemo/tools/12/enabled", "nemo/tools/1/enabled"));
        assert!(m("nemo/tools/+/+", "nemo/tools/12/enabled"));
        assert!(!m("nemo/tools/+/+", "nemo/tools/12"));
        assert!(m("nemo/tools/+", "nemo/tools/12"));
        assert!(!m("nemo/tools/+", "nemo/tools/12/enabled"));
        assert!(m("nemo/#", "nemo"));
        assert!(m("nemo/#", "nemo/areas/3"));
        assert!(m("#", "nemo/areas/3"));
        assert!(!m("#", "$SYS/broker/uptime"));
        assert!(m("+/+", "/x"));
        assert!(!m("nemo/tools/12", "nemo/tools/12/enabled"));
    }

    #[test]
    fn invalid_filters_are_refused() {
        for bad in ["", "nemo/#/x", "nemo/a#", "nemo/a+/b", "a\0b"] {
            assert!(bad.parse::<TopicFilter>().is_err(), "{bad:?} accepted");
        }
    }
}
