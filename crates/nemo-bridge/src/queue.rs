//! The queue side of the bridge: the Redis queue of plugin 1.x, or the table of plugin 2.x in
//! NEMO's PostgreSQL (`[nemo] source = "database"`).
//!
//! Both give the pipeline a [`BoxedSource`] and the lifecycle a single-active lock: the Redis
//! lease (list mode) or the queue's PostgreSQL advisory lock. Around them run the backend's
//! own background work:
//!
//! | | Redis (1.x) | PostgreSQL table (2.x) |
//! |---|---|---|
//! | reload requests | control list `NEMO_mqtt_bridge_control` | `LISTEN nemo_mqtt_reload` |
//! | status for NEMO | key `mqtt_bridge_status` | row `nemo_mqtt_mqttbridgestatus` (heartbeat 15 s, diagnostics) |
//! | queue depth gauge | `LLEN`/`XINFO` every 3 s | unprocessed rows above the ack floor, every 15 s |
//! | single active | lease key (list mode) | advisory lock on the connection that reads and acks |

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nemo_redis::{BridgeStatus, ControlCommand, Lease, LeaseKeeper, Redis, StatusRefresher};
use nemo_source::{BoxedSource, boxed};
use nemo_table_queue::{QueueDb, QueueLock, SourceShared, Wake};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::Config;
use crate::http::Health;
use crate::run::{BridgeError, Control};
use crate::status_row::{self, status_loop};
pub use crate::status_row::{Diagnostics, HEARTBEAT};

/// How often a standby tries the queue's advisory lock.
const LOCK_POLL: Duration = Duration::from_secs(1);
/// How long one read of the control list blocks: it returns at once when a command arrives,
/// so this only sets how often an idle bridge asks (one of its few Redis commands at rest).
const CONTROL_WAIT: Duration = Duration::from_secs(30);
/// How often the depth gauge and Redis's health (`/readyz`) are refreshed.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// The queue a bridge consumes, with its background tasks.
pub(crate) enum Queue {
    Redis(RedisQueue),
    Table(Box<TableQueue>),
}

pub(crate) struct RedisQueue {
    redis: Redis,
    lease_on: bool,
    control_task: tokio::task::JoinHandle<()>,
    stats_task: tokio::task::JoinHandle<()>,
    refresher_task: tokio::task::JoinHandle<StatusRefresher>,
}

pub(crate) struct TableQueue {
    db: QueueDb,
    wake: Arc<Wake>,
    shared: SourceShared,
    active: watch::Sender<bool>,
    reload_task: tokio::task::JoinHandle<()>,
    status_task: tokio::task::JoinHandle<()>,
    purge_task: Option<tokio::task::JoinHandle<()>>,
    status_rx: watch::Receiver<BridgeStatus>,
    diag: Arc<Mutex<Diagnostics>>,
}

/// The lock a bridge must hold before it consumes.
pub(crate) enum Candidate {
    Redis(Lease),
    Table(Box<QueueLock>),
}

/// A won lock: what keeps it and tells when it is lost.
pub(crate) enum Held {
    Nothing,
    Redis(LeaseKeeper),
    Table,
}

impl Candidate {
    /// Try once: `Ok(true)` = ours.
    pub(crate) async fn try_acquire(&mut self, token: &str) -> Result<bool, String> {
        match self {
            Candidate::Redis(l) => l.acquire(token).await.map_err(|e| e.to_string()),
            Candidate::Table(l) => l.try_acquire().await.map_err(|e| e.to_string()),
        }
    }

    /// How long a standby waits between tries.
    pub(crate) fn poll(&self) -> Duration {
        match self {
            Candidate::Redis(l) => {
                (l.ttl() / 4).clamp(Duration::from_millis(100), Duration::from_secs(2))
            }
            Candidate::Table(_) => LOCK_POLL,
        }
    }

    /// What is waited for, for the log.
    pub(crate) fn what(&self) -> String {
        match self {
            Candidate::Redis(l) => format!("lease {}", l.key()),
            Candidate::Table(_) => "the advisory lock on nemo_mqtt_mqtt_eventqueue".into(),
        }
    }
}

impl Queue {
    /// Connect (waiting for Redis with backoff; the database connects lazily) and start the
    /// background tasks. `Ok(None)`: a stop request came first.
    pub(crate) async fn open(
        cfg: &Config,
        ctl_rx: &mut mpsc::Receiver<Control>,
        ctl_tx: &mpsc::Sender<Control>,
        health: &Arc<Health>,
        status_rx: watch::Receiver<BridgeStatus>,
        diag: Arc<Mutex<Diagnostics>>,
    ) -> Result<Option<Queue>, BridgeError> {
        match cfg.nemo.source {
            nemo_db::Source::Redis => RedisQueue::open(cfg, ctl_rx, ctl_tx, health, status_rx)
                .await
                .map(|q| q.map(Queue::Redis)),
            nemo_db::Source::Database => TableQueue::open(cfg, ctl_tx, health, status_rx, diag)
                .map(|q| Some(Queue::Table(Box::new(q)))),
        }
    }

