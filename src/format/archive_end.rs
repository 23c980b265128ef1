//! Whether a stream ends where its own format says it ends. An FTP upload ends when the
//! client closes the data connection, and a client that dies half way closes it too: only
//! the bytes can tell a finished archive from a cut one. Two checks, fed the stream as it
//! passes, without holding it:
//!
//! - a tar archive ends with its end-of-archive marker: a length that is a whole number of
//!   512-byte blocks, the last two blocks all zero (every tar writer emits them);
//! - an OpenPGP message (`gpg --encrypt` output) ends at a packet boundary: each packet's
//!   header gives its length (partial body lengths chain to the next piece), so a cut
//!   inside a packet shows. ASCII-armoured messages end with their `-----END PGP
//!   MESSAGE-----` line. An old-format packet of indeterminate length runs to the end of
//!   the stream, so any end is its end.

/// Bytes of the tar end-of-archive marker: two zero blocks.
const TAR_END: usize = 1024;
const TAR_BLOCK: u64 = 512;
const ARMOR_END: &[u8] = b"-----END PGP MESSAGE-----";
/// Bytes kept from the end of the stream: enough for either check.
const TAIL: usize = 1024;

/// Which format the stream claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Tar,
    OpenPgp,
}

/// Where the OpenPGP packet parser stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Packet {
    /// At a packet boundary: the next byte is a packet tag.
    Tag,
    /// Reading a new-format length: `first` octet known once read; `partial` when this
    /// length continues a partial body.
    NewLength {
        first: Option<u8>,
        need: u8,
        value: u32,
        partial: bool,
    },
    /// Reading an old-format length of `need` more octets.
    OldLength { need: u8, value: u32 },
    /// Inside a body: `remaining` bytes, then a boundary or (`more`) another length.
    Body { remaining: u64, more: bool },
    /// An old-format packet of indeterminate length: to the end of the stream.
    ToEnd,
    /// ASCII armour: only the tail tells.
    Armored,
    /// Not OpenPGP: the reason.
    Invalid(&'static str),
}

/// A check fed the stream in order; [`StreamEnd::finish`] says whether it ended cleanly.
#[derive(Debug, Clone)]
pub struct StreamEnd {
    expected: Expected,
    length: u64,
    tail: Vec<u8>,
    packet: Packet,
    packets: u64,
}

impl StreamEnd {
    pub fn new(expected: Expected) -> StreamEnd {
        StreamEnd {
            expected,
            length: 0,
            tail: Vec::with_capacity(2 * TAIL),
            packet: Packet::Tag,
            packets: 0,
        }
    }

    /// Takes the next bytes of the stream.
    pub fn feed(&mut self, data: &[u8]) {
        self.length += data.len() as u64;
        let keep = data.len().min(TAIL);
        self.tail
            .extend_from_slice(data.get(data.len() - keep..).unwrap_or_default());
        if self.tail.len() > TAIL {
            self.tail.drain(..self.tail.len() - TAIL);
        }
        if self.expected == Expected::OpenPgp {
            self.feed_packets(data);
        }
    }

    fn feed_packets(&mut self, mut data: &[u8]) {
        while let Some((&byte, rest)) = data.split_first() {
            match self.packet {
                Packet::Body { remaining, more } => {
                    let take = remaining.min(data.len() as u64);
                    data = data.get(take as usize..).unwrap_or_default();
                    self.packet = match (remaining - take, more) {
                        (0, false) => Packet::Tag,
                        (0, true) => Packet::NewLength {
                            first: None,
                            need: 0,
                            value: 0,
                            partial: true,
                        },
                        (left, more) => Packet::Body {
                            remaining: left,
                            more,
                        },
                    };
                    continue;
                }
                Packet::ToEnd | Packet::Armored | Packet::Invalid(_) => return,
                Packet::Tag => self.tag(byte),
                Packet::NewLength { .. } => self.new_length(byte),
                Packet::OldLength { need, value } => {
                    let value = (value << 8) | u32::from(byte);
                    self.packet = if need == 1 {
                        Self::body(u64::from(value), false)
                    } else {
                        Packet::OldLength {
                            need: need - 1,
                            value,
                        }
                    };
                }
            }
            data = rest;
        }
    }

    fn body(remaining: u64, more: bool) -> Packet {
        if remaining == 0 && !more {
            Packet::Tag
        } else {
            Packet::Body { remaining, more }
        }
    }

    fn tag(&mut self, byte: u8) {
        if self.length > 0 && self.packets == 0 && byte == b'-' {
            self.packet = Packet::Armored;
            return;
        }
        if byte & 0x80 == 0 {
            self.packet = Packet::Invalid("a byte that is no OpenPGP packet tag");
            return;
        }
        self.packets += 1;
        self.packet = if byte & 0x40 != 0 {
            Packet::NewLength {
                first: None,
                need: 0,
                value: 0,
                partial: false,
            }
        } else {
            match byte & 0x03 {
                0 => Packet::OldLength { need: 1, value: 0 },
                1 => Packet::OldLength { need: 2, value: 0 },
                2 => Packet::OldLength { need: 4, value: 0 },
                _ => Packet::ToEnd,
            }
        };
    }

