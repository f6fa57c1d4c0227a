//! What a process costs, read from `/proc` (Linux): CPU time and memory. For benchmarks and
//! tests that report or bound the cost of the bridge, the broker or Redis.

/// CPU time (user + system) process `pid` has used so far, in seconds; 0.0 if it cannot be
/// read (the process is gone, or not Linux).
///
/// ```
/// let spent = nemo_testkit::cpu_seconds(std::process::id());
/// assert!(spent >= 0.0);
/// ```
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (which may contain spaces) come fields 3..; utime and stime are
    // fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// (VmRSS, VmHWM) of process `pid` in KiB: its resident memory now and at its peak; `None` if
/// it cannot be read.
///
/// ```
/// let (rss, peak) = nemo_testkit::rss_kib(std::process::id()).expect("Linux /proc");
/// assert!(rss > 0 && peak >= rss);
/// ```
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
