//! librdkafka's callbacks into fanout: logs, errors, statistics.
//!
//! Called from librdkafka's own threads (logs) and from whichever thread
//! polls the consumer (errors, statistics: the ingest thread). Everything
//! goes to the metrics; what goes to the log passes a [`LogThrottle`]
//! first, so an unreachable broker is said once and then every few seconds
//! with a count instead of twenty times a second. An offset reset is never
//! throttled: records were skipped.

use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;

use super::throttle::LogThrottle;
use crate::metrics::IngestMetrics;

/// Callbacks of the ingest consumer.
pub struct IngestContext {
    metrics: Arc<IngestMetrics>,
    throttle: Arc<LogThrottle>,
}

impl IngestContext {
    /// Callbacks counting into `metrics` and logging through `throttle`.
    pub fn new(metrics: Arc<IngestMetrics>, throttle: Arc<LogThrottle>) -> IngestContext {
        IngestContext { metrics, throttle }
    }

    /// Counts a consumer error (from `poll` or the error callback) and logs
    /// it unless the same kind was logged in the last few seconds.
    pub fn count_error(&self, err: &KafkaError, reason: &str) {
        if err.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) {
            // With auto.offset.reset=error librdkafka reports an out-of-range
            // position here and stops the partition (other policies only log
            // it: see `log`).
            self.metrics.offset_resets.inc();
            tracing::error!(error = %err, "kafka offset reset: records past retention were skipped");
            return;
        }
        self.metrics.kafka_errors.inc();
        let key = err
            .rdkafka_error_code()
            .map_or_else(|| err.to_string(), |code| format!("{code:?}"));
        if let Some(held_back) = self.throttle.admit(&key) {
            tracing::warn!(error = %err, held_back, "kafka: {reason}; librdkafka retries");
        }
    }
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
                if let Some(held_back) = self.throttle.admit(facility) {
                    tracing::error!(target: "librdkafka", facility, held_back, "{message}")
                }
            }
            RDKafkaLogLevel::Warning => {
                if let Some(held_back) = self.throttle.admit(facility) {
                    tracing::warn!(target: "librdkafka", facility, held_back, "{message}")
                }
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.count_error(&error, reason);
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

// No rebalance callback: the consumer never joins its group (`topology`
// assigns partitions explicitly), so librdkafka never calls it.
impl ConsumerContext for IngestContext {}
