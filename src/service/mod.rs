//! Use-cases in domain terms, above the engine: retention policies today; series, jobs,
//! keys and users as the server grows. No HTTP types in or out.

pub mod forget;
pub mod retention;
