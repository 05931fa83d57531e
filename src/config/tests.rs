//! Unit tests of flag parsing and validation.

use clap::Parser;

use super::*;

fn parse(args: &[&str]) -> Result<Config, ConfigError> {
    let mut argv = vec!["fanout"];
    argv.extend_from_slice(args);
    Config::from_cli(Cli::try_parse_from(argv).expect("clap accepts the arguments"))
}

#[test]
fn defaults_match_the_spec() {
    let config = parse(&["--no-pin"]).expect("defaults are valid");
    assert_eq!(config.listen.port(), 3009);
    assert_eq!(config.kafka.group_id, "notification-service");
    assert_eq!(config.kafka.topics, DEFAULT_TOPICS);
    assert_eq!(config.shard.ping_interval, Duration::from_secs(30));
    assert_eq!(config.shard.pong_timeout, Duration::from_secs(10));
    assert_eq!(config.shard.sweep_interval, Duration::from_secs(60));
    assert_eq!(config.shard.session_recheck_interval, Duration::from_secs(60));
    assert_eq!(config.shard.max_filters, 256);
    assert_eq!(config.shard.max_client_msgs_per_sec, 50);
    assert_eq!(config.shard.max_message_bytes, 64 * 1024);
    assert_eq!(config.shard.max_pending_bytes, 1024 * 1024);
    assert_eq!(config.shard.max_filter_value_bytes, 128);
    assert_eq!(config.shard.max_total_pending_bytes, 256 * 1024 * 1024);
    // What the parser assumes when no shard hands it the flags (fuzzing).
    assert_eq!(
        crate::protocol::Limits::default(),
        crate::protocol::Limits {
            max_filters: config.shard.max_filters,
            max_filter_value_bytes: config.shard.max_filter_value_bytes,
        }
    );
    assert_eq!(config.shard.drain_timeout, Duration::from_secs(5));
    assert_eq!(config.drain_grace, Duration::ZERO);
    assert_eq!(config.kafka.instance_id, None);
    assert_eq!(config.kafka.refresh_interval, Duration::from_secs(30));
    assert!(config.placement.shard_cores.is_none());
}

#[test]
fn embedded_brokers_and_overrides() {
    let config = parse(&[
        "--no-pin",
        "--kafka-brokers",
        "embedded",
        "--kafka-opt",
        "fetch.wait.max.ms=50",
    ])
    .expect("valid");
    assert_eq!(config.kafka.brokers, Brokers::Embedded { partitions: 3 });
    assert_eq!(config.kafka.overrides, vec![("fetch.wait.max.ms".into(), "50".into())]);
}

#[test]
fn bad_values_are_named() {
    let err = parse(&["--no-pin", "--kafka-opt", "nonsense"]).unwrap_err();
    assert_eq!(err.to_string(), "--kafka-opt \"nonsense\" is not key=value");
    assert!(matches!(
        parse(&["--no-pin", "--max-filters", "0"]),
        Err(ConfigError::Zero("--max-filters"))
    ));
    assert!(matches!(
        parse(&["--no-pin", "--topics", "bad topic"]),
        Err(ConfigError::BadTopic(_))
    ));
    assert!(matches!(
        parse(&["--no-pin", "--allowed-origins", "example.com"]),
        Err(ConfigError::BadOrigin(_))
    ));
}

#[test]
fn durations_accept_units() {
    let config = parse(&["--no-pin", "--ping-interval", "500ms", "--pong-timeout", "2m"]).expect("valid");
    assert_eq!(config.shard.ping_interval, Duration::from_millis(500));
    assert_eq!(config.shard.pong_timeout, Duration::from_secs(120));
}

#[test]
fn pinning_leaves_the_ingest_core_out() {
    let cli = Cli::try_parse_from(["fanout", "--shards", "2", "--ingest-core", "1"]).expect("clap");
    let placement = placement(&cli, 4).expect("fits");
    assert_eq!(placement.shard_cores, Some(vec![0, 2]));
    let cli = Cli::try_parse_from(["fanout", "--shards", "4"]).expect("clap");
    assert!(matches!(placement_err(&cli, 4), ConfigError::TooManyShards { .. }));
}

fn placement_err(cli: &Cli, cores: usize) -> ConfigError {
    placement(cli, cores).unwrap_err()
}

#[test]
fn absurd_durations_are_refused_before_they_can_overflow() {
    // See: #8
    let err = Cli::try_parse_from(["fanout", "--no-pin", "--ping-interval", "100000000years"]).unwrap_err();
    assert!(err.to_string().contains("longest allowed"), "{err}");
    assert!(parse(&["--no-pin", "--drain-timeout", "24h"]).is_ok());
}

#[test]
fn instances_commit_under_their_own_group() {
    // See: #9
    let config = parse(&["--no-pin", "--kafka-group-id", "g", "--instance-id", "web-1"]).expect("valid");
    assert_eq!(
        config
            .kafka
            .instance_group(config.kafka.instance_id.as_deref().expect("set")),
        "g.web-1"
    );
    let default = default_instance_id(3009);
    assert!(default.ends_with("-3009"), "{default}");
    assert!(is_instance_id(&default), "{default}");
    assert!(matches!(
        parse(&["--no-pin", "--instance-id", "a/b"]),
        Err(ConfigError::BadInstanceId(_))
    ));
    assert!(matches!(
        parse(&["--no-pin", "--kafka-opt", "group.id=x"]),
        Err(ConfigError::ReservedKafkaOpt(..))
    ));
    assert!(matches!(
        parse(&["--no-pin", "--kafka-refresh-interval", "0s"]),
        Err(ConfigError::Zero("--kafka-refresh-interval"))
    ));
}
