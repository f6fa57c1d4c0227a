//! MQTT quality of service.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An MQTT quality-of-service level: a QoS that cannot be 3.
///
/// The queue item carries it as the JSON number `0`, `1` or `2`; serde uses the same numbers.
/// The default is [`Qos::AtLeastOnce`], which is what the NEMO plugin writes.
///
/// ```
/// use nemo_events::Qos;
///
/// assert_eq!(Qos::from_u8(2), Some(Qos::ExactlyOnce));
/// assert_eq!(Qos::from_u8(3), None);
/// assert_eq!(Qos::default().as_u8(), 1);
/// assert!(Qos::try_from(-1_i64).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum Qos {
    /// QoS 0: fire and forget, no acknowledgement.
    AtMostOnce = 0,
    /// QoS 1: acknowledged with PUBACK; may be delivered twice.
    #[default]
    AtLeastOnce = 1,
    /// QoS 2: four-way handshake ending with PUBCOMP; delivered once.
    ExactlyOnce = 2,
}

impl Qos {
    /// The QoS as its protocol number `0..=2`.
    ///
    /// ```
    /// assert_eq!(nemo_events::Qos::ExactlyOnce.as_u8(), 2);
    /// ```
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The QoS for a protocol number, or `None` when `v > 2`.
    ///
    /// ```
    /// assert_eq!(nemo_events::Qos::from_u8(0), Some(nemo_events::Qos::AtMostOnce));
    /// ```
    pub fn from_u8(v: u8) -> Option<Qos> {
        match v {
            0 => Some(Qos::AtMostOnce),
            1 => Some(Qos::AtLeastOnce),
            2 => Some(Qos::ExactlyOnce),
            _ => None,
        }
    }
}

/// A number that is not an MQTT QoS (only 0, 1 and 2 are).
///
/// ```
/// let err = nemo_events::Qos::try_from(3_i64).unwrap_err();
/// assert_eq!(err.value, 3);
/// assert_eq!(err.to_string(), "QoS 3 is out of range (allowed: 0, 1, 2)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("QoS {value} is out of range (allowed: 0, 1, 2)")]
pub struct InvalidQos {
    /// The rejected number.
    pub value: i64,
}

impl TryFrom<i64> for Qos {
    type Error = InvalidQos;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        u8::try_from(value)
            .ok()
            .and_then(Qos::from_u8)
            .ok_or(InvalidQos { value })
    }
}

impl TryFrom<u8> for Qos {
    type Error = InvalidQos;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Qos::from_u8(value).ok_or(InvalidQos {
            value: i64::from(value),
        })
    }
}

impl From<Qos> for u8 {
    fn from(q: Qos) -> u8 {
        q.as_u8()
    }
}

impl fmt::Display for Qos {
    /// Writes the protocol number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u8())
    }
}

impl Serialize for Qos {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.as_u8())
    }
}

impl<'de> Deserialize<'de> for Qos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        Qos::try_from(v).map_err(serde::de::Error::custom)
    }
}
