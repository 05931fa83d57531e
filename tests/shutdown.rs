//! Verifies graceful shutdown (SPEC §10): on SIGTERM `/readyz` answers 503
//! at once while the instance keeps serving for `--drain-grace`; then
//! clients get close 1001 and the process exits 0 within grace +
//! `--drain-timeout`, even with the broker gone; offsets of everything
//! handed off are committed, so a restarted instance does not redeliver.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{FanoutProcess, public_client};
use common::{TestEngine, booking};
use fanout::ingest::embedded::EmbeddedBroker;
use serde_json::json;

#[test]
fn sigterm_closes_clients_with_1001_and_exits_zero() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args([
            "--kafka-brokers",
            "embedded",
            "--no-pin",
            "--shards",
            "1",
            "--listen",
            "127.0.0.1",
        ])
        .args(["--port", "0", "--drain-timeout", "2s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fanout");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let addr = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("fanout listening on ").map(str::to_string))
        .expect("fanout prints its address");
    let url = format!("ws://{addr}/ws/availability");
    let (mut ws, _) = tungstenite::connect(&url).expect("connect");
    assert!(matches!(ws.read().expect("connected"), tungstenite::Message::Text(_)));

    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let started = Instant::now();
    let code = loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(err) => panic!("no close frame: {err}"),
        }
    };
    assert_eq!(code, Some(1001));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "still running after the drain timeout"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

/// A `booking.created` broker of the test's own (it outlives the engines
/// started on it) and the engine flags for consumer group `group` (one
/// instance id, so a restarted engine resumes from the same positions).
fn own_broker(partitions: i32, group: &'static str, extra: &[&'static str]) -> (EmbeddedBroker, Vec<&'static str>) {
    let broker = EmbeddedBroker::start(&["booking.created".to_string()], partitions).expect("broker");
    let mut args = vec![
        "--topics",
        "booking.created",
        "--kafka-group-id",
        group,
        "--instance-id",
        "restarted",
    ];
    // The mock broker sits out fetch.wait.max.ms (see src/ingest/kafka.rs).
    args.extend(["--kafka-opt", "fetch.wait.max.ms=1"]);
    args.extend_from_slice(extra);
    (broker, args)
}

#[test]
fn offsets_are_committed_so_a_restart_does_not_redeliver() {
    // Were offsets not committed, `earliest` would replay everything.
    let (broker, args) = own_broker(2, "restart-test", &["--kafka-opt", "auto.offset.reset=earliest"]);

    let first = TestEngine::start_on(broker.bootstrap(), &args);
    let mut client = first.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    for slots in 0..5 {
        first.produce_json("booking.created", &booking("C1", slots));
    }
    for _ in 0..5 {
        client.recv_json();
    }
    first.shutdown();

    let second = TestEngine::start_on(broker.bootstrap(), &args);
    let mut client = second.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    second.produce_json("booking.created", &booking("C1", 99));
    assert_eq!(
        client.recv_json()["slots_remaining"],
        99,
        "nothing handed off before is delivered again"
    );
    client.expect_silence(Duration::from_millis(300));
}

#[test]
fn a_position_past_retention_is_reset_and_counted() {
    // The mock broker keeps about 100k records or 5 MiB per partition; push
    // the committed position of a group out of that window.
    let (broker, args) = own_broker(1, "retention-test", &[]);
    let first = TestEngine::start_on(broker.bootstrap(), &args);
    let mut client = first.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    first.produce_json("booking.created", &booking("C1", 1));
    client.recv_json();
    first.shutdown();

    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let filler = vec![b'x'; 200];
    for _ in 0..60_000 {
        loop {
            match producer.send(rdkafka::producer::BaseRecord::<(), [u8]>::to("booking.created").payload(&filler)) {
                Ok(()) => break,
                Err(_) => {
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).expect("flush");

    let second = TestEngine::start_on(broker.bootstrap(), &args);
    second.wait_metric("fanout_kafka_offset_resets_total", |v| v >= 1.0);
}

#[test]
fn a_lost_broker_is_retried_and_delivery_resumes() {
    // SPEC §5: a lost broker is retried with backoff; the process keeps serving.
    let (broker, args) = own_broker(1, "lost-broker", &[]);
    let engine = TestEngine::start_on(broker.bootstrap(), &args);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    engine.produce_json("booking.created", &booking("C1", 1));
    assert_eq!(client.recv_json()["slots_remaining"], 1);

    broker.set_down(true).expect("broker down");
    // The consumer notices (librdkafka reports the lost broker).
    engine.wait_metric("fanout_kafka_errors_total", |v| v >= 1.0);
    // Still serving while Kafka is gone.
    assert_eq!(engine.http_get("/healthz").0, 200);
    let mut late = engine.public_client();
    late.subscribe(json!({"course_id": "C1"}));

    broker.set_down(false).expect("broker up");
    engine.produce_json("booking.created", &booking("C1", 2));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for client in [&mut client, &mut late] {
        loop {
            match client.recv_within(deadline.saturating_duration_since(std::time::Instant::now())) {
                common::Received::Json(got) if got["slots_remaining"] == 2 => break,
                common::Received::Json(_) => continue,
                other => panic!("no delivery after the broker came back: {other:?}"),
            }
        }
    }
}

#[test]
fn sigterm_turns_readyz_503_at_once_and_serves_through_the_grace() {
    // See: #9
    let mut fanout = FanoutProcess::start(&[
        "--kafka-brokers",
        "embedded",
        "--shards",
        "1",
        "--port",
        "0",
        "--drain-grace",
        "60s",
        "--drain-timeout",
        "2s",
    ]);
    fanout.wait_ready();
    let mut before = public_client(fanout.addr);
    fanout.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    while fanout.http_get("/readyz") != (503, "shutting down\n".to_string()) {
        assert!(
            Instant::now() < deadline,
            "/readyz still {:?}",
            fanout.http_get("/readyz")
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The grace (60 s) is far from over: still alive, still upgrading.
    assert_eq!(fanout.http_get("/healthz").0, 200);
    let mut during = public_client(fanout.addr);
    before.send_json(json!({"type": "subscribe", "filters": {"course_id": "C1"}}));
    assert_eq!(before.recv_json()["type"], "subscribed");

    // A second signal ends the grace.
    fanout.signal(libc::SIGTERM);
    let closed = Instant::now();
    assert_eq!(before.expect_close(), Some(1001));
    assert_eq!(during.expect_close(), Some(1001));
    let status = fanout.wait_exit(Duration::from_secs(4));
    assert!(status.success(), "{status:?}");
    assert!(
        closed.elapsed() < Duration::from_secs(4),
        "exited within the drain timeout"
    );
}

#[test]
fn shutdown_keeps_its_deadline_when_the_broker_is_gone() {
    // The final commit cannot be answered; it must not hold the exit up.
    // See: #9
    let (broker, args) = own_broker(
        1,
        "broker-gone",
        &[
            "--drain-timeout",
            "1s",
            "--kafka-opt",
            "auto.commit.interval.ms=3600000",
        ],
    );
    let engine = TestEngine::start_on(broker.bootstrap(), &args);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    engine.produce_json("booking.created", &booking("C1", 1));
    assert_eq!(client.recv_json()["slots_remaining"], 1);
    broker.set_down(true).expect("broker down");

    let started = Instant::now();
    engine.shutdown();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "shutdown took {took:?} with --drain-timeout 1s"
    );
}
