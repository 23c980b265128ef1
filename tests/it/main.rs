//! Integration tests of stowage: one test binary, one module per area.

mod support;

mod architecture;
mod backupchan;
mod cli;
mod compose;
mod corruption;
mod dedup;
mod fa;
mod faults;
mod gc;
mod index_cache;
mod repair;
mod roundtrip;
mod s3;
mod s3_server;
mod serve;
mod server;
mod tree;
mod wings;
