//! `/metrics`: every shard's and the ingest thread's counters in the
//! Prometheus text exposition format (SPEC §9).
//!
//! Runs on whichever shard answers the request; reads relaxed atomics and
//! the latency snapshots, never blocks a writer for long.

use std::fmt::Write as _;

use super::{CLOSE_CODES, REJECT_STATUSES, Registry, SKIP_REASONS, ShardMetrics, new_latency_histogram};

impl Registry {
    /// Renders the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let shards = &self.shards;
        let per_shard = |out: &mut String, name: &str, kind: &str, help: &str, get: &dyn Fn(&ShardMetrics) -> i64| {
            header(out, name, kind, help);
            for (id, shard) in shards.iter().enumerate() {
                let _ = writeln!(out, "{name}{{shard=\"{id}\"}} {}", get(shard));
            }
        };
        header(
            &mut out,
            "fanout_connections",
            "gauge",
            "Open WebSocket connections by shard and role.",
        );
        for (id, shard) in shards.iter().enumerate() {
            let _ = writeln!(
                out,
                "fanout_connections{{shard=\"{id}\",role=\"public\"}} {}",
                shard.connections_public.get()
            );
            let _ = writeln!(
                out,
                "fanout_connections{{shard=\"{id}\",role=\"admin\"}} {}",
                shard.connections_admin.get()
            );
        }
        per_shard(
            &mut out,
            "fanout_accepted_connections_total",
            "counter",
            "TCP connections accepted.",
            &|s| s.accepted.get() as i64,
        );
        per_shard(
            &mut out,
            "fanout_subscription_keys",
            "gauge",
            "Routing keys with at least one subscriber.",
            &|s| s.index_keys.get(),
        );
        per_shard(
            &mut out,
            "fanout_subscription_entries",
            "gauge",
            "(key, connection) entries in the index, scope all included.",
            &|s| s.index_entries.get(),
        );
        per_shard(
            &mut out,
            "fanout_shard_events_total",
            "counter",
            "Events each shard took from its inbox.",
            &|s| s.events_received.get() as i64,
        );
        per_shard(
            &mut out,
            "fanout_messages_delivered_total",
            "counter",
            "Messages queued to connections (one per event per recipient).",
            &|s| s.messages_delivered.get() as i64,
        );
        per_shard(
            &mut out,
            "fanout_bytes_written_total",
            "counter",
            "Bytes written to client sockets.",
            &|s| s.bytes_written.get() as i64,
        );
        per_shard(
            &mut out,
            "fanout_slow_consumer_disconnects_total",
            "counter",
            "Connections closed (1013) for exceeding --max-pending-bytes.",
            &|s| s.slow_consumer_disconnects.get() as i64,
        );
        per_shard(
            &mut out,
            "fanout_pending_bytes",
            "gauge",
            "Bytes held for connections: outbound queues plus partly received messages.",
            &|s| s.pending_bytes.get(),
        );
        per_shard(
            &mut out,
            "fanout_budget_disconnects_total",
            "counter",
            "Connections closed (1013) holding the most while the process was over --max-total-pending-bytes.",
            &|s| s.budget_disconnects.get() as i64,
        );
        per_shard(
            &mut out,
            "fanout_heartbeat_timeouts_total",
            "counter",
            "Connections closed for not answering a ping in --pong-timeout.",
            &|s| s.heartbeat_timeouts.get() as i64,
        );
        per_shard(
            &mut out,
            "fanout_client_errors_total",
            "counter",
            "Error messages sent to clients.",
            &|s| s.client_errors.get() as i64,
        );
        per_shard(
            &mut out,
            "fanout_session_recheck_failures_total",
            "counter",
            "Admin session re-checks Redis could not answer.",
            &|s| s.session_recheck_failures.get() as i64,
        );
        per_shard(
            &mut out,
            "fanout_sweep_removed_total",
            "counter",
            "Stale entries removed by the sweep.",
            &|s| s.sweep_removed.get() as i64,
        );

        header(
            &mut out,
            "fanout_rejected_upgrades_total",
            "counter",
            "HTTP requests refused, by status.",
        );
        for (at, status) in REJECT_STATUSES.iter().enumerate() {
            let sum: u64 = shards.iter().map(|s| s.rejected[at].get()).sum();
            let _ = writeln!(out, "fanout_rejected_upgrades_total{{status=\"{status}\"}} {sum}");
        }
        header(
            &mut out,
            "fanout_closes_total",
            "counter",
            "Close frames sent, by close code.",
        );
        for (at, code) in CLOSE_CODES.iter().enumerate() {
            let sum: u64 = shards.iter().map(|s| s.closes[at].get()).sum();
            let _ = writeln!(out, "fanout_closes_total{{code=\"{code}\"}} {sum}");
        }

