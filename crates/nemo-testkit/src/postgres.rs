//! A private PostgreSQL server: `initdb` into a temporary directory, then
//! `postgres` on a free loopback port.
//!
//! `initdb` and `postgres` refuse to run as root. When the test runs as root
//! (containers, CI), both are run as the `postgres` system user (or `nobody`)
//! through `setpriv`, which `exec`s, so the child we hold *is* the postmaster and
//! the signals of [`PostgresServer::kill`], [`freeze`](PostgresServer::freeze) and
//! drop reach it directly. `psql` runs as the caller, over TCP, with trust
//! authentication.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{HarnessError, ServerProcess, find_binary, wait_ready};

/// How long `start` and `restart` wait for the server to accept queries.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Never used, whatever the kernel hands out: a system cluster may live there.
const SYSTEM_PORT: u16 = 5432;

/// A PostgreSQL server (`postgres`) of its own for a test, on a free loopback
/// port, with its data directory in a temporary directory; killed on drop.
///
/// It has the superuser `postgres` (trust authentication, no password) and an
/// empty database `nemo`, which [`url`](Self::url) and [`psql`](Self::psql)
/// use. It runs with `fsync=off`, `shared_buffers=16MB` and
/// `max_connections=50`: fast and small, and durable across [`kill`](Self::kill)
/// and [`restart`](Self::restart) (only an operating-system crash would lose
/// data).
///
/// The binaries are looked up on `PATH` first, then in the newest
/// `/usr/lib/postgresql/*/bin` (where Debian's `postgresql` package puts them).
///
/// ```no_run
/// # fn main() -> Result<(), nemo_testkit::HarnessError> {
/// let pg = nemo_testkit::PostgresServer::start()?;
/// let schema = nemo_testkit::fixtures_dir().join("nemo-plugin-schema/postgresql.sql");
/// pg.psql_file(&schema)?;
/// assert_eq!(pg.psql("SELECT count(*) FROM nemo_mqtt_mqttconfiguration")?, "0");
/// println!("{}", pg.url()); // postgres://postgres@127.0.0.1:PORT/nemo
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PostgresServer {
    process: ServerProcess,
    port: u16,
    bins: PgBins,
    data: PathBuf,
    dir: tempfile::TempDir,
}

