//! Totals kept beside the tables they sum, so `stats` reads a few rows instead of
//! scanning every chunk and every backup.
//!
//! Every write transaction that adds or removes chunk, pack or backup rows applies the
//! matching [`Delta`] in the same transaction, so the totals are exactly as durable and
//! as current as the rows. They are computed by a scan once, when an index of schema
//! version 1 (which had none) is opened; `check` scans again and reports a difference.
//!
//! * `totals`: counter name → u64 (the fields of [`IndexTotals`] and of [`BackupTotals`])
//! * `series_totals`: series name → 32 bytes: backups u64 LE | logical bytes u64 LE |
//!   stream bytes u64 LE | stored bytes u64 LE (version 4; 16 bytes, the first two,
//!   before)

use std::collections::BTreeMap;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::schema::{decode_location, decode_pack, BACKUPS, CHUNKS, PACKS, RECYCLED};
use super::{db, decode_manifest, ChunkLocation, IndexError, IndexTotals, PackRecord};
use crate::format::manifest::BackupManifest;
use crate::format::pack::BlobKind;
use crate::id::{ChunkId, PackId};

pub const TOTALS: TableDefinition<&str, u64> = TableDefinition::new("totals");
pub const SERIES_TOTALS: TableDefinition<&str, [u8; 32]> = TableDefinition::new("series_totals");

/// The counters of `totals`, in the order of [`Counters`].
const NAMES: [&str; 12] = [
    "chunks",
    "chunk_raw_bytes",
    "chunk_stored_bytes",
    "lists",
    "list_raw_bytes",
    "list_stored_bytes",
    "packs",
    "pack_bytes",
    "backups",
    "logical_bytes",
    "backup_stream_bytes",
    "backup_stored_bytes",
];

/// Backups and their sizes, in all or in one series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupTotals {
    pub backups: u64,
    /// Stream plus catalog.
    pub logical_bytes: u64,
    /// The streams alone (the manifests' `size`).
    pub stream_bytes: u64,
    /// Sealed bytes the backups added to the repository when each was made (the
    /// manifests' `stored_bytes`).
    pub stored_bytes: u64,
}

impl BackupTotals {
    /// The totals of `manifest` alone.
    pub fn of(manifest: &BackupManifest) -> BackupTotals {
        BackupTotals {
            backups: 1,
            logical_bytes: logical_bytes(manifest),
            stream_bytes: manifest.size,
            stored_bytes: manifest.stored_bytes,
        }
    }

    fn as_array(&self) -> [u64; 4] {
        [
            self.backups,
            self.logical_bytes,
            self.stream_bytes,
            self.stored_bytes,
        ]
    }

    fn from_array([backups, logical_bytes, stream_bytes, stored_bytes]: [u64; 4]) -> BackupTotals {
        BackupTotals {
            backups,
            logical_bytes,
            stream_bytes,
            stored_bytes,
        }
    }

    /// Field by field, `self + other`.
    pub fn plus(&self, other: &BackupTotals) -> BackupTotals {
        let (a, b) = (self.as_array(), other.as_array());
        BackupTotals::from_array(std::array::from_fn(|i| a[i].saturating_add(b[i])))
    }

    /// Field by field, `self - other`, never below zero.
    pub fn minus(&self, other: &BackupTotals) -> BackupTotals {
        let (a, b) = (self.as_array(), other.as_array());
        BackupTotals::from_array(std::array::from_fn(|i| a[i].saturating_sub(b[i])))
    }
}

/// Everything `totals` and `series_totals` hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeptTotals {
    pub index: IndexTotals,
    pub backups: BackupTotals,
    pub series: BTreeMap<String, BackupTotals>,
}

type Counters = [i128; 12];

/// Changes to the totals made by one write transaction.
#[derive(Default)]
pub struct Delta {
    counters: Counters,
    /// Per series, changes to the fields of [`BackupTotals`] in their order.
    series: BTreeMap<String, [i128; 4]>,
}

impl Delta {
    /// A chunk row added (`sign` 1) or removed (-1).
    pub fn chunk(&mut self, location: &ChunkLocation, sign: i128) {
        let (raw, stored) = (
            i128::from(location.raw_len),
            i128::from(location.stored_len),
        );
        let base = match location.kind {
            BlobKind::Data => 0,
            BlobKind::List => 3,
        };
        self.counters[base] += sign;
        self.counters[base + 1] += sign * raw;
        self.counters[base + 2] += sign * stored;
    }

