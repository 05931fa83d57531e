//! Verifies that instances scale out behind a real load balancer (HAProxy
//! running `deploy/haproxy.cfg`, two fanout processes with one
//! configuration, tansu with 6 partitions per topic): every client gets
//! every event of its filters exactly once, whichever instance it is on;
//! SIGTERM turns an instance's `/readyz` to 503 while it keeps serving
//! (`--drain-grace`), the balancer takes it out, then its clients are
//! closed with 1001 and reconnect through the balancer to the other
//! instance; restarted with the same instance id, it resumes from its own
//! committed position. See: #9

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::haproxy::{CHECK_INTERVAL, Haproxy};
use common::process::FanoutProcess;
use common::producer::Producer;
use common::tansu::TansuBroker;
use common::{Client, PATIENCE, Received, booking, free_port, public_client_at};
use serde_json::json;

const TOPICS: [&str; 2] = ["booking.created", "booking.cancelled"];
const PARTITIONS: i32 = 6;
/// Long enough never to run out in the test: a second SIGTERM ends it.
const GRACE: &str = "60s";
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// Event numbers (`slots_remaining`) at and above this mark a partition's
/// end of a round.
const SENTINEL: u32 = 1_000_000;

/// The one configuration both instances run (only the port differs, as on
/// one host; the instance id defaults to `<host name>-<port>`).
fn instance(bootstrap: &str, port: u16) -> FanoutProcess {
    let port = port.to_string();
    FanoutProcess::start(&[
        "--kafka-brokers",
        bootstrap,
        "--kafka-group-id",
        "scale-out",
        "--topics",
        &TOPICS.join(","),
        "--shards",
        "1",
        "--port",
        &port,
        "--drain-grace",
        GRACE,
        "--drain-timeout",
        &format!("{}s", DRAIN_TIMEOUT.as_secs()),
        "--log-format",
        "json",
        // tansu sits out fetch.wait.max.ms (README, --kafka-opt).
        "--kafka-opt",
        "fetch.wait.max.ms=1",
    ])
}

/// The consumer group the instance commits under, from its start-up log.
fn group_of(instance: &FanoutProcess) -> String {
    let serving = instance
        .log_event("fanout serving")
        .expect("the start-up line is logged");
    serving["group"].as_str().expect("group field").to_string()
}

/// Open upgraded connections of an instance.
fn connections(instance: &FanoutProcess) -> f64 {
    instance.metric("fanout_connections")
}

/// Produces, on every partition of every topic, one `C1` event numbered
/// from `first`, one `C2` event nobody here wants, then a `C1` sentinel.
/// Returns the `C1` numbers and how many records were produced.
fn produce_round(producer: &Producer, first: u32) -> (BTreeSet<u32>, usize) {
    let mut expected = BTreeSet::new();
    let mut records = 0;
    let mut next = first;
    for topic in TOPICS {
        for partition in 0..PARTITIONS {
            producer.produce_to_partition(topic, partition, &booking("C1", next));
            producer.produce_to_partition(topic, partition, &booking("C2", next));
            expected.insert(next);
            next += 1;
            records += 2;
        }
    }
    for (i, (topic, partition)) in TOPICS
        .iter()
        .flat_map(|topic| (0..PARTITIONS).map(move |p| (*topic, p)))
        .enumerate()
    {
        producer.produce_to_partition(topic, partition, &booking("C1", SENTINEL + i as u32));
        records += 1;
    }
    (expected, records)
}

/// Reads until every partition's sentinel arrived (per-partition order:
/// everything produced before it arrived too); returns the other `C1`
/// numbers received, repeats included.
fn receive_round(client: &mut Client) -> Vec<u32> {
    let sentinels = TOPICS.len() * PARTITIONS as usize;
    let mut seen_sentinels = BTreeSet::new();
    let mut got = Vec::new();
    while seen_sentinels.len() < sentinels {
        let message = match client.recv_within(PATIENCE) {
            Received::Json(message) => message,
            other => panic!(
                "round incomplete ({} of {sentinels} partitions): {other:?}",
                seen_sentinels.len()
            ),
        };
        assert_eq!(message["course_id"], "C1", "only C1 was subscribed: {message}");
        let number = message["slots_remaining"].as_u64().expect("slots_remaining") as u32;
        if number >= SENTINEL {
            assert!(seen_sentinels.insert(number), "sentinel {number} twice");
        } else {
            got.push(number);
        }
    }
    got
}

fn assert_exactly_once(clients: &mut [Client], expected: &BTreeSet<u32>) {
    for (i, client) in clients.iter_mut().enumerate() {
        let got = receive_round(client);
        assert_eq!(got.len(), expected.len(), "client {i}: {got:?}");
        assert_eq!(&got.into_iter().collect::<BTreeSet<_>>(), expected, "client {i}");
    }
}

fn subscribed(mut client: Client) -> Client {
    client.subscribe(json!({"course_id": "C1"}));
    client
}

