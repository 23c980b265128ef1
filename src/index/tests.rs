//! Unit tests of the index façade.

use super::*;

fn entry(n: u8, offset: u32) -> PackEntry {
    PackEntry {
        id: ChunkId([n; 32]),
        kind: BlobKind::Data,
        offset,
        stored_len: 100,
        raw_len: 200,
    }
}

#[test]
fn commit_lookup_and_first_location_wins() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(&dir.path().join("index.redb")).unwrap();
    let pack_a = PackId([9; 32]);
    let record = PackRecord {
        size: 1000,
        blobs: 2,
        created: 1,
    };
    index
        .commit_pack(pack_a, record, &[entry(1, 16), entry(2, 116)])
        .unwrap();
    index
        .commit_pack(PackId([8; 32]), record, &[entry(2, 16)])
        .unwrap();
    let found = index
        .lookup_chunks(&[ChunkId([1; 32]), ChunkId([2; 32]), ChunkId([3; 32])])
        .unwrap();
    assert_eq!(found[0].unwrap().pack, pack_a);
    assert_eq!(found[1].unwrap().pack, pack_a);
    assert_eq!(found[1].unwrap().offset, 116);
    assert!(found[2].is_none());
    let totals = index.totals().unwrap().index;
    assert_eq!(
        (totals.chunks, totals.packs, totals.pack_bytes),
        (2, 2, 2000)
    );
    index.clear().unwrap();
    assert_eq!(index.chunk_count().unwrap(), 0);
}

fn manifest(id: &str, series: &str, size: u64) -> BackupManifest {
    BackupManifest {
        id: id.parse().unwrap(),
        series: series.into(),
        size,
        ..BackupManifest::sample()
    }
}

#[test]
fn kept_totals_follow_every_change_and_an_old_index_gets_them_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    let index = Index::open(&path).unwrap();
    let agrees = |index: &Index| {
        let kept = index.totals().unwrap();
        assert_eq!(kept, index.scan_totals().unwrap());
        kept
    };
    let record = |size| PackRecord {
        size,
        blobs: 2,
        created: 1,
    };
    let (a, b, c) = (PackId([1; 32]), PackId([2; 32]), PackId([3; 32]));
    let mut leaf = entry(3, 300);
    leaf.kind = BlobKind::List;
    index
        .commit_pack(a, record(1000), &[entry(1, 16), entry(2, 116)])
        .unwrap();
    index
        .commit_pack(b, record(500), &[entry(2, 16), leaf])
        .unwrap();
    let first = "11111111-1111-4111-8111-111111111111";
    let second = "22222222-2222-4222-8222-222222222222";
    index.put_backup(&manifest(first, "db", 300)).unwrap();
    index.put_backup(&manifest(second, "db", 50)).unwrap();
    // The same id again replaces the record: counted once, with its new figures.
    index.put_backup(&manifest(second, "web", 70)).unwrap();
    let kept = agrees(&index);
    assert_eq!(
        (kept.index.chunks, kept.index.lists, kept.index.packs),
        (2, 1, 2)
    );
    assert_eq!(
        (kept.index.chunk_raw_bytes, kept.index.pack_bytes),
        (400, 1500)
    );
    assert_eq!((kept.backups.backups, kept.backups.logical_bytes), (2, 370));
    assert_eq!(kept.series.len(), 2);
    index
        .relocate(c, record(300), &[entry(1, 8)], &[a])
        .unwrap();
    index
        .remove_chunks(&[ChunkId([2; 32]), ChunkId([7; 32])])
        .unwrap();
    index.remove_backup(&first.parse().unwrap()).unwrap();
    let kept = agrees(&index);
    assert_eq!((kept.index.chunks, kept.index.packs), (1, 2));
    assert_eq!(kept.series.keys().collect::<Vec<_>>(), vec!["web"]);
    index.forget_packs_and_their_chunks(&[b]).unwrap();
    index.remove_packs(&[c]).unwrap();
    assert_eq!(agrees(&index).index.packs, 0);
    index.commit_pack(a, record(1000), &[entry(1, 16)]).unwrap();
    let before = agrees(&index);
    // An index of schema version 1 had no totals: they are counted on open.
    {
        let txn = index.database().begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(SCHEMA_VERSION_KEY, 1)
            .unwrap();
        txn.delete_table(totals::TOTALS).unwrap();
        txn.delete_table(totals::SERIES_TOTALS).unwrap();
        txn.commit().unwrap();
    }
    drop(index);
    let index = Index::open(&path).unwrap();
    assert_eq!(agrees(&index), before);
    index.clear().unwrap();
    assert_eq!(agrees(&index), KeptTotals::default());
}

#[test]
fn second_open_in_another_handle_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    let _first = Index::open(&path).unwrap();
    assert!(matches!(Index::open(&path), Err(IndexError::Locked { .. })));
}

