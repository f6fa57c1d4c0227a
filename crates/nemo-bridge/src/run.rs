//! The life of a bridge: connect, compete for the queue, serve, reload, stop.
//!
//! ```text
//!   open the queue ──► [lock?] standby … won ──► connect broker ──► serve (pipeline) ─┬─ stop: drain, nack the rest,
//!   (Redis, or NEMO's            ▲               (and the displays)                  │  offline status, disconnect
//!    queue table)                └──── lock lost: nack at once, disconnect quietly ──┤
//!                                                                                    └─ reload: re-read the settings,
//!                                                                                       switch broker, serve again
//! ```
//!
//! [`run`] is driven by [`Control`] messages (the binary turns signals into them); the queue's
//! reload requests join them ([`crate::control`]). What a reload changes is applied in one place,
//! `live`; the queue and its lock are [`crate::queue`]'s.

use std::sync::{Arc, Mutex};

use nemo_redis::{BridgeStatus, Lease};
use nemo_source::BoxedSource;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::Config;
use crate::control::{Control, Controls, ReloadReason, TEARDOWN, stop_deadline, stop_limit};
use crate::error::BridgeError;
use crate::figures::{FigureBoard, Flow};
use crate::http::{Health, Note};
use crate::live::{Live, Outlets, Started, reload_config};
use crate::pipeline::{Pipeline, StopMode};
use crate::queue::{Consumer, Diagnostics, Lock, Queue};
use crate::settings::{RowState, Settings};
use crate::watchdog::{Heartbeat, Watchdog};

/// Run the bridge until a [`Control::Shutdown`] (or the control channel closes).
///
/// `config` must be valid ([`Config::validate`]), as [`Settings::load`] gives it; `settings`
/// loads it again on [`Control::Reload`], and polls NEMO's database for a changed row.
///
/// # Errors
/// [`BridgeError`] when the HTTP address cannot be bound, the queue's settings cannot work, or
/// the broker rejects the bridge at the start. Outages are waited out, not returned.
pub async fn run(
    config: Config,
    mut settings: Settings,
    control: mpsc::Receiver<Control>,
) -> Result<(), BridgeError> {
    let health = Arc::new(Health::default());
    health.set_note(Note::Page, settings.state().note());
    let _ = crate::http::prometheus();
    // Redis list mode with the lease, and NEMO's queue table (always): one active bridge.
    health.set_lease_required(
        config.lease_enabled() || config.nemo.source == nemo_db::Source::Database,
    );
    let http_task = crate::http::start(&config.http.listen, health.clone()).await?;
    let mut controls = Controls::spawn(control, stop_limit(config.drain_timeout()));

    // The queue (Redis, or NEMO's table) and its background work: reload requests, the status
    // for NEMO's page, the queue figures.
    let (status_tx, status_rx) = watch::channel(BridgeStatus::Disconnected);
    let diag = Arc::new(Mutex::new(Diagnostics::new()));
    note_applied(&diag, &config, &settings, ReloadReason::Startup);
    let figures = FigureBoard::default();
    let opened = Queue::open(
        &config,
        &mut controls,
        &health,
        status_rx,
        diag.clone(),
        &figures,
    );
    let Some(queue) = opened.await? else {
        return Ok(());
    };
    health.set_queue_is_table(queue.is_table());
    let poll_task = settings.spawn_poller(controls.sender(), health.clone());

    // What the active bridge reports to; the queue figures follow the publisher in use.
    let (publisher_tx, publishers) = watch::channel(None);
    let out = Outlets {
        health: health.clone(),
        status_tx,
        publisher_tx,
        figures: figures.clone(),
    };
    let figures_task = figures.spawn_publisher(queue.kind(), publishers);
    // The last line of defence: exit (the service manager restarts us) if a running pipeline
    // stops turning; see `watchdog`.
    let heartbeat = Heartbeat::new();
    let _watchdog = Watchdog::exit_on_stall(heartbeat.clone(), config.stall_limit())
        .map_err(|source| BridgeError::Watchdog { source })?;

    let mut cfg = config; // in force; a standby's reloads change it too
    let token = Lease::new_token();
    let stop_at: tokio::time::Instant;
    let mut last: Option<Live> = None;
    'compete: loop {
        // Single active consumer: wait as standby — with no broker connection — until the lock
        // is ours.
        let mut won = queue.candidate();
        if let Some(candidate) = won.as_mut() {
            let table = queue.is_table();
            while let Some(c) = candidate.wait(&token, &mut controls, &health, table).await {
                let Control::Reload(why) = c else {
                    stop_at = tokio::time::Instant::now();
                    break 'compete;
                };
                cfg = reloaded(&mut settings, cfg, &health, &controls, &diag, why).await;
            }
            health.set_lease_held(true);
        }
        let Consumer {
            mut source,
            mut lock,
        } = queue.consumer(won).await?;
        // Connect the broker; a reload while waiting for it (or for the queue before) is
        // applied first: it may name another broker, e.g. once NEMO's database is up.
        let started = loop {
            if let Some(why) = controls.take_deferred() {
                cfg = reloaded(&mut settings, cfg, &health, &controls, &diag, why).await;
            }
            match Live::start(cfg.clone(), settings.store(), &mut controls, &out).await? {
                Started::Reload(why) => {
                    cfg = reloaded(&mut settings, cfg, &health, &controls, &diag, why).await;
                }
                Started::Live(live) => break Some(*live),
                Started::Stopped => break None,
            }
        };
        let Some(mut live) = started else {
            stop_at = tokio::time::Instant::now();
            drop(source);
            queue.release(lock, stop_at + TEARDOWN).await;
            health.set_lease_held(false);
            break 'compete;
        };
        loop {
            let ended;
            let flow = figures.flow.clone();
            (ended, source) =
                serve(source, flow, &live, &heartbeat, &mut controls, &mut lock).await;
            match ended {
                Ended::Reload(why) => reload(&mut live, &mut settings, &controls, &diag, why).await,
                Ended::Shutdown(at) => {
                    stop_at = at;
                    drop(source);
                    let deadline = stop_deadline(stop_at, live.cfg.drain_timeout());
                    queue.release(lock, deadline).await;
                    health.set_lease_held(false);
                    last = Some(live);
                    break 'compete;
                }
                Ended::LockLost => {
                    warn!(
                        "lock lost; stopped taking, returned unconfirmed items, left the broker to the bridge that holds it now"
                    );
                    drop(source);
                    health.set_lease_held(false);
                    queue.lost(lock).await;
                    cfg = live.cfg.clone();
                    live.close(tokio::time::Instant::now() + TEARDOWN, false)
                        .await;
                    // Let the standby that may have taken over try first (a stop still ends
                    // the wait; a reload is applied when this bridge is active again).
                    tokio::select! {
                        c = controls.recv() => if !matches!(c, Some(Control::Reload(_))) {
                            stop_at = tokio::time::Instant::now();
                            break 'compete;
                        },
                        _ = tokio::time::sleep(AFTER_LOSS) => {}
                    }
                    continue 'compete;
                }
            }
        }
    }

    // Graceful stop: offline status, disconnect, the queue's last status, background tasks.
    // Every step is best effort within one deadline: whatever is down, the stop ends within
    // the drain + 1 s of the request.
    let drain = last
        .as_ref()
        .map_or(cfg.drain_timeout(), |l| l.cfg.drain_timeout());
    let deadline = stop_deadline(stop_at, drain);
    poll_task.abort();
    figures_task.abort();
    if let Some(live) = last {
        live.close(deadline, true).await;
    }
    drop(out); // the status for NEMO's page ends with its last sender
    queue.close(deadline).await;
    if let Some(t) = http_task {
        t.abort();
    }
    info!("stopped");
    Ok(())
}

