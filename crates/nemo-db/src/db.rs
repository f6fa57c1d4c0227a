//! The connection to NEMO's database: one small pool, PostgreSQL or SQLite, one SQL text.
//!
//! The same query serves both backends: integer columns are cast to `BIGINT` (PostgreSQL's
//! `integer` would not decode as `i64`), timestamps to `TEXT` (the bridge only compares and
//! shows them), booleans are read as stored (Django writes 0/1 into SQLite's `bool` columns).
//!
//! Nothing here creates, migrates or alters a table, and nothing changes a database-wide
//! setting: a SQLite file keeps its journal mode (switching it to WAL would be permanent for
//! NEMO too), and is never created when it does not exist.

use std::str::FromStr;
use std::time::Duration;

use sqlx::QueryBuilder;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use crate::config::{Backend, NemoConfig};
use crate::error::{DbError, classify, error_line as one_line};
use crate::log::{LogEntry, MESSAGE_LOG_TABLE};
use crate::row::{CONFIGURATION_TABLE, ConfigurationRow, FILTER_TABLE, FilterRow};

/// How many connections the bridge opens at most: reads are rare and short.
const MAX_CONNECTIONS: u32 = 2;

/// A connection closed after this long unused: an idle bridge holds nothing open for long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

const LOG_INSERT_HEAD: &str = "INSERT INTO nemo_mqtt_mqttmessagelog \
     (topic, payload, qos, retained, success, error_message, sent_at) ";

const ACTIVE_CONFIGURATION_SQL: &str = "SELECT CAST(id AS BIGINT) AS id, name, enabled, \
     broker_host, CAST(broker_port AS BIGINT) AS broker_port, \
     CAST(keepalive AS BIGINT) AS keepalive, client_id, username, password, use_hmac, \
     hmac_secret_key, hmac_algorithm, topic_prefix, CAST(qos_level AS BIGINT) AS qos_level, \
     retain_messages, clean_session, auto_reconnect, \
     CAST(reconnect_delay AS BIGINT) AS reconnect_delay, \
     CAST(max_reconnect_attempts AS BIGINT) AS max_reconnect_attempts, log_messages, log_level, \
     CAST(updated_at AS TEXT) AS updated_at \
     FROM nemo_mqtt_mqttconfiguration WHERE enabled ORDER BY id LIMIT 1";

const FILTERS_SQL: &str = "SELECT CAST(id AS BIGINT) AS id, event_type, enabled, topic_override, \
     include_payload, CAST(updated_at AS TEXT) AS updated_at \
     FROM nemo_mqtt_mqtteventfilter ORDER BY id";

/// Keep the newest `keep` rows: everything at or below the id of the `keep + 1`-th newest goes.
/// (With fewer rows the sub-query is NULL and nothing is deleted.)
fn trim_sql(keep: u64) -> String {
    format!(
        "DELETE FROM nemo_mqtt_mqttmessagelog WHERE id <= (SELECT id FROM \
         nemo_mqtt_mqttmessagelog ORDER BY id DESC LIMIT 1 OFFSET {keep})"
    )
}

/// Rows per INSERT statement (well under SQLite's 32,766 bound parameters at 7 per row).
const LOG_ROWS_PER_STATEMENT: usize = 500;

#[derive(Debug, Clone)]
enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// NEMO's database, opened lazily: making one does no I/O, the first query connects.
///
/// A database that is down when the bridge starts is therefore not an error here; each read
/// reports it ([`DbError::Unreachable`], [`DbError::Timeout`]) and the next read tries again.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use nemo_db::{NemoConfig, NemoDb, NemoStore};
/// let cfg = NemoConfig { database_url: "sqlite:///srv/nemo/nemo.sqlite3".into(), ..Default::default() };
/// let db = NemoDb::open(&cfg)?;
/// match db.active_configuration().await? {
///     Some(row) => println!("broker {:?}:{:?}", row.broker_host, row.broker_port),
///     None => println!("no enabled configuration on NEMO's page"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NemoDb {
    pool: Pool,
    url: String,
    timeout: Duration,
}

