//! The names of the Redis keys: those of one queue ([`Keys`]) and the two the NEMO plugin
//! reads and writes ([`STATUS_KEY`], [`CONTROL_KEY`]).
//!
//! The bottom of the crate: it imports no other module, so the configuration (which defaults
//! to these names), the connection and the plugin-compatible keys ([`crate::compat`]) all use
//! it without importing one another in a circle.

/// Default status key (see [`crate::compat`]).
pub const STATUS_KEY: &str = "NEMO_mqtt_bridge_status";
/// Default control list (see [`crate::compat`]).
pub const CONTROL_KEY: &str = "NEMO_mqtt_bridge_control";

/// The Redis keys of one queue.
///
/// ```
/// let k = nemo_redis::Keys::new("nemo_mqtt_events");
/// assert_eq!(k.source, "nemo_mqtt_events");
/// assert_eq!(k.processing, "{nemo_mqtt_events}:processing");
/// assert_eq!(k.dead, "{nemo_mqtt_events}:dead");
/// assert_eq!(k.lease, "{nemo_mqtt_events}:lease");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The list, stream or channel the producer writes to.
    pub source: String,
    /// List mode: items taken and not yet confirmed.
    pub processing: String,
    /// Dead-letter list.
    pub dead: String,
    /// Single-active lease.
    pub lease: String,
}

impl Keys {
    /// The keys for queue `key`.
    pub fn new(key: &str) -> Self {
        Keys {
            source: key.to_string(),
            processing: format!("{{{key}}}:processing"),
            dead: format!("{{{key}}}:dead"),
            lease: format!("{{{key}}}:lease"),
        }
    }
}
