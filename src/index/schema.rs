//! Every redb table of the index, its key and value encodings, and the schema version.
//! Changing an encoding means bumping [`SCHEMA_VERSION`]; an index of another version is
//! refused and rebuilt with `stowage repair index`.
//!
//! * `meta`: `&str` → `u64` (`schema_version`)
//! * `chunks`: chunk id → 45 bytes: pack id (32) | kind u8 | offset u32 LE |
//!   stored length u32 LE | raw length u32 LE
//! * `packs`: pack id → 20 bytes: size u64 LE | blob count u32 LE | created i64 LE
//! * `backups`: backup id text → manifest JSON (`format::manifest`)
//! * `recycled`: backup id text → RFC 3339 time it was recycled
//! * `series`: series name → series record JSON (`format::series`)
//! * `repository`: `"id"` → the 32-byte id of the repository this index describes
//! * `sync`: `"generation"` → the repository generation token (16 bytes) this index was
//!   last reconciled with (`repo::generation`); absent until the first reconciliation
//! * `totals`, `series_totals`: sums of the rows above, kept in the same transactions
//!   (`totals`); version 2 added them, and a version-1 index gets them on open
//! * `backup_times`, `series_backups`: the backups in time order, in all and per series
//!   (`timeline`); version 3 added them, and an older index gets them on open
//! * version 4 added the backups' stream and stored bytes to `totals` and
//!   `series_totals`; an older index has its totals counted again on open

use redb::TableDefinition;

use super::{ChunkLocation, IndexError, PackRecord};
use crate::format::pack::{BlobKind, PackEntry};
use crate::id::{ChunkId, PackId};

pub const SCHEMA_VERSION: u64 = 4;
pub const SCHEMA_VERSION_KEY: &str = "schema_version";

pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub const CHUNKS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("chunks");
pub const PACKS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("packs");
pub const BACKUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("backups");
pub const RECYCLED: TableDefinition<&str, &str> = TableDefinition::new("recycled");
pub const SERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("series");
/// One row, `"id"` → the repository id this index belongs to.
pub const REPOSITORY: TableDefinition<&str, [u8; 32]> = TableDefinition::new("repository");

/// `"generation"` → the backend generation this index matches.
pub const SYNC: TableDefinition<&str, &[u8]> = TableDefinition::new("sync");
pub const GENERATION_KEY: &str = "generation";

const LOCATION_LEN: usize = 45;
const PACK_RECORD_LEN: usize = 20;

pub fn encode_location(pack: &PackId, entry: &PackEntry) -> [u8; LOCATION_LEN] {
    let mut out = [0u8; LOCATION_LEN];
    out[..32].copy_from_slice(pack.as_bytes());
    out[32] = entry.kind as u8;
    out[33..37].copy_from_slice(&entry.offset.to_le_bytes());
    out[37..41].copy_from_slice(&entry.stored_len.to_le_bytes());
    out[41..45].copy_from_slice(&entry.raw_len.to_le_bytes());
    out
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

pub fn decode_location(id: &ChunkId, bytes: &[u8]) -> Result<ChunkLocation, IndexError> {
    let corrupt = || IndexError::Corrupt {
        what: format!("chunk {id}"),
    };
    if bytes.len() != LOCATION_LEN {
        return Err(corrupt());
    }
    Ok(ChunkLocation {
        pack: PackId::from_slice(&bytes[..32]).ok_or_else(corrupt)?,
        kind: BlobKind::from_byte(bytes[32]).ok_or_else(corrupt)?,
        offset: u32_at(bytes, 33),
        stored_len: u32_at(bytes, 37),
        raw_len: u32_at(bytes, 41),
    })
}

pub fn encode_pack(record: &PackRecord) -> [u8; PACK_RECORD_LEN] {
    let mut out = [0u8; PACK_RECORD_LEN];
    out[..8].copy_from_slice(&record.size.to_le_bytes());
    out[8..12].copy_from_slice(&record.blobs.to_le_bytes());
    out[12..].copy_from_slice(&record.created.to_le_bytes());
    out
}

pub fn decode_pack(id: &PackId, bytes: &[u8]) -> Result<PackRecord, IndexError> {
    let raw: [u8; PACK_RECORD_LEN] = bytes.try_into().map_err(|_| IndexError::Corrupt {
        what: format!("pack {id}"),
    })?;
    let mut size = [0u8; 8];
    size.copy_from_slice(&raw[..8]);
    let mut created = [0u8; 8];
    created.copy_from_slice(&raw[12..]);
    Ok(PackRecord {
        size: u64::from_le_bytes(size),
        blobs: u32_at(&raw, 8),
        created: i64::from_le_bytes(created),
    })
}
