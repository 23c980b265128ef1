//! Coordination between garbage collection and the ingests running in this process.
//!
//! Every ingest session registers here and records every chunk id it references (found
//! in the index, being stored by another ingest, or stored by itself) in a
//! [`ReferenceFilter`]: a Bloom filter, which may keep a garbage chunk one gc longer but
//! never lets one go that a session references, at 2 bytes an id. Dedup decisions are
//! taken under the read side of [`GcCoordinator::gate`]; the sweep of the index is taken
//! under its write side. So when GC removes a chunk's index entry, no session holds a
//! reference to it that GC did not see: either the session recorded the id before the
//! sweep (and GC kept it), or it looks the chunk up after the sweep, misses, and stores
//! it again. Sessions that commit while a GC runs hand their ids over, so GC sees them too.
//!
//! Packs still being written by a session are registered as active, so GC never takes
//! them for orphans.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::reference_filter::ReferenceFilter;
use crate::id::{ChunkId, PackId};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The chunk ids one session references.
pub type SessionRefs = Arc<Mutex<ReferenceFilter>>;

#[derive(Default)]
pub struct GcCoordinator {
    /// Read: a session's dedup decision. Write: GC's index sweep.
    pub gate: RwLock<()>,
    sessions: Mutex<HashMap<u64, SessionRefs>>,
    next_session: AtomicU64,
    /// While a GC runs: ids of sessions that committed since it started.
    committed_during_gc: Mutex<Option<ReferenceFilter>>,
    active_packs: Mutex<HashSet<PackId>>,
    /// One GC at a time.
    pub gc_running: tokio::sync::Mutex<()>,
}

impl GcCoordinator {
    /// Registers a new session; returns its number and its reference set.
    pub fn register_session(&self) -> (u64, SessionRefs) {
        let number = self.next_session.fetch_add(1, Ordering::Relaxed);
        let refs = SessionRefs::default();
        lock(&self.sessions).insert(number, refs.clone());
        (number, refs)
    }

    /// Ends a session. A committed session's references are handed to a running GC.
    pub fn end_session(&self, number: u64, committed: bool) {
        let refs = lock(&self.sessions).remove(&number);
        if let (true, Some(refs)) = (committed, refs) {
            if let Some(seen) = lock(&self.committed_during_gc).as_mut() {
                seen.absorb(&lock(&refs));
            }
        }
    }

    /// Starts collecting the references of sessions that commit from now on.
    pub fn begin_gc(&self) {
        *lock(&self.committed_during_gc) = Some(ReferenceFilter::default());
    }

    /// Stops collecting.
    pub fn end_gc(&self) {
        lock(&self.committed_during_gc).take();
    }

    /// Every id referenced by running sessions, plus those of sessions that committed
    /// since `begin_gc` (and, being a filter, maybe a few others).
    pub fn referenced(&self) -> ReferenceFilter {
        let mut all = lock(&self.committed_during_gc).clone().unwrap_or_default();
        for refs in lock(&self.sessions).values() {
            all.absorb(&lock(refs));
        }
        all
    }

    /// Keeps in `ids` only those no running session references and no session that
    /// committed since `begin_gc` referenced; copies nothing.
    pub fn retain_unreferenced(&self, ids: &mut Vec<ChunkId>) {
        let committed = lock(&self.committed_during_gc);
        let sessions = lock(&self.sessions);
        let filters: Vec<MutexGuard<'_, ReferenceFilter>> =
            sessions.values().map(|refs| lock(refs)).collect();
        ids.retain(|id| {
            !committed
                .as_ref()
                .is_some_and(|seen| seen.might_contain(id))
                && !filters.iter().any(|filter| filter.might_contain(id))
        });
    }

    pub fn pack_started(&self, pack: PackId) {
        lock(&self.active_packs).insert(pack);
    }

    pub fn pack_ended(&self, pack: &PackId) {
        lock(&self.active_packs).remove(pack);
    }

    pub fn active_packs(&self) -> HashSet<PackId> {
        lock(&self.active_packs).clone()
    }
}
