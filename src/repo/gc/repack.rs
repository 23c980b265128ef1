//! Repacking: the live blobs of sparse packs are copied, still sealed and unchanged (a
//! blob is bound to its chunk id, not to its pack), into new packs; once a new pack is
//! durable the index points at it and forgets the packs it replaced, and only then are
//! their objects deleted.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::retire;
use crate::backend::ObjectWriter;
use crate::format::blob::Domain;
use crate::format::pack::{encode_footer, encode_header, PackEntry};
use crate::id::{ChunkId, PackId};
use crate::index::PackRecord;
use crate::pipeline::packer::PackLayout;
use crate::pipeline::seal;
use crate::repo::objects::parse_pack;
use crate::repo::progress::Progress;
use crate::repo::{pack_key, RepoError, RepoInner};

#[derive(Default)]
pub(super) struct Written {
    pub packs: u64,
    pub bytes: u64,
    /// Old packs deleted once their live blobs were safe elsewhere.
    pub retired: Vec<PackId>,
}

/// A new pack being filled with blobs copied from old ones.
struct RepackTarget {
    id: PackId,
    writer: Box<dyn ObjectWriter>,
    layout: PackLayout,
    pending: BytesMut,
    /// Old packs whose live blobs all sit in this or earlier new packs.
    retired: Vec<PackId>,
}

pub(super) async fn repack(
    inner: &Arc<RepoInner>,
    packs: &[PackId],
    progress: &Progress,
) -> Result<Written, RepoError> {
    let mut written = Written::default();
    let mut target: Option<RepackTarget> = None;
    for &old in packs {
        progress.check()?;
        let bytes = inner.backend.get(&pack_key(&old), None).await?;
        let entries = parse_pack(inner, old, &bytes)?;
        let ids: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
        let current = inner.index.lookup_chunks(&ids)?;
        for (entry, location) in entries.iter().zip(current) {
            // Copy only blobs the index still places at this very spot.
            let here = location.is_some_and(|l| l.pack == old && l.offset == entry.offset);
            if !here {
                continue;
            }
            if target
                .as_ref()
                .is_some_and(|t| t.layout.is_full(entry.stored_len))
            {
                let full = target.take().expect("target checked above");
                close_target(inner, full, &mut written).await?;
            }
            if target.is_none() {
                target = Some(open_target(inner).await?);
            }
            let t = target.as_mut().expect("target opened above");
            let start = entry.offset as usize;
            t.layout
                .place(entry.id, entry.kind, entry.stored_len, entry.raw_len);
            t.pending
                .extend_from_slice(&bytes[start..start + entry.stored_len as usize]);
            if t.pending.len() >= 4 << 20 {
                t.writer.write(t.pending.split().freeze()).await?;
            }
        }
        match target.as_mut() {
            Some(t) => t.retired.push(old),
            None => {
                retire(inner, &[old]).await?;
                written.retired.push(old);
            }
        }
    }
    if let Some(last) = target.take() {
        close_target(inner, last, &mut written).await?;
    }
    Ok(written)
}

async fn open_target(inner: &RepoInner) -> Result<RepackTarget, RepoError> {
    let id = PackId::random();
    inner.coordinator.pack_started(id);
    let writer = inner.backend.create(&pack_key(&id)).await?;
    let mut pending = BytesMut::with_capacity(5 << 20);
    pending.extend_from_slice(&encode_header());
    Ok(RepackTarget {
        id,
        writer,
        layout: PackLayout::new(inner.config.pack_size),
        pending,
        retired: Vec::new(),
    })
}

/// Finishes a new pack, points the index at it, then deletes the packs it replaced.
async fn close_target(
    inner: &RepoInner,
    mut target: RepackTarget,
    written: &mut Written,
) -> Result<(), RepoError> {
    let trailer = seal::seal(
        &inner.keys,
        Domain::PackTrailer,
        target.id.as_bytes(),
        &target.layout.trailer_payload(),
        0,
    );
    target.pending.extend_from_slice(&trailer);
    target
        .pending
        .extend_from_slice(&encode_footer(trailer.len() as u32));
    let size = target.layout.len() + trailer.len() as u64 + 12;
    let tail: Bytes = target.pending.split().freeze();
    let id = target.id;
    let result = async {
        target.writer.write(tail).await?;
        target.writer.finish().await?;
        let record = PackRecord {
            size,
            blobs: target.layout.entries().len() as u32,
            created: chrono::Utc::now().timestamp(),
        };
        let entries: Vec<PackEntry> = target.layout.into_entries();
        inner
            .index
            .relocate(id, record, &entries, &target.retired)?;
        Ok::<(), RepoError>(())
    }
    .await;
    inner.coordinator.pack_ended(&id);
    result?;
    for old in &target.retired {
        inner.backend.delete(&pack_key(old)).await?;
    }
    written.packs += 1;
    written.bytes += size;
    written.retired.extend(target.retired);
    Ok(())
}
