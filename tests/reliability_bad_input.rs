//! Bad input (issue 10): 10,000 generated malformed items — random bytes, invalid UTF-8, deep
//! JSON, huge strings (up to just over 1 MiB), wrong types, wildcard / NUL / empty / oversized
//! topics, QoS out of range — interleaved with 2,000 valid ones, pushed while the bridge runs.
//!
//! Proves: every valid item is delivered (in order), every malformed one is in
//! `{nemo_mqtt_events}:dead` with a non-empty reason and its exact raw bytes (count equal), no
//! item is left in the queue or processing list, the bridge is still alive, and its peak RSS
//! (VmHWM from /proc) stays bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fred::prelude::*;
use nemo_testkit::{Mosquitto, RedisServer};
use support::*;

const BAD: usize = 10_000;
const GOOD: usize = 2_000;
/// Peak RSS allowed for the bridge. It reads at most its in-flight window ahead, and items are
/// at most ~1 MiB, so this is far above what it needs but far below "the whole backlog".
const RSS_LIMIT_KIB: u64 = 256 * 1024;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn obj(topic: &str, payload: &str, rest: &str) -> String {
    format!("{{\"topic\": {topic}, \"payload\": {payload}{rest}}}")
}

/// One malformed item of category `i % 24` and its category name.
fn malformed(i: usize, rng: &mut Rng) -> (&'static str, Vec<u8>) {
    let ok_topic = "\"nemo/tools/3/enabled\"";
    let ok_payload = "\"{\\\"event\\\": \\\"tool_enabled\\\"}\"";
    let s = |x: String| x.into_bytes();
    match i % 24 {
        0..=2 => {
            // Random bytes; never starting with '{' so they cannot be a valid object by chance.
            let len = 1 + rng.below(400) as usize;
            let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if v[0] == b'{' {
                v[0] = b'x';
            }
            ("random bytes", v)
        }
        3 => {
            // A valid item with invalid UTF-8 inside the payload string.
            let mut v = item(3, 0).into_bytes();
            let at = 40 + rng.below(10) as usize;
            v.insert(at, 0xff);
            v.insert(at, 0xc3);
            v[at] = 0xfe;
            ("invalid UTF-8", v)
        }
        4 => ("invalid UTF-8", vec![0xc3, 0x28, b'{', 0xa0, 0xa1]),
        5 => {
            let d = 200 + rng.below(20_000) as usize;
            (
                "deep JSON",
                s(format!("{}{}", "[".repeat(d), "]".repeat(d))),
            )
        }
        6 => {
            let d = 200 + rng.below(5_000) as usize;
            let deep = format!("{}1{}", "{\"a\": ".repeat(d), "}".repeat(d));
            ("deep JSON", s(obj(&deep, ok_payload, "")))
        }
        7 => {
            // Huge: every 250th is just over 1 MiB (too large), the others a 64 KiB topic value of
            // the wrong type.
            if i % 250 == 7 {
                let big = "x".repeat((1 << 20) + rng.below(1000) as usize);
                (
                    "huge item > 1 MiB",
                    s(obj(ok_topic, &format!("\"{big}\""), "")),
                )
            } else {
                let big = "7".repeat(65_536);
                ("huge number topic", s(obj(&big, ok_payload, "")))
            }
        }
        8 => ("wrong type: topic number", s(obj("12", ok_payload, ""))),
        9 => (
            "wrong type: payload object",
            s(obj(ok_topic, "{\"event\": \"tool_enabled\"}", "")),
        ),
        10 => ("wrong type: payload number", s(obj(ok_topic, "3.5", ""))),
        11 => (
            "wrong type: qos string",
            s(obj(ok_topic, ok_payload, ", \"qos\": \"1\"")),
        ),
        12 => (
            "wrong type: retain string",
            s(obj(ok_topic, ok_payload, ", \"retain\": \"yes\"")),
        ),
        13 => {
            let which = ["null", "[]", "\"nemo/tools/1/enabled\"", "42", "true", "{}"];
            (
                "not an object / empty",
                s(which[rng.below(which.len() as u64) as usize].to_string()),
            )
        }
        14 => (
            "missing topic",
            s(format!("{{\"payload\": {ok_payload}, \"qos\": 1}}")),
        ),
        15 => (
            "missing payload",
            s(format!("{{\"topic\": {ok_topic}, \"qos\": 1}}")),
        ),
        16 => (
            "wildcard topic +",
            s(obj("\"nemo/tools/+/enabled\"", ok_payload, "")),
        ),
        17 => (
            "wildcard topic #",
            s(obj("\"nemo/tools/#\"", ok_payload, "")),
        ),
        18 => (
            "NUL in topic",
            s(obj("\"nemo/tools/1\\u0000/enabled\"", ok_payload, "")),
        ),
        19 => ("empty topic", s(obj("\"\"", ok_payload, ""))),
        20 => {
            let t = format!("\"nemo/{}\"", "t".repeat(65_536 + rng.below(4096) as usize));
            ("oversized topic", s(obj(&t, ok_payload, "")))
        }
        21 => {
            let q = ["3", "-1", "256", "99999999999999999999", "1.5", "1e400"];
            (
                "qos out of range",
                s(obj(
                    ok_topic,
                    ok_payload,
                    &format!(", \"qos\": {}", q[rng.below(q.len() as u64) as usize]),
                )),
            )
        }
        22 => ("truncated JSON", s(item(3, 0)[..30].to_string())),
        _ => (
            "huge string not JSON",
            s(format!(
                "\"{}",
                "z".repeat(100_000 + rng.below(100_000) as usize)
            )),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_items_are_dead_lettered_and_valid_ones_delivered() -> TestResult {
    let redis = RedisServer::start()?;
    let broker = Mosquitto::start()?;
    let setup = Setup::new();
    let mut sub = subscriber(&broker.url(), "reliability-bad-input-sub", false).await;
    let cfg = setup.config("bad.toml", &redis.url_db(1), &broker.url(), "", "");
    let mut bridge = setup.bridge(&cfg, "bad");
    assert!(
        bridge.wait_ready(Duration::from_secs(20)),
        "not ready:\n{}",
        bridge.log()
    );
    let (rss0, _) = bridge.rss_kib().unwrap();

    // Build 12,000 items: five malformed, then one valid.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut items: Vec<Vec<u8>> = Vec::with_capacity(BAD + GOOD);
    let mut bad_raw: Vec<Vec<u8>> = Vec::with_capacity(BAD);
    let mut categories: HashMap<&'static str, usize> = HashMap::new();
    let mut bad_bytes = 0usize;
    let mut good = 0usize;
    for i in 0..BAD {
        let (cat, raw) = malformed(i, &mut rng);
        *categories.entry(cat).or_default() += 1;
        bad_bytes += raw.len();
        items.push(raw.clone());
        bad_raw.push(raw);
        if i % 5 == 4 {
            items.push(item(good % 7, good).into_bytes());
            good += 1;
        }
    }
    assert_eq!(good, GOOD);
    let mut cats: Vec<_> = categories.into_iter().collect();
    cats.sort();
    println!(
        "bad input: {BAD} malformed ({:.1} MiB) + {GOOD} valid; categories: {cats:?}",
        bad_bytes as f64 / 1048576.0
    );

    // Push in 12 rounds while the bridge runs; watch its RSS.
    let producer = producer(&redis).await;
    let t0 = Instant::now();
    let mut peak_rss = rss0;
    let mut got = Vec::new();
    for chunk in items.chunks(1_000) {
        producer.enqueue_raw_many(chunk).await?;
        got.extend(collect(&mut sub, Duration::from_millis(100), |_| false).await);
        if let Some((rss, _)) = bridge.rss_kib() {
            peak_rss = peak_rss.max(rss);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    while (got.len() < GOOD || llen(&redis, DEAD) < BAD) && Instant::now() < deadline {
        got.extend(collect(&mut sub, Duration::from_millis(500), |g| g.len() >= GOOD).await);
        if let Some((rss, _)) = bridge.rss_kib() {
            peak_rss = peak_rss.max(rss);
        }
    }
    let elapsed = t0.elapsed();
    let (rss_end, hwm) = bridge.rss_kib().unwrap_or((0, 0));
    let dead = llen(&redis, DEAD);
    println!(
        "bad input: delivered {} of {GOOD} valid, dead-lettered {dead} of {BAD} in {:.1} s; bridge RSS start {rss0} KiB, \
         peak sampled {peak_rss} KiB, end {rss_end} KiB, VmHWM {hwm} KiB (limit {RSS_LIMIT_KIB} KiB)",
        got.len(),
        elapsed.as_secs_f64()
    );

    // Every valid item arrived once, in order.
    let seqs: Vec<usize> = got
        .iter()
        .map(|m| seq_of(m).expect("a valid item's payload"))
        .collect();
    assert_eq!(
        seqs,
        (0..GOOD).collect::<Vec<_>>(),
        "valid items: lost, reordered or a malformed one published; log:\n{}",
        bridge.tail(30)
    );
    assert_eq!(dead, BAD, "dead letters; log:\n{}", bridge.tail(30));
    assert_eq!(
        wait_drained(&redis, Duration::from_secs(5)),
        (0, 0),
        "queue and processing; log:\n{}",
        bridge.tail(30)
    );
    assert!(bridge.alive(), "bridge died:\n{}", bridge.tail(30));
    assert!(matches!(bridge.get("/healthz"), Some((200, _))));
    assert!(
        hwm < RSS_LIMIT_KIB,
        "bridge peak RSS {hwm} KiB >= {RSS_LIMIT_KIB} KiB"
    );

    // Each dead letter has a reason and the exact raw bytes of one malformed item.
    let client = Builder::from_config(Config::from_url(&redis.url_db(1))?).build()?;
    client.init().await?;
    let mut want: HashMap<Vec<u8>, usize> = HashMap::new();
    for r in &bad_raw {
        *want.entry(r.clone()).or_default() += 1;
    }
    let mut reasons: HashMap<String, usize> = HashMap::new();
    for start in (0..BAD).step_by(500) {
        let page: Vec<Vec<u8>> = client
            .lrange(DEAD, start as i64, (start + 499) as i64)
            .await?;
        for rec in page {
            let d = nemo_redis::DeadLetter::parse(&rec)
                .map_err(|e| format!("dead letter not parseable: {e}"))?;
            assert!(!d.error.trim().is_empty(), "dead letter without a reason");
            // Group reasons with their numbers (offsets, sizes) blanked out.
            let mut reason = String::new();
            for c in d.error.chars().take_while(|c| *c != ':') {
                if !c.is_ascii_digit() {
                    reason.push(c);
                } else if !reason.ends_with('N') {
                    reason.push('N');
                }
            }
            *reasons.entry(reason).or_default() += 1;
            let left = want
                .get_mut(&d.raw[..])
                .ok_or("a dead letter whose raw bytes match no malformed item")?;
            assert!(*left > 0, "a malformed item dead-lettered twice");
            *left -= 1;
        }
    }
    assert!(
        want.values().all(|v| *v == 0),
        "some malformed items are not in the dead letters"
    );
    let mut reasons: Vec<_> = reasons.into_iter().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    println!("dead-letter reasons: {reasons:?}");
    client.quit().await?;
    Ok(())
}
