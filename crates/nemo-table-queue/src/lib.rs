//! The queue of the current NEMO plugin (2.x): the table `nemo_mqtt_mqtt_eventqueue` in NEMO's
//! PostgreSQL, woken by `pg_notify('nemo_mqtt_events', '<row id>')`, as a
//! [`nemo_source::EventSource`] ([`TableSource`]) — the sibling of `nemo-redis` (the Redis
//! queue of plugin 1.x) behind the same seam. Around the source: the single-consumer lock
//! ([`QueueLock`]), the `LISTEN` on the plugin's channels ([`Listener`]), and the bridge's
//! status row `nemo_mqtt_mqttbridgestatus` ([`QueueDb::write_status`]), which NEMO's status
//! view reads. NEMO's page store (configuration row, filters, message log) is another job on
//! the same database, in `nemo-db`, whose `[nemo]` settings and errors this crate uses.
//!
//! # The one design decision: the lock and the right to ack are one connection
//!
//! Every query of the source (take, ack, dead letter) runs on the connection that holds the
//! queue's advisory lock. When that connection breaks, the lock is gone with it, the source
//! says so ([`TableSource::held`] turns `false`), and no ack of a bridge that lost the lock can
//! reach the table after another bridge took over: at worst two bridges publish the same rows
//! for a moment (duplicates), never a row marked processed that was not confirmed. The table
//! itself stays the plugin's: no column, index or table is added, and where to go on is found
//! from the table (the oldest unprocessed row), so an operator can switch between this bridge
//! and the plugin's own at any time.
//!
//! # How rows travel
//!
//! The plugin inserts one row per event (`processed = false`) and notifies its id. The bridge
//! holds a PostgreSQL advisory lock ([`QueueLock`]) on one dedicated connection, so exactly one
//! bridge consumes a queue; a standby waits on the same lock and takes over when the active
//! bridge's session ends (its process died, or its connection broke).
//!
//! [`TableSource`] (the [`EventSource`] of this backend) reads rows **in `id` order**, at most
//! `max` at a time (never the whole backlog), from a scan position `pos`:
//!
//! ```sql
//! SELECT … FROM nemo_mqtt_mqtt_eventqueue WHERE id > pos AND NOT processed ORDER BY id LIMIT max
//! ```
//!
//! which walks the primary key (the plugin's table has no index on `processed`). A row is set
//! `processed = true` only in [`ack`](EventSource::ack), after the broker confirmed it, in
//! order; [`nack`](EventSource::nack) only moves `pos` back (the rows were never marked). Rows
//! are not deleted: NEMO's page shows the recent ones; deleting old processed rows is opt-in
//! ([`QueueDb::purge_processed`]).
//!
//! All of the source's queries run on the connection that holds the lock: when that connection
//! breaks, the lock is gone with it, the source says so ([`TableSource::held`] turns `false`)
//! and no ack of this bridge can reach the table after another bridge took over.
//!
//! While that connection makes no query (the bridge waits for its broker, so it neither takes
//! nor acks), a background check notices a lost lock all the same: every 2 s in which the
//! connection had no successful query, one query on the status pool asks `pg_locks` whether the
//! source's session still holds the lock (at most 30 a minute, none while rows flow). A check
//! that cannot reach the database proves nothing and is repeated.
//!
//! The first take runs the one query that reads every processed row (where is the oldest
//! unprocessed row?), bounded by 300 s; until it ran, [`EventSource::longest_take`] says so, and
//! the bridge's watchdog allows for that one take.
//!
//! # Rows that become visible late
//!
//! Identity values are handed out at INSERT, rows become visible at COMMIT: a row can appear
//! after rows with higher ids were already taken. Its NOTIFY (sent at its commit) carries its
//! id, so the source moves `pos` back to it; and every `rescan` interval it re-reads from where
//! it stood one interval earlier, for notifications lost while the listener was reconnecting.
//! Such a row is published when it becomes visible, after rows that committed before it.
//!
//! # Dead letters
//!
//! A row that cannot be published (not JSON, a bad topic, QoS out of range, …) is set
//! `processed = true` and recorded in `nemo_mqtt_mqttmessagelog` with `success = false` and the
//! reason in `error_message`, in one transaction; the reason is also kept for the bridge's
//! status row (`bridge_diagnostics.last_error`).

#![deny(missing_docs)]

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use nemo_source::{Delivery, DeliveryId, EventSource};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _, Row as _};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, info, warn};

use nemo_db::{Backend, DbError, NemoConfig, error_line as one_line};

/// The plugin's queue table.
pub const QUEUE_TABLE: &str = "nemo_mqtt_mqtt_eventqueue";
/// The plugin's status table, which NEMO's bridge-status view reads.
pub const STATUS_TABLE: &str = "nemo_mqtt_mqttbridgestatus";
/// The channel the plugin notifies a new row's id on.
pub const EVENTS_CHANNEL: &str = "nemo_mqtt_events";
/// The channel a save of NEMO's MQTT page notifies on (empty payload).
pub const RELOAD_CHANNEL: &str = "nemo_mqtt_reload";

