//! HMAC-SHA256 envelopes, compatible with the NEMO plugin's signing option.
//!
//! With a key configured, the MQTT payload is not the event itself but an envelope
//!
//! ```json
//! {"payload": "<the original payload string>", "hmac": "<64 lowercase hex digits>", "algo": "sha256"}
//! ```
//!
//! where `hmac` = HMAC-SHA256(key, the UTF-8 bytes of the original payload). The envelope is
//! written in Python `json.dumps` style so it is byte-identical to the plugin's. Verification
//! compares tags in constant time (`subtle`), so a forger learns nothing from timing.
//!
//! Keys are borrowed per call and never stored, logged or printed by this module.
//!
//! ```
//! use nemo_events::hmac;
//!
//! let env = hmac::sign(r#"{"event": "tool_enabled"}"#, b"secret");
//! assert_eq!(hmac::verify(env.as_bytes(), b"secret")?, r#"{"event": "tool_enabled"}"#);
//! assert_eq!(hmac::verify(env.as_bytes(), b"other"), Err(hmac::HmacError::Mismatch));
//! # Ok::<(), hmac::HmacError>(())
//! ```

use ::hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::extra::parse_object;
use crate::pyjson;

/// The only algorithm name supported, as written in `"algo"`.
pub const ALGO: &str = "sha256";

/// Why an envelope was refused.
///
/// ```
/// use nemo_events::hmac::{verify, HmacError};
///
/// assert_eq!(verify(b"{}", b"k"), Err(HmacError::NotAnEnvelope));
/// let env = br#"{"payload": "x", "hmac": "00", "algo": "md5"}"#;
/// assert_eq!(verify(env, b"k"), Err(HmacError::UnsupportedAlgo("md5".into())));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HmacError {
    /// Not a JSON object with string members `payload`, `hmac` and `algo`.
    #[error(
        "not an HMAC envelope (expected a JSON object with string members payload, hmac, algo)"
    )]
    NotAnEnvelope,
    /// `algo` is not `sha256`.
    #[error("unsupported HMAC algorithm {0:?} (supported: \"sha256\")")]
    UnsupportedAlgo(String),
    /// `hmac` is not 64 hex digits.
    #[error("the envelope's hmac is not 64 hex digits")]
    BadHex,
    /// The tag does not match the payload under this key.
    #[error("HMAC mismatch: wrong key or tampered payload")]
    Mismatch,
}

/// A parsed (not yet verified) envelope.
///
/// ```
/// use nemo_events::hmac::{self, Envelope};
///
/// let env = Envelope::parse(hmac::sign("p", b"k").as_bytes())?;
/// assert_eq!((env.payload.as_str(), env.algo.as_str()), ("p", "sha256"));
/// env.verify(b"k")?;
/// assert_eq!(env.to_json(), hmac::sign("p", b"k"));
/// # Ok::<(), hmac::HmacError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The original payload string.
    pub payload: String,
    /// The tag as hex (as received: not checked until [`Envelope::verify`]).
    pub hmac: String,
    /// The algorithm name; only `sha256` verifies.
    pub algo: String,
}

impl Envelope {
    /// Signs `payload` with `key`.
    ///
    /// ```
    /// let env = nemo_events::hmac::Envelope::new("p", b"k");
    /// assert_eq!(env.hmac.len(), 64);
    /// ```
    pub fn new(payload: impl Into<String>, key: &[u8]) -> Envelope {
        let payload = payload.into();
        let hmac = hex::encode(tag(&payload, key));
        Envelope {
            payload,
            hmac,
            algo: ALGO.to_owned(),
        }
    }

