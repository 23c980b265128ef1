//! Byte formats that must stay readable forever. Sans-IO: every function here takes and
//! returns bytes, never panics on input, and every format starts with a magic and version.

// These modules decode stored bytes and request bodies from outside: they must never panic.
#![deny(clippy::indexing_slicing)]

pub mod archive_end;
pub mod blob;
pub mod catalog;
pub mod catalog_index;
pub mod chunk_batch;
pub mod config;
pub mod content;
pub mod keyfile;
pub mod manifest;
pub mod pack;
pub mod series;
pub mod tar;
