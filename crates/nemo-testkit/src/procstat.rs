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

/// What the threads of a process have cost so far, summed over the threads alive now: CPU time
/// in nanoseconds (`/proc/<pid>/task/*/schedstat`, exact, unlike the 10 ms ticks of
/// [`cpu_seconds`]) and context switches (voluntary: the thread slept, i.e. a wake-up; and
/// involuntary). For the idle cost of a process, where ticks are too coarse.
///
/// ```
/// let now = nemo_testkit::task_stats(std::process::id()).expect("this process");
/// assert!(now.cpu_ns > 0);
/// assert!(!now.threads.is_empty());
/// ```
pub fn task_stats(pid: u32) -> Option<TaskStats> {
    let mut total = TaskStats::default();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let dir = entry.path();
        let Ok(sched) = std::fs::read_to_string(dir.join("schedstat")) else {
            continue; // the thread ended meanwhile
        };
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let thread = ThreadStats {
            tid: entry.file_name().to_string_lossy().parse().unwrap_or(0),
            name: std::fs::read_to_string(dir.join("comm"))
                .unwrap_or_default()
                .trim()
                .to_string(),
            cpu_ns: sched
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            voluntary: field("voluntary_ctxt_switches:"),
            involuntary: field("nonvoluntary_ctxt_switches:"),
        };
        total.cpu_ns += thread.cpu_ns;
        total.voluntary += thread.voluntary;
        total.involuntary += thread.involuntary;
        total.threads.push(thread);
    }
    total.threads.sort_by_key(|t| t.tid);
    Some(total)
}

/// The sum over a process's threads, and each thread; see [`task_stats`].
#[derive(Debug, Clone, Default)]
pub struct TaskStats {
    /// CPU time on the CPU, nanoseconds.
    pub cpu_ns: u64,
    /// Voluntary context switches (the thread blocked: each is a later wake-up).
    pub voluntary: u64,
    /// Involuntary context switches (the thread was preempted).
    pub involuntary: u64,
    /// Each thread, by thread id.
    pub threads: Vec<ThreadStats>,
}

/// One thread of [`TaskStats`].
#[derive(Debug, Clone, Default)]
pub struct ThreadStats {
    /// Thread id.
    pub tid: u32,
    /// Thread name (`comm`).
    pub name: String,
    /// CPU time, nanoseconds.
    pub cpu_ns: u64,
    /// Voluntary context switches.
    pub voluntary: u64,
    /// Involuntary context switches.
    pub involuntary: u64,
}

impl TaskStats {
    /// What was spent between `earlier` and `self` (per thread matched by id; threads that
    /// started in between count whole).
    ///
    /// ```
    /// let a = nemo_testkit::task_stats(std::process::id()).expect("this process");
    /// let b = nemo_testkit::task_stats(std::process::id()).expect("this process");
    /// assert!(b.since(&a).cpu_ns <= b.cpu_ns);
    /// ```
    pub fn since(&self, earlier: &TaskStats) -> TaskStats {
        let mut out = TaskStats::default();
        for t in &self.threads {
            let before = earlier.threads.iter().find(|e| e.tid == t.tid);
            let d = ThreadStats {
                tid: t.tid,
                name: t.name.clone(),
                cpu_ns: t.cpu_ns - before.map_or(0, |b| b.cpu_ns.min(t.cpu_ns)),
                voluntary: t.voluntary - before.map_or(0, |b| b.voluntary.min(t.voluntary)),
                involuntary: t.involuntary - before.map_or(0, |b| b.involuntary.min(t.involuntary)),
            };
            out.cpu_ns += d.cpu_ns;
            out.voluntary += d.voluntary;
            out.involuntary += d.involuntary;
            out.threads.push(d);
        }
        out
    }
}
