//! stowage: a deduplicating backup storage engine and server.
//!
//! Streams and directory trees are cut into content-defined chunks, identified by keyed
//! BLAKE3, compressed with zstd, sealed with XChaCha20-Poly1305 and stored once, in packs
//! on a backend (local directory or object storage), indexed in redb. See
//! `docs/ARCHITECTURE.md` for the map of the code and `docs/FORMAT.md` for every
//! persisted byte.

// Lets test helpers shared with `tests/it` (the in-process S3 server) name the crate
// the same way from inside its unit tests.
#[cfg(test)]
extern crate self as stowage;

pub mod api;
pub mod backend;
pub mod cli;
pub mod dialects;
pub mod error;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod id;
pub mod index;
pub mod pipeline;
pub mod repo;
pub mod server;
pub mod service;
pub mod state;
pub mod ui;
pub mod unwind;
