//! The configuration pieces every NEMO MQTT program shares: the layering, secrets and their
//! redaction, the HMAC key file, and (feature `clap`) the command-line flags of the tools.
//!
//! - Layering ([`layered`]): built-in defaults < TOML file (`--config`) < NEMO's configuration
//!   row (a figment provider the bridge passes) < environment `NEMO_<SECTION>__<KEY>` <
//!   flags ([`flag`]); [`annotate_sources`] names the layer of each value.
//! - [`Secret`]: the one secret string type (`***` in `Debug` and `Display`).
//! - [`redact_url`]: the one redaction of passwords inside URLs, for every form the
//!   configuration takes (user-info password; `password=`, `sentinelPassword=` and
//!   `sslpassword=` parameters), whatever the scheme.
//! - [`read_key_file`] and [`HmacConfig`]: the one reader of HMAC key files and `[hmac]`.
//! - `ConnectArgs`, `HmacKeyArgs` (feature `clap`): the flags `monitor` and `replay` share.
//!
//! # Key design decision: each program reads only its part
//!
//! This crate knows no section's type: it sits below nemo-mqtt, nemo-redis, nemo-db and the
//! bridge, which all use its `Secret` and redaction, so it cannot depend on them. A program
//! [`extract`]s a serde struct of the sections it needs (`[mqtt]`, `[redis]`, …) from the
//! layered figment, and the flags are a figment layer too. So the monitor and replay read the
//! bridge's file without compiling the bridge (and its database driver), ignoring its other
//! sections, while the bridge's full schema stays strict (unknown keys and sections are
//! errors). And one redaction serves all: a secret form added to the configuration is added
//! to [`redact_url`] once, and every printout, log line and error message follows.
//!
//! ```
//! use figment::providers::{Format, Toml};
//! let fig = nemo_config::file_and_environment(figment::Figment::new(), None)
//!     .merge(Toml::string("[redis]\nurl = \"redis://:pw@h:6379/1\""));
//! let url: String = fig.extract_inner("redis.url").unwrap();
//! assert_eq!(nemo_config::redact_url(&url), "redis://:***@h:6379/1");
//! ```
#![deny(missing_docs)]

#[cfg(feature = "clap")]
mod cli;
mod hmac;
mod layers;
mod redact;
mod secret;

#[cfg(feature = "clap")]
pub use cli::{ConnectArgs, HmacKeyArgs, Resolved};
pub use hmac::{HmacConfig, KeyFileError, read_key_file};
pub use layers::{
    COMMAND_LINE, DEFAULTS, LoadError, Named, annotate_sources, defaults, environment, extract,
    file_and_environment, flag, given, layered, source_name,
};
pub use redact::{SECRET_PARAMS, is_secret_param, redact_url};
pub use secret::Secret;

/// What a secret is replaced by when shown.
pub const REDACTED: &str = "***";
