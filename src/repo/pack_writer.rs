//! Streams sealed blobs into pack objects, closes each pack with its encrypted trailer,
//! and, once the backend says the pack is durable, commits its index entries and
//! resolves the tickets of its chunks — in that order, so the index never points at a
//! pack that is not durable.
//!
//! Runs on the ingest's packer thread (blocking code holding a runtime handle). At most
//! [`MAX_FINISHING_PACKS`] closed packs are being finished at once, which bounds memory
//! and lets pack IO overlap with the compute of the next blobs.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::inflight::TicketOwner;
use super::{pack_key, RepoError, RepoInner};
use crate::backend::ObjectWriter;
use crate::format::blob::Domain;
use crate::format::pack::{encode_footer, encode_header, BlobKind};
use crate::id::{ChunkId, PackId};
use crate::index::PackRecord;
use crate::pipeline::packer::PackLayout;
use crate::pipeline::seal;

/// Closed packs whose upload may still be completing.
const MAX_FINISHING_PACKS: usize = 2;
/// Blob bytes gathered before one backend write.
const WRITE_BATCH_BYTES: usize = 4 << 20;

/// One blob ready to be stored, with the obligation to resolve its ticket.
pub(crate) struct SealedBlob {
    pub id: ChunkId,
    pub kind: BlobKind,
    pub envelope: Vec<u8>,
    pub raw_len: u32,
    pub owner: TicketOwner,
}

struct OpenPack {
    id: PackId,
    writer: Box<dyn ObjectWriter>,
    layout: PackLayout,
    pending: BytesMut,
    owners: Vec<TicketOwner>,
}

/// What the pack writer stored.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PackTotals {
    pub packs: u64,
    pub bytes: u64,
}

pub(crate) struct PackWriter {
    inner: Arc<RepoInner>,
    handle: Handle,
    open: Option<OpenPack>,
    finishing: VecDeque<JoinHandle<Result<u64, RepoError>>>,
    totals: PackTotals,
}

impl PackWriter {
    pub fn new(inner: Arc<RepoInner>, handle: Handle) -> PackWriter {
        PackWriter {
            inner,
            handle,
            open: None,
            finishing: VecDeque::new(),
            totals: PackTotals::default(),
        }
    }

    /// Appends one blob to the open pack, opening or closing packs as needed.
    pub fn add(&mut self, blob: SealedBlob) -> Result<(), RepoError> {
        let len = blob.envelope.len() as u32;
        if self.open.as_ref().is_some_and(|p| p.layout.is_full(len)) {
            self.close_open_pack()?;
        }
        if self.open.is_none() {
            self.open = Some(self.start_pack()?);
        }
        let pack = self.open.as_mut().expect("a pack was just opened");
        pack.layout.place(blob.id, blob.kind, len, blob.raw_len);
        pack.pending.extend_from_slice(&blob.envelope);
        pack.owners.push(blob.owner);
        if pack.pending.len() >= WRITE_BATCH_BYTES {
            let data = pack.pending.split().freeze();
            self.handle.block_on(pack.writer.write(data))?;
        }
        Ok(())
    }

    /// Closes the open pack and waits until every pack is durable and indexed.
    pub fn finish(mut self) -> Result<PackTotals, RepoError> {
        if self.open.is_some() {
            self.close_open_pack()?;
        }
        while !self.finishing.is_empty() {
            self.wait_oldest()?;
        }
        Ok(self.totals)
    }

    fn start_pack(&self) -> Result<OpenPack, RepoError> {
        let id = PackId::random();
        self.inner.coordinator.pack_started(id);
        let writer = self
            .handle
            .block_on(self.inner.backend.create(&pack_key(&id)))?;
        let mut pending = BytesMut::with_capacity(WRITE_BATCH_BYTES + (1 << 20));
        pending.extend_from_slice(&encode_header());
        Ok(OpenPack {
            id,
            writer,
            layout: PackLayout::new(self.inner.config.pack_size),
            pending,
            owners: Vec::new(),
        })
    }

    fn close_open_pack(&mut self) -> Result<(), RepoError> {
        let Some(mut pack) = self.open.take() else {
            return Ok(());
        };
        let trailer = seal::seal(
            &self.inner.keys,
            Domain::PackTrailer,
            pack.id.as_bytes(),
            &pack.layout.trailer_payload(),
            0,
        );
        pack.pending.extend_from_slice(&trailer);
        pack.pending
            .extend_from_slice(&encode_footer(trailer.len() as u32));
        let size = pack.layout.len() + trailer.len() as u64 + 12;
        let tail: Bytes = pack.pending.split().freeze();
        self.handle.block_on(pack.writer.write(tail))?;
        self.totals.packs += 1;
        self.totals.bytes += size;
        let task = self
            .handle
            .spawn(finish_pack(self.inner.clone(), pack, size));
        self.finishing.push_back(task);
        while self.finishing.len() > MAX_FINISHING_PACKS {
            self.wait_oldest()?;
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<(), RepoError> {
        if let Some(task) = self.finishing.pop_front() {
            self.handle
                .block_on(task)
                .map_err(|e| RepoError::Internal(format!("pack upload task failed: {e}")))??;
        }
        Ok(())
    }
}

impl Drop for PackWriter {
    fn drop(&mut self) {
        // An open pack abandoned on error: its writer is dropped unfinished (nothing
        // becomes visible) and it is no longer being written.
        if let Some(pack) = self.open.take() {
            self.inner.coordinator.pack_ended(&pack.id);
        }
        // Packs already closed finish (or fail) before the ingest reports its outcome, so
        // nothing of a failed ingest keeps running behind its caller's back. This runs
        // on the packer thread, outside the runtime, where blocking is allowed.
        for task in self.finishing.drain(..) {
            let _ = self.handle.block_on(task);
        }
    }
}

/// Makes a closed pack durable, then indexes it, then resolves its chunks' tickets.
async fn finish_pack(inner: Arc<RepoInner>, pack: OpenPack, size: u64) -> Result<u64, RepoError> {
    let id = pack.id;
    let result = commit_pack(inner.clone(), pack, size).await;
    inner.coordinator.pack_ended(&id);
    result
}

async fn commit_pack(inner: Arc<RepoInner>, pack: OpenPack, size: u64) -> Result<u64, RepoError> {
    pack.writer.finish().await?;
    let record = PackRecord {
        size,
        blobs: pack.layout.entries().len() as u32,
        created: chrono::Utc::now().timestamp(),
    };
    let entries = pack.layout.into_entries();
    let (id, owners) = (pack.id, pack.owners);
    tokio::task::spawn_blocking(move || {
        inner.index.commit_pack(id, record, &entries)?;
        owners.into_iter().for_each(TicketOwner::resolve_durable);
        Ok(size)
    })
    .await
    .map_err(|e| RepoError::Internal(format!("index commit task failed: {e}")))?
}
