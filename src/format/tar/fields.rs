//! Header fields: NUL-terminated text, octal and base-256 numbers, checksums, block
//! padding, path normalization and PAX records.

use super::machine::Pax;
use super::*;
use crate::format::catalog::is_safe_relative_path;

pub(super) fn until_nul(field: &[u8]) -> &[u8] {
    field.split(|&b| b == 0).next().unwrap_or(field)
}

/// Copies as many bytes as fit from the start of `src` to the start of `dst`; returns how
/// many.
pub(super) fn copy_prefix(dst: &mut [u8], src: &[u8]) -> usize {
    let mut n = 0;
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
        n += 1;
    }
    n
}

pub(super) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Padding after `len` bytes of data to the next block boundary.
pub(super) fn padding(len: u64) -> u64 {
    (BLOCK_U64 - len % BLOCK_U64) % BLOCK_U64
}

/// `len` rounded up to a whole number of blocks, or `None` on overflow.
pub(super) fn padded(len: u64) -> Option<u64> {
    len.checked_add(padding(len))
}

/// The header checksum: the sum of the block's bytes with the checksum field taken as
/// spaces, unsigned (POSIX) or signed (some old tars).
pub(super) fn checksum_ok(b: &[u8; BLOCK]) -> bool {
    let Some(stored) = parse_octal(&b[148..156]) else {
        return false;
    };
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &x) in b.iter().enumerate() {
        let x = if (148..156).contains(&i) { b' ' } else { x };
        unsigned += u64::from(x);
        signed += i64::from(x as i8);
    }
    stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed)
}

/// An octal field: optional leading spaces, octal digits, then the end of the field or a
/// space or NUL (what follows that terminator is ignored, as GNU tar does).
pub(super) fn parse_octal(field: &[u8]) -> Option<u64> {
    let mut rest = field;
    while let [b' ', tail @ ..] = rest {
        rest = tail;
    }
    let mut value: u64 = 0;
    for &c in rest {
        match c {
            b'0'..=b'7' => {
                value = value.checked_mul(8)?.checked_add(u64::from(c - b'0'))?;
            }
            b' ' | 0 => return Some(value),
            _ => return None,
        }
    }
    Some(value)
}

/// A numeric field: octal, or base-256 when the first byte has its high bit set (GNU and
/// star: big-endian two's complement, bit 6 of the first byte being the sign).
pub(super) fn parse_numeric(field: &[u8]) -> Option<i128> {
    let (&first, rest) = field.split_first()?;
    if first & 0x80 == 0 {
        return parse_octal(field).map(i128::from);
    }
    if rest.len() > 14 {
        return None; // cannot happen for header fields (at most 12 bytes)
    }
    let low7 = first & 0x7f;
    let mut value: i128 = if low7 & 0x40 != 0 {
        i128::from((low7 | 0x80) as i8)
    } else {
        i128::from(low7)
    };
    for &byte in rest {
        value = value.checked_mul(256)?.checked_add(i128::from(byte))?;
    }
    Some(value)
}

pub(super) enum Normalized {
    Empty,
    Unsafe,
    Path(String),
}

/// Drops leading `/`, empty and `.` components; refuses `..` and NUL.
pub(super) fn normalize_path(raw: &str) -> Normalized {
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Normalized::Unsafe,
            _ => parts.push(part),
        }
    }
    let path = parts.join("/");
    if path.is_empty() {
        Normalized::Empty
    } else if is_safe_relative_path(&path) {
        Normalized::Path(path)
    } else {
        Normalized::Unsafe
    }
}

// ---------------------------------------------------------------------------------------
// PAX records
// ---------------------------------------------------------------------------------------

/// Parses `"%d %s=%s\n"` records into `into`. `global` headers only keep the keys that can
/// apply to every entry.
pub(super) fn parse_pax(data: &[u8], into: &mut Pax, global: bool) -> Result<(), String> {
    let mut rest = data;
    while !rest.is_empty() {
        // Some writers pad the record area with NULs.
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let space = rest
            .iter()
            .take(21)
            .position(|&b| b == b' ')
            .ok_or("PAX record without a length")?;
        let bad_len = || String::from("bad PAX record length");
        let (digits, _) = rest.split_at_checked(space).ok_or_else(bad_len)?;
        let len = parse_decimal_u64(digits).ok_or_else(bad_len)?;
        let len = usize::try_from(len).map_err(|_| bad_len())?;
        if len <= space + 1 {
            return Err(bad_len());
        }
        let (record, tail) = rest.split_at_checked(len).ok_or_else(bad_len)?;
        let record = record.get(space + 1..).ok_or_else(bad_len)?;
        rest = tail;
        let Some((b'\n', record)) = record.split_last() else {
            return Err("PAX record not terminated by a newline".into());
        };
        let mut key_value = record.splitn(2, |&b| b == b'=');
        let (Some(key), Some(value)) = (key_value.next(), key_value.next()) else {
            return Err("PAX record without '='".into());
        };
        let bad = || format!("bad PAX {} value", String::from_utf8_lossy(key));
        let empty = value.is_empty();
        match key {
            b"path" if !global => into.path = (!empty).then(|| value.to_vec()),
            b"linkpath" if !global => into.linkpath = (!empty).then(|| value.to_vec()),
            b"GNU.sparse.name" if !global => {
                into.sparse_name = (!empty).then(|| value.to_vec());
            }
            b"size" if !global => {
                into.size = if empty {
                    None
                } else {
                    Some(parse_decimal_u64(value).ok_or_else(bad)?)
                };
            }
            b"uname" => into.uname = (!empty).then(|| value.to_vec()),
            b"gname" => into.gname = (!empty).then(|| value.to_vec()),
            b"uid" | b"gid" => {
                let id = if empty {
                    None
                } else {
                    let v = parse_decimal_u64(value).ok_or_else(bad)?;
                    Some(u32::try_from(v).map_err(|_| bad())?)
                };
                if key == b"uid" {
                    into.uid = id;
                } else {
                    into.gid = id;
                }
            }
            b"mtime" => {
                into.mtime = if empty {
                    None
                } else {
                    Some(parse_pax_time(value).ok_or_else(bad)?)
                };
            }
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn parse_decimal_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(value)
}

/// A PAX time, `[-]seconds[.fraction]`, as whole seconds (floor) and nanoseconds.
pub(super) fn parse_pax_time(value: &[u8]) -> Option<(i64, u32)> {
    let (negative, value) = match value.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, value),
    };
    let mut parts = value.splitn(2, |&b| b == b'.');
    let int_part = parts.next().unwrap_or_default();
    let frac_part = parts.next().unwrap_or_default();
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let secs = if int_part.is_empty() {
        0
    } else {
        i64::try_from(parse_decimal_u64(int_part)?).ok()?
    };
    let mut nsec: u32 = 0;
    for (i, &c) in frac_part.iter().enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        if i < 9 {
            nsec = nsec * 10 + u32::from(c - b'0');
        }
    }
    for _ in frac_part.len()..9 {
        nsec *= 10;
    }
    if !negative {
        Some((secs, nsec))
    } else if nsec == 0 {
        Some((secs.checked_neg()?, 0))
    } else {
        Some((secs.checked_neg()?.checked_sub(1)?, 1_000_000_000 - nsec))
    }
}
