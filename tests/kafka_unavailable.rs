//! Verifies that an instance without Kafka (broker unreachable, or a
//! configured topic missing) stays alive (`/healthz` 200) but not ready
//! (`/readyz` 503 with the reason), and logs each kind of problem once,
//! then at most every few seconds with a count, instead of the twenty
//! identical lines a second librdkafka reports. See: #9

mod common;

use std::time::{Duration, Instant};

use common::process::FanoutProcess;
use common::tansu::TansuBroker;
use common::{PATIENCE, free_port};
use serde_json::Value;

/// How long each test watches the log.
const WATCH: Duration = Duration::from_secs(3);
/// `REPEAT_EVERY` of `src/ingest/kafka/throttle.rs`.
const REPEAT_EVERY: Duration = Duration::from_secs(5);

/// Waits until `/readyz` answers 503 with a body containing `reason`.
fn wait_not_ready_because(fanout: &FanoutProcess, reason: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = fanout.http_get("/readyz");
        assert_eq!(status, 503, "{body}");
        if body.contains(reason) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never said {reason:?}: {body}\n{}",
            fanout.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the process, then returns its log as JSON lines and the most
/// lines of one kind the throttle may let through in the time it ran.
fn stop_and_read_log(mut fanout: FanoutProcess, started: Instant) -> (Vec<Value>, usize) {
    fanout.signal(libc::SIGTERM);
    assert!(
        fanout.wait_exit(Duration::from_secs(10)).success(),
        "{}",
        fanout.log_tail()
    );
    let ran = started.elapsed();
    let allowed = 1 + (ran.as_millis() / REPEAT_EVERY.as_millis()) as usize;
    let lines = fanout
        .log()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("a JSON log line: {line}")))
        .collect();
    (lines, allowed)
}

fn count(lines: &[Value], what: impl Fn(&Value) -> bool) -> usize {
    lines.iter().filter(|line| what(line)).count()
}

#[test]
fn an_unreachable_broker_is_reported_once_per_kind_and_period() {
    let started = Instant::now();
    let kafka = format!("127.0.0.1:{}", free_port());
    let fanout = FanoutProcess::start(&["--port", "0", "--kafka-brokers", &kafka, "--log-format", "json"]);
    let body = wait_not_ready_because(&fanout, "not assigned yet: ");
    assert!(body.starts_with("kafka: partitions of \"booking.created\""), "{body}");
    assert_eq!(fanout.http_get("/healthz").0, 200, "alive while Kafka is away");
    std::thread::sleep(WATCH.saturating_sub(started.elapsed()));
    let (lines, allowed) = stop_and_read_log(fanout, started);

    // The readiness line quotes the lookup error; every other line naming a
    // librdkafka error code reports that error.
    let not_ready_line = |line: &Value| line["message"].as_str().is_some_and(|m| m.contains("not assigned yet"));
    let names = |line: &Value, code: &str| !not_ready_line(line) && line.to_string().contains(code);
    let all_down = count(&lines, |line| names(line, "AllBrokersDown"));
    let transport = count(&lines, |line| names(line, "BrokerTransportFailure"));
    let connect = count(&lines, |line| line["facility"] == "FAIL");
    let not_ready = count(&lines, not_ready_line);
    assert!(all_down >= 1, "the problem is reported at all");
    for (kind, n) in [
        ("AllBrokersDown", all_down),
        ("BrokerTransportFailure", transport),
        ("FAIL", connect),
        ("not ready", not_ready),
    ] {
        assert!(n <= allowed, "{n} {kind} lines, at most {allowed} allowed");
    }
}

#[test]
fn a_missing_topic_is_reported_once_per_period() {
    let broker = TansuBroker::start();
    broker.create_topic("booking.created", 1);
    let started = Instant::now();
    let fanout = FanoutProcess::start(&[
        "--port",
        "0",
        "--kafka-brokers",
        &broker.bootstrap(),
        "--topics",
        "booking.created,booking.cancelled",
        // Looked up five times a second: without the throttle, as many lines.
        "--kafka-refresh-interval",
        "200ms",
        "--log-format",
        "json",
    ]);
    let body = wait_not_ready_because(&fanout, "does not exist");
    assert!(body.contains("\"booking.cancelled\""), "{body}");
    assert_eq!(fanout.http_get("/healthz").0, 200);
    std::thread::sleep(WATCH.saturating_sub(started.elapsed()));
    let (lines, allowed) = stop_and_read_log(fanout, started);
    let reported = count(&lines, |line| line.to_string().contains("does not exist"));
    assert!(
        (1..=allowed).contains(&reported),
        "{reported} lines, 1 to {allowed} expected"
    );
}
