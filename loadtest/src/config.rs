//! Command line (clap) -> checked `Config`; nothing else sees `Cli`.
//!
//! Every target address must be on loopback: this tool sends load, and load
//! only ever goes to this machine.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clap::{Parser, ValueEnum};

use crate::procfs;

const AFTER_HELP: &str = "\
Durations are written 500ms, 10s, 2m. Results: a progress line a second on
stderr, a summary on stderr, a Markdown table row on stdout, JSON with --out.

Exit status: 0 when every subscriber got exactly its events; 1 when the audit
found missing, duplicate, out-of-order or misrouted deliveries, or a subscriber
failed to connect or was closed; 2 for bad flags or an environment that cannot
run the test (server or broker unreachable, open-file limit too low).

Example (server on CPU 0, loadtest on CPU 1):
  taskset -c 1 loadtest --kafka-brokers 127.0.0.1:9092 --server-pid $PID \\
      -n 10000 -k 1000 --dist zipf --rate 2000 --duration 30s --out r.json";

/// Load generator and exact-delivery auditor for the fanout server.
#[derive(Parser, Debug)]
#[command(name = "loadtest", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Server to load, HOST:PORT on loopback.
    #[arg(long, default_value = "127.0.0.1:3009")]
    server: String,
    /// WebSocket path the subscribers open.
    #[arg(long, default_value = "/ws/availability")]
    path: String,
    /// Origin header sent by subscribers. Default: none (a non-browser client).
    #[arg(long)]
    origin: Option<String>,
    /// Subscriber connections to open, N.
    #[arg(short = 'n', long, default_value_t = 1000)]
    connections: u32,
    /// Number of course keys K, named C0000..C{K-1}.
    #[arg(short = 'k', long, default_value_t = 100)]
    keys: u32,
    /// Distinct keys each subscriber subscribes to.
    #[arg(long, default_value_t = 1)]
    keys_per_sub: u32,
    /// How subscribers pick keys.
    #[arg(long, value_enum, default_value_t = Dist::Uniform)]
    dist: Dist,
    /// How events pick keys.
    #[arg(long, value_enum, default_value_t = Dist::Uniform)]
    event_dist: Dist,
    /// Zipf exponent s (key i drawn with weight 1/(i+1)^s).
    #[arg(long, default_value_t = 1.0)]
    zipf_s: f64,
    /// Seed for key choices; same seed, same run plan.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Connections being opened at once (TCP connect through the subscribe
    /// ack).
    #[arg(long, default_value_t = 256)]
    connect_concurrency: u32,
    /// Time one connection may take from TCP connect to ack.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// Connections per client source address (127.0.0.2, .3, ...). Default:
    /// 90% of the ephemeral port range.
    #[arg(long)]
    conns_per_source_ip: Option<u32>,
    /// Kafka bootstrap servers on loopback, e.g. 127.0.0.1:9092 (as printed
    /// by `fanout --kafka-brokers embedded`). Exactly one of this and
    /// --publish-url.
    #[arg(long)]
    kafka_brokers: Option<String>,
    /// librdkafka producer property KEY=VALUE, repeatable, over the
    /// latency-first defaults linger.ms=0, acks=1.
    #[arg(long = "kafka-opt", value_name = "KEY=VALUE")]
    kafka_opts: Vec<String>,
    /// Instead of Kafka, send each envelope as a text frame to this WebSocket
    /// URL (a peer server's publish endpoint), e.g. ws://127.0.0.1:3019/publish.
    #[arg(long)]
    publish_url: Option<String>,
    /// Topic produced to (and envelope `topic`).
    #[arg(long, default_value = "booking.created")]
    topic: String,
    /// Events per second; 0 sends as fast as the sink takes them.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// How long to produce, unless --events is reached first.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Events to produce (stops at this count or --duration, whichever comes
    /// first). 0: idle mode, connect and subscribe, hold, measure memory.
    /// Default: unlimited.
    #[arg(long)]
    events: Option<u64>,
    /// After the last event, audit once no delivery has arrived for this
    /// long (stragglers and late duplicates still count).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    drain: Duration,
    /// Upper bound on the drain, however long deliveries keep coming.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    drain_max: Duration,
    /// Idle mode: how long to hold the connections open.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// How long to wait for the server's /readyz to answer 200 before
    /// producing (a 404 counts as ready).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    ready_timeout: Duration,
    /// PID of the server, to read its RSS and CPU time from /proc. Default:
    /// none (server columns left empty).
    #[arg(long)]
    server_pid: Option<u32>,
    /// PID of a separate broker process (e.g. tansu), to read its CPU time
    /// under load from /proc. Default: none.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Tokio worker threads for the subscribers.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Write the full result as JSON to this file. Default: none.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Name of the run in the Markdown row. Default: the target kind.
    #[arg(long)]
    label: Option<String>,
    /// Print the Markdown table header before the row.
    #[arg(long)]
    markdown_header: bool,
}

/// Key distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dist {
    /// Every key equally likely.
    Uniform,
    /// Key i with weight 1/(i+1)^s (--zipf-s).
    Zipf,
}