#[test]
fn instances_behind_haproxy_deliver_everything_drain_and_resume() {
    let broker = TansuBroker::start();
    for topic in TOPICS {
        broker.create_topic(topic, PARTITIONS);
    }
    let producer = Producer::new(&broker.bootstrap());
    let ports = [free_port(), free_port()];
    let mut a = instance(&broker.bootstrap(), ports[0]);
    let b = instance(&broker.bootstrap(), ports[1]);
    for instance in [&a, &b] {
        instance.wait_ready();
        assert_eq!(
            instance.metric("fanout_kafka_partitions_assigned"),
            (TOPICS.len() as i32 * PARTITIONS) as f64,
            "every instance reads every partition"
        );
    }
    let group_a = group_of(&a);
    assert_ne!(group_a, group_of(&b), "each instance commits under its own group");
    let lb = Haproxy::start([a.addr, b.addr]);
    let checks = CHECK_INTERVAL * 20;
    lb.wait_status("fanout1", "UP", checks);
    lb.wait_status("fanout2", "UP", checks);

    // Four clients through the balancer: least connections puts two on
    // each. Which client went where is read from the instances' gauges.
    let mut clients = Vec::new();
    let mut on_a = Vec::new();
    for i in 0..4 {
        let before = connections(&a);
        clients.push(subscribed(public_client_at(lb.addr())));
        if connections(&a) > before {
            on_a.push(i);
        }
    }
    assert_eq!(on_a.len(), 2, "least connections spreads 2 + 2");
    assert_eq!(connections(&b), 2.0);

    // Every client, on either instance, gets every C1 event exactly once.
    let (expected, _) = produce_round(&producer, 0);
    assert_exactly_once(&mut clients, &expected);

    // SIGTERM: /readyz 503 at once, the balancer takes the instance out,
    // and it keeps serving its clients meanwhile.
    a.signal(libc::SIGTERM);
    loop {
        let (status, body) = a.http_get("/readyz");
        if status == 503 {
            assert_eq!(body.trim(), "shutting down");
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    lb.wait_status("fanout1", "DOWN", checks);
    assert_eq!(a.http_get("/healthz").0, 200, "still alive during the grace");
    let (expected, _) = produce_round(&producer, 100);
    assert_exactly_once(&mut clients, &expected);

    // A second signal ends the grace: A's clients get 1001, A exits 0.
    a.signal(libc::SIGTERM);
    for &i in &on_a {
        assert_eq!(clients[i].expect_close(), Some(1001), "client {i}");
    }
    let status = a.wait_exit(DRAIN_TIMEOUT + Duration::from_secs(2));
    assert!(status.success(), "{status:?}\n{}", a.log_tail());
    let at_exit: Vec<Vec<i64>> = TOPICS
        .iter()
        .map(|topic| producer.high_watermarks(topic, PARTITIONS))
        .collect();
    for (topic, high) in TOPICS.iter().zip(&at_exit) {
        assert_eq!(
            &producer.committed(&group_a, topic, PARTITIONS),
            high,
            "A committed everything it consumed before exiting ({topic})"
        );
    }

    // They reconnect through the balancer, land on B and resubscribe; B
    // delivers what is produced from then on to all four.
    for &i in &on_a {
        clients[i] = subscribed(public_client_at(lb.addr()));
    }
    assert_eq!(connections(&b), 4.0, "every client is on B now");
    let (expected, produced_while_down) = produce_round(&producer, 200);
    assert_exactly_once(&mut clients, &expected);

    // A restarts with the same instance id (same host and port): it resumes
    // from its committed position, so it consumes exactly what was produced
    // while it was down; none of it is replayed to clients, which get only
    // what arrives after they subscribe (SPEC §11: no history).
    let a = instance(&broker.bootstrap(), ports[0]);
    assert_eq!(group_of(&a), group_a, "same instance id, same group");
    a.wait_ready();
    a.wait_metric("fanout_events_consumed_total", |n| n >= produced_while_down as f64);
    let now: Vec<Vec<i64>> = TOPICS
        .iter()
        .map(|topic| producer.high_watermarks(topic, PARTITIONS))
        .collect();
    for (topic, high) in TOPICS.iter().zip(&now) {
        producer.wait_committed(&group_a, topic, high);
    }
    let consumed_while_down: i64 = now.iter().flatten().sum::<i64>() - at_exit.iter().flatten().sum::<i64>();
    assert_eq!(consumed_while_down, produced_while_down as i64);
    assert_eq!(
        a.metric("fanout_events_consumed_total"),
        produced_while_down as f64,
        "resumed at its committed offsets: nothing skipped, nothing read twice"
    );

    // Back in the balancer: the next client goes to the emptier A.
    lb.wait_status("fanout1", "UP", checks);
    clients.push(subscribed(public_client_at(lb.addr())));
    assert_eq!(connections(&a), 1.0);
    let (expected, _) = produce_round(&producer, 300);
    assert_exactly_once(&mut clients, &expected);
    assert_eq!(b.metric("fanout_kafka_partitions_assigned"), 12.0);
}
