//! Integration tests of stowage: one test binary, one module per area.

// Tests may unwrap (a panic is a failed test) and call libc (signals, uids) directly.
#![allow(clippy::unwrap_used, unsafe_code)]

mod support;

mod architecture;
mod assembly;
mod backupchan;
mod catalog_index;
mod cli;
mod compose;
mod corruption;
mod crash;
mod cron;
mod cyborgbackup;
mod dedup;
mod fa;
mod fault_matrix;
mod faults;
mod fuzz;
mod gc;
mod index_cache;
mod repair;
mod roundtrip;
mod s3;
mod s3_server;
mod serve;
mod server;
mod tapu;
mod tree;
mod wings;
