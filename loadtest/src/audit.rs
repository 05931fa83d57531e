//! Exact-delivery audit: every subscriber gets exactly the events of its
//! keys, each once, in send order per key.
//!
//! `SentLog` is written by the producer thread (one ordered list of seqs per
//! key, shared) and read by every subscriber task; each subscriber keeps a
//! `SubscriberAudit`, a cursor per subscribed key into that list, so the audit
//! costs a few words per subscriber however many events flow.
//! Invariant: the producer records a seq before it sends it, and seqs grow, so
//! every list is sorted and a delivered seq is already in it.

use std::sync::RwLock;

use serde::Serialize;

/// Longest list of skipped seqs a subscriber remembers to tell a late
/// (out-of-order) arrival from a duplicate; beyond it a gap only counts as
/// missing, and a late arrival from it counts as a duplicate.
const SKIPPED_CAP: usize = 4096;

/// Seqs sent per key, in send order.
pub struct SentLog {
    keys: Vec<RwLock<Vec<u64>>>,
}

impl SentLog {
    /// An empty log for `key_count` keys.
    pub fn new(key_count: u32) -> Self {
        SentLog {
            keys: (0..key_count).map(|_| RwLock::new(Vec::new())).collect(),
        }
    }

    /// Records that event `seq` goes to `key`. Call before sending it.
    pub fn record(&self, key: u32, seq: u64) {
        self.keys[key as usize].write().expect("sent log poisoned").push(seq);
    }

    /// Events sent so far to `key`.
    pub fn sent_count(&self, key: u32) -> u64 {
        self.keys[key as usize].read().expect("sent log poisoned").len() as u64
    }
}

/// Outcome counts of the audit, per subscriber or summed over all.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AuditTally {
    /// Events this subscriber should have received (sent to its keys).
    pub expected: u64,
    /// Distinct expected events received (in order or late).
    pub received: u64,
    /// Expected events never received.
    pub missing: u64,
    /// Events received more than once (each extra copy counts).
    pub duplicate: u64,
    /// Events received after a later event of the same key.
    pub out_of_order: u64,
    /// Events for a key the subscriber did not subscribe to, or a seq never
    /// sent to that key.
    pub misrouted: u64,
    /// `availability.updated` messages we could not parse.
    pub malformed: u64,
}

impl AuditTally {
    /// True when every count that signals a delivery fault is zero.
    pub fn is_exact(&self) -> bool {
        self.missing + self.duplicate + self.out_of_order + self.misrouted + self.malformed == 0
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &AuditTally) {
        self.expected += other.expected;
        self.received += other.received;
        self.missing += other.missing;
        self.duplicate += other.duplicate;
        self.out_of_order += other.out_of_order;
        self.misrouted += other.misrouted;
        self.malformed += other.malformed;
    }
}

struct KeyCursor {
    key: u32,
    /// Index into the key's sent list of the next seq we expect.
    next_index: u32,
}

/// One subscriber's audit state.
pub struct SubscriberAudit {
    /// Sorted by key.
    cursors: Vec<KeyCursor>,
    /// Seqs jumped over by a gap, as (key, seq); normally empty.
    skipped: Vec<(u32, u64)>,
    skipped_overflow: u64,
    tally: AuditTally,
}

impl SubscriberAudit {
    /// Audit for a subscriber of `keys` (sorted, distinct).
    pub fn new(keys: &[u32]) -> Self {
        SubscriberAudit {
            cursors: keys.iter().map(|&key| KeyCursor { key, next_index: 0 }).collect(),
            skipped: Vec::new(),
            skipped_overflow: 0,
            tally: AuditTally::default(),
        }
    }

    /// Counts a message we could not parse.
    pub fn observe_malformed(&mut self) {
        self.tally.malformed += 1;
    }

