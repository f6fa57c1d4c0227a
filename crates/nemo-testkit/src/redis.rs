//! A private `redis-server`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::certs::Certs;
use crate::process::{HarnessError, ServerProcess, find_binary, tcp_accepts, wait_ready};

/// Options for [`RedisServer`].
#[derive(Debug, Default)]
pub struct RedisBuilder {
    aof: bool,
    password: Option<String>,
    tls: Option<Certs>,
}

impl RedisBuilder {
    /// Turn on the append-only file (`appendfsync always`), so a killed and
    /// restarted server keeps its lists and streams.
    pub fn aof(mut self, on: bool) -> Self {
        self.aof = on;
        self
    }

    /// Require this password (`requirepass`).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Serve TLS only (`rediss://`), with these certificates.
    pub fn tls(mut self, certs: Certs) -> Self {
        self.tls = Some(certs);
        self
    }

    /// Start the server and wait until it answers.
    pub fn start(self) -> Result<RedisServer, HarnessError> {
        let program = find_binary("redis-server")
            .ok_or(HarnessError::MissingBinary("redis-server", "redis-server"))?;
        let dir = tempfile::Builder::new().prefix("nemo-redis-").tempdir()?;
        let mut last_err = None;
        for _ in 0..5 {
            let port = crate::free_port()?;
            let mut args: Vec<String> = vec![
                "--bind".into(),
                "127.0.0.1".into(),
                "--dir".into(),
                dir.path().display().to_string(),
                "--save".into(),
                String::new(),
                "--daemonize".into(),
                "no".into(),
                "--protected-mode".into(),
                "no".into(),
                "--databases".into(),
                "16".into(),
            ];
            if self.aof {
                args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from));
            } else {
                args.extend(["--appendonly", "no"].map(String::from));
            }
            if let Some(pw) = &self.password {
                args.extend(["--requirepass".into(), pw.clone()]);
            }
            if let Some(c) = &self.tls {
                args.extend([
                    "--port".into(),
                    "0".into(),
                    "--tls-port".into(),
                    port.to_string(),
                    "--tls-cert-file".into(),
                    c.server_cert.display().to_string(),
                    "--tls-key-file".into(),
                    c.server_key.display().to_string(),
                    "--tls-ca-cert-file".into(),
                    c.ca.display().to_string(),
                    "--tls-auth-clients".into(),
                    "optional".into(),
                ]);
            } else {
                args.extend(["--port".into(), port.to_string()]);
            }
            let log = dir.path().join("redis.log");
            let mut process = ServerProcess::new("redis-server", program.clone(), args, log);
            process.spawn()?;
            let password = self.password.clone();
            let tls = self.tls.is_some();
            match wait_ready(&mut process, port, Duration::from_secs(20), || {
                if tls {
                    tcp_accepts(port)
                } else {
                    ping(port, password.as_deref())
                }
            }) {
                Ok(()) => {
                    return Ok(RedisServer {
                        process,
                        port,
                        password: self.password,
                        tls: self.tls,
                        _dir: dir,
                    });
                }
                Err(e) => {
                    process.kill();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or(HarnessError::NotRunning("redis-server")))
    }
}

/// A `redis-server` child process on a free loopback port; killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    process: ServerProcess,
    port: u16,
    password: Option<String>,
    tls: Option<Certs>,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Start a plain server (no AOF, no password, no TLS).
    pub fn start() -> Result<Self, HarnessError> {
        Self::builder().start()
    }

    /// Options: AOF, password, TLS.
    pub fn builder() -> RedisBuilder {
        RedisBuilder::default()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of database 1 (NEMO's database): `redis://127.0.0.1:PORT/1`, or
    /// `rediss://localhost:PORT/1` with TLS; includes the password if one is set.
    pub fn url(&self) -> String {
        self.url_db(1)
    }

    /// URL of database `db`.
    pub fn url_db(&self, db: u8) -> String {
        let auth = self
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        match self.tls {
            Some(_) => format!("rediss://{auth}localhost:{}/{db}", self.port),
            None => format!("redis://{auth}127.0.0.1:{}/{db}", self.port),
        }
    }

    /// The certificates, if it serves TLS.
    pub fn certs(&self) -> Option<&Certs> {
        self.tls.as_ref()
    }

    /// PID of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kill with SIGKILL (a crash). Data survives only with AOF.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Stop with SIGTERM (a clean shutdown).
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Freeze (SIGSTOP): the socket stays open but nothing answers.
    pub fn freeze(&self) -> Result<(), HarnessError> {
        self.process.signal("-STOP")
    }

    /// Resume after [`freeze`](Self::freeze).
    pub fn thaw(&self) -> Result<(), HarnessError> {
        self.process.signal("-CONT")
    }

    /// Start again on the same port with the same data directory (after
    /// `kill` or `stop`; kills a running one first).
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.process.kill();
        self.process.spawn()?;
        let port = self.port;
        let password = self.password.clone();
        let tls = self.tls.is_some();
        wait_ready(&mut self.process, port, Duration::from_secs(20), || {
            if tls {
                tcp_accepts(port)
            } else {
                ping(port, password.as_deref())
            }
        })
    }

    /// Run `redis-cli` against this server (database 1) and return its stdout,
    /// trimmed. For test setup and assertions.
    pub fn cli(&self, args: &[&str]) -> Result<String, HarnessError> {
        let program = find_binary("redis-cli")
            .ok_or(HarnessError::MissingBinary("redis-cli", "redis-tools"))?;
        let mut cmd = Command::new(program);
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-n", "1"]);
        if let Some(pw) = &self.password {
            cmd.env("REDISCLI_AUTH", pw);
        }
        if let Some(c) = &self.tls {
            cmd.args(["--tls", "--cacert"]).arg(&c.ca);
        }
        let out = cmd.args(args).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Data directory (AOF lives here).
    pub fn dir(&self) -> PathBuf {
        self._dir.path().to_path_buf()
    }
}

/// Send PING (after AUTH if needed) and expect PONG; `-LOADING` means not yet.
fn ping(port: u16, password: Option<&str>) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut req = String::new();
    if let Some(pw) = password {
        req.push_str(&format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{pw}\r\n", pw.len()));
    }
    req.push_str("*1\r\n$4\r\nPING\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.windows(5).any(|w| w == b"+PONG") {
            return true;
        }
        if got.starts_with(b"-") {
            return false;
        }
    }
    false
}
