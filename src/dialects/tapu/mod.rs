//! The tapu-backups host API (hosting hosts "b2" export and import eQual instance
//! backups): its HTTP API on its own listener (`http`, errors in `error`, the `/status`
//! figures in `status`), hands out instance tokens with temporary FTP credentials; the
//! bytes move over the dialect's own FTP server (`ftp`). See `docs/dialects/tapu.md`.

pub mod error;
pub mod ftp;
pub mod http;
pub mod plugin;
pub mod status;

pub use plugin::TapuConfig;
