//! The Kafka event source: every partition of every configured topic,
//! explicit start offsets, positions stored only after hand-off.
//!
//! Two threads share one consumer. The ingest thread polls it through
//! [`KafkaSource`] (`source`). The topology thread (`discovery`) looks the
//! topics up every `--kafka-refresh-interval`, resolves each new partition's
//! start offset and assigns it, and reports readiness (SPEC §2, §11). No
//! consumer-group membership: every instance reads the whole stream, and
//! commits its positions under its own group `<group>.<instance id>`
//! (`client`). librdkafka's callbacks (`context`) count every error and log
//! each kind once per few seconds (`throttle`). What to assign is decided by
//! `topology`, pure bookkeeping with unit tests.

pub mod client;
pub mod context;
mod discovery;
mod source;
pub mod throttle;
pub mod topology;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;

pub use self::client::{LATENCY_DEFAULTS, client_config};
use self::context::IngestContext;
use self::discovery::Discovery;
pub use self::source::KafkaSource;
use self::throttle::LogThrottle;
use crate::config::KafkaConfig;
use crate::metrics::IngestMetrics;
use crate::readiness::Readiness;

/// The consumer the ingest and topology threads share.
pub type KafkaConsumer = BaseConsumer<IngestContext>;

/// Why the Kafka source could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// librdkafka refused the configuration.
    #[error("creating the kafka consumer: {0}")]
    Consumer(#[from] KafkaError),
    /// The topology thread could not be spawned.
    #[error("starting the kafka topology thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Creates the consumer of instance `instance` and starts the topology
/// thread, which assigns partitions and reports into `readiness`. The final
/// commit at shutdown waits at most `commit_timeout`.
pub fn start(
    config: &KafkaConfig,
    bootstrap: &str,
    instance: &str,
    metrics: Arc<IngestMetrics>,
    readiness: Arc<Readiness>,
    commit_timeout: Duration,
) -> Result<KafkaSource, StartError> {
    let client = client_config(config, bootstrap, instance);
    let throttle = Arc::new(LogThrottle::default());
    metrics.consumer_lag.set(-1);
    let consumer: Arc<KafkaConsumer> =
        Arc::new(client.create_with_context(IngestContext::new(metrics.clone(), throttle.clone()))?);
    let discovery = Discovery {
        consumer: consumer.clone(),
        topics: config.topics.clone(),
        refresh_interval: config.refresh_interval,
        reset_to_earliest: client::resets_to_earliest(&client),
        readiness,
        metrics,
        throttle,
    }
    .spawn()?;
    Ok(KafkaSource::new(consumer, discovery, commit_timeout))
}
