//! A session that sends its series' previous stream again, recognised entry by entry, so
//! that the server need not read the stream back to know its digest.
//!
//! An assembly observes the stream it is given, in order, to record its whole-stream
//! digest. For an unchanged tree whose client took every file from its files cache, that
//! means reading, opening and hashing every byte on the server (1.6 GB for the kernel
//! tree) although the client sent only the list. Yet a list of (chunk id, length) equal,
//! entry for entry, to the newest backup's is the same bytes: each chunk id is the keyed
//! BLAKE3 of its plaintext, checked when the chunk was stored. Its digest is therefore
//! that backup's, which the server computed from the bytes when it assembled that backup
//! and which every restore of it checks. The new backup inherits the digest its restores
//! will check, and loses none of the end-to-end check.
//!
//! The same holds for what a stream's tar recognition makes of it: the catalog read from
//! the same bytes is the same catalog. A stream session that looks for a tar follows a
//! previous backup only when that backup's stream was recognised as a tar, and a whole
//! repeat takes its catalog (and its encoding) with its digests. A previous stream that
//! was not recognised is not followed, since its manifest cannot say whether it was
//! looked at.
//!
//! [`Repeat`] follows the previous backup's content list as appends arrive: one leaf read
//! per 8,192 entries. At the first batch that departs from it, or at a finish that stops
//! short of it, the caller observes the bytes repeated so far from the previous backup's
//! own content and goes on as any assembly does.

use super::digest::{DigestRequest, StreamDigests};
use super::RepoError;
use crate::format::content::{ContentEntry, ContentRef};
use crate::format::manifest::{BackupKind, BackupManifest, CatalogRef, TarEncoding};
use crate::id::ChunkId;

/// What a stream that repeats the previous one whole takes from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inherited {
    pub digests: StreamDigests,
    /// The tar catalog and encoding, when the session looks for a tar.
    pub tar: Option<(CatalogRef, TarEncoding)>,
}

/// The previous backup's stream, followed while the appended entries repeat it.
pub(crate) struct Repeat {
    content: ContentRef,
    digests: StreamDigests,
    tar: Option<(CatalogRef, TarEncoding)>,
    /// The next leaf of `content` to load once `entries` is used up.
    next_leaf: usize,
    entries: std::vec::IntoIter<ContentEntry>,
    /// Bytes of the stream repeated so far.
    repeated: u64,
}

impl Repeat {
    /// Follows `previous` when it records every digest the new backup must record, has
    /// bytes to repeat and, for a session that looks for a tar (`observes_tar`), was a
    /// stream recognised as one.
    pub(crate) fn new(
        previous: &BackupManifest,
        request: DigestRequest,
        observes_tar: bool,
    ) -> Option<Repeat> {
        let blake3 = Some(previous.blake3.clone()?);
        let sha256 = match request.sha256 {
            true => Some(previous.sha256.clone()?),
            false => None,
        };
        let tar = match observes_tar {
            true if previous.kind == BackupKind::Stream => {
                Some((previous.catalog.clone()?, previous.tar?))
            }
            true => return None,
            false => None,
        };
        (previous.content.size > 0).then(|| Repeat {
            content: previous.content.clone(),
            digests: StreamDigests { blake3, sha256 },
            tar,
            next_leaf: 0,
            entries: Vec::new().into_iter(),
            repeated: 0,
        })
    }

    /// The leaves to load while following: the caller keeps them from gc for the
    /// session's life.
    pub(crate) fn leaves(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.content.leaves.iter().map(|leaf| leaf.id)
    }

    /// The leaves of the catalog a whole repeat would take (its text and its index), whose
    /// chunks the caller keeps from gc for the session's life with the leaves themselves:
    /// no append names them.
    pub(crate) fn catalog_leaves(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.tar.iter().flat_map(|(catalog, _)| {
            let index = catalog.index.iter().flat_map(|i| &i.content.leaves);
            catalog.content.leaves.iter().chain(index).map(|l| l.id)
        })
    }

