//! The tests' Kafka client: a real rdkafka producer that waits for every
//! record's acknowledgement, and the broker-side reads the multi-instance
//! tests check offsets with (high watermarks, a group's committed offsets).
//!
//! Used by [`super::TestEngine`] (every record it produces), by tests that
//! produce into a broker of their own (tansu, an [`super::own_broker`], a
//! fanout child's embedded broker) and by those that check what an instance
//! committed. Each test owns its producer; nothing is shared between tests.
//!
//! Invariant: when a `produce_*` call returns, the broker has the record
//! (acknowledged, not merely queued), and [`Producer::count`] includes it;
//! so a test may wait for the engine to have consumed `count` records.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;

use super::PATIENCE;

/// A producer into one broker.
pub struct Producer {
    bootstrap: String,
    producer: BaseProducer,
    /// Records acknowledged so far.
    count: Cell<u64>,
}

impl Producer {
    /// A producer into the broker at `bootstrap`, tuned to send at once.
    pub fn new(bootstrap: &str) -> Producer {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "0")
            .set("socket.nagle.disable", "true")
            .create()
            .expect("producer");
        Producer {
            bootstrap: bootstrap.to_string(),
            producer,
            count: Cell::new(0),
        }
    }

    /// Produces a JSON value (the partitioner picks the partition).
    pub fn produce_json(&self, topic: &str, value: &Value) {
        self.produce_keyed(topic, None, value.to_string().as_bytes());
    }

    /// Produces raw bytes with an optional key (one key: one partition).
    pub fn produce_keyed(&self, topic: &str, key: Option<&str>, value: &[u8]) {
        let mut record = BaseRecord::<str, [u8]>::to(topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        self.send(record);
    }

    /// Produces `values` into one partition of `topic` as one batch, so one
    /// fetch brings them all and the engine takes them together.
    pub fn produce_burst(&self, topic: &str, partition: i32, values: &[String]) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "50")
            .create()
            .expect("burst producer");
        for value in values {
            producer
                .send(
                    BaseRecord::<str, [u8]>::to(topic)
                        .partition(partition)
                        .payload(value.as_bytes()),
                )
                .map_err(|(err, _)| err)
                .expect("enqueue record");
        }
        producer.flush(PATIENCE).expect("broker acknowledged the burst");
        self.count.set(self.count.get() + values.len() as u64);
    }

    /// Produces a JSON value into one partition of `topic`.
    pub fn produce_to_partition(&self, topic: &str, partition: i32, value: &Value) {
        let value = value.to_string();
        self.send(
            BaseRecord::<str, [u8]>::to(topic)
                .partition(partition)
                .payload(value.as_bytes()),
        );
    }

    /// Records produced (and acknowledged) so far.
    pub fn count(&self) -> u64 {
        self.count.get()
    }

    /// The high watermark (next offset) of partitions `0..count` of `topic`.
    pub fn high_watermarks(&self, topic: &str, count: i32) -> Vec<i64> {
        let consumer = self.consumer("fanout-test-watermarks");
        (0..count)
            .map(|partition| {
                consumer
                    .fetch_watermarks(topic, partition, PATIENCE)
                    .expect("watermarks")
                    .1
            })
            .collect()
    }

    /// Group `group`'s committed offset of partitions `0..count` of `topic`
    /// (-1: none), read the way an instance resolves its start (OffsetFetch
    /// for the group) without joining the group.
    pub fn committed(&self, group: &str, topic: &str, count: i32) -> Vec<i64> {
        let consumer = self.consumer(group);
        let mut asked = TopicPartitionList::new();
        for partition in 0..count {
            asked.add_partition(topic, partition);
        }
        let committed = consumer.committed_offsets(asked, PATIENCE).expect("committed offsets");
        (0..count)
            .map(
                |partition| match committed.find_partition(topic, partition).map(|e| e.offset()) {
                    Some(Offset::Offset(n)) => n,
                    _ => -1,
                },
            )
            .collect()
    }

    /// Waits until group `group` has committed `expected` for `topic`.
    pub fn wait_committed(&self, group: &str, topic: &str, expected: &[i64]) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let committed = self.committed(group, topic, expected.len() as i32);
            if committed == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "group {group} committed {committed:?} of {topic}, expected {expected:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one record and waits until the broker has it.
    fn send(&self, record: BaseRecord<'_, str, [u8]>) {
        self.producer
            .send(record)
            .map_err(|(err, _)| err)
            .expect("enqueue record");
        // `flush` polls in 100 ms steps; poll finely to see the ack promptly.
        let deadline = Instant::now() + PATIENCE;
        while self.producer.in_flight_count() > 0 {
            assert!(Instant::now() < deadline, "broker never acknowledged the record");
            self.producer.poll(Duration::from_millis(1));
        }
        self.count.set(self.count.get() + 1);
    }

    /// An unsubscribed consumer in `group`, for one query; it never commits.
    fn consumer(&self, group: &str) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer")
    }
}