impl PostgresServer {
    /// Create a cluster (`initdb`), start `postgres` on a free port, wait until
    /// it answers queries (up to 30 s; the error carries the tail of the server
    /// log) and create the database `nemo`.
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with(&[])
    }

    /// [`start`](Self::start) with extra server settings (`-c name=value`), applied after the
    /// harness's own, so they win: e.g. `&["fsync=on"]` for a server that syncs its commits
    /// as a production one does (benchmarks).
    pub fn start_with(settings: &[&str]) -> Result<Self, HarnessError> {
        let bins = PgBins::find()?;
        let (dir, run_as) = private_dir()?;
        let data = dir.path().join("data");
        initdb(&bins, &data, run_as.as_ref())?;
        let mut last_err = None;
        for _ in 0..5 {
            let port = loop {
                let port = crate::free_port()?;
                if port != SYSTEM_PORT {
                    break port;
                }
            };
            let (program, mut args) =
                server_command(&bins, &data, dir.path(), port, run_as.as_ref())?;
            for setting in settings {
                args.extend(["-c".to_string(), (*setting).to_string()]);
            }
            let log = dir.path().join("postgres.log");
            let mut process = ServerProcess::new("postgres", program, args, log);
            process.spawn()?;
            match wait_ready(&mut process, port, READY_TIMEOUT, || {
                answers(&bins.psql, port, &data)
            }) {
                Ok(()) => {
                    let server = PostgresServer {
                        process,
                        port,
                        bins,
                        data,
                        dir,
                    };
                    server.run_psql("postgres", Script::Sql("CREATE DATABASE nemo"))?;
                    return Ok(server);
                }
                Err(e) => {
                    process.kill();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or(HarnessError::NotRunning("postgres")))
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of the database `nemo`: `postgres://postgres@127.0.0.1:PORT/nemo`.
    pub fn url(&self) -> String {
        self.url_db("nemo")
    }

    /// URL of the maintenance database `postgres`, for `CREATE DATABASE` and
    /// the like: `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn admin_url(&self) -> String {
        self.url_db("postgres")
    }

    /// URL of database `db` (which the test must have created).
    pub fn url_db(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// PID of the postmaster (`None` after [`kill`](Self::kill) or [`stop`](Self::stop)).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The temporary directory: `data/` (the cluster), `postgres.log`, and the
    /// Unix socket.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> PathBuf {
        self.data.clone()
    }

    /// The last lines of the server log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Run SQL with `psql` against the database `nemo` (`-X -q -At -v
    /// ON_ERROR_STOP=1`, the SQL on stdin) and return its stdout without the
    /// final newline: one line per row, columns separated by `|`, nothing for
    /// statements without rows. The first error stops the script and is
    /// returned with `psql`'s stderr.
    pub fn psql(&self, sql: &str) -> Result<String, HarnessError> {
        self.run_psql("nemo", Script::Sql(sql))
    }

    /// Like [`psql`](Self::psql), with the SQL in a file (`psql -f`).
    pub fn psql_file(&self, path: impl AsRef<Path>) -> Result<String, HarnessError> {
        self.run_psql("nemo", Script::File(path.as_ref()))
    }

    /// Kill the postmaster and every backend with SIGKILL (a crash: clients
    /// see their connections reset). Committed data survives;
    /// [`restart`](Self::restart) runs crash recovery.
    pub fn kill(&mut self) {
        let Some(pid) = self.live_pid() else {
            self.process.kill();
            return;
        };
        // Stopped, the postmaster cannot fork a backend we would miss.
        let _ = self.process.signal("-STOP");
        let children = children_of(pid);
        self.process.kill();
        signal_all("-KILL", &children);
        wait_gone(&children, Duration::from_secs(5));
    }

    /// Stop cleanly: a "fast" shutdown (SIGINT), which ends open sessions and
    /// checkpoints; SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if self.live_pid().is_some() {
            self.thaw_all();
            let _ = self.process.signal("-INT");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && !self.process.exited() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
    }

    /// Freeze the postmaster and every backend (SIGSTOP): connections stay
    /// open and new ones are accepted by the kernel, but nothing answers.
    pub fn freeze(&mut self) -> Result<(), HarnessError> {
        let pid = self
            .live_pid()
            .ok_or(HarnessError::NotRunning("postgres"))?;
        // The postmaster first, so it cannot fork a backend we would miss.
        self.process.signal("-STOP")?;
        signal_all("-STOP", &children_of(pid));
        Ok(())
    }

    /// Resume after [`freeze`](Self::freeze) (SIGCONT to the backends and the
    /// postmaster).
    pub fn thaw(&mut self) -> Result<(), HarnessError> {
        self.live_pid()
            .ok_or(HarnessError::NotRunning("postgres"))?;
        self.thaw_all();
        Ok(())
    }

    /// Turn TLS on with the server certificate and key of `certs` (names
    /// `localhost` and `127.0.0.1`), for clients that connect with
    /// `sslmode=verify-full&sslrootcert=<certs.ca>`. Plain connections stay
    /// allowed. Applied with `ALTER SYSTEM` and a configuration reload, so it
    /// survives [`restart`](Self::restart); returns once a new session sees
    /// `ssl = on` (bounded, 10 s).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), nemo_testkit::HarnessError> {
    /// let certs = nemo_testkit::Certs::generate()?;
    /// let pg = nemo_testkit::PostgresServer::start()?;
    /// pg.enable_tls(&certs)?;
    /// let url = format!("{}?sslmode=verify-full&sslrootcert={}", pg.url(), certs.ca.display());
    /// # let _ = url; Ok(()) }
    /// ```
    pub fn enable_tls(&self, certs: &crate::Certs) -> Result<(), HarnessError> {
        // The server reads them from its data directory as its own user; the key must not be
        // readable by others or PostgreSQL refuses it.
        let owner = std::fs::metadata(&self.data)?;
        for (from, name, mode) in [
            (&certs.server_cert, "server.crt", 0o644),
            (&certs.server_key, "server.key", 0o600),
        ] {
            let to = self.data.join(name);
            std::fs::copy(from, &to)?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))?;
            std::os::unix::fs::chown(&to, Some(owner.uid()), Some(owner.gid()))?;
        }
        self.psql("ALTER SYSTEM SET ssl = on")?;
        self.psql("SELECT pg_reload_conf()")?;
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if self.psql("SHOW ssl")? == "on" {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(HarnessError::Io(std::io::Error::other(format!(
                    "ssl is still off 10 s after the reload; server log:\n{}",
                    self.log_tail()
                ))));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Start again on the same port with the same data directory (after
    /// [`kill`](Self::kill) or [`stop`](Self::stop); kills a running one
    /// first), and wait until it answers queries again (up to 30 s).
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.process.spawn()?;
            let (psql, port, data) = (self.bins.psql.clone(), self.port, self.data.clone());
            let left = deadline.saturating_duration_since(Instant::now());
            match wait_ready(&mut self.process, port, left, || {
                answers(&psql, port, &data)
            }) {
                Ok(()) => return Ok(()),
                // Exited at once: usually a backend of the killed server still
                // holding the shared memory; try again shortly.
                Err(_) if self.process.exited() && Instant::now() + WAIT_STEP < deadline => {
                    self.process.kill();
                    std::thread::sleep(WAIT_STEP);
                }
                Err(e) => {
                    self.kill();
                    return Err(e);
                }
            }
        }
    }

    /// The postmaster's PID if it is still running (never a reaped, possibly
    /// reused PID).
    fn live_pid(&mut self) -> Option<u32> {
        if self.process.exited() {
            None
        } else {
            self.process.pid()
        }
    }

    fn thaw_all(&mut self) {
        if let Some(pid) = self.live_pid() {
            signal_all("-CONT", &children_of(pid));
            let _ = self.process.signal("-CONT");
        }
    }

    fn run_psql(&self, db: &str, script: Script<'_>) -> Result<String, HarnessError> {
        let mut cmd = psql_command(&self.bins.psql, self.port, db);
        let out = match script {
            Script::File(path) => cmd.arg("-f").arg(path).stdin(Stdio::null()).output()?,
            Script::Sql(sql) => {
                let mut child = cmd
                    .args(["-f", "-"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()?;
                let stdin = child.stdin.take();
                let sql = sql.to_owned();
                // A thread, so a large script cannot deadlock against a large result.
                let writer = std::thread::spawn(move || {
                    if let Some(mut stdin) = stdin {
                        let _ = stdin.write_all(sql.as_bytes());
                    }
                });
                let out = child.wait_with_output()?;
                let _ = writer.join();
                out
            }
        };
        if !out.status.success() {
            return Err(HarnessError::Io(std::io::Error::other(format!(
                "psql on port {} (database {db}) failed ({}): {}",
                self.port,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.trim_end_matches('\n').to_string())
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // An "immediate" shutdown (SIGQUIT) ends the backends and frees the
        // shared memory; SIGKILL whatever is left after 5 s.
        if self.live_pid().is_some() {
            self.thaw_all();
            let _ = self.process.signal("-QUIT");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && !self.process.exited() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.kill();
        remove_orphan_shm(&self.data);
    }
}

const WAIT_STEP: Duration = Duration::from_millis(100);

/// What `psql` runs.
enum Script<'a> {
    Sql(&'a str),
    File(&'a Path),
}

/// The binaries, all from one installation where possible (`initdb` and
/// `postgres` must be the same version).
#[derive(Debug, Clone)]
struct PgBins {
    initdb: PathBuf,
    postgres: PathBuf,
    psql: PathBuf,
}

impl PgBins {
    fn find() -> Result<Self, HarnessError> {
        let initdb = find_pg_binary("initdb", None)
            .ok_or(HarnessError::MissingBinary("initdb", "postgresql"))?;
        // Follow symlinks (e.g. /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb)
        // to the installation's own bin directory.
        let home = std::fs::canonicalize(&initdb)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        let postgres = find_pg_binary("postgres", home.as_deref())
            .ok_or(HarnessError::MissingBinary("postgres", "postgresql"))?;
        let psql = find_pg_binary("psql", home.as_deref())
            .ok_or(HarnessError::MissingBinary("psql", "postgresql-client"))?;
        Ok(Self {
            initdb,
            postgres,
            psql,
        })
    }
}

/// `name` in `home` (the directory `initdb` lives in), else on `PATH`, else in
/// the newest `/usr/lib/postgresql/*/bin`.
fn find_pg_binary(name: &str, home: Option<&Path>) -> Option<PathBuf> {
    home.map(|h| h.join(name))
        .filter(|p| p.is_file())
        .or_else(|| find_binary(name))
        .or_else(|| newest_debian_bin(name))
}

fn newest_debian_bin(name: &str) -> Option<PathBuf> {
    let version = |dir: &Path| -> Vec<u32> {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        name.unwrap_or_default()
            .split('.')
            .map(|part| part.parse().unwrap_or(0))
            .collect()
    };
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|dir| dir.join("bin").join(name).is_file())
        .max_by_key(|dir| version(dir))
        .map(|dir| dir.join("bin").join(name))
}

/// A system user the servers run as, when we are root: uid and gid.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// The temporary directory, and whom to run the servers as. As root, the
/// directory goes to the `postgres` user (or `nobody`), and must be reachable
/// by it: if the default temporary directory is not, `/tmp` is used.
fn private_dir() -> Result<(tempfile::TempDir, Option<RunAs>), HarnessError> {
    let dir = tempfile::Builder::new()
        .prefix("nemo-postgres-")
        .tempdir()?;
    // Whoever owns what we create is who we are (the effective uid), without
    // a libc call.
    if std::fs::metadata(dir.path())?.uid() != 0 {
        return Ok((dir, None));
    }
    let run_as = ["postgres", "nobody"]
        .into_iter()
        .find_map(system_user)
        .ok_or_else(|| {
            HarnessError::Io(std::io::Error::other(
                "running as root, and neither a `postgres` nor a `nobody` user exists to run \
                 initdb and postgres as (apt-get install postgresql creates `postgres`)",
            ))
        })?;
    let dir = if traversable_by_others(dir.path()) {
        dir
    } else {
        drop(dir);
        tempfile::Builder::new()
            .prefix("nemo-postgres-")
            .tempdir_in("/tmp")?
    };
    std::os::unix::fs::chown(dir.path(), Some(run_as.uid), Some(run_as.gid))?;
    Ok((dir, Some(run_as)))
}

fn system_user(name: &str) -> Option<RunAs> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id")
            .args([flag, name])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some(RunAs {
        uid: id("-u")?,
        gid: id("-g")?,
    })
}

/// Every ancestor of `path` lets others search it (`o+x`).
fn traversable_by_others(path: &Path) -> bool {
    path.ancestors().skip(1).all(|dir| {
        std::fs::metadata(dir)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}

/// `program args…`, or `setpriv --reuid … -- program args…` when running as root.
/// `setpriv` `exec`s, so the process we hold is the program itself.
fn as_user(
    program: &Path,
    args: Vec<String>,
    run_as: Option<&RunAs>,
) -> Result<(PathBuf, Vec<String>), HarnessError> {
    let Some(user) = run_as else {
        return Ok((program.to_path_buf(), args));
    };
    let setpriv =
        find_binary("setpriv").ok_or(HarnessError::MissingBinary("setpriv", "util-linux"))?;
    let mut all = vec![
        format!("--reuid={}", user.uid),
        format!("--regid={}", user.gid),
        "--clear-groups".to_string(),
        "--".to_string(),
        program.display().to_string(),
    ];
    all.extend(args);
    Ok((setpriv, all))
}

fn initdb(bins: &PgBins, data: &Path, run_as: Option<&RunAs>) -> Result<(), HarnessError> {
    let args = [
        "-D",
        &data.display().to_string(),
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-locale",
        "--no-sync",
    ]
    .map(String::from)
    .to_vec();
    let (program, args) = as_user(&bins.initdb, args, run_as)?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    if let Some(parent) = data.parent() {
        // The postgres user may not be able to enter the caller's directory.
        cmd.current_dir(parent);
    }
    let out = cmd.output()?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    Err(HarnessError::Io(std::io::Error::other(format!(
        "initdb {} failed ({}):\n{}",
        bins.initdb.display(),
        out.status,
        lines[lines.len().saturating_sub(15)..].join("\n")
    ))))
}

fn server_command(
    bins: &PgBins,
    data: &Path,
    socket_dir: &Path,
    port: u16,
    run_as: Option<&RunAs>,
) -> Result<(PathBuf, Vec<String>), HarnessError> {
    let mut args = vec![
        "-D".to_string(),
        data.display().to_string(),
        "-p".to_string(),
        port.to_string(),
    ];
    for setting in [
        "listen_addresses=127.0.0.1".to_string(),
        format!("unix_socket_directories={}", socket_dir.display()),
        "fsync=off".to_string(),
        "shared_buffers=16MB".to_string(),
        "max_connections=50".to_string(),
        // Dynamic shared memory as files in the data directory, not in
        // /dev/shm, so a killed server leaves nothing behind outside it.
        "dynamic_shared_memory_type=mmap".to_string(),
    ] {
        args.extend(["-c".to_string(), setting]);
    }
    as_user(&bins.postgres, args, run_as)
}

fn psql_command(psql: &Path, port: u16, db: &str) -> Command {
    let mut cmd = Command::new(psql);
    cmd.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
    ])
    .args(["-p", &port.to_string(), "-U", "postgres", "-d", db])
    .env("PGCONNECT_TIMEOUT", "10")
    // The caller's defaults must not redirect or reshape our connection.
    .env_remove("PGSERVICE")
    .env_remove("PGOPTIONS")
    .env_remove("PGSSLMODE");
    cmd
}

/// The server has written its lock file and answers `SELECT 1`.
fn answers(psql: &Path, port: u16, data: &Path) -> bool {
    if !data.join("postmaster.pid").exists() {
        return false;
    }
    psql_command(psql, port, "postgres")
        .args(["-c", "SELECT 1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Direct children of `pid` (the postmaster's backends and helpers), from `/proc`.
fn children_of(pid: u32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter(|child| parent_of(child) == Some(pid))
        .collect()
}

/// Field 4 of `/proc/PID/stat` (after the parenthesised command name).
fn parent_of(pid: &str) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn signal_all(sig: &str, pids: &[String]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(sig)
        .args(pids)
        .stderr(Stdio::null())
        .status();
}

/// Wait until these processes have exited (gone, or zombies waiting for init).
fn wait_gone(pids: &[String], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let alive = |pid: &String| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_owned()))
            .is_some_and(|rest| !rest.starts_with('Z'))
    };
    while Instant::now() < deadline && pids.iter().any(alive) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// After a kill, the postmaster's small System V shared-memory segment stays
/// (the next start in this data directory would remove it). Remove it now,
/// using the ID our postmaster wrote into its lock file (line 7: key, ID).
fn remove_orphan_shm(data: &Path) {
    let Ok(lock) = std::fs::read_to_string(data.join("postmaster.pid")) else {
        return;
    };
    let Some(id) = lock
        .lines()
        .nth(6)
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|id| id.parse::<u64>().ok())
    else {
        return;
    };
    if let Some(ipcrm) = find_binary("ipcrm") {
        let _ = Command::new(ipcrm)
            .args(["-m", &id.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const INSERT: &str = "INSERT INTO nemo_mqtt_mqttconfiguration \
        (name, enabled, broker_host, broker_port, keepalive, client_id, use_hmac, \
         hmac_algorithm, topic_prefix, qos_level, retain_messages, clean_session, \
         auto_reconnect, reconnect_delay, max_reconnect_attempts, log_messages, log_level, \
         created_at, updated_at) \
        VALUES ('lab', true, 'broker.example', 8883, 60, 'nemo-1', false, 'sha256', 'nemo', 1, \
                false, true, true, 5, 10, true, 'INFO', now(), now()) \
        RETURNING id;";

    const SELECT: &str = "SELECT name, enabled, broker_host, broker_port, qos_level \
        FROM nemo_mqtt_mqttconfiguration ORDER BY id;";

    fn with_schema() -> PostgresServer {
        let pg = PostgresServer::start().unwrap();
        let schema = crate::fixtures_dir().join("nemo-plugin-schema/postgresql.sql");
        pg.psql_file(&schema).unwrap();
        pg
    }

    fn gone(pid: u32) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(')')
            .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'))
    }

    #[test]
    fn applies_the_plugin_schema_and_round_trips_a_configuration() {
        let started = Instant::now();
        let pg = with_schema();
        eprintln!("start + schema: {:?}", started.elapsed());
        assert_ne!(pg.port(), SYSTEM_PORT);
        assert_eq!(
            pg.url(),
            format!("postgres://postgres@127.0.0.1:{}/nemo", pg.port())
        );
        assert_eq!(pg.psql("SELECT current_database()").unwrap(), "nemo");
        assert_eq!(pg.psql(INSERT).unwrap(), "1");
        assert_eq!(pg.psql(SELECT).unwrap(), "lab|t|broker.example|8883|1");
        let tables = pg
            .psql(
                "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables \
                 WHERE tablename LIKE 'nemo_mqtt_%'",
            )
            .unwrap();
        assert_eq!(
            tables,
            "nemo_mqtt_mqttconfiguration,nemo_mqtt_mqtteventfilter,nemo_mqtt_mqttmessagelog"
        );
        // The UNIQUE name: a second 'lab' is an error that carries psql's stderr.
        let err = pg.psql(INSERT).unwrap_err().to_string();
        assert!(err.contains("duplicate key"), "{err}");
        // ON_ERROR_STOP: nothing after the failing statement runs.
        assert!(
            pg.psql("SELECT 1/0; CREATE TABLE after_error (x int);")
                .is_err()
        );
        assert_eq!(
            pg.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'after_error'")
                .unwrap(),
            "0"
        );
    }

    #[test]
    fn rows_survive_kill_and_stop_with_restart_on_the_same_port() {
        let mut pg = with_schema();
        assert_eq!(pg.psql(INSERT).unwrap(), "1");
        let port = pg.port();

        let pid = pg.pid().unwrap();
        let backends = children_of(pid);
        assert!(!backends.is_empty(), "the postmaster has helpers");
        pg.kill();
        assert!(gone(pid), "postmaster killed");
        for child in &backends {
            assert!(gone(child.parse().unwrap()), "helper {child} killed");
        }
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        assert!(pg.psql("SELECT 1").is_err());

        let started = Instant::now();
        pg.restart().unwrap();
        eprintln!("restart after kill: {:?}", started.elapsed());
        assert_eq!(pg.port(), port);
        assert_eq!(pg.psql(SELECT).unwrap(), "lab|t|broker.example|8883|1");

        pg.psql("UPDATE nemo_mqtt_mqttconfiguration SET broker_port = 1883")
            .unwrap();
        pg.stop();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        pg.restart().unwrap();
        assert_eq!(pg.psql(SELECT).unwrap(), "lab|t|broker.example|1883|1");
    }

    #[test]
    fn freeze_stops_every_process_thaw_resumes_and_drop_kills() {
        let mut pg = PostgresServer::start().unwrap();
        let pid = pg.pid().unwrap();
        pg.freeze().unwrap();
        let state = |pid: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap()
                .rsplit_once(')')
                .unwrap()
                .1
                .trim_start()
                .chars()
                .next()
                .unwrap()
        };
        let all: Vec<String> = std::iter::once(pid.to_string())
            .chain(children_of(pid))
            .collect();
        assert!(all.len() > 1);
        for p in &all {
            // 'Z': a backend that had just exited, which the stopped postmaster
            // cannot reap. SIGSTOP is delivered asynchronously: give it a moment.
            let until = Instant::now() + Duration::from_secs(3);
            while !matches!(state(p), 'T' | 'Z') && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(matches!(state(p), 'T' | 'Z'), "process {p} stopped");
        }
        assert_eq!(state(&pid.to_string()), 'T');
        pg.thaw().unwrap();
        assert_eq!(pg.psql("SELECT 40 + 2").unwrap(), "42");
        let data = pg.data_dir();
        drop(pg);
        assert!(gone(pid), "postmaster gone after drop");
        for p in &all {
            assert!(gone(p.parse().unwrap()), "process {p} gone after drop");
        }
        assert!(!data.exists(), "temporary directory removed");
    }
}
