//! The queue side of the bridge: the Redis queue of plugin 1.x, or the table of plugin 2.x in
//! NEMO's PostgreSQL (`[nemo] source = "database"`).
//!
//! Both hand the lifecycle one `Consumer` — the [`BoxedSource`] the pipeline reads and acks,
//! and the single-active `Lock` it holds: the Redis lease (list mode) or the queue's
//! PostgreSQL advisory lock. Around them run the backend's own background work:
//!
//! | | Redis (1.x) | PostgreSQL table (2.x) |
//! |---|---|---|
//! | reload requests | control list `NEMO_mqtt_bridge_control` | `LISTEN nemo_mqtt_reload` |
//! | status for NEMO | key `mqtt_bridge_status` | row `nemo_mqtt_mqttbridgestatus` (heartbeat 15 s, diagnostics) |
//! | queue figures (gauge, [`crate::figures`]) | `LLEN`/`XINFO` every 5 s | unprocessed rows above the ack floor, every 15 s |
//! | single active | lease key (list mode) | advisory lock on the connection that reads and acks |

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nemo_redis::{BridgeStatus, ControlCommand, Lease, LeaseKeeper, Redis, StatusRefresher};
use nemo_source::{BoxedSource, boxed};
use nemo_table_queue::{QueueDb, QueueLock, SourceShared, Wake};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::Config;
use crate::control::{Control, Controls, ReloadReason, best_effort};
use crate::error::BridgeError;
use crate::figures::{Counts, FigureBoard};
use crate::http::Health;
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
    mode: nemo_redis::Mode,
    lease_on: bool,
    /// `true` while this bridge may write the status key: it holds the lease (or needs none).
    active: watch::Sender<bool>,
    control_task: tokio::task::JoinHandle<()>,
    stats_task: tokio::task::JoinHandle<()>,
    refresher_task: tokio::task::JoinHandle<Option<StatusRefresher>>,
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

/// The lock a bridge must hold before it consumes, while it competes for it.
pub(crate) struct Candidate {
    lock: CandidateLock,
    /// The standby was logged once.
    logged: bool,
    /// The last failure to try the lock, logged once per reason.
    failing: Option<String>,
}

enum CandidateLock {
    Redis(Lease),
    Table(Box<QueueLock>),
}

/// What a won lock needs while the bridge consumes.
enum Held {
    Nothing,
    Redis(LeaseKeeper),
    Table,
}

/// The single-active lock of a consuming bridge (or none, where the queue needs none).
pub(crate) struct Lock {
    held: Held,
    /// Turns `false` when the lock is lost.
    watch: Option<watch::Receiver<bool>>,
}

/// What the queue hands the lifecycle once this bridge may consume: the source the pipeline
/// reads and acks, and the lock that must stay held meanwhile.
pub(crate) struct Consumer {
    pub(crate) source: BoxedSource,
    pub(crate) lock: Lock,
}

impl Candidate {
    fn new(lock: CandidateLock) -> Candidate {
        Candidate {
            lock,
            logged: false,
            failing: None,
        }
    }

