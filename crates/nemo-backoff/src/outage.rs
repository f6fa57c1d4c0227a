//! One log line per outage, not one per attempt.

use std::time::{Duration, Instant};

/// What a retry loop is waiting for, and since when: so that it warns once when an outage
/// begins (and once more when what it waits for changes), logs the attempts in between at
/// debug level, and says how long the outage lasted when it ends.
///
/// ```
/// let mut outage = nemo_backoff::Outage::default();
/// assert!(outage.waiting_for("the broker at mqtt://b:1883"), "the first failure: warn");
/// assert!(!outage.waiting_for("the broker at mqtt://b:1883"), "the same again: debug");
/// assert!(outage.waiting_for("the master of \"nemo\""), "something else now: warn");
/// assert!(outage.ended().is_some(), "connected: how long it took");
/// assert!(outage.ended().is_none(), "no outage to end");
/// ```
#[derive(Debug, Default, Clone)]
pub struct Outage {
    waiting: Option<(String, Instant)>,
}

impl Outage {
    /// A failed attempt that waits for `what`; `true` when that is news (a new outage, or a
    /// change of what is waited for): log it as a warning then, at debug level otherwise.
    pub fn waiting_for(&mut self, what: &str) -> bool {
        match &mut self.waiting {
            Some((w, _)) if w == what => false,
            Some((w, _)) => {
                *w = what.to_string();
                true
            }
            None => {
                self.waiting = Some((what.to_string(), Instant::now()));
                true
            }
        }
    }

    /// The attempt succeeded: how long the outage lasted, if there was one.
    pub fn ended(&mut self) -> Option<Duration> {
        self.waiting.take().map(|(_, since)| since.elapsed())
    }
}
