//! Backups in time order, all of them and per series, so a listing reads one page of
//! rows instead of every manifest, and retention reads a series' times from keys alone.
//!
//! Two tables of keys with no values, written in the same transactions as the `backups`
//! rows they order (so they are exactly as durable and as current):
//!
//! * `backup_times`: time (8 bytes) | backup id (36 ASCII bytes)
//! * `series_backups`: series name | 0x00 | time (8 bytes) | backup id (36 ASCII bytes)
//!
//! The time is the backup's `created_at` in microseconds since the epoch, big-endian
//! with the sign bit flipped so byte order is time order; an unreadable time sorts
//! first. Series names are letters, digits, `-`, `_` and `.`, so no name holds the 0x00
//! separator and a name's rows form one contiguous range. Both tables are built from
//! `backups` when an index of schema version 1 or 2 (which had neither) is opened.

use std::ops::Bound;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::schema::BACKUPS;
use super::{db, decode_manifest, IndexError};
use crate::format::manifest::BackupManifest;
use crate::id::BackupId;

pub const BACKUP_TIMES: TableDefinition<&[u8], ()> = TableDefinition::new("backup_times");
pub const SERIES_BACKUPS: TableDefinition<&[u8], ()> = TableDefinition::new("series_backups");

const TIME_LEN: usize = 8;
const ID_LEN: usize = 36;

/// Which backups a walk covers.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    All,
    /// One series.
    Series(&'a str),
    /// Every series whose name starts with this, series by series.
    SeriesPrefix(&'a str),
}

/// A position in a walk: a backup's time and id. It stays valid when that backup is
/// gone, so a page that follows a purged backup still starts in the right place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub micros: i64,
    pub id: BackupId,
}

impl Cursor {
    pub fn of(manifest: &BackupManifest) -> Cursor {
        Cursor {
            micros: micros_of(&manifest.created_at),
            id: manifest.id.clone(),
        }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.micros, self.id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(text: &str) -> Result<Cursor, String> {
        let bad = || format!("{text:?} is not a position in a backup listing");
        let (micros, id) = text.split_once('_').ok_or_else(bad)?;
        Ok(Cursor {
            micros: micros.parse().map_err(|_| bad())?,
            id: id.parse().map_err(|_| bad())?,
        })
    }
}

/// One row of a walk: what the keys alone say of a backup.
#[derive(Debug, Clone)]
pub struct TimelineRow {
    pub cursor: Cursor,
    /// When it was moved to the recycle bin; `None` while live.
    pub recycled_at: Option<String>,
}

/// What a walk does with a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// Go on without reading the backup's record.
    Skip,
    /// Read the backup's record into the result, and go on.
    Take,
    /// End the walk here.
    Stop,
}

/// `created_at` in microseconds since the epoch; `i64::MIN` when unreadable.
pub fn micros_of(created_at: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(created_at).map_or(i64::MIN, |t| t.timestamp_micros())
}