impl NemoDb {
    /// Open (lazily) the database of `cfg.database_url`. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`DbError::Url`] when the URL is empty, of another scheme, or cannot be parsed.
    pub fn open(cfg: &NemoConfig) -> Result<NemoDb, DbError> {
        let url = cfg.redacted_url();
        let bad = |reason: String| DbError::Url {
            url: url.clone(),
            reason,
        };
        let raw = cfg.database_url.trim();
        let timeout = cfg.timeout();
        let pool = match Backend::of_url(raw) {
            Some(Backend::Postgres) => {
                let opts = PgConnectOptions::from_str(raw)
                    .map_err(|e| bad(one_line(&e)))?
                    .application_name("nemo-bridge");
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(MAX_CONNECTIONS)
                        .min_connections(0)
                        .acquire_timeout(timeout)
                        .idle_timeout(IDLE_TIMEOUT)
                        .connect_lazy_with(opts),
                )
            }
            Some(Backend::Sqlite) => {
                let opts = SqliteConnectOptions::from_str(raw)
                    .map_err(|e| bad(one_line(&e)))?
                    .create_if_missing(false)
                    // NEMO writes the same file: wait for its locks instead of failing.
                    .busy_timeout(timeout);
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(MAX_CONNECTIONS)
                        .min_connections(0)
                        .acquire_timeout(timeout)
                        .idle_timeout(IDLE_TIMEOUT)
                        .connect_lazy_with(opts),
                )
            }
            None => {
                return Err(bad(
                    "must start with postgres://, postgresql:// or sqlite://".into(),
                ));
            }
        };
        Ok(NemoDb { pool, url, timeout })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The URL, password redacted.
    pub fn redacted_url(&self) -> &str {
        &self.url
    }

    /// Close every connection (waits for queries in progress, bounded by the timeout).
    pub async fn close(&self) {
        let close = async {
            match &self.pool {
                Pool::Postgres(p) => p.close().await,
                Pool::Sqlite(p) => p.close().await,
            }
        };
        let _ = tokio::time::timeout(self.timeout, close).await;
    }

    fn classify(&self, table: &'static str, e: sqlx::Error) -> DbError {
        classify(&self.url, table, e)
    }

    async fn append(&self, entries: &[LogEntry]) -> Result<(), sqlx::Error> {
        for chunk in entries.chunks(LOG_ROWS_PER_STATEMENT) {
            match &self.pool {
                Pool::Postgres(p) => {
                    let mut q = QueryBuilder::<sqlx::Postgres>::new(LOG_INSERT_HEAD);
                    q.push_values(chunk, |mut b, e| {
                        b.push_bind(&e.topic)
                            .push_bind(&e.payload)
                            .push_bind(i32::from(e.qos))
                            .push_bind(e.retained)
                            .push_bind(e.success)
                            .push_bind(&e.error_message)
                            .push("CAST(")
                            .push_bind_unseparated(format!("{}+00", e.sent_at_utc()))
                            .push_unseparated(" AS TIMESTAMPTZ)");
                    });
                    q.build().execute(p).await?;
                }
                Pool::Sqlite(p) => {
                    let mut q = QueryBuilder::<sqlx::Sqlite>::new(LOG_INSERT_HEAD);
                    q.push_values(chunk, |mut b, e| {
                        b.push_bind(&e.topic)
                            .push_bind(&e.payload)
                            .push_bind(i32::from(e.qos))
                            .push_bind(e.retained)
                            .push_bind(e.success)
                            .push_bind(&e.error_message)
                            .push_bind(e.sent_at_utc());
                    });
                    q.build().execute(p).await?;
                }
            }
        }
        Ok(())
    }

    /// Why the pool could not connect: its own error hides the cause, so connect once directly
    /// (bounded by 1 s) and report what that says, e.g. "Connection refused".
    async fn probe(&self) -> Option<String> {
        use sqlx::ConnectOptions as _;
        let attempt = async {
            match &self.pool {
                Pool::Postgres(p) => p.connect_options().connect().await.map(drop),
                Pool::Sqlite(p) => p.connect_options().connect().await.map(drop),
            }
        };
        match tokio::time::timeout(Duration::from_secs(1), attempt).await {
            Ok(Err(e)) => Some(one_line(&e)),
            _ => None,
        }
    }

    /// Run `fut` bounded by the timeout, mapping its error.
    async fn bounded<T>(
        &self,
        table: &'static str,
        fut: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, DbError> {
        // The pool's acquire timeout bounds connecting; this bounds the whole round trip.
        match tokio::time::timeout(self.timeout + Duration::from_millis(500), fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(sqlx::Error::PoolTimedOut)) => Err(DbError::Unreachable {
                url: self.url.clone(),
                reason: self.probe().await.unwrap_or_else(|| {
                    format!("no connection within {} s", self.timeout.as_secs())
                }),
            }),
            Ok(Err(e)) => Err(self.classify(table, e)),
            Err(_) => Err(DbError::Timeout {
                url: self.url.clone(),
                seconds: self.timeout.as_secs(),
            }),
        }
    }
}

#[async_trait::async_trait]
impl crate::NemoStore for NemoDb {
    async fn active_configuration(&self) -> Result<Option<ConfigurationRow>, DbError> {
        match &self.pool {
            Pool::Postgres(p) => {
                let query = sqlx::query_as(ACTIVE_CONFIGURATION_SQL).fetch_optional(p);
                self.bounded(CONFIGURATION_TABLE, query).await
            }
            Pool::Sqlite(p) => {
                let query = sqlx::query_as(ACTIVE_CONFIGURATION_SQL).fetch_optional(p);
                self.bounded(CONFIGURATION_TABLE, query).await
            }
        }
    }

    async fn event_filters(&self) -> Result<Option<Vec<FilterRow>>, DbError> {
        let rows = match &self.pool {
            Pool::Postgres(p) => {
                let query = sqlx::query_as(FILTERS_SQL).fetch_all(p);
                self.bounded(FILTER_TABLE, query).await
            }
            Pool::Sqlite(p) => {
                let query = sqlx::query_as(FILTERS_SQL).fetch_all(p);
                self.bounded(FILTER_TABLE, query).await
            }
        };
        match rows {
            Ok(rows) => Ok(Some(rows)),
            Err(DbError::MissingTable { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn append_message_log(&self, entries: &[LogEntry]) -> Result<(), DbError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.bounded(MESSAGE_LOG_TABLE, self.append(entries)).await
    }

    async fn trim_message_log(&self, keep: u64) -> Result<u64, DbError> {
        let sql = sqlx::AssertSqlSafe(trim_sql(keep));
        let done = match &self.pool {
            Pool::Postgres(p) => {
                let query = sqlx::query(sql).execute(p);
                self.bounded(MESSAGE_LOG_TABLE, query)
                    .await?
                    .rows_affected()
            }
            Pool::Sqlite(p) => {
                let query = sqlx::query(sql).execute(p);
                self.bounded(MESSAGE_LOG_TABLE, query)
                    .await?
                    .rows_affected()
            }
        };
        Ok(done)
    }
}
