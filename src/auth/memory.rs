//! An in-memory [`SessionStore`] for unit tests: a map from session id to
//! stored value, and a switch that makes it unavailable.
//!
//! Single-threaded like the Redis client it stands in for; every call is
//! answered at once.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use super::{SessionStore, StoreError, StoreFuture};

/// Sessions in a map.
#[derive(Debug, Default)]
pub struct MemorySessionStore {
    sessions: RefCell<HashMap<String, Vec<u8>>>,
    unavailable: Cell<bool>,
}

impl MemorySessionStore {
    /// Stores `value` under `session_id`.
    pub fn insert(&self, session_id: &str, value: &[u8]) {
        self.sessions
            .borrow_mut()
            .insert(session_id.to_string(), value.to_vec());
    }

    /// Deletes `session_id`.
    pub fn remove(&self, session_id: &str) {
        self.sessions.borrow_mut().remove(session_id);
    }

    /// Makes every call fail as a store that cannot answer does
    /// (`available == false`), or answer again.
    pub fn set_available(&self, available: bool) {
        self.unavailable.set(!available);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.unavailable.get() {
            return Err(StoreError::Unavailable("memory store switched off".into()));
        }
        Ok(())
    }
}

impl SessionStore for MemorySessionStore {
    fn session<'a>(&'a self, session_id: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        let result = self.check().map(|()| self.sessions.borrow().get(session_id).cloned());
        Box::pin(async move { result })
    }

    fn sessions<'a>(&'a self, session_ids: &'a [&'a str]) -> StoreFuture<'a, Vec<Option<Vec<u8>>>> {
        let result = self.check().map(|()| {
            let sessions = self.sessions.borrow();
            session_ids.iter().map(|id| sessions.get(*id).cloned()).collect()
        });
        Box::pin(async move { result })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        let result = self.check();
        Box::pin(async move { result })
    }
}
