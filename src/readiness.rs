//! Whether this instance is alive and may take traffic: what `/healthz` and
//! `/readyz` answer (SPEC §2, §10, §11).
//!
//! The one place that knows. Written by the Kafka topology thread (every
//! partition of every configured topic has a resolved start offset, or why
//! not), by each shard (running, or gone) and by the main thread (draining
//! after a stop signal); read by every shard's listener and by `/metrics`.
//! One `Arc` shared by all: relaxed atomics, each flag with one writer, and
//! a mutex around the reason text, which changes only when readiness does
//! and is read only by health checks.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

/// The instance's health and readiness flags.
#[derive(Debug)]
pub struct Readiness {
    kafka: AtomicBool,
    /// Why Kafka is not ready; meaningless while `kafka` is set.
    kafka_reason: Mutex<String>,
    draining: AtomicBool,
    shard_count: usize,
    shards_running: AtomicUsize,
}

impl Readiness {
    /// Flags for an instance of `shard_count` shards, none running yet and
    /// Kafka not looked up yet.
    pub fn new(shard_count: usize) -> Readiness {
        Readiness {
            kafka: AtomicBool::new(false),
            kafka_reason: Mutex::new("kafka: waiting for the partition metadata".to_string()),
            draining: AtomicBool::new(false),
            shard_count,
            shards_running: AtomicUsize::new(0),
        }
    }

    /// Every partition of every configured topic has a resolved start offset
    /// and is assigned, so nothing produced from now on can be missed.
    pub fn kafka(&self) -> bool {
        self.kafka.load(Relaxed)
    }

    /// Kafka is ready. Only the topology thread writes the Kafka flag.
    pub fn set_kafka_ready(&self) {
        self.kafka.store(true, Relaxed);
    }

    /// Kafka is not ready, because of `reason` (shown by `/readyz`).
    pub fn set_kafka_not_ready(&self, reason: String) {
        *self
            .kafka_reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = reason;
        self.kafka.store(false, Relaxed);
    }

    /// A stop signal arrived: `/readyz` answers 503 from now on while the
    /// instance keeps serving for `--drain-grace` (SPEC §10).
    pub fn start_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    /// Whether a stop signal arrived.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// What `/readyz` answers, apart from the Redis check the listener makes
    /// itself: `Err` with the reason while draining or Kafka is not ready.
    pub fn check(&self) -> Result<(), String> {
        if self.is_draining() {
            return Err("shutting down".to_string());
        }
        if !self.kafka() {
            return Err(self
                .kafka_reason
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone());
        }
        Ok(())
    }

    /// A shard is running (its executor started). Called once per shard.
    pub fn shard_started(&self) {
        self.shards_running.fetch_add(1, Relaxed);
    }

    /// A shard ended (shutdown, or it died).
    pub fn shard_stopped(&self) {
        self.shards_running.fetch_sub(1, Relaxed);
    }

    /// Every shard runs: `/healthz` may answer 200.
    pub fn is_healthy(&self) -> bool {
        self.shards_running.load(Relaxed) == self.shard_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draining_wins_over_kafka_and_the_reason_is_kept() {
        let readiness = Readiness::new(1);
        assert_eq!(
            readiness.check(),
            Err("kafka: waiting for the partition metadata".into())
        );
        readiness.set_kafka_not_ready("kafka: topic \"t\" does not exist".into());
        assert_eq!(readiness.check(), Err("kafka: topic \"t\" does not exist".into()));
        readiness.set_kafka_ready();
        assert_eq!(readiness.check(), Ok(()));
        readiness.start_draining();
        assert_eq!(readiness.check(), Err("shutting down".into()));
        assert!(readiness.kafka(), "draining does not change what Kafka is");
    }

    #[test]
    fn healthy_only_while_every_shard_runs() {
        let readiness = Readiness::new(2);
        readiness.shard_started();
        assert!(!readiness.is_healthy());
        readiness.shard_started();
        assert!(readiness.is_healthy());
        readiness.shard_stopped();
        assert!(!readiness.is_healthy());
    }
}
