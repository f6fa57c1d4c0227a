//! A private `mosquitto` broker, configured as DESIGN.md §6 asks
//! (`set_tcp_nodelay true`, unlimited queues and in-flight, persistence in a
//! writable private folder).

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use crate::certs::Certs;
use crate::process::{
    HarnessError, ServerProcess, find_binary, open_permissions, tcp_accepts, wait_ready,
};

/// Options for [`Mosquitto`].
#[derive(Debug)]
pub struct MosquittoBuilder {
    tls: Option<Certs>,
    require_client_cert: bool,
    user: Option<(String, String)>,
    persistence: bool,
    websockets: bool,
    extra: String,
}

impl Default for MosquittoBuilder {
    fn default() -> Self {
        Self {
            tls: None,
            require_client_cert: false,
            user: None,
            persistence: true,
            websockets: false,
            extra: String::new(),
        }
    }
}

impl MosquittoBuilder {
    /// Add a TLS listener (on its own port) with these certificates.
    pub fn tls(mut self, certs: Certs) -> Self {
        self.tls = Some(certs);
        self
    }

    /// On the TLS listener, require a client certificate signed by the CA.
    pub fn require_client_cert(mut self, on: bool) -> Self {
        self.require_client_cert = on;
        self
    }

    /// Require this username/password (a password file; anonymous refused).
    pub fn user(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((username.into(), password.into()));
        self
    }

    /// Persist sessions and queued messages to disk (default on; autosave
    /// every second so a `kill -9` loses at most the last second of state).
    pub fn persistence(mut self, on: bool) -> Self {
        self.persistence = on;
        self
    }

    /// Add a WebSocket listener (`ws://`).
    pub fn websockets(mut self, on: bool) -> Self {
        self.websockets = on;
        self
    }

    /// Append raw lines to the config file.
    pub fn extra_config(mut self, lines: &str) -> Self {
        self.extra.push_str(lines);
        self.extra.push('\n');
        self
    }

