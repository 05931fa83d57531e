//! The Kafka event source: latency-first settings, explicit start offsets,
//! positions stored only after hand-off.
//!
//! Runs on the ingest thread (its callbacks too: they are served from
//! `poll`). librdkafka's defaults favour batching; ours favour latency, and
//! every property can be overridden with `--kafka-opt`. Consumer errors are
//! counted and logged here, at most once a second; the ingest loop only sees
//! records.
//!
//! Readiness (SPEC §2 `/readyz`) needs more than an assignment: the start
//! offset of each partition must be known, or records produced right after
//! "ready" could fall before a later `latest` reset. So on assignment we
//! resolve each partition's offset ourselves (the committed offset, else the
//! high or low watermark per `auto.offset.reset`) and assign explicitly.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use super::WarnLimit;
use super::source::{EventSource, Record};
use crate::config::{Brokers, KafkaConfig};
use crate::metrics::IngestMetrics;
use crate::readiness::Readiness;

/// The consumer type of the ingest thread.
pub type KafkaConsumer = BaseConsumer<IngestContext>;

/// Kafka as the ingest thread's [`EventSource`].
pub struct KafkaSource {
    consumer: KafkaConsumer,
    metrics: Arc<IngestMetrics>,
    warn_limit: WarnLimit,
    /// (topic, partition, next offset) of what was passed on since the last
    /// hand-off; stored as the consumer's positions on `handed_off`.
    polled: Vec<(String, i32, i64)>,
}

impl EventSource for KafkaSource {
    fn poll(
        &mut self,
        timeout: Duration,
        max: usize,
        each: &mut dyn FnMut(Record<'_>) -> ControlFlow<()>,
    ) -> Option<usize> {
        let mut passed = 0;
        let mut wait = timeout;
        while passed < max {
            let message = match self.consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => message,
                Some(Err(err)) => {
                    self.count_error(&err);
                    break;
                }
            };
            // What librdkafka fetched already is taken without waiting.
            wait = Duration::ZERO;
            let record = Record {
                topic: message.topic(),
                partition: message.partition(),
                offset: message.offset(),
                payload: message.payload(),
            };
            if each(record).is_break() {
                break;
            }
            passed += 1;
            let next = message.offset() + 1;
            match self
                .polled
                .iter_mut()
                .find(|(topic, partition, _)| *partition == message.partition() && topic == message.topic())
            {
                Some(entry) => entry.2 = next,
                None => self
                    .polled
                    .push((message.topic().to_string(), message.partition(), next)),
            }
        }
        Some(passed)
    }

    fn handed_off(&mut self) {
        if self.polled.is_empty() {
            return;
        }
        let mut positions = TopicPartitionList::with_capacity(self.polled.len());
        for (topic, partition, next) in self.polled.drain(..) {
            let _ = positions.add_partition_offset(&topic, partition, Offset::Offset(next));
        }
        if let Err(err) = self.consumer.store_offsets(&positions) {
            // The partition was revoked meanwhile: its new owner re-reads it.
            tracing::debug!(error = %err, "offsets not stored");
        }
    }

    fn commit_now(&mut self) {
        self.handed_off();
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => tracing::info!("kafka offsets committed"),
            // Nothing consumed since the last commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => tracing::warn!(error = %err, "final kafka commit failed"),
        }
    }
}

impl KafkaSource {
    fn count_error(&mut self, err: &KafkaError) {
        if err.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) {
            // With auto.offset.reset=error librdkafka reports an out-of-range
            // position here and stops the partition (other policies only log
            // it: see `IngestContext::log`).
            self.metrics.offset_resets.inc();
            tracing::error!(error = %err, "kafka offset reset: records past retention were skipped");
            return;
        }
        self.metrics.kafka_errors.inc();
        if self.warn_limit.allow() {
            tracing::warn!(error = %err, "kafka consumer error; librdkafka retries");
        }
    }
}

/// Latency-first defaults, applied before `--kafka-opt` overrides.
/// librdkafka (2.12) defaults in parentheses.
pub const LATENCY_DEFAULTS: [(&str, &str); 13] = [
    // Answer a fetch as soon as one byte is there, wait at most 10 ms (500).
    ("fetch.wait.max.ms", "10"),
    ("fetch.min.bytes", "1"),
    // Pause before the next fetch while the local queue is over its bound
    // (1000). 0 spins the consumer thread on a lock under backlog (33% of
    // fanout's CPU in a saturation profile); a long pause starves the queue
    // once ingest catches up. 5 ms doubled saturation throughput against 0.
    ("fetch.queue.backoff.ms", "5"),
    // Retry a failed fetch soon (500).
    ("fetch.error.backoff.ms", "10"),
    ("socket.nagle.disable", "true"),
    // We store offsets after the hand-off to every shard; librdkafka commits
    // what was stored, in the background and at shutdown.
    ("enable.auto.offset.store", "false"),
    ("enable.auto.commit", "true"),
    ("auto.commit.interval.ms", "1000"),
    // Live notifications: a new group starts at the end.
    ("auto.offset.reset", "latest"),
    // Consumer lag for /metrics.
    ("statistics.interval.ms", "1000"),
    // While ingest waits on a full shard inbox it does not poll, so this
    // local prefetch queue fills and librdkafka stops fetching: backpressure
    // reaches the broker after at most 8 MiB (65536 KiB).
    ("queued.max.messages.kbytes", "8192"),
    // Notice a dead peer in the group quickly (45000 / 3000).
    ("session.timeout.ms", "10000"),
    ("heartbeat.interval.ms", "1000"),
];

