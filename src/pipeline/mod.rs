//! Pure CPU transforms of the ingest and restore paths: content-defined chunking, keyed
//! chunk ids, compression, sealing and opening of blobs, key derivation, and the packer's
//! bookkeeping. No IO, no tokio, no redb: everything here is a function of its inputs,
//! replaceable and benchmarkable on its own.

pub mod chunker;
pub mod keys;
pub mod packer;
pub mod seal;
