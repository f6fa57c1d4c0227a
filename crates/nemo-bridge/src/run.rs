//! The bridge's lifecycle: connect, hold the lease, run the pipeline, reload, stop.
//!
//! ```text
//!   connect Redis ──► connect broker ──► [lease?] standby … won ──► pipeline ─┬─ SIGTERM/SIGINT: drain, nack rest,
//!                                              ▲                             │  offline status, disconnect, Ok(())
//!                                              └── lease lost (nack at once) ┤
//!                                                                            └─ SIGHUP / reload_config: re-read the
//!                                                                               config, connect the new broker, drain
//!                                                                               the old one, continue on the same queue
//! ```
//!
//! [`run`] is driven by [`Control`] messages (the binary turns signals into them); the control
//! list `NEMO_mqtt_bridge_control` feeds `reload_config` into the same channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nemo_db::NemoStore;
use nemo_mqtt::{ConnStatus, MqttError, Publisher};
use nemo_redis::{BridgeStatus, Lease, RedisError};
use nemo_topics::TopicMapper;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError};
use crate::http::{Health, Note};
use crate::message_log::{LogTap, LoggedSink, MessageLog};
use crate::pipeline::{Pipeline, PipelineOptions, StopMode};
use crate::prepare::ItemPreparer;
use crate::queue::{Diagnostics, Queue};
use crate::settings::{Phase, Settings};
use crate::status_row::ReloadReason;
use crate::watchdog::{Heartbeat, Watchdog};

/// The exit status of a bridge whose pipeline stalled (`EX_SOFTWARE`); see [`crate::watchdog`].
pub const STALL_EXIT_CODE: i32 = 70;

/// A request to the running bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop gracefully (SIGINT/SIGTERM).
    Shutdown,
    /// Re-read the configuration and apply it (SIGHUP, `reload_config`).
    Reload,
}

