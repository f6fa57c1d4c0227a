//! NEMO's MQTT page store: the plugin's configuration row, event filters and message log in
//! NEMO's database (PostgreSQL or SQLite), for both plugin generations, so that NEMO's MQTT
//! configuration page drives the bridge and lists what it published.
//!
//! The NEMO MQTT plugin keeps the settings an administrator edits on NEMO's MQTT page in the
//! table `nemo_mqtt_mqttconfiguration` of NEMO's own database; the active configuration is
//! the enabled row with the lowest `id`. This crate reads that row ([`NemoStore`]) and
//! checks the columns the bridge uses ([`ConfigurationRow::settings`]); the bridge layers the
//! result between its file and its environment. It also reads the page's event filters
//! (`nemo_mqtt_mqtteventfilter`, [`FilterRow`]) and writes the page's recent-message log
//! (`nemo_mqtt_mqttmessagelog`, [`LogEntry`]), the one table of the page this crate writes.
//! Beside the page, it holds what every user of NEMO's database shares: the `[nemo]` settings
//! ([`NemoConfig`]) and the errors ([`DbError`]).
//!
//! The queue of plugin 2.x (the table `nemo_mqtt_mqtt_eventqueue`, its lock and the bridge's
//! status row) is another job on the same database and lives in the crate `nemo-table-queue`,
//! a sibling of `nemo-redis` behind `nemo-source`.
//!
//! # The one design decision: NEMO owns the tables; the bridge uses them lazily, bounded
//!
//! The plugin's Django migrations create these tables and NEMO writes them. This crate never
//! creates, migrates or alters a table (it only inserts and deletes message-log rows), never
//! changes a database setting (a SQLite file keeps its journal mode) and never creates a
//! missing SQLite file. It also never stands in the way
//! of delivery: [`NemoDb::open`] does no I/O, every read is bounded by `nemo.timeout_s`, and
//! an unreachable database is an error value the caller rides out with the settings it
//! already has. A database outage therefore changes nothing for the events flowing through.
//!
//! Both backends are served by one SQL text over [sqlx](https://docs.rs/sqlx) (async,
//! Tokio, PostgreSQL TLS through OpenSSL as the rest of the bridge); PostgreSQL TLS is set in
//! the URL (`sslmode=verify-full&sslrootcert=/etc/ssl/nemo-ca.pem`).
//!
//! The [`NemoStore`] trait is the seam: the bridge's own tests use
//! `MockNemoStore` (feature `mock`), and this crate's tests run against a real
//! PostgreSQL and a real SQLite file made from the plugin's exact DDL.
//!
//! ```
//! use nemo_db::{ConfigurationRow, NemoConfig};
//! let cfg = NemoConfig { database_url: "sqlite:///srv/nemo/nemo.sqlite3".into(), ..Default::default() };
//! assert_eq!(cfg.backend(), Some(nemo_db::Backend::Sqlite));
//! let row = ConfigurationRow { id: 1, broker_host: Some("mqtt.lab".into()), broker_port: Some(1884),
//!     keepalive: Some(60), reconnect_delay: Some(5), ..Default::default() };
//! assert_eq!(row.settings()?.broker_port, 1884);
//! # Ok::<(), nemo_db::RowError>(())
//! ```
#![deny(missing_docs)]

mod config;
mod db;
mod error;
mod log;
mod row;

pub use config::{Backend, NemoConfig, NemoConfigError, Source};
pub use db::NemoDb;
pub use error::{DbError, error_line};
pub use log::{LogEntry, MESSAGE_LOG_TABLE};
pub use row::{
    CONFIGURATION_TABLE, ConfigurationRow, FILTER_TABLE, FilterRow, NemoSettings, RowError,
};

/// NEMO's MQTT tables as the bridge uses them: the page's settings and filters (read), the
/// message log (written). [`NemoDb`] is the real one; `MockNemoStore` (feature `mock`) stands in
/// for it in unit tests.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait::async_trait]
pub trait NemoStore: Send + Sync {
    /// The active configuration row: enabled, lowest `id`; `None` when no row is enabled.
    ///
    /// # Errors
    /// [`DbError`]: unreachable, timed out, the table missing, or the query failing.
    async fn active_configuration(&self) -> Result<Option<ConfigurationRow>, DbError>;

    /// Every row of the event-filter table, by `id`; `None` when the table does not exist
    /// (plugin 2.x dropped it): filters are then off.
    ///
    /// # Errors
    /// [`DbError`]: unreachable, timed out, or the query failing.
    async fn event_filters(&self) -> Result<Option<Vec<FilterRow>>, DbError>;

    /// Append `entries` to the message log, in order (one INSERT per 500 rows).
    ///
    /// # Errors
    /// [`DbError::Denied`] without INSERT permission (or a read-only SQLite file),
    /// [`DbError::MissingTable`], or an outage.
    async fn append_message_log(&self, entries: &[LogEntry]) -> Result<(), DbError>;

    /// Delete all but the newest `keep` rows of the message log; returns how many were deleted.
    ///
    /// # Errors
    /// As [`append_message_log`](Self::append_message_log), for DELETE.
    async fn trim_message_log(&self, keep: u64) -> Result<u64, DbError>;
}
