//! A slab of connections keyed by [`ConnId`]: O(1) insert, lookup, remove,
//! with freed slots reused so ids stay small and the index stays dense.
//!
//! Owned by one shard. Invariant: `free` lists exactly the `None` slots.

use super::ConnId;

/// Slots of `T`, addressed by [`ConnId`].
pub struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value` in a free slot.
    pub fn insert(&mut self, value: T) -> ConnId {
        self.len += 1;
        match self.free.pop() {
            Some(at) => {
                self.slots[at as usize] = Some(value);
                ConnId(at)
            }
            None => {
                self.slots.push(Some(value));
                ConnId(self.slots.len() as u32 - 1)
            }
        }
    }

    /// Takes the value out of slot `id`.
    pub fn remove(&mut self, id: ConnId) -> Option<T> {
        let value = self.slots.get_mut(id.0 as usize)?.take()?;
        self.free.push(id.0);
        self.len -= 1;
        Some(value)
    }

    /// The value in slot `id`.
    pub fn get(&self, id: ConnId) -> Option<&T> {
        self.slots.get(id.0 as usize)?.as_ref()
    }

    /// The value in slot `id`, mutably.
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        self.slots.get_mut(id.0 as usize)?.as_mut()
    }

    /// Occupied slots.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Every occupied slot.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|v| (ConnId(i as u32), v)))
    }

    /// Every occupied slot, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ConnId, &mut T)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.as_mut().map(|v| (ConnId(i as u32), v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_slots_are_reused() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        let b = slab.insert("b");
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!(slab.remove(a), None);
        let c = slab.insert("c");
        assert_eq!(c, a);
        assert_eq!(slab.get(b), Some(&"b"));
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.iter().count(), 2);
    }
}
