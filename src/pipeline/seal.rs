//! Sealing and opening blobs: zstd compression (skipped when it does not pay) and
//! XChaCha20-Poly1305 under the repository's blob key, in the envelope of
//! `format::blob`.
//!
//! zstd contexts are kept per thread and reused, because creating one costs more than
//! compressing a small chunk; so is the buffer zstd compresses into, so that sealing
//! neither zero-fills a worst-case buffer per chunk nor shrinks one afterwards: the
//! envelope is allocated once at its exact size.

use std::cell::RefCell;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{Tag, XNonce};
use rand::RngCore;

use crate::format::blob::{
    associated_data, parse_header, write_header, Compression, Domain, EnvelopeError, HEADER_LEN,
    TAG_LEN,
};
use crate::pipeline::keys::Keys;

/// Compression must save at least this fraction (1/32) of a chunk to be kept.
const MIN_SAVING_SHIFT: u32 = 5;

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
    static COMPRESSED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Opening a blob failed. Never yields wrong bytes: any alteration is detected.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("blob failed authentication (altered, truncated, or sealed under another name)")]
    Authentication,
    #[error("blob payload does not decompress: {0}")]
    Decompress(std::io::Error),
    #[error("blob holds {actual} bytes, expected {expected}")]
    LengthMismatch { expected: usize, actual: usize },
}

/// Compresses (at `level`, 0 = never) and seals `plaintext` under `name` in `domain`.
pub fn seal(keys: &Keys, domain: Domain, name: &[u8], plaintext: &[u8], level: i32) -> Vec<u8> {
    COMPRESSED.with(|cell| {
        let mut compressed = cell.borrow_mut();
        match compress(plaintext, level, &mut compressed) {
            true => seal_payload(keys, domain, name, Compression::Zstd, &compressed),
            false => seal_payload(keys, domain, name, Compression::None, plaintext),
        }
    })
}

/// Seals a payload already in its stored form: the plaintext (`Compression::None`) or
/// zstd frames of it that the caller has checked decompress to the plaintext (a chunk a
/// client compressed itself, see `repo::assembly`).
pub fn seal_payload(
    keys: &Keys,
    domain: Domain,
    name: &[u8],
    compression: Compression,
    payload: &[u8],
) -> Vec<u8> {
    let mut envelope = Vec::with_capacity(HEADER_LEN + payload.len() + TAG_LEN);
    envelope.extend_from_slice(&[0u8; HEADER_LEN]);
    envelope.extend_from_slice(payload);
    let mut nonce = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut nonce);
    let header: &mut [u8; HEADER_LEN] = (&mut envelope[..HEADER_LEN])
        .try_into()
        .expect("header slice has header length");
    write_header(header, compression, &nonce);
    let aad = associated_data(domain, name, compression);
    let tag = keys
        .cipher
        .encrypt_in_place_detached(
            XNonce::from_slice(&nonce),
            &aad,
            &mut envelope[HEADER_LEN..],
        )
        .expect("XChaCha20-Poly1305 seals any length this code produces");
    envelope.extend_from_slice(&tag);
    envelope
}

/// Compresses `plaintext` at `level` (a client's side of `seal`): `None` when
/// compression is off or does not pay and the plaintext should be sent as it is.
pub fn compress_chunk(plaintext: &[u8], level: i32) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    compress(plaintext, level, &mut out).then_some(out)
}

/// Decompresses zstd frames that must hold exactly `expected_len` bytes.
pub fn decompress_exact(payload: &[u8], expected_len: usize) -> Result<Vec<u8>, OpenError> {
    let plaintext = decompress(payload, expected_len)?;
    if plaintext.len() == expected_len {
        Ok(plaintext)
    } else {
        Err(OpenError::LengthMismatch {
            expected: expected_len,
            actual: plaintext.len(),
        })
    }
}

/// Compresses `plaintext` into `out` (replacing its contents); false when compression
/// is off, fails, or does not pay, and the plaintext is to be stored as it is.
fn compress(plaintext: &[u8], level: i32, out: &mut Vec<u8>) -> bool {
    if level <= 0 || plaintext.len() < 64 {
        return false;
    }
    out.clear();
    // zstd writes into the spare capacity: reserving does not touch the memory.
    out.reserve(zstd::zstd_safe::compress_bound(plaintext.len()));
    let written = COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().map(|(l, _)| *l) != Some(level) {
            *slot = zstd::bulk::Compressor::new(level).ok().map(|c| (level, c));
        }
        let (_, compressor) = slot.as_mut()?;
        compressor.compress_to_buffer(plaintext, out).ok()
    });
    let limit = plaintext.len() - (plaintext.len() >> MIN_SAVING_SHIFT);
    matches!(written, Some(w) if w < limit && w == out.len())
}

