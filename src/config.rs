//! Command line -> validated configuration.
//!
//! `Cli` is the clap surface (flags, environment fallbacks, help text); it is
//! checked once by [`Config::from_cli`] and nothing else in the crate sees it.
//! Subsystems take their slice: [`ShardConfig`], [`KafkaConfig`],
//! [`AuthConfig`].

use std::net::IpAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The topics of SPEC §5, consumed unless `--topics` says otherwise.
pub const DEFAULT_TOPICS: [&str; 7] = [
    "booking.created",
    "booking.cancelled",
    "booking.confirmed",
    "schedule.updated",
    "schedule.deleted",
    "admin.notifications",
    "assessment.submitted",
];

/// fanout: pushes Kafka events to the WebSocket clients whose subscriptions match.
///
/// Thread-per-core: one pinned ingest thread consumes Kafka and encodes each
/// outbound message once; one pinned shard per remaining core owns its
/// connections and a subscription index. Durations are written `30s`,
/// `500ms`, `2m`.
#[derive(Debug, Parser)]
#[command(name = "fanout", version, about, long_about)]
pub struct Cli {
    /// Kafka bootstrap servers (host:port,...), or `embedded` to start an
    /// in-process Kafka-protocol broker (librdkafka's mock cluster) and print
    /// its address.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "localhost:9092")]
    pub kafka_brokers: String,

    /// Kafka consumer group.
    #[arg(long, env = "KAFKA_GROUP_ID", default_value = "notification-service")]
    pub kafka_group_id: String,

    /// Topics to consume, comma separated. Default: the seven topics of the
    /// booking platform (booking.created, booking.cancelled, booking.confirmed,
    /// schedule.updated, schedule.deleted, admin.notifications,
    /// assessment.submitted).
    #[arg(long, value_delimiter = ',')]
    pub topics: Vec<String>,

    /// Extra librdkafka consumer property, `key=value`; repeatable. Applied
    /// over fanout's latency-first defaults (fetch.wait.max.ms=10, ...).
    #[arg(long = "kafka-opt", value_name = "KEY=VALUE")]
    pub kafka_opts: Vec<String>,

    /// Partitions per topic created in the embedded broker.
    #[arg(long, default_value_t = 3)]
    pub embedded_partitions: i32,

    /// TCP port for WebSocket and HTTP (0 picks a free port).
    #[arg(long, env = "WS_PORT", default_value_t = 3009)]
    pub port: u16,

    /// Address to bind.
    #[arg(long, default_value = "0.0.0.0")]
    pub listen: IpAddr,

    /// Number of shards (one glommio executor each). Default: cores minus the
    /// ingest core, at least 1.
    #[arg(long)]
    pub shards: Option<u16>,

    /// Core the ingest thread is pinned to. Shards take the other cores in
    /// order.
    #[arg(long, default_value_t = 0)]
    pub ingest_core: usize,

    /// Do not pin threads to cores (shared machines, tests).
    #[arg(long)]
    pub no_pin: bool,

    /// How long an idle shard spins before parking its core. Spinning keeps
    /// the wake-up of a shard for the next event off the kernel (a parked
    /// shard takes ~30 µs, p99 ~350 µs, to wake on another core here); it
    /// burns that core while idle, so use it on dedicated, pinned cores.
    /// Default: 0 (park at once).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub spin_before_park: Duration,

    /// Redis URL for admin sessions (`redis://[:password@]host[:port][/db]`).
    /// Without it `/ws` answers 503.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Time limit of one Redis round trip (session lookup, re-check).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub redis_timeout: Duration,

    /// Allowed browser origins, comma separated (e.g.
    /// `https://app.example.com`). Unset: every origin is accepted and a
    /// warning is logged.
    #[arg(long, value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Reject WebSocket upgrades that carry no Origin header.
    #[arg(long)]
    pub require_origin: bool,

    /// Interval between server pings to each client.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// A client silent this long after a ping is closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub pong_timeout: Duration,

    /// Interval of the sweep that removes anything dead the heartbeat missed.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub sweep_interval: Duration,

    /// Interval at which admin sessions are re-checked in Redis.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub session_recheck_interval: Duration,

    /// Maximum filter values per connection.
    #[arg(long, default_value_t = 256)]
    pub max_filters: usize,

    /// Client messages per second per connection (token bucket, burst of the
    /// same size).
    #[arg(long, default_value_t = 50)]
    pub max_client_msgs_per_sec: u32,

    /// Largest client message in bytes; larger closes with 1009.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,

