//! Hands each event to every shard's inbox.
//!
//! Runs on the ingest thread; with `shard::inbox` the only code that moves
//! `Send` values across threads. A full inbox makes ingest wait (backpressure
//! to Kafka, SPEC §7) rather than drop; the wait is counted.

use std::sync::Arc;
use std::time::Duration;

use crate::event::Dispatch;
use crate::metrics::{Gauge, IngestMetrics};
use crate::shard::inbox::{Disconnected, InboxSender};

/// The senders of every shard's inbox.
pub struct Dispatcher {
    inboxes: Vec<InboxSender>,
    depths: Arc<[Gauge]>,
    metrics: Arc<IngestMetrics>,
}

impl Dispatcher {
    /// A dispatcher over `inboxes` (index = shard id), publishing inbox
    /// depths into `depths`.
    pub fn new(inboxes: Vec<InboxSender>, depths: Arc<[Gauge]>, metrics: Arc<IngestMetrics>) -> Self {
        Dispatcher {
            inboxes,
            depths,
            metrics,
        }
    }

    /// Gives `event` to every shard; each shard finds its own recipients.
    /// The shards are not woken until [`Dispatcher::wake`]. Returns how long
    /// full inboxes held ingest back (zero almost always).
    pub fn dispatch(&self, event: Dispatch) -> Result<Duration, Disconnected> {
        let mut waited = Duration::ZERO;
        for (inbox, depth) in self.inboxes.iter().zip(self.depths.iter()) {
            let wait = inbox.send(event.clone())?;
            if !wait.is_zero() {
                self.metrics.backpressure_micros.add(wait.as_micros() as u64);
                waited += wait;
            }
            depth.set(inbox.depth() as i64);
        }
        Ok(waited)
    }

    /// Wakes every shard that sleeps, once the events of a batch are in:
    /// one wake-up per batch, whatever its size.
    pub fn wake(&self) {
        for inbox in &self.inboxes {
            inbox.wake();
        }
    }
}
