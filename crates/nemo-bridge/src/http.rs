//! The operations endpoint: `/healthz`, `/readyz`, `/metrics`.
//!
//! * `/healthz` answers 200 while the process is up (a liveness probe).
//! * `/readyz` answers 200 only while the bridge reaches its queue (Redis, or NEMO's database
//!   for the queue table of plugin 2.x) and the broker and holds the single-active lock (when
//!   one is required); otherwise 503 with a JSON reason, e.g.
//!   `{"ready":false,"reason":"standby: another bridge holds the lease"}`. A ready bridge may
//!   still carry a remark in `reason` (200), e.g. `{"ready":true,"reason":"nemo: no enabled row
//!   in nemo_mqtt_mqttconfiguration; using the file's settings"}`.
//! * `/metrics` is the Prometheus text format of every `nemo_bridge_*` metric.
//!
//! ```
//! use nemo_bridge::http::Health;
//! let h = Health::default();
//! h.set_queue_reachable(true);
//! h.set_mqtt(true);
//! assert_eq!(h.not_ready_reason(), None);
//! h.set_lease_required(true);
//! assert!(h.not_ready_reason().is_some());
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// What `/readyz` looks at; shared by the lifecycle tasks.
#[derive(Debug, Default)]
pub struct Health {
    queue: AtomicBool,
    mqtt: AtomicBool,
    lease_required: AtomicBool,
    lease_held: AtomicBool,
    queue_is_table: AtomicBool,
    notes: Mutex<std::collections::BTreeMap<Note, String>>,
}

/// Who left a remark for `/readyz` (each has its own slot, so one clearing its remark leaves
/// the others').
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Note {
    /// NEMO's configuration row (no enabled row, a bad row, the database unreadable at a load).
    Page,
    /// The poll of NEMO's database.
    Poll,
    /// The last reload was rejected.
    Reload,
    /// The last switch to a new broker failed.
    Broker,
    /// The displays' broker (`[display]`) is not connected.
    Display,
}

impl Health {
    /// The queue's server reachable: Redis (plugin 1.x), or NEMO's database for its queue table
    /// (plugin 2.x).
    pub fn set_queue_reachable(&self, up: bool) {
        self.queue.store(up, Ordering::Relaxed);
    }
    /// The queue is NEMO's table (plugin 2.x), not Redis: `/readyz` then names the database,
    /// and the lock is the table's advisory lock.
    pub fn set_queue_is_table(&self, table: bool) {
        self.queue_is_table.store(table, Ordering::Relaxed);
    }
    /// Whether the displays' broker of the `[display]` feed is connected (`None`: no feed).
    /// Down is a remark in `/readyz`, not a 503: the events still flow; the gauge
    /// `nemo_display_connected` follows it.
    ///
    /// ```
    /// use nemo_bridge::http::Health;
    /// let h = Health::default();
    /// h.set_display(Some(false));
    /// assert!(h.note().unwrap().contains("display"));
    /// h.set_display(Some(true));
    /// assert_eq!(h.note(), None);
    /// ```
    pub fn set_display(&self, connected: Option<bool>) {
        if let Some(up) = connected {
            metrics::gauge!("nemo_display_connected").set(if up { 1.0 } else { 0.0 });
        }
        let note = (connected == Some(false))
            .then(|| "display: the displays' broker is not connected; retrying".to_owned());
        self.set_note(Note::Display, note);
    }
    /// Broker connected.
    pub fn set_mqtt(&self, up: bool) {
        self.mqtt.store(up, Ordering::Relaxed);
        metrics::gauge!("nemo_bridge_mqtt_connected").set(if up { 1.0 } else { 0.0 });
    }
    /// Whether this bridge must hold the lease to be ready.
    pub fn set_lease_required(&self, on: bool) {
        self.lease_required.store(on, Ordering::Relaxed);
    }
    /// Lease held.
    pub fn set_lease_held(&self, held: bool) {
        self.lease_held.store(held, Ordering::Relaxed);
        metrics::gauge!("nemo_bridge_lease_held").set(if held { 1.0 } else { 0.0 });
    }
    /// A remark `/readyz` shows in its `reason` without turning to 503, e.g. that NEMO's page
    /// has no enabled configuration and the file's settings are in use; `None` clears it.
    pub fn set_note(&self, from: Note, note: Option<String>) {
        let mut notes = self
            .notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match note {
            Some(n) => notes.insert(from, n),
            None => notes.remove(&from),
        };
    }
    /// Every current remark, joined with `"; "` (see [`set_note`](Self::set_note)).
    ///
    /// ```
    /// use nemo_bridge::http::{Health, Note};
    /// let h = Health::default();
    /// h.set_note(Note::Reload, Some("reload rejected".into()));
    /// h.set_note(Note::Page, Some("no enabled row".into()));
    /// assert_eq!(h.note().as_deref(), Some("no enabled row; reload rejected"));
    /// h.set_note(Note::Page, None);
    /// assert_eq!(h.note().as_deref(), Some("reload rejected"));
    /// ```
    pub fn note(&self) -> Option<String> {
        let notes = self
            .notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (!notes.is_empty()).then(|| notes.values().cloned().collect::<Vec<_>>().join("; "))
    }
    /// `None` when ready, else why not.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        let table = self.queue_is_table.load(Ordering::Relaxed);
        if !self.queue.load(Ordering::Relaxed) {
            return Some(if table {
                "database: not reachable"
            } else {
                "redis: not connected"
            });
        }
        // A standby has no broker connection (it connects once it holds the lock): say why.
        if self.lease_required.load(Ordering::Relaxed) && !self.lease_held.load(Ordering::Relaxed) {
            return Some(if table {
                "standby: another bridge holds the queue's lock"
            } else {
                "standby: another bridge holds the lease"
            });
        }
        if !self.mqtt.load(Ordering::Relaxed) {
            return Some("mqtt: not connected");
        }
        None
    }
}

