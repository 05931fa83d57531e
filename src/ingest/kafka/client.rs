//! The consumer's properties: latency-first defaults, the instance's own
//! consumer group, the user's overrides.
//!
//! librdkafka's defaults favour batching; ours favour latency, and every
//! property but `group.id` can be overridden with `--kafka-opt`. The group is
//! `<--kafka-group-id>.<instance id>` (SPEC §11): it only stores this
//! instance's positions. Nothing joins it: partitions are assigned
//! explicitly (`topology`), so instances never split a topic between them.

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};

use crate::config::{Brokers, KafkaConfig};

/// Latency-first defaults, applied before `--kafka-opt` overrides.
/// librdkafka (2.12) defaults in parentheses.
pub const LATENCY_DEFAULTS: [(&str, &str); 12] = [
    // Answer a fetch as soon as one byte is there, wait at most 10 ms (500).
    ("fetch.wait.max.ms", "10"),
    ("fetch.min.bytes", "1"),
    // Pause before the next fetch while the local queue is over its bound
    // (1000). 0 spins the consumer thread on a lock under backlog (33% of
    // fanout's CPU in a saturation profile); a long pause starves the queue
    // once ingest catches up. 5 ms doubled saturation throughput against 0.
    ("fetch.queue.backoff.ms", "5"),
    // Retry a failed fetch soon (500).
    ("fetch.error.backoff.ms", "10"),
    ("socket.nagle.disable", "true"),
    // We store offsets after the hand-off to every shard; librdkafka commits
    // what was stored, in the background and at shutdown. Without group
    // membership this is a "simple consumer" commit (generation -1).
    ("enable.auto.offset.store", "false"),
    ("enable.auto.commit", "true"),
    ("auto.commit.interval.ms", "1000"),
    // Live notifications: an instance without a committed position starts
    // at the end. Partitions that appear while running start at their
    // beginning whatever this says (`topology`).
    ("auto.offset.reset", "latest"),
    // A configured topic that does not exist is reported, not created.
    ("allow.auto.create.topics", "false"),
    // Consumer lag for /metrics.
    ("statistics.interval.ms", "1000"),
    // While ingest waits on a full shard inbox it does not poll, so this
    // local prefetch queue fills and librdkafka stops fetching: backpressure
    // reaches the broker after at most 8 MiB (65536 KiB).
    ("queued.max.messages.kbytes", "8192"),
];

/// The effective consumer properties for instance `instance`: defaults,
/// the instance's group, then the user's overrides.
pub fn client_config(config: &KafkaConfig, bootstrap: &str, instance: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", bootstrap)
        .set("group.id", config.instance_group(instance))
        .set("client.id", format!("fanout-{instance}"));
    // rdkafka takes librdkafka's log level from the `log` crate's global
    // level, which is off unless a `log` logger is installed; we log through
    // `IngestContext::log` and must see warnings (offset resets among them).
    client.set_log_level(RDKafkaLogLevel::Info);
    for (key, value) in LATENCY_DEFAULTS {
        client.set(key, value);
    }
    if matches!(config.brokers, Brokers::Embedded { .. }) {
        // librdkafka's mock broker does not answer a waiting fetch when data
        // arrives; it sits out fetch.wait.max.ms. Measured produce-ack ->
        // socket: ~9.5 ms at 10 ms, ~0.5 ms at 1 ms.
        client.set("fetch.wait.max.ms", "1");
    }
    // `Config::from_cli` refuses a `group.id` override.
    for (key, value) in &config.overrides {
        client.set(key, value);
    }
    client
}

/// Whether a partition without a committed position starts at its low
/// watermark (`auto.offset.reset` earliest) rather than its high one.
pub fn resets_to_earliest(client: &ClientConfig) -> bool {
    matches!(
        client.get("auto.offset.reset").unwrap_or("latest"),
        "earliest" | "smallest" | "beginning"
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn overrides_win_over_latency_defaults_and_the_group_is_the_instances() {
        let config = KafkaConfig {
            brokers: Brokers::Remote("b:9092".into()),
            group_id: "g".into(),
            instance_id: None,
            topics: vec!["t".into()],
            refresh_interval: Duration::from_secs(5),
            overrides: vec![
                ("fetch.wait.max.ms".into(), "250".into()),
                ("auto.offset.reset".into(), "earliest".into()),
            ],
        };
        let client = client_config(&config, "b:9092", "host-3009");
        assert_eq!(client.get("fetch.wait.max.ms"), Some("250"));
        assert_eq!(client.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(client.get("group.id"), Some("g.host-3009"));
        assert!(resets_to_earliest(&client));
        assert!(!resets_to_earliest(&ClientConfig::new()));
    }
}
