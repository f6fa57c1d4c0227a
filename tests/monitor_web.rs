//! `monitor web` end to end: a real Mosquitto, the real binary, HTTP, and a real
//! headless Chromium that must receive an event pushed after the page loaded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod monitor_support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use monitor_support::{Pub, api_state, figures, http_get, monitor, payload};
use nemo_testkit::{Mosquitto, free_port, wait_for};

const WAIT: Duration = Duration::from_secs(30);

fn start_web(broker: &Mosquitto, extra: &[&str]) -> (monitor_support::Proc, u16) {
    let port = free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let url = broker.url();
    let mut args = vec![
        "--mqtt-url",
        url.as_str(),
        "--utc",
        "web",
        "--listen",
        listen.as_str(),
    ];
    args.extend_from_slice(extra);
    let proc = monitor(&args);
    (proc, port)
}

#[test]
fn api_state_follows_the_stream() {
    let broker = Mosquitto::start().unwrap();
    let publisher = Pub::connect(&broker.url());
    // Retained before the monitor starts: arrives first, proves the subscription.
    publisher.send(
        "nemo/bridge/status",
        r#"{"state":"online","since":"2025-10-17T08:00:00Z","version":"0.1.0"}"#,
        true,
    );
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("web.jsonl");
    let port = free_port().unwrap();
    let url = broker.url();
    let listen = format!("127.0.0.1:{port}");
    let proc = monitor(&[
        "--mqtt-url",
        &url,
        "--record",
        rec.to_str().unwrap(),
        "web",
        "--listen",
        &listen,
    ]);

    wait_for(WAIT, "bridge status in /api/state", || {
        api_state(port, None).filter(|s| s["bridge"]["state"] == "online")
    });

    let events = [
        ("nemo/tools/1/enabled", payload("tool_enabled")),
        (
            "nemo/tools/7/enabled",
            r#"{"event": "tool_enabled", "tool_id": 7, "tool_name": "Heidelberg MLA150", "usage_id": 9, "user_name": "Ada Lovelace", "start_time": "2025-10-17T09:00:00+00:00"}"#.to_owned(),
        ),
        (
            "nemo/tools/7/disabled",
            r#"{"event": "tool_disabled", "tool_id": 7, "tool_name": "Heidelberg MLA150", "usage_id": 9, "user_name": "Ada Lovelace", "end_time": "2025-10-17T09:30:00+00:00"}"#.to_owned(),
        ),
        ("nemo/tools/23/tasks", payload("task_shutdown")),
        ("nemo/tools/23/non-operational", payload("tool_non_operational")),
        ("nemo/tools/99/odd", "not json at all".to_owned()),
    ];
    for (topic, body) in &events {
        publisher.send(topic, body.as_bytes().to_vec(), false);
    }
    let state = wait_for(WAIT, "all events in /api/state", || {
        api_state(port, None).filter(|s| s["messages"].as_u64() >= Some(1 + events.len() as u64))
    });
    let tools = state["tools"].as_array().unwrap();
    let tool = |id: &str| {
        tools
            .iter()
            .find(|t| t["id"] == id)
            .unwrap_or_else(|| panic!("tool {id} missing in {state}"))
    };
    assert_eq!(tool("1")["status"], "in_use");
    assert_eq!(tool("1")["in_use"]["user"], "Jane Doe");
    assert_eq!(tool("1")["in_use"]["since"], "2025-10-16T14:02:32.944572Z");
    assert_eq!(tool("7")["status"], "idle");
    assert_eq!(tool("7")["last_user"], "Ada Lovelace");
    // Idle since the usage's end_time, not since the monitor received it.
    assert_eq!(tool("7")["idle_since"], "2025-10-17T09:30:00Z");
    assert_eq!(tool("7")["idle_since_received"], false);
    assert_eq!(tool("23")["status"], "down");
    assert_eq!(tool("23")["open_tasks"][0]["task_id"], "77");
    assert_eq!(
        tool("23")["open_tasks"][0]["description"],
        "Chamber won't pump below 1e-5 Torr"
    );
    assert_eq!(tools.len(), 3, "non-JSON must not create a tool: {state}");
    assert_eq!(state["bridge"]["since"], "2025-10-17T08:00:00Z");

    // The page itself is served, self-contained.
    let (status, page) = http_get(port, "/", None).unwrap();
    assert_eq!(status, 200);
    assert!(
        page.contains("new EventSource(") && page.contains(".card"),
        "JS and CSS inlined"
    );
    assert!(
        !page.contains("/*APP_JS*/") && !page.contains("http://") && !page.contains("https://"),
        "no external resources"
    );

    // Every message was recorded, byte for byte, retained flag kept.
    drop(proc);
    let lines = nemo_monitor::record::read_file(&rec).unwrap();
    assert_eq!(lines.len(), 1 + events.len());
    assert_eq!(lines[0].topic, "nemo/bridge/status");
    assert!(lines[0].retain);
    for ((topic, body), line) in events.iter().zip(&lines[1..]) {
        assert_eq!(&line.topic, topic);
        assert_eq!(&line.payload[..], body.as_bytes());
        assert!(!line.retain);
        assert_eq!(line.qos, 1);
    }
}

