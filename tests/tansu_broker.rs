//! Verifies the Kafka path against a separate broker process (tansu 0.6, a
//! Kafka-compatible broker): explicit assignment, routing, skipped records,
//! and the instance's committed offsets surviving a restart.

mod common;

use std::time::Instant;

use common::tansu::TansuBroker;
use common::{TestEngine, booking};
use fanout::config::DEFAULT_TOPICS;
use serde_json::json;

/// Partitions of every topic on the test broker.
const PARTITIONS: i32 = 3;

fn broker_with_topics() -> TansuBroker {
    let broker = TansuBroker::start();
    for topic in DEFAULT_TOPICS {
        broker.create_topic(topic, PARTITIONS);
    }
    broker
}

#[test]
fn events_through_tansu_reach_matching_subscribers() {
    let broker = broker_with_topics();
    let engine = TestEngine::start_on(&broker.bootstrap(), &["--kafka-group-id", "tansu-routing"]);
    let mut piano = engine.public_client();
    piano.subscribe(json!({"course_id": "PIANO-101"}));
    let mut rooms = engine.public_client();
    rooms.subscribe(json!({"room_id": ["R1", "R2"]}));
    rooms.watch_sentinel();

    engine.produce("booking.created", "{broken json");
    engine.produce_json("booking.created", &booking("PIANO-101", 4));
    engine.produce_json(
        "schedule.updated",
        &json!({"payload": {"room_id": ["R1", "R2"], "schedule_id": "s"}}),
    );

    let got = piano.recv_json();
    assert_eq!(got["type"], "availability.updated", "{}", broker.log_tail());
    assert_eq!(got["slots_remaining"], 4);
    assert_eq!(rooms.recv_json()["type"], "availability.changed");
    let sentinel = engine.produce_sentinel();
    rooms.expect_sentinel(sentinel);
    engine.wait_metric("fanout_events_skipped_total{reason=\"invalid_json\"}", |v| v == 1.0);
}

#[test]
fn per_key_order_holds_through_tansu() {
    let broker = broker_with_topics();
    let engine = TestEngine::start_on(&broker.bootstrap(), &["--kafka-group-id", "tansu-order"]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    for slots in 0..30 {
        engine.produce_keyed(
            "booking.created",
            Some("C1"),
            booking("C1", slots).to_string().as_bytes(),
        );
    }
    for slots in 0..30 {
        assert_eq!(client.recv_json()["slots_remaining"], slots);
    }
}

#[test]
fn committed_offsets_survive_a_restart_on_tansu() {
    let broker = broker_with_topics();
    let args = [
        "--kafka-group-id",
        "tansu-restart",
        "--instance-id",
        "restarted",
        "--kafka-opt",
        "auto.offset.reset=earliest",
    ];
    let first = TestEngine::start_on(&broker.bootstrap(), &args);
    let mut client = first.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    for slots in 0..3 {
        first.produce_json("booking.created", &booking("C1", slots));
    }
    for _ in 0..3 {
        client.recv_json();
    }
    first.shutdown();

    let started = Instant::now();
    let second = TestEngine::start_on(&broker.bootstrap(), &args);
    eprintln!("ready again in {:?}", started.elapsed());
    let mut client = second.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    // One new record in each partition: once all arrived, the engine has
    // read each partition past anything it would replay there.
    for partition in 0..PARTITIONS {
        second.produce_to_partition("booking.created", partition, &booking("C1", 40 + partition as u32));
    }
    let mut slots: Vec<u64> = (0..PARTITIONS)
        .map(|_| client.recv_json()["slots_remaining"].as_u64().expect("slots"))
        .collect();
    slots.sort_unstable();
    assert_eq!(slots, [40, 41, 42], "{}", broker.log_tail());
    assert_eq!(
        second.metric("fanout_events_consumed_total"),
        f64::from(PARTITIONS),
        "nothing handed off before was consumed again"
    );
}