/// How long a bridge that lost the lock waits before it competes again, so that the standby
/// that took over (it tries every second) is not pushed out again at once.
const AFTER_LOSS: std::time::Duration = std::time::Duration::from_millis(1_500);

/// Why a pipeline run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Stop requested at this instant.
    Shutdown(tokio::time::Instant),
    Reload(ReloadReason),
    LockLost,
}

/// One pipeline run on `source` with the live settings, until a control request or the loss of
/// the lock; gives the source back.
async fn serve(
    source: BoxedSource,
    flow: Arc<Flow>,
    live: &Live,
    heartbeat: &Heartbeat,
    controls: &mut Controls,
    lock: &mut Lock,
) -> (Ended, BoxedSource) {
    heartbeat.set_limit(live.cfg.stall_limit()); // a reload may have changed the timeouts
    let mut pipeline = Pipeline::new(
        source,
        live.sink(),
        live.prep.clone(),
        live.pipeline_options(),
    )
    .with_heartbeat(heartbeat.clone())
    .with_flow(flow);
    let mut ended = Ended::LockLost;
    let report = pipeline
        .run(async {
            loop {
                tokio::select! {
                    c = controls.recv() => {
                        ended = match c {
                            Some(Control::Reload(why)) => Ended::Reload(why),
                            _ => Ended::Shutdown(tokio::time::Instant::now()),
                        };
                        return StopMode::Drain;
                    }
                    lost = lock.lost() => if lost {
                        ended = Ended::LockLost;
                        return StopMode::Immediate;
                    },
                }
            }
        })
        .await;
    info!(acked = report.acked, dead = report.dead, nacked = report.nacked, republished = report.republished, reason = ?ended, "pipeline stopped");
    (ended, pipeline.into_source())
}

/// A reload between two pipeline runs.
async fn reload(
    live: &mut Live,
    settings: &mut Settings,
    controls: &Controls,
    diag: &Mutex<Diagnostics>,
    why: ReloadReason,
) {
    if live.reload(settings).await {
        controls.set_stop_limit(stop_limit(live.cfg.drain_timeout()));
        note_applied(diag, &live.cfg, settings, why);
    }
}

/// Re-read the configuration before the bridge is live (a standby, or a wait for the broker):
/// the new one, or `cfg` when the reload was rejected.
async fn reloaded(
    settings: &mut Settings,
    cfg: Config,
    health: &Health,
    controls: &Controls,
    diag: &Mutex<Diagnostics>,
    why: ReloadReason,
) -> Config {
    match reload_config(settings, &cfg, health).await {
        Some(new) => {
            controls.set_stop_limit(stop_limit(new.drain_timeout()));
            note_applied(diag, &new, settings, why);
            new
        }
        None => cfg,
    }
}

/// Tell the status for NEMO's page which configuration is in use, and why.
fn note_applied(
    diag: &Mutex<Diagnostics>,
    cfg: &Config,
    settings: &Settings,
    reason: ReloadReason,
) {
    let row = match settings.state() {
        RowState::Applied { id, updated_at } => Some((*id, updated_at.clone())),
        _ => None,
    };
    if let Ok(mut d) = diag.lock() {
        d.applied(cfg, row, reason);
    }
}
