//! Whether this instance may take traffic: what `/readyz` answers (SPEC §2).
//!
//! Written by the ingest thread's Kafka callbacks (start offsets resolved)
//! and read by every shard's listener and by `/metrics`; one `Arc` shared by
//! all, relaxed atomics (each flag has one writer).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// The instance's readiness flags.
#[derive(Debug, Default)]
pub struct Readiness {
    kafka: AtomicBool,
}

impl Readiness {
    /// Kafka partitions are assigned and every start offset is resolved, so
    /// nothing produced from now on can be missed.
    pub fn kafka(&self) -> bool {
        self.kafka.load(Relaxed)
    }

    /// Sets the Kafka flag. Only the ingest thread writes it.
    pub fn set_kafka(&self, ready: bool) {
        self.kafka.store(ready, Relaxed);
    }
}
