//! The layering every program uses, weakest first: built-in defaults < the TOML file
//! (`--config`) < NEMO's configuration row (the bridge only; any figment [`Provider`] the
//! caller passes) < environment `NEMO_<SECTION>__<KEY>` < command-line flags ([`flag`]).
//!
//! Each layer carries a name (`built-in default`, `TOML file`, the row's name, `environment`,
//! `command line`) so that [`annotate_sources`] can say, after each value, where it came from.
//!
//! A program reads only its part of the result: [`extract`] into a serde struct whose fields
//! are the sections it needs. A struct without `deny_unknown_fields` ignores the other
//! sections (and the `NEMO_*` variables of other sections); the bridge's full schema keeps
//! `deny_unknown_fields` and so rejects unknown keys and sections.

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The name of the defaults layer ([`defaults`]).
pub const DEFAULTS: &str = "built-in default";
/// The name of the flags layer ([`flag`]).
pub const COMMAND_LINE: &str = "command line";

/// The configuration cannot be loaded: the file cannot be read, or a key has a wrong type or
/// is unknown. One line: the dotted key, the problem, the layer that gave the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {0}")]
pub struct LoadError(pub String);

impl From<figment::Error> for LoadError {
    fn from(e: figment::Error) -> Self {
        // figment reports one error per problem; keep the first, on one line.
        let msg = match e.into_iter().next() {
            Some(err) => {
                let key = if err.path.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", err.path.join("."))
                };
                let from = err
                    .metadata
                    .as_ref()
                    .and_then(|m| m.source.as_ref().map(|s| format!(" (from {s})")))
                    .unwrap_or_default();
                format!("{key}{}{from}", err.kind)
            }
            None => "unknown error".into(),
        };
        LoadError(msg.replace('\n', " "))
    }
}

/// A provider under another name (how [`annotate_sources`] names the layer a value came from).
#[derive(Debug, Clone)]
pub struct Named<P> {
    name: String,
    inner: P,
}

