//! The topology thread: look the configured topics up, resolve the start
//! offset of every new partition, assign it, say whether we are ready.
//!
//! Every instance consumes every partition (SPEC §11), so nothing joins a
//! consumer group: this thread asks the broker for each topic's partitions
//! every `--kafka-refresh-interval` (every second at most while not ready),
//! resolves each new partition's start offset itself (the instance group's
//! committed offset, else the watermark `topology` picks) and adds it to
//! the consumer with `incremental_assign` (librdkafka's "simple consumer":
//! positions are still committed to the group coordinator). It owns the
//! [`Topology`] and is the only writer of the Kafka side of [`Readiness`]:
//! ready once every partition of every configured topic is assigned at a
//! resolved offset, so nothing produced from then on can be missed.
//!
//! It shares the consumer with the ingest thread, which polls it; every call
//! made here (metadata, offset queries, assignment) is thread-safe in
//! librdkafka and answered on a queue of its own. Its calls block it for at
//! most [`REQUEST_TIMEOUT`], never the ingest thread.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use super::KafkaConsumer;
use super::throttle::LogThrottle;
use super::topology::{NewPartition, Plan, Seen, StartFrom, Topology};
use crate::metrics::IngestMetrics;
use crate::readiness::Readiness;

/// Longest an offset request of this thread may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a metadata request may take: a reachable broker answers in
/// milliseconds, and while none is, `/readyz` should say so soon.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// Interval between lookups while not ready (capped by the refresh
/// interval), so a broker or topic that appears is picked up soon.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Everything the thread works with.
pub struct Discovery {
    /// The consumer the ingest thread polls.
    pub consumer: Arc<KafkaConsumer>,
    /// The configured topics.
    pub topics: Vec<String>,
    /// `--kafka-refresh-interval`.
    pub refresh_interval: Duration,
    /// `auto.offset.reset` names the low watermark.
    pub reset_to_earliest: bool,
    /// Where readiness is reported.
    pub readiness: Arc<Readiness>,
    /// `fanout_kafka_partitions_assigned`.
    pub metrics: Arc<IngestMetrics>,
    /// Shared with the consumer's callbacks.
    pub throttle: Arc<LogThrottle>,
}

/// The running thread; dropping this stops it at its next wake-up.
pub struct DiscoveryThread {
    _stop: Sender<()>,
    _thread: JoinHandle<()>,
}

impl Discovery {
    /// Starts the thread; its first lookup runs at once.
    pub fn spawn(self) -> std::io::Result<DiscoveryThread> {
        let (stop, stopped) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kafka-topology".into())
            .spawn(move || self.run(&stopped))?;
        Ok(DiscoveryThread {
            _stop: stop,
            _thread: thread,
        })
    }

    fn run(self, stopped: &Receiver<()>) {
        let mut topology = Topology::new(&self.topics);
        loop {
            let seen = self.look_up_all();
            let plan = topology.plan(&seen);
            let reason = match self.carry_out(&plan) {
                Ok(()) => {
                    topology.apply(&seen);
                    topology.not_ready_reason(&seen)
                }
                Err(err) => Some(format!("kafka: could not resolve start offsets: {err}")),
            };
            self.metrics.partitions_assigned.set(topology.assigned_count() as i64);
            let wait = match reason {
                None => {
                    if !self.readiness.kafka() {
                        tracing::info!(
                            partitions = topology.assigned_count(),
                            "kafka ready: every partition assigned"
                        );
                    }
                    self.readiness.set_kafka_ready();
                    // Assigned partitions keep flowing while lookups fail
                    // (librdkafka retries); say so, sparingly.
                    if let Some(Seen::Failed(err)) = seen.iter().find(|seen| matches!(seen, Seen::Failed(_)))
                        && let Some(held_back) = self.throttle.admit("partition lookup")
                    {
                        tracing::warn!(held_back, "kafka: partition lookup failed: {err}");
                    }
                    self.refresh_interval
                }
                Some(reason) => {
                    if let Some(held_back) = self.throttle.admit(&reason) {
                        tracing::warn!(held_back, "{reason}; /readyz answers 503");
                    }
                    self.readiness.set_kafka_not_ready(reason);
                    self.refresh_interval.min(RETRY_INTERVAL)
                }
            };
            match stopped.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Every configured topic's partition count, one metadata request per
    /// topic (a request for all topics could be megabytes on a big
    /// cluster). A request that fails outright (no broker answered) fails
    /// the rest of the round too, rather than waiting once per topic.
    fn look_up_all(&self) -> Vec<Seen> {
        let mut seen = Vec::with_capacity(self.topics.len());
        for topic in &self.topics {
            match self.consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT) {
                Ok(metadata) => seen.push(Self::partitions_of(topic, &metadata)),
                Err(err) => {
                    let err = err.to_string();
                    seen.resize(self.topics.len(), Seen::Failed(err));
                    break;
                }
            }
        }
        seen
    }

    /// What a metadata answer says about `topic`.
    fn partitions_of(topic: &str, metadata: &rdkafka::metadata::Metadata) -> Seen {
        let Some(answer) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Seen::Failed("the broker did not answer for the topic".into());
        };
        match answer.error() {
            Some(
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
                | RDKafkaRespErr::RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC,
            ) => Seen::Missing,
            // Partitions listed with an error (a leader election) still exist.
            _ if !answer.partitions().is_empty() => Seen::Partitions(answer.partitions().len() as i32),
            Some(err) => Seen::Failed(format!("{err:?}")),
            None => Seen::Failed("the topic has no partitions".into()),
        }
    }