/// Opens an envelope sealed under `name` in `domain`, returning the plaintext, which
/// must be exactly `expected_len` bytes when given.
pub fn open(
    keys: &Keys,
    domain: Domain,
    name: &[u8],
    envelope: &[u8],
    expected_len: Option<usize>,
    max_len: usize,
) -> Result<Vec<u8>, OpenError> {
    let header = parse_header(envelope)?;
    let tag_start = envelope.len() - TAG_LEN;
    let mut payload = envelope[HEADER_LEN..tag_start].to_vec();
    let aad = associated_data(domain, name, header.compression);
    keys.cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(&header.nonce),
            &aad,
            &mut payload,
            Tag::from_slice(&envelope[tag_start..]),
        )
        .map_err(|_| OpenError::Authentication)?;
    let plaintext = match header.compression {
        Compression::None if payload.len() > max_len => {
            return Err(OpenError::LengthMismatch {
                expected: max_len,
                actual: payload.len(),
            })
        }
        Compression::None => payload,
        Compression::Zstd => decompress(&payload, expected_len.unwrap_or(max_len).min(max_len))?,
    };
    match expected_len {
        Some(expected) if expected != plaintext.len() => Err(OpenError::LengthMismatch {
            expected,
            actual: plaintext.len(),
        }),
        _ => Ok(plaintext),
    }
}

fn decompress(payload: &[u8], capacity: usize) -> Result<Vec<u8>, OpenError> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(OpenError::Decompress)?);
        }
        let decompressor = slot.as_mut().expect("decompressor was just created");
        decompressor
            .decompress(payload, capacity)
            .map_err(OpenError::Decompress)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::keys::MasterKey;
    use proptest::prelude::*;

    fn keys() -> Keys {
        Keys::derive(&MasterKey::random())
    }

    #[test]
    fn compressible_data_is_compressed_and_random_is_not() {
        let keys = keys();
        let text = b"stowage stores every byte once. ".repeat(1000);
        let sealed = seal(&keys, Domain::Chunk, b"n", &text, 3);
        assert_eq!(sealed[1], Compression::Zstd as u8);
        assert!(sealed.len() < text.len() / 10);
        let mut noise = vec![0u8; 10_000];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut noise);
        let sealed = seal(&keys, Domain::Chunk, b"n", &noise, 3);
        assert_eq!(sealed[1], Compression::None as u8);
        assert_eq!(sealed.len(), noise.len() + HEADER_LEN + TAG_LEN);
    }

    #[test]
    fn any_flipped_bit_or_other_name_fails() {
        let keys = keys();
        let sealed = seal(&keys, Domain::Chunk, b"name", b"hello world", 3);
        for i in 0..sealed.len() {
            let mut broken = sealed.clone();
            broken[i] ^= 0x10;
            assert!(open(&keys, Domain::Chunk, b"name", &broken, None, 1 << 20).is_err());
        }
        assert!(matches!(
            open(&keys, Domain::Chunk, b"other", &sealed, None, 1 << 20),
            Err(OpenError::Authentication)
        ));
        assert!(open(&keys, Domain::Manifest, b"name", &sealed, None, 1 << 20).is_err());
        assert!(matches!(
            open(&keys, Domain::Chunk, b"name", &sealed, Some(3), 1 << 20),
            Err(OpenError::LengthMismatch { .. })
        ));
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000), repeat in 1usize..20, level in 0i32..6) {
            let keys = keys();
            let plaintext = data.repeat(repeat);
            let sealed = seal(&keys, Domain::Chunk, b"id", &plaintext, level);
            let opened = open(&keys, Domain::Chunk, b"id", &sealed, Some(plaintext.len()), 1 << 24).unwrap();
            prop_assert_eq!(opened, plaintext);
        }

        #[test]
        fn open_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = open(&keys(), Domain::Chunk, b"id", &bytes, None, 1 << 20);
        }
    }
}