/// The advisory lock of the queue (`pg_try_advisory_lock(int4, int4)`): "nemo", "mqtt" in
/// ASCII. Advisory locks are per database, as the queue table is.
///
/// ```
/// assert_eq!(nemo_table_queue::QUEUE_LOCK, (1_852_140_911, 1_836_151_924));
/// ```
pub const QUEUE_LOCK: (i32, i32) = (0x6E65_6D6F, 0x6D71_7474);

/// Connections for the status row, retention and depth: one, used in turn (the source and the
/// listener have their own).
const POOL_CONNECTIONS: u32 = 1;

/// Bound on the first query of a source (the first unprocessed row), which reads every
/// processed row.
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// Rows deleted per statement by [`QueueDb::purge_processed`].
const PURGE_BATCH: i64 = 5_000;
/// The longest a take waits for a notification before it looks at the table on its own
/// (rows announced while the listening connection was down), whatever `wait` it was given;
/// also how soon an idle bridge notices that its lock's session broke.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// How often a source whose connection made no query meanwhile checks that the lock is still
/// its session's (see [`TableSource::held`]): the notice of a lost lock while the pipeline
/// makes no call (e.g. while the broker is away).
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Whether the session `$3` holds the queue's lock (`$1`, `$2`) in this database: what an idle
/// source asks on the status pool, not on its own connection (which a take may be using).
const LOCK_HELD_SQL: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
     AND CAST(classid AS BIGINT) = $1 AND CAST(objid AS BIGINT) = $2 AND objsubid = 2 \
     AND pid = $3 AND granted \
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))";

// `ORDER BY q.id`, not `ORDER BY id`: the latter would name the output column (the cast),
// which no index has, and turn every take into a sequential scan and a sort.
const TAKE_SQL: &str = "SELECT CAST(q.id AS BIGINT) AS id, q.topic, q.payload, \
     CAST(q.qos AS BIGINT) AS qos, q.retain, \
     CAST(EXTRACT(EPOCH FROM q.created_at) AS DOUBLE PRECISION) AS ts \
     FROM nemo_mqtt_mqtt_eventqueue q WHERE q.id > $1 AND NOT q.processed ORDER BY q.id LIMIT $2";

const TAKE_EXCLUDING_SQL: &str = "SELECT CAST(q.id AS BIGINT) AS id, q.topic, q.payload, \
     CAST(q.qos AS BIGINT) AS qos, q.retain, \
     CAST(EXTRACT(EPOCH FROM q.created_at) AS DOUBLE PRECISION) AS ts \
     FROM nemo_mqtt_mqtt_eventqueue q WHERE q.id > $1 AND NOT q.processed AND q.id <> ALL($3) \
     ORDER BY q.id LIMIT $2";

const ACK_SQL: &str =
    "UPDATE nemo_mqtt_mqtt_eventqueue SET processed = true WHERE id = ANY($1) AND NOT processed";

const DEAD_LOG_SQL: &str = "INSERT INTO nemo_mqtt_mqttmessagelog \
     (topic, payload, qos, retained, success, error_message, sent_at) \
     SELECT topic, payload, qos, retain, false, $2, now() FROM nemo_mqtt_mqtt_eventqueue WHERE id = $1";

const START_SQL: &str = "SELECT CAST(min(id) AS BIGINT) AS first_unprocessed, \
     (SELECT CAST(max(id) AS BIGINT) FROM nemo_mqtt_mqtt_eventqueue) AS last \
     FROM nemo_mqtt_mqtt_eventqueue WHERE NOT processed";

const PENDING_SQL: &str =
    "SELECT count(*) FROM nemo_mqtt_mqtt_eventqueue WHERE id > $1 AND NOT processed";

const STATUS_SQL: &str = "INSERT INTO nemo_mqtt_mqttbridgestatus \
     (key, status, updated_at, last_heartbeat, bridge_diagnostics) \
     VALUES ('default', $1, now(), now(), CAST($2 AS JSONB)) \
     ON CONFLICT (key) DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at, \
     last_heartbeat = EXCLUDED.last_heartbeat, bridge_diagnostics = EXCLUDED.bridge_diagnostics";

const FINAL_STATUS_SQL: &str = "UPDATE nemo_mqtt_mqttbridgestatus SET status = $1, \
     updated_at = now(), last_heartbeat = now(), bridge_diagnostics = CAST($2 AS JSONB) \
     WHERE key = 'default' AND bridge_diagnostics->>'instance' = $3";

const PURGE_SQL: &str = "DELETE FROM nemo_mqtt_mqtt_eventqueue WHERE id IN (SELECT id FROM \
     nemo_mqtt_mqtt_eventqueue WHERE processed AND created_at < now() - make_interval(secs => $1) \
     ORDER BY id LIMIT $2)";