    pub fn pack(&mut self, record: &PackRecord, sign: i128) {
        self.counters[6] += sign;
        self.counters[7] += sign * i128::from(record.size);
    }

    pub fn backup(&mut self, manifest: &BackupManifest, sign: i128) {
        let fields = BackupTotals::of(manifest).as_array();
        let series = self.series.entry(manifest.series.clone()).or_default();
        for (at, field) in fields.into_iter().enumerate() {
            let change = sign * i128::from(field);
            series[at] += change;
            // The backup counters follow the index's eight in `NAMES`.
            self.counters[8 + at] += change;
        }
    }

    /// Adds the changes to the kept totals, in `txn`.
    pub fn apply(&self, txn: &WriteTransaction) -> Result<(), IndexError> {
        if self.counters.iter().any(|c| *c != 0) {
            let mut totals = txn.open_table(TOTALS).map_err(db)?;
            for (name, change) in NAMES.iter().zip(self.counters) {
                if change != 0 {
                    let now = totals.get(*name).map_err(db)?.map_or(0, |v| v.value());
                    totals.insert(*name, shifted(now, change)).map_err(db)?;
                }
            }
        }
        if !self.series.is_empty() {
            let mut table = txn.open_table(SERIES_TOTALS).map_err(db)?;
            for (series, changes) in &self.series {
                let now = table
                    .get(series.as_str())
                    .map_err(db)?
                    .map(|v| decode_series(v.value()))
                    .unwrap_or_default()
                    .as_array();
                let next =
                    BackupTotals::from_array(std::array::from_fn(|i| shifted(now[i], changes[i])));
                if next.backups == 0 {
                    table.remove(series.as_str()).map_err(db)?;
                } else {
                    table
                        .insert(series.as_str(), encode_series(&next))
                        .map_err(db)?;
                }
            }
        }
        Ok(())
    }
}

/// What a backup holds: its stream and its catalog.
pub fn logical_bytes(manifest: &BackupManifest) -> u64 {
    manifest.size + manifest.catalog.as_ref().map_or(0, |c| c.content.size)
}

/// `now + change`, kept in `0..=u64::MAX`: a total can only go wrong by a bug, and
/// `check` reports it; it must not wrap around meanwhile.
fn shifted(now: u64, change: i128) -> u64 {
    (i128::from(now) + change).clamp(0, i128::from(u64::MAX)) as u64
}

fn encode_series(totals: &BackupTotals) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (word, field) in out.chunks_exact_mut(8).zip(totals.as_array()) {
        word.copy_from_slice(&field.to_le_bytes());
    }
    out
}

fn decode_series(bytes: [u8; 32]) -> BackupTotals {
    let (words, _) = bytes.as_chunks::<8>();
    BackupTotals::from_array(std::array::from_fn(|i| {
        words.get(i).map_or(0, |word| u64::from_le_bytes(*word))
    }))
}

/// The totals of the backups of every series whose name starts with `prefix`, recycled
/// ones left out: the kept series totals in that range, less the recycled backups of
/// those series, read from the recycle bin (backups wait there only until purged).
pub fn live_with_prefix(
    txn: &redb::ReadTransaction,
    prefix: &str,
) -> Result<BackupTotals, IndexError> {
    let series = txn.open_table(SERIES_TOTALS).map_err(db)?;
    let mut all = BackupTotals::default();
    for item in series.range(prefix..).map_err(db)? {
        let (name, value) = item.map_err(db)?;
        if !name.value().starts_with(prefix) {
            break;
        }
        all = all.plus(&decode_series(value.value()));
    }
    let recycled = txn.open_table(RECYCLED).map_err(db)?;
    let backups = txn.open_table(BACKUPS).map_err(db)?;
    let mut in_bin = BackupTotals::default();
    for item in recycled.iter().map_err(db)? {
        let id = item.map_err(db)?.0;
        if let Some(record) = backups.get(id.value()).map_err(db)? {
            let manifest = decode_manifest(id.value(), record.value())?;
            if manifest.series.starts_with(prefix) {
                in_bin = in_bin.plus(&BackupTotals::of(&manifest));
            }
        }
    }
    Ok(all.minus(&in_bin))
}

