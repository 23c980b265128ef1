//! Whole-stream digests: computed while a stream is ingested, verified when it is restored.
//!
//! Every backup records the unkeyed BLAKE3 of its stream. It is the end-to-end check of a
//! restore, independent of the chunk ids and content lists it is assembled from, and it
//! costs a quarter of a SHA-256 on one core: a stream digest runs on a single thread
//! beside a pipeline that uses every core, so its speed bounds re-ingest and restore.
//! A SHA-256 is also computed when the writer asks for one (to compare with `sha256sum`,
//! or a protocol that reports it).

use sha2::{Digest, Sha256};

use super::RepoError;
use crate::format::manifest::{BackupManifest, DigestAlgorithm};

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
        self.blake3.update(data);
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
pub struct StreamVerifier {
    algorithm: DigestAlgorithm,
    blake3: blake3::Hasher,
    sha256: Sha256,
}

impl StreamVerifier {
    pub fn for_manifest(manifest: &BackupManifest) -> StreamVerifier {
        StreamVerifier {
            algorithm: manifest.verified_digest().0,
            blake3: blake3::Hasher::new(),
            sha256: Sha256::new(),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self.algorithm {
            DigestAlgorithm::Blake3 => {
                self.blake3.update(data);
            }
            DigestAlgorithm::Sha256 => self.sha256.update(data),
        }
    }

    /// Compares what was hashed with what `manifest` recorded.
    pub fn verify(self, manifest: &BackupManifest) -> Result<(), RepoError> {
        let (algorithm, expected) = manifest.verified_digest();
        let actual = match algorithm {
            DigestAlgorithm::Blake3 => self.blake3.finalize().to_hex().to_string(),
            DigestAlgorithm::Sha256 => hex::encode(self.sha256.finalize()),
        };
        if actual == expected {
            Ok(())
        } else {
            Err(RepoError::ChecksumMismatch {
                backup: manifest.id.clone(),
                algorithm: algorithm.name(),
                expected: expected.to_string(),
                actual,
            })
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
            format: crate::format::manifest::MANIFEST_FORMAT.into(),
            version: crate::format::manifest::MANIFEST_VERSION,
            id: "6f1c2a9e-4b7d-4c1e-9a3f-2d8b5e7c9a10".into(),
            series: "s".into(),
            kind: crate::format::manifest::BackupKind::Stream,
            created_at: String::new(),
            source: "-".into(),
            size: 3,
            blake3,
            sha256,
            chunks: 0,
            new_chunks: 0,
            stored_bytes: 0,
            content: Default::default(),
            catalog: None,
            tar: None,
        }
    }

    fn verify(manifest: &BackupManifest, bytes: &[u8]) -> Result<(), RepoError> {
        let mut verifier = StreamVerifier::for_manifest(manifest);
        verifier.update(bytes);
        verifier.verify(manifest)
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
