//! Fuzz targets: every decoder of stored bytes (blob envelope, pack, manifest, content
//! list, catalog, key object, config, series record, the state store's records), the tar
//! parser, the end check of uploads, the cron parser and each dialect's request handling, each as a function that
//! takes arbitrary bytes, must never panic, and panics only when an invariant it checks
//! is broken (a decoded value that does not re-encode to itself, a tar parse that depends
//! on where the stream was split, a 500 answer). Each target carries small valid seeds
//! made with the crate's own encoders, so a fuzzer starts deep inside the format.
//!
//! Two drivers run them (`docs/RELIABILITY.md`, "Fuzzing"): libFuzzer through the
//! cargo-fuzz targets in `fuzz/`, and the dependency-free mutator here ([`mutate`]),
//! which `examples/fuzz.rs` runs for long campaigns and `tests/it/fuzz.rs` for a short
//! smoke of every target. Not part of stowage's behaviour: nothing else uses it.

mod decoders;
mod http;
mod tar;

/// One fuzz target: a name, the function that feeds it bytes, and its built-in seeds.
pub struct Target {
    pub name: &'static str,
    /// What it decodes and which invariant it checks, in a few words.
    pub about: &'static str,
    pub run: fn(&[u8]),
    pub seeds: fn() -> Vec<Vec<u8>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("name", &self.name).finish()
    }
}

static TARGETS: [Target; 17] = [
    Target {
        name: "blob",
        about: "blob envelope header; opening sealed blobs (AEAD, zstd) under a fixed key",
        run: decoders::blob,
        seeds: decoders::blob_seeds,
    },
    Target {
        name: "pack",
        about: "pack header, footer and trailer, the input taken as a whole pack",
        run: decoders::pack,
        seeds: decoders::pack_seeds,
    },
    Target {
        name: "manifest",
        about: "backup manifest JSON",
        run: decoders::manifest,
        seeds: decoders::manifest_seeds,
    },
    Target {
        name: "content",
        about: "content-list leaf",
        run: decoders::content,
        seeds: decoders::content_seeds,
    },
    Target {
        name: "catalog",
        about: "catalog JSON lines",
        run: decoders::catalog,
        seeds: decoders::catalog_seeds,
    },
    Target {
        name: "catalog_index",
        about: "catalog index JSON lines (marks in path order)",
        run: decoders::catalog_index,
        seeds: decoders::catalog_index_seeds,
    },
    Target {
        name: "keyfile",
        about: "key object JSON; unwrapping with cheap KDF parameters",
        run: decoders::keyfile,
        seeds: decoders::keyfile_seeds,
    },
    Target {
        name: "config",
        about: "repository config JSON",
        run: decoders::config,
        seeds: decoders::config_seeds,
    },
    Target {
        name: "series",
        about: "series record JSON; retention durations",
        run: decoders::series,
        seeds: decoders::series_seeds,
    },
    Target {
        name: "state",
        about: "state store records (keys, users, jobs, schedules), the mirrored export, dialect documents",
        run: decoders::state,
        seeds: decoders::state_seeds,
    },
    Target {
        name: "tar",
        about: "streaming tar catalog parser, plain and gzip, split at fuzzed points",
        run: tar::run,
        seeds: tar::seeds,
    },
    Target {
        name: "archive_end",
        about: "the end check of FTP uploads (tar end blocks, OpenPGP packets), split at fuzzed points",
        run: tar::archive_end,
        seeds: tar::archive_end_seeds,
    },
    Target {
        name: "cron",
        about: "cron expressions (5 and 6 fields), next run and occurrences",
        run: decoders::cron,
        seeds: decoders::cron_seeds,
    },
    Target {
        name: "http_fa",
        about: "fa dialect requests through the server's router",
        run: http::fa,
        seeds: http::fa_seeds,
    },
    Target {
        name: "http_backupchan",
        about: "Backup-chan dialect requests through the server's router",
        run: http::backupchan,
        seeds: http::backupchan_seeds,
    },
    Target {
        name: "http_wings",
        about: "Wings (Pterodactyl Panel) dialect requests through the server's router",
        run: http::wings,
        seeds: http::wings_seeds,
    },
    Target {
        name: "http_tapu",
        about: "tapu-backups dialect requests through its own router",
        run: http::tapu,
        seeds: http::tapu_seeds,
    },
];

/// Every target.
pub fn targets() -> &'static [Target] {
    &TARGETS
}

/// The target called `name`.
pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Feeds `data` to the target called `name` (what each cargo-fuzz target does).
pub fn run(name: &str, data: &[u8]) {
    match find(name) {
        Some(target) => (target.run)(data),
        None => panic!("no fuzz target named {name:?}"),
    }
}

