//! Dialects: the HTTP APIs of other backup systems, served beside the native `/v1` API so
//! their clients work unchanged. Each one maps its wire format and error shape onto the
//! services; none holds storage logic. See `docs/dialects/`.

pub mod backupchan;
pub mod fa;
pub mod wings;
