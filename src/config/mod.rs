//! Command line -> validated configuration.
//!
//! [`Cli`] (in `cli`) is the clap surface: flags, environment fallbacks, help
//! text. It is checked once by [`Config::from_cli`] and nothing else in the
//! crate sees it. Subsystems take their slice: [`ShardConfig`],
//! [`KafkaConfig`], [`AuthConfig`].

mod cli;
mod placement;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use self::cli::{Cli, DEFAULT_TOPICS, LogFormat, MAX_DURATION};
pub use self::placement::Placement;
use self::placement::placement;

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
    /// An instance id that cannot be part of a consumer group name.
    #[error("--instance-id {0:?} must be 1 to 200 letters, digits, '.', '_' or '-'")]
    BadInstanceId(String),
    /// A librdkafka property fanout sets itself.
    #[error("--kafka-opt {0}=... is set by fanout ({1})")]
    ReservedKafkaOpt(String, &'static str),
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
    /// Consumer group prefix; positions go to `<group_id>.<instance id>`.
    pub group_id: String,
    /// `--instance-id`; `None`: `<host name>-<port>`, known once bound.
    pub instance_id: Option<String>,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Interval of the partition lookup. Default: 5 s.
    pub refresh_interval: Duration,
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
    /// Bytes of one filter value.
    pub max_filter_value_bytes: usize,
    /// Client messages per second (and burst).
    pub max_client_msgs_per_sec: u32,
    /// Largest client message, bytes.
    pub max_message_bytes: usize,
    /// Outbound queue bound per connection, bytes.
    pub max_pending_bytes: usize,
    /// Bytes held for all connections of the process together (queues and
    /// partial input); over it the largest holders are closed.
    pub max_total_pending_bytes: usize,
    /// Upgraded connections per process.
    pub max_connections: usize,
    /// Deadline for a complete request head.
    pub handshake_timeout: Duration,
    /// Largest request head, bytes.
    pub max_header_bytes: usize,
    /// Time allowed for closing clients (and committing) at shutdown, after
    /// the grace. Default: 5 s.
    pub drain_timeout: Duration,
    /// Spin before parking an idle shard.
    pub spin_before_park: Duration,
    /// Longest a flush is held back under load. Default: 2 ms.
    pub max_flush_delay: Duration,
    /// Echo every message back instead of the subscribe protocol, with no
    /// `connected` greeting: `fanout-echo` only (RFC 6455 conformance).
    #[cfg(feature = "conformance")]
    pub conformance_echo: bool,
}

/// Admin authentication's slice.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Redis URL; `None` disables `/ws`.
    pub redis_url: Option<String>,
    /// Bound on one Redis round trip.
    pub redis_timeout: Duration,
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
    /// Serving time with `/readyz` 503 between a stop signal and closing
    /// clients. Default: 0.
    pub drain_grace: Duration,
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
            ("--max-filter-value-bytes", cli.max_filter_value_bytes),
            ("--max-total-pending-bytes", cli.max_total_pending_bytes),
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
                "--kafka-refresh-interval",
                cli.kafka_refresh_interval.as_millis() as usize,
            ),
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
        if let Some((key, _)) = overrides.iter().find(|(key, _)| key == "group.id") {
            return Err(ConfigError::ReservedKafkaOpt(
                key.clone(),
                "use --kafka-group-id and --instance-id",
            ));
        }
        let instance_id = match cli.instance_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(id) if is_instance_id(id) => Some(id.to_string()),
            Some(bad) => return Err(ConfigError::BadInstanceId(bad.to_string())),
        };
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
                instance_id,
                topics,
                refresh_interval: cli.kafka_refresh_interval,
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
                max_filter_value_bytes: cli.max_filter_value_bytes,
                max_client_msgs_per_sec: cli.max_client_msgs_per_sec,
                max_message_bytes: cli.max_message_bytes,
                max_pending_bytes: cli.max_pending_bytes,
                max_total_pending_bytes: cli.max_total_pending_bytes,
                max_connections: cli.max_connections,
                handshake_timeout: cli.handshake_timeout,
                max_header_bytes: cli.max_header_bytes,
                drain_timeout: cli.drain_timeout,
                spin_before_park: cli.spin_before_park,
                max_flush_delay: cli.max_flush_delay,
                #[cfg(feature = "conformance")]
                conformance_echo: false,
            },
            auth: AuthConfig {
                redis_url: cli.redis_url,
                redis_timeout: cli.redis_timeout,
            },
            inbox_capacity: cli.inbox_capacity,
            drain_grace: cli.drain_grace,
            log_format: cli.log_format,
        })
    }
}

impl KafkaConfig {
    /// The consumer group this instance commits its positions under (SPEC
    /// §11): `<group_id>.<instance>`.
    pub fn instance_group(&self, instance: &str) -> String {
        format!("{}.{instance}", self.group_id)
    }
}

/// The default instance id: `<host name>-<port>`, so two instances on one
/// host differ too. Characters a group name should not carry become `-`.
pub fn default_instance_id(port: u16) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // on success when the name fits (the last byte stays 0 otherwise).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let host: String = if rc == 0 && len > 0 {
        buf[..len]
            .iter()
            .map(|&b| if is_instance_byte(b) { b as char } else { '-' })
            .take(180)
            .collect()
    } else {
        "fanout".to_string()
    };
    format!("{host}-{port}")
}

fn is_instance_id(id: &str) -> bool {
    (1..=200).contains(&id.len()) && id.bytes().all(is_instance_byte)
}

fn is_instance_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._-".contains(&b)
}

fn is_topic_name(topic: &str) -> bool {
    topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}