    /// Reads the envelope's shape. Extra members are ignored; duplicates: last wins.
    ///
    /// # Errors
    ///
    /// [`HmacError::NotAnEnvelope`] for anything but a JSON object whose `payload`, `hmac`
    /// and `algo` are strings. Never panics.
    ///
    /// ```
    /// assert!(nemo_events::hmac::Envelope::parse(b"\xff\xfe").is_err());
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<Envelope, HmacError> {
        let text = std::str::from_utf8(bytes).map_err(|_| HmacError::NotAnEnvelope)?;
        let entries = parse_object(text).map_err(|_| HmacError::NotAnEnvelope)?;
        let member = |name: &str| -> Result<String, HmacError> {
            let raw = entries
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.get())
                .ok_or(HmacError::NotAnEnvelope)?;
            if !raw.starts_with('"') {
                return Err(HmacError::NotAnEnvelope);
            }
            serde_json::from_str(raw).map_err(|_| HmacError::NotAnEnvelope)
        };
        Ok(Envelope {
            payload: member("payload")?,
            hmac: member("hmac")?,
            algo: member("algo")?,
        })
    }

    /// Checks the tag against the payload under `key`, in constant time.
    ///
    /// # Errors
    ///
    /// [`HmacError::UnsupportedAlgo`], [`HmacError::BadHex`], [`HmacError::Mismatch`].
    ///
    /// ```
    /// let mut env = nemo_events::hmac::Envelope::new("p", b"k");
    /// env.payload.push('!');
    /// assert!(env.verify(b"k").is_err());
    /// ```
    pub fn verify(&self, key: &[u8]) -> Result<(), HmacError> {
        if self.algo != ALGO {
            return Err(HmacError::UnsupportedAlgo(self.algo.clone()));
        }
        let mut given = [0u8; 32];
        hex::decode_to_slice(&self.hmac, &mut given).map_err(|_| HmacError::BadHex)?;
        let expected = tag(&self.payload, key);
        if bool::from(expected.ct_eq(&given)) {
            Ok(())
        } else {
            Err(HmacError::Mismatch)
        }
    }

    /// The envelope as the plugin writes it: `{"payload": ..., "hmac": ..., "algo": ...}`.
    ///
    /// ```
    /// let env = nemo_events::hmac::Envelope { payload: "é".into(), hmac: "ab".into(), algo: "sha256".into() };
    /// assert_eq!(env.to_json(), r#"{"payload": "\u00e9", "hmac": "ab", "algo": "sha256"}"#);
    /// ```
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.payload.len() + 120);
        out.push_str("{\"payload\": ");
        pyjson::write_str(&mut out, &self.payload);
        out.push_str(", \"hmac\": ");
        pyjson::write_str(&mut out, &self.hmac);
        out.push_str(", \"algo\": ");
        pyjson::write_str(&mut out, &self.algo);
        out.push('}');
        out
    }
}

/// The raw HMAC-SHA256 tag of `payload` under `key`.
///
/// ```
/// // RFC 4231 test case 2.
/// let t = nemo_events::hmac::tag("what do ya want for nothing?", b"Jefe");
/// assert_eq!(hex::encode(t), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
/// ```
pub fn tag(payload: &str, key: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(payload.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Wraps `payload` in a signed envelope, byte-identical to the plugin's.
///
/// ```
/// let env = nemo_events::hmac::sign("{}", b"k");
/// assert!(env.starts_with(r#"{"payload": "{}", "hmac": ""#) && env.ends_with(r#"", "algo": "sha256"}"#));
/// ```
pub fn sign(payload: &str, key: &[u8]) -> String {
    Envelope::new(payload, key).to_json()
}

/// Checks an envelope and returns the original payload.
///
/// # Errors
///
/// [`HmacError::NotAnEnvelope`], [`HmacError::UnsupportedAlgo`], [`HmacError::BadHex`],
/// [`HmacError::Mismatch`]. Never panics, whatever the bytes.
///
/// ```
/// let env = nemo_events::hmac::sign("payload", b"key");
/// assert_eq!(nemo_events::hmac::verify(env.as_bytes(), b"key").as_deref(), Ok("payload"));
/// ```
pub fn verify(envelope: &[u8], key: &[u8]) -> Result<String, HmacError> {
    let env = Envelope::parse(envelope)?;
    env.verify(key)?;
    Ok(env.payload)
}
