//! Verifies `--log-format json` on the real binary (SPEC §8, §9): every line
//! it logs, from start to exit, is one JSON object with a level and a
//! message and the event's fields beside them; without the flag the lines
//! are text.

mod common;

use std::time::Duration;

use common::connect;
use common::process::FanoutProcess;
use common::producer::Producer;
use serde_json::{Map, Value};

/// Runs the binary with `extra` flags through a few events of note (start
/// without Redis or an Origin list, a record that is not JSON, a refused
/// admin upgrade, SIGTERM) and returns its log.
fn log_of_a_short_run(extra: &[&str]) -> String {
    let mut args = vec!["--kafka-brokers", "embedded", "--shards", "1", "--port", "0"];
    args.extend_from_slice(extra);
    let mut process = FanoutProcess::start_with_env(&args, &[("RUST_LOG", "info")]);
    process.wait_ready();
    let producer = Producer::new(process.embedded_bootstrap.as_deref().expect("embedded broker"));
    producer.produce_keyed("booking.created", None, b"{not json");
    process.wait_metric("fanout_events_skipped_total", |v| v == 1.0);
    assert_eq!(connect(process.addr, "/ws", &[]).err(), Some(503));
    process.signal(libc::SIGTERM);
    let status = process.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    process.log()
}

/// The line whose `message` contains `text`.
fn line_with<'a>(lines: &'a [Map<String, Value>], text: &str) -> &'a Map<String, Value> {
    lines
        .iter()
        .find(|line| line["message"].as_str().is_some_and(|m| m.contains(text)))
        .unwrap_or_else(|| panic!("no log line says {text:?}: {lines:?}"))
}

#[test]
fn json_lines_are_objects_with_level_message_and_fields() {
    let log = log_of_a_short_run(&["--log-format", "json"]);
    let lines: Vec<Map<String, Value>> = log
        .lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(Value::Object(fields)) => fields,
            _ => panic!("not a JSON object: {line:?}"),
        })
        .collect();
    assert!(lines.len() >= 4, "{log}");
    for line in &lines {
        let level = line.get("level").and_then(Value::as_str);
        assert!(
            matches!(level, Some("TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR")),
            "level of {line:?}"
        );
        assert!(
            line.get("message")
                .and_then(Value::as_str)
                .is_some_and(|m| !m.is_empty()),
            "{line:?}"
        );
    }
    assert_eq!(line_with(&lines, "--redis-url is not set")["level"], "WARN");
    let skipped = line_with(&lines, "skipping kafka record");
    assert_eq!(skipped["level"], "WARN");
    assert_eq!(
        skipped["reason"], "invalid_json",
        "fields sit beside the message: {skipped:?}"
    );
    assert_eq!(skipped["topic"], "booking.created");
    assert_eq!(line_with(&lines, "admin upgrade refused")["status"], 503);
    line_with(&lines, "shutdown complete");
}

#[test]
fn text_is_the_default() {
    let log = log_of_a_short_run(&[]);
    assert!(log.contains("skipping kafka record"), "{log}");
    for line in log.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_err(),
            "a JSON line without --log-format json: {line}"
        );
    }
}
