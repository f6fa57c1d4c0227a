//! Redis high availability for tests: a Sentinel set (a master, a replica and
//! three sentinels) and a Cluster of three masters.
//!
//! Every process is a child of the test, bound to `127.0.0.1` on a port the
//! kernel picked, or one reserved below its ephemeral range ([`SentinelPorts`];
//! never 6379, 16379 or 26379), with its files in one temporary
//! directory, and killed on drop. The harness talks to its servers with a small
//! RESP client of its own (no `redis-cli` needed to start a Sentinel set);
//! `redis-cli` is used for `--cluster create` and for the `cli` helpers.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{HarnessError, ServerProcess, find_binary, wait_ready};

/// How long one process may take to answer `PING` after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a whole set may take to settle (replication up, sentinels
/// acquainted, cluster state ok).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Ports never used, whatever the kernel hands out: a system Redis or Sentinel
/// may live there (and 16379 is the default cluster bus of 6379).
const SYSTEM_PORTS: [u16; 3] = [6379, 16379, 26379];

/// Polling interval while waiting for a set to settle.
const POLL: Duration = Duration::from_millis(25);

/// A Redis Sentinel set of its own for a test: one master and one replica
/// (`--replicaof`), both with the append-only file (`appendfsync always`, like
/// [`RedisBuilder::aof`](crate::RedisBuilder::aof)), watched by three
/// `redis-server --sentinel` processes with quorum 2, `down-after-milliseconds
/// 2000` and `failover-timeout 5000`. Killed on drop (sentinels first).
///
/// Two seconds, not one: on a loaded 2-core machine a master just promoted
/// (busy with its AOF rewrite) was seen to miss PINGs for a second, and the
/// sentinels failed over again to the replica the test had just restarted,
/// leaving the deposed master taking writes for ~10 s until they reconfigured
/// it (a split brain whose writes Redis then discards).
///
/// [`start`](Self::start) returns once every sentinel reports the master,
/// knows the replica and the two other sentinels, and the replica's link is
/// up: a [`kill_master`](Self::kill_master) right after it fails over
/// (about 3–4 s: two seconds to notice, then the election and the promotion).
///
/// ```no_run
/// # fn main() -> Result<(), nemo_testkit::HarnessError> {
/// use std::time::Duration;
/// let mut set = nemo_testkit::RedisSentinelSet::start("nemo")?;
/// // redis-sentinel://127.0.0.1:S1/1?sentinelServiceName=nemo&node=127.0.0.1:S2&node=127.0.0.1:S3
/// println!("{}", set.url());
/// let old = set.kill_master()?;
/// let new = set.wait_failover(Duration::from_secs(30))?;
/// assert_ne!(old, new);
/// set.restart_killed()?; // back as a replica of the new master
/// assert_eq!(set.cli(new, &["ROLE"])?.lines().next(), Some("master"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisSentinelSet {
    name: String,
    // Dropped in this order: the sentinels first, so they do not fail over
    // while the servers go down; the directory last.
    sentinels: Vec<Node>,
    servers: Vec<Node>,
    killed: Option<u16>,
    dir: tempfile::TempDir,
}

impl RedisSentinelSet {
    /// Start the master, the replica and the three sentinels monitoring the
    /// master under `name` (letters, digits, `-`, `_`, `.`), and wait until the
    /// set has settled (see the [type docs](Self); typically 2.5 s, as
    /// sentinels find each other through hello messages sent every 2 s).
    ///
    /// # Errors
    /// [`HarnessError::MissingBinary`] without `redis-server`;
    /// [`HarnessError::NotReady`] (with the log tails) when a process does not
    /// answer or the set does not settle within 30 s.
    pub fn start(name: &str) -> Result<Self, HarnessError> {
        Self::start_with(name, None)
    }

    /// [`start`](Self::start) on ports chosen beforehand with
    /// [`SentinelPorts::free`], so that a client can be given the set's URL
    /// ([`SentinelPorts::url_db`]) before any of its processes runs (boot-order tests).
    ///
    /// # Errors
    /// As [`start`](Self::start); a port taken meanwhile is [`HarnessError::NotReady`].
    ///
    /// ```no_run
    /// # fn main() -> Result<(), nemo_testkit::HarnessError> {
    /// let ports = nemo_testkit::SentinelPorts::free()?;
    /// let url = ports.url_db("nemo", 1); // nothing answers there yet
    /// let set = nemo_testkit::RedisSentinelSet::start_on("nemo", &ports)?;
    /// assert_eq!(set.url(), url);
    /// # Ok(()) }
    /// ```
    pub fn start_on(name: &str, ports: &SentinelPorts) -> Result<Self, HarnessError> {
        Self::start_with(name, Some(ports))
    }

