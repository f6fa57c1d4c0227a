//! Secrets (issue 10): the MQTT password (in the config and inside the broker URL), the HMAC key
//! and the Redis password never appear in anything the bridge prints or serves — its stdout and
//! stderr at `RUST_LOG=debug` during a working run, a run with a wrong broker password, a run
//! with a wrong Redis password, `/metrics`, `/healthz`, `/readyz`, and `--check-config` output
//! (valid and invalid configurations). Issue 26: every secret form the configuration takes
//! (Sentinel URL with `sentinelPassword=`, `password=` parameters, PostgreSQL URL, NEMO's row)
//! is redacted by `--check-config`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use nemo_testkit::{Mosquitto, RedisServer};
use support::*;

const MQTT_PW: &str = "mqttpw-Q7x9Kc2Hv";
const BAD_MQTT_PW: &str = "badmqttpw-K1m3Ps7";
const HMAC_KEY: &str = "hmackey-Z3v6Np0Fa";
const REDIS_PW: &str = "redispw-W2y5Jb8Lc";
const BAD_REDIS_PW: &str = "badredispw-T6u1Vd4";
const SECRETS: [&str; 5] = [MQTT_PW, BAD_MQTT_PW, HMAC_KEY, REDIS_PW, BAD_REDIS_PW];

/// Everything we captured, with a label, checked at the end.
#[derive(Default)]
struct Outputs(Vec<(String, String)>);

impl Outputs {
    fn add(&mut self, label: &str, text: impl Into<String>) {
        self.0.push((label.to_string(), text.into()));
    }
    fn assert_clean(&self) {
        let mut total = 0;
        for (label, text) in &self.0 {
            total += text.len();
            for s in SECRETS {
                assert!(
                    !text.contains(s),
                    "secret {s:?} appears in {label}:\n{text}"
                );
            }
            // Parts of a secret are leaks too (e.g. a truncated or split echo).
            for s in SECRETS {
                let tail = &s[s.len() - 8..];
                assert!(
                    !text.contains(tail),
                    "part of secret {s:?} appears in {label}:\n{text}"
                );
            }
        }
        for (label, text) in &self.0 {
            println!("  checked {label}: {} bytes", text.len());
        }
        let lines: usize = self.0.iter().map(|(_, t)| t.lines().count()).sum();
        println!(
            "secrets: checked {} outputs, {lines} lines, {total} bytes: no secret found",
            self.0.len()
        );
    }
}