/// Runs `target` on `data`, catching a panic of the calling thread as its message.
pub fn run_caught(target: &Target, data: &[u8]) -> Result<(), String> {
    std::panic::catch_unwind(|| (target.run)(data)).map_err(|payload| panic_message(&*payload))
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Stops the in-process server the HTTP targets started, if any, and removes its data
/// directory; a later HTTP target starts a new one.
pub fn release() {
    http::release();
}

/// Inputs larger than this are not produced by [`mutate`].
pub const MAX_INPUT: usize = 256 * 1024;

/// A step of xorshift64*: the mutator's deterministic random numbers.
pub fn next_random(state: &mut u64) -> u64 {
    if *state == 0 {
        *state = 0x9e37_79b9_7f4a_7c15;
    }
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn below(state: &mut u64, n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (next_random(state) % n as u64) as usize
    }
}

/// Bytes that often matter to a parser.
const INTERESTING_BYTES: [u8; 16] = [
    0, 1, 0x7f, 0x80, 0xff, b'0', b'9', b'"', b'{', b'}', b'\n', b'/', b'.', b' ', b'*', b'-',
];

/// Tokens of the formats the targets read (JSON, tar, cron, HTTP).
const TOKENS: [&[u8]; 28] = [
    b"null",
    b"true",
    b"-1",
    b"0",
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"1e400",
    b"0.5",
    b"\"\"",
    b"[]",
    b"{}",
    b"\\u0000",
    b"\\ud800",
    b"..",
    b"../",
    b"/",
    b"%00",
    b"%2e%2e",
    b"ustar\x0000",
    b"ustar  \x00",
    b"././@LongLink",
    b"*/",
    b",",
    b"-",
    b"?",
    b"\r\n",
    b"\n\n",
];

/// One mutation of `input`: one to four random edits (bit flips, interesting bytes,
/// inserted, deleted or duplicated ranges, truncation, splicing with one of `others`,
/// little- or big-endian integer boundaries, format tokens). Deterministic in `state`.
pub fn mutate(state: &mut u64, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    let edits = 1 + below(state, 4);
    for _ in 0..edits {
        edit(state, &mut out, others);
    }
    out.truncate(MAX_INPUT);
    out
}

fn edit(state: &mut u64, out: &mut Vec<u8>, others: &[Vec<u8>]) {
    let len = out.len();
    match below(state, 12) {
        0 if len > 0 => {
            let at = below(state, len);
            out[at] ^= 1 << below(state, 8);
        }
        1 if len > 0 => {
            let at = below(state, len);
            out[at] = INTERESTING_BYTES[below(state, INTERESTING_BYTES.len())];
        }
        2 if len > 0 => {
            let at = below(state, len);
            out[at] = next_random(state) as u8;
        }
        3 if len > 0 => {
            let at = below(state, len);
            let delta = 1 + below(state, 16) as u8;
            out[at] = if below(state, 2) == 0 {
                out[at].wrapping_add(delta)
            } else {
                out[at].wrapping_sub(delta)
            };
        }
        4 => {
            let at = below(state, len + 1);
            let count = 1 + below(state, 8);
            let bytes: Vec<u8> = (0..count).map(|_| next_random(state) as u8).collect();
            out.splice(at..at, bytes);
        }
        5 if len > 0 => {
            let start = below(state, len);
            let end = start + 1 + below(state, (len - start).min(64));
            out.drain(start..end);
        }
        6 if len > 0 => {
            let start = below(state, len);
            let end = start + 1 + below(state, (len - start).min(256));
            let copy = out[start..end].to_vec();
            let at = below(state, len + 1);
            out.splice(at..at, copy);
        }
        7 if len > 0 => out.truncate(below(state, len)),
        8 if !others.is_empty() => {
            let other = &others[below(state, others.len())];
            let keep = below(state, len + 1);
            let from = below(state, other.len() + 1);
            out.truncate(keep);
            out.extend_from_slice(&other[from..]);
        }
        9 => {
            let bytes = boundary_value(state, len);
            let at = below(state, len + 1);
            let end = (at + bytes.len()).min(len);
            out.splice(at..end, bytes);
        }
        10 => {
            let token = TOKENS[below(state, TOKENS.len())];
            let at = below(state, len + 1);
            if below(state, 2) == 0 {
                out.splice(at..at, token.iter().copied());
            } else {
                let end = (at + token.len()).min(len);
                out.splice(at..end, token.iter().copied());
            }
        }
        11 if len > 1 => {
            // Swap two bytes: moves a delimiter without changing the length.
            let (a, b) = (below(state, len), below(state, len));
            out.swap(a, b);
        }
        _ => {
            let at = below(state, len + 1);
            out.insert(at, INTERESTING_BYTES[below(state, INTERESTING_BYTES.len())]);
        }
    }
}

/// A u16, u32 or u64 at a boundary (0, 1, max, max - 1, the sign bit, the input's
/// length), little- or big-endian.
fn boundary_value(state: &mut u64, len: usize) -> Vec<u8> {
    let width = [2usize, 4, 8][below(state, 3)];
    let bits = width as u32 * 8;
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let sign = 1u64 << (bits - 1);
    let value = match below(state, 7) {
        0 => 0,
        1 => 1,
        2 => max,
        3 => max - 1,
        4 => sign,
        5 => sign - 1,
        _ => len as u64 & max,
    };
    let le = value.to_le_bytes();
    let mut bytes = le[..width].to_vec();
    if below(state, 2) == 0 {
        bytes.reverse();
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mutator_is_deterministic_and_bounded() {
        let seed = b"{\"a\":1}".to_vec();
        let others = vec![b"xyz".to_vec()];
        let (mut a, mut b) = (7u64, 7u64);
        for _ in 0..1000 {
            let x = mutate(&mut a, &seed, &others);
            let y = mutate(&mut b, &seed, &others);
            assert_eq!(x, y);
            assert!(x.len() <= MAX_INPUT);
        }
        assert!(mutate(&mut a, &[], &[]).len() <= 128);
    }

    #[test]
    fn every_target_is_found_by_name() {
        for target in targets() {
            assert_eq!(find(target.name).map(|t| t.name), Some(target.name));
        }
        assert!(find("nothing").is_none());
    }
}