impl<P: Provider> Named<P> {
    /// `inner` under `name`.
    ///
    /// ```
    /// use figment::{Figment, providers::Serialized};
    /// let fig = Figment::from(nemo_config::Named::new("my layer", Serialized::default("a.b", 1)));
    /// assert_eq!(fig.find_metadata("a.b").unwrap().name, "my layer");
    /// ```
    pub fn new(name: impl Into<String>, inner: P) -> Self {
        Named {
            name: name.into(),
            inner,
        }
    }
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

/// The built-in defaults layer: `value` serialized (usually `T::default()`), named
/// [`DEFAULTS`].
///
/// ```
/// let map: std::collections::BTreeMap<_, _> = [("port", 1883)].into_iter().collect();
/// let fig = figment::Figment::from(nemo_config::defaults(&map));
/// assert_eq!(fig.find_metadata("port").unwrap().name, "built-in default");
/// ```
pub fn defaults<T: Serialize>(value: T) -> Named<Serialized<T>> {
    Named::new(DEFAULTS, Serialized::defaults(value))
}

/// A command-line flag's value for `key` (dotted, e.g. `mqtt.url`), as a layer named
/// [`COMMAND_LINE`]. Merge it on top of [`layered`].
///
/// ```
/// let fig = figment::Figment::new().merge(nemo_config::flag("mqtt.client_id", "me"));
/// assert_eq!(fig.extract_inner::<String>("mqtt.client_id").unwrap(), "me");
/// assert_eq!(fig.find_metadata("mqtt.client_id").unwrap().name, "command line");
/// ```
pub fn flag<T: Serialize>(key: &str, value: T) -> Named<Serialized<T>> {
    Named::new(COMMAND_LINE, Serialized::default(key, value))
}

/// The environment layer: `NEMO_<SECTION>__<KEY>` (e.g. `NEMO_MQTT__URL`). Only variables
/// with a `__` after the prefix are read, so unrelated `NEMO_*` variables are ignored.
pub fn environment() -> Env {
    Env::prefixed("NEMO_")
        .filter(|k| k.as_str().contains("__"))
        .split("__")
}

/// Defaults < TOML file at `file` (if any) < `row` (if any) < environment. Callers merge
/// their flags on top ([`flag`]) and [`extract`] their part.
///
/// ```
/// use figment::providers::Serialized;
/// let row = nemo_config::Named::new("NEMO database", Serialized::default("mqtt.keep_alive_s", 15));
/// let fig = nemo_config::layered(figment::Figment::new(), None, Some(row));
/// assert_eq!(fig.find_metadata("mqtt.keep_alive_s").unwrap().name, "NEMO database");
/// ```
pub fn layered<D: Provider, R: Provider>(
    defaults: D,
    file: Option<&Path>,
    row: Option<R>,
) -> Figment {
    let mut fig = Figment::from(defaults);
    if let Some(path) = file {
        fig = fig.merge(Toml::file_exact(path));
    }
    if let Some(row) = row {
        fig = fig.merge(row);
    }
    fig.merge(environment())
}

/// [`layered`] without a row: defaults < file < environment (what `monitor` and `replay` read).
///
/// ```
/// let fig = nemo_config::file_and_environment(nemo_config::flag("redis.key", "q"), None);
/// assert_eq!(fig.extract_inner::<String>("redis.key").unwrap(), "q");
/// ```
pub fn file_and_environment<D: Provider>(defaults: D, file: Option<&Path>) -> Figment {
    layered(defaults, file, None::<Figment>)
}

/// Read a program's part of the configuration: `T` is a serde struct of the sections it
/// needs (with `#[serde(default)]`); sections it does not name are ignored unless `T` says
/// `deny_unknown_fields`.
///
/// # Errors
/// [`LoadError`] for an unreadable file, a wrong type, or an unknown key inside a section `T`
/// reads strictly.
///
/// ```
/// use figment::providers::{Format, Toml};
/// #[derive(serde::Deserialize, Default, Debug)]
/// #[serde(default)]
/// struct Part { redis: Redis }
/// #[derive(serde::Deserialize, Default, Debug)]
/// #[serde(default, deny_unknown_fields)]
/// struct Redis { key: String }
///
/// let fig = figment::Figment::from(Toml::string("[redis]\nkey = \"q\"\n[http]\nlisten = \"\""));
/// assert_eq!(nemo_config::extract::<Part>(&fig)?.redis.key, "q");
/// let bad = figment::Figment::from(Toml::string("[redis]\nkye = \"q\""));
/// assert!(nemo_config::extract::<Part>(&bad).unwrap_err().to_string().contains("kye"));
/// # Ok::<(), nemo_config::LoadError>(())
/// ```
pub fn extract<T: DeserializeOwned>(fig: &Figment) -> Result<T, LoadError> {
    Ok(fig.extract()?)
}

/// True when `key` (dotted) was given by a layer other than the built-in defaults: the file,
/// the row, the environment or a flag.
///
/// ```
/// use figment::{Figment, providers::Serialized};
/// let fig = Figment::from(nemo_config::Named::new("built-in default", Serialized::default("redis.url", "x")))
///     .merge(nemo_config::flag("mqtt.url", "y"));
/// assert!(nemo_config::given("mqtt.url", &fig));
/// assert!(!nemo_config::given("redis.url", &fig));
/// assert!(!nemo_config::given("nothing.here", &fig));
/// ```
pub fn given(key: &str, fig: &Figment) -> bool {
    fig.find_metadata(key).is_some_and(|m| m.name != DEFAULTS)
}

/// How a layer is named after a value: the file's path, the variable's name, the layer's name.
///
/// ```
/// let fig = figment::Figment::new().merge(nemo_config::flag("mqtt.qos", 1));
/// let m = fig.find_metadata("mqtt.qos").unwrap();
/// assert_eq!(nemo_config::source_name(m, "mqtt.qos"), "command line");
/// ```
pub fn source_name(m: &Metadata, key: &str) -> String {
    match &m.source {
        Some(figment::Source::File(path)) => format!("{} {}", m.name, path.display()),
        _ if m.name.contains("environment") => {
            format!("environment NEMO_{}", key.to_uppercase().replace('.', "__"))
        }
        _ => m.name.to_string(),
    }
}

/// `toml` (a configuration rendered as TOML, secrets already redacted) with each `key = value`
/// line followed by `# <layer>` ([`source_name`]) as found in `fig`. Entries of arrays of
/// tables have no dotted key of their own and stay bare.
///
/// ```
/// let fig = figment::Figment::new().merge(nemo_config::flag("mqtt.qos", 1));
/// let text = nemo_config::annotate_sources("[mqtt]\nqos = 1\n", &fig);
/// assert_eq!(text, "[mqtt]\nqos = 1  # command line\n");
/// ```
pub fn annotate_sources(toml: &str, fig: &Figment) -> String {
    let mut section = Some(String::new());
    let mut out = String::new();
    for line in toml.lines() {
        out.push_str(line);
        let trimmed = line.trim();
        if trimmed.starts_with("[[") {
            section = None;
        } else if let Some(name) = trimmed.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(format!("{name}."));
        } else if let (Some(prefix), Some((key, _))) = (&section, trimmed.split_once(" = ")) {
            let key = format!("{prefix}{}", key.trim_matches('"'));
            if let Some(m) = fig.find_metadata(&key) {
                out.push_str("  # ");
                out.push_str(&source_name(m, &key));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]
    use super::*;
    use figment::Jail;
    use serde::Deserialize;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Part {
        mqtt: Mqtt,
    }

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Mqtt {
        client_id: String,
        keep_alive_s: u64,
    }

    impl Default for Mqtt {
        fn default() -> Self {
            Mqtt {
                client_id: "default".into(),
                keep_alive_s: 60,
            }
        }
    }

    #[test]
    fn defaults_file_row_environment_flags_in_that_order() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "b.toml",
                "[mqtt]\nclient_id = \"file\"\nkeep_alive_s = 5\n[http]\nlisten = \"x\"\n",
            )?;
            let part = Part::default();
            let row = Named::new("NEMO row", Serialized::default("mqtt.keep_alive_s", 15));
            let fig = layered(defaults(&part), Some(Path::new("b.toml")), Some(row));
            let p: Part = extract(&fig).unwrap();
            assert_eq!(
                (p.mqtt.client_id.as_str(), p.mqtt.keep_alive_s),
                ("file", 15)
            );

            jail.set_env("NEMO_MQTT__KEEP_ALIVE_S", "30");
            jail.set_env("NEMO_HTTP__LISTEN", "ignored by this part");
            jail.set_env("NEMO_UNRELATED", "ignored");
            let row = Named::new("NEMO row", Serialized::default("mqtt.keep_alive_s", 15));
            let fig = layered(defaults(&part), Some(Path::new("b.toml")), Some(row))
                .merge(flag("mqtt.client_id", "flag"));
            let p: Part = extract(&fig).unwrap();
            assert_eq!(
                (p.mqtt.client_id.as_str(), p.mqtt.keep_alive_s),
                ("flag", 30)
            );
            assert_eq!(
                source_name(
                    fig.find_metadata("mqtt.keep_alive_s").unwrap(),
                    "mqtt.keep_alive_s"
                ),
                "environment NEMO_MQTT__KEEP_ALIVE_S"
            );
            assert!(given("mqtt.client_id", &fig));
            Ok(())
        });
    }

    #[test]
    fn a_wrong_key_inside_a_read_section_is_one_line_naming_it() {
        Jail::expect_with(|jail| {
            jail.create_file("b.toml", "[mqtt]\nclinet_id = \"x\"\n")?;
            let fig = file_and_environment(defaults(&Part::default()), Some(Path::new("b.toml")));
            let e = extract::<Part>(&fig).unwrap_err().to_string();
            assert!(e.starts_with("configuration: "), "{e}");
            assert!(e.contains("clinet_id"), "{e}");
            assert!(!e.contains('\n'), "{e}");
            let fig =
                file_and_environment(defaults(&Part::default()), Some(Path::new("none.toml")));
            assert!(extract::<Part>(&fig).is_err(), "a missing file is an error");
            Ok(())
        });
    }

    #[test]
    fn defaults_are_not_given() {
        let fig = file_and_environment(defaults(&Part::default()), None);
        assert!(!given("mqtt.client_id", &fig));
        let text = annotate_sources("[mqtt]\nclient_id = \"default\"\n", &fig);
        assert!(
            text.contains("client_id = \"default\"  # built-in default"),
            "{text}"
        );
    }
}
