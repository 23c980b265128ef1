//! The blob envelope: how one chunk, content-list leaf, pack trailer or manifest is stored.
//!
//! ```text
//! offset  size  field
//! 0       1     envelope version (1)
//! 1       1     compression (0 = none, 1 = zstd frame)
//! 2       24    XChaCha20 nonce (random)
//! 26      n     ciphertext of the (possibly compressed) payload
//! 26+n    16    Poly1305 tag
//! ```
//!
//! The associated data is `domain (1 byte) || name || version || compression`, so a blob
//! cannot be moved to another name (chunk id, pack id, backup id) or domain, and its
//! header bytes cannot be altered, without failing authentication. This module only
//! parses and lays out bytes; sealing lives in `pipeline::seal`.

/// Envelope version written by this code.
pub const ENVELOPE_VERSION: u8 = 1;
/// Length of the plaintext header (version, compression, nonce).
pub const HEADER_LEN: usize = 26;
/// Length of the Poly1305 tag at the end of every envelope.
pub const TAG_LEN: usize = 16;
/// Smallest possible envelope: header and tag around an empty payload.
pub const MIN_ENVELOPE_LEN: usize = HEADER_LEN + TAG_LEN;

/// What a blob's name identifies, bound into its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Domain {
    /// A chunk or content-list leaf; the name is its chunk id.
    Chunk = 0,
    /// A pack trailer; the name is the pack id.
    PackTrailer = 1,
    /// A backup manifest; the name is the backup id's text.
    Manifest = 2,
    /// A series record; the name is the series name.
    Series = 3,
    /// A recycle mark; the name is the backup id's text.
    Recycled = 4,
    /// The repository generation; the name is `generation`.
    Generation = 5,
    /// The server's state, mirrored into the repository; the name is `server-state`.
    ServerState = 6,
}

/// How a payload is encoded inside the ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    None = 0,
    Zstd = 1,
}

impl Compression {
    pub fn from_byte(byte: u8) -> Option<Compression> {
        match byte {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// The parsed plaintext header of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeHeader {
    pub compression: Compression,
    pub nonce: [u8; 24],
}

/// Why an envelope's header could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("blob of {len} bytes is shorter than the {MIN_ENVELOPE_LEN}-byte minimum")]
    TooShort { len: usize },
    #[error("unknown blob envelope version {version}")]
    UnknownVersion { version: u8 },
    #[error("unknown blob compression {byte}")]
    UnknownCompression { byte: u8 },
}

/// Parses the header of `envelope`; the rest is ciphertext and tag.
pub fn parse_header(envelope: &[u8]) -> Result<EnvelopeHeader, EnvelopeError> {
    let too_short = || EnvelopeError::TooShort {
        len: envelope.len(),
    };
    if envelope.len() < MIN_ENVELOPE_LEN {
        return Err(too_short());
    }
    let [version, compression, nonce @ ..] =
        *envelope.first_chunk::<HEADER_LEN>().ok_or_else(too_short)?;
    if version != ENVELOPE_VERSION {
        return Err(EnvelopeError::UnknownVersion { version });
    }
    let compression = Compression::from_byte(compression)
        .ok_or(EnvelopeError::UnknownCompression { byte: compression })?;
    Ok(EnvelopeHeader { compression, nonce })
}

/// Writes the plaintext header into the first [`HEADER_LEN`] bytes of `out`.
pub fn write_header(out: &mut [u8; HEADER_LEN], compression: Compression, nonce: &[u8; 24]) {
    out[0] = ENVELOPE_VERSION;
    out[1] = compression as u8;
    out[2..].copy_from_slice(nonce);
}

/// The associated data binding an envelope to its domain, name and header.
pub fn associated_data(domain: Domain, name: &[u8], compression: Compression) -> Vec<u8> {
    let mut aad = Vec::with_capacity(name.len() + 3);
    aad.push(domain as u8);
    aad.extend_from_slice(name);
    aad.push(ENVELOPE_VERSION);
    aad.push(compression as u8);
    aad
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_errors() {
        let mut envelope = vec![0u8; MIN_ENVELOPE_LEN];
        let mut header = [0u8; HEADER_LEN];
        write_header(&mut header, Compression::Zstd, &[7u8; 24]);
        envelope[..HEADER_LEN].copy_from_slice(&header);
        let parsed = parse_header(&envelope).unwrap();
        assert_eq!(parsed.compression, Compression::Zstd);
        assert_eq!(parsed.nonce, [7u8; 24]);
        assert!(matches!(
            parse_header(&envelope[..10]),
            Err(EnvelopeError::TooShort { .. })
        ));
        envelope[0] = 9;
        assert!(matches!(
            parse_header(&envelope),
            Err(EnvelopeError::UnknownVersion { .. })
        ));
        envelope[0] = ENVELOPE_VERSION;
        envelope[1] = 5;
        assert!(matches!(
            parse_header(&envelope),
            Err(EnvelopeError::UnknownCompression { .. })
        ));
    }
}
