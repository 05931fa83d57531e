//! A connection's filter set (SPEC §4): which routing keys it subscribed to.
//!
//! Owned by the connection on its shard and mirrored in the shard's index.
//! Invariant: no (field, value) pair appears twice.

use crate::event::Field;

/// A filter set: (field, value) pairs in the order first subscribed, no
/// duplicates. One vector, not one per field: a connection at rest holds a
/// single small allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    entries: Vec<(Field, Box<str>)>,
}

impl Filters {
    /// Values subscribed for `field`, in subscription order.
    pub fn values(&self, field: Field) -> impl Iterator<Item = &str> {
        self.entries.iter().filter(move |(f, _)| *f == field).map(|(_, v)| &**v)
    }

    /// Total number of values over all fields.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No value at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `field` has `value`.
    pub fn contains(&self, field: Field, value: &str) -> bool {
        self.entries.iter().any(|(f, v)| *f == field && &**v == value)
    }

    /// Adds `value` unless present; true when added.
    pub fn insert(&mut self, field: Field, value: &str) -> bool {
        if self.contains(field, value) {
            return false;
        }
        // Exact growth: most connections hold one or two filters, and the
        // default growth would reserve four slots for the first.
        self.entries.reserve_exact(1);
        self.entries.push((field, Box::from(value)));
        true
    }

    /// Removes `value`; true when it was present.
    pub fn remove(&mut self, field: Field, value: &str) -> bool {
        let at = self.entries.iter().position(|(f, v)| *f == field && &**v == value);
        match at {
            Some(at) => {
                self.entries.remove(at);
                true
            }
            None => false,
        }
    }

    /// Every (field, value).
    pub fn iter(&self) -> impl Iterator<Item = (Field, &str)> {
        self.entries.iter().map(|(f, v)| (*f, &**v))
    }

    /// How many of `other`'s values are not in `self` yet.
    pub fn count_new(&self, other: &Filters) -> usize {
        other.iter().filter(|(f, v)| !self.contains(*f, v)).count()
    }

    /// Releases all memory (connections at rest should hold none).
    pub fn clear(&mut self) {
        self.entries = Vec::new();
    }
}
