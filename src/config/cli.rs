//! The command line: every flag, its environment fallback, unit, default and
//! help text (clap derive).
//!
//! Only [`Config::from_cli`](super::Config::from_cli) reads a [`Cli`]; it
//! checks the values once and the rest of the crate sees the checked
//! [`Config`](super::Config). Durations are parsed here and bounded by
//! [`MAX_DURATION`], so no later `Instant + Duration` can overflow.

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

    /// Kafka consumer group prefix. Every instance reads every partition and
    /// commits its positions under `<group>.<instance id>` (SPEC §11).
    #[arg(long, env = "KAFKA_GROUP_ID", default_value = "notification-service")]
    pub kafka_group_id: String,

    /// This instance's name: positions are committed under consumer group
    /// `<--kafka-group-id>.<--instance-id>`, so a restarted instance resumes
    /// where it stopped. Letters, digits, `.`, `_`, `-`. Default: `<host
    /// name>-<port>` (the port actually bound, with `--port 0`).
    #[arg(long, env = "FANOUT_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// How often the configured topics' partitions are looked up. Partitions
    /// added to a topic are consumed from their beginning within this
    /// interval (plus one metadata round trip); a configured topic that is
    /// missing is looked for every second until it exists. Each lookup is a
    /// metadata request on the connection that carries the fetches: through
    /// tansu, 5 s raised the p99 at 1 000 events/s from ~0.1 s to 0.2-0.3 s.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub kafka_refresh_interval: Duration,

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

    /// Maximum filter values per connection; a subscribe over it gets
    /// `too_many_filters`.
    #[arg(long, default_value_t = 256)]
    pub max_filters: usize,

    /// Largest filter value in bytes; longer gets `invalid_filter`. With
    /// `--max-filters` it bounds a connection's filter set, and the
    /// `subscribed` reply that echoes it.
    #[arg(long, default_value_t = 128)]
    pub max_filter_value_bytes: usize,

    /// Client messages per second per connection (token bucket, burst of the
    /// same size).
    #[arg(long, default_value_t = 50)]
    pub max_client_msgs_per_sec: u32,

    /// Largest client message in bytes; larger closes with 1009.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,

    /// Outbound bytes queued per connection (events, replies, pongs) before
    /// it is closed as a slow consumer (1013).
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_pending_bytes: usize,

    /// Bytes held for all connections of the process together: outbound
    /// queues plus partly received messages. Over it, the connections
    /// holding the most are closed with 1013 until the total is back under.
    /// Default 256 MiB: 256 connections at the full --max-pending-bytes.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    pub max_total_pending_bytes: usize,

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
    /// ingest waits (backpressure to Kafka). Under a backlog a shard takes
    /// all that waits at once, so more events share each socket write: 65536
    /// against 4096 gave 1.2x the deliveries per CPU-second at 10 recipients
    /// per event (BENCHMARKS.md). The events are shared between shards; a
    /// slot costs 16 bytes.
    #[arg(long, default_value_t = 65536)]
    pub inbox_capacity: usize,

    /// Longest a shard holds queued events back so that more of them share
    /// each socket write. Only under load: an event that finds the shard idle
    /// is written at once; once flushing takes a large share of the core,
    /// the next flush waits as long as the last one took, at most this.
    /// 0 writes every batch at once.
    #[arg(long, default_value = "2ms", value_parser = parse_duration)]
    pub max_flush_delay: Duration,

    /// On SIGTERM/SIGINT, how long the instance keeps serving with `/readyz`
    /// answering 503 before it closes its clients, so a load balancer stops
    /// sending it new ones first. Set it to the balancer's health-check
    /// interval times its fall count. A second signal cuts it short.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub drain_grace: Duration,

    /// Time allowed, after `--drain-grace`, for closing clients (1001) and
    /// committing offsets; the process exits within grace + timeout.
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

/// The longest duration any flag takes: a day. Anything longer is a typo,
/// and an unbounded one overflows `Instant` arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|err| format!("{err} (write e.g. 30s, 500ms, 2m)"))?;
    if duration > MAX_DURATION {
        return Err(format!("{text} is longer than the longest allowed, 24h"));
    }
    Ok(duration)
}
