//! Workload for the benchmarks, shared so that every benchmark (the e2e bench, the peers
//! bench) drains exactly the same bytes.

/// A v1 queue item like the NEMO plugin writes, ~300 bytes, for sequence number `seq` (over
/// five tools) with the push time `pushed_ns` (ns since the epoch, 0 if unused) in the payload,
/// so a subscriber can compute the latency.
///
/// ```
/// let item = nemo_testkit::bench_item(7, 0);
/// assert!(item.starts_with(r#"{"topic": "nemo/tools/12/enabled", "payload": "{\"event\": \"tool_enabled\""#));
/// assert!(item.contains(r#"\"usage_id\": 7,"#) && item.len() > 250);
/// ```
pub fn bench_item(seq: usize, pushed_ns: u128) -> String {
    let tool = [1, 7, 12, 23, 42][seq % 5];
    let payload = format!(
        "{{\"event\": \"tool_enabled\", \"tool_id\": {tool}, \"tool_name\": \"Zeiss Supra 55 SEM\", \
         \"usage_id\": {seq}, \"user_name\": \"Jane Doe\", \"start_time\": \"2025-10-16T14:02:32.944572+00:00\", \
         \"pushed_ns\": {pushed_ns}}}"
    );
    let escaped = payload.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "{{\"topic\": \"nemo/tools/{tool}/enabled\", \"payload\": \"{escaped}\", \"qos\": 1, \"retain\": false, \"timestamp\": 1760623352.944572}}"
    )
}
