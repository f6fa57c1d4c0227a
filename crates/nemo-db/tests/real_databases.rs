//! `NemoDb` against a real PostgreSQL (started by nemo-testkit) and a real SQLite file, both
//! made from the plugin's exact DDL (tests/fixtures/nemo-plugin-schema).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use nemo_db::{Backend, DbError, NemoConfig, NemoDb, NemoStore};
use nemo_testkit::{PostgresServer, fixtures_dir};
use sqlx::{PgPool, SqlitePool};

/// A handle to write to the test database the way NEMO's page (Django's ORM) does.
enum Writer {
    Pg(PgPool),
    Lite(SqlitePool),
}

impl Writer {
    async fn exec(&self, sql: &str) {
        match self {
            Writer::Pg(p) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(p)
                .await
                .map(|_| ()),
            Writer::Lite(p) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(p)
                .await
                .map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

fn schema(name: &str) -> String {
    std::fs::read_to_string(fixtures_dir().join("nemo-plugin-schema").join(name)).unwrap()
}

/// One INSERT that both dialects accept (TRUE/FALSE, CURRENT_TIMESTAMP).
fn insert_row(id: i64, name: &str, enabled: bool, port: i64, key: &str) -> String {
    format!(
        "INSERT INTO nemo_mqtt_mqttconfiguration (id, name, enabled, broker_host, broker_port, \
         keepalive, client_id, username, password, use_hmac, hmac_secret_key, hmac_algorithm, \
         topic_prefix, qos_level, retain_messages, clean_session, auto_reconnect, reconnect_delay, \
         max_reconnect_attempts, log_messages, log_level, created_at, updated_at) VALUES \
         ({id}, '{name}', {enabled}, '127.0.0.1', {port}, 45, 'nemo_bridge_{id}', 'bridge', 'pw', \
         TRUE, '{key}', 'sha256', 'nemo', 1, FALSE, TRUE, TRUE, 3, 10, TRUE, 'INFO', \
         CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
}

fn cfg(url: &str) -> NemoConfig {
    NemoConfig {
        database_url: url.into(),
        timeout_s: 2,
        ..NemoConfig::default()
    }
}

/// The scenario both backends must pass: missing table, no enabled row, lowest enabled id,
/// a change seen as a different row, a bad column reported by name.
async fn scenario(db: &NemoDb, w: &Writer, ddl: &str) {
    let err = db.active_configuration().await.unwrap_err();
    assert!(
        matches!(
            err,
            DbError::MissingTable {
                table: "nemo_mqtt_mqttconfiguration",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("installed and migrated"), "{err}");

    w.exec(ddl).await;
    assert_eq!(db.active_configuration().await.unwrap(), None);

    w.exec(&insert_row(1, "off", false, 1881, "k1")).await;
    assert_eq!(
        db.active_configuration().await.unwrap(),
        None,
        "a disabled row is not active"
    );

    w.exec(&insert_row(5, "second", true, 1885, "k5")).await;
    w.exec(&insert_row(3, "first", true, 1883, "k3")).await;
    let row = db
        .active_configuration()
        .await
        .unwrap()
        .expect("an enabled row");
    assert_eq!(row.id, 3, "the enabled row with the lowest id");
    assert_eq!(row.name.as_deref(), Some("first"));
    assert_eq!(row.enabled, Some(true));
    assert_eq!(row.use_hmac, Some(true));
    assert_eq!(row.clean_session, Some(true));
    assert_eq!(row.log_messages, Some(true));
    assert_eq!(row.qos_level, Some(1));
    assert_eq!(row.max_reconnect_attempts, Some(10));
    assert!(
        row.updated_at
            .as_deref()
            .is_some_and(|t| t.starts_with("20")),
        "{row:?}"
    );
    let s = row.settings().unwrap();
    assert_eq!((s.broker_host.as_str(), s.broker_port), ("127.0.0.1", 1883));
    assert_eq!(s.keepalive, Duration::from_secs(45));
    assert_eq!(s.client_id.as_deref(), Some("nemo_bridge_3"));
    assert_eq!(s.credentials, Some(("bridge".into(), "pw".into())));
    assert_eq!(s.hmac_key.as_deref(), Some("k3"));
    assert_eq!(s.reconnect_delay, Duration::from_secs(3));

    // A save on the page: the port and key change; the poll sees a different row.
    w.exec("UPDATE nemo_mqtt_mqttconfiguration SET broker_port = 1884, hmac_secret_key = 'k3b' WHERE id = 3")
        .await;
    let changed = db.active_configuration().await.unwrap().unwrap();
    assert_ne!(changed, row);
    assert_eq!(changed.settings().unwrap().broker_port, 1884);

    // Bad values are reported naming the column; the row is read all the same.
    w.exec("UPDATE nemo_mqtt_mqttconfiguration SET broker_port = 0 WHERE id = 3")
        .await;
    let bad = db.active_configuration().await.unwrap().unwrap();
    assert_eq!(
        bad.settings().unwrap_err().to_string(),
        "nemo_mqtt_mqttconfiguration id=3: broker_port = 0: must be a TCP port in 1..=65535"
    );
    w.exec(
        "UPDATE nemo_mqtt_mqttconfiguration SET broker_port = 1884, broker_host = '' WHERE id = 3",
    )
    .await;
    let bad = db.active_configuration().await.unwrap().unwrap();
    assert!(
        bad.settings()
            .unwrap_err()
            .to_string()
            .contains("broker_host = \"\"")
    );
    w.exec("UPDATE nemo_mqtt_mqttconfiguration SET broker_host = 'h', hmac_secret_key = NULL WHERE id = 3")
        .await;
    let bad = db.active_configuration().await.unwrap().unwrap();
    assert!(
        bad.settings()
            .unwrap_err()
            .to_string()
            .contains("hmac_secret_key = NULL")
    );

    // Disabling the active row makes the next one active.
    w.exec("UPDATE nemo_mqtt_mqttconfiguration SET enabled = FALSE WHERE id = 3")
        .await;
    assert_eq!(db.active_configuration().await.unwrap().unwrap().id, 5);
}

/// A new SQLite file (in `dir`): NEMO's writer (creating the file) and the bridge's `NemoDb`.
async fn sqlite_file(dir: &tempfile::TempDir) -> (std::path::PathBuf, Writer, NemoDb) {
    let path = dir.path().join("nemo.sqlite3");
    let writer = SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    let db = NemoDb::open(&cfg(&format!("sqlite://{}", path.display()))).unwrap();
    (path, Writer::Lite(writer), db)
}

#[tokio::test]
async fn sqlite_file_made_from_the_plugin_ddl() {
    let dir = tempfile::tempdir().unwrap();
    let (_, writer, db) = sqlite_file(&dir).await;
    assert_eq!(db.backend(), Backend::Sqlite);
    scenario(&db, &writer, &schema("sqlite.sql")).await;
}

#[tokio::test]
async fn sqlite_file_that_does_not_exist_is_unreachable_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.sqlite3");
    let db = NemoDb::open(&cfg(&format!("sqlite://{}", path.display()))).unwrap();
    let err = db.active_configuration().await.unwrap_err();
    assert!(matches!(err, DbError::Unreachable { .. }), "{err}");
    assert!(err.is_transient());
    assert!(
        !path.exists(),
        "the bridge must never create NEMO's database"
    );
}

#[tokio::test]
async fn postgres_made_from_the_plugin_ddl() {
    let pg = PostgresServer::start().unwrap();
    let writer = PgPool::connect(&pg.url()).await.unwrap();
    let db = NemoDb::open(&cfg(&pg.url())).unwrap();
    assert_eq!(db.backend(), Backend::Postgres);
    scenario(&db, &Writer::Pg(writer), &schema("postgresql.sql")).await;
}

#[tokio::test]
async fn postgres_down_is_a_bounded_transient_error_and_comes_back() {
    let mut pg = PostgresServer::start().unwrap();
    let writer = PgPool::connect(&pg.url()).await.unwrap();
    Writer::Pg(writer.clone())
        .exec(&schema("postgresql.sql"))
        .await;
    Writer::Pg(writer.clone())
        .exec(&insert_row(1, "default", true, 1883, "k"))
        .await;
    writer.close().await;
    let db = NemoDb::open(&cfg(&pg.url())).unwrap();
    assert_eq!(db.active_configuration().await.unwrap().unwrap().id, 1);

    pg.stop();
    let t = Instant::now();
    let err = db.active_configuration().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "bounded: {:?}",
        t.elapsed()
    );
    let text = err.to_string();
    assert!(
        text.starts_with("database postgres://postgres@127.0.0.1:"),
        "{text}"
    );

    pg.restart().unwrap();
    let row = db.active_configuration().await.unwrap().unwrap();
    assert_eq!(row.broker_port, Some(1883));
}

#[tokio::test]
async fn postgres_wrong_password_is_one_line_without_the_password() {
    let pg = PostgresServer::start().unwrap();
    let url = format!("postgres://nosuchuser:hunter2@127.0.0.1:{}/nemo", pg.port());
    let db = NemoDb::open(&cfg(&url)).unwrap();
    let err = db.active_configuration().await.unwrap_err().to_string();
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("nosuchuser:***@"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[tokio::test]
async fn postgres_over_tls_verifies_the_server_certificate() {
    let certs = nemo_testkit::Certs::generate().unwrap();
    let pg = PostgresServer::start().unwrap();
    pg.psql_file(fixtures_dir().join("nemo-plugin-schema/postgresql.sql"))
        .unwrap();
    pg.psql(&insert_row(1, "default", true, 8883, "k")).unwrap();
    pg.enable_tls(&certs).unwrap();
    let tls_url = |ca: &std::path::Path| {
        format!(
            "postgres://postgres@127.0.0.1:{}/nemo?sslmode=verify-full&sslrootcert={}",
            pg.port(),
            ca.display()
        )
    };
    let db = NemoDb::open(&cfg(&tls_url(&certs.ca))).unwrap();
    let row = db.active_configuration().await.unwrap().unwrap();
    assert_eq!(row.broker_port, Some(8883));
    // The server really speaks TLS to us: pg_stat_ssl says so for our own session.
    let ssl_sessions = pg
        .psql("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name = 'nemo-bridge'")
        .unwrap();
    assert_eq!(ssl_sessions, "1", "the bridge's session is not encrypted");

    // A CA that did not sign the server's certificate: refused, one line, transient-looking
    // but naming the certificate problem.
    let other = nemo_testkit::Certs::generate().unwrap();
    let db = NemoDb::open(&cfg(&tls_url(&other.ca))).unwrap();
    let err = db.active_configuration().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DbError::Unreachable { .. }), "{text}");
    assert!(text.contains("certificate"), "{text}");
    assert!(!text.contains('\n'), "{text}");
}

impl Writer {
    /// Topics, success flags and payloads of the message log, oldest first.
    async fn log_rows(&self) -> Vec<(String, bool, String)> {
        const SQL: &str =
            "SELECT topic, success, payload FROM nemo_mqtt_mqttmessagelog ORDER BY id";
        match self {
            Writer::Pg(p) => sqlx::query_as(SQL).fetch_all(p).await.unwrap(),
            Writer::Lite(p) => sqlx::query_as(SQL).fetch_all(p).await.unwrap(),
        }
    }
}

fn entry(i: usize) -> nemo_db::LogEntry {
    if i % 3 == 2 {
        nemo_db::LogEntry::failed(
            format!("nemo/tools/{i}/enabled"),
            format!("{{\"seq\": {i}}}"),
            1,
            false,
            "mqtt: connection lost",
        )
    } else {
        nemo_db::LogEntry::confirmed(
            format!("nemo/tools/{i}/enabled"),
            format!("{{\"seq\": {i}}}"),
            1,
            false,
        )
    }
}

/// Filters and the message log, on either backend.
async fn filters_and_log_scenario(db: &NemoDb, w: &Writer, ddl: &str) {
    assert_eq!(
        db.event_filters().await.unwrap(),
        None,
        "no table: filters off"
    );
    let err = db.append_message_log(&[entry(0)]).await.unwrap_err();
    assert!(
        matches!(
            err,
            DbError::MissingTable {
                table: "nemo_mqtt_mqttmessagelog",
                ..
            }
        ),
        "{err}"
    );

    w.exec(ddl).await;
    assert_eq!(db.event_filters().await.unwrap(), Some(vec![]));
    w.exec("INSERT INTO nemo_mqtt_mqtteventfilter (id, event_type, enabled, topic_override, include_payload, created_at, updated_at) VALUES \
            (2, 'usage_event_save', FALSE, NULL, TRUE, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP), \
            (1, 'area_access_save', TRUE, 'lab/doors', FALSE, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)")
        .await;
    let rows = db.event_filters().await.unwrap().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].id, rows[0].event_type.as_deref()),
        (1, Some("area_access_save"))
    );
    assert_eq!(rows[0].topic_override.as_deref(), Some("lab/doors"));
    assert_eq!(rows[0].include_payload, Some(false));
    assert_eq!(
        (rows[1].enabled, rows[1].topic_override.as_deref()),
        (Some(false), None)
    );

    let entries: Vec<_> = (0..7).map(entry).collect();
    db.append_message_log(&entries[..4]).await.unwrap();
    db.append_message_log(&entries[4..]).await.unwrap();
    let logged = w.log_rows().await;
    assert_eq!(logged.len(), 7);
    for (i, (topic, success, payload)) in logged.iter().enumerate() {
        assert_eq!(topic, &format!("nemo/tools/{i}/enabled"));
        assert_eq!(*success, i % 3 != 2);
        assert_eq!(payload, &format!("{{\"seq\": {i}}}"));
    }
    assert_eq!(db.trim_message_log(3).await.unwrap(), 4);
    let kept: Vec<String> = w.log_rows().await.into_iter().map(|r| r.0).collect();
    assert_eq!(
        kept,
        [
            "nemo/tools/4/enabled",
            "nemo/tools/5/enabled",
            "nemo/tools/6/enabled"
        ]
    );
    assert_eq!(
        db.trim_message_log(3).await.unwrap(),
        0,
        "nothing more to trim"
    );
    // 1,200 rows in one call: more than one INSERT statement.
    let many: Vec<_> = (0..1_200).map(entry).collect();
    db.append_message_log(&many).await.unwrap();
    assert_eq!(w.log_rows().await.len(), 1_203);
    assert_eq!(db.trim_message_log(1_000).await.unwrap(), 203);
}

#[tokio::test]
async fn sqlite_filters_and_message_log() {
    let dir = tempfile::tempdir().unwrap();
    let (path, writer, db) = sqlite_file(&dir).await;
    filters_and_log_scenario(&db, &writer, &schema("sqlite.sql")).await;
    // The same file opened read-only: writing the log is denied, reading still works.
    let ro = NemoDb::open(&cfg(&format!("sqlite://{}?mode=ro", path.display()))).unwrap();
    assert_eq!(ro.event_filters().await.unwrap().unwrap().len(), 2);
    let err = ro.append_message_log(&[entry(0)]).await.unwrap_err();
    assert!(matches!(err, DbError::Denied { .. }), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn postgres_filters_and_message_log_and_a_role_without_insert() {
    let pg = PostgresServer::start().unwrap();
    let writer = PgPool::connect(&pg.url()).await.unwrap();
    let db = NemoDb::open(&cfg(&pg.url())).unwrap();
    filters_and_log_scenario(&db, &Writer::Pg(writer), &schema("postgresql.sql")).await;
    // The read-only role of the operator guide: SELECT on the settings tables only.
    pg.psql(
        "CREATE ROLE nemo_reader LOGIN; \
         GRANT SELECT ON nemo_mqtt_mqttconfiguration, nemo_mqtt_mqtteventfilter TO nemo_reader",
    )
    .unwrap();
    let reader = NemoDb::open(&cfg(&format!(
        "postgres://nemo_reader@127.0.0.1:{}/nemo",
        pg.port()
    )))
    .unwrap();
    assert_eq!(reader.event_filters().await.unwrap().unwrap().len(), 2);
    let err = reader.append_message_log(&[entry(0)]).await.unwrap_err();
    assert!(
        matches!(
            err,
            DbError::Denied {
                table: "nemo_mqtt_mqttmessagelog",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("permission denied"), "{err}");
    // With INSERT and DELETE (and no sequence grant) the log works.
    pg.psql("GRANT SELECT, INSERT, DELETE ON nemo_mqtt_mqttmessagelog TO nemo_reader")
        .unwrap();
    reader.append_message_log(&[entry(0)]).await.unwrap();
    assert_eq!(reader.trim_message_log(1).await.unwrap(), 1000);
}