    /// Start the broker and wait until every listener accepts connections.
    pub fn start(self) -> Result<Mosquitto, HarnessError> {
        let program = find_binary("mosquitto")
            .ok_or(HarnessError::MissingBinary("mosquitto", "mosquitto"))?;
        let dir = tempfile::Builder::new()
            .prefix("nemo-mosquitto-")
            .tempdir()?;
        // Started as root, mosquitto switches to its own user unless told
        // `user root`; the folder must be usable either way.
        open_permissions(dir.path(), 0o777)?;
        let password_file = match &self.user {
            Some((u, p)) => {
                let file = dir.path().join("passwd");
                let passwd = find_binary("mosquitto_passwd")
                    .ok_or(HarnessError::MissingBinary("mosquitto_passwd", "mosquitto"))?;
                let status = Command::new(passwd)
                    .arg("-c")
                    .arg("-b")
                    .arg(&file)
                    .arg(u)
                    .arg(p)
                    .status()?;
                if !status.success() {
                    return Err(HarnessError::Io(std::io::Error::other(
                        "mosquitto_passwd failed",
                    )));
                }
                open_permissions(&file, 0o644)?;
                Some(file)
            }
            None => None,
        };
        let mut last_err = None;
        for _ in 0..5 {
            let port = crate::free_port()?;
            let tls_port = if self.tls.is_some() {
                Some(crate::free_port()?)
            } else {
                None
            };
            let ws_port = if self.websockets {
                Some(crate::free_port()?)
            } else {
                None
            };
            let mut conf = String::new();
            let _ = writeln!(conf, "per_listener_settings false");
            let _ = writeln!(conf, "user root");
            let _ = writeln!(conf, "set_tcp_nodelay true");
            let _ = writeln!(conf, "max_queued_messages 0");
            let _ = writeln!(conf, "max_inflight_messages 0");
            let _ = writeln!(conf, "log_dest stderr");
            let _ = writeln!(conf, "log_type error");
            let _ = writeln!(conf, "log_type warning");
            let _ = writeln!(conf, "log_type notice");
            let _ = writeln!(conf, "log_type information");
            let _ = writeln!(conf, "connection_messages true");
            if self.persistence {
                let _ = writeln!(conf, "persistence true");
                let _ = writeln!(conf, "persistence_location {}/", dir.path().display());
                let _ = writeln!(conf, "autosave_interval 1");
            } else {
                let _ = writeln!(conf, "persistence false");
            }
            match &password_file {
                Some(f) => {
                    let _ = writeln!(conf, "allow_anonymous false");
                    let _ = writeln!(conf, "password_file {}", f.display());
                }
                None => {
                    let _ = writeln!(conf, "allow_anonymous true");
                }
            }
            let _ = writeln!(conf, "listener {port} 127.0.0.1");
            if let (Some(tp), Some(c)) = (tls_port, &self.tls) {
                let _ = writeln!(conf, "listener {tp} 127.0.0.1");
                let _ = writeln!(conf, "cafile {}", c.ca.display());
                let _ = writeln!(conf, "certfile {}", c.server_cert.display());
                let _ = writeln!(conf, "keyfile {}", c.server_key.display());
                let _ = writeln!(conf, "require_certificate {}", self.require_client_cert);
            }
            if let Some(wp) = ws_port {
                let _ = writeln!(conf, "listener {wp} 127.0.0.1");
                let _ = writeln!(conf, "protocol websockets");
            }
            conf.push_str(&self.extra);
            let conf_path = dir.path().join("mosquitto.conf");
            std::fs::write(&conf_path, conf)?;
            let log = dir.path().join("mosquitto.log");
            let mut process = ServerProcess::new(
                "mosquitto",
                program.clone(),
                vec!["-c".into(), conf_path.display().to_string()],
                log,
            );
            process.spawn()?;
            let ports: Vec<u16> = [Some(port), tls_port, ws_port]
                .into_iter()
                .flatten()
                .collect();
            match wait_ready(&mut process, port, Duration::from_secs(20), || {
                ports.iter().all(|p| tcp_accepts(*p))
            }) {
                Ok(()) => {
                    return Ok(Mosquitto {
                        process,
                        port,
                        tls_port,
                        ws_port,
                        tls: self.tls,
                        user: self.user,
                        _dir: dir,
                    });
                }
                Err(e) => {
                    process.kill();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or(HarnessError::NotRunning("mosquitto")))
    }
}

/// A `mosquitto` child process on free loopback ports; killed on drop.
#[derive(Debug)]
pub struct Mosquitto {
    process: ServerProcess,
    port: u16,
    tls_port: Option<u16>,
    ws_port: Option<u16>,
    tls: Option<Certs>,
    user: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Start a plain broker (anonymous, persistence on).
    pub fn start() -> Result<Self, HarnessError> {
        Self::builder().start()
    }

    /// Options: TLS, users, persistence, websockets, extra config.
    pub fn builder() -> MosquittoBuilder {
        MosquittoBuilder::default()
    }

    /// The plain TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// `mqtts://localhost:TLS_PORT`, if a TLS listener was configured.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port.map(|p| format!("mqtts://localhost:{p}"))
    }

    /// The TLS port, if any.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// `ws://127.0.0.1:WS_PORT`, if a WebSocket listener was configured.
    pub fn ws_url(&self) -> Option<String> {
        self.ws_port.map(|p| format!("ws://127.0.0.1:{p}"))
    }

    /// The certificates, if TLS was configured.
    pub fn certs(&self) -> Option<&Certs> {
        self.tls.as_ref()
    }

    /// The configured username and password, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.user.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// PID of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kill with SIGKILL (a crash).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Stop with SIGTERM (saves persistence).
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Freeze (SIGSTOP): connections stay open but nothing answers.
    pub fn freeze(&self) -> Result<(), HarnessError> {
        self.process.signal("-STOP")
    }

    /// Resume after [`freeze`](Self::freeze).
    pub fn thaw(&self) -> Result<(), HarnessError> {
        self.process.signal("-CONT")
    }

    /// Start again on the same ports with the same persistence folder.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.process.kill();
        self.process.spawn()?;
        let ports: Vec<u16> = [Some(self.port), self.tls_port, self.ws_port]
            .into_iter()
            .flatten()
            .collect();
        wait_ready(
            &mut self.process,
            self.port,
            Duration::from_secs(20),
            || ports.iter().all(|p| tcp_accepts(*p)),
        )
    }

    /// The broker's log so far (for diagnosing a failed test).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}