/// The dashboard shows the bridge's queue figures: a retained, signed document published before
/// the monitor starts is there at once; a document signed with another key is not used (the
/// verified figures stay) and is reported as ignored.
#[test]
fn dashboard_shows_retained_signed_figures_and_ignores_a_wrong_key() {
    let key = b"web-figures-key";
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, b"web-figures-key\n").unwrap();
    let broker = Mosquitto::start().unwrap();
    let publisher = Pub::connect(&broker.url());
    publisher.send(
        "nemo/bridge/queue",
        figures("database", (3, 1, 0), Some(true), Some(key)),
        true,
    );
    let (_proc, port) = start_web(&broker, &["--hmac-key-file", key_file.to_str().unwrap()]);
    let state = wait_for(WAIT, "the figures in /api/state", || {
        api_state(port, None).filter(|s| !s["queue"].is_null())
    });
    let q = &state["queue"];
    assert_eq!(q["source"], "database", "{state}");
    assert_eq!(
        (
            q["pending"].as_u64(),
            q["processing"].as_u64(),
            q["dead"].as_u64()
        ),
        (Some(3), Some(1), Some(0)),
        "{state}"
    );
    assert_eq!(q["display_connected"], true);
    assert!(
        q["at"].is_string(),
        "the page shows their age from it: {state}"
    );
    assert!(state["queue_rejected"].is_null(), "{state}");

    publisher.send(
        "nemo/bridge/queue",
        figures("database", (99, 0, 0), None, Some(b"another-key")),
        false,
    );
    let state = wait_for(WAIT, "the ignored document in /api/state", || {
        api_state(port, None).filter(|s| !s["queue_rejected"].is_null())
    });
    assert!(
        state["queue_rejected"]["reason"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{state}"
    );
    assert_eq!(state["queue"]["pending"], 3, "forged numbers used: {state}");
}

