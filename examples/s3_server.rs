//! A local S3-compatible server for benchmarks: the test suite's server (`s3s-fs` behind
//! `s3s`, objects stored as files in a temporary directory, signatures checked) in a
//! process of its own, so `scripts/s3-bench.sh` can ingest and restore through S3 beside
//! a local repository in one run.
//!
//! ```text
//! cargo run --release --example s3_server -- BUCKET [DELAY_MS]
//! ```
//!
//! Prints, one per line, the `NAME=VALUE` environment a `stowage` process needs to reach
//! it and then `ready`, and serves until its standard input closes; the objects go with
//! it. With DELAY_MS, every answer starts that many milliseconds after its request, as
//! over a network with that round trip.

use std::io::{BufRead, Write};
use std::process::ExitCode;

#[path = "../tests/it/s3_server.rs"]
mod s3_server;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (bucket, delay_ms) = match args.as_slice() {
        [bucket] => (bucket, 0),
        [bucket, delay] => match delay.parse::<u64>() {
            Ok(ms) => (bucket, ms),
            Err(_) => {
                eprintln!("s3_server: DELAY_MS must be a number of milliseconds, not {delay:?}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: s3_server BUCKET [DELAY_MS]");
            return ExitCode::from(2);
        }
    };
    let server = s3_server::S3Server::with_bucket(bucket);
    server.delay_answers(std::time::Duration::from_millis(delay_ms));
    let mut out = std::io::stdout().lock();
    for (name, value) in server.env() {
        if writeln!(out, "{name}={value}").is_err() {
            return ExitCode::FAILURE;
        }
    }
    if writeln!(out, "ready").is_err() || out.flush().is_err() {
        return ExitCode::FAILURE;
    }
    drop(out);
    // Serve until whoever started us closes our standard input (or exits).
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    drop(server);
    ExitCode::SUCCESS
}
