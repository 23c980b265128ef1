//! Fixed-size identifiers, one type per kind so that the compiler keeps them apart:
//! [`ChunkId`] (keyed BLAKE3 of a chunk's plaintext), [`PackId`] (random, names a pack
//! object) and [`RepositoryId`] (random, chosen at `init`), each 32 bytes shown as 64
//! lowercase hex digits; and [`BackupId`], a UUID in its canonical text form, which only
//! parsing makes, so text from a request or a stored manifest is checked once at the
//! edge and a series name can never stand in for it.
//!
//! A chunk id where a pack id belongs was once only a review away; now it does not
//! compile. Converting between kinds is never needed: the bytes mean different things.
//! This module only names and formats ids; it does not compute them (see
//! `pipeline::keys::Keys::chunk_id`).

use std::fmt;
use std::str::FromStr;

/// Parsing an id from text failed: not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("invalid {kind} {text:?}: expected 64 hex digits")]
pub struct ParseIdError {
    pub kind: &'static str,
    pub text: String,
}

/// Defines one kind of 32-byte id with its formatting, parsing and serde impls.
macro_rules! fixed_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(pub [u8; 32]);

        impl Ord for $name {
            /// Byte order, with the first eight bytes compared as one word: ids are
            /// uniformly random, so that word nearly always decides, and a sorted search
            /// of millions of ids spends its time in a call to `memcmp` otherwise.
            fn cmp(&self, other: &$name) -> std::cmp::Ordering {
                let head = |id: &[u8; 32]| id.first_chunk::<8>().map_or(0, |h| u64::from_be_bytes(*h));
                head(&self.0)
                    .cmp(&head(&other.0))
                    .then_with(|| self.0.cmp(&other.0))
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &$name) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl $name {
            pub const LEN: usize = 32;
            /// What the id names, for messages.
            pub const KIND: &'static str = $kind;

            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Reads an id from exactly 32 bytes; `None` for any other length.
            pub fn from_slice(bytes: &[u8]) -> Option<$name> {
                let array: [u8; 32] = bytes.try_into().ok()?;
                Some($name(array))
            }

            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first eight hex digits, for compact log lines.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(text: &str) -> Result<$name, ParseIdError> {
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(text, &mut bytes).map_err(|_| ParseIdError {
                    kind: $kind,
                    text: text.chars().take(80).collect(),
                })?;
                Ok($name(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

fixed_id!(
    /// A chunk's id: the keyed BLAKE3 hash of its plaintext (also names content-list
    /// blobs, which are stored like chunks).
    ChunkId,
    "chunk id"
);
fixed_id!(
    /// A pack's id: random, chosen when the pack is written; its object key derives from it.
    PackId,
    "pack id"
);
fixed_id!(
    /// A repository's id: random, chosen at `init`; binds the key file and the index to it.
    RepositoryId,
    "repository id"
);

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
    bytes
}

impl PackId {
    /// A fresh random pack id.
    pub fn random() -> PackId {
        PackId(random_bytes())
    }
}

impl RepositoryId {
    /// A fresh random repository id.
    pub fn random() -> RepositoryId {
        RepositoryId(random_bytes())
    }
}

/// A backup's id: a version-4 UUID in its lowercase hyphenated form. Only
/// [`BackupId::random`] and parsing (which refuses any other spelling) make one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackupId(String);

/// Parsing a backup id failed: not a lowercase hyphenated UUID.
#[derive(Debug, thiserror::Error)]
#[error("backup id {text:?} is not a lowercase hyphenated UUID")]
pub struct ParseBackupIdError {
    pub text: String,
}

impl BackupId {
    /// A fresh random backup id.
    pub fn random() -> BackupId {
        BackupId(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for BackupId {
    type Err = ParseBackupIdError;

    fn from_str(text: &str) -> Result<BackupId, ParseBackupIdError> {
        match uuid::Uuid::try_parse(text) {
            Ok(parsed) if parsed.hyphenated().to_string() == text => Ok(BackupId(text.to_string())),
            _ => Err(ParseBackupIdError {
                text: text.chars().take(80).collect(),
            }),
        }
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackupId({})", self.0)
    }
}

impl AsRef<str> for BackupId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for BackupId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for BackupId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl serde::Serialize for BackupId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for BackupId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<BackupId, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = PackId::random();
        assert_eq!(id.to_hex().parse::<PackId>().unwrap(), id);
        let error = "zz".parse::<ChunkId>().unwrap_err();
        assert!(error.to_string().contains("chunk id"), "{error}");
        assert!(ChunkId::from_slice(&[0u8; 31]).is_none());
        assert_eq!(format!("{:?}", ChunkId([0xab; 32])), "ChunkId(abababab)");
        // The order is the bytes' order, whether the first eight bytes decide or not.
        let mut ids: Vec<[u8; 32]> = Vec::new();
        for first in [0u8, 1, 0x80, 0xff] {
            for eighth in [0u8, 0x7f, 0xff] {
                for last in [0u8, 1, 0xff] {
                    let mut id = [first; 32];
                    id[7] = eighth;
                    id[31] = last;
                    ids.push(id);
                }
            }
        }
        for a in &ids {
            for b in &ids {
                assert_eq!(ChunkId(*a).cmp(&ChunkId(*b)), a.cmp(b), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn backup_ids_take_one_spelling_only() {
        let id = BackupId::random();
        assert_eq!(id.as_str().parse::<BackupId>().unwrap(), id);
        let upper = id.as_str().to_uppercase();
        assert!(upper.parse::<BackupId>().is_err());
        let simple = id.as_str().replace('-', "");
        assert!(simple.parse::<BackupId>().is_err());
        assert!("daily".parse::<BackupId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<BackupId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<BackupId>("\"../x\"").is_err());
    }
}
