//! NEMO's database for the end-to-end tests: a real PostgreSQL (nemo-testkit) or a SQLite file,
//! made from the plugin's exact DDL and written by a second process (`psql`, `sqlite3`), the
//! way NEMO writes it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nemo_testkit::{PostgresServer, fixtures_dir};

/// NEMO's database in a test: PostgreSQL or a SQLite file, written with the servers' own
/// command-line clients (a second process, as NEMO is).
pub enum NemoDatabase {
    Postgres(Box<PostgresServer>),
    Sqlite(tempfile::TempDir),
}

impl NemoDatabase {
    pub fn postgres() -> NemoDatabase {
        let pg = PostgresServer::start().unwrap();
        pg.psql_file(fixtures_dir().join("nemo-plugin-schema/postgresql.sql"))
            .unwrap();
        NemoDatabase::Postgres(Box::new(pg))
    }

    /// NEMO's PostgreSQL with the tables of plugin 2.x (the queue table, the status row).
    pub fn postgres_v2() -> NemoDatabase {
        let pg = PostgresServer::start().unwrap();
        pg.psql_file(fixtures_dir().join("nemo-plugin-schema/v2-postgresql.sql"))
            .unwrap();
        NemoDatabase::Postgres(Box::new(pg))
    }

    /// The PostgreSQL server (panics for SQLite).
    pub fn server(&mut self) -> &mut PostgresServer {
        match self {
            NemoDatabase::Postgres(pg) => pg,
            NemoDatabase::Sqlite(_) => panic!("not a server"),
        }
    }

    pub fn sqlite() -> NemoDatabase {
        let dir = tempfile::tempdir().unwrap();
        let db = NemoDatabase::Sqlite(dir);
        db.exec(
            &std::fs::read_to_string(fixtures_dir().join("nemo-plugin-schema/sqlite.sql")).unwrap(),
        );
        db
    }

    /// Kill the PostgreSQL server (`kill -9`); a SQLite file cannot go away like that.
    pub fn kill(&mut self) {
        match self {
            NemoDatabase::Postgres(pg) => pg.kill(),
            NemoDatabase::Sqlite(_) => panic!("only a server can be killed"),
        }
    }

