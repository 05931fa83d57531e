//! The ingest thread: poll Kafka -> decode -> hand to every shard -> store
//! the offset.
//!
//! One thread, pinned to `--ingest-core`. It owns the consumer, the decoder's
//! buffers and the inbox senders. An offset is stored only after its event
//! sits in every shard's inbox, and librdkafka commits stored offsets, so a
//! commit never covers an event the shards did not get (at-least-once into
//! the engine, SPEC §5). Bad records are counted, logged at most once a
//! second, and skipped.

pub mod decode;
pub mod dispatch;
pub mod embedded;
pub mod kafka;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use self::decode::Decoder;
use self::dispatch::Dispatcher;
use self::kafka::KafkaConsumer;
use crate::metrics::{IngestMetrics, SKIP_REASONS};

/// Longest a poll blocks, so a stop request is seen promptly.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Starts the ingest thread; it runs until `stop` is set or a shard is gone,
/// then commits and returns.
pub fn spawn(
    consumer: KafkaConsumer,
    dispatcher: Dispatcher,
    metrics: Arc<IngestMetrics>,
    core: Option<usize>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("ingest".into()).spawn(move || {
        if let Some(core) = core
            && !core_affinity::set_for_current(core_affinity::CoreId { id: core })
        {
            tracing::warn!(core, "could not pin the ingest thread");
        }
        run(&consumer, &dispatcher, &metrics, &stop);
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => tracing::info!("kafka offsets committed"),
            // Nothing consumed since the last commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => tracing::warn!(error = %err, "final kafka commit failed"),
        }
    })
}

fn run(consumer: &KafkaConsumer, dispatcher: &Dispatcher, metrics: &IngestMetrics, stop: &AtomicBool) {
    let mut decoder = Decoder::default();
    let mut warn_limit = WarnLimit::default();
    while !stop.load(Ordering::Relaxed) {
        let message = match consumer.poll(POLL_TIMEOUT) {
            None => continue,
            Some(Ok(message)) => message,
            Some(Err(err)) if err.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) => {
                // With auto.offset.reset=error librdkafka reports an
                // out-of-range position here and stops the partition (other
                // policies only log it: see `IngestContext::log`).
                metrics.offset_resets.inc();
                tracing::error!(error = %err, "kafka offset reset: records past retention were skipped");
                continue;
            }
            Some(Err(err)) => {
                metrics.kafka_errors.inc();
                if warn_limit.allow() {
                    tracing::warn!(error = %err, "kafka consumer error; librdkafka retries");
                }
                continue;
            }
        };
        let ingested_at = Instant::now();
        metrics.events_consumed.inc();
        match decoder.decode(message.topic(), message.payload(), ingested_at) {
            Ok(outbound) => {
                if dispatcher.dispatch(Arc::new(outbound)).is_err() {
                    tracing::error!("a shard is gone; ingest stops");
                    return;
                }
            }
            Err(err) => {
                let at = SKIP_REASONS
                    .iter()
                    .position(|r| *r == err.reason())
                    .expect("every reason is listed");
                metrics.events_skipped[at].inc();
                if warn_limit.allow() {
                    tracing::warn!(
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        reason = err.reason(),
                        "skipping kafka record: {err}"
                    );
                }
            }
        }
        if let Err(err) = consumer.store_offset_from_message(&message) {
            // The partition was revoked meanwhile: its new owner re-reads it.
            tracing::debug!(error = %err, "offset not stored");
        }
    }
}

/// At most one warning a second; the metrics count every case.
#[derive(Default)]
struct WarnLimit {
    last: Option<Instant>,
}

impl WarnLimit {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}