/// Reads the kept totals.
pub fn read(txn: &redb::ReadTransaction) -> Result<KeptTotals, IndexError> {
    let totals = txn.open_table(TOTALS).map_err(db)?;
    let mut values = [0u64; 12];
    for (value, name) in values.iter_mut().zip(NAMES) {
        *value = totals.get(name).map_err(db)?.map_or(0, |v| v.value());
    }
    let mut series = BTreeMap::new();
    for item in txn
        .open_table(SERIES_TOTALS)
        .map_err(db)?
        .iter()
        .map_err(db)?
    {
        let (name, value) = item.map_err(db)?;
        series.insert(name.value().to_string(), decode_series(value.value()));
    }
    Ok(from_values(values, series))
}

fn from_values(values: [u64; 12], series: BTreeMap<String, BackupTotals>) -> KeptTotals {
    let [chunks, chunk_raw_bytes, chunk_stored_bytes, lists, list_raw_bytes, list_stored_bytes, packs, pack_bytes, backups, logical_bytes, stream_bytes, stored_bytes] =
        values;
    KeptTotals {
        index: IndexTotals {
            chunks,
            chunk_raw_bytes,
            chunk_stored_bytes,
            lists,
            list_raw_bytes,
            list_stored_bytes,
            packs,
            pack_bytes,
        },
        backups: BackupTotals {
            backups,
            logical_bytes,
            stream_bytes,
            stored_bytes,
        },
        series,
    }
}

/// The totals computed from the rows: a scan of every chunk, pack and backup.
pub fn scan(
    chunks: &impl ReadableTable<[u8; 32], &'static [u8]>,
    packs: &impl ReadableTable<[u8; 32], &'static [u8]>,
    backups: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<KeptTotals, IndexError> {
    let mut delta = Delta::default();
    for item in chunks.iter().map_err(db)? {
        let (key, value) = item.map_err(db)?;
        delta.chunk(&decode_location(&ChunkId(key.value()), value.value())?, 1);
    }
    for item in packs.iter().map_err(db)? {
        let (key, value) = item.map_err(db)?;
        delta.pack(&decode_pack(&PackId(key.value()), value.value())?, 1);
    }
    for item in backups.iter().map_err(db)? {
        let (key, value) = item.map_err(db)?;
        delta.backup(&decode_manifest(key.value(), value.value())?, 1);
    }
    let values = delta.counters.map(|c| shifted(0, c));
    let series = delta
        .series
        .iter()
        .map(|(name, changes)| {
            let totals = BackupTotals::from_array(changes.map(|c| shifted(0, c)));
            (name.clone(), totals)
        })
        .collect();
    Ok(from_values(values, series))
}

/// Replaces the kept totals with a scan of the rows, in `txn`.
pub fn recompute(txn: &WriteTransaction) -> Result<(), IndexError> {
    let scanned = {
        let chunks = txn.open_table(CHUNKS).map_err(db)?;
        let packs = txn.open_table(PACKS).map_err(db)?;
        let backups = txn.open_table(BACKUPS).map_err(db)?;
        scan(&chunks, &packs, &backups)?
    };
    txn.delete_table(TOTALS).map_err(db)?;
    txn.delete_table(SERIES_TOTALS).map_err(db)?;
    let mut totals = txn.open_table(TOTALS).map_err(db)?;
    let i = &scanned.index;
    let values = [
        i.chunks,
        i.chunk_raw_bytes,
        i.chunk_stored_bytes,
        i.lists,
        i.list_raw_bytes,
        i.list_stored_bytes,
        i.packs,
        i.pack_bytes,
        scanned.backups.backups,
        scanned.backups.logical_bytes,
        scanned.backups.stream_bytes,
        scanned.backups.stored_bytes,
    ];
    for (name, value) in NAMES.iter().zip(values) {
        totals.insert(*name, value).map_err(db)?;
    }
    let mut series = txn.open_table(SERIES_TOTALS).map_err(db)?;
    for (name, value) in &scanned.series {
        series
            .insert(name.as_str(), encode_series(value))
            .map_err(db)?;
    }
    Ok(())
}