    /// The lock to win before consuming; `None` when this queue needs none (Redis without the
    /// lease: stream and pub/sub modes, or the lease turned off).
    pub(crate) fn candidate(&self) -> Option<Candidate> {
        match self {
            Queue::Redis(q) => q.lease_on.then(|| Candidate::Redis(q.redis.lease())),
            Queue::Table(q) => Some(Candidate::Table(Box::new(q.db.lock()))),
        }
    }

    /// The source to consume now that `won` is held. The receiver turns `false` when the lock
    /// is lost.
    pub(crate) async fn source(
        &self,
        won: Option<Candidate>,
    ) -> Result<(BoxedSource, Held, Option<watch::Receiver<bool>>), BridgeError> {
        match (self, won) {
            (Queue::Redis(q), won) => {
                let held = match won {
                    Some(Candidate::Redis(lease)) => Held::Redis(LeaseKeeper::spawn(lease)),
                    _ => Held::Nothing,
                };
                let rx = match &held {
                    Held::Redis(k) => Some(k.watch()),
                    _ => None,
                };
                Ok((boxed(q.redis.source().await?), held, rx))
            }
            (Queue::Table(q), Some(Candidate::Table(lock))) => {
                let source = (*lock).into_source(q.wake.clone(), q.shared.clone())?;
                let rx = source.held();
                let _ = q.active.send(true);
                Ok((boxed(source), Held::Table, Some(rx)))
            }
            (Queue::Table(q), _) => Err(BridgeError::Database(nemo_db::DbError::LockLost {
                url: q.db.redacted_url().to_string(),
            })),
        }
    }

    /// The lock is given up (stop or lost): the source is dropped by then.
    pub(crate) async fn release(&self, held: Held, limit: Duration) {
        match held {
            Held::Nothing => {}
            Held::Redis(k) => {
                // Best effort: an unreleased lease lapses after its TTL.
                if tokio::time::timeout(limit, k.release()).await.is_err() {
                    warn!("lease: no answer from Redis; it lapses after its TTL");
                }
            }
            // Dropping the source closed its connection: the session's lock went with it.
            // The bridge stays "active" for the status row until `close` writes the last one.
            Held::Table => {}
        }
    }

    /// The lock was lost: stop keeping it.
    pub(crate) async fn lost(&self, held: Held) {
        match held {
            Held::Redis(k) => {
                let _ = k.stop().await;
            }
            Held::Table => {
                if let Queue::Table(q) = self {
                    let _ = q.active.send(false);
                }
            }
            Held::Nothing => {}
        }
    }

    /// Stop the background tasks; the last status (Redis key, or the status row) is written
    /// within `deadline`.
    pub(crate) async fn close(self, deadline: tokio::time::Instant) {
        match self {
            Queue::Redis(q) => {
                q.control_task.abort();
                q.stats_task.abort();
                let status = async {
                    match q.refresher_task.await {
                        Ok(refresher) => refresher.stop(BridgeStatus::Disconnected).await,
                        Err(_) => Ok(()),
                    }
                };
                if let Some(Err(e)) =
                    crate::run::best_effort(deadline, "write the disconnected status key", status)
                        .await
                {
                    warn!(error = %e, "redis: cannot write the final status");
                }
                crate::run::best_effort(deadline, "close the Redis connection", q.redis.quit())
                    .await;
            }
            Queue::Table(q) => {
                q.reload_task.abort();
                q.status_task.abort();
                // Let an aborted heartbeat end before the last status is written.
                let _ = q.status_task.await;
                if let Some(t) = q.purge_task {
                    t.abort();
                }
                if *q.active.borrow() {
                    status_row::write_final(&q.db, &q.diag, &q.shared, deadline).await;
                }
                drop(q.status_rx);
                crate::run::best_effort(deadline, "close the database connections", q.db.close())
                    .await;
            }
        }
    }

    /// True for NEMO's queue table (plugin 2.x), false for Redis.
    pub(crate) fn is_table(&self) -> bool {
        matches!(self, Queue::Table(_))
    }
}