/// NEMO's PostgreSQL as the queue of plugin 2.x: the factory of the lock, the source, the
/// listener, and the status row's writer. Opening does no I/O.
///
/// ```
/// use nemo_db::NemoConfig;
/// use nemo_table_queue::QueueDb;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cfg = NemoConfig { database_url: "sqlite:///srv/nemo.sqlite3".into(), ..Default::default() };
/// let e = QueueDb::open(&cfg).unwrap_err();
/// assert!(e.to_string().contains("the queue of plugin 2.x needs PostgreSQL"), "{e}");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct QueueDb {
    opts: PgConnectOptions,
    pool: PgPool,
    url: String,
    timeout: Duration,
    rescan: Duration,
}

impl QueueDb {
    /// Open (lazily) the queue in the PostgreSQL database of `cfg.database_url`. Must be called
    /// inside a Tokio runtime. `cfg.poll_s` is also the rescan interval (at least 1 s).
    ///
    /// # Errors
    /// [`DbError::Url`] when the URL is empty, not PostgreSQL, or cannot be parsed.
    pub fn open(cfg: &NemoConfig) -> Result<QueueDb, DbError> {
        let url = cfg.redacted_url();
        let bad = |reason: String| DbError::Url {
            url: url.clone(),
            reason,
        };
        let raw = cfg.database_url.trim();
        if Backend::of_url(raw) != Some(Backend::Postgres) {
            return Err(bad(
                "the queue of plugin 2.x needs PostgreSQL (postgres:// or postgresql://)".into(),
            ));
        }
        // The bridge's own commits (processed flags, dead letters, the status row) do not wait
        // for the WAL to reach the disk: a database crash can forget the last fraction of a
        // second of them, and those rows are published again (at least once, never lost),
        // while an ack no longer holds up the next take for a disk flush.
        let opts = PgConnectOptions::from_str(raw)
            .map_err(|e| bad(one_line(&e)))?
            .application_name("nemo-bridge")
            // Plans for the values at hand: a generic plan of `id > $1` guesses a third of the
            // table and may scan all of it.
            .options([
                ("synchronous_commit", "off"),
                ("plan_cache_mode", "force_custom_plan"),
            ]);
        let timeout = cfg.timeout();
        let pool = PgPoolOptions::new()
            .max_connections(POOL_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(timeout)
            .idle_timeout(Duration::from_secs(120))
            .connect_lazy_with(opts.clone());
        Ok(QueueDb {
            opts,
            pool,
            url,
            timeout,
            rescan: Duration::from_secs(cfg.poll_s.max(1)),
        })
    }

    /// The URL, password redacted.
    pub fn redacted_url(&self) -> &str {
        &self.url
    }

    /// Start listening on [`EVENTS_CHANNEL`] and [`RELOAD_CHANNEL`] in a background task that
    /// reconnects (with backoff) for as long as the returned [`Listener`] lives.
    pub fn listen(&self) -> Listener {
        let wake = Arc::new(Wake::default());
        let (reload_tx, reload_rx) = mpsc::channel(4);
        let (up_tx, up_rx) = watch::channel(false);
        let task = tokio::spawn(listen_loop(
            self.opts.clone(),
            self.url.clone(),
            wake.clone(),
            reload_tx,
            up_tx,
        ));
        Listener {
            wake,
            reload: reload_rx,
            up: up_rx,
            task,
        }
    }

    /// The queue's single-consumer lock (not yet taken).
    pub fn lock(&self) -> QueueLock {
        QueueLock {
            db: self.clone(),
            conn: None,
            pid: None,
        }
    }

    /// Upsert the status row (`key = 'default'`): `status`, `last_heartbeat = now()`,
    /// `bridge_diagnostics` (a JSON object; it must hold no secret).
    ///
    /// # Errors
    /// [`DbError`] when the database cannot be reached or the table is missing.
    pub async fn write_status(
        &self,
        status: &str,
        diagnostics: &serde_json::Value,
    ) -> Result<(), DbError> {
        let q = sqlx::query(STATUS_SQL)
            .bind(status)
            .bind(diagnostics.to_string())
            .execute(&self.pool);
        self.bounded(STATUS_TABLE, q).await.map(drop)
    }

    /// The last status of a stopping bridge: like [`write_status`](Self::write_status), but
    /// only if the row is still this bridge's (`bridge_diagnostics.instance` = `instance`): a
    /// standby that took over meanwhile has written its own, which must stay. `Ok(false)` when
    /// the row was another bridge's.
    ///
    /// # Errors
    /// [`DbError`] when the database cannot be reached or the table is missing.
    pub async fn write_final_status(
        &self,
        status: &str,
        diagnostics: &serde_json::Value,
        instance: &str,
    ) -> Result<bool, DbError> {
        let q = sqlx::query(FINAL_STATUS_SQL)
            .bind(status)
            .bind(diagnostics.to_string())
            .bind(instance)
            .execute(&self.pool);
        Ok(self.bounded(STATUS_TABLE, q).await?.rows_affected() > 0)
    }

    /// Rows not yet processed with an id above `floor` (see [`SourceShared::floor`]); a range
    /// scan of the primary key, not of the whole table.
    ///
    /// # Errors
    /// [`DbError`] when the database cannot be reached.
    pub async fn pending(&self, floor: i64) -> Result<u64, DbError> {
        let q = sqlx::query_scalar::<_, i64>(PENDING_SQL)
            .bind(floor)
            .fetch_one(&self.pool);
        self.bounded(QUEUE_TABLE, q)
            .await
            .map(|n| u64::try_from(n).unwrap_or(0))
    }

    /// Delete processed rows created more than `older_than` ago, oldest first, in batches of
    /// 5,000; unprocessed rows are never deleted. Returns how many rows went.
    ///
    /// # Errors
    /// [`DbError`] when the database cannot be reached or refuses the delete.
    pub async fn purge_processed(&self, older_than: Duration) -> Result<u64, DbError> {
        let mut total = 0;
        loop {
            let q = sqlx::query(PURGE_SQL)
                .bind(older_than.as_secs_f64())
                .bind(PURGE_BATCH)
                .execute(&self.pool);
            let n = self.bounded(QUEUE_TABLE, q).await?.rows_affected();
            total += n;
            if n < PURGE_BATCH as u64 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Close the pool (bounded by the timeout).
    pub async fn close(&self) {
        let _ = tokio::time::timeout(self.timeout, self.pool.close()).await;
    }

    async fn bounded<T>(
        &self,
        table: &'static str,
        fut: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, DbError> {
        self.bounded_for(table, self.timeout, fut).await
    }

    async fn bounded_for<T>(
        &self,
        table: &'static str,
        limit: Duration,
        fut: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, DbError> {
        let limit = limit.max(self.timeout);
        match tokio::time::timeout(limit + Duration::from_millis(500), fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(DbError::from_sqlx(&self.url, table, e)),
            Err(_) => Err(DbError::Timeout {
                url: self.url.clone(),
                seconds: limit.as_secs(),
            }),
        }
    }
}

/// What the listener tells the source: new rows (with the ids notified since the last look)
/// and whether notifications may have been lost.
#[derive(Debug, Default)]
pub struct Wake {
    notify: Notify,
    ids: Mutex<WakeState>,
}

#[derive(Debug, Default)]
struct WakeState {
    ids: BTreeSet<i64>,
    lost: bool,
}

/// Notified ids kept between two takes; more means "look back" (`lost`) instead.
const WAKE_IDS: usize = 4_096;

impl Wake {
    fn rows(&self, id: Option<i64>) {
        if let Ok(mut s) = self.ids.lock() {
            match id {
                // Row ids are positive; anything else is not the plugin's.
                Some(id) if id > 0 => {
                    if s.ids.len() < WAKE_IDS {
                        s.ids.insert(id);
                    } else {
                        s.ids.clear();
                        s.lost = true;
                    }
                }
                Some(_) => {}
                None => s.lost = true,
            }
        }
        self.notify.notify_one();
    }

    /// The ids notified since the last call, and whether notifications may have been lost
    /// meanwhile (the listener reconnected, or too many to keep).
    fn take(&self) -> (BTreeSet<i64>, bool) {
        match self.ids.lock() {
            Ok(mut s) => (std::mem::take(&mut s.ids), std::mem::take(&mut s.lost)),
            Err(_) => (BTreeSet::new(), true),
        }
    }

    /// Give back what [`take`](Self::take) returned (the query it was for failed).
    fn restore(&self, ids: BTreeSet<i64>, lost: bool) {
        if let Ok(mut s) = self.ids.lock() {
            s.lost |= lost || s.ids.len() + ids.len() > WAKE_IDS;
            if !s.lost {
                s.ids.extend(ids);
            }
        }
    }
}

/// The background `LISTEN` on both channels; stops when dropped.
#[derive(Debug)]
pub struct Listener {
    wake: Arc<Wake>,
    reload: mpsc::Receiver<()>,
    up: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// The next `NOTIFY nemo_mqtt_reload` (a save of NEMO's MQTT page); `None` never happens
    /// while the listener lives.
    pub async fn reload(&mut self) -> Option<()> {
        self.reload.recv().await
    }

    /// True while the listening connection is up (notifications arrive).
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// The wake-up handle a [`TableSource`] waits on.
    pub fn wake(&self) -> Arc<Wake> {
        self.wake.clone()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn listen_loop(
    opts: PgConnectOptions,
    url: String,
    wake: Arc<Wake>,
    reload: mpsc::Sender<()>,
    up: watch::Sender<bool>,
) {
    let mut delay = Duration::from_millis(100);
    let mut failing = false;
    loop {
        // A pool of one, used only by the listener (PgListener reconnects through it).
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(opts.clone());
        let started = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen_all([EVENTS_CHANNEL, RELOAD_CHANNEL]).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = match started.await {
            Ok(l) => l,
            Err(e) => {
                if !failing {
                    warn!(url = %url, error = %one_line(&e), "database: cannot LISTEN for new rows; polling meanwhile, retrying");
                    failing = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if failing {
            info!(url = %url, "database: listening for new rows again");
        } else {
            debug!(url = %url, "database: listening on {EVENTS_CHANNEL} and {RELOAD_CHANNEL}");
        }
        delay = Duration::from_millis(100);
        let _ = up.send(true);
        // Rows may have been inserted while nobody listened: look once.
        wake.rows(None);
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) if n.channel() == EVENTS_CHANNEL => {
                    wake.rows(n.payload().trim().parse::<i64>().ok());
                }
                Ok(Some(n)) if n.channel() == RELOAD_CHANNEL => {
                    // Several saves in a row make one reload: the channel holds a few.
                    let _ = reload.try_send(());
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    // Lost and re-established: what was notified meanwhile is gone.
                    warn!(url = %url, "database: the LISTEN connection was lost; reconnected, looking for rows");
                    wake.rows(None);
                }
                Err(e) => {
                    let _ = up.send(false);
                    warn!(url = %url, error = %one_line(&e), "database: LISTEN failed; polling meanwhile, reconnecting");
                    failing = true;
                    break;
                }
            }
        }
        pool.close().await;
    }
}

/// What a [`TableSource`] reports while it runs, shared with the status row's writer.
#[derive(Debug, Clone)]
pub struct SourceShared {
    /// Every row at or below this id is processed or in flight (for [`QueueDb::pending`]);
    /// negative until the source has read the table once.
    pub floor: Arc<AtomicI64>,
    /// The latest dead letter: `row <id>: <reason>`.
    pub last_error: Arc<Mutex<Option<String>>>,
}

impl Default for SourceShared {
    fn default() -> Self {
        SourceShared {
            floor: Arc::new(AtomicI64::new(-1)),
            last_error: Arc::new(Mutex::new(None)),
        }
    }
}

/// The queue's single-consumer lock: a session-level advisory lock on a dedicated connection.
/// A standby calls [`try_acquire`](Self::try_acquire) until it wins.
#[derive(Debug)]
pub struct QueueLock {
    db: QueueDb,
    conn: Option<PgConnection>,
    /// The backend process of `conn` (for the check in [`pg_locks`](LOCK_HELD_SQL)).
    pid: Option<i32>,
}

impl QueueLock {
    /// Try to take the lock (connecting first if needed): `Ok(true)` when this process holds it.
    ///
    /// # Errors
    /// [`DbError`] when the database cannot be reached.
    pub async fn try_acquire(&mut self) -> Result<bool, DbError> {
        if self.conn.is_none() {
            let connect = self.db.opts.connect();
            let conn = self.db.bounded(QUEUE_TABLE, connect).await?;
            self.conn = Some(conn);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(false);
        };
        let q = sqlx::query_as::<_, (bool, i32)>(
            "SELECT pg_try_advisory_lock($1, $2), pg_backend_pid()",
        )
        .bind(QUEUE_LOCK.0)
        .bind(QUEUE_LOCK.1)
        .fetch_one(conn);
        match self.db.bounded(QUEUE_TABLE, q).await {
            Ok((won, pid)) => {
                self.pid = Some(pid);
                Ok(won)
            }
            Err(e) => {
                self.conn = None;
                self.pid = None;
                Err(e)
            }
        }
    }

    /// The source that consumes the queue under this lock, woken by `wake`, reporting into
    /// `shared`.
    ///
    /// # Errors
    /// [`DbError::LockLost`] when the lock is not held ([`try_acquire`](Self::try_acquire) did
    /// not return `true`).
    pub fn into_source(
        self,
        wake: Arc<Wake>,
        shared: SourceShared,
    ) -> Result<TableSource, DbError> {
        let Some(conn) = self.conn else {
            return Err(DbError::LockLost {
                url: self.db.url.clone(),
            });
        };
        let held = Arc::new(watch::channel(true).0);
        let last_ok = Arc::new(LastOk::default());
        // Outside a runtime (no task can run) the lost lock is noticed at the next query.
        let check = match (self.pid, tokio::runtime::Handle::try_current()) {
            (Some(pid), Ok(rt)) => Some(rt.spawn(check_loop(
                self.db.clone(),
                pid,
                held.clone(),
                last_ok.clone(),
            ))),
            _ => None,
        };
        Ok(TableSource {
            last_ok,
            check,
            rescan_every: self.db.rescan,
            db: self.db,
            conn: Some(conn),
            pos: None,
            high: 0,
            inflight: BTreeSet::new(),
            wake,
            held,
            shared,
            checkpoints: [None, None],
            next_rescan: tokio::time::Instant::now(),
        })
    }
}

/// The [`EventSource`] over `nemo_mqtt_mqtt_eventqueue` (see the [module docs](self)).
#[derive(Debug)]
pub struct TableSource {
    db: QueueDb,
    conn: Option<PgConnection>,
    /// Scan position: the next take reads ids above it. `None` until the first take.
    pos: Option<i64>,
    /// The highest id handed out so far.
    high: i64,
    inflight: BTreeSet<i64>,
    wake: Arc<Wake>,
    held: Arc<watch::Sender<bool>>,
    /// When a query on `conn` last succeeded (the session, and so the lock, was alive).
    last_ok: Arc<LastOk>,
    /// The check of the lock while `conn` makes no query (see [`CHECK_EVERY`]).
    check: Option<tokio::task::JoinHandle<()>>,
    shared: SourceShared,
    rescan_every: Duration,
    /// Where the scan stood at the last two rescans, older first.
    checkpoints: [Option<i64>; 2],
    next_rescan: tokio::time::Instant,
}

struct Taken {
    id: i64,
    topic: String,
    payload: String,
    qos: i64,
    retain: bool,
    ts: f64,
}

impl TableSource {
    /// `true` while this source holds the queue's lock; turns `false` (for good) when its
    /// connection broke: stop publishing, the lock may already be another bridge's. Noticed at
    /// the next query of the source, or, while it makes none, within about 2 s by a check of
    /// `pg_locks` (see the [module docs](self)).
    ///
    /// Dropping the source closes its connection, which ends the session and releases the
    /// lock; unacked rows stay unprocessed and the next consumer publishes them first.
    pub fn held(&self) -> watch::Receiver<bool> {
        self.held.subscribe()
    }

    fn lost(&mut self, e: DbError) -> DbError {
        // A broken or silent connection may mean the session (and the lock) is gone: drop
        // it; the bridge stops and competes for the lock again. Other errors (a missing
        // table, no permission) leave the session and the lock as they are: retrying with
        // backoff is the caller's.
        if !e.is_transient() {
            return e;
        }
        if self.conn.take().is_some() {
            warn!(error = %e, "database: the queue connection failed; the lock is given up");
        }
        self.held.send_replace(false);
        e
    }

    fn conn(&mut self) -> Result<&mut PgConnection, DbError> {
        // The check found the lock gone: no query of this source may reach the table again.
        if !*self.held.borrow() && self.conn.take().is_some() {
            debug!("database: the queue connection is closed; the lock was lost");
        }
        match self.conn.as_mut() {
            Some(c) => Ok(c),
            None => Err(DbError::LockLost {
                url: self.db.url.clone(),
            }),
        }
    }

    fn publish_floor(&self) {
        let floor = match (self.inflight.first(), self.pos) {
            (Some(first), _) => first.saturating_sub(1),
            (None, Some(pos)) => pos,
            (None, None) => return,
        };
        self.shared.floor.store(floor, Ordering::Relaxed);
    }

    /// Where the scan starts at the first take: before the oldest unprocessed row.
    async fn start_position(&mut self) -> Result<i64, DbError> {
        let db = self.db.clone();
        let conn = self.conn()?;
        // The one query that reads every processed row (the table has no index on
        // `processed`): on a table of millions it may take longer than a normal query.
        let q = sqlx::query(START_SQL).fetch_one(conn);
        let row = db.bounded_for(QUEUE_TABLE, START_TIMEOUT, q).await;
        let row = match row {
            Ok(r) => r,
            Err(e) => return Err(self.lost(e)),
        };
        self.last_ok.now();
        let first: Option<i64> = row.try_get("first_unprocessed").ok().flatten();
        let last: Option<i64> = row.try_get("last").ok().flatten();
        let pos = match (first, last) {
            (Some(f), _) => f - 1,
            (None, Some(l)) => l,
            (None, None) => 0,
        };
        info!(
            first_unprocessed = first,
            "database: queue opened; publishing from row {}",
            pos + 1
        );
        Ok(pos)
    }

    async fn fetch(&mut self, max: usize) -> Result<Vec<Delivery>, DbError> {
        let pos = match self.pos {
            Some(p) => p,
            None => {
                let p = self.start_position().await?;
                self.pos = Some(p);
                self.checkpoints = [Some(p), Some(p)];
                self.next_rescan = tokio::time::Instant::now() + self.rescan_every;
                p
            }
        };
        // A notified id at or below the position that is not in flight: a row that committed
        // late. Notifications lost while the listener reconnected, and the periodic rescan,
        // look back further: to where the scan stood two rescans ago.
        let (notified, lost) = self.wake.take();
        let mut from = pos;
        if let Some(id) = notified
            .range(..=pos)
            .find(|id| !self.inflight.contains(id))
        {
            from = from.min(id.saturating_sub(1));
        }
        let now = tokio::time::Instant::now();
        let rescan = lost || now >= self.next_rescan;
        if rescan && let Some(r) = self.checkpoints[0] {
            from = from.min(r);
        }
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let excluding = self.inflight.last().is_some_and(|last| *last > from);
        let db = self.db.clone();
        let inflight: Vec<i64> = if excluding {
            self.inflight.iter().copied().collect()
        } else {
            Vec::new()
        };
        let conn = self.conn()?;
        let rows = if excluding {
            let q = sqlx::query(TAKE_EXCLUDING_SQL)
                .bind(from)
                .bind(limit)
                .bind(inflight)
                .fetch_all(conn);
            db.bounded(QUEUE_TABLE, q).await
        } else {
            let q = sqlx::query(TAKE_SQL).bind(from).bind(limit).fetch_all(conn);
            db.bounded(QUEUE_TABLE, q).await
        };
        let rows = match rows {
            Ok(r) => {
                self.last_ok.now();
                r
            }
            Err(e) => {
                // Nothing was read: the look-back is still due.
                self.wake.restore(notified, lost);
                return Err(self.lost(e));
            }
        };
        if rescan {
            self.checkpoints = [self.checkpoints[1], Some(pos)];
            self.next_rescan = now + self.rescan_every;
        }
        // Decode every row before changing any state: a row that cannot be read must not be
        // marked in flight (it would be skipped) without being handed out.
        let taken = rows
            .iter()
            .map(|row| {
                Ok(Taken {
                    id: row.try_get("id")?,
                    topic: row.try_get("topic")?,
                    payload: row.try_get("payload")?,
                    qos: row.try_get("qos")?,
                    retain: row.try_get("retain")?,
                    ts: row.try_get("ts")?,
                })
            })
            .collect::<Result<Vec<Taken>, sqlx::Error>>()
            .map_err(|e| self.decode(e))?;
        let mut out = Vec::with_capacity(taken.len());
        for taken in taken {
            // Handed out before by this source (given back by a nack, or found again).
            let redelivered = taken.id <= self.high;
            self.high = self.high.max(taken.id);
            self.inflight.insert(taken.id);
            out.push(Delivery {
                id: DeliveryId::Row(taken.id),
                raw: queue_item(&taken),
                redelivered,
            });
        }
        // Continue after the last row read. A full batch may have stopped inside a look back
        // (then the rest of it comes next); otherwise the scan reached the end of the table.
        if let Some(Delivery {
            id: DeliveryId::Row(last),
            ..
        }) = out.last()
        {
            self.pos = Some(if out.len() == max {
                *last
            } else {
                pos.max(*last)
            });
        }
        self.publish_floor();
        Ok(out)
    }

    fn decode(&self, e: sqlx::Error) -> DbError {
        DbError::Query {
            table: QUEUE_TABLE,
            url: self.db.url.clone(),
            reason: one_line(&e),
        }
    }
}

impl Drop for TableSource {
    fn drop(&mut self) {
        if let Some(check) = self.check.take() {
            check.abort();
        }
    }
}

/// When a query on the lock's connection last succeeded, in ms since `epoch`.
#[derive(Debug)]
struct LastOk {
    epoch: std::time::Instant,
    ms: AtomicU64,
}

impl Default for LastOk {
    fn default() -> Self {
        LastOk {
            epoch: std::time::Instant::now(),
            ms: AtomicU64::new(0),
        }
    }
}

impl LastOk {
    fn now(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.ms.store(ms, Ordering::Relaxed);
    }

    fn ago(&self) -> Duration {
        let then = Duration::from_millis(self.ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(then)
    }
}

/// Every [`CHECK_EVERY`] in which the lock's connection made no successful query: ask
/// `pg_locks` (on the status pool) whether session `pid` still holds the lock, and turn `held`
/// false for good when it does not (its connection broke, or the server ended the session).
/// A check that cannot reach the database proves nothing and is repeated: a source's own
/// failing query gives the lock up as before.
async fn check_loop(db: QueueDb, pid: i32, held: Arc<watch::Sender<bool>>, last_ok: Arc<LastOk>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if !*held.borrow() {
            return;
        }
        if last_ok.ago() < CHECK_EVERY {
            continue;
        }
        let q = sqlx::query_scalar::<_, bool>(LOCK_HELD_SQL)
            .bind(i64::from(QUEUE_LOCK.0))
            .bind(i64::from(QUEUE_LOCK.1))
            .bind(pid)
            .fetch_one(&db.pool);
        match db.bounded(QUEUE_TABLE, q).await {
            Ok(true) => {}
            Ok(false) => {
                warn!(
                    pid,
                    "database: the queue's lock is no longer held by this bridge's session (its connection broke); the lock is given up"
                );
                held.send_replace(false);
                return;
            }
            Err(e) => {
                debug!(error = %e, "database: the queue's lock could not be checked; checking again")
            }
        }
    }
}

/// A row as a queue item of plugin 1.x, so that one preparer serves both generations: the
/// row's `payload` string goes into the item's `payload` member unchanged (JSON-escaped here,
/// byte for byte again when the preparer reads it).
fn queue_item(row: &Taken) -> Bytes {
    #[derive(serde::Serialize)]
    struct Item<'a> {
        topic: &'a str,
        payload: &'a str,
        qos: i64,
        retain: bool,
        timestamp: f64,
    }
    let item = Item {
        topic: &row.topic,
        payload: &row.payload,
        qos: row.qos,
        retain: row.retain,
        timestamp: row.ts,
    };
    // Serializing strings, integers, a bool and a finite float cannot fail; an infinite
    // timestamp (PostgreSQL's 'infinity') becomes null.
    Bytes::from(serde_json::to_vec(&item).unwrap_or_default())
}

fn row_ids(deliveries: &[Delivery]) -> Vec<i64> {
    deliveries
        .iter()
        .filter_map(|d| match d.id {
            DeliveryId::Row(id) => Some(id),
            _ => None,
        })
        .collect()
}

#[async_trait::async_trait]
impl EventSource for TableSource {
    type Error = DbError;

    async fn take(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, DbError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let got = self.fetch(max).await?;
        if !got.is_empty() || wait < Duration::from_millis(1) {
            return Ok(got);
        }
        // Nothing yet: wait for a notification (or the end of `wait`, at most LOOK_EVERY),
        // then look once more.
        let wake = self.wake.clone();
        if tokio::time::timeout(wait.min(LOOK_EVERY), wake.notify.notified())
            .await
            .is_err()
        {
            return Ok(got);
        }
        self.fetch(max).await
    }

    async fn ack(&mut self, deliveries: &[Delivery]) -> Result<(), DbError> {
        let ids = row_ids(deliveries);
        if ids.is_empty() {
            return Ok(());
        }
        let db = self.db.clone();
        let conn = self.conn()?;
        let q = sqlx::query(ACK_SQL).bind(&ids).execute(conn);
        if let Err(e) = db.bounded(QUEUE_TABLE, q).await {
            return Err(self.lost(e));
        }
        self.last_ok.now();
        for id in ids {
            self.inflight.remove(&id);
        }
        self.publish_floor();
        Ok(())
    }

    async fn nack(&mut self, deliveries: &[Delivery]) -> Result<(), DbError> {
        // Nothing to write: the rows were never marked. Read them again first.
        let ids = row_ids(deliveries);
        if let Some(first) = ids.iter().min() {
            let before = first.saturating_sub(1);
            self.pos = Some(self.pos.map_or(before, |p| p.min(before)));
        }
        for id in ids {
            self.inflight.remove(&id);
        }
        self.publish_floor();
        Ok(())
    }

    /// Until the scan position is known, the next take runs the first query, which reads
    /// every processed row and may take up to 300 s on a large table.
    fn longest_take(&self) -> Option<Duration> {
        match self.pos {
            // The first query, a take and a look after the wait, each bounded (+0.5 s).
            None => Some(START_TIMEOUT.max(self.db.timeout) + self.db.timeout * 2 + LOOK_EVERY * 4),
            Some(_) => None,
        }
    }

    async fn dead_letter(&mut self, delivery: &Delivery, error: &str) -> Result<(), DbError> {
        let DeliveryId::Row(id) = delivery.id else {
            return Ok(());
        };
        let db = self.db.clone();
        let conn = self.conn()?;
        let write = async {
            let mut tx = conn.begin().await?;
            let logged = sqlx::query(DEAD_LOG_SQL)
                .bind(id)
                .bind(error)
                .execute(&mut *tx)
                .await;
            // A missing or read-only message log must not block the queue: the reason is
            // still logged and kept for the status row.
            let logged = match logged {
                Ok(_) => Ok(()),
                Err(e) => {
                    tx.rollback().await?;
                    tx = conn.begin().await?;
                    Err(one_line(&e))
                }
            };
            sqlx::query(ACK_SQL)
                .bind(vec![id])
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(logged)
        };
        match db.bounded(QUEUE_TABLE, write).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                warn!(row = id, error = %why, "database: dead letter not recorded in the message log; the row is marked processed")
            }
            Err(e) => return Err(self.lost(e)),
        }
        self.last_ok.now();
        self.inflight.remove(&id);
        if let Ok(mut last) = self.shared.last_error.lock() {
            *last = Some(format!("row {id}: {error}"));
        }
        self.publish_floor();
        Ok(())
    }
}
