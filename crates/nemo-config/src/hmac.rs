//! `[hmac]` and the one reader of HMAC key files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Secret;

/// A key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be read.
    #[error("{}: cannot be read", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no key (empty, or only a line break).
    #[error("{}: the file is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

impl KeyFileError {
    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            KeyFileError::Unreadable { path, .. } | KeyFileError::Empty { path } => path,
        }
    }
}

/// The key in a key file: its text without the trailing line break(s) (`\n`, `\r\n`), as
/// bytes. Other whitespace belongs to the key.
///
/// # Errors
/// [`KeyFileError`] when the file cannot be read or holds no key.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("key");
/// std::fs::write(&path, "s3cret\r\n")?;
/// assert_eq!(nemo_config::read_key_file(&path)?, b"s3cret");
/// std::fs::write(&path, "\n")?;
/// assert!(nemo_config::read_key_file(&path).unwrap_err().to_string().ends_with(": the file is empty"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let key = text.trim_end_matches(['\r', '\n']);
    if key.is_empty() {
        return Err(KeyFileError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(key.as_bytes().to_vec())
}

/// `[hmac]`: sign every payload with HMAC-SHA256 in the envelope `{"payload", "hmac", "algo"}`
/// (the bridge), or check signatures (the monitor). Unknown keys in `[hmac]` are errors.
///
/// ```
/// let h: nemo_config::HmacConfig = serde_json::from_str(r#"{"key": "k"}"#)?;
/// assert_eq!(h.key_bytes()?.as_deref(), Some(&b"k"[..]));
/// assert!(!format!("{h:?}").contains("\"k\""));
/// assert_eq!(nemo_config::HmacConfig::default().key_bytes()?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HmacConfig {
    /// The key; empty = signing off. Never shown in `Debug`.
    pub key: Secret,
    /// A file holding the key (trailing line break ignored); alternative to `key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl HmacConfig {
    /// The key bytes, from `key` or else `key_file` ([`read_key_file`]); `None` = off. An empty
    /// `key_file` path counts as unset.
    ///
    /// # Errors
    /// [`KeyFileError`] when `key_file` is used and cannot be read or is empty.
    pub fn key_bytes(&self) -> Result<Option<Vec<u8>>, KeyFileError> {
        if !self.key.is_empty() {
            return Ok(Some(self.key.expose().as_bytes().to_vec()));
        }
        match self.key_file() {
            Some(p) => read_key_file(p).map(Some),
            None => Ok(None),
        }
    }

    /// `key_file` when set and not empty.
    pub fn key_file(&self) -> Option<&Path> {
        self.key_file
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
    }

    /// A copy fit for printing: the key replaced by `***` (the file's path is kept).
    pub fn redacted(&self) -> HmacConfig {
        HmacConfig {
            key: self.key.redacted(),
            key_file: self.key_file.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn key_file_is_read_and_trimmed_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "nemo-fixture-secret\n").unwrap();
        let h = HmacConfig {
            key: Secret::default(),
            key_file: Some(path.clone()),
        };
        assert_eq!(h.key_bytes().unwrap().unwrap(), b"nemo-fixture-secret");
        assert_eq!(h.redacted(), h, "no key to hide");

        let missing = dir.path().join("missing");
        let e = read_key_file(&missing).unwrap_err();
        assert_eq!(e.path(), missing);
        assert!(std::error::Error::source(&e).is_some());
        assert!(e.to_string().contains("missing"), "{e}");

        let with_key = HmacConfig {
            key: Secret::new("k1"),
            key_file: Some(missing),
        };
        assert_eq!(
            with_key.key_bytes().unwrap().unwrap(),
            b"k1",
            "key beats key_file"
        );
        assert_eq!(with_key.redacted().key.expose(), "***");
        let empty_path = HmacConfig {
            key: Secret::default(),
            key_file: Some(PathBuf::new()),
        };
        assert_eq!(empty_path.key_bytes().unwrap(), None);
    }
}
