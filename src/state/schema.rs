//! Every table of the state store and its schema version. Adding a table is
//! compatible (it is created on open); changing a record's encoding means bumping
//! [`SCHEMA_VERSION`] and writing its migration in `StateStore::ensure_schema`.
//!
//! * `meta`: `&str` → `u64` (`schema_version`)
//! * `keys`: key id (16 lowercase hex digits) → the key's record, JSON (`state::keys`)
//! * `users`: email folded to lower case → the user's record, JSON (`state::users`)
//! * `jobs`: job id → the job's record, JSON (`state::jobs`)
//! * `documents`: dialect name → its records as one versioned JSON document
//!   (`state::documents`; the layout is the dialect's, FORMAT.md §11a)
//! * `secrets`: name → raw bytes, created once (`url-signing`: the 32-byte key of signed
//!   links)
//! * `schedules`: schedule name → its record, JSON (`state::schedules`)
//! * `policies`: policy name → its record, JSON (`state::policies`)
//! * `stats_history`: UTC day `YYYY-MM-DD` → that day's last figures, JSON
//!   (`state::stats_history`; not mirrored: it is a record of the past, not state)

use redb::TableDefinition;

use super::{db, StateError};

pub const SCHEMA_VERSION: u64 = 1;
pub const SCHEMA_VERSION_KEY: &str = "schema_version";

pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
pub const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
pub const DOCUMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("documents");
pub const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
pub const SCHEDULES: TableDefinition<&str, &[u8]> = TableDefinition::new("schedules");
pub const POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("policies");
pub const STATS_HISTORY: TableDefinition<&str, &[u8]> = TableDefinition::new("stats_history");

/// Creates every table a fresh store lacks.
pub fn open_all(txn: &redb::WriteTransaction) -> Result<(), StateError> {
    txn.open_table(KEYS).map_err(db)?;
    txn.open_table(USERS).map_err(db)?;
    txn.open_table(JOBS).map_err(db)?;
    txn.open_table(DOCUMENTS).map_err(db)?;
    txn.open_table(SECRETS).map_err(db)?;
    txn.open_table(SCHEDULES).map_err(db)?;
    txn.open_table(POLICIES).map_err(db)?;
    txn.open_table(STATS_HISTORY).map_err(db)?;
    Ok(())
}
