//! Connection state, published through a `tokio::sync::watch` channel.

/// Where the broker connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnStatus {
    /// Connected (CONNACK received).
    Connected,
    /// Lost; the client is reconnecting with the backoff policy.
    Disconnected,
    /// The backoff policy gave up (its `max_attempts` / `max_elapsed_ms`
    /// ran out); no further reconnects.
    Failed,
    /// Shut down on request.
    Closed,
}

/// A snapshot of the connection state.
///
/// `reconnects` counts successful reconnects after the first connect, so a
/// watcher can tell "connected again" from "still connected" and republish
/// what was in flight at once.
///
/// ```
/// use nemo_mqtt::{ConnState, ConnStatus};
/// let s = ConnState { status: ConnStatus::Connected, reconnects: 0 };
/// assert!(s.is_connected());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnState {
    /// Current status.
    pub status: ConnStatus,
    /// Successful reconnects so far (0 after the first connect).
    pub reconnects: u64,
}

impl ConnState {
    /// True when [`ConnStatus::Connected`].
    pub fn is_connected(&self) -> bool {
        self.status == ConnStatus::Connected
    }
}