#[test]
fn token_is_required_off_loopback_and_enforced() {
    // A non-loopback address without a token: refuse to start, with a clear error.
    let mut refused = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args([
            "--mqtt-url",
            "mqtt://127.0.0.1:9",
            "web",
            "--listen",
            "0.0.0.0:0",
        ])
        .env_remove("NEMO_MONITOR_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = refused.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = refused.kill();
            panic!("monitor did not refuse a public listen address without --token");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    refused
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert!(
        err.contains("not a loopback address") && err.contains("--token"),
        "{err}"
    );

    // With a token, every request needs it.
    let broker = Mosquitto::start().unwrap();
    let (_proc, port) = start_web(&broker, &["--token", "s3cret t"]);
    wait_for(WAIT, "server up", || http_get(port, "/api/state", None));
    assert_eq!(http_get(port, "/api/state", None).unwrap().0, 401);
    assert_eq!(http_get(port, "/", None).unwrap().0, 401);
    assert_eq!(http_get(port, "/events", None).unwrap().0, 401);
    assert_eq!(
        http_get(port, "/api/state?token=wrong", None).unwrap().0,
        401
    );
    assert_eq!(http_get(port, "/api/state", Some("wrong")).unwrap().0, 401);
    assert_eq!(
        http_get(port, "/api/state?token=s3cret%20t", None)
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        http_get(port, "/api/state", Some("s3cret t")).unwrap().0,
        200
    );
    assert_eq!(http_get(port, "/?token=s3cret+t", None).unwrap().0, 200);
}

fn chromium() -> std::path::PathBuf {
    nemo_testkit::browser::chromium().unwrap_or_else(|e| {
        panic!("the browser test needs a headless Chromium ({e}); CI installs it; this test does not skip.")
    })
}

/// The page is loaded in a real headless Chromium; an event published only after
/// the page has connected its event stream must appear in the DOM.
///
/// How: `--dump-dom` with `--virtual-time-budget` prints the DOM once the page is
/// idle, and a page with an open SSE stream never is. The page's
/// `?close_after=1` closes the stream after the first *live* update (the initial
/// snapshot does not count). So Chromium only exits if a live update was pushed
/// and processed; if SSE push is broken it hangs and this test fails at its
/// deadline. Events are published only after `/api/state` reports a connected
/// page, so they cannot have reached the page through the initial snapshot.
#[test]
fn browser_shows_event_published_after_load() {
    let browser = chromium();
    let broker = Mosquitto::start().unwrap();
    let publisher = Pub::connect(&broker.url());
    // State from before the page loaded (arrives through the snapshot).
    publisher.send(
        "nemo/tools/23/non-operational",
        payload("tool_non_operational").into_bytes(),
        true,
    );
    let (_proc, port) = start_web(&broker, &[]);
    wait_for(WAIT, "retained state in /api/state", || {
        api_state(port, None).filter(|s| s["messages"].as_u64() >= Some(1))
    });
    assert_eq!(api_state(port, None).unwrap()["sse_clients"], 0);

    let profile = tempfile::tempdir().unwrap();
    let mut chrome = Command::new(&browser)
        .args(nemo_testkit::browser::headless_args(profile.path()))
        .args([
            "--virtual-time-budget=3000",
            "--dump-dom",
            &format!("http://127.0.0.1:{port}/?close_after=1"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser.display()));
    let mut out = chrome.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        let _ = out.read_to_string(&mut dom);
        dom
    });

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut published = 0u32;
    let status = loop {
        if let Some(s) = chrome.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = chrome.kill();
            let _ = chrome.wait();
            panic!(
                "Chromium did not finish within 90 s: the page never processed a live update \
                 (SSE push broken?). Published {published} events after the page connected; \
                 state: {:?}",
                api_state(port, None)
            );
        }
        let connected = api_state(port, None)
            .and_then(|s| s["sse_clients"].as_u64())
            .unwrap_or(0);
        if connected > 0 {
            published += 1;
            let body = format!(
                r#"{{"event": "tool_enabled", "tool_id": 5, "tool_name": "Browser Probe", "usage_id": {published}, "user_name": "Live Marker {published}", "start_time": "2025-10-17T09:00:00+00:00"}}"#
            );
            publisher.send("nemo/tools/5/enabled", body.into_bytes(), false);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let dom = reader.join().unwrap();
    assert!(status.success(), "chromium exited with {status}");
    assert!(
        published > 0,
        "no event was published after the page connected"
    );
    assert!(
        dom.contains("stopped after 1 live update"),
        "the page did not count a live update:\n{dom}"
    );
    // The live event: in the feed and as a card.
    assert!(
        dom.contains("IN USE by Live Marker"),
        "pushed event not in the feed:\n{dom}"
    );
    assert!(
        dom.contains(r#"id="tool-5" class="card in_use""#),
        "no in-use card for the pushed tool:\n{dom}"
    );
    // The state from before the page loaded, via the snapshot.
    assert!(
        dom.contains(r#"id="tool-23" class="card down""#),
        "retained state missing:\n{dom}"
    );
}
