//! Fixed-size identifiers: chunk ids (keyed BLAKE3 of a chunk's plaintext) and pack ids
//! (random), both 32 bytes, shown as 64 lowercase hex digits.
//!
//! This module only names and formats ids; it does not compute them (see
//! `pipeline::keys::Keys::chunk_id`).

use std::fmt;
use std::str::FromStr;

/// A 32-byte identifier. Used for chunk ids and pack ids.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    pub const LEN: usize = 32;

    /// A fresh random id (pack ids, repository ids).
    pub fn random() -> Id {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
        Id(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads an id from exactly 32 bytes; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Id> {
        let array: [u8; 32] = bytes.try_into().ok()?;
        Some(Id(array))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first eight hex digits, for compact log lines.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

/// Parsing an id from text failed: not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("invalid id {text:?}: expected 64 hex digits")]
pub struct ParseIdError {
    pub text: String,
}

impl FromStr for Id {
    type Err = ParseIdError;

    fn from_str(text: &str) -> Result<Id, ParseIdError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| ParseIdError {
            text: text.chars().take(80).collect(),
        })?;
        Ok(Id(bytes))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Id, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = Id::random();
        assert_eq!(id.to_hex().parse::<Id>().unwrap(), id);
        assert!("zz".parse::<Id>().is_err());
        assert!(Id::from_slice(&[0u8; 31]).is_none());
    }
}