/// Callbacks of the ingest consumer: rebalance, statistics, logs.
pub struct IngestContext {
    metrics: Arc<IngestMetrics>,
    readiness: Arc<Readiness>,
    reset_to_earliest: bool,
}

impl ClientContext for IngestContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // An out-of-range position reset by auto.offset.reset is only a
        // warning from librdkafka, yet the records in between were skipped.
        if facility == "OFFSET" && matches!(level, RDKafkaLogLevel::Warning) && message.contains("offset reset") {
            self.metrics.offset_resets.inc();
            tracing::error!(target: "librdkafka", "kafka offset reset, records past retention were skipped: {message}");
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|topic| topic.partitions.values())
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag)
            .sum();
        self.metrics.consumer_lag.set(lag);
    }
}

impl ConsumerContext for IngestContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let resolved = self.resolve_start_offsets(consumer, tpl);
                let assigned = match &resolved {
                    Ok(explicit) if cooperative => consumer.incremental_assign(explicit),
                    Ok(explicit) => consumer.assign(explicit),
                    Err(_) if cooperative => consumer.incremental_assign(tpl),
                    Err(_) => consumer.assign(tpl),
                };
                if let Err(err) = &resolved {
                    // Records produced now could fall before a later reset:
                    // not ready (SPEC §2), though consumption goes on.
                    tracing::error!(error = %err, "could not resolve start offsets; /readyz stays 503 until the next assignment");
                }
                match assigned {
                    Ok(()) => {
                        let count = consumer.assignment().map_or(0, |a| a.count());
                        self.metrics.partitions_assigned.set(count as i64);
                        self.readiness.set_kafka(count > 0 && resolved.is_ok());
                        tracing::info!(partitions = tpl.count(), total = count, "kafka partitions assigned");
                    }
                    Err(err) => {
                        self.readiness.set_kafka(false);
                        tracing::error!(error = %err, "kafka assign failed");
                    }
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Commit what was handed off before another member takes over.
                let _ = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
                let result = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(err) = result {
                    tracing::error!(error = %err, "kafka unassign failed");
                }
                let count = consumer.assignment().map_or(0, |a| a.count());
                self.metrics.partitions_assigned.set(count as i64);
                if count == 0 {
                    self.readiness.set_kafka(false);
                }
                tracing::info!(partitions = tpl.count(), "kafka partitions revoked");
            }
            other => {
                tracing::error!(error = ?other, "kafka rebalance error");
                let _ = consumer.unassign();
                self.readiness.set_kafka(false);
            }
        }
    }
}

impl IngestContext {
    /// The committed offset of each partition, else its watermark.
    fn resolve_start_offsets(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> KafkaResult<TopicPartitionList> {
        const TIMEOUT: Duration = Duration::from_secs(5);
        let committed = consumer.committed_offsets(tpl.clone(), TIMEOUT)?;
        let mut explicit = TopicPartitionList::new();
        for element in committed.elements() {
            let offset = match element.offset() {
                Offset::Offset(n) if n >= 0 => n,
                _ => {
                    let (low, high) = consumer.fetch_watermarks(element.topic(), element.partition(), TIMEOUT)?;
                    if self.reset_to_earliest { low } else { high }
                }
            };
            explicit.add_partition_offset(element.topic(), element.partition(), Offset::Offset(offset))?;
        }
        Ok(explicit)
    }
}

/// The effective consumer properties: defaults, then the user's overrides.
pub fn client_config(config: &KafkaConfig, bootstrap: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", bootstrap)
        .set("group.id", &config.group_id)
        .set("client.id", "fanout");
    // rdkafka takes librdkafka's log level from the `log` crate's global
    // level, which is off unless a `log` logger is installed; we log through
    // `IngestContext::log` and must see warnings (offset resets among them).
    client.set_log_level(RDKafkaLogLevel::Info);
    for (key, value) in LATENCY_DEFAULTS {
        client.set(key, value);
    }
    if matches!(config.brokers, Brokers::Embedded { .. }) {
        // librdkafka's mock broker does not answer a waiting fetch when data
        // arrives; it sits out fetch.wait.max.ms. Measured produce-ack ->
        // socket: ~9.5 ms at 10 ms, ~0.5 ms at 1 ms.
        client.set("fetch.wait.max.ms", "1");
    }
    for (key, value) in &config.overrides {
        client.set(key, value);
    }
    client
}

impl KafkaSource {
    /// Creates the consumer and subscribes it to the configured topics;
    /// readiness is reported into `readiness`.
    pub fn new(
        config: &KafkaConfig,
        bootstrap: &str,
        metrics: Arc<IngestMetrics>,
        readiness: Arc<Readiness>,
    ) -> KafkaResult<KafkaSource> {
        let client = client_config(config, bootstrap);
        let reset = client.get("auto.offset.reset").unwrap_or("latest");
        let reset_to_earliest = matches!(reset, "earliest" | "smallest" | "beginning");
        metrics.consumer_lag.set(-1);
        let consumer: KafkaConsumer = client.create_with_context(IngestContext {
            metrics: metrics.clone(),
            readiness,
            reset_to_earliest,
        })?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(KafkaSource {
            consumer,
            metrics,
            warn_limit: WarnLimit::default(),
            polled: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_over_latency_defaults() {
        let config = KafkaConfig {
            brokers: Brokers::Remote("b:9092".into()),
            group_id: "g".into(),
            topics: vec!["t".into()],
            overrides: vec![("fetch.wait.max.ms".into(), "250".into())],
        };
        let client = client_config(&config, "b:9092");
        assert_eq!(client.get("fetch.wait.max.ms"), Some("250"));
        assert_eq!(client.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(client.get("group.id"), Some("g"));
    }
}