    /// Checks one delivery of event `seq` for `key` (`None`: a key name that
    /// is not in the key space).
    pub fn observe(&mut self, log: &SentLog, key: Option<u32>, seq: u64) {
        let Some(key) = key else {
            self.tally.misrouted += 1;
            return;
        };
        let Ok(c) = self.cursors.binary_search_by_key(&key, |c| c.key) else {
            self.tally.misrouted += 1;
            return;
        };
        let cursor = &mut self.cursors[c];
        let sent = log.keys[key as usize].read().expect("sent log poisoned");
        let next = cursor.next_index as usize;
        if sent.get(next) == Some(&seq) {
            cursor.next_index += 1;
            self.tally.received += 1;
            return;
        }
        match sent.binary_search(&seq) {
            Err(_) => self.tally.misrouted += 1,
            Ok(p) if p > next => {
                // A gap: the seqs in between are missing unless they come late.
                for &s in &sent[next..p] {
                    if self.skipped.len() < SKIPPED_CAP {
                        self.skipped.push((key, s));
                    } else {
                        self.skipped_overflow += 1;
                    }
                }
                cursor.next_index = p as u32 + 1;
                self.tally.received += 1;
            }
            Ok(_) => match self.skipped.iter().position(|&e| e == (key, seq)) {
                Some(i) => {
                    self.skipped.swap_remove(i);
                    self.tally.out_of_order += 1;
                    self.tally.received += 1;
                }
                None => self.tally.duplicate += 1,
            },
        }
    }

    /// Final counts, once no more deliveries are coming.
    pub fn finish(&self, log: &SentLog) -> AuditTally {
        let mut tally = self.tally;
        for c in &self.cursors {
            let sent = log.sent_count(c.key);
            tally.expected += sent;
            tally.missing += sent - c.next_index as u64;
        }
        tally.missing += self.skipped.len() as u64 + self.skipped_overflow;
        tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys 0 and 1; key 0 gets seqs 0,2,4,6, key 1 gets 1,3,5.
    fn log() -> SentLog {
        let log = SentLog::new(3);
        for seq in 0..7 {
            log.record((seq % 2) as u32, seq);
        }
        log
    }

    fn run(keys: &[u32], deliveries: &[(u32, u64)]) -> AuditTally {
        let log = log();
        let mut audit = SubscriberAudit::new(keys);
        for &(k, s) in deliveries {
            audit.observe(&log, Some(k), s);
        }
        audit.finish(&log)
    }

    #[test]
    fn exact_delivery_passes() {
        let t = run(&[0, 1], &[(0, 0), (1, 1), (0, 2), (1, 3), (0, 4), (1, 5), (0, 6)]);
        assert!(t.is_exact(), "{t:?}");
        assert_eq!((t.expected, t.received), (7, 7));
    }

    #[test]
    fn missing_event_is_detected() {
        let t = run(&[0], &[(0, 0), (0, 2), (0, 6)]);
        assert_eq!(t.missing, 1, "{t:?}");
        assert_eq!(t.received, 3);
        let tail = run(&[1], &[(1, 1)]);
        assert_eq!(tail.missing, 2, "{tail:?}");
        assert!(!tail.is_exact());
    }

    #[test]
    fn duplicate_event_is_detected() {
        let t = run(&[0], &[(0, 0), (0, 2), (0, 2), (0, 4), (0, 6), (0, 0)]);
        assert_eq!(t.duplicate, 2, "{t:?}");
        assert_eq!(t.missing, 0);
        assert!(!t.is_exact());
    }

    #[test]
    fn late_event_counts_as_out_of_order_not_missing() {
        let t = run(&[0], &[(0, 0), (0, 4), (0, 2), (0, 6)]);
        assert_eq!((t.out_of_order, t.missing, t.received), (1, 0, 4), "{t:?}");
        assert!(!t.is_exact());
    }

    #[test]
    fn foreign_key_and_unsent_seq_are_misrouted() {
        let log = log();
        let mut audit = SubscriberAudit::new(&[0, 1]);
        for s in [0, 2, 4, 6] {
            audit.observe(&log, Some(0), s);
        }
        for s in [1, 3, 5] {
            audit.observe(&log, Some(1), s);
        }
        audit.observe(&log, Some(2), 9); // key not subscribed
        audit.observe(&log, Some(0), 3); // seq sent to key 1, not key 0
        audit.observe(&log, None, 1); // key name outside the key space
        audit.observe_malformed();
        let t = audit.finish(&log);
        assert_eq!((t.misrouted, t.malformed, t.missing), (3, 1, 0), "{t:?}");
    }

    #[test]
    fn tallies_add_up() {
        let mut sum = AuditTally::default();
        sum.add(&run(&[0], &[(0, 0)]));
        sum.add(&run(&[1], &[(1, 1), (1, 1)]));
        assert_eq!((sum.expected, sum.missing, sum.duplicate), (7, 5, 1));
    }
}