/// Why the bridge could not run.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Redis could not be reached or failed.
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// NEMO's database (the queue of plugin 2.x) cannot be used.
    #[error("database: {0}")]
    Database(#[from] nemo_db::DbError),
    /// The broker could not be reached or rejected us.
    #[error("mqtt: {0}")]
    Mqtt(#[from] MqttError),
    /// The watchdog thread could not be started.
    #[error("cannot start the watchdog thread: {source}")]
    Watchdog {
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP endpoint could not be started.
    #[error("http: cannot listen on {addr}: {source}")]
    Http {
        /// The configured address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

fn preparer(cfg: &Config) -> Result<ItemPreparer, ConfigError> {
    let mapper =
        TopicMapper::from_config(&cfg.topics).map_err(|e| ConfigError::Section(e.to_string()))?;
    Ok(ItemPreparer::new(mapper, cfg.hmac.key_bytes()?).with_filters(cfg.filters.clone()))
}

/// The message-log writer a configuration asks for: `nemo.message_log` on (the page's "log
/// messages") and NEMO's database configured.
fn message_log(cfg: &Config, store: Option<Arc<dyn NemoStore>>) -> Option<MessageLog> {
    let store = store.filter(|_| cfg.nemo.message_log)?;
    info!(
        keep = cfg.nemo.message_log_keep,
        "message log: writing every publication to NEMO's message log"
    );
    Some(MessageLog::spawn(store, cfg.nemo.message_log_keep))
}

/// What a reload changes in a running bridge, and the one place that applies it.
struct Live {
    cfg: Config,
    publisher: Publisher,
    mqtt_task: tokio::task::JoinHandle<()>,
    prep: ItemPreparer,
    msglog: Option<MessageLog>,
}

impl Live {
    /// Apply `new` (between two pipeline runs): connect the new broker when its settings
    /// changed, rebuild the preparer (topics, HMAC key, event filters), restart the message log.
    async fn apply(
        &mut self,
        new: Config,
        store: Option<Arc<dyn NemoStore>>,
        health: &Arc<Health>,
        status_tx: &watch::Sender<BridgeStatus>,
    ) {
        self.publisher = switch_publisher(
            self.publisher.clone(),
            &self.cfg,
            &new,
            &mut self.mqtt_task,
            health,
            status_tx,
        )
        .await;
        match preparer(&new) {
            Ok(p) => self.prep = p,
            Err(e) => warn!(error = %e, "reload: keeping the old topic/hmac settings"),
        }
        if let Some(old) = self.msglog.take() {
            old.close(Duration::from_millis(500)).await;
        }
        self.msglog = message_log(&new, store);
        self.cfg = new;
    }

    /// The sink of the next pipeline run: the broker, logged when the message log is on.
    fn sink(&self) -> LoggedSink<Publisher> {
        let tap = self
            .msglog
            .as_ref()
            .map_or_else(LogTap::off, MessageLog::tap);
        LoggedSink::new(self.publisher.clone(), tap)
    }
}

fn pipeline_options(cfg: &Config) -> PipelineOptions {
    // (final_timeout stays at its default, 1.5 s: see stop_limit.)
    PipelineOptions {
        window: cfg.mqtt.inflight as usize,
        drain_timeout: cfg.drain_timeout(),
        ..PipelineOptions::default()
    }
}

/// Follow the broker connection: health, metrics, the compat status key, one log line per change.
fn watch_mqtt(
    mut state: watch::Receiver<nemo_mqtt::ConnState>,
    health: Arc<Health>,
    status: watch::Sender<BridgeStatus>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let s = *state.borrow_and_update();
            if last != Some(s) {
                let up = s.is_connected();
                health.set_mqtt(up);
                let _ = status.send(if up {
                    BridgeStatus::Connected
                } else {
                    BridgeStatus::Disconnected
                });
                if let Some(prev) = last {
                    let prev: nemo_mqtt::ConnState = prev;
                    if s.reconnects > prev.reconnects {
                        metrics::counter!("nemo_bridge_reconnects_total")
                            .increment(s.reconnects - prev.reconnects);
                    }
                }
                match s.status {
                    ConnStatus::Connected => info!(reconnects = s.reconnects, "mqtt: connected"),
                    ConnStatus::Disconnected => warn!("mqtt: disconnected; reconnecting"),
                    ConnStatus::Failed => error!("mqtt: reconnect policy gave up"),
                    ConnStatus::Closed => info!("mqtt: closed"),
                }
                last = Some(s);
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    })
}

/// Why a pipeline run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Shutdown,
    Reload,
    LeaseLost,
}

/// Run the bridge until a [`Control::Shutdown`] (or the control channel closes).
///
/// `config` must be valid ([`Config::validate`]), as [`Settings::load`] gives it; `settings`
/// loads it again on [`Control::Reload`], and polls NEMO's database for a changed row.
///
/// # Errors
/// [`BridgeError`] when Redis or the broker cannot be reached at the start, or the HTTP address
/// cannot be bound. Later outages are ridden out (reconnects), not returned.
pub async fn run(
    config: Config,
    mut settings: Settings,
    mut control: mpsc::Receiver<Control>,
) -> Result<(), BridgeError> {
    let cfg = config;
    let health = Arc::new(Health::default());
    health.set_note(Note::Page, settings.state().note());
    let _ = crate::http::prometheus();
    // Redis list mode with the lease, and NEMO's queue table (always): one active bridge.
    let lock_on = cfg.lease_enabled() || cfg.nemo.source == nemo_db::Source::Database;
    health.set_lease_required(lock_on);

    let http_task = if cfg.http.listen.is_empty() {
        None
    } else {
        let addr = cfg.http.listen.parse().map_err(|_| ConfigError::Invalid {
            key: "http.listen".into(),
            value: cfg.http.listen.clone(),
            allowed: "host:port".into(),
        })?;
        let t = crate::http::serve(addr, health.clone())
            .await
            .map_err(|source| BridgeError::Http {
                addr: cfg.http.listen.clone(),
                source,
            })?;
        info!(listen = %cfg.http.listen, "http: serving /healthz /readyz /metrics");
        Some(t)
    };

    // Merge the caller's control messages with the control list's reload requests. The first
    // stop request arms the stop guard; a second one ends the process at once.
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Control>(16);
    let stop_limit_ms = Arc::new(AtomicU64::new(stop_limit(&cfg).as_millis() as u64));
    {
        let tx = ctl_tx.clone();
        let limit = stop_limit_ms.clone();
        tokio::spawn(async move {
            let mut stopping = false;
            while let Some(c) = control.recv().await {
                if c == Control::Shutdown {
                    if stopping {
                        error!(
                            exit_code = FORCED_STOP_EXIT_CODE,
                            "second stop request: exiting now; events in flight stay in Redis and are published first at the next start"
                        );
                        std::process::exit(FORCED_STOP_EXIT_CODE);
                    }
                    stopping = true;
                    spawn_stop_guard(Duration::from_millis(limit.load(Ordering::Relaxed)));
                }
                if tx.send(c).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Control::Shutdown).await;
        });
    }
    // The queue: Redis (plugin 1.x) or NEMO's table (plugin 2.x), with its own background
    // work (reload requests, the status for NEMO, the depth gauge); see `queue`.
    let (status_tx, status_rx) = watch::channel(BridgeStatus::Disconnected);
    let diag = Arc::new(std::sync::Mutex::new(Diagnostics::new()));
    if let Ok(mut d) = diag.lock() {
        d.applied(&cfg, applied_row(&settings), ReloadReason::Startup);
    }
    let Some(queue) =
        Queue::open(&cfg, &mut ctl_rx, &ctl_tx, &health, status_rx, diag.clone()).await?
    else {
        return Ok(());
    };
    health.set_queue_is_table(queue.is_table());

    // NEMO's configuration page: a changed row (found by the poll) reloads like reload_config.
    let poll_task = settings.spawn_poller(ctl_tx.clone(), health.clone());

    let connect = Publisher::connect(cfg.mqtt_config(), cfg.backoff.build());
    let Some(publisher) = until_stop(&mut ctl_rx, connect).await? else {
        info!("stopped before the broker could be reached");
        poll_task.abort();
        queue.close(tokio::time::Instant::now() + TEARDOWN).await;
        return Ok(());
    };
    let mqtt_task = watch_mqtt(publisher.state(), health.clone(), status_tx.clone());
    let prep = preparer(&cfg)?;
    let msglog = message_log(&cfg, settings.store());

    // The last line of defence: exit (the service manager restarts us) if a running pipeline
    // stops turning; see `watchdog`.
    let heartbeat = Heartbeat::new();
    let stall_limit = cfg.stall_limit();
    let _watchdog = Watchdog::spawn(heartbeat.clone(), stall_limit, move |silent| {
        error!(
            silent_s = silent.as_secs(),
            limit_s = stall_limit.as_secs(),
            "pipeline made no progress for {} s (a bug; please report it with this log); exiting with status {STALL_EXIT_CODE} so that the service manager restarts the bridge; events in flight are still in Redis and are published again after the restart",
            silent.as_secs()
        );
        std::process::exit(STALL_EXIT_CODE);
    })
    .map_err(|source| BridgeError::Watchdog { source })?;

    let mut live = Live {
        cfg,
        publisher,
        mqtt_task,
        prep,
        msglog,
    };
    let token = Lease::new_token();
    'outer: loop {
        // Single active consumer: wait as standby until the lock (Redis lease, or the queue
        // table's advisory lock) is ours.
        let mut won = queue.candidate();
        if let Some(candidate) = won.as_mut() {
            let poll = candidate.poll();
            let mut logged = false;
            let mut failing: Option<String> = None;
            loop {
                let tried = candidate.try_acquire(&token).await;
                if queue.is_table() {
                    // The lock is the database's: /readyz says whether it answers.
                    health.set_redis(tried.is_ok());
                }
                if tried.is_ok() && failing.take().is_some() {
                    info!(lock = %candidate.what(), "the lock can be tried again");
                }
                match tried {
                    Ok(true) => break,
                    Ok(false) => {
                        if !logged {
                            info!(
                                lock = %candidate.what(),
                                "another bridge is active; waiting as standby"
                            );
                            logged = true;
                        }
                    }
                    Err(e) => {
                        // Once per outage (and again when the reason changes), not every try.
                        let why = e.to_string();
                        if failing.as_deref() != Some(why.as_str()) {
                            warn!(error = %why, lock = %candidate.what(), "cannot acquire the lock; retrying");
                            failing = Some(why);
                        }
                    }
                }
                tokio::select! {
                    c = ctl_rx.recv() => match c {
                        Some(Control::Reload) => {
                            if let Some(new) = reload_config(&mut settings, &live.cfg, &health).await {
                                stop_limit_ms.store(stop_limit(&new).as_millis() as u64, Ordering::Relaxed);
                                note_applied(&diag, &new, &settings);
                                live.apply(new, settings.store(), &health, &status_tx).await;
                            }
                        }
                        _ => break 'outer,
                    },
                    _ = tokio::time::sleep(poll) => {}
                }
            }
            info!(lock = %candidate.what(), "won; this bridge is active");
            health.set_lease_held(true);
        }
        let (mut source, mut held, mut lease_rx) = queue.source(won).await?;
        loop {
            heartbeat.set_limit(live.cfg.stall_limit()); // a reload may have changed the timeouts
            let mut pipeline = Pipeline::new(
                source,
                live.sink(),
                live.prep.clone(),
                pipeline_options(&live.cfg),
            )
            .with_heartbeat(heartbeat.clone());
            let mut ended = Ended::Shutdown;
            let report = pipeline
                .run(async {
                    loop {
                        tokio::select! {
                            c = ctl_rx.recv() => {
                                ended = match c {
                                    Some(Control::Reload) => Ended::Reload,
                                    _ => Ended::Shutdown,
                                };
                                return StopMode::Drain;
                            }
                            lost = lease_lost(&mut lease_rx) => {
                                if lost {
                                    ended = Ended::LeaseLost;
                                    return StopMode::Immediate;
                                }
                            }
                        }
                    }
                })
                .await;
            info!(acked = report.acked, dead = report.dead, nacked = report.nacked, republished = report.republished, reason = ?ended, "pipeline stopped");
            source = pipeline.into_source();
            match ended {
                Ended::Shutdown => {
                    drop(source);
                    queue
                        .release(
                            std::mem::replace(&mut held, crate::queue::Held::Nothing),
                            LEASE_RELEASE,
                        )
                        .await;
                    health.set_lease_held(false);
                    break 'outer;
                }
                Ended::LeaseLost => {
                    warn!("lock lost; stopped taking and returned unconfirmed items");
                    drop(source);
                    health.set_lease_held(false);
                    queue
                        .lost(std::mem::replace(&mut held, crate::queue::Held::Nothing))
                        .await;
                    continue 'outer;
                }
                Ended::Reload => {
                    if let Some(new) = reload_config(&mut settings, &live.cfg, &health).await {
                        stop_limit_ms.store(stop_limit(&new).as_millis() as u64, Ordering::Relaxed);
                        note_applied(&diag, &new, &settings);
                        live.apply(new, settings.store(), &health, &status_tx).await;
                    }
                }
            }
        }
    }

    // Graceful stop: offline status, disconnect, the queue's last status, background tasks.
    // Every step is best effort within one deadline: whatever is down, the stop ends.
    let deadline = tokio::time::Instant::now() + TEARDOWN;
    poll_task.abort();
    let shutdown = best_effort(
        deadline,
        "publish the offline status and disconnect",
        live.publisher.shutdown(),
    )
    .await;
    if let Some(Err(e)) = shutdown {
        warn!(error = %e, "mqtt: shutdown was not clean");
    }
    live.mqtt_task.abort();
    if let Some(log) = live.msglog.take() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        log.close(left.min(Duration::from_secs(1))).await;
    }
    let _ = status_tx.send(BridgeStatus::Disconnected);
    drop(status_tx);
    queue.close(deadline).await;
    if let Some(t) = http_task {
        t.abort();
    }
    info!("stopped");
    Ok(())
}

