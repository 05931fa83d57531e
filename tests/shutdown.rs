//! Verifies graceful shutdown (SPEC §10): on SIGTERM `/readyz` answers 503
//! at once while the instance keeps serving for `--drain-grace`; then every
//! client gets close 1001 after what was queued for it (one that does not
//! read, after its events in the socket buffers) and the process exits 0
//! within grace + `--drain-timeout`, even when a client never reads or the
//! broker is gone; offsets of everything handed off are committed, so a
//! restarted instance does not redeliver.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::process::FanoutProcess;
use common::producer::Producer;
use common::raw::{frames_after_upgrade, read_to_close, text_frame, upgraded};
use common::{TestEngine, booking, own_broker};
use serde_json::json;

/// How long a process may take to exit after SIGTERM with
/// `--drain-timeout 1s`: the drain plus teardown (ingest's last poll, the
/// final commit), and below the 5 s default, so only the flag can make it.
const EXIT_LIMIT: Duration = Duration::from_secs(4);

/// The binary on the embedded broker, ready: one shard, `--drain-timeout 1s`,
/// and `extra` flags.
fn start_process(extra: &[&str]) -> FanoutProcess {
    let mut args = vec!["--kafka-brokers", "embedded", "--shards", "1"];
    args.extend(["--port", "0", "--drain-timeout", "1s"]);
    args.extend_from_slice(extra);
    let process = FanoutProcess::start(&args);
    // Records produced before this could fall before the start offsets.
    process.wait_ready();
    process
}

/// A client that subscribes to C1 over raw TCP and then never reads.
fn non_reader(process: &FanoutProcess, recv_buffer: Option<usize>) -> TcpStream {
    let mut stream = upgraded(process.addr, "/ws/availability", recv_buffer);
    stream
        .write_all(&text_frame(br#"{"type":"subscribe","filters":{"course_id":"C1"}}"#))
        .expect("subscribe");
    process.wait_metric("fanout_subscription_entries", |v| v == 1.0);
    stream
}

#[test]
fn sigterm_closes_clients_with_1001_and_exits_zero() {
    let mut process = start_process(&[]);
    let url = format!("ws://{}/ws/availability", process.addr);
    let (mut ws, _) = tungstenite::connect(&url).expect("connect");
    assert!(matches!(ws.read().expect("connected"), tungstenite::Message::Text(_)));

    process.signal(libc::SIGTERM);
    let code = loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(err) => panic!("no close frame: {err}"),
        }
    };
    assert_eq!(code, Some(1001));
    let status = process.wait_exit(EXIT_LIMIT);
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_client_that_does_not_read_gets_1001_after_its_events() {
    let mut process = start_process(&[]);
    let mut client = non_reader(&process, None);
    let producer = Producer::new(process.embedded_bootstrap.as_deref().expect("embedded broker"));
    let events: u32 = 20;
    // One key: one partition, one order.
    for slots in 0..events {
        producer.produce_keyed(
            "booking.created",
            Some("C1"),
            booking("C1", slots).to_string().as_bytes(),
        );
    }
    // All queued to the client; a few KiB fit in the socket buffers.
    process.wait_metric("fanout_messages_delivered_total", |v| v == f64::from(events));

    process.signal(libc::SIGTERM);
    // The client neither reads nor answers the close: the server waits for
    // it until the drain timeout, then exits.
    let status = process.wait_exit(EXIT_LIMIT);
    assert!(status.success(), "{status:?}");

    let frames = frames_after_upgrade(&read_to_close(&mut client));
    let (close, before) = frames.split_last().expect("some frames");
    assert_eq!(
        close.close_code(),
        Some(1001),
        "the last frame is close 1001: {close:?}"
    );
    assert_eq!(before[0].json()["type"], "connected");
    assert_eq!(before[1].json()["type"], "subscribed");
    let slots: Vec<_> = before[2..]
        .iter()
        .map(|f| f.json()["slots_remaining"].clone())
        .collect();
    let expected: Vec<_> = (0..events).map(|s| json!(s)).collect();
    assert_eq!(slots, expected, "every event, in order, before the close");
}

#[test]
fn a_client_that_does_not_read_does_not_hold_up_the_exit() {
    // ~3 MiB: far more than the socket buffers take, but under
    // --max-pending-bytes, so the server is still writing to this client
    // when the drain deadline comes.
    let mut process = start_process(&["--max-pending-bytes", "16777216"]);
    let mut client = non_reader(&process, Some(4096));
    let producer = Producer::new(process.embedded_bootstrap.as_deref().expect("embedded broker"));
    let padding = "x".repeat(8000);
    let events: u32 = 400;
    for slots in 0..events {
        let event = json!({"payload": {"data": {"course_id": "C1", "slots_remaining": slots, "schedule_id": padding}}});
        producer.produce_keyed("booking.created", Some("C1"), event.to_string().as_bytes());
    }
    process.wait_metric("fanout_messages_delivered_total", |v| v == f64::from(events));

    process.signal(libc::SIGTERM);
    let status = process.wait_exit(EXIT_LIMIT);
    assert!(status.success(), "{status:?}");

    // What got through is a prefix of the events, in order.
    let frames = frames_after_upgrade(&read_to_close(&mut client));
    assert_eq!(frames[0].json()["type"], "connected");
    assert_eq!(frames[1].json()["type"], "subscribed");
    let texts: Vec<_> = frames[2..].iter().take_while(|f| f.opcode == 0x1).collect();
    for (expected, frame) in texts.iter().enumerate() {
        assert_eq!(frame.json()["slots_remaining"], expected, "in order, none missing");
    }
    assert!(
        texts.len() < events as usize,
        "the backlog did not fit, so this tested a stuck client: {} of {events} arrived",
        texts.len()
    );
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
    // One new record in each partition: once both arrived, the engine has
    // read each partition past anything it would replay there.
    for partition in 0..2 {
        second.produce_to_partition("booking.created", partition, &booking("C1", 100 + partition as u32));
    }
    let mut slots: Vec<_> = (0..2).map(|_| client.recv_json()["slots_remaining"].clone()).collect();
    slots.sort_by_key(|s| s.as_u64());
    assert_eq!(slots, [100, 101]);
    assert_eq!(
        second.metric("fanout_events_consumed_total"),
        2.0,
        "nothing handed off before was consumed again"
    );
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
    let deadline = Instant::now() + Duration::from_secs(20);
    for client in [&mut client, &mut late] {
        loop {
            match client.recv_within(deadline.saturating_duration_since(Instant::now())) {
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
    assert_eq!(fanout.metric("fanout_ready"), 1.0);
    let mut before = fanout.public_client();
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
    // The grace (60 s) is far from over: still alive, still upgrading; the
    // ready gauge says what /readyz says.
    assert_eq!(fanout.http_get("/healthz").0, 200);
    assert_eq!(fanout.metric("fanout_ready"), 0.0);
    let mut during = fanout.public_client();
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
