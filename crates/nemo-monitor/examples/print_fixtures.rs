//! Print the human line of every v1 fixture item (used to eyeball the format).
//!
//! `cargo run -p nemo-monitor --example print_fixtures [--color]`
use nemo_monitor::{FormatOptions, Formatter};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let color = std::env::args().any(|a| a == "--color");
    let f = Formatter::new(FormatOptions {
        color,
        hmac_key: None,
        utc: true,
    });
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/v1-queue-items.jsonl"),
    )?;
    for line in text.lines() {
        let item: serde_json::Value = serde_json::from_str(line)?;
        let topic = item["topic"].as_str().unwrap_or_default();
        let payload = item["payload"].as_str().unwrap_or_default();
        let secs = item["timestamp"].as_f64().unwrap_or_default();
        let at = time::OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9) as i128)?;
        let retain = item["retain"].as_bool().unwrap_or_default();
        println!("{}", f.line(topic, payload.as_bytes(), retain, at));
    }
    Ok(())
}
