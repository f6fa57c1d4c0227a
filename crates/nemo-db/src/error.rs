//! Errors of reading NEMO's database.

/// Why NEMO's database could not be read. Every message is one line; none holds a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// The URL cannot be parsed or names an unsupported backend.
    #[error("cannot use database URL {url}: {reason}")]
    Url {
        /// The URL, password redacted.
        url: String,
        /// Why.
        reason: String,
    },
    /// Connecting failed or the connection broke (server down, refused, TLS, authentication).
    #[error("database {url} unreachable: {reason}")]
    Unreachable {
        /// The URL, password redacted.
        url: String,
        /// Why.
        reason: String,
    },
    /// No answer within `nemo.timeout_s`.
    #[error("database {url} did not answer within {seconds} s")]
    Timeout {
        /// The URL, password redacted.
        url: String,
        /// The bound.
        seconds: u64,
    },
    /// A table of the plugin does not exist: the plugin is not installed or not migrated.
    #[error(
        "table {table} does not exist in {url} (is the NEMO MQTT plugin installed and migrated, and is this NEMO's database?)"
    )]
    MissingTable {
        /// The table.
        table: &'static str,
        /// The URL, password redacted.
        url: String,
    },
    /// The database refused the write or read: no permission (PostgreSQL), or a read-only
    /// SQLite file or connection. Retrying will not help until someone grants it.
    #[error("no permission on {table} in {url}: {reason}")]
    Denied {
        /// The table.
        table: &'static str,
        /// The URL, password redacted.
        url: String,
        /// Why, as the database said it.
        reason: String,
    },
    /// The query failed for another reason (permissions, a column of an unexpected type, …).
    #[error("reading {table} from {url} failed: {reason}")]
    Query {
        /// The table.
        table: &'static str,
        /// The URL, password redacted.
        url: String,
        /// Why, as the database said it.
        reason: String,
    },
    /// The lock on the queue of plugin 2.x (crate `nemo-table-queue`) is not held (any more):
    /// its connection broke, so another bridge may hold it now. The bridge stops publishing and competes for it again.
    #[error("the lock on the queue in {url} is lost (its connection broke)")]
    LockLost {
        /// The URL, password redacted.
        url: String,
    },
}

impl DbError {
    /// A driver error met on `table` as a [`DbError`]: one line, `url` (already redacted)
    /// named, the class of failure told apart (missing table, no permission, outage, query).
    ///
    /// ```
    /// let e = nemo_db::DbError::from_sqlx("postgres://db/nemo", "t", sqlx::Error::PoolTimedOut);
    /// assert!(e.is_transient(), "{e}");
    /// ```
    pub fn from_sqlx(url: &str, table: &'static str, e: sqlx::Error) -> DbError {
        classify(url, table, e)
    }

    /// True for outages that may pass by themselves (unreachable, timeout); false for problems
    /// that need a person (bad URL, missing table, failing query).
    ///
    /// ```
    /// let e = nemo_db::DbError::Timeout { url: "postgres://db/nemo".into(), seconds: 5 };
    /// assert!(e.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DbError::Unreachable { .. } | DbError::Timeout { .. } | DbError::LockLost { .. }
        )
    }
}

/// One line of an error from the database driver (sqlx's messages can span lines), for a
/// [`DbError`]'s reason or a log line.
///
/// ```
/// let e = sqlx::Error::Protocol("bad\n  answer".into());
/// let line = nemo_db::error_line(&e);
/// assert!(line.ends_with("bad answer") && !line.contains('\n'), "{line}");
/// ```
pub fn error_line(e: &sqlx::Error) -> String {
    let text = match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Map a driver error to a [`DbError`] for `table` (one line, no password: `url` is redacted).
pub(crate) fn classify(url: &str, table: &'static str, e: sqlx::Error) -> DbError {
    let url = url.to_string();
    match &e {
        sqlx::Error::Database(db) => {
            let msg = db.message();
            if db.code().as_deref() == Some("42P01") || msg.contains("no such table") {
                return DbError::MissingTable { table, url };
            }
            // 42501 = insufficient privilege; SQLite: a read-only file or connection.
            if code_is(db.code().as_deref(), "42501")
                || msg.contains("readonly database")
                || msg.contains("read-only")
            {
                return DbError::Denied {
                    table,
                    url,
                    reason: error_line(&e),
                };
            }
            // Class 08 = connection exception, 28 = authorization, 3D = no such database,
            // 57P = the server is shutting down or starting.
            let code = db.code().unwrap_or_default();
            if ["08", "28", "3D", "57P"]
                .iter()
                .any(|c| code.starts_with(c))
                || msg.contains("unable to open database file")
            {
                return DbError::Unreachable {
                    url,
                    reason: error_line(&e),
                };
            }
            DbError::Query {
                table,
                url,
                reason: error_line(&e),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => DbError::Unreachable {
            url,
            reason: error_line(&e),
        },
        sqlx::Error::Configuration(_) => DbError::Url {
            url,
            reason: error_line(&e),
        },
        _ => DbError::Query {
            table,
            url,
            reason: error_line(&e),
        },
    }
}

fn code_is(code: Option<&str>, want: &str) -> bool {
    code == Some(want)
}
