//! Helpers shared by the monitor end-to-end tests: run the `monitor` binary,
//! publish with nemo-mqtt, speak just enough HTTP/1.1.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nemo_mqtt::{EventSink, MqttConfig, OutMessage, Publisher};

/// A child process killed (by its own handle) when dropped.
pub struct Proc {
    pub child: Child,
    pub stdout: Option<mpsc::Receiver<String>>,
    pub stderr: mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Start `monitor` with `args`, stdout and stderr read line by line.
pub fn monitor(args: &[&str]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn monitor");
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    Proc {
        child,
        stdout: Some(stdout),
        stderr,
    }
}

impl Proc {
    /// Wait for a stdout line satisfying `pred`; returns it (panics with what was
    /// seen after `within`).
    pub fn expect_line(
        &mut self,
        within: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        let rx = self.stdout.as_ref().unwrap();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => {
                    let err: Vec<String> = self.stderr.try_iter().collect();
                    panic!(
                        "no stdout line {what} within {within:?}; stdout so far:\n{}\nstderr:\n{}",
                        seen.join("\n"),
                        err.join("\n")
                    );
                }
            }
        }
    }

    /// All stderr lines so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

/// A child process killed (by its own handle) when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A nemo-mqtt publisher with its own runtime, for synchronous tests.
pub struct Pub {
    rt: tokio::runtime::Runtime,
    publisher: Publisher,
}

impl Pub {
    pub fn connect(url: &str) -> Pub {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let cfg = MqttConfig {
            client_id: format!("monitor-test-pub-{}-{}", std::process::id(), rand_suffix()),
            status_topic: String::new(),
            ..MqttConfig::for_url(url)
        };
        let backoff = nemo_bridge::config::Config::default().backoff.build();
        let publisher = rt
            .block_on(Publisher::connect(cfg, backoff))
            .expect("publisher connects");
        Pub { rt, publisher }
    }

    /// Publish at QoS 1 and wait for the PUBACK.
    pub fn send(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        let msg = OutMessage {
            topic: topic.to_owned(),
            payload: payload.into().into(),
            qos: nemo_events::Qos::AtLeastOnce,
            retain,
        };
        self.rt
            .block_on(self.publisher.publish(msg))
            .expect("publish confirmed");
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// `GET path` over HTTP/1.1; returns (status, body). `None` if the connection fails.
pub fn http_get(port: u16, path: &str, bearer: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `/api/state` as JSON once the server answers 200.
pub fn api_state(port: u16, bearer: Option<&str>) -> Option<serde_json::Value> {
    match http_get(port, "/api/state", bearer)? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// Fixture payload from payloads.json by kind, as compact JSON text.
pub fn payload(kind: &str) -> String {
    let text = nemo_testkit::fixture("payloads.json").unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    serde_json::to_string(&v[kind]).unwrap()
}

/// A queue figures document as the bridge publishes it (`nemo_mqtt::QueueFigures`), read now,
/// signed with `key` when given.
pub fn figures(
    source: &str,
    (pending, processing, dead): (u64, u64, u64),
    display_connected: Option<bool>,
    key: Option<&[u8]>,
) -> String {
    nemo_mqtt::QueueFigures {
        source: source.to_owned(),
        pending,
        processing,
        dead,
        display_connected,
        at: time::OffsetDateTime::now_utc(),
    }
    .payload(key)
}

/// Run `monitor` with `args` to its end (for the flags it refuses).
pub fn monitor_output(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run monitor")
}