    /// Whether `batch` continues the previous stream, entry for entry. A `false` leaves
    /// [`Repeat::repeated`] at the bytes before the batch; the follower is of no further
    /// use then.
    pub(crate) fn follow(
        &mut self,
        batch: &[ContentEntry],
        mut load_leaf: impl FnMut(ChunkId) -> Result<Vec<ContentEntry>, RepoError>,
    ) -> Result<bool, RepoError> {
        let before = self.repeated;
        for appended in batch {
            let previous = match self.entries.next() {
                Some(entry) => Some(entry),
                None => match self.content.leaves.get(self.next_leaf) {
                    Some(leaf) => {
                        self.next_leaf += 1;
                        self.entries = load_leaf(leaf.id)?.into_iter();
                        self.entries.next()
                    }
                    None => None,
                },
            };
            // Entry by entry, not by bytes: the lengths of a departing batch must not
            // be able to add up to those of a repeating one.
            if previous != Some(*appended) {
                self.repeated = before;
                return Ok(false);
            }
            self.repeated += u64::from(appended.len);
        }
        Ok(true)
    }

    /// Bytes of the stream repeated so far.
    pub(crate) fn repeated(&self) -> u64 {
        self.repeated
    }

    /// The previous backup's content, to observe the repeated bytes from.
    pub(crate) fn content(&self) -> &ContentRef {
        &self.content
    }

