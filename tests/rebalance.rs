//! Verifies that a consumer-group rebalance keeps the engine serving (SPEC
//! §5): when a second instance joins the group and later leaves, the first
//! keeps its clients open and served, and every event reaches the clients
//! of an instance that reads its partition; none is lost.
//!
//! The assertions hold whether instances share the group's partitions (a
//! rebalance splits them) or each reads every partition (no rebalance at
//! all): the first instance serves throughout, and no event is lost.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Client, PATIENCE, Received, TestEngine, booking, own_broker};
use serde_json::json;

/// Partitions of `booking.created` on the test broker.
const PARTITIONS: u32 = 2;

/// One event per partition, numbered `first`, `first + 1`, ...
fn produce_one_per_partition(engine: &TestEngine, first: u32) {
    for partition in 0..PARTITIONS {
        engine.produce_to_partition("booking.created", partition as i32, &booking("C1", first + partition));
    }
}

/// Reads `clients` in turn until, between them, they got every number in
/// `wanted`; returns everything they got (redeliveries included).
fn collect(clients: &mut [&mut Client], wanted: &BTreeSet<u64>) -> BTreeSet<u64> {
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + PATIENCE;
    while !wanted.is_subset(&got) {
        assert!(Instant::now() < deadline, "lost: wanted {wanted:?}, got {got:?}");
        for client in clients.iter_mut() {
            match client.recv_within(Duration::from_millis(20)) {
                Received::Json(message) => {
                    got.insert(message["slots_remaining"].as_u64().expect("a booking"));
                }
                Received::Nothing => {}
                Received::Closed(code) => panic!("a client was closed ({code:?})"),
            }
        }
    }
    got
}

#[test]
fn another_instance_joining_and_leaving_keeps_the_first_serving() {
    // A rebalance waits for every member to rejoin, which members learn of
    // at their next heartbeat, up to a session timeout: the defaults (3 s,
    // 45 s) make this test take ten times as long.
    let (broker, args) = own_broker(
        PARTITIONS as i32,
        "rebalance",
        &[
            "--kafka-opt",
            "heartbeat.interval.ms=100",
            "--kafka-opt",
            "session.timeout.ms=2000",
        ],
    );
    let first = TestEngine::start_on(broker.bootstrap(), &args);
    let mut client = first.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    // Consumed (and so committed at the revocation) before anyone joins: a
    // partition that moves starts where the first instance left it.
    produce_one_per_partition(&first, 0);
    collect(&mut [&mut client], &(0..2).collect());

    // A second instance joins; `start_on` returns once it reads partitions.
    let second = TestEngine::start_on(broker.bootstrap(), &args);
    let mut other = second.public_client();
    other.subscribe(json!({"course_id": "C1"}));
    assert_eq!(first.http_get("/healthz").0, 200);
    // Every event reaches a client of one instance or the other.
    produce_one_per_partition(&first, 10);
    collect(&mut [&mut client, &mut other], &(10..12).collect());

    // It leaves; the first instance reads every partition again.
    // (Its client goes first, or the drain would wait for it to answer the
    // close.)
    drop(other);
    second.shutdown();
    first.wait_metric("fanout_kafka_partitions_assigned", |n| n == f64::from(PARTITIONS));
    produce_one_per_partition(&first, 20);
    // (At least once into the engine: a moved partition may replay what the
    // leaver took but had not committed; `collect` lets that pass.)
    collect(&mut [&mut client], &(20..22).collect());
}