    /// Try the lock until it is ours (`None`) or a control request arrives (`Some`: the caller
    /// applies a reload and calls again, or stops). Says once that it waits as standby, and
    /// once per reason why the lock cannot be tried.
    pub(crate) async fn wait(
        &mut self,
        token: &str,
        controls: &mut Controls,
        health: &Health,
        is_table: bool,
    ) -> Option<Control> {
        let poll = self.poll();
        loop {
            let attempt = async {
                match &mut self.lock {
                    CandidateLock::Redis(l) => l.acquire(token).await.map_err(|e| e.to_string()),
                    CandidateLock::Table(l) => l.try_acquire().await.map_err(|e| e.to_string()),
                }
            };
            // A request ends a try that waits for a server that does not answer.
            let tried = tokio::select! {
                biased;
                c = controls.recv() => return Some(c.unwrap_or(Control::Shutdown)),
                t = attempt => t,
            };
            if is_table {
                // The lock is the database's: /readyz says whether it answers.
                health.set_queue_reachable(tried.is_ok());
            }
            if tried.is_ok() && self.failing.take().is_some() {
                info!(lock = %self.what(), "the lock can be tried again");
            }
            match tried {
                Ok(true) => {
                    info!(lock = %self.what(), "won; this bridge is active");
                    return None;
                }
                Ok(false) if !self.logged => {
                    info!(lock = %self.what(), "another bridge is active; waiting as standby");
                    self.logged = true;
                }
                Ok(false) => {}
                Err(why) => {
                    if self.failing.as_deref() != Some(why.as_str()) {
                        warn!(error = %why, lock = %self.what(), "cannot acquire the lock; retrying");
                        self.failing = Some(why);
                    }
                }
            }
            tokio::select! {
                c = controls.recv() => return Some(c.unwrap_or(Control::Shutdown)),
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// How long a standby waits between tries.
    fn poll(&self) -> Duration {
        match &self.lock {
            CandidateLock::Redis(l) => {
                (l.ttl() / 4).clamp(Duration::from_millis(100), Duration::from_secs(2))
            }
            CandidateLock::Table(_) => LOCK_POLL,
        }
    }

    /// What is waited for, for the log.
    fn what(&self) -> String {
        match &self.lock {
            CandidateLock::Redis(l) => format!("lease {}", l.key()),
            CandidateLock::Table(_) => "the advisory lock on nemo_mqtt_mqtt_eventqueue".into(),
        }
    }
}

impl Lock {
    /// Resolves `true` when the lock is lost; never resolves for a queue without a lock.
    pub(crate) async fn lost(&mut self) -> bool {
        match &mut self.watch {
            None => std::future::pending().await,
            Some(rx) => {
                if !*rx.borrow_and_update() {
                    return true;
                }
                match rx.changed().await {
                    Ok(()) => !*rx.borrow(),
                    // The keeper ended: treat as lost.
                    Err(_) => true,
                }
            }
        }
    }
}

impl Queue {
    /// Connect (waiting for Redis with backoff; the database connects lazily) and start the
    /// background tasks. `Ok(None)`: a stop request came first.
    pub(crate) async fn open(
        cfg: &Config,
        controls: &mut Controls,
        health: &Arc<Health>,
        status_rx: watch::Receiver<BridgeStatus>,
        diag: Arc<Mutex<Diagnostics>>,
        figures: &FigureBoard,
    ) -> Result<Option<Queue>, BridgeError> {
        match cfg.nemo.source {
            nemo_db::Source::Redis => {
                RedisQueue::open(cfg, controls, health, status_rx, figures.clone())
                    .await
                    .map(|q| q.map(Queue::Redis))
            }
            nemo_db::Source::Database => {
                TableQueue::open(cfg, &controls.sender(), health, status_rx, diag, figures)
                    .map(|q| Some(Queue::Table(Box::new(q))))
            }
        }
    }

    /// The source's name in the queue figures: `list`, `stream`, `pubsub` or `database`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Queue::Redis(q) => q.mode.as_str(),
            Queue::Table(_) => "database",
        }
    }

    /// The lock to win before consuming; `None` when this queue needs none (Redis without the
    /// lease: stream and pub/sub modes, or the lease turned off).
    pub(crate) fn candidate(&self) -> Option<Candidate> {
        match self {
            Queue::Redis(q) => q
                .lease_on
                .then(|| Candidate::new(CandidateLock::Redis(q.redis.lease()))),
            Queue::Table(q) => Some(Candidate::new(CandidateLock::Table(Box::new(q.db.lock())))),
        }
    }

    /// The consumer, now that `won` is held (or no lock is needed).
    pub(crate) async fn consumer(&self, won: Option<Candidate>) -> Result<Consumer, BridgeError> {
        match (self, won.map(|c| c.lock)) {
            (Queue::Redis(q), won) => {
                let held = match won {
                    Some(CandidateLock::Redis(lease)) => Held::Redis(LeaseKeeper::spawn(lease)),
                    _ => Held::Nothing,
                };
                let watch = match &held {
                    Held::Redis(k) => Some(k.watch()),
                    _ => None,
                };
                let _ = q.active.send(true);
                Ok(Consumer {
                    source: boxed(q.redis.source().await?),
                    lock: Lock { held, watch },
                })
            }
            (Queue::Table(q), Some(CandidateLock::Table(lock))) => {
                let source = (*lock).into_source(q.wake.clone(), q.shared.clone())?;
                let watch = Some(source.held());
                let _ = q.active.send(true);
                Ok(Consumer {
                    source: boxed(source),
                    lock: Lock {
                        held: Held::Table,
                        watch,
                    },
                })
            }
            (Queue::Table(q), _) => Err(BridgeError::Database(nemo_db::DbError::LockLost {
                url: q.db.redacted_url().to_string(),
            })),
        }
    }

    /// The lock is given up at a stop, by `deadline`: the source is dropped by then.
    pub(crate) async fn release(&self, lock: Lock, deadline: tokio::time::Instant) {
        match lock.held {
            Held::Nothing => {}
            Held::Redis(k) => {
                // Best effort: an unreleased lease lapses after its TTL.
                if tokio::time::timeout_at(deadline, k.release())
                    .await
                    .is_err()
                {
                    warn!("lease: no answer from Redis; it lapses after its TTL");
                }
            }
            // Dropping the source closed its connection: the session's lock went with it.
            // The bridge stays "active" for the status row until `close` writes the last one.
            Held::Table => {}
        }
    }

    /// The lock was lost: stop keeping it (the source is dropped by then).
    pub(crate) async fn lost(&self, lock: Lock) {
        match lock.held {
            Held::Redis(k) => {
                if let Queue::Redis(q) = self {
                    let _ = q.active.send(false);
                }
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
                        Ok(Some(refresher)) => refresher.stop(BridgeStatus::Disconnected).await,
                        _ => Ok(()),
                    }
                };
                if let Some(Err(e)) =
                    best_effort(deadline, "write the disconnected status key", status).await
                {
                    warn!(error = %e, "redis: cannot write the final status");
                }
                best_effort(deadline, "close the Redis connection", q.redis.quit()).await;
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
                best_effort(deadline, "close the database connections", q.db.close()).await;
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
        controls: &mut Controls,
        health: &Arc<Health>,
        mut status_rx: watch::Receiver<BridgeStatus>,
        figures: FigureBoard,
    ) -> Result<Option<RedisQueue>, BridgeError> {
        let redis_cfg = cfg.redis_config();
        // Redis may be down when the bridge starts: it waits for it (retrying with backoff)
        // and a stop request meanwhile ends it.
        let Some(redis) = controls
            .until_stop(Redis::connect_retrying(&redis_cfg, &cfg.backoff))
            .await?
        else {
            info!("stopped before Redis could be reached");
            return Ok(None);
        };
        health.set_queue_reachable(true);
        if redis_cfg.mode == nemo_redis::Mode::Pubsub {
            warn!(
                "redis: pubsub mode is at-most-once: events sent while the bridge is down are lost"
            );
        }
        let control_list = redis.control_list().await?;
        let control_task = {
            let tx = controls.sender();
            tokio::spawn(async move {
                let mut failing = false;
                loop {
                    match control_list.next(CONTROL_WAIT).await {
                        Ok(Some(ControlCommand::ReloadConfig)) => {
                            failing = false;
                            info!("control: reload_config requested");
                            if tx
                                .send(Control::Reload(ReloadReason::Notify))
                                .await
                                .is_err()
                            {
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

        // Compat status key, refreshed in the background; follows the broker state. Written
        // only while this bridge holds the lease, from the first broker state on: a standby
        // has no broker connection and leaves the key to the active bridge, and so does a
        // bridge that lost the lease (its last `disconnected` would overwrite the `connected`
        // of the one that holds it now).
        let status_key = redis.status_key();
        let (active, mut active_rx) = watch::channel(!cfg.lease_enabled());
        let grace = (cfg.lease_ttl() / 3).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let refresher_task = tokio::spawn(async move {
            'held: loop {
                // Standby: what happens to the broker state meanwhile is not ours to tell.
                while !*active_rx.borrow_and_update() {
                    tokio::select! {
                        biased;
                        a = active_rx.changed() => if a.is_err() { return None },
                        s = status_rx.changed() => {
                            if s.is_err() {
                                return None;
                            }
                            status_rx.borrow_and_update();
                        }
                    }
                }
                // Active: from the first broker state on.
                let first = tokio::select! {
                    biased;
                    a = active_rx.changed() => {
                        if a.is_err() {
                            return None;
                        }
                        continue;
                    }
                    s = status_rx.changed() => s,
                };
                if first.is_err() {
                    return None;
                }
                let refresher = status_key
                    .clone()
                    .spawn_refresher(*status_rx.borrow_and_update());
                loop {
                    tokio::select! {
                        biased;
                        a = active_rx.changed() => {
                            if a.is_err() || !*active_rx.borrow_and_update() {
                                // Lease lost: stop writing, without a last word.
                                drop(refresher);
                                break;
                            }
                        }
                        s = status_rx.changed() => {
                            if s.is_err() {
                                return Some(refresher);
                            }
                            let status = *status_rx.borrow_and_update();
                            // A bridge frozen past its lease finds its broker connection
                            // closed (the successor connected with the same client id) a
                            // moment before it finds the lease gone: a `disconnected` waits
                            // for the lease keeper's next renewal before it is written.
                            if status == BridgeStatus::Disconnected {
                                tokio::select! {
                                    biased;
                                    _ = active_rx.wait_for(|a| !*a) => {
                                        drop(refresher);
                                        continue 'held;
                                    }
                                    _ = tokio::time::sleep(grace) => {}
                                }
                            }
                            refresher.set(status);
                        }
                    }
                }
            }
        });

        // Queue figures (the depth gauge, the monitor's numbers) and Redis health, every
        // `STATS_EVERY`. Bounded by the command timeout: a Redis that stalls (accepts, never
        // answers) makes /readyz say so.
        let stats_task = {
            let stats = redis.stats();
            let health = health.clone();
            let limit = redis_cfg.command_timeout();
            tokio::spawn(async move {
                let mut down = false;
                loop {
                    let read = async {
                        Ok::<_, nemo_redis::RedisError>(Counts {
                            pending: stats.depth().await?,
                            processing: stats.processing_len().await?,
                            dead: stats.dead_len().await?,
                        })
                    };
                    let counts = match tokio::time::timeout(limit, read).await {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
                    };
                    match counts {
                        Ok(c) => {
                            metrics::gauge!("nemo_bridge_queue_depth").set(c.pending as f64);
                            figures.set(c);
                            health.set_queue_reachable(true);
                            if down {
                                info!("redis: reachable again");
                                down = false;
                            }
                        }
                        Err(e) => {
                            health.set_queue_reachable(false);
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
            mode: redis_cfg.mode,
            lease_on: cfg.lease_enabled(),
            active,
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
        figures: &FigureBoard,
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
            tokio::spawn(async move {
                while listener.reload().await.is_some() {
                    info!(
                        "database: NEMO's MQTT page was saved (NOTIFY nemo_mqtt_reload); reloading"
                    );
                    if tx
                        .send(Control::Reload(ReloadReason::Notify))
                        .await
                        .is_err()
                    {
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
            figures.clone(),
        ));
        let purge_task = (cfg.nemo.processed_keep_days > 0).then(|| {
            let db = db.clone();
            let keep = Duration::from_secs(cfg.nemo.processed_keep_days * 86_400);
            let active = active.subscribe();
            tokio::spawn(purge_loop(db, keep, active))
        });
        health.set_queue_reachable(true);
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