    fn start_with(name: &str, ports: Option<&SentinelPorts>) -> Result<Self, HarnessError> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(HarnessError::Io(std::io::Error::other(format!(
                "sentinel service name {name:?}: use letters, digits, '-', '_' or '.'"
            ))));
        }
        let program = find_binary("redis-server")
            .ok_or(HarnessError::MissingBinary("redis-server", "redis-server"))?;
        let dir = tempfile::Builder::new()
            .prefix("nemo-redis-sentinel-")
            .tempdir()?;
        let mut set = RedisSentinelSet {
            name: name.to_string(),
            sentinels: Vec::new(),
            servers: Vec::new(),
            killed: None,
            dir,
        };
        let master = Node::start_at(
            "redis-server",
            &program,
            set.dir.path(),
            "redis-1",
            ports.map(|p| p.master),
            |port, d| Ok(data_args(port, d, None)),
        )?;
        let master_port = master.port;
        set.servers.push(master);
        let replica = Node::start_at(
            "redis-server",
            &program,
            set.dir.path(),
            "redis-2",
            ports.map(|p| p.replica),
            |port, d| Ok(data_args(port, d, Some(master_port))),
        )?;
        let replica_port = replica.port;
        set.servers.push(replica);
        // Started only once the replica is attached, so that each sentinel's
        // first INFO of the master lists it (the next one comes 10 s later).
        set.wait_until("replication", replica_port, SETTLE_TIMEOUT, |_| {
            link_up(replica_port).then_some(())
        })?;
        for i in 1..=3 {
            let label = format!("sentinel-{i}");
            let name = set.name.clone();
            let sentinel = Node::start_at(
                "redis-sentinel",
                &program,
                set.dir.path(),
                &label,
                ports.map(|p| p.sentinels[i - 1]),
                |port, d| {
                    let conf = d.join("sentinel.conf");
                    std::fs::write(&conf, sentinel_conf(port, d, &name, master_port))?;
                    Ok(vec![conf.display().to_string(), "--sentinel".into()])
                },
            )?;
            set.sentinels.push(sentinel);
        }
        let others = set.sentinels.len() - 1;
        let first_sentinel = set.sentinels[0].port;
        set.wait_until("sentinels", first_sentinel, SETTLE_TIMEOUT, |set| {
            set.sentinels
                .iter()
                .all(|s| {
                    master_addr(s.port, &set.name) == Some(master_port)
                        && sentinel_list(s.port, "SENTINELS", &set.name).len() == others
                        && sentinel_list(s.port, "REPLICAS", &set.name)
                            .iter()
                            .any(|r| {
                                r.get("port").map(String::as_str) == Some(&replica_port.to_string())
                                    && r.get("flags").map(String::as_str) == Some("slave")
                            })
                })
                .then_some(())
        })?;
        Ok(set)
    }

    /// The service name the sentinels monitor.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ports of the three sentinels.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// The ports of the two data servers: the first master, then the first
    /// replica (roles change with fail-overs; see [`master_port`](Self::master_port)).
    pub fn server_ports(&self) -> Vec<u16> {
        self.servers.iter().map(|s| s.port).collect()
    }

    /// The port of the current master, as the first sentinel that answers
    /// reports it (`SENTINEL get-master-addr-by-name`). During a fail-over the
    /// sentinels may still disagree: [`wait_failover`](Self::wait_failover)
    /// waits until they agree.
    ///
    /// # Errors
    /// [`HarnessError::NotRunning`] when no sentinel answers.
    pub fn master_port(&self) -> Result<u16, HarnessError> {
        self.sentinels
            .iter()
            .find_map(|s| master_addr(s.port, &self.name))
            .ok_or(HarnessError::NotRunning("redis-sentinel"))
    }

    /// URL of database 1 (NEMO's database) through the sentinels, in the form
    /// nemo-redis (fred) accepts; see [`url_db`](Self::url_db).
    pub fn url(&self) -> String {
        self.url_db(1)
    }

    /// URL of database `db` through the sentinels:
    /// `redis-sentinel://127.0.0.1:S1/DB?sentinelServiceName=NAME&node=127.0.0.1:S2&node=127.0.0.1:S3`.
    ///
    /// The first sentinel goes in the authority, the others in `node`
    /// parameters (fred parses `Url`s: a comma-separated host list is not a
    /// valid URL).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), nemo_testkit::HarnessError> {
    /// let set = nemo_testkit::RedisSentinelSet::start("nemo")?;
    /// assert!(set.url_db(0).starts_with("redis-sentinel://127.0.0.1:"));
    /// # Ok(()) }
    /// ```
    pub fn url_db(&self, db: u8) -> String {
        sentinel_url(&self.name, db, self.sentinels.iter().map(|s| s.port))
    }

    /// Kill the current master (as [`master_port`](Self::master_port) reports
    /// it) with SIGKILL, a crash; returns its port. The sentinels notice after
    /// a second and promote the replica: [`wait_failover`](Self::wait_failover).
    ///
    /// # Errors
    /// [`HarnessError::NotRunning`] when no sentinel answers or the master
    /// they report is not running.
    pub fn kill_master(&mut self) -> Result<u16, HarnessError> {
        let port = self.master_port()?;
        let node = self
            .servers
            .iter_mut()
            .find(|s| s.port == port)
            .ok_or_else(|| not_ours(port))?;
        if node.process.exited() {
            return Err(HarnessError::NotRunning("redis-server"));
        }
        node.process.kill();
        self.killed = Some(port);
        Ok(port)
    }

    /// Wait until every sentinel reports a master other than the one
    /// [`kill_master`](Self::kill_master) killed last, all the same one, and that
    /// server answers `ROLE` as `master`; returns its port.
    ///
    /// # Errors
    /// [`HarnessError::NotRunning`] if no master was killed;
    /// [`HarnessError::NotReady`] with the sentinels' log tails after `timeout`.
    pub fn wait_failover(&self, timeout: Duration) -> Result<u16, HarnessError> {
        let old = self
            .killed
            .ok_or(HarnessError::NotRunning("killed master"))?;
        self.wait_until("sentinel failover", old, timeout, |set| {
            set.agreed().filter(|&master| master != old)
        })
    }

    /// Wait until every sentinel reports the same master and that server
    /// answers `ROLE` as `master`; returns its port.
    ///
    /// This is the master *now*: on a loaded machine a promoted master that
    /// did not answer for `down-after-milliseconds` (2 s) is failed over again,
    /// so after a fail-over test ask this rather than keep the port
    /// [`wait_failover`](Self::wait_failover) returned.
    ///
    /// # Errors
    /// [`HarnessError::NotReady`] with every log tail when the sentinels do not
    /// agree within `timeout`.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), nemo_testkit::HarnessError> {
    /// let set = nemo_testkit::RedisSentinelSet::start("nemo")?;
    /// let master = set.agreed_master(std::time::Duration::from_secs(10))?;
    /// assert_eq!(set.server_ports()[0], master);
    /// # Ok(()) }
    /// ```
    pub fn agreed_master(&self, timeout: Duration) -> Result<u16, HarnessError> {
        let first_sentinel = self.sentinels.first().map_or(0, |s| s.port);
        self.wait_until(
            "sentinels' agreement",
            first_sentinel,
            timeout,
            Self::agreed,
        )
    }

    /// The master every sentinel reports, if they all report the same one and
    /// it answers `ROLE` as `master`.
    fn agreed(&self) -> Option<u16> {
        let mut reported = self
            .sentinels
            .iter()
            .map(|s| master_addr(s.port, &self.name));
        let first = reported.next().flatten()?;
        (reported.all(|p| p == Some(first)) && role(first).as_deref() == Some("master"))
            .then_some(first)
    }

    /// Start the server [`kill_master`](Self::kill_master) killed again, on its
    /// port and with its data directory, as a replica of the current master, and
    /// wait until its replication link is up (a full resync: what it had not
    /// replicated before the crash is discarded). Returns its port.
    ///
    /// # Errors
    /// [`HarnessError::NotRunning`] if no master was killed (or it was restarted
    /// already); [`HarnessError::NotReady`] when it does not come up.
    pub fn restart_killed(&mut self) -> Result<u16, HarnessError> {
        let port = self
            .killed
            .ok_or(HarnessError::NotRunning("killed master"))?;
        let master = self.master_port()?;
        let program = find_binary("redis-server")
            .ok_or(HarnessError::MissingBinary("redis-server", "redis-server"))?;
        let node = self
            .servers
            .iter_mut()
            .find(|s| s.port == port)
            .ok_or_else(|| not_ours(port))?;
        let args = data_args(port, &node.dir, Some(master));
        node.process = ServerProcess::new("redis-server", program, args, node.log.clone());
        node.process.spawn()?;
        let pid = node.process.pid();
        wait_ready(&mut node.process, port, READY_TIMEOUT, || {
            answers_as(port, pid)
        })?;
        self.killed = None;
        self.wait_until("replication", port, SETTLE_TIMEOUT, |_| {
            link_up(port).then_some(())
        })?;
        Ok(port)
    }

    /// Run `redis-cli` against one of this set's servers (database 1) or
    /// sentinels (no database) and return its stdout, trimmed.
    ///
    /// # Errors
    /// [`HarnessError::MissingBinary`] without `redis-cli`; an I/O error when
    /// `port` is not a process of this set (nothing else is ever contacted).
    pub fn cli(&self, port: u16, args: &[&str]) -> Result<String, HarnessError> {
        if self.servers.iter().any(|s| s.port == port) {
            run_cli(port, &["-n", "1"], args)
        } else if self.sentinels.iter().any(|s| s.port == port) {
            run_cli(port, &[], args)
        } else {
            Err(not_ours(port))
        }
    }

    /// The temporary directory: one folder and one log per process.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The last lines of every process's log, labelled, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tails(self.servers.iter().chain(&self.sentinels))
    }

    /// Poll `done` until it gives a value, or fail with every log tail (`port`:
    /// the server the error names).
    fn wait_until<T>(
        &self,
        what: &'static str,
        port: u16,
        timeout: Duration,
        mut done: impl FnMut(&Self) -> Option<T>,
    ) -> Result<T, HarnessError> {
        let start = Instant::now();
        loop {
            if let Some(v) = done(self) {
                return Ok(v);
            }
            if start.elapsed() > timeout {
                return Err(HarnessError::NotReady {
                    name: what,
                    port,
                    secs: timeout.as_secs(),
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(POLL);
        }
    }
}

/// A Redis Cluster of its own for a test: three masters, no replicas, the 16,384
/// slots split evenly by `redis-cli --cluster create`; append-only file on,
/// killed on drop. Only database 0 exists on a cluster.
///
/// Each node listens on a free port and has its cluster bus on another free
/// port (`cluster-port`), so nothing depends on `port + 10000` being free.
///
/// ```no_run
/// # fn main() -> Result<(), nemo_testkit::HarnessError> {
/// let cluster = nemo_testkit::RedisClusterSet::start()?;
/// // redis-cluster://127.0.0.1:A?node=127.0.0.1:B&node=127.0.0.1:C
/// println!("{}", cluster.url());
/// cluster.cli(&["SET", "greeting", "hello"])?; // -c: follows MOVED
/// let owner = cluster.port_for_key("greeting")?;
/// assert_eq!(cluster.cli_at(owner, &["GET", "greeting"])?, "hello");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisClusterSet {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

impl RedisClusterSet {
    /// Start three cluster-enabled servers, join them with `redis-cli --cluster
    /// create … --cluster-replicas 0 --cluster-yes`, and wait until every node
    /// reports `cluster_state:ok`, all slots assigned and three known nodes.
    ///
    /// # Errors
    /// [`HarnessError::MissingBinary`] without `redis-server` or `redis-cli`;
    /// [`HarnessError::NotReady`] (with the log tails) when a node does not
    /// answer or the cluster is not ok within 30 s; an I/O error with its
    /// output when `redis-cli --cluster create` fails.
    pub fn start() -> Result<Self, HarnessError> {
        let program = find_binary("redis-server")
            .ok_or(HarnessError::MissingBinary("redis-server", "redis-server"))?;
        let cli = find_binary("redis-cli")
            .ok_or(HarnessError::MissingBinary("redis-cli", "redis-tools"))?;
        let dir = tempfile::Builder::new()
            .prefix("nemo-redis-cluster-")
            .tempdir()?;
        let mut nodes = Vec::new();
        for i in 1..=3 {
            let label = format!("node-{i}");
            nodes.push(Node::start(
                "redis-server",
                &program,
                dir.path(),
                &label,
                cluster_args,
            )?);
        }
        let set = RedisClusterSet { nodes, dir };
        let mut create = Command::new(cli);
        create.arg("--cluster").arg("create");
        for n in &set.nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()?;
        if !out.status.success() {
            return Err(HarnessError::Io(std::io::Error::other(format!(
                "redis-cli --cluster create failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))));
        }
        let start = Instant::now();
        while !set
            .nodes
            .iter()
            .all(|n| cluster_ok(n.port, set.nodes.len()))
        {
            if start.elapsed() > SETTLE_TIMEOUT {
                return Err(HarnessError::NotReady {
                    name: "redis cluster",
                    port: set.nodes[0].port,
                    secs: SETTLE_TIMEOUT.as_secs(),
                    log: set.log_tail(),
                });
            }
            std::thread::sleep(POLL);
        }
        Ok(set)
    }

    /// The ports of the three nodes (clients; each node's bus is elsewhere).
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The cluster URL in the form nemo-redis (fred) accepts:
    /// `redis-cluster://127.0.0.1:A?node=127.0.0.1:B&node=127.0.0.1:C`, no
    /// database (a cluster has only database 0).
    pub fn url(&self) -> String {
        let mut ports = self.nodes.iter().map(|n| n.port);
        let first = ports.next().unwrap_or_default();
        let mut url = format!("redis-cluster://127.0.0.1:{first}");
        for (i, port) in ports.enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            let _ = write!(url, "{sep}node=127.0.0.1:{port}");
        }
        url
    }

    /// The port of the node that serves `key`'s slot (`CLUSTER KEYSLOT`, then
    /// `CLUSTER SLOTS`), e.g. to check that two keys live on different nodes.
    ///
    /// # Errors
    /// An I/O error when the first node does not answer or no node serves
    /// the slot.
    pub fn port_for_key(&self, key: &str) -> Result<u16, HarnessError> {
        let first = self.nodes[0].port;
        let slot = match command(first, &["CLUSTER", "KEYSLOT", key])? {
            Reply::Int(slot) => slot,
            other => return Err(unexpected("CLUSTER KEYSLOT", &other)),
        };
        let Reply::Array(Some(ranges)) = command(first, &["CLUSTER", "SLOTS"])? else {
            return Err(HarnessError::Io(std::io::Error::other(
                "CLUSTER SLOTS: no array",
            )));
        };
        for range in ranges {
            let Reply::Array(Some(parts)) = range else {
                continue;
            };
            if let [
                Reply::Int(lo),
                Reply::Int(hi),
                Reply::Array(Some(master)),
                ..,
            ] = &parts[..]
                && (*lo..=*hi).contains(&slot)
                && let Some(Reply::Int(port)) = master.get(1)
            {
                return u16::try_from(*port).map_err(|_| unexpected("CLUSTER SLOTS", &parts[0]));
            }
        }
        Err(HarnessError::Io(std::io::Error::other(format!(
            "no node serves slot {slot} of {key:?}"
        ))))
    }

    /// Run `redis-cli -c` (following `MOVED`/`ASK` redirections) against the
    /// first node and return its stdout, trimmed.
    ///
    /// # Errors
    /// [`HarnessError::MissingBinary`] without `redis-cli`.
    pub fn cli(&self, args: &[&str]) -> Result<String, HarnessError> {
        run_cli(self.nodes[0].port, &["-c"], args)
    }

    /// Run `redis-cli` against the node on `port` **without** following
    /// redirections: a key of another node's slot answers `MOVED slot host:port`.
    ///
    /// # Errors
    /// [`HarnessError::MissingBinary`] without `redis-cli`; an I/O error when
    /// `port` is not a node of this cluster (nothing else is ever contacted).
    pub fn cli_at(&self, port: u16, args: &[&str]) -> Result<String, HarnessError> {
        if !self.nodes.iter().any(|n| n.port == port) {
            return Err(not_ours(port));
        }
        run_cli(port, &[], args)
    }

    /// The temporary directory: one folder (AOF, `nodes.conf`) and one log per node.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The last lines of every node's log, labelled, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tails(self.nodes.iter())
    }
}

/// One process of a set: its port, its folder and its log.
#[derive(Debug)]
struct Node {
    label: String,
    process: ServerProcess,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
}

impl Node {
    /// Start a process on a free port in `parent/label/` (log:
    /// `parent/label.log`) and wait until it answers `PING`; `args(port, dir)`
    /// gives its command line (and may write files into `dir`). A port taken
    /// meanwhile by someone else makes the process exit: up to five ports are tried.
    fn start(
        name: &'static str,
        program: &Path,
        parent: &Path,
        label: &str,
        args: impl FnMut(u16, &Path) -> Result<Vec<String>, HarnessError>,
    ) -> Result<Node, HarnessError> {
        Self::start_at(name, program, parent, label, None, args)
    }

    /// [`start`](Self::start) on `port` if given (one try: a port taken is an error).
    fn start_at(
        name: &'static str,
        program: &Path,
        parent: &Path,
        label: &str,
        fixed: Option<u16>,
        mut args: impl FnMut(u16, &Path) -> Result<Vec<String>, HarnessError>,
    ) -> Result<Node, HarnessError> {
        let dir = parent.join(label);
        std::fs::create_dir_all(&dir)?;
        let log = parent.join(format!("{label}.log"));
        let mut last_err = None;
        for _ in 0..if fixed.is_some() { 1 } else { 5 } {
            let port = match fixed {
                Some(p) => p,
                None => private_port()?,
            };
            let mut process =
                ServerProcess::new(name, program.to_path_buf(), args(port, &dir)?, log.clone());
            process.spawn()?;
            let pid = process.pid();
            match wait_ready(&mut process, port, READY_TIMEOUT, || answers_as(port, pid)) {
                Ok(()) => {
                    return Ok(Node {
                        label: label.to_string(),
                        process,
                        port,
                        dir,
                        log,
                    });
                }
                Err(e) => {
                    process.kill();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or(HarnessError::NotRunning(name)))
    }
}

/// Ports for a [`RedisSentinelSet`] chosen before it starts
/// ([`RedisSentinelSet::start_on`]): free when chosen, never 6379/16379/26379,
/// and below the kernel's ephemeral range, so that in the seconds before the
/// set starts the kernel hands none of them to another test's `bind(0)` or to
/// an outgoing connection's source port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentinelPorts {
    /// The first master.
    pub master: u16,
    /// The first replica.
    pub replica: u16,
    /// The three sentinels.
    pub sentinels: [u16; 3],
}

impl SentinelPorts {
    /// Five distinct free loopback ports, below the ephemeral range.
    ///
    /// # Errors
    /// [`HarnessError::Io`] when no port can be bound.
    ///
    /// ```
    /// let p = nemo_testkit::SentinelPorts::free().unwrap();
    /// assert_ne!(p.master, p.sentinels[0]);
    /// ```
    pub fn free() -> Result<Self, HarnessError> {
        let mut taken: Vec<u16> = Vec::new();
        while taken.len() < 5 {
            let p = reserved_port()?;
            if !taken.contains(&p) {
                taken.push(p);
            }
        }
        Ok(SentinelPorts {
            master: taken[0],
            replica: taken[1],
            sentinels: [taken[2], taken[3], taken[4]],
        })
    }

    /// The URL of database `db` through these sentinels for service `name`, as
    /// [`RedisSentinelSet::url_db`] gives it once the set runs.
    ///
    /// ```
    /// let p = nemo_testkit::SentinelPorts { master: 1, replica: 2, sentinels: [3, 4, 5] };
    /// assert_eq!(
    ///     p.url_db("nemo", 1),
    ///     "redis-sentinel://127.0.0.1:3/1?sentinelServiceName=nemo&node=127.0.0.1:4&node=127.0.0.1:5"
    /// );
    /// ```
    pub fn url_db(&self, name: &str, db: u8) -> String {
        sentinel_url(name, db, self.sentinels.iter().copied())
    }
}

/// `redis-sentinel://127.0.0.1:S1/DB?sentinelServiceName=NAME&node=127.0.0.1:S2…`.
fn sentinel_url(name: &str, db: u8, mut ports: impl Iterator<Item = u16>) -> String {
    let first = ports.next().unwrap_or_default();
    let mut url = format!("redis-sentinel://127.0.0.1:{first}/{db}?sentinelServiceName={name}");
    for port in ports {
        let _ = write!(url, "&node=127.0.0.1:{port}");
    }
    url
}

/// A free loopback port that no system Redis could be using.
fn private_port() -> Result<u16, HarnessError> {
    loop {
        let port = crate::free_port()?;
        if !SYSTEM_PORTS.contains(&port) {
            return Ok(port);
        }
    }
}

/// Where [`reserved_port`] looks: from here up to the ephemeral range.
const RESERVED_FROM: u16 = 20_000;

/// A free loopback port for a server that starts seconds later: below the
/// kernel's ephemeral range (`ip_local_port_range`, 32768 by default), where
/// the kernel never picks a port on its own, chosen at random so that two tests
/// reserving at once do not meet. Falls back to [`private_port`] when that
/// range is empty.
fn reserved_port() -> Result<u16, HarnessError> {
    use std::hash::{BuildHasher, Hasher};
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let Some(span) = ephemeral.checked_sub(RESERVED_FROM).filter(|&s| s > 0) else {
        return private_port();
    };
    let random = std::collections::hash_map::RandomState::new();
    for attempt in 0u32..200 {
        let mut h = random.build_hasher();
        h.write_u32(attempt);
        let port = RESERVED_FROM + (h.finish() % u64::from(span)) as u16;
        if !SYSTEM_PORTS.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return Ok(port);
        }
    }
    private_port()
}

/// Command line of a Sentinel set's data server (a replica of `replicaof` if set).
fn data_args(port: u16, dir: &Path, replicaof: Option<u16>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.display().to_string(),
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
        "--databases",
        "16",
        // Send the first full sync at once (Redis 7 waits 5 s for more replicas).
        "--repl-diskless-sync-delay",
        "0",
    ]
    .map(String::from)
    .to_vec();
    if let Some(master) = replicaof {
        args.extend(["--replicaof".into(), "127.0.0.1".into(), master.to_string()]);
    }
    args
}

/// Sentinel's configuration file (Sentinel rewrites it: it must be writable).
fn sentinel_conf(port: u16, dir: &Path, name: &str, master: u16) -> String {
    format!(
        "port {port}\n\
         bind 127.0.0.1\n\
         protected-mode no\n\
         daemonize no\n\
         dir \"{}\"\n\
         sentinel resolve-hostnames no\n\
         sentinel monitor {name} 127.0.0.1 {master} 2\n\
         sentinel down-after-milliseconds {name} 2000\n\
         sentinel failover-timeout {name} 5000\n\
         sentinel parallel-syncs {name} 1\n",
        dir.display()
    )
}

/// Command line of a cluster node; its bus gets a free port of its own.
fn cluster_args(port: u16, dir: &Path) -> Result<Vec<String>, HarnessError> {
    let bus = loop {
        let bus = private_port()?;
        if bus != port {
            break bus;
        }
    };
    Ok([
        "--port",
        &port.to_string(),
        "--cluster-port",
        &bus.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.display().to_string(),
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        &dir.join("nodes.conf").display().to_string(),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
    ]
    .map(String::from)
    .to_vec())
}

fn run_cli(port: u16, extra: &[&str], args: &[&str]) -> Result<String, HarnessError> {
    let program =
        find_binary("redis-cli").ok_or(HarnessError::MissingBinary("redis-cli", "redis-tools"))?;
    let out = Command::new(program)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(extra)
        .args(args)
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn not_ours(port: u16) -> HarnessError {
    HarnessError::Io(std::io::Error::other(format!(
        "port {port} is not a server of this set (the harness only talks to its own)"
    )))
}

fn unexpected(cmd: &str, reply: &Reply) -> HarnessError {
    HarnessError::Io(std::io::Error::other(format!(
        "{cmd}: unexpected reply {reply:?}"
    )))
}

fn log_tails<'a>(nodes: impl Iterator<Item = &'a Node>) -> String {
    let mut out = String::new();
    for n in nodes {
        let _ = writeln!(
            out,
            "--- {} (port {}) ---\n{}",
            n.label,
            n.port,
            n.process.log_tail()
        );
    }
    out
}

/// `PING` answered with `PONG` (`-LOADING` and the like mean not yet).
fn ping(port: u16) -> bool {
    matches!(command(port, &["PING"]), Ok(Reply::Status(s)) if s == "PONG")
}

/// `port` answers `PING`, and it is the process `pid` that answers (`INFO
/// server`'s `process_id`): when another test's server took the port first,
/// ours exits on its failed bind, but the other one would answer `PING` too.
fn answers_as(port: u16, pid: Option<u32>) -> bool {
    ping(port)
        && pid.is_some_and(|pid| {
            info(port, "server")
                .and_then(|i| i.get("process_id")?.parse::<u32>().ok())
                .is_some_and(|id| id == pid)
        })
}

/// The replica on `port` is connected to its master and synchronised.
fn link_up(port: u16) -> bool {
    info(port, "replication")
        .and_then(|i| i.get("master_link_status").cloned())
        .is_some_and(|s| s == "up")
}

/// `ROLE`'s first element: `master`, `slave` or `sentinel`.
fn role(port: u16) -> Option<String> {
    match command(port, &["ROLE"]).ok()? {
        Reply::Array(Some(parts)) => parts.first().and_then(Reply::text),
        _ => None,
    }
}

/// The master's port, as the sentinel on `sentinel` reports it.
fn master_addr(sentinel: u16, name: &str) -> Option<u16> {
    match command(sentinel, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name]).ok()? {
        Reply::Array(Some(addr)) => addr.get(1)?.text()?.parse().ok(),
        _ => None,
    }
}

/// `SENTINEL SENTINELS|REPLICAS name` as one map per entry (empty on error).
fn sentinel_list(sentinel: u16, which: &str, name: &str) -> Vec<HashMap<String, String>> {
    let Ok(Reply::Array(Some(entries))) = command(sentinel, &["SENTINEL", which, name]) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| match e {
            Reply::Array(Some(kv)) => Some(
                kv.chunks(2)
                    .filter_map(|p| Some((p.first()?.text()?, p.get(1)?.text()?)))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// `CLUSTER INFO` says ok, every slot is served, and all `nodes` know each other.
fn cluster_ok(port: u16, nodes: usize) -> bool {
    let Ok(Reply::Bulk(Some(text))) = command(port, &["CLUSTER", "INFO"]) else {
        return false;
    };
    let info = parse_info(&String::from_utf8_lossy(&text));
    let is = |k: &str, v: &str| info.get(k).map(String::as_str) == Some(v);
    is("cluster_state", "ok")
        && is("cluster_slots_ok", "16384")
        && is("cluster_known_nodes", &nodes.to_string())
}

/// `INFO section` as a map.
fn info(port: u16, section: &str) -> Option<HashMap<String, String>> {
    match command(port, &["INFO", section]).ok()? {
        Reply::Bulk(Some(text)) => Some(parse_info(&String::from_utf8_lossy(&text))),
        _ => None,
    }
}

fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// A status or bulk string as text.
    fn text(&self) -> Option<String> {
        match self {
            Reply::Status(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// Send one command to 127.0.0.1:`port` on a fresh connection and read the reply
/// (short timeouts: a frozen or dead server is an error, not a hang).
fn command(port: u16, args: &[&str]) -> std::io::Result<Reply> {
    let stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        let _ = write!(req, "${}\r\n{a}\r\n", a.len());
    }
    (&stream).write_all(req.as_bytes())?;
    read_reply(&mut BufReader::new(stream))
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at_checked(1).ok_or_else(|| bad("empty line"))?;
    let number = || rest.parse::<i64>().map_err(|_| bad(line));
    Ok(match kind {
        "+" => Reply::Status(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Int(number()?),
        "$" => match usize::try_from(number()?) {
            Err(_) => Reply::Bulk(None),
            Ok(n) => {
                let mut buf = vec![0; n + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n);
                Reply::Bulk(Some(buf))
            }
        },
        "*" => match usize::try_from(number()?) {
            Err(_) => Reply::Array(None),
            Ok(n) => Reply::Array(Some(
                (0..n).map(|_| read_reply(r)).collect::<Result<_, _>>()?,
            )),
        },
        _ => return Err(bad(line)),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn resp_replies_are_parsed() {
        let mut r = BufReader::new(
            &b"*3\r\n$3\r\nfoo\r\n$-1\r\n*2\r\n:42\r\n+OK\r\n-ERR bad\r\n*-1\r\n"[..],
        );
        assert_eq!(
            read_reply(&mut r).unwrap(),
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"foo".to_vec())),
                Reply::Bulk(None),
                Reply::Array(Some(vec![Reply::Int(42), Reply::Status("OK".into())])),
            ]))
        );
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Error("ERR bad".into()));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Array(None));
        assert!(read_reply(&mut r).is_err(), "end of input");
        assert!(read_reply(&mut BufReader::new(&b"?x\r\n"[..])).is_err());
    }

    #[test]
    fn a_reserved_port_another_server_took_is_an_error_not_that_server() {
        // Another test's Redis took the master's port before the set started: our
        // master exits on its failed bind, and the other server, which answers PING
        // too, must not be taken for it.
        let other = crate::RedisServer::start().unwrap();
        let mut ports = SentinelPorts::free().unwrap();
        ports.master = other.port();
        let err = RedisSentinelSet::start_on("nemo-taken", &ports).unwrap_err();
        assert!(
            matches!(err, HarnessError::NotReady { port, .. } if port == other.port()),
            "{err}"
        );
        assert_eq!(
            other.cli(&["DBSIZE"]).unwrap(),
            "0",
            "nothing written there"
        );
    }

    #[test]
    fn reserved_ports_are_below_the_ephemeral_range_and_free() {
        let ephemeral: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(32_768);
        for _ in 0..50 {
            let port = reserved_port().unwrap();
            // Where the ephemeral range starts below RESERVED_FROM, any free port will do.
            if ephemeral > RESERVED_FROM {
                assert!((RESERVED_FROM..ephemeral).contains(&port), "{port}");
            }
            assert!(!SYSTEM_PORTS.contains(&port));
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }

    #[test]
    fn sentinel_set_starts_reports_its_master_and_fails_over() {
        let started = Instant::now();
        let mut set = RedisSentinelSet::start("nemo-test").unwrap();
        eprintln!("sentinel set start: {:?}", started.elapsed());
        let [master, replica] = set.server_ports()[..] else {
            panic!("two servers")
        };
        assert_eq!(set.sentinel_ports().len(), 3);
        for port in set.sentinel_ports().into_iter().chain([master, replica]) {
            assert!(!SYSTEM_PORTS.contains(&port));
        }
        for s in set.sentinel_ports() {
            assert_eq!(master_addr(s, "nemo-test"), Some(master), "sentinel {s}");
            assert_eq!(role(s).as_deref(), Some("sentinel"));
        }
        assert_eq!(set.master_port().unwrap(), master);
        assert_eq!(role(master).as_deref(), Some("master"));
        assert_eq!(role(replica).as_deref(), Some("slave"));
        assert!(link_up(replica));
        let info = info(master, "persistence").unwrap();
        assert_eq!(info.get("aof_enabled").map(String::as_str), Some("1"));
        let s = set.sentinel_ports();
        assert_eq!(
            set.url_db(3),
            format!(
                "redis-sentinel://127.0.0.1:{}/3?sentinelServiceName=nemo-test&node=127.0.0.1:{}&node=127.0.0.1:{}",
                s[0], s[1], s[2]
            )
        );
        assert!(set.url().contains("/1?"));

        // Writes to db 1 reach the replica; the cli refuses ports of others.
        assert_eq!(set.cli(master, &["SET", "k", "v1"]).unwrap(), "OK");
        assert_eq!(set.cli(master, &["WAIT", "1", "2000"]).unwrap(), "1");
        assert_eq!(set.cli(replica, &["GET", "k"]).unwrap(), "v1");
        assert_eq!(set.cli(replica, &["-n", "0", "GET", "k"]).unwrap(), "");
        assert_eq!(
            set.cli(s[0], &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "nemo-test"])
                .unwrap(),
            format!("127.0.0.1\n{master}")
        );
        assert!(set.cli(6379, &["PING"]).is_err());
        assert!(
            set.wait_failover(Duration::from_millis(1)).is_err(),
            "nothing killed"
        );

        let killed_at = Instant::now();
        assert_eq!(set.kill_master().unwrap(), master);
        assert!(!ping(master));
        let new = set.wait_failover(Duration::from_secs(60)).unwrap();
        eprintln!("failover: {:?}", killed_at.elapsed());
        assert_eq!(new, replica);
        assert_eq!(set.master_port().unwrap(), replica);
        assert_eq!(
            set.cli(new, &["GET", "k"]).unwrap(),
            "v1",
            "replicated write kept"
        );

        let restarted = Instant::now();
        assert_eq!(set.restart_killed().unwrap(), master);
        eprintln!("restart as replica: {:?}", restarted.elapsed());
        assert_eq!(role(master).as_deref(), Some("slave"));
        assert_eq!(set.cli(new, &["SET", "k", "v2"]).unwrap(), "OK");
        assert_eq!(set.cli(new, &["WAIT", "1", "2000"]).unwrap(), "1");
        assert_eq!(set.cli(master, &["GET", "k"]).unwrap(), "v2");
        assert!(set.restart_killed().is_err(), "nothing killed any more");

        let pids: Vec<u32> = set
            .servers
            .iter()
            .chain(&set.sentinels)
            .filter_map(|n| n.process.pid())
            .collect();
        assert_eq!(pids.len(), 5);
        let dir = set.dir();
        drop(set);
        for pid in pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(
                stat.rsplit_once(')')
                    .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z')),
                "process {pid} gone after drop"
            );
        }
        assert!(!dir.exists());
    }

    #[test]
    fn cluster_set_starts_with_three_masters_and_all_slots() {
        let started = Instant::now();
        let cluster = RedisClusterSet::start().unwrap();
        eprintln!("cluster start: {:?}", started.elapsed());
        let ports = cluster.ports();
        assert_eq!(ports.len(), 3);
        for &p in &ports {
            assert!(!SYSTEM_PORTS.contains(&p));
            let info = cluster.cli_at(p, &["CLUSTER", "INFO"]).unwrap();
            assert!(info.contains("cluster_state:ok"), "{info}");
            assert!(info.contains("cluster_size:3"), "{info}");
            assert_eq!(role(p).as_deref(), Some("master"));
        }
        assert_eq!(
            cluster.url(),
            format!(
                "redis-cluster://127.0.0.1:{}?node=127.0.0.1:{}&node=127.0.0.1:{}",
                ports[0], ports[1], ports[2]
            )
        );
        // Keys spread over the three nodes; -c follows redirections.
        let mut owners = std::collections::HashSet::new();
        for i in 0..30 {
            let key = format!("key-{i}");
            assert_eq!(cluster.cli(&["SET", &key, &i.to_string()]).unwrap(), "OK");
            let owner = cluster.port_for_key(&key).unwrap();
            owners.insert(owner);
            assert_eq!(
                cluster.cli_at(owner, &["GET", &key]).unwrap(),
                i.to_string()
            );
            for &other in ports.iter().filter(|&&p| p != owner) {
                let moved = cluster.cli_at(other, &["GET", &key]).unwrap();
                assert!(moved.starts_with("MOVED "), "{moved}");
                assert!(moved.ends_with(&format!("127.0.0.1:{owner}")), "{moved}");
            }
        }
        assert_eq!(owners.len(), 3, "every node serves some keys");
        assert!(cluster.cli_at(6379, &["PING"]).is_err());
    }
}
