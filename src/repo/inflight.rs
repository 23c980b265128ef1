//! Chunks being stored right now, shared by every ingest of one repository.
//!
//! When an ingest decides a chunk is new, it registers it here and holds a
//! [`TicketOwner`]. Another ingest meeting the same chunk deduplicates against the
//! registration instead of storing it again, and keeps the [`Ticket`]: before committing
//! its backup it waits until every such ticket is durable. The owner resolves the ticket
//! after the chunk's pack is durable *and* indexed; dropping an owner unresolved (error,
//! cancellation, panic) fails the ticket, so no dependent ever commits a backup that
//! references a chunk that was never stored.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::id::ChunkId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketState {
    Pending,
    Durable,
    Failed,
}

/// The fate of one chunk being stored.
#[derive(Debug)]
pub struct Ticket {
    state: Mutex<TicketState>,
    changed: Condvar,
    /// The ingest session storing the chunk (`Coordinator::register_session`).
    session: u64,
}

impl Ticket {
    fn new(session: u64) -> Ticket {
        Ticket {
            state: Mutex::new(TicketState::Pending),
            changed: Condvar::new(),
            session,
        }
    }

    /// The session storing the chunk. That session need not wait on its own tickets:
    /// it joins its own pack writer before it commits, which fails if any of its packs
    /// did.
    pub fn session(&self) -> u64 {
        self.session
    }

    fn set(&self, state: TicketState) {
        *lock(&self.state) = state;
        self.changed.notify_all();
    }

    pub fn state(&self) -> TicketState {
        *lock(&self.state)
    }

    /// Blocks until the chunk is durable or lost; true when durable.
    pub fn wait(&self) -> bool {
        let mut state = lock(&self.state);
        while *state == TicketState::Pending {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *state == TicketState::Durable
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not wedge every ingest: the data under these locks stays
    // consistent at every await-free step.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The registry of chunks being stored.
#[derive(Debug, Default)]
pub struct InFlight {
    pending: Mutex<HashMap<ChunkId, Arc<Ticket>>>,
}

/// What registering a chunk found.
pub enum Registration {
    /// The caller must store the chunk and resolve the owner.
    New(TicketOwner),
    /// Another ingest is storing it; wait on the ticket before committing.
    Pending(Arc<Ticket>),
}

impl InFlight {
    /// The ticket of a chunk being stored, if any.
    pub fn get(&self, id: &ChunkId) -> Option<Arc<Ticket>> {
        lock(&self.pending).get(id).cloned()
    }

    /// Registers `id` as being stored by the caller, ingest session `session`, unless
    /// someone already is.
    pub fn register(self: &Arc<Self>, id: ChunkId, session: u64) -> Registration {
        let mut pending = lock(&self.pending);
        if let Some(ticket) = pending.get(&id) {
            return Registration::Pending(ticket.clone());
        }
        let ticket = Arc::new(Ticket::new(session));
        pending.insert(id, ticket.clone());
        Registration::New(TicketOwner {
            id,
            ticket,
            registry: self.clone(),
            resolved: false,
        })
    }

    /// Number of chunks being stored.
    pub fn len(&self) -> usize {
        lock(&self.pending).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove(&self, id: &ChunkId, ticket: &Arc<Ticket>) {
        let mut pending = lock(&self.pending);
        if pending.get(id).is_some_and(|t| Arc::ptr_eq(t, ticket)) {
            pending.remove(id);
        }
    }
}

/// The obligation to store one chunk; see the module documentation.
#[derive(Debug)]
pub struct TicketOwner {
    id: ChunkId,
    ticket: Arc<Ticket>,
    registry: Arc<InFlight>,
    resolved: bool,
}

impl TicketOwner {
    pub fn id(&self) -> ChunkId {
        self.id
    }

    /// Call once the chunk's pack is durable and its index entry committed.
    pub fn resolve_durable(mut self) {
        self.resolved = true;
        self.ticket.set(TicketState::Durable);
        self.registry.remove(&self.id, &self.ticket);
    }
}

impl Drop for TicketOwner {
    fn drop(&mut self) {
        if !self.resolved {
            self.ticket.set(TicketState::Failed);
            self.registry.remove(&self.id, &self.ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_registration_waits_on_the_first() {
        let registry = Arc::new(InFlight::default());
        let Registration::New(owner) = registry.register(ChunkId([1; 32]), 1) else {
            panic!("first registration must be new");
        };
        let Registration::Pending(ticket) = registry.register(ChunkId([1; 32]), 1) else {
            panic!("second registration must be pending");
        };
        let waiter = std::thread::spawn(move || ticket.wait());
        owner.resolve_durable();
        assert!(waiter.join().unwrap());
        assert!(registry.is_empty());
    }

    #[test]
    fn dropped_owner_fails_its_ticket() {
        let registry = Arc::new(InFlight::default());
        let Registration::New(owner) = registry.register(ChunkId([2; 32]), 1) else {
            panic!("first registration must be new");
        };
        let ticket = registry.get(&ChunkId([2; 32])).unwrap();
        drop(owner);
        assert!(!ticket.wait());
        assert!(registry.get(&ChunkId([2; 32])).is_none());
    }
}