/// Where events go.
#[derive(Debug, Clone)]
pub enum Target {
    /// Produce to Kafka.
    Kafka {
        /// Bootstrap servers.
        brokers: String,
        /// Producer properties, defaults first, user overrides after.
        opts: Vec<(String, String)>,
    },
    /// Send text frames over one WebSocket.
    Publish {
        /// Resolved address.
        addr: SocketAddr,
        /// `Host` header value.
        host: String,
        /// Request path.
        path: String,
    },
}

/// Checked settings of one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Server address (loopback).
    pub server: SocketAddr,
    /// `Host` header for the subscribers.
    pub host: String,
    /// Subscriber path.
    pub path: String,
    /// Optional Origin header.
    pub origin: Option<String>,
    /// N subscribers.
    pub connections: u32,
    /// K keys.
    pub keys: u32,
    /// Keys per subscriber.
    pub keys_per_sub: u32,
    /// Subscriber key distribution.
    pub dist: Dist,
    /// Event key distribution.
    pub event_dist: Dist,
    /// Zipf exponent.
    pub zipf_s: f64,
    /// RNG seed.
    pub seed: u64,
    /// Connections opening at once.
    pub connect_concurrency: u32,
    /// Per-connection setup timeout.
    pub connect_timeout: Duration,
    /// Client source addresses, each used for `conns_per_source_ip` sockets.
    pub source_ips: Vec<Ipv4Addr>,
    /// Connections per source address.
    pub conns_per_source_ip: u32,
    /// Event destination.
    pub target: Target,
    /// Topic name.
    pub topic: String,
    /// Events per second, 0 = flat out.
    pub rate: u64,
    /// Production time limit.
    pub duration: Duration,
    /// Production count limit; `Some(0)` is idle mode.
    pub events: Option<u64>,
    /// Quiet time after the last event and delivery before the audit.
    pub drain: Duration,
    /// Longest drain.
    pub drain_max: Duration,
    /// Idle hold time.
    pub hold: Duration,
    /// Readiness wait.
    pub ready_timeout: Duration,
    /// Server process to observe.
    pub server_pid: Option<u32>,
    /// Broker process to observe.
    pub broker_pid: Option<u32>,
    /// Runtime worker threads.
    pub threads: usize,
    /// JSON output path.
    pub out: Option<PathBuf>,
    /// Markdown row label.
    pub label: String,
    /// Print the Markdown header.
    pub markdown_header: bool,
}

impl Config {
    /// True for `--events 0`: connect, subscribe, hold, no events.
    pub fn idle(&self) -> bool {
        self.events == Some(0)
    }

    /// Checks the command line once.
    pub fn from_cli(cli: Cli) -> anyhow::Result<Config> {
        let server = resolve_loopback(&cli.server).context("--server")?;
        ensure!(cli.path.starts_with('/'), "--path {:?} must start with '/'", cli.path);
        ensure!(cli.connections > 0, "--connections must be at least 1");
        ensure!(cli.keys > 0, "--keys must be at least 1");
        ensure!(
            (1..=cli.keys).contains(&cli.keys_per_sub),
            "--keys-per-sub {} must be between 1 and --keys {}",
            cli.keys_per_sub,
            cli.keys
        );
        ensure!(
            cli.zipf_s.is_finite() && cli.zipf_s > 0.0,
            "--zipf-s {} must be a positive number",
            cli.zipf_s
        );
        ensure!(cli.connect_concurrency > 0, "--connect-concurrency must be at least 1");
        ensure!(cli.threads > 0, "--threads must be at least 1");
        let conns_per_source_ip = cli
            .conns_per_source_ip
            .unwrap_or(procfs::ephemeral_port_count() / 10 * 9);
        ensure!(conns_per_source_ip > 0, "--conns-per-source-ip must be at least 1");
        let ip_count = cli.connections.div_ceil(conns_per_source_ip);
        // 127.0.0.2 .. 127.255.255.254, skipping nothing we need.
        ensure!(
            ip_count < 16_000_000,
            "too many source addresses ({ip_count}); raise --conns-per-source-ip"
        );
        let source_ips = (0..ip_count)
            .map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + i))
            .collect();
        let target = match (cli.kafka_brokers, cli.publish_url) {
            (Some(_), Some(_)) => bail!("give either --kafka-brokers or --publish-url, not both"),
            (None, None) if cli.events != Some(0) => {
                bail!("give --kafka-brokers ADDR or --publish-url ws://HOST:PORT/PATH")
            }
            (None, None) => Target::Kafka {
                brokers: String::new(),
                opts: Vec::new(),
            },
            (Some(brokers), None) => {
                for b in brokers.split(',') {
                    resolve_loopback(b.trim()).with_context(|| format!("--kafka-brokers entry {b:?}"))?;
                }
                let mut opts = vec![
                    ("linger.ms".to_owned(), "0".to_owned()),
                    ("acks".to_owned(), "1".to_owned()),
                ];
                for kv in &cli.kafka_opts {
                    let (k, v) = kv
                        .split_once('=')
                        .with_context(|| format!("--kafka-opt {kv:?} is not KEY=VALUE"))?;
                    opts.push((k.trim().to_owned(), v.trim().to_owned()));
                }
                Target::Kafka { brokers, opts }
            }
            (None, Some(url)) => {
                ensure!(cli.kafka_opts.is_empty(), "--kafka-opt needs --kafka-brokers");
                parse_ws_url(&url).with_context(|| format!("--publish-url {url:?}"))?
            }
        };
        let label = cli.label.unwrap_or_else(|| match &target {
            Target::Kafka { .. } => "fanout".to_owned(),
            Target::Publish { .. } => "peer".to_owned(),
        });
        Ok(Config {
            server,
            host: cli.server,
            path: cli.path,
            origin: cli.origin,
            connections: cli.connections,
            keys: cli.keys,
            keys_per_sub: cli.keys_per_sub,
            dist: cli.dist,
            event_dist: cli.event_dist,
            zipf_s: cli.zipf_s,
            seed: cli.seed,
            connect_concurrency: cli.connect_concurrency,
            connect_timeout: cli.connect_timeout,
            source_ips,
            conns_per_source_ip,
            target,
            topic: cli.topic,
            rate: cli.rate,
            duration: cli.duration,
            events: cli.events,
            drain: cli.drain,
            drain_max: cli.drain_max.max(cli.drain),
            hold: cli.hold,
            ready_timeout: cli.ready_timeout,
            server_pid: cli.server_pid,
            broker_pid: cli.broker_pid,
            threads: cli.threads,
            out: cli.out,
            label,
            markdown_header: cli.markdown_header,
        })
    }
}

