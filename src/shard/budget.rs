//! The process-wide budget for bytes held for connections
//! (`--max-total-pending-bytes`, SPEC §7): outbound queues and partly
//! received client messages, over every connection of every shard.
//!
//! Runs on the shard. Each shard tallies its own bytes in [`Held`] (a plain
//! `Cell`, updated where bytes are queued, written, discarded or buffered)
//! and publishes the total to its own `ShardMetrics::pending_bytes` gauge
//! (one relaxed store, a cache line no other core writes). The budget is
//! split into equal shares, one per shard; only a shard over its share
//! reads the other shards' gauges, and only when the process is over the
//! budget does it act: it closes its own largest holders with 1013 until it
//! is back under seven eighths of its share. Delivery never touches a shared
//! counter per message, and a shard under its share never reads another
//! core's memory.
//! Invariant: `Held` equals the sum over the shard's connections of
//! `Conn::held_bytes`.

use std::cell::Cell;

use super::{Close, ConnId, Shard};
use crate::protocol::frame::close_code;

/// Bytes held for a shard's connections, tallied where they change.
#[derive(Debug, Default)]
pub struct Held(Cell<usize>);

impl Held {
    /// `n` more bytes are held.
    pub fn add(&self, n: usize) {
        self.0.set(self.0.get() + n);
    }

    /// `n` bytes were released.
    pub fn sub(&self, n: usize) {
        debug_assert!(n <= self.0.get(), "releasing {n} of {} held bytes", self.0.get());
        self.0.set(self.0.get().saturating_sub(n));
    }

    /// Bytes held now.
    pub fn get(&self) -> usize {
        self.0.get()
    }
}

impl Shard {
    /// Publishes the shard's held bytes and, when the process is over its
    /// budget and this shard over its share, closes the shard's largest
    /// holders. Call after anything that may have grown the total; O(1)
    /// unless the shard is over its share.
    pub(super) fn check_budget(&self) {
        let held = self.held.get();
        self.metrics.pending_bytes.set(held as i64);
        let share = self.budget_share;
        if held <= share {
            return;
        }
        let budget = self.config.max_total_pending_bytes;
        let total: usize = self
            .shared
            .registry
            .shards
            .iter()
            .map(|shard| usize::try_from(shard.pending_bytes.get()).unwrap_or(0))
            .sum();
        if total <= budget {
            return;
        }
        // Down to 7/8 of the share: a shard at its limit does not scan its
        // connections again on every event.
        let need = (held - share).min(total - budget) + share / 8;
        self.shed(need);
        self.metrics.pending_bytes.set(self.held.get() as i64);
    }

    /// Closes the connections holding the most until `need` bytes are freed.
    fn shed(&self, need: usize) {
        let mut holders: Vec<(usize, ConnId)> = self
            .conns
            .borrow()
            .iter()
            .filter(|(_, conn)| conn.close.is_none())
            .map(|(key, conn)| (conn.held_bytes(), ConnId::of_key(key)))
            .filter(|&(bytes, _)| bytes > 0)
            .collect();
        holders.sort_unstable_by_key(|&(bytes, _)| std::cmp::Reverse(bytes));
        let mut freed = 0;
        for (bytes, id) in holders {
            if freed >= need {
                break;
            }
            freed += bytes;
            self.metrics.budget_disconnects.inc();
            // Discarding releases the queue and partial input at once, so
            // the next check sees the bytes gone.
            self.request_close(id, Close::discarding(close_code::TRY_AGAIN_LATER));
        }
        tracing::warn!(
            shard = self.id.0,
            freed,
            budget = self.config.max_total_pending_bytes,
            "over --max-total-pending-bytes: closed the largest holders with 1013"
        );
    }
}
