//! Typed errors of this crate.

use crate::config::ConfigError;

/// Everything that can go wrong talking to Redis.
///
/// Connection-level trouble (the server went away, a command timed out on the
/// client side) is reported as [`RedisError::Command`] with a fred error whose
/// kind tells the story; [`RedisError::is_transient`] says whether retrying
/// later may help. No variant ever contains a password: URLs are redacted
/// before they are stored here.
///
/// ```
/// use nemo_redis::RedisError;
/// let e = RedisError::LeaseLost { key: "{q}:lease".into() };
/// assert_eq!(e.to_string(), "lease {q}:lease is lost (another bridge holds it, or it expired)");
/// assert!(!e.is_transient());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The `[redis]` configuration is invalid (names key, value and what is allowed).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `redis.url` cannot be used (the URL shown is redacted).
    #[error("invalid redis.url = \"{url}\": {reason}")]
    InvalidUrl {
        /// The URL with its password replaced by `***`.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// TLS setup failed (CA or client certificate files).
    #[error("redis TLS setup failed: {0}")]
    Tls(String),
    /// The TLS handshake with the server failed: its certificate is not trusted, has expired,
    /// or is not issued for the host. Not transient: retrying does not help.
    #[error("TLS handshake with {url} failed: {reason}")]
    TlsHandshake {
        /// The URL with its password replaced by `***`.
        url: String,
        /// What the certificate check said, in one line, with a hint.
        reason: String,
    },
    /// The TLS handshake was cut off before the server's certificate was judged (connection
    /// reset, EOF): transient, retried.
    #[error("TLS handshake with {url} was interrupted: {reason}")]
    TlsInterrupted {
        /// The URL (redacted).
        url: String,
        /// What happened, one line.
        reason: String,
    },
    /// The first connection could not be made.
    #[error("cannot connect to Redis at {url}: {source}")]
    Connect {
        /// The URL with its password replaced by `***`.
        url: String,
        /// The client's error.
        #[source]
        source: fred::error::Error,
    },
    /// A command failed (connection lost, timeout, server error).
    #[error("redis {cmd} failed: {source}")]
    Command {
        /// The command (or script) that failed, e.g. `BLMOVE`, `take-script`.
        cmd: &'static str,
        /// The client's error.
        #[source]
        source: fred::error::Error,
    },
    /// The server answered with something this crate does not understand.
    #[error("unexpected reply to redis {cmd}: {detail}")]
    Protocol {
        /// The command.
        cmd: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A sentinel refused the credentials the bridge gives it (the user and password of
    /// `redis.url`). fred reports that exactly like sentinels that are not up yet, so the
    /// bridge asks the sentinels itself when none answers. Not transient.
    #[error(
        "Redis Sentinel at {sentinel} refuses the credentials of redis.url (the sentinels get the URL's user and password): {source}"
    )]
    SentinelAuth {
        /// The sentinel's `host:port`.
        sentinel: String,
        /// What it answered.
        #[source]
        source: fred::error::Error,
    },
    /// The single-active lease is not (or no longer) held by this process.
    #[error("lease {key} is lost (another bridge holds it, or it expired)")]
    LeaseLost {
        /// The lease key.
        key: String,
    },
}

/// Whether a server's answer refuses the credentials (WRONGPASS, NOAUTH, an AUTH to a server
/// without a password, or fred's authentication error).
pub(crate) fn refuses_credentials(e: &fred::error::Error) -> bool {
    let details = e.details();
    *e.kind() == fred::error::ErrorKind::Auth
        || details.contains("WRONGPASS")
        || details.contains("NOAUTH")
        || details.contains("without any password configured")
}

impl RedisError {
    /// Shorthand for a failed command.
    pub(crate) fn cmd(cmd: &'static str) -> impl FnOnce(fred::error::Error) -> RedisError {
        move |source| RedisError::Command { cmd, source }
    }

    /// True when the failure is about the connection (I/O, timeout, cancelled
    /// by a reconnect, server loading): retrying after a backoff may succeed.
    ///
    /// ```
    /// use nemo_redis::RedisError;
    /// use fred::error::{Error, ErrorKind};
    /// let e = RedisError::Command { cmd: "LLEN", source: Error::new(ErrorKind::IO, "closed") };
    /// assert!(e.is_transient());
    /// // A Sentinel set not up yet: wait for it.
    /// let e = RedisError::Connect {
    ///     url: "redis-sentinel://h:26379/1?sentinelServiceName=nemo".into(),
    ///     source: Error::new(ErrorKind::Sentinel, "Failed to connect to all sentinel nodes."),
    /// };
    /// assert!(e.is_transient());
    /// // Refused credentials: a person has to fix them.
    /// let e = RedisError::Connect {
    ///     url: "redis://:***@h:6379/1".into(),
    ///     source: Error::new(ErrorKind::Auth, "WRONGPASS invalid username-password pair"),
    /// };
    /// assert!(!e.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        use fred::error::ErrorKind;
        match self {
            // Down, refused, reset: yes. Refused credentials (WRONGPASS, NOAUTH) or a
            // server that answers with an error: a person has to fix it.
            // Through Sentinel: no sentinel answers yet, the one that answers knows no master
            // by that name yet, or the master it names is still a replica (a fail-over, or a
            // set coming up): all of these pass. Only a URL without a service name is a
            // mistake (the configuration check catches it first).
            RedisError::Connect { source, .. } => {
                let details = source.details();
                let wrong_credentials = refuses_credentials(source);
                let sentinel = *source.kind() == ErrorKind::Sentinel
                    && !details.contains("Missing sentinel service name");
                (sentinel
                    || matches!(
                        source.kind(),
                        ErrorKind::IO
                            | ErrorKind::Timeout
                            | ErrorKind::Canceled
                            | ErrorKind::Unknown
                    ))
                    && !wrong_credentials
            }
            RedisError::TlsInterrupted { .. } => true,
            RedisError::Command { source, .. } => {
                matches!(
                    source.kind(),
                    ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled | ErrorKind::Unknown
                ) || source.details().starts_with("LOADING")
                    || source.details().starts_with("BUSY")
            }
            _ => false,
        }
    }
}