/// Resolves HOST:PORT and insists it is a loopback address.
fn resolve_loopback(hostport: &str) -> anyhow::Result<SocketAddr> {
    let addr = hostport
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {hostport:?} (want HOST:PORT)"))?
        .find(|a| a.is_ipv4())
        .with_context(|| format!("{hostport:?} has no IPv4 address"))?;
    ensure!(
        addr.ip().is_loopback(),
        "{hostport:?} resolves to {}, which is not loopback; loadtest only targets this machine",
        addr.ip()
    );
    Ok(addr)
}

/// Parses `ws://HOST:PORT/PATH` (loopback only).
fn parse_ws_url(url: &str) -> anyhow::Result<Target> {
    let rest = url.strip_prefix("ws://").context("must start with ws://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = resolve_loopback(hostport)?;
    Ok(Target::Publish {
        addr,
        host: hostport.to_owned(),
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> anyhow::Result<Config> {
        let mut argv = vec!["loadtest"];
        argv.extend_from_slice(args);
        Config::from_cli(Cli::try_parse_from(argv)?)
    }

    #[test]
    fn defaults_make_a_valid_kafka_run() {
        let c = config(&["--kafka-brokers", "127.0.0.1:9092"]).unwrap();
        assert_eq!(c.server, "127.0.0.1:3009".parse().unwrap());
        assert_eq!((c.connections, c.keys, c.keys_per_sub), (1000, 100, 1));
        assert_eq!(c.source_ips, vec![Ipv4Addr::new(127, 0, 0, 2)]);
        let Target::Kafka { opts, .. } = &c.target else {
            panic!()
        };
        assert_eq!(opts[0], ("linger.ms".into(), "0".into()));
        assert!(!c.idle());
    }

    #[test]
    fn many_connections_spread_over_source_addresses() {
        let c = config(&["--events", "0", "-n", "100000", "--conns-per-source-ip", "30000"]).unwrap();
        assert_eq!(c.source_ips.len(), 4);
        assert_eq!(c.source_ips[3], Ipv4Addr::new(127, 0, 0, 5));
        assert!(c.idle());
    }

    #[test]
    fn misuse_is_rejected_with_the_flag_named() {
        let both = config(&["--kafka-brokers", "127.0.0.1:1", "--publish-url", "ws://127.0.0.1:2/p"]);
        assert!(format!("{:#}", both.unwrap_err()).contains("not both"));
        assert!(config(&[]).is_err(), "no target");
        let remote = config(&["--kafka-brokers", "10.0.0.1:9092"]).unwrap_err();
        assert!(format!("{remote:#}").contains("not loopback"), "{remote:#}");
        let kps = config(&["--publish-url", "ws://127.0.0.1:1/p", "-k", "3", "--keys-per-sub", "4"]);
        assert!(format!("{:#}", kps.unwrap_err()).contains("--keys-per-sub"));
        let opt = config(&["--kafka-brokers", "127.0.0.1:1", "--kafka-opt", "acks"]);
        assert!(format!("{:#}", opt.unwrap_err()).contains("KEY=VALUE"));
    }

    #[test]
    fn publish_url_is_parsed() {
        let c = config(&["--publish-url", "ws://localhost:3019/publish"]).unwrap();
        let Target::Publish { addr, path, host } = c.target else {
            panic!()
        };
        assert!(addr.ip().is_loopback());
        assert_eq!((path.as_str(), host.as_str()), ("/publish", "localhost:3019"));
        assert_eq!(c.label, "peer");
    }
}
