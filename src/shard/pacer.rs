//! When the inbox loop writes: latency first while events trickle, more
//! events per socket write under load.
//!
//! Runs on the shard's inbox loop (`executor`). A flush costs mostly one
//! `sendmsg` per touched socket (2–11 µs each on loopback, about the same for
//! one frame as for sixteen: `loadtest/examples/sendmsg_cost.rs`). So an
//! event that finds the shard idle is written at once; but when flushing
//! starts to take a real share of the core, the next flush waits until as
//! much time has passed since the last one ended as the last one took, at
//! most `--max-flush-delay`. Events that arrive meanwhile are queued, and
//! share each socket's next write. At most about half the core then goes to
//! flushing, and the delay added to an event is at most what one flush costs
//! anyway, and never over the flag.

use std::time::{Duration, Instant};

/// The flush schedule of one shard.
#[derive(Debug)]
pub struct FlushPacer {
    /// End and cost of the last flush that wrote events.
    last: Option<(Instant, Duration)>,
    max_delay: Duration,
}

impl FlushPacer {
    /// A pacer that holds a flush back at most `max_delay` (zero: never).
    pub fn new(max_delay: Duration) -> FlushPacer {
        FlushPacer { last: None, max_delay }
    }

    /// When the next flush may run, if not now.
    pub fn due(&self, now: Instant) -> Option<Instant> {
        let (ended, cost) = self.last?;
        let at = ended + cost.min(self.max_delay);
        (at > now).then_some(at)
    }

    /// Records a flush that ran from `started` to `ended`.
    pub fn flushed(&mut self, started: Instant, ended: Instant) {
        self.last = Some((ended, ended.saturating_duration_since(started)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_first_flush_and_flushes_after_a_pause_run_at_once() {
        let t0 = Instant::now();
        let mut pacer = FlushPacer::new(5 * MS);
        assert_eq!(pacer.due(t0), None);
        pacer.flushed(t0, t0 + MS);
        assert_eq!(
            pacer.due(t0 + 10 * MS),
            None,
            "a cheap flush long ago holds nothing back"
        );
    }

    #[test]
    fn a_costly_flush_holds_the_next_back_by_its_cost_at_most_the_limit() {
        let t0 = Instant::now();
        let mut pacer = FlushPacer::new(5 * MS);
        pacer.flushed(t0, t0 + 2 * MS);
        assert_eq!(pacer.due(t0 + 2 * MS), Some(t0 + 4 * MS));
        pacer.flushed(t0, t0 + 20 * MS);
        assert_eq!(
            pacer.due(t0 + 20 * MS),
            Some(t0 + 25 * MS),
            "capped by --max-flush-delay"
        );
        let mut never = FlushPacer::new(Duration::ZERO);
        never.flushed(t0, t0 + 20 * MS);
        assert_eq!(never.due(t0 + 20 * MS), None);
    }
}