    /// Unassigns what is gone; resolves and assigns what is new.
    fn carry_out(&self, plan: &Plan) -> KafkaResult<()> {
        if !plan.remove.is_empty() {
            let mut gone = TopicPartitionList::with_capacity(plan.remove.len());
            for (topic, partition) in &plan.remove {
                gone.add_partition(topic, *partition);
            }
            // Not fatal: a partition that is not assigned is what we want.
            match self.consumer.incremental_unassign(&gone) {
                Ok(()) => tracing::warn!(
                    partitions = plan.remove.len(),
                    "kafka: topic gone, its partitions unassigned"
                ),
                Err(err) => tracing::warn!(error = %err, "kafka: topic gone, unassigning its partitions failed"),
            }
        }
        if plan.add.is_empty() {
            return Ok(());
        }
        let (start, uncommitted) = self.resolve(&plan.add)?;
        self.consumer.incremental_assign(&start)?;
        // Commit where the group had no position, so a restart resumes
        // here even if nothing is consumed before it (SPEC §11). Ordered
        // before any stored offset: nothing was fetched yet.
        if uncommitted.count() > 0
            && let Err(err) = self.consumer.commit(&uncommitted, CommitMode::Async)
        {
            tracing::warn!(error = %err, "kafka: could not commit the start offsets");
        }
        for topic in self.topics.iter() {
            let offsets: Vec<(i32, i64)> = plan
                .add
                .iter()
                .filter(|new| &new.topic == topic)
                .filter_map(|new| {
                    let element = start.find_partition(&new.topic, new.partition)?;
                    Some((new.partition, element.offset().to_raw()?))
                })
                .collect();
            if let Some(first) = plan.add.iter().find(|new| &new.topic == topic) {
                tracing::info!(topic, from = ?first.from, "kafka partitions assigned (partition, offset): {offsets:?}");
            }
        }
        Ok(())
    }

    /// The start offset of each of `new`: the group's committed offset, else
    /// the watermark its [`StartFrom`] names. Also returns the partitions
    /// whose offset did not come from the group.
    fn resolve(&self, new: &[NewPartition]) -> KafkaResult<(TopicPartitionList, TopicPartitionList)> {
        let mut asked = TopicPartitionList::with_capacity(new.len());
        for partition in new {
            asked.add_partition(&partition.topic, partition.partition);
        }
        let committed = self.consumer.committed_offsets(asked, REQUEST_TIMEOUT)?;
        let mut start = TopicPartitionList::with_capacity(new.len());
        // ListOffsets takes -2 (earliest) and -1 (latest) as timestamps:
        // one request per leader for every watermark at once.
        let mut watermarks = TopicPartitionList::new();
        for partition in new {
            let element =
                committed
                    .find_partition(&partition.topic, partition.partition)
                    .ok_or(KafkaError::OffsetFetch(
                        rdkafka::error::RDKafkaErrorCode::UnknownPartition,
                    ))?;
            element.error()?;
            match element.offset() {
                Offset::Offset(n) if n >= 0 => {
                    start.add_partition_offset(&partition.topic, partition.partition, Offset::Offset(n))?
                }
                _ => {
                    let earliest = partition.from == StartFrom::Beginning || self.reset_to_earliest;
                    let at = if earliest { Offset::Beginning } else { Offset::End };
                    watermarks.add_partition_offset(&partition.topic, partition.partition, at)?;
                }
            }
        }
        if watermarks.count() == 0 {
            return Ok((start, watermarks));
        }
        let resolved = self.consumer.offsets_for_times(watermarks, REQUEST_TIMEOUT)?;
        for element in resolved.elements() {
            element.error()?;
            let Offset::Offset(n) = element.offset() else {
                return Err(KafkaError::OffsetFetch(
                    rdkafka::error::RDKafkaErrorCode::OffsetOutOfRange,
                ));
            };
            start.add_partition_offset(element.topic(), element.partition(), Offset::Offset(n))?;
        }
        Ok((start, resolved))
    }
}
