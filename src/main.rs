//! The `stowage` command line. Parsing and printing only; the work is done by the
//! library (see `stowage::cli`).

use std::process::ExitCode;

fn main() -> ExitCode {
    stowage::cli::main()
}
