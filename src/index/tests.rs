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
