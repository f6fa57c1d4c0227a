//! A child server process that is killed on drop.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What can go wrong starting or controlling a test server.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// An I/O error (spawning, writing config, reading logs).
    #[error("harness I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The server binary is not installed.
    #[error("`{0}` not found on PATH or in /usr/sbin, /usr/bin (install it: apt-get install {1})")]
    MissingBinary(&'static str, &'static str),
    /// The server did not accept connections in time; the log tail says why.
    #[error("{name} on port {port} did not become ready within {secs} s; log tail:\n{log}")]
    NotReady {
        /// Which server.
        name: &'static str,
        /// Its port.
        port: u16,
        /// How long we waited.
        secs: u64,
        /// The last lines of its log.
        log: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Certs(String),
    /// The browser failed to load a page, or took too long.
    #[error("headless browser: {0}")]
    Browser(String),
    /// The server handle was used after it was stopped for good.
    #[error("{0} is not running")]
    NotRunning(&'static str),
}

pub(crate) fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A running (or stopped) server process with a fixed command line, so it can be
/// restarted on the same port with the same files.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    pub(crate) name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl ServerProcess {
    pub(crate) fn new(
        name: &'static str,
        program: PathBuf,
        args: Vec<String>,
        log: PathBuf,
    ) -> Self {
        Self {
            name,
            program,
            args,
            log,
            child: None,
        }
    }

    pub(crate) fn spawn(&mut self) -> Result<(), HarnessError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// True if the child exited on its own (e.g. port taken).
    pub(crate) fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// SIGKILL and reap.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP / SIGCONT: freeze the server without closing its sockets
    /// (a "stuck peer").
    pub(crate) fn signal(&self, sig: &str) -> Result<(), HarnessError> {
        let pid = self.pid().ok_or(HarnessError::NotRunning(self.name))?;
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?;
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Resume first in case a test froze it, then kill.
        let _ = self.signal("-CONT");
        self.kill();
    }
}

/// Wait until `ready()` says yes, the process dies, or the timeout passes.
pub(crate) fn wait_ready(
    proc_: &mut ServerProcess,
    port: u16,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), HarnessError> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if proc_.exited() {
            break;
        }
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(HarnessError::NotReady {
        name: proc_.name,
        port,
        secs: timeout.as_secs(),
        log: proc_.log_tail(),
    })
}

pub(crate) fn tcp_accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// Make a directory usable by a server that may drop privileges
/// (mosquitto started as root switches to its own user).
pub(crate) fn open_permissions(path: &Path, mode: u32) -> Result<(), HarnessError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}