fn sigterm(b: &mut Bridge) {
    let _ = Command::new("kill")
        .args(["-TERM", &b.pid().to_string()])
        .status();
    for _ in 0..100 {
        if !b.alive() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_metrics_or_check_config() -> TestResult {
    let redis = RedisServer::builder().password(REDIS_PW).start()?;
    let broker = Mosquitto::builder().user("bridge", MQTT_PW).start()?;
    let port = broker.port();
    let redis_url = redis.url_db(1);
    assert!(redis_url.contains(REDIS_PW));
    let bad_redis_url = redis_url.replace(REDIS_PW, BAD_REDIS_PW);
    let hmac = format!("[hmac]\nkey = \"{HMAC_KEY}\"\n");
    let mut out = Outputs::default();
    let mut sub = {
        let cfg = nemo_mqtt::MqttConfig {
            client_id: "reliability-secrets-sub".into(),
            username: "bridge".into(),
            password: nemo_mqtt::Secret::new(MQTT_PW),
            ..nemo_mqtt::MqttConfig::for_url(broker.url())
        };
        nemo_mqtt::Subscriber::connect(cfg, &["nemo/#"], nemo_events::Qos::AtLeastOnce).await?
    };
    let producer = producer(&redis).await;

    // Working runs: MQTT password in the config file, then in the environment; HMAC on; Redis
    // password in the Redis URL. (Credentials inside mqtt.url are refused: see below.)
    let runs = [
        (
            "config-pw",
            format!("mqtt://127.0.0.1:{port}"),
            format!("username = \"bridge\"\npassword = \"{MQTT_PW}\"\n"),
        ),
        (
            "env-pw",
            format!("mqtt://127.0.0.1:{port}"),
            "username = \"bridge\"\n".to_string(),
        ),
    ];
    for (i, (tag, url, mqtt_extra)) in runs.iter().enumerate() {
        let setup = Setup::new();
        let cfg = setup.config(&format!("{tag}.toml"), &redis_url, url, mqtt_extra, &hmac);
        let mut bridge = if *tag == "env-pw" {
            spawn_with_env(&setup, &cfg, tag, &[("NEMO_MQTT__PASSWORD", MQTT_PW)])
        } else {
            setup.bridge_at(&cfg, tag, "trace")
        };
        assert!(
            bridge.wait_ready(Duration::from_secs(20)),
            "{tag} not ready:\n{}",
            bridge.tail(30)
        );
        let items: Vec<String> = (0..20).map(|s| item(s % 2, i * 100 + s)).collect();
        producer.enqueue_raw_many(&items).await?;
        let got = collect(&mut sub, Duration::from_secs(20), |g| g.len() >= 20).await;
        assert_eq!(got.len(), 20, "{tag}: delivered; log:\n{}", bridge.tail(30));
        let inner = nemo_events::hmac::verify(&got[0].payload, HMAC_KEY.as_bytes())?;
        assert!(inner.contains("\"seq\""), "signed with the key");
        for path in ["/metrics", "/healthz", "/readyz"] {
            let (code, body) = bridge.get(path).unwrap_or_default();
            out.add(&format!("{tag} GET {path} ({code})"), body);
        }
        let check = run_bridge(
            &["--config", cfg.to_str().unwrap(), "--check-config"],
            &[("RUST_LOG", "debug"), ("NEMO_MQTT__PASSWORD", MQTT_PW)],
        );
        assert_eq!(
            check.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
        out.add(
            &format!("{tag} --check-config stdout"),
            String::from_utf8_lossy(&check.stdout),
        );
        out.add(
            &format!("{tag} --check-config stderr"),
            String::from_utf8_lossy(&check.stderr),
        );
        sigterm(&mut bridge);
        out.add(&format!("{tag} bridge stdout+stderr"), bridge.log());
    }

    // Failing runs: wrong broker password (config, then URL), wrong Redis password.
    let failing = [
        (
            "bad-mqtt-config-pw",
            redis_url.clone(),
            format!("mqtt://127.0.0.1:{port}"),
            format!("username = \"bridge\"\npassword = \"{BAD_MQTT_PW}\"\n"),
            "mqtt",
        ),
        (
            "bad-redis-pw",
            bad_redis_url.clone(),
            format!("mqtt://127.0.0.1:{port}"),
            format!("username = \"bridge\"\npassword = \"{MQTT_PW}\"\n"),
            "redis",
        ),
    ];
    for (tag, rurl, url, mqtt_extra, what) in &failing {
        let setup = Setup::new();
        let cfg = setup.config(&format!("{tag}.toml"), rurl, url, mqtt_extra, &hmac);
        let mut bridge = setup.bridge_at(&cfg, tag, "trace");
        // Wait for an error about the refused login to be printed.
        let refused = |l: &str| {
            let low = l.to_lowercase();
            (l.contains("WARN") || l.contains("ERROR") || l.starts_with("bridge:"))
                && (low.contains("not authori")
                    || low.contains("password")
                    || low.contains("wrongpass")
                    || low.contains("auth"))
        };
        let said = bridge.wait_log(Duration::from_secs(15), |log| log.lines().any(refused));
        let log = bridge.log();
        println!(
            "{tag}: {}",
            log.lines().find(|l| refused(l)).unwrap_or("(no auth line)")
        );
        assert!(
            said,
            "{tag}: no error about the refused {what} login:\n{}",
            bridge.tail(30)
        );
        let (code, body) = bridge.get("/metrics").unwrap_or_default();
        out.add(&format!("{tag} GET /metrics ({code})"), body);
        let (code, body) = bridge.get("/readyz").unwrap_or_default();
        out.add(&format!("{tag} GET /readyz ({code})"), body);
        sigterm(&mut bridge);
        out.add(&format!("{tag} bridge stdout+stderr"), bridge.log());
    }

    // --check-config on invalid configurations that hold secrets: the error must not echo them.
    let dir = tempfile::tempdir()?;
    let invalid = [
        format!("[mqtt]\nurl = \"mqtt://bridge:{MQTT_PW}@127.0.0.1:{port}\"\n"),
        format!(
            "[mqtt]\nurl = [\"mqtt://127.0.0.1:1\", \"mqtts://bridge:{BAD_MQTT_PW}@127.0.0.1:{port}\"]\n"
        ),
        format!("[mqtt]\nurl = \"mqtt://bridge:{MQTT_PW}@127.0.0.1:notaport\"\n"),
        format!(
            "[mqtt]\nurl = \"ftp://bridge:{MQTT_PW}@127.0.0.1:1\"\npassword = \"{BAD_MQTT_PW}\"\nqos = 9\n"
        ),
        format!("[redis]\nurl = \"redis://:{REDIS_PW}@127.0.0.1:notaport/1\"\n"),
        format!("[redis]\nurl = \"http://:{REDIS_PW}@127.0.0.1:1/1\"\n"),
        format!("[hmac]\nkey = \"{HMAC_KEY}\"\nkey_file = 7\n"),
        format!("[hmac]\nkey = {{ value = \"{HMAC_KEY}\" }}\n"),
    ];
    for (i, text) in invalid.iter().enumerate() {
        let path = dir.path().join(format!("invalid{i}.toml"));
        std::fs::write(&path, text)?;
        let o = run_bridge(
            &["--config", path.to_str().unwrap(), "--check-config"],
            &[("RUST_LOG", "debug")],
        );
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        println!(
            "invalid config {i}: exit {:?}: {}",
            o.status.code(),
            err.trim()
        );
        assert_ne!(o.status.code(), Some(0), "accepted: {text}");
        out.add(&format!("invalid config {i} stderr"), err);
        out.add(
            &format!("invalid config {i} stdout"),
            String::from_utf8_lossy(&o.stdout),
        );
    }
    // The same secrets through the environment and flags.
    let o = run_bridge(
        &["--check-config", "--mqtt-url", "mqtt://127.0.0.1:1"],
        &[
            ("RUST_LOG", "debug"),
            ("NEMO_HMAC__KEY", HMAC_KEY),
            ("NEMO_MQTT__USERNAME", "bridge"),
            ("NEMO_MQTT__PASSWORD", BAD_MQTT_PW),
            ("NEMO_REDIS__URL", &redis_url),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out.add(
        "env/flags --check-config stdout",
        String::from_utf8_lossy(&o.stdout),
    );
    out.add(
        "env/flags --check-config stderr",
        String::from_utf8_lossy(&o.stderr),
    );
    // A bridge started with credentials inside mqtt.url refuses to start, without echoing them.
    let setup = Setup::new();
    let cfg = setup.config(
        "url-pw.toml",
        &redis_url,
        &format!("mqtt://bridge:{MQTT_PW}@127.0.0.1:{port}"),
        "",
        &hmac,
    );
    let o = run_bridge(
        &["--config", cfg.to_str().unwrap()],
        &[("RUST_LOG", "debug")],
    );
    println!(
        "credentials in mqtt.url: exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).trim()
    );
    assert_eq!(o.status.code(), Some(2));
    out.add("url-pw run stderr", String::from_utf8_lossy(&o.stderr));
    out.add("url-pw run stdout", String::from_utf8_lossy(&o.stdout));
    out.assert_clean();
    Ok(())
}

fn spawn_with_env(setup: &Setup, cfg: &std::path::Path, tag: &str, env: &[(&str, &str)]) -> Bridge {
    let log = setup.dir.path().join(format!("{tag}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_bridge"));
    c.arg("--config")
        .arg(cfg)
        .env("RUST_LOG", "debug")
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    for (k, v) in env {
        c.env(k, v);
    }
    Bridge {
        child: c.spawn().unwrap(),
        http: setup.http,
        log,
    }
}

const SENTINEL_PW: &str = "sentinelpw-R4t8Gm1Qd";
const REDIS_NODE_PW: &str = "redisnodepw-H5k2Wx9Ze";
const PG_PW: &str = "pgpw-M3n7Bq5Ty";
const PG_PARAM_PW: &str = "pgparampw-V8c4Lj6Ru";
const ROW_MQTT_PW: &str = "rowmqttpw-D9f3Sg7Kp";
const ROW_HMAC_KEY: &str = "rowhmackey-J6h1Xn4Wc";
/// Every secret form of docs/configuration.md, each a distinct string.
const EVERY_FORM: [&str; 8] = [
    SENTINEL_PW,
    REDIS_NODE_PW,
    MQTT_PW,
    PG_PW,
    PG_PARAM_PW,
    HMAC_KEY,
    ROW_MQTT_PW,
    ROW_HMAC_KEY,
];

/// No secret of [`EVERY_FORM`], nor its last 8 characters, in `text`.
fn assert_no_secret(label: &str, text: &str) {
    for s in EVERY_FORM {
        assert!(
            !text.contains(s),
            "secret {s:?} appears in {label}:\n{text}"
        );
        let tail = &s[s.len() - 8..];
        assert!(
            !text.contains(tail),
            "part of secret {s:?} appears in {label}:\n{text}"
        );
    }
}

/// `--check-config` with every secret form the configuration takes — a Sentinel URL with a
/// node password and `sentinelPassword=`, an MQTT password, a PostgreSQL URL with a user-info
/// password and a `password=` parameter (the database unreachable), an HMAC key — first from the
/// file, then from the environment: none of them on stdout or stderr, and the redacted forms
/// are there (so the values are shown, not dropped).
#[test]
fn check_config_redacts_every_secret_form() {
    let dir = tempfile::tempdir().unwrap();
    let sentinel = format!(
        "redis-sentinel://:{REDIS_NODE_PW}@127.0.0.1:1/1?sentinelServiceName=mymaster&sentinelPassword={SENTINEL_PW}"
    );
    let pg = format!(
        "postgres://nemo:{PG_PW}@127.0.0.1:1/nemo?password={PG_PARAM_PW}&connect_timeout=1"
    );
    let file = dir.path().join("every-secret.toml");
    std::fs::write(
        &file,
        format!(
            "[redis]\nurl = \"{sentinel}\"\n\
             [mqtt]\nurl = \"mqtt://127.0.0.1:1\"\nusername = \"bridge\"\npassword = \"{MQTT_PW}\"\n\
             [hmac]\nkey = \"{HMAC_KEY}\"\n\
             [nemo]\ndatabase_url = \"{pg}\"\ntimeout_s = 2\n"
        ),
    )
    .unwrap();
    let o = run_bridge(
        &["--config", file.to_str().unwrap(), "--check-config"],
        &[("RUST_LOG", "trace")],
    );
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    println!("file: exit {:?}\n{out}{err}", o.status.code());
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_no_secret("--check-config stdout (file)", &out);
    assert_no_secret("--check-config stderr (file)", &err);
    for shown in [
        "redis-sentinel://:***@127.0.0.1:1/1?sentinelServiceName=mymaster&sentinelPassword=***",
        "password = \"***\"",
        "key = \"***\"",
        "postgres://nemo:***@127.0.0.1:1/nemo?password=***&connect_timeout=1",
    ] {
        assert!(out.contains(shown), "missing {shown:?} in:\n{out}");
    }

    // The same through the environment (no file).
    let o = run_bridge(
        &["--check-config"],
        &[
            ("RUST_LOG", "trace"),
            ("NEMO_REDIS__URL", &sentinel),
            ("NEMO_MQTT__USERNAME", "bridge"),
            ("NEMO_MQTT__PASSWORD", MQTT_PW),
            ("NEMO_HMAC__KEY", HMAC_KEY),
            ("NEMO_NEMO__DATABASE_URL", &pg),
            ("NEMO_NEMO__TIMEOUT_S", "2"),
        ],
    );
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_no_secret("--check-config stdout (environment)", &out);
    assert_no_secret("--check-config stderr (environment)", &err);
    assert!(out.contains("sentinelPassword=***"), "{out}");
}

/// The key columns of NEMO's row (`password`, `hmac_secret_key`) reach the configuration as
/// `mqtt.password` and `hmac.key`: `--check-config` shows them as `***`, named after the row.
#[test]
fn check_config_redacts_the_key_columns_of_nemos_row() {
    let db = support::nemo_db::NemoDatabase::sqlite();
    db.insert_configuration(1884, ROW_HMAC_KEY);
    db.exec(&format!(
        "UPDATE nemo_mqtt_mqttconfiguration SET username = 'page-user', password = '{ROW_MQTT_PW}'"
    ));
    let o = run_bridge(
        &["--check-config", "--nemo-database-url", &db.url()],
        &[("RUST_LOG", "trace")],
    );
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_no_secret("--check-config stdout (row)", &out);
    assert_no_secret("--check-config stderr (row)", &err);
    for shown in [
        "password = \"***\"  # NEMO database (nemo_mqtt_mqttconfiguration id=1)",
        "key = \"***\"  # NEMO database (nemo_mqtt_mqttconfiguration id=1)",
    ] {
        assert!(out.contains(shown), "missing {shown:?} in:\n{out}");
    }
}
