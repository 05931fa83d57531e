//! Per-shard inverted index from routing key to subscribed connections.
//!
//! Owned by one shard, so no locks. The connection handler updates it on
//! (un)subscribe and close; `Shard::deliver` reads it once per event.
//! Invariant: a `ConnId` appears under a key at most once, and a key with no
//! subscriber is not in the index.

use ahash::AHashMap;

use super::ConnId;
use crate::event::Field;

/// Routing key -> connections, plus the admin "all" scope.
#[derive(Debug, Default)]
pub struct SubscriptionIndex {
    by_field: [AHashMap<Box<str>, Vec<ConnId>>; 3],
    scope_all: Vec<ConnId>,
    /// Entries under keys (scope all not included), kept for O(1) gauges.
    keyed_entries: usize,
}

impl SubscriptionIndex {
    /// Adds `conn` under `field = value`; idempotent.
    pub fn subscribe(&mut self, field: Field, value: &str, conn: ConnId) {
        let map = &mut self.by_field[field as usize];
        match map.get_mut(value) {
            Some(conns) => {
                if !conns.contains(&conn) {
                    conns.push(conn);
                    self.keyed_entries += 1;
                }
            }
            None => {
                map.insert(Box::from(value), vec![conn]);
                self.keyed_entries += 1;
            }
        }
    }

    /// Removes `conn` from `field = value`; drops the key when it empties.
    pub fn unsubscribe(&mut self, field: Field, value: &str, conn: ConnId) {
        let map = &mut self.by_field[field as usize];
        if let Some(conns) = map.get_mut(value) {
            if let Some(at) = conns.iter().position(|&c| c == conn) {
                conns.swap_remove(at);
                self.keyed_entries -= 1;
            }
            if conns.is_empty() {
                map.remove(value);
            }
        }
    }

    /// Gives `conn` the "all" scope; idempotent.
    pub fn add_scope_all(&mut self, conn: ConnId) {
        if !self.scope_all.contains(&conn) {
            self.scope_all.push(conn);
        }
    }

    /// Takes the "all" scope from `conn`.
    pub fn remove_scope_all(&mut self, conn: ConnId) {
        if let Some(at) = self.scope_all.iter().position(|&c| c == conn) {
            self.scope_all.swap_remove(at);
        }
    }

    /// Connections subscribed to `field = value`.
    pub fn subscribers(&self, field: Field, value: &str) -> &[ConnId] {
        self.by_field[field as usize].get(value).map_or(&[], Vec::as_slice)
    }

    /// Connections with the "all" scope.
    pub fn scope_all(&self) -> &[ConnId] {
        &self.scope_all
    }

    /// Number of keys (field, value) with at least one subscriber.
    pub fn key_count(&self) -> usize {
        self.by_field.iter().map(|map| map.len()).sum()
    }

    /// Number of (key, connection) entries, scope-all included.
    pub fn entry_count(&self) -> usize {
        self.keyed_entries + self.scope_all.len()
    }

    /// Removes every entry of `conn` for which `keep` is false; returns how
    /// many were removed. Used by the sweep to drop entries of connections
    /// that no longer exist.
    pub fn retain(&mut self, mut keep: impl FnMut(ConnId) -> bool) -> usize {
        let before = self.entry_count();
        let mut keyed_entries = 0;
        for map in &mut self.by_field {
            map.retain(|_, conns| {
                conns.retain(|&c| keep(c));
                keyed_entries += conns.len();
                !conns.is_empty()
            });
        }
        self.keyed_entries = keyed_entries;
        self.scope_all.retain(|&c| keep(c));
        before - self.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn unsubscribe_of_last_conn_removes_key() {
        let mut index = SubscriptionIndex::default();
        index.subscribe(Field::Course, "C1", ConnId(1));
        index.subscribe(Field::Course, "C1", ConnId(1));
        assert_eq!(index.subscribers(Field::Course, "C1"), &[ConnId(1)]);
        assert_eq!(index.subscribers(Field::Room, "C1"), &[] as &[ConnId]);
        index.unsubscribe(Field::Course, "C1", ConnId(1));
        assert_eq!(index.key_count(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Sub(u8, u8, u32),
        Unsub(u8, u8, u32),
        Drop(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3, 0u8..5, 0u32..6).prop_map(|(f, k, c)| Op::Sub(f, k, c)),
            (0u8..3, 0u8..5, 0u32..6).prop_map(|(f, k, c)| Op::Unsub(f, k, c)),
            (0u32..6).prop_map(Op::Drop),
        ]
    }

    proptest! {
        /// The index agrees with a plain `BTreeMap<key, BTreeSet<ConnId>>`.
        #[test]
        fn index_matches_model(ops in proptest::collection::vec(op(), 0..200)) {
            let mut index = SubscriptionIndex::default();
            let mut model: BTreeMap<(Field, String), BTreeSet<u32>> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Sub(f, k, c) => {
                        let field = Field::ALL[f as usize];
                        index.subscribe(field, &k.to_string(), ConnId(c));
                        model.entry((field, k.to_string())).or_default().insert(c);
                    }
                    Op::Unsub(f, k, c) => {
                        let field = Field::ALL[f as usize];
                        index.unsubscribe(field, &k.to_string(), ConnId(c));
                        if let Some(set) = model.get_mut(&(field, k.to_string())) {
                            set.remove(&c);
                            if set.is_empty() { model.remove(&(field, k.to_string())); }
                        }
                    }
                    Op::Drop(c) => {
                        index.retain(|conn| conn != ConnId(c));
                        model.retain(|_, set| { set.remove(&c); !set.is_empty() });
                    }
                }
            }
            prop_assert_eq!(index.key_count(), model.len());
            prop_assert_eq!(index.entry_count(), model.values().map(BTreeSet::len).sum::<usize>());
            for ((field, key), conns) in &model {
                let got: BTreeSet<u32> = index.subscribers(*field, key).iter().map(|c| c.0).collect();
                prop_assert_eq!(&got, conns);
                prop_assert_eq!(index.subscribers(*field, key).len(), conns.len());
            }
        }
    }
}
