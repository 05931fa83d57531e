//! Verifies that every instance consumes every partition: two instances
//! started with the same brokers, group and topics (tansu, 6 partitions)
//! each deliver all 60 events to their own client, where Kafka's group
//! protocol used to give each instance half the partitions and each client
//! 30 of the 60. See: #9

mod common;

use std::collections::BTreeSet;

use common::producer::Producer;
use common::tansu::TansuBroker;
use common::{PATIENCE, Received, TestEngine, booking};
use serde_json::json;

const TOPIC: &str = "booking.created";
const PARTITIONS: i32 = 6;
const EVENTS: u32 = 60;
const SENTINEL: u32 = 1_000;

#[test]
fn two_instances_with_one_configuration_each_get_all_60_events() {
    let broker = TansuBroker::start();
    broker.create_topic(TOPIC, PARTITIONS);
    let args = [
        "--kafka-group-id",
        "notification-service",
        "--topics",
        TOPIC,
        "--kafka-opt",
        "fetch.wait.max.ms=1",
    ];
    let first = TestEngine::start_on(&broker.bootstrap(), &args);
    let second = TestEngine::start_on(&broker.bootstrap(), &args);
    let mut clients = Vec::new();
    for engine in [&first, &second] {
        assert_eq!(engine.metric("fanout_kafka_partitions_assigned"), PARTITIONS as f64);
        let mut client = engine.public_client();
        client.subscribe(json!({"course_id": "C1"}));
        clients.push(client);
    }

    let producer = Producer::new(&broker.bootstrap());
    for n in 0..EVENTS {
        producer.produce_to_partition(TOPIC, n as i32 % PARTITIONS, &booking("C1", n));
    }
    // Per-partition order: once a partition's sentinel is in, so is the
    // rest of that partition.
    for partition in 0..PARTITIONS {
        producer.produce_to_partition(TOPIC, partition, &booking("C1", SENTINEL + partition as u32));
    }

    for (i, client) in clients.iter_mut().enumerate() {
        let mut sentinels = 0;
        let mut got = Vec::new();
        while sentinels < PARTITIONS {
            match client.recv_within(PATIENCE) {
                Received::Json(message) => {
                    let n = message["slots_remaining"].as_u64().expect("slots_remaining") as u32;
                    if n >= SENTINEL {
                        sentinels += 1;
                    } else {
                        got.push(n);
                    }
                }
                other => panic!("client {i} stopped after {} events: {other:?}", got.len()),
            }
        }
        assert_eq!(got.len(), EVENTS as usize, "client {i} got {} of {EVENTS}", got.len());
        assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), (0..EVENTS).collect());
    }
}
