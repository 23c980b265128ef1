//! Whole-stream digests: computed while a stream is ingested, verified when it is restored.
//!
//! Every backup records the unkeyed BLAKE3 of its stream. It is the end-to-end check of a
//! restore, independent of the chunk ids and content lists it is assembled from. A
//! digest of one stream is fed in order, but BLAKE3 is a tree: each large piece (a
//! segment of ingest, a chunk of restore) is split into subtrees hashed on the worker
//! pool ([`update_blake3`]), so the digest is not a one-core stage that caps the
//! pipeline as cores grow.
//! A SHA-256 is also computed when the writer asks for one (to compare with `sha256sum`,
//! or a protocol that reports it).

use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::RepoError;
use crate::format::manifest::{BackupManifest, DigestAlgorithm};

/// Pieces at least this long are hashed on the worker pool; below it, splitting costs
/// more than it saves.
const PARALLEL_DIGEST_MIN: usize = 128 << 10;

/// Feeds `data` to a BLAKE3 hasher, spreading a large piece over the worker pool.
pub fn update_blake3(hasher: &mut blake3::Hasher, data: &[u8]) {
    if data.len() >= PARALLEL_DIGEST_MIN {
        hasher.update_rayon(data);
    } else {
        hasher.update(data);
    }
}

/// Which digests an ingest computes besides BLAKE3.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DigestRequest {
    pub sha256: bool,
}

/// The digests of one stream, lowercase hex.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamDigests {
    pub blake3: Option<String>,
    pub sha256: Option<String>,
}

/// Hashes a stream with BLAKE3 and, when requested, SHA-256.
pub struct StreamHasher {
    blake3: blake3::Hasher,
    sha256: Option<Sha256>,
}

impl StreamHasher {
    pub fn new(request: DigestRequest) -> StreamHasher {
        StreamHasher {
            blake3: blake3::Hasher::new(),
            sha256: request.sha256.then(Sha256::new),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        update_blake3(&mut self.blake3, data);
        if let Some(sha) = self.sha256.as_mut() {
            sha.update(data);
        }
    }

    pub fn finish(self) -> StreamDigests {
        StreamDigests {
            blake3: Some(self.blake3.finalize().to_hex().to_string()),
            sha256: self.sha256.map(|sha| hex::encode(sha.finalize())),
        }
    }
}

/// Recomputes the one digest of a backup that a full restore checks.
pub(crate) enum StreamVerifier {
    Blake3(Box<blake3::Hasher>),
    Sha256(Sha256),
}

impl StreamVerifier {
    pub(crate) fn for_manifest(manifest: &BackupManifest) -> StreamVerifier {
        match manifest.verified_digest().0 {
            DigestAlgorithm::Blake3 => StreamVerifier::Blake3(Box::default()),
            DigestAlgorithm::Sha256 => StreamVerifier::Sha256(Sha256::new()),
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            StreamVerifier::Blake3(hasher) => update_blake3(hasher, data),
            StreamVerifier::Sha256(hasher) => hasher.update(data),
        }
    }

    /// Compares what was hashed with what `manifest` recorded.
    pub(crate) fn verify(self, manifest: &BackupManifest) -> Result<(), RepoError> {
        let (algorithm, expected) = manifest.verified_digest();
        let actual = match self {
            StreamVerifier::Blake3(hasher) => hasher.finalize().to_hex().to_string(),
            StreamVerifier::Sha256(hasher) => hex::encode(hasher.finalize()),
        };
        if actual == expected {
            Ok(())
        } else {
            Err(RepoError::ChecksumMismatch {
                backup: manifest.id.to_string(),
                algorithm: algorithm.name(),
                expected: expected.to_string(),
                actual,
            })
        }
    }
}

/// Pieces waiting for the verifying thread: a couple of chunks, so the writer runs ahead of
/// the hashing by a bounded amount of memory.
const VERIFY_QUEUE: usize = 2;

/// A [`StreamVerifier`] on its own thread, so a restore's writer and its digest run on two
/// cores instead of one after the other.
pub struct BackgroundVerifier {
    pieces: Option<SyncSender<Bytes>>,
    thread: Option<JoinHandle<StreamVerifier>>,
}

impl BackgroundVerifier {
    pub fn start(manifest: &BackupManifest) -> BackgroundVerifier {
        let mut verifier = StreamVerifier::for_manifest(manifest);
        let (pieces, received) = sync_channel::<Bytes>(VERIFY_QUEUE);
        let thread = std::thread::Builder::new()
            .name("stowage-verify".into())
            .spawn(move || {
                for piece in received {
                    verifier.update(&piece);
                }
                verifier
            })
            .expect("spawning the verifying thread");
        BackgroundVerifier {
            pieces: Some(pieces),
            thread: Some(thread),
        }
    }

