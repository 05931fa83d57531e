//! Verifies that `/metrics` is valid Prometheus text with the series of
//! SPEC §9, and that its counters move as events flow.

mod common;

use std::collections::HashSet;

use common::{TestEngine, booking, metric_value};
use serde_json::json;

/// Checks the exposition format: every sample belongs to a declared family,
/// names and labels are well formed, values are numbers.
fn assert_prometheus_text(text: &str) -> HashSet<String> {
    let mut families = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram", "summary"].contains(&kind), "{line}");
            families.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {line}"));
        let name = series.split('{').next().expect("name");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
        let labels = &series[name.len()..];
        if !labels.is_empty() {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            for pair in labels[1..labels.len() - 1].split(',') {
                let (key, quoted) = pair.split_once('=').expect("label key=value");
                assert!(
                    !key.is_empty() && quoted.starts_with('"') && quoted.ends_with('"'),
                    "{line}"
                );
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|base| families.contains(*base)))
            .unwrap_or(name);
        assert!(families.contains(family), "sample before its TYPE: {line}");
    }
    families
}

#[test]
fn metrics_are_prometheus_text_with_the_spec_series() {
    let engine = TestEngine::start(&[]);
    let families = assert_prometheus_text(&engine.metrics());
    for name in [
        "fanout_connections",
        "fanout_subscription_keys",
        "fanout_subscription_entries",
        "fanout_events_consumed_total",
        "fanout_events_skipped_total",
        "fanout_messages_delivered_total",
        "fanout_bytes_written_total",
        "fanout_slow_consumer_disconnects_total",
        "fanout_inbox_depth",
        "fanout_kafka_consumer_lag",
        "fanout_delivery_latency_seconds",
    ] {
        assert!(families.contains(name), "missing {name}");
    }
}

#[test]
fn counters_move_as_events_flow() {
    let engine = TestEngine::start(&[]);
    let mut clients: Vec<_> = (0..3).map(|_| engine.public_client()).collect();
    for client in &mut clients {
        client.subscribe(json!({"course_id": "C1"}));
    }
    let before = engine.metrics();
    assert_eq!(
        metric_value(&before, "fanout_connections{shard=\"0\",role=\"public\"}"),
        3.0
    );
    assert_eq!(metric_value(&before, "fanout_subscription_keys"), 1.0);
    assert_eq!(metric_value(&before, "fanout_subscription_entries"), 3.0);

    for slots in 0..4 {
        engine.produce_json("booking.created", &booking("C1", slots));
    }
    for client in &mut clients {
        for _ in 0..4 {
            client.recv_json();
        }
    }
    engine.wait_metric("fanout_delivery_latency_seconds_count", |v| v == 4.0);
    let after = engine.metrics();
    assert_eq!(metric_value(&after, "fanout_events_consumed_total"), 4.0);
    assert_eq!(metric_value(&after, "fanout_messages_delivered_total"), 12.0);
    assert!(metric_value(&after, "fanout_bytes_written_total") > metric_value(&before, "fanout_bytes_written_total"));
    assert_eq!(
        metric_value(&after, "fanout_delivery_latency_seconds_bucket{le=\"+Inf\"}"),
        4.0
    );
    assert_prometheus_text(&after);
}