/// The process-wide Prometheus recorder (installed on first use; later calls share it).
///
/// Returns `None` if another recorder was installed by someone else.
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().ok()?;
            // `install_recorder` leaves upkeep to the caller: without it, every histogram
            // sample (one per publish) is kept until the next scrape, so an unscraped bridge
            // grew by ~14 bytes per event (measured: +14 MB over a 1,000,000-event drain).
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "metrics: cannot start the upkeep thread; histograms are drained only by scrapes");
            }
            Some(handle)
        })
        .clone()
}

/// How often the Prometheus recorder drains histogram samples into its summaries.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    prom: Option<PrometheusHandle>,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(st): State<AppState>) -> Response {
    match st.health.not_ready_reason() {
        None => {
            let body = match st.health.note() {
                None => serde_json::json!({"ready": true}),
                Some(note) => serde_json::json!({"ready": true, "reason": note}),
            };
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"ready": false, "reason": reason})),
        )
            .into_response(),
    }
}

async fn metrics_text(State(st): State<AppState>) -> Response {
    match &st.prom {
        Some(h) => ([("content-type", "text/plain; version=0.0.4")], h.render()).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable\n",
        )
            .into_response(),
    }
}

/// The router of the three endpoints.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState {
            health,
            prom: prometheus(),
        })
}

/// Serve `/healthz`, `/readyz` and `/metrics` on `listen` (`http.listen`); `Ok(None)` when it
/// is empty (off).
///
/// # Errors
/// [`BridgeError::Config`](crate::BridgeError::Config) for an address that is not `host:port`, [`BridgeError::Http`](crate::BridgeError::Http) when
/// it cannot be bound.
pub async fn start(
    listen: &str,
    health: Arc<Health>,
) -> Result<Option<tokio::task::JoinHandle<()>>, crate::error::BridgeError> {
    if listen.is_empty() {
        return Ok(None);
    }
    let addr = listen
        .parse()
        .map_err(|_| crate::config::ConfigError::Invalid {
            key: "http.listen".into(),
            value: listen.to_owned(),
            allowed: "host:port".into(),
        })?;
    let task = serve(addr, health)
        .await
        .map_err(|source| crate::error::BridgeError::Http {
            addr: listen.to_owned(),
            source,
        })?;
    tracing::info!(listen = %listen, "http: serving /healthz /readyz /metrics");
    Ok(Some(task))
}

/// Bind `addr` and serve the endpoints in a background task.
///
/// # Errors
/// When the address cannot be bound (in use, not local).
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = router(health);
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "http: server stopped");
        }
    }))
}
