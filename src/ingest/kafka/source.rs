//! Kafka as the ingest thread's [`EventSource`]: poll, store positions
//! after hand-off, commit within a deadline at shutdown.
//!
//! Runs on the ingest thread, which alone polls the consumer (librdkafka's
//! callbacks are served from that poll). Partitions are assigned by the
//! topology thread (`discovery`), which shares the consumer. A position is
//! stored only after its record sits in every shard's inbox, and librdkafka
//! commits what was stored every second; the final commit is bounded by
//! `--drain-timeout` so a lost broker cannot hold up the exit.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::KafkaConsumer;
use super::discovery::DiscoveryThread;
use crate::ingest::source::{EventSource, Record};

/// Kafka as the ingest thread's [`EventSource`].
pub struct KafkaSource {
    /// `None` only after `drop` handed it to the closing thread.
    consumer: Option<Arc<KafkaConsumer>>,
    /// Stops the topology thread when dropped.
    discovery: Option<DiscoveryThread>,
    /// (topic, partition, next offset) of what was passed on since the last
    /// hand-off; stored as the consumer's positions on `handed_off`.
    polled: Vec<(String, i32, i64)>,
    /// Bound on the final commit: `--drain-timeout`.
    commit_timeout: Duration,
}

impl KafkaSource {
    /// A source over `consumer`, whose partitions `discovery` assigns.
    pub(super) fn new(consumer: Arc<KafkaConsumer>, discovery: DiscoveryThread, commit_timeout: Duration) -> Self {
        KafkaSource {
            consumer: Some(consumer),
            discovery: Some(discovery),
            polled: Vec::new(),
            commit_timeout,
        }
    }

    fn consumer(&self) -> &KafkaConsumer {
        self.consumer.as_ref().expect("the consumer is taken only on drop")
    }
}

impl EventSource for KafkaSource {
    fn poll(
        &mut self,
        timeout: Duration,
        max: usize,
        each: &mut dyn FnMut(Record<'_>) -> ControlFlow<()>,
    ) -> Option<usize> {
        let consumer = self.consumer.as_ref().expect("the consumer is taken only on drop");
        let mut passed = 0;
        let mut wait = timeout;
        while passed < max {
            let message = match consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => message,
                Some(Err(err)) => {
                    consumer.context().count_error(&err, "consumer error");
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
        if let Err(err) = self.consumer().store_offsets(&positions) {
            // The partition was unassigned meanwhile (its topic is gone).
            tracing::debug!(error = %err, "offsets not stored");
        }
    }

    fn commit_now(&mut self) {
        self.handed_off();
        drop(self.discovery.take());
        // librdkafka's synchronous commit waits for the broker without a
        // bound; wait for it on a helper thread, at most `commit_timeout`.
        let consumer = self.consumer.clone().expect("the consumer is taken only on drop");
        let (done, result) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new().name("kafka-commit".into()).spawn(move || {
            let _ = done.send(consumer.commit_consumer_state(CommitMode::Sync));
        });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "final kafka commit not started");
            return;
        }
        match result.recv_timeout(self.commit_timeout) {
            Ok(Ok(())) => tracing::info!("kafka offsets committed"),
            // Nothing consumed since the last commit.
            Ok(Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "final kafka commit failed"),
            Err(_) => tracing::warn!(
                timeout = ?self.commit_timeout,
                "final kafka commit unanswered; a restart re-reads from the last commit"
            ),
        }
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        drop(self.discovery.take());
        // Closing a consumer commits once more and waits for the group
        // coordinator, without a bound if the broker is gone: do it off the
        // ingest thread so shutdown keeps its deadline. The process may exit
        // before it finishes; the explicit commit already ran.
        if let Some(consumer) = self.consumer.take() {
            let _ = std::thread::Builder::new()
                .name("kafka-close".into())
                .spawn(move || drop(consumer));
        }
    }
}