    /// What the stream takes from the previous backup when it repeated all of it and no
    /// more.
    pub(crate) fn inherited_if_whole(&self) -> Option<Inherited> {
        (self.repeated == self.content.size
            && self.entries.len() == 0
            && self.next_leaf == self.content.leaves.len())
        .then(|| Inherited {
            digests: self.digests.clone(),
            tar: self.tar.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::content::LeafRef;
    use crate::format::manifest::{BackupKind, MANIFEST_FORMAT, MANIFEST_VERSION};
    use crate::id::BackupId;

    fn entry(n: u8, len: u32) -> ContentEntry {
        ContentEntry {
            id: ChunkId([n; 32]),
            len,
        }
    }

    /// A previous backup of two leaves: entries 1..=3, then 4..=5, 10 bytes each.
    fn previous(sha256: bool) -> (BackupManifest, Vec<Vec<ContentEntry>>) {
        let leaves = vec![
            vec![entry(1, 10), entry(2, 10), entry(3, 10)],
            vec![entry(4, 10), entry(5, 10)],
        ];
        let leaf_refs = leaves
            .iter()
            .enumerate()
            .map(|(n, entries)| LeafRef {
                id: ChunkId([100 + n as u8; 32]),
                size: 10 * entries.len() as u64,
                chunks: entries.len() as u32,
            })
            .collect();
        let manifest = BackupManifest {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            id: BackupId::random(),
            series: "s".into(),
            kind: BackupKind::Tree,
            created_at: "2026-01-01T00:00:00Z".into(),
            source: "t".into(),
            size: 50,
            blake3: Some("b".repeat(64)),
            sha256: sha256.then(|| "a".repeat(64)),
            chunks: 5,
            new_chunks: 5,
            new_metadata_blobs: 2,
            stored_bytes: 0,
            content: ContentRef {
                size: 50,
                chunks: 5,
                leaves: leaf_refs,
            },
            catalog: None,
            tar: None,
        };
        (manifest, leaves)
    }

    fn loader(
        leaves: &[Vec<ContentEntry>],
    ) -> impl FnMut(ChunkId) -> Result<Vec<ContentEntry>, RepoError> + '_ {
        |id| Ok(leaves[usize::from(id.0[0] - 100)].clone())
    }

    #[test]
    fn the_same_entries_in_other_batches_inherit_the_digests() {
        let (manifest, leaves) = previous(false);
        let mut repeat = Repeat::new(&manifest, DigestRequest::default(), false).expect("follows");
        assert!(repeat
            .follow(&[entry(1, 10), entry(2, 10)], loader(&leaves))
            .expect("ok"));
        assert_eq!(repeat.inherited_if_whole(), None, "not all of it yet");
        let rest = [entry(3, 10), entry(4, 10), entry(5, 10)];
        assert!(repeat.follow(&rest, loader(&leaves)).expect("ok"));
        assert_eq!(repeat.repeated(), 50);
        let inherited = repeat.inherited_if_whole().expect("whole");
        assert_eq!(inherited.digests.blake3, manifest.blake3);
        assert_eq!(inherited.digests.sha256, None);
        assert_eq!(inherited.tar, None);
    }

    #[test]
    fn a_departing_batch_leaves_the_bytes_before_it() {
        let (manifest, leaves) = previous(false);
        let mut repeat = Repeat::new(&manifest, DigestRequest::default(), false).expect("follows");
        assert!(repeat.follow(&[entry(1, 10)], loader(&leaves)).expect("ok"));
        // Same id, another length; then another id; then one entry too many.
        for departing in [
            vec![entry(2, 10), entry(3, 11)],
            vec![entry(2, 10), entry(9, 10)],
            // Lengths that add up to the repeated ones: still a departure.
            vec![entry(2, 10), entry(9, 0)],
        ] {
            let mut copy =
                Repeat::new(&manifest, DigestRequest::default(), false).expect("follows");
            assert!(copy.follow(&[entry(1, 10)], loader(&leaves)).expect("ok"));
            assert!(!copy.follow(&departing, loader(&leaves)).expect("ok"));
            assert_eq!(copy.repeated(), 10);
        }
        let all = [entry(2, 10), entry(3, 10), entry(4, 10), entry(5, 10)];
        assert!(repeat.follow(&all, loader(&leaves)).expect("ok"));
        assert!(!repeat.follow(&[entry(6, 10)], loader(&leaves)).expect("ok"));
        assert_eq!(repeat.repeated(), 50);
    }

    #[test]
    fn a_shorter_stream_or_a_missing_digest_inherits_nothing() {
        let (manifest, leaves) = previous(false);
        let mut repeat = Repeat::new(&manifest, DigestRequest::default(), false).expect("follows");
        assert!(repeat
            .follow(&[entry(1, 10), entry(2, 10), entry(3, 10)], loader(&leaves))
            .expect("ok"));
        assert_eq!(repeat.inherited_if_whole(), None);
        let sha = DigestRequest { sha256: true };
        assert!(
            Repeat::new(&manifest, sha, false).is_none(),
            "no SHA-256 to inherit"
        );
        let (with_sha, _) = previous(true);
        let inherited = Repeat::new(&with_sha, sha, false).expect("follows");
        assert_eq!(inherited.digests.sha256, with_sha.sha256);
        let mut empty = manifest.clone();
        empty.content = ContentRef {
            size: 0,
            chunks: 0,
            leaves: Vec::new(),
        };
        assert!(Repeat::new(&empty, DigestRequest::default(), false).is_none());
        let mut no_blake3 = with_sha;
        no_blake3.blake3 = None;
        assert!(Repeat::new(&no_blake3, DigestRequest::default(), false).is_none());
    }

    #[test]
    fn a_session_looking_for_a_tar_follows_only_a_recognised_tar_and_takes_its_catalog() {
        let (tree, leaves) = previous(false);
        let request = DigestRequest::default();
        assert!(Repeat::new(&tree, request, true).is_none(), "a tree");
        let mut stream = tree.clone();
        stream.kind = BackupKind::Stream;
        assert!(
            Repeat::new(&stream, request, true).is_none(),
            "a stream without a catalog may never have been looked at"
        );
        let one_leaf = |n: u8| ContentRef {
            size: 10,
            chunks: 1,
            leaves: vec![LeafRef {
                id: ChunkId([n; 32]),
                size: 10,
                chunks: 1,
            }],
        };
        let catalog = CatalogRef {
            entries: 3,
            content: one_leaf(200),
            index: Some(crate::format::manifest::CatalogIndexRef {
                marks: 1,
                content: one_leaf(201),
            }),
        };
        stream.catalog = Some(catalog.clone());
        assert!(
            Repeat::new(&stream, request, true).is_none(),
            "a catalog without a tar encoding"
        );
        stream.tar = Some(TarEncoding::Gzip);
        let mut repeat = Repeat::new(&stream, request, true).expect("a recognised tar");
        let kept: Vec<ChunkId> = repeat.catalog_leaves().collect();
        assert_eq!(kept, [ChunkId([200; 32]), ChunkId([201; 32])]);
        let all: Vec<ContentEntry> = (1..=5).map(|n| entry(n, 10)).collect();
        assert!(repeat.follow(&all, loader(&leaves)).expect("ok"));
        let inherited = repeat.inherited_if_whole().expect("whole");
        assert_eq!(inherited.tar, Some((catalog, TarEncoding::Gzip)));
        // Without looking for a tar, the same backup is followed for its digests alone.
        let plain = Repeat::new(&stream, request, false).expect("follows");
        assert_eq!(plain.catalog_leaves().count(), 0);
    }
}
