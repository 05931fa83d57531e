//! The Kafka side of the multi-instance tests: produce to chosen partitions,
//! read watermarks and a consumer group's committed offsets.
//!
//! A real rdkafka producer and an unsubscribed consumer per query, against
//! whatever broker the test started (tansu, or the embedded mock). The
//! committed offsets are read the way an instance resolves its start
//! (OffsetFetch for the group), without joining the group.

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
}

impl Producer {
    /// A producer into `bootstrap`.
    pub fn new(bootstrap: &str) -> Producer {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "0")
            .set("socket.nagle.disable", "true")
            .create()
            .expect("producer");
        Producer {
            bootstrap: bootstrap.to_string(),
            producer,
        }
    }

    /// Produces `value` to `topic`'s `partition` and waits for the ack.
    pub fn send(&self, topic: &str, partition: i32, value: &Value) {
        let payload = value.to_string();
        let record = BaseRecord::<(), str>::to(topic).partition(partition).payload(&payload);
        self.producer
            .send(record)
            .map_err(|(err, _)| err)
            .expect("enqueue record");
        let deadline = Instant::now() + PATIENCE;
        while self.producer.in_flight_count() > 0 {
            assert!(Instant::now() < deadline, "broker never acknowledged the record");
            self.producer.poll(Duration::from_millis(1));
        }
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
    /// (-1: none).
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

    fn consumer(&self, group: &str) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer")
    }
}