/// A manifest with a time, for the timeline tests.
fn dated(n: u8, series: &str, created_at: &str) -> BackupManifest {
    BackupManifest {
        created_at: created_at.into(),
        ..manifest(&format!("{n:08x}-1111-4111-8111-111111111111"), series, 1)
    }
}

fn ids(rows: &[(TimelineRow, BackupManifest)]) -> Vec<String> {
    rows.iter()
        .map(|(row, m)| {
            assert_eq!(row.cursor.id, m.id, "a row's record is its own");
            m.id.as_str()[..8].to_string()
        })
        .collect()
}

#[test]
fn the_timeline_orders_backups_per_series_and_follows_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    let index = Index::open(&path).unwrap();
    // Put out of order; a pre-1970 time and an unreadable one sort first.
    index
        .put_backup(&dated(3, "db", "2026-03-01T00:00:00.000000Z"))
        .unwrap();
    index
        .put_backup(&dated(1, "db", "2026-01-01T00:00:00Z"))
        .unwrap();
    index
        .put_backup(&dated(2, "db-old", "1969-07-20T20:17:00Z"))
        .unwrap();
    index.put_backup(&dated(4, "web", "not a time")).unwrap();
    index
        .put_backup(&dated(5, "db", "2026-02-01T00:00:00+01:00"))
        .unwrap();
    let take_all = |_: &TimelineRow| Visit::Take;
    let walk = |scope, newest_first, after: Option<&TimelineCursor>| {
        ids(&index
            .walk_backups(scope, newest_first, after, take_all)
            .unwrap())
    };
    assert_eq!(
        walk(TimelineScope::All, false, None),
        ["00000004", "00000002", "00000001", "00000005", "00000003"]
    );
    assert_eq!(
        walk(TimelineScope::Series("db"), true, None),
        ["00000003", "00000005", "00000001"]
    );
    // "db" is a prefix of "db-old" but its own scope holds only its rows.
    assert_eq!(
        walk(TimelineScope::Series("db-old"), false, None),
        ["00000002"]
    );
    assert_eq!(
        walk(TimelineScope::SeriesPrefix("db"), false, None),
        ["00000001", "00000005", "00000003", "00000002"]
    );
    // A cursor resumes after its row, in either direction, and outlives its backup.
    let middle = TimelineCursor::of(&dated(5, "db", "2026-02-01T00:00:00+01:00"));
    assert_eq!(
        walk(TimelineScope::Series("db"), false, Some(&middle)),
        ["00000003"]
    );
    assert_eq!(
        walk(TimelineScope::Series("db"), true, Some(&middle)),
        ["00000001"]
    );
    index.remove_backup(&middle.id).unwrap();
    assert_eq!(
        walk(TimelineScope::Series("db"), true, Some(&middle)),
        ["00000001"]
    );
    assert_eq!(
        walk(TimelineScope::All, true, Some(&middle)),
        ["00000001", "00000002", "00000004"]
    );
    // Replacing a record under the same id moves its rows.
    index
        .put_backup(&dated(1, "web", "2027-01-01T00:00:00Z"))
        .unwrap();
    assert_eq!(walk(TimelineScope::Series("db"), false, None), ["00000003"]);
    assert_eq!(
        walk(TimelineScope::Series("web"), false, None),
        ["00000004", "00000001"]
    );
    // Rows carry the recycle mark; a skipped row's record is not read.
    index
        .set_recycled(&dated(3, "db", "").id, Some("2026-04-01T00:00:00Z"))
        .unwrap();
    let mut seen = Vec::new();
    let taken = index
        .walk_backups(TimelineScope::All, false, None, |row| {
            seen.push(row.recycled_at.clone());
            Visit::Skip
        })
        .unwrap();
    assert!(taken.is_empty());
    assert_eq!(seen.iter().filter(|r| r.is_some()).count(), 1);
    assert_eq!(index.count_recycled(None).unwrap(), 1);
    assert_eq!(index.count_recycled(Some("db")).unwrap(), 1);
    assert_eq!(index.count_recycled(Some("web")).unwrap(), 0);
    let stop_after_one = {
        let mut n = 0;
        move |_: &TimelineRow| {
            n += 1;
            if n > 1 {
                Visit::Stop
            } else {
                Visit::Take
            }
        }
    };
    assert_eq!(
        ids(&index
            .walk_backups(TimelineScope::All, false, None, stop_after_one)
            .unwrap()),
        ["00000004"]
    );
    let before = walk(TimelineScope::All, false, None);
    // An index of schema version 2 had no timeline: it is built on open.
    {
        let txn = index.database().begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(SCHEMA_VERSION_KEY, 2)
            .unwrap();
        txn.delete_table(timeline::BACKUP_TIMES).unwrap();
        txn.delete_table(timeline::SERIES_BACKUPS).unwrap();
        txn.commit().unwrap();
    }
    drop(index);
    let index = Index::open(&path).unwrap();
    let walk = |scope| ids(&index.walk_backups(scope, false, None, take_all).unwrap());
    assert_eq!(walk(TimelineScope::All), before);
    assert_eq!(walk(TimelineScope::Series("web")), ["00000004", "00000001"]);
    index.clear().unwrap();
    assert!(walk(TimelineScope::All).is_empty());
}

