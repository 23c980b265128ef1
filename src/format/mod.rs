//! Byte formats that must stay readable forever. Sans-IO: every function here takes and
//! returns bytes, never panics on input, and every format starts with a magic and version.

pub mod catalog;
