//! The status row of plugin 2.x (`nemo_mqtt_mqttbridgestatus`, key `default`), which NEMO's
//! status view (`/mqtt_bridge_status/`) shows: the broker state, a heartbeat, and
//! `bridge_diagnostics` (why and when the configuration was last applied, the last error).
//!
//! Only the active bridge writes it: when the broker state changes and every [`HEARTBEAT`];
//! a stopping bridge writes its last status only if the row is still its own.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nemo_db::QueueDb;
use nemo_db::queue::SourceShared;
use nemo_redis::BridgeStatus;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::http::Health;

/// How often the status row's heartbeat is written (NEMO's supervisor calls a bridge stale
/// after 90 s; the issue asks for at most 30 s).
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// What NEMO's status view shows about the bridge (`bridge_diagnostics`), kept up to date by
/// the lifecycle. No field may hold a secret.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    /// `startup`, `notify` (a save on NEMO's page) or `reload` (SIGHUP, the poll).
    pub last_reload_reason: String,
    /// When the configuration was last (re)applied, RFC 3339.
    pub last_reload_at: String,
    /// The applied configuration row: `(id, updated_at)`.
    pub applied: Option<(i64, String)>,
    /// The broker URLs in use (passwords redacted).
    pub broker: String,
    /// The reason of the next reload, set by whoever requested it.
    pub pending_reason: Option<&'static str>,
    /// This process among all bridges (pid and start time), so that a stopping bridge's last
    /// status never overwrites the row of a standby that took over.
    pub instance: String,
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Diagnostics {
    /// Diagnostics of this process, nothing applied yet.
    pub fn new() -> Diagnostics {
        let started = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        Diagnostics {
            instance: format!("{}-{started}", std::process::id()),
            ..Diagnostics::default()
        }
    }

    /// Record that `cfg` was applied now, for `reason` (or the pending reason).
    pub fn applied(&mut self, cfg: &Config, row: Option<(i64, String)>, reason: &'static str) {
        self.last_reload_reason = self.pending_reason.take().unwrap_or(reason).to_string();
        self.last_reload_at = now_rfc3339();
        self.applied = row;
        self.broker = cfg.redacted().mqtt.url.join(", ");
    }
}

/// `bridge_diagnostics`: the keys of the plugin's own bridge (`last_reload_reason`,
/// `last_reload_at`, `applied_fingerprint`, `last_error`, `diagnostics_updated_at`) and ours.
fn diagnostics_json(
    diag: &Arc<Mutex<Diagnostics>>,
    shared: &SourceShared,
    role: &str,
    pending: Option<u64>,
) -> serde_json::Value {
    let d = diag.lock().map(|d| d.clone()).unwrap_or_default();
    let last_error = shared
        .last_error
        .lock()
        .ok()
        .and_then(|e| e.clone())
        .unwrap_or_default();
    serde_json::json!({
        "bridge": "nemo-mqtt",
        "version": env!("CARGO_PKG_VERSION"),
        "source": "database",
        "role": role,
        "pid": std::process::id(),
        "instance": d.instance,
        "broker": d.broker,
        "queue_pending": pending,
        "last_reload_reason": d.last_reload_reason,
        "last_reload_at": d.last_reload_at,
        "applied_fingerprint": d.applied.map(|(id, at)| serde_json::json!({"id": id, "updated_at": at})),
        "last_error": last_error,
        "diagnostics_updated_at": now_rfc3339(),
    })
}

/// The status row for NEMO's page: written by the active bridge when the broker state changes
/// and every [`HEARTBEAT`]; the queue depth gauge with it.
pub(crate) async fn status_loop(
    db: QueueDb,
    mut broker: watch::Receiver<BridgeStatus>,
    mut active: watch::Receiver<bool>,
    diag: Arc<Mutex<Diagnostics>>,
    shared: SourceShared,
    health: Arc<Health>,
) {
    let mut failing: Option<String> = None;
    loop {
        if *active.borrow_and_update() {
            // Counted from the source's floor once it has read the table (from 0 it would
            // walk every processed row).
            let floor = shared.floor.load(Ordering::Relaxed);
            let pending = if floor < 0 {
                None
            } else {
                match db.pending(floor).await {
                    Ok(n) => {
                        metrics::gauge!("nemo_bridge_queue_depth").set(n as f64);
                        Some(n)
                    }
                    Err(_) => None,
                }
            };
            let status = *broker.borrow_and_update();
            let json = diagnostics_json(&diag, &shared, "active", pending);
            match db.write_status(status.as_str(), &json).await {
                Ok(()) => {
                    health.set_redis(true);
                    if failing.take().is_some() {
                        info!("database: status row written again");
                    }
                }
                Err(e) => {
                    let why = e.to_string();
                    health.set_redis(!e.is_transient());
                    if failing.as_deref() != Some(why.as_str()) {
                        warn!(error = %why, "database: cannot write the status row for NEMO's page; retrying");
                        failing = Some(why);
                    }
                }
            }
        }
        tokio::select! {
            r = broker.changed() => if r.is_err() { return },
            r = active.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
}

/// The last status of a stopping active bridge (`disconnected`), within `deadline`, unless a
/// standby took the row over meanwhile.
pub(crate) async fn write_final(
    db: &QueueDb,
    diag: &Arc<Mutex<Diagnostics>>,
    shared: &SourceShared,
    deadline: tokio::time::Instant,
) {
    let json = diagnostics_json(diag, shared, "stopped", None);
    let instance = diag.lock().map(|d| d.instance.clone()).unwrap_or_default();
    let write = db.write_final_status("disconnected", &json, &instance);
    match crate::run::best_effort(deadline, "write the disconnected status row", write).await {
        Some(Ok(false)) => {
            info!("database: another bridge wrote the status row since; left as it is")
        }
        Some(Err(e)) => warn!(error = %e, "database: cannot write the final status row"),
        _ => {}
    }
}