    /// Hashes the next piece of the stream (a cheap reference count, not a copy).
    pub fn update(&mut self, piece: Bytes) {
        if let Some(pieces) = &self.pieces {
            // The thread only stops when the sender is dropped.
            let _ = pieces.send(piece);
        }
    }

    /// Waits for every piece to be hashed and compares the digest with `manifest`'s.
    pub fn verify(mut self, manifest: &BackupManifest) -> Result<(), RepoError> {
        self.pieces = None;
        let verifier = self
            .thread
            .take()
            .expect("joined once")
            .join()
            .map_err(|_| RepoError::Internal("the verifying thread panicked".into()))?;
        verifier.verify(manifest)
    }
}

impl Drop for BackgroundVerifier {
    fn drop(&mut self) {
        // An abandoned restore stops its thread before it returns.
        self.pieces = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_only_when_requested() {
        let mut plain = StreamHasher::new(DigestRequest::default());
        plain.update(b"abc");
        let digests = plain.finish();
        assert_eq!(
            digests.blake3.as_deref(),
            Some(blake3::hash(b"abc").to_hex().as_str())
        );
        assert_eq!(digests.sha256, None);

        let mut both = StreamHasher::new(DigestRequest { sha256: true });
        both.update(b"ab");
        both.update(b"c");
        let digests = both.finish();
        assert_eq!(
            digests.sha256.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }

    fn manifest_with(blake3: Option<String>, sha256: Option<String>) -> BackupManifest {
        BackupManifest {
            size: 3,
            blake3,
            sha256,
            ..BackupManifest::sample()
        }
    }

    fn verify(manifest: &BackupManifest, bytes: &[u8]) -> Result<(), RepoError> {
        let mut verifier = StreamVerifier::for_manifest(manifest);
        verifier.update(bytes);
        verifier.verify(manifest)
    }

    #[test]
    fn the_background_verifier_sees_every_piece_in_order() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let manifest = manifest_with(Some(blake3::hash(&data).to_hex().to_string()), None);
        let mut verifier = BackgroundVerifier::start(&manifest);
        for piece in data.chunks(7919) {
            verifier.update(Bytes::copy_from_slice(piece));
        }
        assert!(verifier.verify(&manifest).is_ok());
        let mut verifier = BackgroundVerifier::start(&manifest);
        verifier.update(Bytes::copy_from_slice(&data[1..]));
        assert!(matches!(
            verifier.verify(&manifest),
            Err(RepoError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn the_verifier_checks_blake3_else_sha256() {
        let mut hasher = StreamHasher::new(DigestRequest { sha256: true });
        hasher.update(b"abc");
        let digests = hasher.finish();
        let both = manifest_with(digests.blake3.clone(), digests.sha256.clone());
        assert!(verify(&both, b"abc").is_ok());
        match verify(&both, b"abd") {
            Err(RepoError::ChecksumMismatch { algorithm, .. }) => assert_eq!(algorithm, "blake3"),
            other => panic!("{other:?}"),
        }
        let sha_only = manifest_with(None, digests.sha256);
        assert!(verify(&sha_only, b"abc").is_ok());
        match verify(&sha_only, b"abd") {
            Err(RepoError::ChecksumMismatch { algorithm, .. }) => assert_eq!(algorithm, "sha256"),
            other => panic!("{other:?}"),
        }
    }
}
