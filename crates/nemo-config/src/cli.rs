//! The command-line flags the tools around the bridge share (feature `clap`): the connection
//! flags ([`ConnectArgs`]) and the HMAC key file ([`HmacKeyArgs`]).
//!
//! Both tools are clients of one bridge, so they read *its* configuration file (`--config`)
//! and `NEMO_<SECTION>__<KEY>` environment, each only the sections it needs, and a flag
//! overrides a key (`--mqtt-url` beats `mqtt.url`). The flags are a figment layer ([`flag`]),
//! so this crate needs no knowledge of the sections' types: a program passes its own part
//! struct to [`ConnectArgs::resolve`].

use std::path::PathBuf;

use figment::{Figment, Provider};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{
    HmacConfig, KeyFileError, LoadError, defaults, extract, file_and_environment, flag, given,
};

/// The connection flags shared by `monitor` and `replay`: flatten into a program's parser with
/// `#[command(flatten)]`. Every flag is global (accepted after a subcommand too).
///
/// A program may reword a flag's help with clap's `mut_arg` (ids: `config`, `mqtt_url`,
/// `client_id`, `redis_url`) to say what *it* uses the value for.
///
/// ```
/// use clap::Parser;
/// use nemo_config::ConnectArgs;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     connect: ConnectArgs,
/// }
///
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// #[serde(default)]
/// struct Part { mqtt: Mqtt }
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// #[serde(default)]
/// struct Mqtt { url: Vec<String>, client_id: String }
///
/// let cli = Cli::try_parse_from(["tool", "--mqtt-url", "mqtt://127.0.0.1:1884", "--client-id", "me"])?;
/// let resolved = cli.connect.resolve::<Part>("tool")?;
/// assert_eq!(resolved.config.mqtt.url, ["mqtt://127.0.0.1:1884"]);
/// assert_eq!(resolved.config.mqtt.client_id, "me");
/// assert!(!resolved.redis_configured);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
// Not the parser's description: without these, this doc comment would become it.
#[command(about = None, long_about = None)]
pub struct ConnectArgs {
    /// The bridge's TOML configuration (`[mqtt]`, `[redis]`, `[hmac]`, `[backoff]` are used).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Broker URL (overrides mqtt.url), e.g. mqtt://127.0.0.1:1883 or mqtts://host:8883.
    #[arg(long, global = true, value_name = "URL")]
    pub mqtt_url: Option<String>,
    /// MQTT client id (default `nemo-<program>-<pid>`; must differ from the bridge's).
    #[arg(long, global = true)]
    pub client_id: Option<String>,
    /// Redis URL of the bridge's queue (overrides redis.url), e.g. redis://127.0.0.1:6379/1.
    #[arg(long, global = true, value_name = "URL")]
    pub redis_url: Option<String>,
}

/// A program's part of the configuration with the [`ConnectArgs`] applied.
#[derive(Debug, Clone)]
pub struct Resolved<T> {
    /// Defaults < file < environment < flags. `mqtt.client_id` is the flag, else
    /// `nemo-<program>-<pid>`.
    pub config: T,
    /// The figment `config` was extracted from (to read more, or name the sources).
    pub figment: Figment,
    /// True when a Redis URL was given on purpose (the flag, the file or the environment)
    /// rather than left at the built-in default.
    pub redis_configured: bool,
}

impl ConnectArgs {
    /// `defaults` < `--config` file < `NEMO_*` environment < these flags (`mqtt.url` as a
    /// one-element list, `redis.url`, and `mqtt.client_id`: the flag, else
    /// `nemo-<program>-<pid>`, so two tools (and the bridge) never share one: a broker
    /// disconnects the older of two clients with the same id).
    pub fn figment<D: Provider>(&self, defaults: D, program: &str) -> Figment {
        let mut fig = file_and_environment(defaults, self.config.as_deref());
        if let Some(url) = &self.mqtt_url {
            fig = fig.merge(flag("mqtt.url", [url]));
        }
        if let Some(url) = &self.redis_url {
            fig = fig.merge(flag("redis.url", url));
        }
        let client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| format!("nemo-{program}-{}", std::process::id()));
        fig.merge(flag("mqtt.client_id", client_id))
    }

    /// Read the program's part `T` (its sections, e.g. `[mqtt]` and `[redis]`; other sections
    /// are ignored) with `T::default()` as the defaults and these flags on top.
    ///
    /// # Errors
    /// [`LoadError`] when the file cannot be read, or a key of a section `T` reads has a wrong
    /// type or is unknown.
    pub fn resolve<T>(&self, program: &str) -> Result<Resolved<T>, LoadError>
    where
        T: Serialize + DeserializeOwned + Default,
    {
        let fig = self.figment(defaults(T::default()), program);
        let config = extract(&fig)?;
        Ok(Resolved {
            config,
            redis_configured: given("redis.url", &fig),
            figment: fig,
        })
    }
}

