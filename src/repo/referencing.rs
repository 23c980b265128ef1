//! Where each chunk a backup session references is: in the index, being stored by an
//! ingest (whose ticket the session then waits for), or nowhere.
//!
//! The index is read first and the in-flight registry second, as dedup decisions read
//! them. A pack committed between the two reads holds chunks that are in neither: its
//! entries enter the index before its tickets leave the registry, so the first read
//! missed them and the second no longer sees them. What was found nowhere is therefore
//! read from the index once more before it is called absent. A dedup decision can take
//! such a chunk for new and store it twice; a session appending a chunk it uploaded
//! would instead refuse its own chunk as missing.

use crate::id::ChunkId;
use crate::index::ChunkLocation;

/// Where one chunk was found; `T` is what the in-flight registry hands out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Located<T> {
    Indexed(ChunkLocation),
    InFlight(T),
    Absent,
}

/// Locates `ids`: `index` looks up a batch, `in_flight` one id in the registry.
pub(crate) fn locate<T, E>(
    ids: &[ChunkId],
    mut index: impl FnMut(&[ChunkId]) -> Result<Vec<Option<ChunkLocation>>, E>,
    mut in_flight: impl FnMut(&ChunkId) -> Option<T>,
) -> Result<Vec<Located<T>>, E> {
    let mut located: Vec<Located<T>> = ids
        .iter()
        .zip(index(ids)?)
        .map(|(id, location)| match (location, in_flight(id)) {
            (_, Some(ticket)) => Located::InFlight(ticket),
            (Some(location), None) => Located::Indexed(location),
            (None, None) => Located::Absent,
        })
        .collect();
    let nowhere: Vec<(usize, ChunkId)> = ids
        .iter()
        .zip(&located)
        .enumerate()
        .filter(|(_, (_, found))| matches!(found, Located::Absent))
        .map(|(at, (id, _))| (at, *id))
        .collect();
    if nowhere.is_empty() {
        return Ok(located);
    }
    let again: Vec<ChunkId> = nowhere.iter().map(|(_, id)| *id).collect();
    for ((at, _), location) in nowhere.into_iter().zip(index(&again)?) {
        if let (Some(location), Some(slot)) = (location, located.get_mut(at)) {
            *slot = Located::Indexed(location);
        }
    }
    Ok(located)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::BlobKind;
    use crate::id::PackId;

    fn location(n: u8) -> ChunkLocation {
        ChunkLocation {
            pack: PackId([n; 32]),
            kind: BlobKind::Data,
            offset: 0,
            stored_len: 10,
            raw_len: 10,
        }
    }

    #[test]
    fn a_chunk_committed_between_the_two_reads_is_indexed_not_absent() {
        let (indexed, flying, committing, nowhere) = (
            ChunkId([1; 32]),
            ChunkId([2; 32]),
            ChunkId([3; 32]),
            ChunkId([4; 32]),
        );
        let committed = std::cell::Cell::new(false);
        let mut reads = 0;
        let located = locate::<&str, ()>(
            &[indexed, flying, committing, nowhere],
            |ids| {
                reads += 1;
                Ok(ids
                    .iter()
                    .map(|id| match *id {
                        id if id == indexed => Some(location(1)),
                        id if id == committing && committed.get() => Some(location(3)),
                        _ => None,
                    })
                    .collect())
            },
            |id| {
                // The pack of `committing` is committed, and its ticket resolved, just
                // before the registry is asked about it.
                if *id == committing {
                    committed.set(true);
                }
                (*id == flying).then_some("ticket")
            },
        )
        .expect("located");
        assert_eq!(
            located,
            vec![
                Located::Indexed(location(1)),
                Located::InFlight("ticket"),
                Located::Indexed(location(3)),
                Located::Absent,
            ]
        );
        assert_eq!(reads, 2);
        let found_at_once = locate::<&str, ()>(
            &[indexed],
            |ids| Ok(ids.iter().map(|_| Some(location(1))).collect()),
            |_| None,
        )
        .expect("located");
        assert_eq!(found_at_once, vec![Located::Indexed(location(1))]);
    }
}
