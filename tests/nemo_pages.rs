//! NEMO 8.1.5's own pages, in a real headless Chromium, beside this bridge.
//!
//! A real NEMO site (NEMO 8.1.5 and the MQTT plugin from PyPI, in a venv that
//! `tests/nemo_site/site.sh` makes; NEMO's and the plugin's own migrations; Django's
//! `runserver`) shares its database with the bridge: a SQLite file for plugin 1.x, a
//! PostgreSQL for plugin 2.x. The events come from NEMO itself: the test uses a tool in NEMO
//! (`manage.py site_usage`) and the plugin's own signal handlers queue them. An administrator
//! then looks at the pages an operator looks at:
//!
//! - plugin 1.x: "Recent MQTT Messages" on NEMO's MQTT customization page, and the message
//!   log in NEMO's admin: the events NEMO queued, newest first, in the order they were
//!   published, none of the bridge's own tool-state documents, none shown retained;
//! - plugin 2.x: NEMO's bridge status view (`/mqtt_bridge_status/`) with this bridge, then
//!   with the plugin's own bridge started after it: the same keys and types, times as
//!   Python's `isoformat()` writes them, the applied configuration equal to the saved one, a
//!   page save shown at once as `notify`, and nothing of ours left for the plugin's bridge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nemo_testkit::{Mosquitto, PostgresServer, RedisServer, wait_for};
use regex::Regex;
use support::nemo_db::{NemoDatabase, is_python_isoformat_utc, table_config};
use support::{Bridge, KEY, Setup, TestResult, subscriber};

/// How long one page may take to load in Chromium.
const PAGE: Duration = Duration::from_secs(60);

/// A NEMO site: its venv's python, its environment, and (once served) its `runserver`.
struct NemoSite {
    python: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    server: Option<Child>,
    port: u16,
    tmp: tempfile::TempDir,
}

