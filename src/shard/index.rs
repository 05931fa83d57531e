//! Per-shard inverted index from routing key to subscribed connections.
//!
//! Owned by one shard, so no locks. The connection handler updates it on
//! (un)subscribe and close; `Shard::deliver` reads it once per event.
//! Delivery walks a dense `Vec<ConnId>` per key; adding and removing a
//! connection is O(1) whatever the key's audience (a position map joins the
//! vector once a key has more than `SCAN_SUBSCRIBERS` subscribers), so N
//! clients of one key leaving together cost O(N), not O(N²).
//! Invariant: a `ConnId` appears under a key at most once, and a key with no
//! subscriber is not in the index.

use ahash::AHashMap;

use super::ConnId;
use crate::event::Field;

/// Up to this many subscribers, a key finds a connection by scanning its
/// vector (one cache line or two): most keys have few subscribers, and they
/// pay for no map.
const SCAN_SUBSCRIBERS: usize = 16;

/// The connections under one key: a dense vector for delivery, plus each
/// connection's position in it once the key is popular.
#[derive(Debug, Default)]
struct Subscribers {
    conns: Vec<ConnId>,
    /// `positions[c] == i` iff `conns[i] == c`; `None` while small. Boxed:
    /// most keys never have one, and pay 8 bytes for it, not 64.
    positions: Option<Box<AHashMap<ConnId, u32>>>,
}

impl Subscribers {
    fn position(&self, conn: ConnId) -> Option<usize> {
        match &self.positions {
            Some(positions) => positions.get(&conn).map(|&at| at as usize),
            None => self.conns.iter().position(|&c| c == conn),
        }
    }

    /// Adds `conn`; false when it was there already.
    fn insert(&mut self, conn: ConnId) -> bool {
        if self.position(conn).is_some() {
            return false;
        }
        let at = u32::try_from(self.conns.len()).expect("fewer than 2^32 subscribers per key");
        self.conns.push(conn);
        match &mut self.positions {
            Some(positions) => {
                positions.insert(conn, at);
            }
            None if self.conns.len() > SCAN_SUBSCRIBERS => self.index_positions(),
            None => {}
        }
        true
    }

    /// Removes `conn` in O(1): the last subscriber takes its place.
    fn remove(&mut self, conn: ConnId) -> bool {
        let Some(at) = self.position(conn) else { return false };
        self.conns.swap_remove(at);
        if let Some(positions) = &mut self.positions {
            positions.remove(&conn);
            if let Some(&moved) = self.conns.get(at) {
                positions.insert(moved, at as u32);
            }
            if self.conns.len() <= SCAN_SUBSCRIBERS / 2 {
                // Hysteresis: a key hovering at the threshold does not
                // rebuild its map on every change.
                self.positions = None;
            }
        }
        true
    }

    fn retain(&mut self, keep: &mut impl FnMut(ConnId) -> bool) {
        let before = self.conns.len();
        self.conns.retain(|&c| keep(c));
        if self.conns.len() != before && self.positions.is_some() {
            self.positions = None;
            if self.conns.len() > SCAN_SUBSCRIBERS {
                self.index_positions();
            }
        }
    }

    fn index_positions(&mut self) {
        let positions = self.conns.iter().enumerate().map(|(at, &c)| (c, at as u32)).collect();
        self.positions = Some(Box::new(positions));
    }

    fn len(&self) -> usize {
        self.conns.len()
    }

    fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}

/// Routing key -> connections, plus the admin "all" scope.
#[derive(Debug, Default)]
pub struct SubscriptionIndex {
    by_field: [AHashMap<Box<str>, Subscribers>; 3],
    scope_all: Subscribers,
    /// Entries under keys (scope all not included), kept for O(1) gauges.
    keyed_entries: usize,
}

impl SubscriptionIndex {
    /// Adds `conn` under `field = value`; idempotent. O(1).
    pub fn subscribe(&mut self, field: Field, value: &str, conn: ConnId) {
        let map = &mut self.by_field[field as usize];
        let added = match map.get_mut(value) {
            Some(subscribers) => subscribers.insert(conn),
            None => map.entry(Box::from(value)).or_default().insert(conn),
        };
        if added {
            self.keyed_entries += 1;
        }
    }

    /// Removes `conn` from `field = value`; drops the key when it empties.
    /// O(1).
    pub fn unsubscribe(&mut self, field: Field, value: &str, conn: ConnId) {
        let map = &mut self.by_field[field as usize];
        if let Some(subscribers) = map.get_mut(value) {
            if subscribers.remove(conn) {
                self.keyed_entries -= 1;
            }
            if subscribers.is_empty() {
                map.remove(value);
            }
        }
    }

    /// Gives `conn` the "all" scope; idempotent.
    pub fn add_scope_all(&mut self, conn: ConnId) {
        self.scope_all.insert(conn);
    }

    /// Takes the "all" scope from `conn`.
    pub fn remove_scope_all(&mut self, conn: ConnId) {
        self.scope_all.remove(conn);
    }

    /// Connections subscribed to `field = value`.
    pub fn subscribers(&self, field: Field, value: &str) -> &[ConnId] {
        self.by_field[field as usize]
            .get(value)
            .map_or(&[], |subscribers| subscribers.conns.as_slice())
    }

    /// Connections with the "all" scope.
    pub fn scope_all(&self) -> &[ConnId] {
        &self.scope_all.conns
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
            map.retain(|_, subscribers| {
                subscribers.retain(&mut keep);
                keyed_entries += subscribers.len();
                !subscribers.is_empty()
            });
        }
        self.keyed_entries = keyed_entries;
        self.scope_all.retain(&mut keep);
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

    #[test]
    fn many_subscribers_of_one_key_leave_in_linear_time() {
        // 200k removals from one key: O(N²) scanning would take minutes.
        let mut index = SubscriptionIndex::default();
        let n = 200_000;
        for c in 0..n {
            index.subscribe(Field::Course, "C1", ConnId(c));
        }
        index.subscribe(Field::Course, "C1", ConnId(7));
        assert_eq!(index.entry_count(), n as usize);
        for c in (0..n).step_by(2).chain((1..n).step_by(2)) {
            index.unsubscribe(Field::Course, "C1", ConnId(c));
        }
        assert_eq!((index.entry_count(), index.key_count()), (0, 0));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Sub(u8, u8, u32),
        Unsub(u8, u8, u32),
        Drop(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            // Up to 40 connections per key: keys cross SCAN_SUBSCRIBERS
            // both ways, so the position map is exercised too.
            (0u8..3, 0u8..3, 0u32..40).prop_map(|(f, k, c)| Op::Sub(f, k, c)),
            (0u8..3, 0u8..3, 0u32..40).prop_map(|(f, k, c)| Op::Unsub(f, k, c)),
            (0u32..40).prop_map(Op::Drop),
        ]
    }

    proptest! {
        /// The index agrees with a plain `BTreeMap<key, BTreeSet<ConnId>>`.
        #[test]
        fn index_matches_model(ops in proptest::collection::vec(op(), 0..400)) {
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
