//! The repository config object (`config`): plaintext JSON naming the format version, the
//! repository id and the parameters every writer must share (chunker sizes, compression
//! level, pack size). It is plaintext so tools can identify a repository without its
//! passphrase; it holds no secret.

use serde::{Deserialize, Serialize};

use crate::id::RepositoryId;

pub const CONFIG_FORMAT: &str = "stowage-repository";
pub const CONFIG_VERSION: u32 = 1;

/// FastCDC 2020 bounds accepted by the chunker.
pub const CHUNK_MIN_BOUNDS: (u32, u32) = (64, 1 << 20);
pub const CHUNK_AVG_BOUNDS: (u32, u32) = (256, 4 << 20);
pub const CHUNK_MAX_BOUNDS: (u32, u32) = (1024, 16 << 20);
pub const PACK_SIZE_BOUNDS: (u32, u32) = (1 << 20, 1 << 30);
pub const COMPRESSION_LEVEL_BOUNDS: (i32, i32) = (0, 19);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min_size: 512 * 1024,
            avg_size: 1024 * 1024,
            max_size: 8 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    pub format: String,
    pub version: u32,
    pub id: RepositoryId,
    pub chunker: ChunkerParams,
    /// zstd level; 0 stores every blob uncompressed.
    pub compression_level: i32,
    /// Target pack size in bytes; a pack is closed once it reaches it.
    pub pack_size: u32,
}

/// A config object is unreadable or holds values outside the supported bounds.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("repository config is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("object is not a stowage repository config (format {format:?})")]
    NotAConfig { format: String },
    #[error(
        "repository format version {version} is not supported (this build reads {CONFIG_VERSION})"
    )]
    UnsupportedVersion { version: u32 },
    #[error("repository setting {name} = {value} is outside {min}..={max}")]
    OutOfBounds {
        name: &'static str,
        value: i64,
        min: i64,
        max: i64,
    },
    #[error("chunk sizes must satisfy min < avg < max (got {min} / {avg} / {max})")]
    ChunkOrder { min: u32, avg: u32, max: u32 },
}

impl RepoConfig {
    /// A new config with a random repository id.
    pub fn new(chunker: ChunkerParams, compression_level: i32, pack_size: u32) -> RepoConfig {
        RepoConfig {
            format: CONFIG_FORMAT.to_string(),
            version: CONFIG_VERSION,
            id: RepositoryId::random(),
            chunker,
            compression_level,
            pack_size,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("config serializes");
        out.push(b'\n');
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<RepoConfig, ConfigError> {
        let config: RepoConfig = serde_json::from_slice(bytes)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value against the bounds this build supports.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.format != CONFIG_FORMAT {
            return Err(ConfigError::NotAConfig {
                format: self.format.chars().take(64).collect(),
            });
        }
        if self.version != CONFIG_VERSION {
            return Err(ConfigError::UnsupportedVersion {
                version: self.version,
            });
        }
        let c = &self.chunker;
        check_bounds("chunker.min_size", c.min_size.into(), CHUNK_MIN_BOUNDS)?;
        check_bounds("chunker.avg_size", c.avg_size.into(), CHUNK_AVG_BOUNDS)?;
        check_bounds("chunker.max_size", c.max_size.into(), CHUNK_MAX_BOUNDS)?;
        if !(c.min_size < c.avg_size && c.avg_size < c.max_size) {
            return Err(ConfigError::ChunkOrder {
                min: c.min_size,
                avg: c.avg_size,
                max: c.max_size,
            });
        }
        check_bounds("pack_size", self.pack_size.into(), PACK_SIZE_BOUNDS)?;
        let (lo, hi) = COMPRESSION_LEVEL_BOUNDS;
        check_bounds("compression_level", self.compression_level.into(), (lo, hi))
    }
}

fn check_bounds<T: Into<i64>>(
    name: &'static str,
    value: i64,
    (min, max): (T, T),
) -> Result<(), ConfigError> {
    let (min, max) = (min.into(), max.into());
    if value < min || value > max {
        return Err(ConfigError::OutOfBounds {
            name,
            value,
            min,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_validation() {
        let config = RepoConfig::new(ChunkerParams::default(), 3, 32 << 20);
        assert_eq!(RepoConfig::decode(&config.encode()).unwrap(), config);

        let mut bad = config.clone();
        bad.chunker.min_size = 2 << 20;
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::OutOfBounds { .. })
        ));
        let mut bad = config.clone();
        bad.chunker.avg_size = bad.chunker.min_size;
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::ChunkOrder { .. })
        ));
        let mut bad = config.clone();
        bad.version = 99;
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::UnsupportedVersion { .. })
        ));
        assert!(RepoConfig::decode(b"{}").is_err());
        assert!(RepoConfig::decode(b"garbage").is_err());
    }
}
