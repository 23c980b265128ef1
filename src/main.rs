//! The `stowage` command line. Parsing and printing only; the work is done by the
//! library (see `stowage::cli`).

use std::process::ExitCode;

fn main() -> ExitCode {
    limit_malloc_arenas();
    stowage::cli::main()
}

/// glibc gives every thread that allocates its own arena and keeps freed memory in it.
/// Ingest and restore pass multi-MiB buffers between threads, so with one arena per
/// thread each keeps its own high-water mark: two arenas cut peak memory by a quarter
/// (measured on the kernel corpus) at no measurable cost in speed.
// One of the documented places with unsafe code.
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread
    // exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