/// The configuration row in use, for the status row's `applied_fingerprint`.
fn applied_row(settings: &Settings) -> Option<(i64, String)> {
    match settings.state() {
        crate::settings::RowState::Applied { id, updated_at } => Some((*id, updated_at.clone())),
        _ => None,
    }
}

fn note_applied(diag: &std::sync::Mutex<Diagnostics>, cfg: &Config, settings: &Settings) {
    if let Ok(mut d) = diag.lock() {
        d.applied(cfg, applied_row(settings), ReloadReason::Signal);
    }
}

/// Run `fut` (a connect at the start) unless a stop request comes first (`Ok(None)`); a reload
/// request meanwhile is noted and dropped: the configuration is read again at the next start.
pub(crate) async fn until_stop<T, E>(
    ctl: &mut mpsc::Receiver<Control>,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<Option<T>, E> {
    let mut fut = std::pin::pin!(fut);
    loop {
        tokio::select! {
            r = &mut fut => return r.map(Some),
            c = ctl.recv() => match c {
                Some(Control::Reload) => info!("reload requested while starting; the configuration in use is the one just read"),
                _ => return Ok(None),
            },
        }
    }
}

/// How long releasing the lease may take at a stop.
const LEASE_RELEASE: Duration = Duration::from_millis(500);

/// How long the steps after the pipeline may take together at a stop.
const TEARDOWN: Duration = Duration::from_millis(2_500);

/// The exit status when a stop is cut short: a second stop request, or the stop guard.
pub const FORCED_STOP_EXIT_CODE: i32 = 1;

/// The longest a stop may take: the drain, the final ack, the lease and the teardown fit in
/// it with a margin (`shutdown.drain_timeout_s` + 5 s).
fn stop_limit(cfg: &Config) -> Duration {
    cfg.drain_timeout() + Duration::from_secs(5)
}

/// Run `fut` until `deadline`; past it, say what was skipped and go on.
pub(crate) async fn best_effort<T>(
    deadline: tokio::time::Instant,
    what: &str,
    fut: impl Future<Output = T>,
) -> Option<T> {
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(v) => Some(v),
        Err(_) => {
            warn!("stop: could not {what} in time (a server does not answer); skipped");
            None
        }
    }
}

