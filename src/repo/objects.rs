//! Reading whole packs and manifests back from the backend: the parsing shared by
//! `check`, `repair` and anything else that must not trust the index.

use std::collections::BTreeMap;

use super::{RepoError, RepoInner, BACKUPS_PREFIX, PACKS_PREFIX};
use crate::format::blob::Domain;
use crate::format::manifest::BackupManifest;
use crate::format::pack::{
    check_header, decode_footer, decode_trailer, PackEntry, ENTRY_LEN, FOOTER_LEN, HEADER_LEN,
    MAX_TRAILER_ENTRIES,
};
use crate::id::{BackupId, PackId};
use crate::pipeline::seal;

/// Every pack in the backend, by id, with its size. Keys that do not name a pack are
/// ignored.
pub(crate) async fn list_packs(inner: &RepoInner) -> Result<BTreeMap<PackId, u64>, RepoError> {
    let objects = inner.backend.list(PACKS_PREFIX).await?;
    Ok(objects
        .into_iter()
        .filter_map(|object| {
            let name = object.key.rsplit('/').next()?;
            Some((name.parse::<PackId>().ok()?, object.size))
        })
        .collect())
}

/// The objects under `backups/`: manifests by their backup ids, and strays.
pub(crate) struct StoredManifests {
    pub ids: Vec<BackupId>,
    /// Keys whose names are no backup id. stowage stores a manifest only under its id
    /// (which its seal binds), so a stray holds no backup: `check` reports it, `gc` and
    /// `repair` pass it by.
    pub strays: Vec<String>,
}

/// Lists the manifest objects in the backend.
pub(crate) async fn list_manifests(inner: &RepoInner) -> Result<StoredManifests, RepoError> {
    let objects = inner.backend.list(BACKUPS_PREFIX).await?;
    let mut listed = StoredManifests {
        ids: Vec::new(),
        strays: Vec::new(),
    };
    for object in objects {
        match object
            .key
            .strip_prefix(BACKUPS_PREFIX)
            .map(str::parse::<BackupId>)
        {
            Some(Ok(id)) => listed.ids.push(id),
            _ => listed.strays.push(object.key),
        }
    }
    Ok(listed)
}

/// Opens and decodes a pack's trailer from the pack's last bytes.
pub(crate) fn read_trailer(
    inner: &RepoInner,
    pack: PackId,
    bytes_at_end: &[u8],
    pack_len: u64,
    tail_offset: u64,
) -> Result<Vec<PackEntry>, RepoError> {
    let corrupt = |reason: String| RepoError::CorruptPack { pack, reason };
    if bytes_at_end.len() < FOOTER_LEN {
        return Err(corrupt("too short for a footer".into()));
    }
    let footer = &bytes_at_end[bytes_at_end.len() - FOOTER_LEN..];
    let trailer_range = decode_footer(footer, pack_len).map_err(|e| corrupt(e.to_string()))?;
    let from = trailer_range
        .start
        .checked_sub(tail_offset)
        .ok_or_else(|| corrupt("trailer starts before the bytes read".into()))?
        as usize;
    let to = (trailer_range.end - tail_offset) as usize;
    let max = 4 + MAX_TRAILER_ENTRIES as usize * ENTRY_LEN;
    let payload = seal::open(
        &inner.keys,
        Domain::PackTrailer,
        pack.as_bytes(),
        &bytes_at_end[from..to],
        None,
        max,
    )
    .map_err(|e| corrupt(format!("trailer: {e}")))?;
    decode_trailer(&payload, trailer_range.start).map_err(|e| corrupt(e.to_string()))
}

/// Reads just the trailer of a pack of `pack_len` bytes (two ranged reads).
pub(crate) async fn fetch_trailer(
    inner: &RepoInner,
    pack: PackId,
    pack_len: u64,
) -> Result<Vec<PackEntry>, RepoError> {
    let key = super::pack_key(&pack);
    let corrupt = |reason: String| RepoError::CorruptPack { pack, reason };
    if pack_len < (HEADER_LEN + FOOTER_LEN) as u64 {
        return Err(corrupt(format!("{pack_len} bytes is too short for a pack")));
    }
    // The header carries the pack version: a pack of a version this build does not know
    // is refused rather than misread.
    let header = inner.backend.get(&key, Some(0..HEADER_LEN as u64)).await?;
    check_header(&header).map_err(|e| corrupt(e.to_string()))?;
    let footer = inner
        .backend
        .get(&key, Some(pack_len - FOOTER_LEN as u64..pack_len))
        .await?;
    let range = decode_footer(&footer, pack_len).map_err(|e| corrupt(e.to_string()))?;
    let tail = inner.backend.get(&key, Some(range.start..pack_len)).await?;
    read_trailer(inner, pack, &tail, pack_len, range.start)
}

/// Checks a whole pack's header and returns its trailer entries.
pub(crate) fn parse_pack(
    inner: &RepoInner,
    pack: PackId,
    bytes: &[u8],
) -> Result<Vec<PackEntry>, RepoError> {
    check_header(bytes).map_err(|e| RepoError::CorruptPack {
        pack,
        reason: e.to_string(),
    })?;
    read_trailer(inner, pack, bytes, bytes.len() as u64, 0)
}

/// A manifest sealed for storage under its backup id (the inverse of `fetch_manifest`).
pub(crate) fn seal_manifest(inner: &RepoInner, manifest: &BackupManifest) -> bytes::Bytes {
    bytes::Bytes::from(seal::seal(
        &inner.keys,
        Domain::Manifest,
        manifest.id.as_str().as_bytes(),
        &manifest.encode(),
        3,
    ))
}

/// Reads, opens and decodes the manifest of backup `id` from the backend.
pub(crate) async fn fetch_manifest(
    inner: &RepoInner,
    id: &BackupId,
) -> Result<BackupManifest, RepoError> {
    let sealed = inner.backend.get(&super::manifest_key(id), None).await?;
    let corrupt = |reason: String| RepoError::CorruptManifest {
        backup: id.to_string(),
        reason,
    };
    let plain = seal::open(
        &inner.keys,
        Domain::Manifest,
        id.as_str().as_bytes(),
        &sealed,
        None,
        crate::format::manifest::MAX_MANIFEST_BYTES,
    )
    .map_err(|e| corrupt(e.to_string()))?;
    let manifest = BackupManifest::decode(&plain).map_err(|source| RepoError::Manifest {
        backup: id.to_string(),
        source,
    })?;
    if manifest.id != *id {
        return Err(corrupt(format!("manifest names backup {}", manifest.id)));
    }
    Ok(manifest)
}
