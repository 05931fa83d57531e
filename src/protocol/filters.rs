//! A connection's filter set (SPEC §4): which routing keys it subscribed to.
//!
//! Owned by the connection on its shard and mirrored in the shard's index.
//! Bounded by `--max-filters` values of at most `--max-filter-value-bytes`
//! each, so a set, and the `subscribed` reply that echoes it, is at most
//! count × size. Every operation that takes a second set is linear in both
//! sizes (a hash set for membership once the sets are not tiny), never
//! count × count.
//! Invariant: no (field, value) pair appears twice.

use ahash::AHashSet;

use crate::event::Field;

/// Below this many comparisons (`self.len() * other.len()`), a linear scan
/// beats building a hash set. Connections hold one or two filters, so the
/// common subscribe takes this path and allocates nothing extra.
const SCAN_COMPARISONS: usize = 64;

/// A filter set: (field, value) pairs in the order first subscribed, no
/// duplicates. One vector, not one per field: a connection at rest holds a
/// single small allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    entries: Vec<(Field, Box<str>)>,
}

/// Too many distinct values: the set would hold more than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit;

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

    /// Whether `field` has `value`. O(n): for one-off checks.
    pub fn contains(&self, field: Field, value: &str) -> bool {
        self.entries.iter().any(|(f, v)| *f == field && &**v == value)
    }

    /// Adds `value` unless present; true when added. O(n): to add many at
    /// once use [`Filters::extend_within`].
    pub fn insert(&mut self, field: Field, value: &str) -> bool {
        if self.contains(field, value) {
            return false;
        }
        self.push_distinct(field, value);
        true
    }

    /// Adds a value the caller knows is not in the set yet.
    pub(super) fn push_distinct(&mut self, field: Field, value: &str) {
        // Exact growth: most connections hold one or two filters, and the
        // default growth would reserve four slots for the first.
        self.entries.reserve_exact(1);
        self.entries.push((field, Box::from(value)));
    }

    /// Removes `value`; true when it was present. O(n), n bounded by
    /// `--max-filters`.
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

    /// Adds every value of `other` not present yet, unless the set would
    /// then hold more than `max` values (then nothing changes). Returns the
    /// values added: the tail of [`Filters::iter`] from the returned index.
    /// O(n + k); `other`'s values are moved, not copied.
    pub fn extend_within(&mut self, other: Filters, max: usize) -> Result<usize, OverLimit> {
        let fresh: Vec<(Field, Box<str>)> = if self.len() * other.len() <= SCAN_COMPARISONS {
            other
                .entries
                .into_iter()
                .filter(|(f, v)| !self.contains(*f, v))
                .collect()
        } else {
            let present = self.lookup();
            other
                .entries
                .into_iter()
                .filter(|(f, v)| !present.contains(&(*f, &**v)))
                .collect()
        };
        if self.len() + fresh.len() > max {
            return Err(OverLimit);
        }
        let start = self.len();
        self.entries.reserve_exact(fresh.len());
        self.entries.extend(fresh);
        Ok(start)
    }

    /// Removes every value that is in `other`, calling `removed` for each.
    /// O(n + k).
    pub fn remove_all(&mut self, other: &Filters, mut removed: impl FnMut(Field, &str)) {
        let mut gone = |f: Field, v: &str, hit: bool| {
            if hit {
                removed(f, v);
            }
            !hit
        };
        if self.len() * other.len() <= SCAN_COMPARISONS {
            self.entries.retain(|(f, v)| gone(*f, v, other.contains(*f, v)));
        } else {
            let doomed = other.lookup();
            self.entries.retain(|(f, v)| gone(*f, v, doomed.contains(&(*f, &**v))));
        }
        if self.entries.is_empty() {
            self.clear();
        }
    }

    /// Releases all memory (connections at rest should hold none).
    pub fn clear(&mut self) {
        self.entries = Vec::new();
    }

    fn lookup(&self) -> AHashSet<(Field, &str)> {
        self.iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(values: &[&str]) -> Filters {
        let mut filters = Filters::default();
        for value in values {
            filters.insert(Field::Course, value);
        }
        filters
    }

    fn big(prefix: &str, n: usize) -> Filters {
        let mut filters = Filters::default();
        for i in 0..n {
            filters.push_distinct(Field::Room, &format!("{prefix}{i}"));
        }
        filters
    }

    #[test]
    fn extend_adds_only_new_values_in_order() {
        let mut filters = set(&["a", "b"]);
        let start = filters.extend_within(set(&["b", "c"]), 3).expect("within the limit");
        assert_eq!(start, 2);
        let values: Vec<&str> = filters.values(Field::Course).collect();
        assert_eq!(values, ["a", "b", "c"]);
    }

    #[test]
    fn extend_over_the_limit_changes_nothing() {
        let mut filters = set(&["a"]);
        assert_eq!(filters.extend_within(set(&["b", "c"]), 2), Err(OverLimit));
        assert_eq!(filters, set(&["a"]));
    }

    #[test]
    fn large_sets_take_the_hash_path_and_agree_with_the_scan() {
        let mut filters = big("r", 100);
        let start = filters.extend_within(big("r", 150), 150).expect("50 new of 150");
        assert_eq!((start, filters.len()), (100, 150));
        let mut removed = 0;
        filters.remove_all(&big("r", 120), |_, _| removed += 1);
        assert_eq!((removed, filters.len()), (120, 30));
        assert!(filters.contains(Field::Room, "r149") && !filters.contains(Field::Room, "r0"));
    }

    #[test]
    fn removing_everything_releases_the_allocation() {
        let mut filters = set(&["a", "b"]);
        filters.remove_all(&set(&["a", "b", "z"]), |_, _| {});
        assert!(filters.is_empty());
        assert_eq!(filters.entries.capacity(), 0);
    }
}
