//! Backups a page at a time, in time order, from the index's timeline: a listing reads
//! the rows of one page (and skips by keys alone), never every manifest, so it costs the
//! same with a hundred backups or a hundred thousand.

use super::lifecycle::BackupEntry;
use super::{RepoError, Repository};
use crate::index::{BackupTotals, TimelineRow, Visit};
pub use crate::index::{TimelineCursor as ListCursor, TimelineScope as ListScope};

/// Which backups a page holds.
#[derive(Debug, Clone, Copy)]
pub struct BackupQuery<'a> {
    pub scope: ListScope<'a>,
    /// Only recycled (`Some(true)`), only live (`Some(false)`), or both.
    pub recycled: Option<bool>,
    pub newest_first: bool,
    /// Start after this position (exclusive), in the walk's direction.
    pub after: Option<&'a ListCursor>,
    /// Matching backups skipped before the page (by key: their records are not read).
    pub offset: usize,
    pub limit: usize,
}

impl<'a> BackupQuery<'a> {
    /// The live backups of `scope`, oldest first, `limit` at a time.
    pub fn live(scope: ListScope<'a>, limit: usize) -> BackupQuery<'a> {
        BackupQuery {
            scope,
            recycled: Some(false),
            newest_first: false,
            after: None,
            offset: 0,
            limit,
        }
    }
}

/// One page, and where the next starts when there may be more.
#[derive(Debug, Clone)]
pub struct BackupPage {
    pub entries: Vec<BackupEntry>,
    pub next: Option<ListCursor>,
}

/// Whether `scope` can name any backup: a name with a character no series name holds
/// (a 0x00 above all, the timeline's separator) matches nothing.
fn plausible(scope: ListScope<'_>) -> bool {
    let name = match scope {
        ListScope::All => return true,
        ListScope::Series(name) | ListScope::SeriesPrefix(name) => name,
    };
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn matches(row: &TimelineRow, recycled: Option<bool>) -> bool {
    recycled.is_none_or(|wanted| row.recycled_at.is_some() == wanted)
}

impl Repository {
    /// One page of backups.
    pub fn backup_page(&self, query: &BackupQuery<'_>) -> Result<BackupPage, RepoError> {
        if !plausible(query.scope) {
            return Ok(BackupPage {
                entries: Vec::new(),
                next: None,
            });
        }
        let (mut skip, limit) = (query.offset, query.limit);
        let mut taken = 0usize;
        let rows =
            self.inner
                .index
                .walk_backups(query.scope, query.newest_first, query.after, |row| {
                    if taken >= limit {
                        Visit::Stop
                    } else if !matches(row, query.recycled) {
                        Visit::Skip
                    } else if skip > 0 {
                        skip -= 1;
                        Visit::Skip
                    } else {
                        taken += 1;
                        Visit::Take
                    }
                })?;
        let next = (rows.len() == limit)
            .then(|| rows.last().map(|(row, _)| row.cursor.clone()))
            .flatten();
        Ok(BackupPage {
            entries: rows
                .into_iter()
                .map(|(row, manifest)| BackupEntry {
                    manifest,
                    recycled_at: row.recycled_at,
                })
                .collect(),
            next,
        })
    }

    /// Every backup of `scope` in the given state, oldest first, with its record: for
    /// work that needs them all (one series, or the series of a prefix).
    pub fn backups_of(
        &self,
        scope: ListScope<'_>,
        recycled: Option<bool>,
    ) -> Result<Vec<BackupEntry>, RepoError> {
        Ok(self
            .backup_page(&BackupQuery {
                recycled,
                ..BackupQuery::live(scope, usize::MAX)
            })?
            .entries)
    }

    /// The times and ids of every backup of `scope`, oldest first, read from keys alone
    /// (no record is read): what retention needs.
    pub fn backup_times(&self, scope: ListScope<'_>) -> Result<Vec<TimelineRow>, RepoError> {
        let mut rows = Vec::new();
        if !plausible(scope) {
            return Ok(rows);
        }
        self.inner.index.walk_backups(scope, false, None, |row| {
            rows.push(row.clone());
            Visit::Skip
        })?;
        Ok(rows)
    }

    /// The newest backup of a series, recycled or not.
    pub fn newest_backup(&self, series: &str) -> Result<Option<BackupEntry>, RepoError> {
        let page = self.backup_page(&BackupQuery {
            recycled: None,
            newest_first: true,
            ..BackupQuery::live(ListScope::Series(series), 1)
        })?;
        Ok(page.entries.into_iter().next())
    }

    /// The count and sizes of the live backups of every series whose name starts with
    /// `prefix`: from the kept totals and the recycle bin, without reading the backups.
    pub fn live_totals(&self, prefix: &str) -> Result<BackupTotals, RepoError> {
        Ok(self.inner.index.live_totals(prefix)?)
    }

    /// How many backups of one series (or of all) are live, or recycled: from the kept
    /// totals and the recycle bin, without reading the backups.
    pub fn backup_count(&self, series: Option<&str>, recycled: bool) -> Result<u64, RepoError> {
        let in_bin = self.inner.index.count_recycled(series)?;
        if recycled {
            return Ok(in_bin);
        }
        let totals = self.inner.index.totals()?;
        let all = match series {
            None => totals.backups.backups,
            Some(name) => totals.series.get(name).map_or(0, |s| s.backups),
        };
        Ok(all.saturating_sub(in_bin))
    }
}
