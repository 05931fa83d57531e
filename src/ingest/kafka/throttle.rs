//! Say a repeated problem once, then at most every few seconds with a count.
//!
//! librdkafka reports an unreachable broker about twenty times a second
//! (`AllBrokersDown` from the error callback, `FAIL` lines from the log
//! callback, consumer errors from `poll`); the metrics count every one, the
//! log needs one line per kind and period. Used from librdkafka's threads
//! and the ingest and topology threads, hence the mutex; it is taken only on
//! the error path.
//! Invariant: per key, at most one line is admitted per `every`, and the
//! first line of a key is always admitted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a repeated kind of problem is logged again. Default of
/// [`LogThrottle::default`].
pub const REPEAT_EVERY: Duration = Duration::from_secs(5);

/// Kinds of problem tracked at once; past this the table starts over (the
/// keys are error codes and log facilities, a small set).
const MAX_KEYS: usize = 64;

/// Per-kind log rate limit.
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    keys: Mutex<HashMap<String, Slot>>,
}

#[derive(Debug)]
struct Slot {
    logged_at: Instant,
    held_back: u64,
}

impl Default for LogThrottle {
    fn default() -> Self {
        LogThrottle::new(REPEAT_EVERY)
    }
}

impl LogThrottle {
    /// A throttle that lets one line per key through every `every`.
    pub fn new(every: Duration) -> LogThrottle {
        LogThrottle {
            every,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a line of kind `key` may be logged now: `Some(n)` with the
    /// number of lines of that kind held back since the last one, else
    /// `None` (the line is counted, not logged).
    pub fn admit(&self, key: &str) -> Option<u64> {
        self.admit_at(key, Instant::now())
    }

    fn admit_at(&self, key: &str, now: Instant) -> Option<u64> {
        let mut keys = self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(slot) = keys.get_mut(key) {
            if now.saturating_duration_since(slot.logged_at) < self.every {
                slot.held_back += 1;
                return None;
            }
            let held_back = slot.held_back;
            *slot = Slot {
                logged_at: now,
                held_back: 0,
            };
            return Some(held_back);
        }
        if keys.len() >= MAX_KEYS {
            keys.clear();
        }
        keys.insert(
            key.to_string(),
            Slot {
                logged_at: now,
                held_back: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_passes_then_one_per_period_with_the_count() {
        let throttle = LogThrottle::new(Duration::from_secs(5));
        let start = Instant::now();
        assert_eq!(throttle.admit_at("AllBrokersDown", start), Some(0));
        for ms in (50..5000).step_by(50) {
            assert_eq!(
                throttle.admit_at("AllBrokersDown", start + Duration::from_millis(ms)),
                None
            );
        }
        assert_eq!(
            throttle.admit_at("FAIL", start + Duration::from_millis(10)),
            Some(0),
            "kinds are limited separately"
        );
        assert_eq!(
            throttle.admit_at("AllBrokersDown", start + Duration::from_secs(5)),
            Some(99)
        );
        assert_eq!(
            throttle.admit_at("AllBrokersDown", start + Duration::from_secs(6)),
            None
        );
    }

    #[test]
    fn the_table_stays_bounded() {
        let throttle = LogThrottle::new(Duration::from_secs(5));
        let now = Instant::now();
        for key in 0..1000 {
            assert_eq!(throttle.admit_at(&key.to_string(), now), Some(0));
        }
        assert!(throttle.keys.lock().expect("not poisoned").len() <= MAX_KEYS);
    }
}