    pub fn sqlite_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("nemo.sqlite3")
    }

    pub fn url(&self) -> String {
        match self {
            NemoDatabase::Postgres(pg) => pg.url(),
            NemoDatabase::Sqlite(dir) => format!("sqlite://{}", Self::sqlite_path(dir).display()),
        }
    }

    pub fn exec(&self, sql: &str) {
        self.query(sql);
    }

    /// Run `sql`; what it printed (rows as `a|b|c` lines, as both `psql -A` and `sqlite3` write them).
    pub fn query(&self, sql: &str) -> String {
        match self {
            NemoDatabase::Postgres(pg) => pg.psql(sql).unwrap(),
            NemoDatabase::Sqlite(dir) => {
                // The SQL on standard input: a text starting with "--" would read as an option.
                // `.timeout 5000`: wait for a lock like Django does (Python's sqlite3 default).
                let mut child = Command::new("sqlite3")
                    .arg("-cmd")
                    .arg(".timeout 5000")
                    .arg(Self::sqlite_path(dir))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("sqlite3 (the Debian package sqlite3; scripts/setup.sh installs it)");
                child
                    .stdin
                    .take()
                    .expect("piped stdin")
                    .write_all(sql.as_bytes())
                    .unwrap();
                let out = child.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "{sql}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout).trim_end().to_string()
            }
        }
    }

    /// A row of the page's event-filter table.
    pub fn insert_filter(
        &self,
        id: i64,
        event_type: &str,
        enabled: bool,
        topic_override: Option<&str>,
        include_payload: bool,
    ) {
        let over = topic_override.map_or("NULL".to_string(), |t| format!("'{t}'"));
        self.exec(&format!(
            "INSERT INTO nemo_mqtt_mqtteventfilter (id, event_type, enabled, topic_override, \
             include_payload, created_at, updated_at) VALUES ({id}, '{event_type}', {enabled}, \
             {over}, {include_payload}, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        ));
    }

    /// The row NEMO's page saves: broker at `port`, signing with `key`.
    pub fn insert_configuration(&self, port: u16, key: &str) {
        self.insert_configuration_with(port, Some(key), false);
    }

    /// The page's row: broker at `port`, signing with `key` (None = off), "log messages".
    pub fn insert_configuration_with(&self, port: u16, key: Option<&str>, log_messages: bool) {
        let (use_hmac, key) = match key {
            Some(k) => ("TRUE", format!("'{k}'")),
            None => ("FALSE", "NULL".to_string()),
        };
        let log = if log_messages { "TRUE" } else { "FALSE" };
        self.exec(&format!(
            "INSERT INTO nemo_mqtt_mqttconfiguration (id, name, enabled, broker_host, broker_port, \
             keepalive, client_id, username, password, use_hmac, hmac_secret_key, hmac_algorithm, \
             topic_prefix, qos_level, retain_messages, clean_session, auto_reconnect, \
             reconnect_delay, max_reconnect_attempts, log_messages, log_level, created_at, \
             updated_at) VALUES (1, 'default', TRUE, '127.0.0.1', {port}, 60, 'nemo-bridge-page', \
             NULL, NULL, {use_hmac}, {key}, 'sha256', 'nemo', 1, FALSE, TRUE, TRUE, 1, 5, {log}, \
             'INFO', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        ));
    }

    /// A save on the page: new port and key, `updated_at` moved.
    pub fn save(&self, port: u16, key: &str) {
        self.exec(&format!(
            "UPDATE nemo_mqtt_mqttconfiguration SET broker_port = {port}, \
             hmac_secret_key = '{key}', updated_at = CURRENT_TIMESTAMP WHERE id = 1"
        ));
    }
}

/// The plugin 2.x producer: `MQTTEventQueue.objects.create(...)`, then
/// `SELECT pg_notify('nemo_mqtt_events', '<id>')`, each committed on its own (Django autocommit),
/// on its own connection (NEMO's web process). It reconnects when the server went away.
pub struct PluginQueue {
    url: String,
    conn: Option<sqlx::postgres::PgConnection>,
}

impl PluginQueue {
    pub async fn connect(url: &str) -> PluginQueue {
        let mut q = PluginQueue {
            url: url.to_string(),
            conn: None,
        };
        q.ensure().await.unwrap();
        q
    }

    async fn ensure(&mut self) -> Result<&mut sqlx::postgres::PgConnection, sqlx::Error> {
        use sqlx::Connection as _;
        if self.conn.is_none() {
            self.conn = Some(sqlx::postgres::PgConnection::connect(&self.url).await?);
        }
        Ok(self.conn.as_mut().expect("just set"))
    }

    /// Queue one event with the plugin's SQL; `Err` when the database is down (the plugin's
    /// `publish_event` returns False then; the test retries, as NEMO's next save would not).
    pub async fn publish(&mut self, topic: &str, payload: &str) -> Result<i64, sqlx::Error> {
        let r = async {
            let conn = self.ensure().await?;
            let id: i32 = sqlx::query_scalar(
                "INSERT INTO nemo_mqtt_mqtt_eventqueue (topic, payload, qos, retain, processed, \
                 created_at) VALUES ($1, $2, 1, false, false, now()) RETURNING id",
            )
            .bind(topic)
            .bind(payload)
            .fetch_one(&mut *conn)
            .await?;
            sqlx::query("SELECT pg_notify('nemo_mqtt_events', $1)")
                .bind(id.to_string())
                .execute(&mut *conn)
                .await?;
            Ok(i64::from(id))
        }
        .await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    /// Queue event `seq` for tool `seq % 8`, retrying until the database takes it.
    pub async fn publish_seq(&mut self, seq: usize) -> i64 {
        let payload = format!(
            "{{\"event\": \"tool_enabled\", \"tool_id\": {}, \"seq\": {seq}}}",
            seq % 8
        );
        let topic = format!("nemo/tools/{}/enabled", seq % 8);
        loop {
            match self.publish(&topic, &payload).await {
                Ok(id) => return id,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }
}

/// A bridge config for the queue of plugin 2.x: no `[redis]` at all.
pub fn table_config(
    dir: &std::path::Path,
    name: &str,
    db_url: &str,
    broker_url: &str,
    http: u16,
    extra: &str,
) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "[nemo]\nsource = \"database\"\ndatabase_url = \"{db_url}\"\npoll_s = 5\ntimeout_s = 2\n\n\
         [mqtt]\nurl = \"{broker_url}\"\nclient_id = \"bridge-{name}\"\n\n\
         [status]\ntopic = \"test/bridge/status\"\n\n[http]\nlisten = \"127.0.0.1:{http}\"\n\n\
         [shutdown]\ndrain_timeout_s = 5\n\n[backoff]\ninitial_ms = 50\nmax_ms = 500\n\n\
         {}{extra}",
        super::NO_STATE_TOPICS
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Python's `datetime.isoformat()` of an aware UTC time, as the plugin writes every time into
/// its status row: microseconds only when not zero, and `+00:00` (never `Z` or nanoseconds).
pub fn is_python_isoformat_utc(s: &str) -> bool {
    regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?\+00:00$")
        .unwrap()
        .is_match(s)
        && !s.ends_with(".000000+00:00")
}