        header(
            &mut out,
            "fanout_inbox_depth",
            "gauge",
            "Events waiting in each shard's inbox (ingest -> shard channel).",
        );
        for (id, depth) in self.inbox_depth.iter().enumerate() {
            let _ = writeln!(out, "fanout_inbox_depth{{shard=\"{id}\"}} {}", depth.get());
        }

        let ingest = &self.ingest;
        header(
            &mut out,
            "fanout_events_consumed_total",
            "counter",
            "Kafka records consumed.",
        );
        let _ = writeln!(out, "fanout_events_consumed_total {}", ingest.events_consumed.get());
        header(
            &mut out,
            "fanout_events_skipped_total",
            "counter",
            "Kafka records skipped, by reason.",
        );
        for (at, reason) in SKIP_REASONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "fanout_events_skipped_total{{reason=\"{reason}\"}} {}",
                ingest.events_skipped[at].get()
            );
        }
        header(
            &mut out,
            "fanout_kafka_errors_total",
            "counter",
            "Kafka consumer errors.",
        );
        let _ = writeln!(out, "fanout_kafka_errors_total {}", ingest.kafka_errors.get());
        header(
            &mut out,
            "fanout_kafka_offset_resets_total",
            "counter",
            "Partition positions reset by auto.offset.reset (out of range: records were skipped).",
        );
        let _ = writeln!(out, "fanout_kafka_offset_resets_total {}", ingest.offset_resets.get());
        header(
            &mut out,
            "fanout_backpressure_seconds_total",
            "counter",
            "Time the ingest thread waited on full shard inboxes.",
        );
        let _ = writeln!(
            out,
            "fanout_backpressure_seconds_total {:.6}",
            ingest.backpressure_micros.get() as f64 / 1e6
        );
        header(
            &mut out,
            "fanout_kafka_consumer_lag",
            "gauge",
            "Messages behind the high watermark, summed over assigned partitions (-1: unknown yet).",
        );
        let _ = writeln!(out, "fanout_kafka_consumer_lag {}", ingest.consumer_lag.get());
        header(
            &mut out,
            "fanout_kafka_partitions_assigned",
            "gauge",
            "Kafka partitions assigned to this consumer.",
        );
        let _ = writeln!(
            out,
            "fanout_kafka_partitions_assigned {}",
            ingest.partitions_assigned.get()
        );
        header(
            &mut out,
            "fanout_ready",
            "gauge",
            "1 while /readyz would answer 200, Redis aside: every partition has a resolved start offset and the instance is not draining.",
        );
        let _ = writeln!(out, "fanout_ready {}", u8::from(self.readiness.check().is_ok()));

        self.render_latency(&mut out);
        out
    }

    fn render_latency(&self, out: &mut String) {
        let mut merged = new_latency_histogram();
        for shard in &self.shards {
            let snapshot = shard.latency.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let _ = merged.add(&*snapshot);
        }
        let name = "fanout_delivery_latency_seconds";
        header(
            out,
            name,
            "histogram",
            "Ingest (Kafka poll) to socket write, per event and shard (last recipient written).",
        );
        const BOUNDS_MICROS: [u64; 14] = [
            50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 500_000, 1_000_000, 5_000_000,
        ];
        for bound in BOUNDS_MICROS {
            let count = merged.count_between(0, bound);
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {count}", bound as f64 / 1e6);
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", merged.len());
        let sum: f64 = merged
            .iter_recorded()
            .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
            .sum();
        let _ = writeln!(out, "{name}_sum {:.6}", sum / 1e6);
        let _ = writeln!(out, "{name}_count {}", merged.len());
        let quantile = "fanout_delivery_latency_quantile_seconds";
        header(out, quantile, "gauge", "Quantiles of the delivery latency since start.");
        for q in [0.5, 0.99, 0.999] {
            let _ = writeln!(
                out,
                "{quantile}{{quantile=\"{q}\"}} {:.6}",
                merged.value_at_quantile(q) as f64 / 1e6
            );
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}