impl RedisQueue {
    async fn open(
        cfg: &Config,
        ctl_rx: &mut mpsc::Receiver<Control>,
        ctl_tx: &mpsc::Sender<Control>,
        health: &Arc<Health>,
        mut status_rx: watch::Receiver<BridgeStatus>,
    ) -> Result<Option<RedisQueue>, BridgeError> {
        let redis_cfg = cfg.redis_config();
        // Redis may be down when the bridge starts: it waits for it (retrying with backoff)
        // and a stop request meanwhile ends it.
        let Some(redis) =
            crate::run::until_stop(ctl_rx, Redis::connect_retrying(&redis_cfg, &cfg.backoff))
                .await?
        else {
            info!("stopped before Redis could be reached");
            return Ok(None);
        };
        health.set_redis(true);
        if redis_cfg.mode == nemo_redis::Mode::Pubsub {
            warn!(
                "redis: pubsub mode is at-most-once: events sent while the bridge is down are lost"
            );
        }
        let control_list = redis.control_list().await?;
        let control_task = {
            let tx = ctl_tx.clone();
            tokio::spawn(async move {
                let mut failing = false;
                loop {
                    match control_list.next(CONTROL_WAIT).await {
                        Ok(Some(ControlCommand::ReloadConfig)) => {
                            failing = false;
                            info!("control: reload_config requested");
                            if tx.send(Control::Reload).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(ControlCommand::Unknown(c))) => {
                            warn!(command = %c.escape_debug(), "control: unknown command ignored")
                        }
                        Ok(None) => failing = false,
                        Err(e) => {
                            if !failing {
                                warn!(error = %e, "control: cannot read the control list; retrying");
                                failing = true;
                            }
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            })
        };

        // Compat status key, refreshed in the background; follows the broker state.
        let refresher = redis
            .status_key()
            .spawn_refresher(BridgeStatus::Disconnected);
        let refresher_task = tokio::spawn(async move {
            loop {
                let s = *status_rx.borrow_and_update();
                refresher.set(s);
                if status_rx.changed().await.is_err() {
                    return refresher;
                }
            }
        });

        // Queue depth gauge and Redis health, every `STATS_EVERY`. Bounded by the command
        // timeout: a Redis that stalls (accepts, never answers) makes /readyz say so.
        let stats_task = {
            let stats = redis.stats();
            let health = health.clone();
            let limit = redis_cfg.command_timeout();
            tokio::spawn(async move {
                let mut down = false;
                loop {
                    let depth = match tokio::time::timeout(limit, stats.depth()).await {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
                    };
                    match depth {
                        Ok(d) => {
                            metrics::gauge!("nemo_bridge_queue_depth").set(d as f64);
                            health.set_redis(true);
                            if down {
                                info!("redis: reachable again");
                                down = false;
                            }
                        }
                        Err(e) => {
                            health.set_redis(false);
                            if !down {
                                warn!(error = %e, "redis: not reachable");
                                down = true;
                            }
                        }
                    }
                    tokio::time::sleep(STATS_EVERY).await;
                }
            })
        };
        Ok(Some(RedisQueue {
            redis,
            lease_on: cfg.lease_enabled(),
            control_task,
            stats_task,
            refresher_task,
        }))
    }
}

impl TableQueue {
    fn open(
        cfg: &Config,
        ctl_tx: &mpsc::Sender<Control>,
        health: &Arc<Health>,
        status_rx: watch::Receiver<BridgeStatus>,
        diag: Arc<Mutex<Diagnostics>>,
    ) -> Result<TableQueue, BridgeError> {
        let db = QueueDb::open(&cfg.nemo)?;
        info!(
            url = db.redacted_url(),
            "queue: NEMO's table nemo_mqtt_mqtt_eventqueue (plugin 2.x); Redis is not used"
        );
        let mut listener = db.listen();
        let wake = listener.wake();
        let reload_task = {
            let tx = ctl_tx.clone();
            let diag = diag.clone();
            tokio::spawn(async move {
                while listener.reload().await.is_some() {
                    info!(
                        "database: NEMO's MQTT page was saved (NOTIFY nemo_mqtt_reload); reloading"
                    );
                    if let Ok(mut d) = diag.lock() {
                        d.pending_reason = Some(status_row::ReloadReason::Notify);
                    }
                    if tx.send(Control::Reload).await.is_err() {
                        return;
                    }
                }
            })
        };
        let shared = SourceShared::default();
        let (active, active_rx) = watch::channel(false);
        let status_task = tokio::spawn(status_loop(
            db.clone(),
            status_rx.clone(),
            active_rx,
            diag.clone(),
            shared.clone(),
            health.clone(),
        ));
        let purge_task = (cfg.nemo.processed_keep_days > 0).then(|| {
            let db = db.clone();
            let keep = Duration::from_secs(cfg.nemo.processed_keep_days * 86_400);
            let active = active.subscribe();
            tokio::spawn(purge_loop(db, keep, active))
        });
        health.set_redis(true);
        Ok(TableQueue {
            db,
            wake,
            shared,
            active,
            reload_task,
            status_task,
            purge_task,
            status_rx,
            diag,
        })
    }
}

/// Opt-in retention: once an hour, the active bridge deletes processed rows older than `keep`.
async fn purge_loop(db: QueueDb, keep: Duration, mut active: watch::Receiver<bool>) {
    loop {
        if *active.borrow_and_update() {
            match db.purge_processed(keep).await {
                Ok(0) => {}
                Ok(n) => info!(
                    rows = n,
                    days = keep.as_secs() / 86_400,
                    "database: deleted processed queue rows past nemo.processed_keep_days"
                ),
                Err(e) => warn!(error = %e, "database: cannot delete old processed queue rows"),
            }
            tokio::time::sleep(Duration::from_secs(3_600)).await;
        } else if active.changed().await.is_err() {
            return;
        }
    }
}