#[test]
fn live_totals_of_a_series_prefix_leave_out_the_recycled_and_a_version_3_index_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    let index = Index::open(&path).unwrap();
    let sized = |id: &str, series: &str, size: u64, stored: u64| BackupManifest {
        stored_bytes: stored,
        ..manifest(id, series, size)
    };
    let ids = [
        "11111111-1111-4111-8111-111111111111",
        "22222222-2222-4222-8222-222222222222",
        "33333333-3333-4333-8333-333333333333",
        "44444444-4444-4444-8444-444444444444",
    ];
    index.put_backup(&sized(ids[0], "cb-1-a", 100, 10)).unwrap();
    index.put_backup(&sized(ids[1], "cb-1-b", 200, 20)).unwrap();
    index.put_backup(&sized(ids[2], "cb-1-b", 400, 40)).unwrap();
    index
        .put_backup(&sized(ids[3], "cb-12-a", 800, 80))
        .unwrap();
    index
        .set_recycled(&ids[2].parse().unwrap(), Some("2026-01-01T00:00:00Z"))
        .unwrap();
    let live = index.live_totals("cb-1-").unwrap();
    assert_eq!(
        (live.backups, live.stream_bytes, live.stored_bytes),
        (2, 300, 30),
        "cb-12-a is not under cb-1-, and the recycled backup is left out"
    );
    assert_eq!(index.live_totals("cb-12-").unwrap().stored_bytes, 80);
    assert_eq!(index.live_totals("none-").unwrap(), BackupTotals::default());
    let kept = index.totals().unwrap();
    assert_eq!(kept, index.scan_totals().unwrap());
    assert_eq!(
        (kept.backups.stream_bytes, kept.backups.stored_bytes),
        (1500, 150)
    );

    // A version-3 index kept 16 bytes per series: its totals are counted again on open.
    let before = index.totals().unwrap();
    {
        let txn = index.database().begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(SCHEMA_VERSION_KEY, 3)
            .unwrap();
        txn.delete_table(totals::TOTALS).unwrap();
        txn.delete_table(totals::SERIES_TOTALS).unwrap();
        let old: redb::TableDefinition<&str, [u8; 16]> =
            redb::TableDefinition::new("series_totals");
        txn.open_table(old)
            .unwrap()
            .insert("cb-1-a", [1; 16])
            .unwrap();
        txn.commit().unwrap();
    }
    drop(index);
    let index = Index::open(&path).unwrap();
    assert_eq!(index.totals().unwrap(), before);
    assert_eq!(index.live_totals("cb-1-").unwrap().stored_bytes, 30);
}

#[test]
fn compaction_gives_back_the_free_space_and_keeps_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = Index::open(&dir.path().join("index.redb")).unwrap();
    let record = PackRecord {
        size: 1000,
        blobs: 1,
        created: 1,
    };
    let id = |pack: u32, n: u32| {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&pack.to_le_bytes());
        bytes[4..8].copy_from_slice(&n.to_le_bytes());
        ChunkId(bytes)
    };
    // Many transactions, then half the packs forgotten: pages left free in the file.
    let packs: Vec<PackId> = (0..200u32)
        .map(|pack| {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&pack.to_le_bytes());
            let entries: Vec<PackEntry> = (0..500u32)
                .map(|n| PackEntry {
                    id: id(pack, n),
                    ..entry(0, 16 + n * 100)
                })
                .collect();
            index.commit_pack(PackId(bytes), record, &entries).unwrap();
            PackId(bytes)
        })
        .collect();
    index.forget_packs_and_their_chunks(&packs[..100]).unwrap();
    let (before, after) = index.compact().unwrap();
    assert!(after < before, "{before} -> {after} bytes");
    assert_eq!(index.chunk_count().unwrap(), 100 * 500);
    let found = index.lookup_chunks(&[id(150, 7), id(50, 7)]).unwrap();
    assert_eq!(found[0].unwrap().pack, packs[150]);
    assert!(found[1].is_none());
    drop(index);
    let reopened = Index::open(&dir.path().join("index.redb")).unwrap();
    assert_eq!(reopened.chunk_count().unwrap(), 100 * 500);
}