/// End the process if the stop has not ended within `limit`: a plain OS thread, so it fires
/// even if the runtime is wedged. Nothing is lost: what was not confirmed is still in Redis.
fn spawn_stop_guard(limit: Duration) {
    let spawned = std::thread::Builder::new()
        .name("stop-guard".into())
        .spawn(move || {
            std::thread::sleep(limit);
            error!(
                limit_s = limit.as_secs_f64(),
                exit_code = FORCED_STOP_EXIT_CODE,
                "stop did not end within shutdown.drain_timeout_s + 5 s; exiting now; events in flight stay in Redis and are published first at the next start"
            );
            std::process::exit(FORCED_STOP_EXIT_CODE);
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the stop guard; the stop is bounded by its steps only");
    }
}

/// Resolves `true` when the lease is lost; never resolves without a lease.
async fn lease_lost(rx: &mut Option<watch::Receiver<bool>>) -> bool {
    match rx {
        None => std::future::pending().await,
        Some(rx) => {
            if !*rx.borrow_and_update() {
                return true;
            }
            match rx.changed().await {
                Ok(()) => !*rx.borrow(),
                Err(_) => {
                    // The keeper ended; treat as lost.
                    true
                }
            }
        }
    }
}

async fn reload_config(settings: &mut Settings, old: &Config, health: &Health) -> Option<Config> {
    match settings.load(Phase::Reload).await {
        Ok(loaded) => {
            health.set_note(Note::Page, loaded.state.note());
            health.set_note(Note::Reload, None);
            let new = loaded.config;
            if new.redis != old.redis || new.lease != old.lease {
                warn!("reload: [redis]/[lease] changes take effect at the next restart");
            }
            info!("reload: configuration re-read");
            Some(new)
        }
        Err(e) => {
            error!(error = %e, "reload: rejected; keeping the running configuration");
            health.set_note(
                Note::Reload,
                Some(format!("reload rejected ({e}); running configuration kept")),
            );
            None
        }
    }
}

/// Connect the new broker when `[mqtt]`/`[status]`/`[backoff]` changed; close the old one.
///
/// The new broker gets `mqtt.connect_timeout_s` + 5 s to answer (a typo on NEMO's page must
/// not leave the bridge retrying a broker that does not exist while events wait); past that the
/// old connection stays, `/readyz` says so in its note, and the next reload tries again.
async fn switch_publisher(
    old: Publisher,
    running: &Config,
    new: &Config,
    mqtt_task: &mut tokio::task::JoinHandle<()>,
    health: &Arc<Health>,
    status_tx: &watch::Sender<BridgeStatus>,
) -> Publisher {
    if old.config() == &new.mqtt_config() && running.backoff == new.backoff {
        return old;
    }
    info!("reload: broker settings changed; connecting the new broker");
    let limit = Duration::from_secs(new.mqtt.connect_timeout_s) + Duration::from_secs(5);
    let connect = Publisher::connect(new.mqtt_config(), new.backoff.build());
    let result = match tokio::time::timeout(limit, connect).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no connection within {} s", limit.as_secs())),
    };
    match result {
        Ok(p) => {
            mqtt_task.abort();
            if let Err(e) = old.shutdown().await {
                warn!(error = %e, "mqtt: old connection did not close cleanly");
            }
            *mqtt_task = watch_mqtt(p.state(), health.clone(), status_tx.clone());
            health.set_note(Note::Broker, None);
            p
        }
        Err(e) => {
            let urls = new.redacted().mqtt.url.join(", ");
            error!(error = %e, new = %urls, "reload: cannot connect the new broker; keeping the old one");
            health.set_note(
                Note::Broker,
                Some(format!(
                    "mqtt: the new broker {urls} did not answer ({e}); still on the previous one"
                )),
            );
            old
        }
    }
}