    fn new_length(&mut self, byte: u8) {
        let Packet::NewLength {
            first,
            need,
            value,
            partial,
        } = self.packet
        else {
            return;
        };
        self.packet = match first {
            None => match byte {
                0..=191 => Self::body(u64::from(byte), false),
                192..=223 => Packet::NewLength {
                    first: Some(byte),
                    need: 1,
                    value: 0,
                    partial,
                },
                // A partial body: 2^(byte & 31) bytes, then another length.
                224..=254 => Self::body(1u64 << (byte & 0x1f), true),
                255 => Packet::NewLength {
                    first: Some(byte),
                    need: 4,
                    value: 0,
                    partial,
                },
            },
            Some(first) => {
                let value = (value << 8) | u32::from(byte);
                if need > 1 {
                    Packet::NewLength {
                        first: Some(first),
                        need: need - 1,
                        value,
                        partial,
                    }
                } else if first == 255 {
                    Self::body(u64::from(value), false)
                } else {
                    Self::body(
                        (u64::from(first - 192) << 8) + u64::from(value) + 192,
                        false,
                    )
                }
            }
        };
    }

    /// Whether the stream ended where its format ends; `Err` says what is missing.
    pub fn finish(&self) -> Result<(), String> {
        match self.expected {
            Expected::Tar => self.tar_ended(),
            Expected::OpenPgp => self.openpgp_ended(),
        }
    }

    fn tar_ended(&self) -> Result<(), String> {
        if !self.length.is_multiple_of(TAR_BLOCK) {
            return Err(format!(
                "the tar archive stops inside a 512-byte block ({} bytes): it was cut short",
                self.length
            ));
        }
        let end = self.tail.get(self.tail.len().saturating_sub(TAR_END)..);
        match end {
            Some(end) if end.len() == TAR_END && end.iter().all(|&b| b == 0) => Ok(()),
            _ => Err(format!(
                "the tar archive has no end-of-archive blocks after {} bytes: it was cut short",
                self.length
            )),
        }
    }

    fn openpgp_ended(&self) -> Result<(), String> {
        match self.packet {
            _ if self.length == 0 => Err("the OpenPGP message is empty".into()),
            Packet::Tag | Packet::ToEnd => Ok(()),
            Packet::Armored => {
                let text = self.tail.trim_ascii_end();
                if text.ends_with(ARMOR_END) {
                    Ok(())
                } else {
                    Err("the armoured OpenPGP message has no END line: it was cut short".into())
                }
            }
            Packet::Invalid(why) => Err(format!("not an OpenPGP message: {why}")),
            _ => Err(format!(
                "the OpenPGP message stops inside a packet after {} bytes: it was cut short",
                self.length
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn check(expected: Expected, stream: &[u8], piece: usize) -> Result<(), String> {
        let mut end = StreamEnd::new(expected);
        for part in stream.chunks(piece.max(1)) {
            end.feed(part);
        }
        end.finish()
    }

    #[test]
    fn a_tar_ends_with_two_zero_blocks() {
        let mut tar = vec![7u8; 1536];
        tar.extend_from_slice(&[0; 1024]);
        for piece in [1, 100, 512, 5000] {
            assert!(check(Expected::Tar, &tar, piece).is_ok());
            assert!(check(Expected::Tar, &tar[..tar.len() - 512], piece).is_err());
            assert!(check(Expected::Tar, &tar[..tar.len() - 1], piece).is_err());
            assert!(check(Expected::Tar, &tar[..1536], piece).is_err());
        }
        assert!(check(Expected::Tar, &[], 1).is_err());
    }

    /// A binary message as gpg writes it: a public-key session key packet (old format,
    /// 2-octet length), then encrypted data in partial bodies ending with a 2-octet length.
    fn message() -> Vec<u8> {
        let mut m = vec![0x85, 0x01, 0x0c];
        m.extend(vec![1u8; 268]);
        m.push(0xd2); // new format, tag 18
        m.push(0xe0 + 10); // partial: 1024 bytes
        m.extend(vec![2u8; 1024]);
        m.push(0xe0 + 9); // partial: 512 bytes
        m.extend(vec![3u8; 512]);
        m.extend([0xc5, 0x00]); // 2-octet: (0xc5 - 192) * 256 + 0 + 192 = 1472
        m.extend(vec![4u8; 1472]);
        m.extend([0xcb, 0xff, 0x00, 0x00, 0x00, 0x03, 9, 9, 9]); // 5-octet length
        m
    }

    #[test]
    fn an_openpgp_message_ends_at_a_packet_boundary() {
        let m = message();
        for piece in [1, 3, 700, 100_000] {
            assert_eq!(check(Expected::OpenPgp, &m, piece), Ok(()));
            for cut in [1, 2, 100, 272, 273, 800, 1300, 2000, m.len() - 1] {
                assert!(check(Expected::OpenPgp, &m[..cut], piece).is_err(), "{cut}");
            }
        }
        // Cut exactly between the two packets: a whole first packet is all we can see.
        assert!(check(Expected::OpenPgp, &m[..271], 7).is_ok());
        assert!(check(Expected::OpenPgp, b"", 1).is_err());
        assert!(check(Expected::OpenPgp, b"plain text", 1).is_err());
        // Indeterminate length runs to the end.
        assert!(check(Expected::OpenPgp, &[0xaf, 1, 2, 3], 1).is_ok());
    }

    #[test]
    fn an_armoured_message_ends_with_its_end_line() {
        let armored =
            b"-----BEGIN PGP MESSAGE-----\n\nhQEMA...\n=abcd\n-----END PGP MESSAGE-----\n";
        assert!(check(Expected::OpenPgp, armored, 5).is_ok());
        assert!(check(Expected::OpenPgp, &armored[..40], 5).is_err());
    }
}