/// `--hmac-key-file PATH`: the HMAC key from a file, overriding `[hmac]`. Flatten into a
/// program's parser; the flag is global.
///
/// ```
/// use clap::Parser;
/// #[derive(Parser)]
/// struct Cli { #[command(flatten)] hmac: nemo_config::HmacKeyArgs }
///
/// let config = nemo_config::HmacConfig { key: "from-config".into(), key_file: None };
/// let cli = Cli::try_parse_from(["tool"])?;
/// assert_eq!(cli.hmac.key(&config)?.as_deref(), Some(&b"from-config"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
#[command(about = None, long_about = None)]
pub struct HmacKeyArgs {
    /// File holding the HMAC key (overrides `[hmac]`).
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        help = "File holding the HMAC key (overrides [hmac])"
    )]
    pub hmac_key_file: Option<PathBuf>,
}

impl HmacKeyArgs {
    /// The key: `--hmac-key-file` when given, else `[hmac]` (`key`, else `key_file`);
    /// `None` = no key.
    ///
    /// # Errors
    /// [`KeyFileError`] when the file in use cannot be read or is empty.
    pub fn key(&self, config: &HmacConfig) -> Result<Option<Vec<u8>>, KeyFileError> {
        match &self.hmac_key_file {
            Some(path) => crate::read_key_file(path).map(Some),
            None => config.key_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use clap::Parser;
    use serde::Deserialize;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        hmac: HmacKeyArgs,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Part {
        mqtt: Mqtt,
        redis: Redis,
        hmac: HmacConfig,
    }
    #[derive(Debug, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Mqtt {
        url: Vec<String>,
        client_id: String,
    }
    impl Default for Mqtt {
        fn default() -> Self {
            Mqtt {
                url: vec!["mqtt://127.0.0.1:1883".into()],
                client_id: "nemo-bridge".into(),
            }
        }
    }
    #[derive(Debug, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Redis {
        url: String,
        key: String,
    }
    impl Default for Redis {
        fn default() -> Self {
            Redis {
                url: "redis://127.0.0.1:6379/1".into(),
                key: "nemo_mqtt_events".into(),
            }
        }
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("tool").chain(args.iter().copied())).unwrap()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn flags_beat_the_file_and_other_sections_are_ignored() {
        let f = file(
            "[mqtt]\nurl = [\"mqtt://file:1883\"]\nclient_id = \"nemo-bridge\"\n\
             [redis]\nurl = \"redis://file:6379/1\"\nkey = \"q\"\n\
             [http]\nlisten = \"127.0.0.1:9187\"\n[shutdown]\ndrain_timeout_s = 3\n",
        );
        let path = f.path().to_str().unwrap();
        let r = parse(&["--config", path])
            .connect
            .resolve::<Part>("replay")
            .unwrap();
        assert_eq!(r.config.mqtt.url, ["mqtt://file:1883"]);
        assert_eq!(
            r.config.mqtt.client_id,
            format!("nemo-replay-{}", std::process::id())
        );
        assert_eq!(r.config.redis.key, "q");
        assert!(r.redis_configured, "the file names a Redis URL");

        let cli = parse(&[
            "--config",
            path,
            "--mqtt-url",
            "mqtt://flag:1884",
            "--redis-url",
            "redis://flag:6380/2",
            "--client-id",
            "me",
        ]);
        let r = cli.connect.resolve::<Part>("replay").unwrap();
        assert_eq!(r.config.mqtt.url, ["mqtt://flag:1884"]);
        assert_eq!(r.config.redis.url, "redis://flag:6380/2");
        assert_eq!(r.config.mqtt.client_id, "me");
    }

    #[test]
    fn the_default_redis_url_is_not_a_configured_one() {
        let r = parse(&[]).connect.resolve::<Part>("monitor").unwrap();
        assert!(!r.redis_configured);
        assert_eq!(r.config.redis.url, "redis://127.0.0.1:6379/1");
        let r = parse(&["--redis-url", "redis://127.0.0.1:1/0"])
            .connect
            .resolve::<Part>("monitor")
            .unwrap();
        assert!(r.redis_configured);
    }

    #[test]
    fn an_unknown_key_in_a_read_section_is_an_error() {
        let f = file("[mqtt]\nnot_a_key = 1\n");
        let cli = parse(&["--config", f.path().to_str().unwrap()]);
        let e = cli
            .connect
            .resolve::<Part>("monitor")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("configuration: "), "{e}");
        assert!(e.contains("not_a_key"), "{e}");
    }

    #[test]
    fn the_key_file_flag_beats_the_configuration() {
        let f = file("[hmac]\nkey = \"from-config\"\n");
        let key = file("s3cret\r\n");
        let config = f.path().to_str().unwrap();
        let cli = parse(&["--config", config]);
        let part = cli.connect.resolve::<Part>("monitor").unwrap().config;
        assert_eq!(
            cli.hmac.key(&part.hmac).unwrap().as_deref(),
            Some(&b"from-config"[..])
        );
        let cli = parse(&[
            "--config",
            config,
            "--hmac-key-file",
            key.path().to_str().unwrap(),
        ]);
        assert_eq!(
            cli.hmac.key(&part.hmac).unwrap().as_deref(),
            Some(&b"s3cret"[..])
        );
        let cli = parse(&["--hmac-key-file", "/nonexistent/key"]);
        let e = cli.hmac.key(&part.hmac).unwrap_err();
        assert!(matches!(e, KeyFileError::Unreadable { .. }), "{e}");
    }
}