fn time_bytes(micros: i64) -> [u8; TIME_LEN] {
    ((micros as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_of(bytes: &[u8]) -> Option<i64> {
    let eight: [u8; TIME_LEN] = bytes.try_into().ok()?;
    Some((u64::from_be_bytes(eight) ^ (1 << 63)) as i64)
}

fn time_key(cursor: &Cursor) -> Vec<u8> {
    let mut key = Vec::with_capacity(TIME_LEN + ID_LEN);
    key.extend_from_slice(&time_bytes(cursor.micros));
    key.extend_from_slice(cursor.id.as_str().as_bytes());
    key
}

fn series_key(series: &str, cursor: &Cursor) -> Vec<u8> {
    let mut key = Vec::with_capacity(series.len() + 1 + TIME_LEN + ID_LEN);
    key.extend_from_slice(series.as_bytes());
    key.push(0);
    key.extend_from_slice(&time_key(cursor));
    key
}

/// The cursor at the end of a key of either table.
fn cursor_of(key: &[u8]) -> Result<Cursor, IndexError> {
    let corrupt = || IndexError::Corrupt {
        what: format!("backup timeline key {}", hex::encode(key)),
    };
    let split = key
        .len()
        .checked_sub(TIME_LEN + ID_LEN)
        .ok_or_else(corrupt)?;
    let (time, id) = key.get(split..).ok_or_else(corrupt)?.split_at(TIME_LEN);
    Ok(Cursor {
        micros: time_of(time).ok_or_else(corrupt)?,
        id: std::str::from_utf8(id)
            .ok()
            .and_then(|id| id.parse().ok())
            .ok_or_else(corrupt)?,
    })
}

/// Adds (`present`) or removes a backup's rows.
pub fn record(
    txn: &WriteTransaction,
    manifest: &BackupManifest,
    present: bool,
) -> Result<(), IndexError> {
    let cursor = Cursor::of(manifest);
    let mut times = txn.open_table(BACKUP_TIMES).map_err(db)?;
    let mut series = txn.open_table(SERIES_BACKUPS).map_err(db)?;
    let (time, in_series) = (time_key(&cursor), series_key(&manifest.series, &cursor));
    if present {
        times.insert(time.as_slice(), ()).map_err(db)?;
        series.insert(in_series.as_slice(), ()).map_err(db)?;
    } else {
        times.remove(time.as_slice()).map_err(db)?;
        series.remove(in_series.as_slice()).map_err(db)?;
    }
    Ok(())
}

/// Builds both tables from the `backups` rows.
pub fn rebuild(txn: &WriteTransaction) -> Result<(), IndexError> {
    txn.delete_table(BACKUP_TIMES).map_err(db)?;
    txn.delete_table(SERIES_BACKUPS).map_err(db)?;
    let backups = txn.open_table(BACKUPS).map_err(db)?;
    for item in backups.iter().map_err(db)? {
        let (key, value) = item.map_err(db)?;
        record(txn, &decode_manifest(key.value(), value.value())?, true)?;
    }
    Ok(())
}

/// Deletes both tables and opens them empty.
pub fn clear(txn: &WriteTransaction) -> Result<(), IndexError> {
    txn.delete_table(BACKUP_TIMES).map_err(db)?;
    txn.delete_table(SERIES_BACKUPS).map_err(db)?;
    create(txn)
}

pub fn create(txn: &WriteTransaction) -> Result<(), IndexError> {
    txn.open_table(BACKUP_TIMES).map_err(db)?;
    txn.open_table(SERIES_BACKUPS).map_err(db)?;
    Ok(())
}

/// The key bounds of a walk over `scope`, after `after` in the walk's direction.
fn bounds(
    scope: Scope<'_>,
    newest_first: bool,
    after: Option<&Cursor>,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let (low, high) = match scope {
        Scope::All => (Bound::Unbounded, Bound::Unbounded),
        Scope::Series(name) => {
            let mut start = name.as_bytes().to_vec();
            start.push(0);
            let mut end = name.as_bytes().to_vec();
            end.push(1);
            (Bound::Included(start), Bound::Excluded(end))
        }
        Scope::SeriesPrefix(prefix) => {
            let mut end = prefix.as_bytes().to_vec();
            // Series names are ASCII: nothing that starts with `prefix` sorts after this.
            end.push(0xff);
            (
                Bound::Included(prefix.as_bytes().to_vec()),
                Bound::Excluded(end),
            )
        }
    };
    let Some(after) = after else {
        return (low, high);
    };
    let at = match scope {
        Scope::All => time_key(after),
        Scope::Series(name) => series_key(name, after),
        // A cursor names no series; a prefix walk is not resumed.
        Scope::SeriesPrefix(_) => return (low, high),
    };
    if newest_first {
        (low, Bound::Excluded(at))
    } else {
        (Bound::Excluded(at), high)
    }
}

/// Walks the backups of `scope` in time order (oldest or newest first), after `after`,
/// asking `visit` what to do with each; returns the records of those it took.
pub fn walk(
    txn: &redb::ReadTransaction,
    scope: Scope<'_>,
    newest_first: bool,
    after: Option<&Cursor>,
    mut visit: impl FnMut(&TimelineRow) -> Visit,
) -> Result<Vec<(TimelineRow, BackupManifest)>, IndexError> {
    let table = txn
        .open_table(match scope {
            Scope::All => BACKUP_TIMES,
            Scope::Series(_) | Scope::SeriesPrefix(_) => SERIES_BACKUPS,
        })
        .map_err(db)?;
    let recycled = txn.open_table(super::schema::RECYCLED).map_err(db)?;
    let backups = txn.open_table(BACKUPS).map_err(db)?;
    let (low, high) = bounds(scope, newest_first, after);
    let range = (
        low.as_ref().map(Vec::as_slice),
        high.as_ref().map(Vec::as_slice),
    );
    let rows = table.range::<&[u8]>(range).map_err(db)?;
    let rows: Box<dyn Iterator<Item = _>> = if newest_first {
        Box::new(rows.rev())
    } else {
        Box::new(rows)
    };
    let mut taken = Vec::new();
    for item in rows {
        let (key, _) = item.map_err(db)?;
        let cursor = cursor_of(key.value())?;
        let id = cursor.id.as_str().to_string();
        let row = TimelineRow {
            recycled_at: recycled
                .get(id.as_str())
                .map_err(db)?
                .map(|v| v.value().to_string()),
            cursor,
        };
        match visit(&row) {
            Visit::Skip => {}
            Visit::Stop => break,
            Visit::Take => {
                let record =
                    backups
                        .get(id.as_str())
                        .map_err(db)?
                        .ok_or_else(|| IndexError::Corrupt {
                            what: format!("backup timeline names {id}, which has no record"),
                        })?;
                let manifest = decode_manifest(&id, record.value())?;
                taken.push((row, manifest));
            }
        }
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bytes_sort_as_times() {
        let times = [
            i64::MIN,
            -1_000_000,
            -1,
            0,
            1,
            1_700_000_000_000_000,
            i64::MAX,
        ];
        for pair in times.windows(2) {
            assert!(time_bytes(pair[0]) < time_bytes(pair[1]), "{pair:?}");
        }
        for t in times {
            assert_eq!(time_of(&time_bytes(t)), Some(t));
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let cursor = Cursor {
            micros: -42,
            id: "0b5d3f6e-2c4a-4d8e-9f10-112233445566"
                .parse()
                .expect("an id"),
        };
        assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor.clone()));
        assert_eq!(
            cursor_of(&series_key("a.b", &cursor)).ok(),
            Some(cursor.clone())
        );
        assert_eq!(cursor_of(&time_key(&cursor)).ok(), Some(cursor));
        for junk in [
            "",
            "12",
            "x_0b5d3f6e-2c4a-4d8e-9f10-112233445566",
            "12_nope",
        ] {
            assert!(junk.parse::<Cursor>().is_err(), "{junk}");
        }
        assert!(cursor_of(b"short").is_err());
    }
}