    /// Outbound bytes queued per connection before it is closed as a slow
    /// consumer (1013).
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_pending_bytes: usize,

    /// Upgraded connections per process; more get 503.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_connections: usize,

    /// Time a client has to send a complete HTTP request head.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Largest HTTP request head in bytes; larger gets 431.
    #[arg(long, default_value_t = 8 * 1024)]
    pub max_header_bytes: usize,

    /// Events buffered between the ingest thread and each shard; when full,
    /// ingest waits (backpressure to Kafka).
    #[arg(long, default_value_t = 4096)]
    pub inbox_capacity: usize,

    /// Time allowed for a graceful shutdown (close 1001, commit offsets).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable `key=value` lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|err| format!("{err} (write e.g. 30s, 500ms, 2m)"))
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--kafka-opt` without `=`.
    #[error("--kafka-opt {0:?} is not key=value")]
    KafkaOpt(String),
    /// A limit that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// No topic to consume.
    #[error("--topics names no topic")]
    NoTopics,
    /// A topic name Kafka would reject.
    #[error("topic {0:?} is not a valid Kafka topic name")]
    BadTopic(String),
    /// An origin that can never match a browser's Origin header.
    #[error("allowed origin {0:?} must look like scheme://host[:port]")]
    BadOrigin(String),
    /// More shards than cores when pinning.
    #[error(
        "{shards} shards plus the ingest core need {needed} cores, this machine has {cores} (use --no-pin or fewer --shards)"
    )]
    TooManyShards {
        /// Shards asked for.
        shards: u16,
        /// Cores needed.
        needed: usize,
        /// Cores present.
        cores: usize,
    },
    /// The ingest core does not exist.
    #[error("--ingest-core {core} does not exist (cores 0..{cores})")]
    NoSuchCore {
        /// Core asked for.
        core: usize,
        /// Cores present.
        cores: usize,
    },
}

/// Where Kafka records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Brokers {
    /// Start librdkafka's mock cluster in process.
    Embedded {
        /// Partitions per topic.
        partitions: i32,
    },
    /// A real cluster's bootstrap list.
    Remote(String),
}

/// The Kafka consumer's slice.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Where to connect.
    pub brokers: Brokers,
    /// Consumer group id.
    pub group_id: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// librdkafka properties given by the user, applied over the defaults.
    pub overrides: Vec<(String, String)>,
}

/// What each shard needs.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// Allowed origins; empty accepts every origin.
    pub allowed_origins: Vec<String>,
    /// Reject upgrades without Origin.
    pub require_origin: bool,
    /// Interval between pings.
    pub ping_interval: Duration,
    /// Silence after a ping that closes the connection.
    pub pong_timeout: Duration,
    /// Interval of the dead-connection sweep.
    pub sweep_interval: Duration,
    /// Interval of admin session re-checks.
    pub session_recheck_interval: Duration,
    /// Filter values per connection.
    pub max_filters: usize,
    /// Client messages per second (and burst).
    pub max_client_msgs_per_sec: u32,
    /// Largest client message, bytes.
    pub max_message_bytes: usize,
    /// Outbound queue bound per connection, bytes.
    pub max_pending_bytes: usize,
    /// Upgraded connections per process.
    pub max_connections: usize,
    /// Deadline for a complete request head.
    pub handshake_timeout: Duration,
    /// Largest request head, bytes.
    pub max_header_bytes: usize,
    /// Time allowed for closing clients at shutdown.
    pub drain_timeout: Duration,
    /// Spin before parking an idle shard.
    pub spin_before_park: Duration,
}

/// Admin authentication's slice.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Redis URL; `None` disables `/ws`.
    pub redis_url: Option<String>,
    /// Bound on one Redis round trip.
    pub redis_timeout: Duration,
}

/// Placement of threads on cores.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Number of shards.
    pub shard_count: u16,
    /// Ingest core, or `None` when unpinned.
    pub ingest_core: Option<usize>,
    /// Core of each shard, or `None` when unpinned.
    pub shard_cores: Option<Vec<usize>>,
}

/// The whole, checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address and port to bind (port 0: any free port).
    pub listen: std::net::SocketAddr,
    /// Thread placement.
    pub placement: Placement,
    /// Kafka consumer.
    pub kafka: KafkaConfig,
    /// Shards.
    pub shard: ShardConfig,
    /// Admin authentication.
    pub auth: AuthConfig,
    /// Inbox capacity per shard, events.
    pub inbox_capacity: usize,
    /// Log format.
    pub log_format: LogFormat,
}

impl Config {
    /// Checks the command line once; every later stage trusts the result.
    pub fn from_cli(cli: Cli) -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let placement = placement(&cli, cores)?;
        for (name, value) in [
            ("--max-filters", cli.max_filters),
            ("--max-client-msgs-per-sec", cli.max_client_msgs_per_sec as usize),
            ("--max-message-bytes", cli.max_message_bytes),
            ("--max-pending-bytes", cli.max_pending_bytes),
            ("--max-connections", cli.max_connections),
            ("--max-header-bytes", cli.max_header_bytes),
            ("--inbox-capacity", cli.inbox_capacity),
            ("--ping-interval", cli.ping_interval.as_millis() as usize),
            ("--pong-timeout", cli.pong_timeout.as_millis() as usize),
            ("--sweep-interval", cli.sweep_interval.as_millis() as usize),
            (
                "--session-recheck-interval",
                cli.session_recheck_interval.as_millis() as usize,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        let topics: Vec<String> = if cli.topics.is_empty() {
            DEFAULT_TOPICS.iter().map(|t| t.to_string()).collect()
        } else {
            cli.topics
                .iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect()
        };
        if topics.is_empty() {
            return Err(ConfigError::NoTopics);
        }
        if let Some(bad) = topics.iter().find(|t| !is_topic_name(t)) {
            return Err(ConfigError::BadTopic(bad.clone()));
        }
        let overrides = cli
            .kafka_opts
            .iter()
            .map(|opt| match opt.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.trim().to_string())),
                _ => Err(ConfigError::KafkaOpt(opt.clone())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let allowed_origins = cli
            .allowed_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty())
            .collect::<Vec<_>>();
        if let Some(bad) = allowed_origins.iter().find(|o| !o.contains("://")) {
            return Err(ConfigError::BadOrigin(bad.clone()));
        }
        let brokers = if cli.kafka_brokers.trim() == "embedded" {
            if cli.embedded_partitions <= 0 {
                return Err(ConfigError::Zero("--embedded-partitions"));
            }
            Brokers::Embedded {
                partitions: cli.embedded_partitions,
            }
        } else {
            Brokers::Remote(cli.kafka_brokers.trim().to_string())
        };
        Ok(Config {
            listen: std::net::SocketAddr::new(cli.listen, cli.port),
            placement,
            kafka: KafkaConfig {
                brokers,
                group_id: cli.kafka_group_id,
                topics,
                overrides,
            },
            shard: ShardConfig {
                allowed_origins,
                require_origin: cli.require_origin,
                ping_interval: cli.ping_interval,
                pong_timeout: cli.pong_timeout,
                sweep_interval: cli.sweep_interval,
                session_recheck_interval: cli.session_recheck_interval,
                max_filters: cli.max_filters,
                max_client_msgs_per_sec: cli.max_client_msgs_per_sec,
                max_message_bytes: cli.max_message_bytes,
                max_pending_bytes: cli.max_pending_bytes,
                max_connections: cli.max_connections,
                handshake_timeout: cli.handshake_timeout,
                max_header_bytes: cli.max_header_bytes,
                drain_timeout: cli.drain_timeout,
                spin_before_park: cli.spin_before_park,
            },
            auth: AuthConfig {
                redis_url: cli.redis_url,
                redis_timeout: cli.redis_timeout,
            },
            inbox_capacity: cli.inbox_capacity,
            log_format: cli.log_format,
        })
    }
}

fn placement(cli: &Cli, cores: usize) -> Result<Placement, ConfigError> {
    let shard_count = cli.shards.unwrap_or_else(|| cores.saturating_sub(1).max(1) as u16);
    if shard_count == 0 {
        return Err(ConfigError::Zero("--shards"));
    }
    if cli.no_pin {
        return Ok(Placement {
            shard_count,
            ingest_core: None,
            shard_cores: None,
        });
    }
    if cli.ingest_core >= cores {
        return Err(ConfigError::NoSuchCore {
            core: cli.ingest_core,
            cores,
        });
    }
    let needed = shard_count as usize + 1;
    if needed > cores {
        return Err(ConfigError::TooManyShards {
            shards: shard_count,
            needed,
            cores,
        });
    }
    let shard_cores = (0..cores)
        .filter(|&c| c != cli.ingest_core)
        .take(shard_count as usize)
        .collect();
    Ok(Placement {
        shard_count,
        ingest_core: Some(cli.ingest_core),
        shard_cores: Some(shard_cores),
    })
}

fn is_topic_name(topic: &str) -> bool {
    topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
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
        assert_eq!(config.shard.drain_timeout, Duration::from_secs(5));
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
}
