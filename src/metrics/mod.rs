//! Counters and gauges, kept per writer without locks, summed on scrape.
//!
//! Each shard writes only its own [`ShardMetrics`] and the ingest thread only
//! [`IngestMetrics`] (relaxed atomics: one writer each). `/metrics` is served
//! by whichever shard accepted the request; it reads everything and renders
//! the Prometheus text format (SPEC §9). The latency histogram is recorded
//! shard-locally and published as a snapshot once per heartbeat tick.
//! This file holds the metric types; `render` writes them out.

mod render;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

use crate::readiness::Readiness;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning thread writes.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds `n` (may be negative).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Relaxed);
    }
    /// Sets the value.
    pub fn set(&self, n: i64) {
        self.0.store(n, Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// Close codes counted by `fanout_closes_total{code}`.
pub const CLOSE_CODES: [u16; 9] = [1000, 1001, 1002, 1007, 1008, 1009, 1011, 1013, 4001];

/// What one shard counts.
#[derive(Debug)]
pub struct ShardMetrics {
    /// Upgraded public connections open.
    pub connections_public: Gauge,
    /// Upgraded admin connections open.
    pub connections_admin: Gauge,
    /// Connections accepted (any request).
    pub accepted: Counter,
    /// Keys in the index.
    pub index_keys: Gauge,
    /// (key, connection) entries in the index.
    pub index_entries: Gauge,
    /// Events taken from the inbox.
    pub events_received: Counter,
    /// Messages queued to a connection (one per event per recipient).
    pub messages_delivered: Counter,
    /// Bytes written to sockets.
    pub bytes_written: Counter,
    /// Connections closed for exceeding `--max-pending-bytes`.
    pub slow_consumer_disconnects: Counter,
    /// Bytes held for the shard's connections: outbound queues plus partial
    /// input, as of the shard's last delivery, input or tick (at most about
    /// a second old). Also what the other shards read to check
    /// `--max-total-pending-bytes`.
    pub pending_bytes: Gauge,
    /// Connections closed (1013) because the process was over
    /// `--max-total-pending-bytes` and they held the most.
    pub budget_disconnects: Counter,
    /// Connections closed for missing the heartbeat.
    pub heartbeat_timeouts: Counter,
    /// Upgrades refused, by HTTP status (400, 401, 403, 404, 405, 431, 503).
    pub rejected: [Counter; 7],
    /// Closes sent, by code (see [`CLOSE_CODES`]).
    pub closes: [Counter; 9],
    /// Error replies sent to clients.
    pub client_errors: Counter,
    /// Admin session re-checks that Redis could not answer.
    pub session_recheck_failures: Counter,
    /// Index entries the sweep found pointing at closed connections.
    pub sweep_removed: Counter,
    /// Snapshot of the ingest-to-socket-write latency, microseconds.
    pub latency: Mutex<Histogram<u64>>,
}

/// HTTP statuses counted by `fanout_rejected_upgrades_total{status}`.
pub const REJECT_STATUSES: [u16; 7] = [400, 401, 403, 404, 405, 431, 503];

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            connections_public: Gauge::default(),
            connections_admin: Gauge::default(),
            accepted: Counter::default(),
            index_keys: Gauge::default(),
            index_entries: Gauge::default(),
            events_received: Counter::default(),
            messages_delivered: Counter::default(),
            bytes_written: Counter::default(),
            slow_consumer_disconnects: Counter::default(),
            pending_bytes: Gauge::default(),
            budget_disconnects: Counter::default(),
            heartbeat_timeouts: Counter::default(),
            rejected: Default::default(),
            closes: Default::default(),
            client_errors: Counter::default(),
            session_recheck_failures: Counter::default(),
            sweep_removed: Counter::default(),
            latency: Mutex::new(new_latency_histogram()),
        }
    }
}

impl ShardMetrics {
    /// Counts a refused request by status.
    pub fn reject(&self, status: u16) {
        if let Some(at) = REJECT_STATUSES.iter().position(|&s| s == status) {
            self.rejected[at].inc();
        }
    }
    /// Counts a close frame sent.
    pub fn close(&self, code: u16) {
        if let Some(at) = CLOSE_CODES.iter().position(|&c| c == code) {
            self.closes[at].inc();
        }
    }
}

/// A latency histogram in microseconds, 1 µs to 60 s, 3 significant digits.
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds are valid")
}

/// Reasons a Kafka record is skipped (`fanout_events_skipped_total{reason}`).
pub const SKIP_REASONS: [&str; 3] = ["invalid_json", "not_object", "empty"];

/// What the ingest thread counts.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    /// Records consumed from Kafka.
    pub events_consumed: Counter,
    /// Records skipped, by reason (see [`SKIP_REASONS`]).
    pub events_skipped: [Counter; 3],
    /// Kafka consumer errors seen.
    pub kafka_errors: Counter,
    /// Positions reset by librdkafka (out of range: records were skipped).
    pub offset_resets: Counter,
    /// Microseconds the ingest thread waited on a full shard inbox.
    pub backpressure_micros: Counter,
    /// Sum of the consumer lag over assigned partitions (from librdkafka
    /// statistics), or -1 before the first statistics report.
    pub consumer_lag: Gauge,
    /// Partitions currently assigned.
    pub partitions_assigned: Gauge,
}

/// Everything `/metrics` reads.
pub struct Registry {
    /// One per shard, indexed by shard id.
    pub shards: Vec<Arc<ShardMetrics>>,
    /// The ingest thread's.
    pub ingest: Arc<IngestMetrics>,
    /// Events waiting in each shard's inbox, as ingest last saw them.
    pub inbox_depth: Arc<[Gauge]>,
    /// What `/readyz` answers (Redis aside), as `fanout_ready`.
    pub readiness: Arc<Readiness>,
}