impl NemoSite {
    /// The site of plugin `generation` (1 or 2) on `database_url`, migrated by NEMO's and the
    /// plugin's own migrations, with its administrator.
    fn migrated(generation: u8, database_url: &str, env: &[(&str, String)]) -> NemoSite {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/nemo_site");
        let out = Command::new("bash")
            .arg(dir.join("site.sh"))
            .args(["setup", &generation.to_string()])
            .stdin(Stdio::null())
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "tests/nemo_site/site.sh setup {generation} failed (it needs python3 and PyPI):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let python = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let tmp = tempfile::tempdir().unwrap();
        let mut vars = vec![
            (
                "NEMO_SITE_DATABASE_URL".to_string(),
                database_url.to_string(),
            ),
            (
                "NEMO_SITE_MEDIA".to_string(),
                tmp.path().join("media").display().to_string(),
            ),
            // The plugin 2.x bridge's single-instance lock file lives in $TMPDIR.
            ("TMPDIR".to_string(), tmp.path().display().to_string()),
            ("PYTHONUNBUFFERED".to_string(), "1".to_string()),
            // Nothing written into the source tree.
            ("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string()),
            ("PYTHONWARNINGS".to_string(), "ignore".to_string()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let site = NemoSite {
            python,
            dir,
            env: vars,
            server: None,
            port: nemo_testkit::free_port().unwrap(),
            tmp,
        };
        let started = Instant::now();
        site.manage(&["migrate", "--no-input", "-v0"]);
        eprintln!(
            "NEMO 8.1.5 + plugin {generation}.x migrated in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        site.manage(&["site_admin"]);
        site
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.python);
        c.arg(self.dir.join("manage.py"))
            .args(args)
            .current_dir(&self.dir)
            .env("PYTHONPATH", &self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        c
    }

    /// Run `manage.py args`; its standard output.
    fn manage(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("the site's python");
        assert!(
            out.status.success(),
            "manage.py {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Save the MQTT page's configuration (broker 127.0.0.1:`port`, "log messages" as given)
    /// through the plugin's model; its `id` and `updated_at` as the page's row has them.
    fn save_configuration(&self, port: u16, log_messages: bool) -> serde_json::Value {
        let port = port.to_string();
        let mut args = vec!["site_configuration", "--broker-port", port.as_str()];
        if log_messages {
            args.push("--log-messages");
        }
        let out = self.manage(&args);
        serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("site_configuration: {e}: {out}"))
    }

    /// Serve the site with Django's `runserver` on a free loopback port.
    fn serve(&mut self) {
        let log = std::fs::File::create(self.tmp.path().join("runserver.log")).unwrap();
        let child = self
            .command(&[
                "runserver",
                &format!("127.0.0.1:{}", self.port),
                "--noreload",
                "--nothreading",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("runserver");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while support::http_get(self.port, "/customization/").is_none() {
            assert!(
                Instant::now() < deadline,
                "NEMO's runserver did not answer within 60 s:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("runserver.log")).unwrap_or_default()
    }

    /// The DOM of `path` as the administrator sees it in a headless Chromium.
    fn page(&self, path: &str) -> String {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        nemo_testkit::browser::dump_dom(&url, 2000, PAGE)
            .unwrap_or_else(|e| panic!("{url}: {e}\nrunserver:\n{}", self.server_log()))
    }

    /// A JSON view as Chromium shows it (the body's `<pre>`), parsed.
    fn json_page(&self, path: &str) -> serde_json::Value {
        let dom = self.page(path);
        let pre = Regex::new(r"(?s)<pre[^>]*>(.*?)</pre>").unwrap();
        let text = pre
            .captures(&dom)
            .unwrap_or_else(|| panic!("no <pre> in the page {path}:\n{dom}"))[1]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}:\n{text}"))
    }

    /// The plugin 2.x's own bridge (`python -m NEMO_mqtt_bridge.postgres_mqtt_bridge`), with
    /// this site's settings, logging to `log`.
    fn plugin_bridge(&self, log: &Path) -> Child {
        let log = std::fs::File::create(log).unwrap();
        let mut c = Command::new(&self.python);
        c.args(["-m", "NEMO_mqtt_bridge.postgres_mqtt_bridge"])
            .current_dir(&self.dir)
            .env("PYTHONPATH", &self.dir)
            .env("DJANGO_SETTINGS_MODULE", "nemo_site_settings")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        c.spawn().expect("the plugin's bridge")
    }
}

impl Drop for NemoSite {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The queue items NEMO's plugin 1.x pushed (LPUSH: newest first), oldest first: their topics.
fn queued_topics(redis: &RedisServer) -> Vec<String> {
    let out = redis.cli(&["LRANGE", KEY, "0", "-1"]).expect("redis-cli");
    let mut topics: Vec<String> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let item: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            item["topic"].as_str().unwrap().to_string()
        })
        .collect();
    topics.reverse();
    topics
}

/// Plugin 1.x with NEMO on a SQLite file: NEMO's MQTT page and the message log in NEMO's
/// admin show the events NEMO queued, newest first in publication order, none of the
/// bridge's tool-state documents (which the bridge does publish), none marked retained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin1_message_log_pages_show_what_nemo_queued_in_order() -> TestResult {
    const USES: usize = 30;
    let redis = RedisServer::start()?;
    let broker = Mosquitto::start()?;
    // NEMO's SQLite file, made by NEMO's and the plugin's own migrations.
    let db = NemoDatabase::Sqlite(tempfile::tempdir()?);
    let mut site = NemoSite::migrated(
        1,
        &db.url(),
        &[("NEMO_SITE_REDIS_PORT", redis.port().to_string())],
    );
    // The MQTT page's configuration, saved through the plugin's model: "Log all MQTT
    // messages" on, retain off.
    site.save_configuration(broker.port(), true);
    // A tool used in NEMO: the plugin's signal handlers queue a tool_created, then an
    // enabled and a disabled event per use.
    site.manage(&["site_usage", "--uses", &USES.to_string()]);
    let queued = queued_topics(&redis);
    assert_eq!(queued.len(), 1 + 2 * USES, "{queued:?}");

    let mut sub = subscriber(&broker.url(), "pages-sub", false).await;
    let setup = Setup::new();
    let cfg = setup.config(
        "pages.toml",
        &redis.url_db(1),
        "mqtt://127.0.0.1:9",
        "",
        &format!("\n[nemo]\ndatabase_url = \"{}\"\npoll_s = 1\n", db.url()),
    );
    // The bridge's tool-state documents on: they must reach the broker and stay out of the log.
    let text =
        std::fs::read_to_string(&cfg)?.replace("state_topics = false", "state_topics = true");
    std::fs::write(&cfg, text)?;
    let mut bridge = setup.bridge(&cfg, "pages");
    assert!(
        bridge.wait_ready(Duration::from_secs(30)),
        "{}",
        bridge.log()
    );
    let got = support::collect(&mut sub, Duration::from_secs(30), |g| {
        g.iter().filter(|m| !m.topic.ends_with("/state")).count() >= queued.len()
    })
    .await;
    let events: Vec<&str> = got
        .iter()
        .map(|m| m.topic.as_str())
        .filter(|t| !t.ends_with("/state"))
        .collect();
    assert_eq!(events, queued, "{}", bridge.log());
    assert!(
        got.iter().any(|m| m.topic.ends_with("/state")),
        "the bridge published no tool-state document"
    );
    // Every event is in NEMO's message log (the pages below judge what else is).
    let logged = || -> usize {
        db.query("SELECT count(*) FROM nemo_mqtt_mqttmessagelog")
            .parse()
            .unwrap()
    };
    wait_for(Duration::from_secs(20), "the message log", || {
        (logged() >= queued.len()).then_some(())
    });
    // A graceful stop: whatever the bridge would still log is written before the pages load.
    bridge.stop_cleanly(Duration::from_secs(15));
    site.serve();
    let newest_first: Vec<String> = queued.iter().rev().cloned().collect();

    // NEMO's MQTT page: "Recent MQTT Messages", the five newest.
    let page = site.page("/customization/mqtt/");
    let recent = page
        .split("Recent MQTT Messages")
        .nth(1)
        .unwrap_or_else(|| panic!("no \"Recent MQTT Messages\" on NEMO's MQTT page:\n{page}"));
    let recent = &recent[..recent.find("</table>").unwrap()];
    let row = Regex::new(r#"<tr>\s*<td>([^<]*)</td>\s*<td>\s*<span class="label label-(\w+)">"#)?;
    let rows: Vec<(String, String)> = row
        .captures_iter(recent)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect();
    assert_eq!(
        rows.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(),
        newest_first[..5].to_vec(),
        "Recent MQTT Messages:\n{recent}"
    );
    assert!(rows.iter().all(|(_, s)| s == "success"), "{rows:?}");

    // The message log in NEMO's admin: every row, newest first (by id), none retained.
    let admin = site.page("/admin/NEMO_mqtt_bridge/mqttmessagelog/");
    let topic = Regex::new(r#"class="field-topic"><a [^>]*>([^<]*)</a>"#)?;
    let topics: Vec<String> = topic
        .captures_iter(&admin)
        .map(|c| c[1].to_string())
        .collect();
    assert_eq!(topics, newest_first, "the admin's message log:\n{admin}");
    let retained = Regex::new(r#"class="field-retained"><img [^>]*alt="(True|False)""#)?;
    let flags: Vec<String> = retained
        .captures_iter(&admin)
        .map(|c| c[1].to_string())
        .collect();
    assert_eq!(flags.len(), queued.len(), "{admin}");
    assert!(flags.iter().all(|f| f == "False"), "{flags:?}");
    assert!(!admin.contains("/state<"), "a state document in the log");
    Ok(())
}

/// Every time in the status view (`…_at`, `at`, `last_heartbeat`), with its path, that is not
/// written as Python's `isoformat()` in UTC.
fn badly_written_times(v: &serde_json::Value, path: &str, bad: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{path}.{k}");
                let is_time = k.ends_with("_at") || k == "at" || k == "last_heartbeat";
                match v {
                    serde_json::Value::String(s) if is_time && !is_python_isoformat_utc(s) => {
                        bad.push(format!("{here} = {s}"))
                    }
                    _ => badly_written_times(v, &here, bad),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                badly_written_times(item, path, bad);
            }
        }
        _ => {}
    }
}

fn assert_times_as_python_writes_them(view: &serde_json::Value) {
    let mut bad = Vec::new();
    badly_written_times(view, "", &mut bad);
    assert!(
        bad.is_empty(),
        "times not as isoformat(): {bad:?} in {view:#}"
    );
}

/// The JSON type of each key of an object.
fn shape(v: &serde_json::Value) -> std::collections::BTreeMap<String, &'static str> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let t = match v {
                        serde_json::Value::Null => "null",
                        serde_json::Value::Bool(_) => "bool",
                        serde_json::Value::Number(_) => "number",
                        serde_json::Value::String(_) => "string",
                        serde_json::Value::Array(_) => "array",
                        serde_json::Value::Object(_) => "object",
                    };
                    (k.clone(), t)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The keys the plugin 2.x's own bridge writes into `bridge_diagnostics`.
const PLUGIN_DIAGNOSTICS: [&str; 5] = [
    "last_reload_reason",
    "last_reload_at",
    "applied_fingerprint",
    "last_error",
    "diagnostics_updated_at",
];

/// Plugin 2.x with NEMO on PostgreSQL: NEMO's bridge status view with this bridge shows what
/// it shows with the plugin's own bridge (the same keys, of the same types, times written
/// alike), the applied configuration equal to the saved one, a page save as `notify` within
/// a second, the queue as a number; after a stop, nothing of ours stays for the plugin's
/// bridge, which then serves from the same row and table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin2_status_view_shows_what_the_plugins_bridge_would() -> TestResult {
    // NEMO's PostgreSQL, made by NEMO's and the plugin's own migrations.
    let db = NemoDatabase::Postgres(Box::new(PostgresServer::start()?));
    let broker = Mosquitto::start()?;
    let mut site = NemoSite::migrated(2, &db.url(), &[]);
    let saved = site.save_configuration(broker.port(), false);

    let mut sub = subscriber(&broker.url(), "pages2-sub", false).await;
    let setup = Setup::new();
    let cfg = table_config(
        setup.dir.path(),
        "pages2.toml",
        &db.url(),
        &broker.url(),
        setup.http,
        "",
    );
    let mut bridge: Bridge = setup.bridge(&cfg, "pages2");
    assert!(
        bridge.wait_ready(Duration::from_secs(30)),
        "{}",
        bridge.log()
    );
    site.serve();

    // With this bridge, right after its start.
    let view = wait_for(
        Duration::from_secs(30),
        "the status view: connected",
        || {
            let v = site.json_page("/mqtt_bridge_status/");
            (v["status"] == "connected" && v["diagnostics"]["applied_fingerprint"].is_object())
                .then_some(v)
        },
    );
    assert_eq!(view["bridge_last_reload"]["reason"], "startup", "{view:#}");
    assert_eq!(
        view["mqtt_configuration"]["updated_at"], saved["updated_at"],
        "{view:#}"
    );
    assert_eq!(
        view["applied_mqtt_configuration"],
        serde_json::json!({"id": saved["id"], "updated_at": saved["updated_at"]}),
        "the applied configuration is the saved one: {view:#}"
    );
    assert!(view["diagnostics"]["queue_pending"].is_number(), "{view:#}");
    assert_times_as_python_writes_them(&view);

    // NEMO is used: the plugin queues the events, the bridge publishes them.
    site.manage(&["site_usage", "--uses", "10"]);
    let got = support::collect(&mut sub, Duration::from_secs(30), |g| g.len() >= 21).await;
    assert_eq!(got.len(), 21, "{}", bridge.log());
    let view = wait_for(
        Duration::from_secs(10),
        "an empty queue on the view",
        || {
            let v = site.json_page("/mqtt_bridge_status/");
            (v["queue"]["pending_count"] == 0 && v["diagnostics"]["queue_pending"] == 0)
                .then_some(v)
        },
    );
    assert_times_as_python_writes_them(&view);
    let ours_running = view["diagnostics"].clone();

    // A save on NEMO's MQTT page: the plugin's model sends NOTIFY; the row shows the reload.
    let saved_again = site.save_configuration(broker.port(), false);
    assert_ne!(saved_again["updated_at"], saved["updated_at"]);
    let after_save = Instant::now();
    let fingerprint = "SELECT bridge_diagnostics->'applied_fingerprint'->>'updated_at' \
                       FROM nemo_mqtt_mqttbridgestatus WHERE key = 'default'";
    let want = saved_again["updated_at"].as_str().unwrap().to_string();
    let deadline = after_save + Duration::from_secs(5);
    while db.query(fingerprint).trim() != want {
        assert!(
            Instant::now() < deadline,
            "the save was not applied within 5 s: {}",
            bridge.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let shown_after = after_save.elapsed();
    eprintln!(
        "page save shown in the status row after {} ms",
        shown_after.as_millis()
    );
    assert!(shown_after < Duration::from_secs(2), "{shown_after:?}");
    let view = site.json_page("/mqtt_bridge_status/");
    assert_eq!(view["bridge_last_reload"]["reason"], "notify", "{view:#}");
    assert_eq!(
        view["applied_mqtt_configuration"],
        serde_json::json!({"id": saved_again["id"], "updated_at": saved_again["updated_at"]}),
        "{view:#}"
    );
    assert_eq!(
        view["mqtt_configuration"]["updated_at"],
        saved_again["updated_at"]
    );
    assert_times_as_python_writes_them(&view);

    // A graceful stop: `disconnected`, and only the plugin's keys left in the row.
    bridge.stop_cleanly(Duration::from_secs(15));
    let view = site.json_page("/mqtt_bridge_status/");
    assert_eq!(view["status"], "disconnected", "{view:#}");
    let left: Vec<String> = shape(&view["diagnostics"]).into_keys().collect();
    assert!(
        left.iter()
            .all(|k| PLUGIN_DIAGNOSTICS.contains(&k.as_str())),
        "after our stop the row keeps keys the plugin does not write: {left:?}"
    );
    assert_times_as_python_writes_them(&view);

    // Events while no bridge runs stay queued, and the view counts them.
    site.manage(&["site_usage", "--uses", "5"]);
    let view = site.json_page("/mqtt_bridge_status/");
    assert_eq!(view["queue"]["pending_count"], 10, "{view:#}");

    // The operator switches back to the plugin's own bridge: it reads the row cleanly and
    // drains what we left queued.
    let plugin_log = site.tmp.path().join("plugin-bridge.log");
    let mut plugin = site.plugin_bridge(&plugin_log);
    let plugin_log_text = || std::fs::read_to_string(&plugin_log).unwrap_or_default();
    let got = support::collect(&mut sub, Duration::from_secs(60), |g| g.len() >= 10).await;
    assert_eq!(got.len(), 10, "the plugin's bridge:\n{}", plugin_log_text());
    let theirs = wait_for(
        Duration::from_secs(30),
        "the plugin's bridge on the view",
        || {
            let v = site.json_page("/mqtt_bridge_status/");
            (v["status"] == "connected"
                && v["queue"]["pending_count"] == 0
                && v["bridge_last_reload"]["reason"] == "startup")
                .then_some(v)
        },
    );
    let _ = plugin.kill();
    let _ = plugin.wait();
    let theirs_keys: Vec<String> = shape(&theirs["diagnostics"]).into_keys().collect();
    assert!(
        theirs_keys
            .iter()
            .all(|k| PLUGIN_DIAGNOSTICS.contains(&k.as_str())),
        "the plugin's bridge shows keys of ours: {theirs_keys:?}\n{theirs:#}"
    );
    // What the plugin's bridge shows, ours showed too: every key, of the same type.
    let ours_shape = shape(&ours_running);
    for (key, kind) in shape(&theirs["diagnostics"]) {
        assert_eq!(
            ours_shape.get(&key),
            Some(&kind),
            "diagnostics.{key}: ours {ours_running:#}, the plugin's {theirs:#}"
        );
    }
    assert_eq!(
        shape(&theirs["diagnostics"]["applied_fingerprint"]),
        shape(&ours_running["applied_fingerprint"])
    );
    assert_times_as_python_writes_them(&theirs);
    eprintln!("the plugin's bridge's view: {theirs:#}");
    eprintln!("ours: {ours_running:#}");
    Ok(())
}
