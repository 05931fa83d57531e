//! One run, phase by phase: preflight checks, connect and subscribe N,
//! wait for readiness, produce, drain, stop, audit, report.
//!
//! Runs on the main thread inside the tokio runtime; subscribers are tasks on
//! the workers, the producer a blocking thread. Server samples (RSS, CPU) are
//! taken between phases and once a second for the peak.
//! Errors returned from here are setup errors (exit 2); a run that completes
//! returns its report, whose audit decides exit 0 or 1.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::audit::{AuditTally, SentLog, SubscriberAudit};
use crate::client::{self, ClientShared, Outcome, SubscriberPlan};
use crate::config::{Config, Dist, Target};
use crate::procfs::{self, ProcSample};
use crate::produce::{self, ProducePlan};
use crate::report::{
    AuditReport, BrokerReport, ClientReport, ConnectReport, DeliveryReport, Latency, Params, RunReport, ServerReport,
};
use crate::scenario::{KeyPicker, KeySpace, Rng};
use crate::sink::{EventSink, KafkaSink, PublishSink};
use crate::stats::{self, Progress, human_bytes};

/// File descriptors beyond one per subscriber: stdio, the producer, the
/// runtime, librdkafka's sockets and pipes.
const SPARE_FDS: u64 = 256;

/// Runs the load test described by `config`.
pub fn run(config: Config) -> anyhow::Result<RunReport> {
    let started_unix_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    procfs::ensure_nofile(config.connections as u64 + SPARE_FDS)?;
    StdTcpStream::connect_timeout(&config.server, Duration::from_secs(3))
        .with_context(|| format!("cannot reach the server at {} (is it running?)", config.server))?;
    let sink: Option<Box<dyn EventSink>> = match (&config.target, config.idle()) {
        (_, true) => None,
        (Target::Kafka { brokers, opts }, false) => Some(Box::new(KafkaSink::connect(brokers, opts, &config.topic)?)),
        (Target::Publish { addr, host, path }, false) => Some(Box::new(PublishSink::connect(*addr, host, path)?)),
    };
    let server_before = sample_server(config.server_pid)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(drive(config, sink, server_before, started_unix_secs))
}

fn sample_server(pid: Option<u32>) -> anyhow::Result<Option<ProcSample>> {
    sample_pid("--server-pid", pid)
}

/// A reading of the process given by `flag`, if it was given.
fn sample_pid(flag: &str, pid: Option<u32>) -> anyhow::Result<Option<ProcSample>> {
    pid.map(|p| procfs::sample(Some(p)).with_context(|| format!("{flag} {p}")))
        .transpose()
}

fn picker(dist: Dist, keys: u32, s: f64) -> KeyPicker {
    match dist {
        Dist::Uniform => KeyPicker::uniform(keys),
        Dist::Zipf => KeyPicker::zipf(keys, s),
    }
}

/// Once-a-second progress line and peak sampling.
struct Ticker {
    progress: Arc<Progress>,
    server_pid: Option<u32>,
    server_peak_rss: u64,
    last_tick: Instant,
    last_sent: u64,
    last_deliveries: u64,
    last_server_cpu: f64,
}

impl Ticker {
    /// Prints a line if a second has passed since the last one.
    fn tick(&mut self, connections: u32) {
        let elapsed = self.last_tick.elapsed();
        if elapsed < Duration::from_secs(1) {
            return;
        }
        self.last_tick = Instant::now();
        let secs = elapsed.as_secs_f64();
        let p = &self.progress;
        let sent = p.sent.load(Relaxed);
        let t = stats::totals(false);
        let mut line = format!(
            "[{:>5.1}s] conn {}/{} acked {} failed {} closed {} | sent {} ({:.0}/s) | deliv {} ({:.0}/s)",
            p.epoch.elapsed().as_secs_f64(),
            p.connected.load(Relaxed),
            connections,
            p.acked.load(Relaxed),
            p.failed.load(Relaxed),
            p.closed_by_server.load(Relaxed),
            sent,
            (sent - self.last_sent) as f64 / secs,
            t.deliveries,
            (t.deliveries - self.last_deliveries) as f64 / secs,
        );
        (self.last_sent, self.last_deliveries) = (sent, t.deliveries);
        if let Some(Ok(s)) = self.server_pid.map(|pid| procfs::sample(Some(pid))) {
            self.server_peak_rss = self.server_peak_rss.max(s.rss_bytes);
            let cpu = (s.cpu_secs - self.last_server_cpu) / secs * 100.0;
            self.last_server_cpu = s.cpu_secs;
            line += &format!(" | server rss {} cpu {cpu:.0}%", human_bytes(s.rss_bytes));
        }
        eprintln!("{line}");
    }

    /// Ticks until no delivery has arrived for `quiet` (true), or `max` has
    /// passed (false).
    async fn drain(&mut self, quiet: Duration, max: Duration, connections: u32) -> bool {
        let start = Instant::now();
        let mut seen = stats::totals(false).deliveries;
        let mut quiet_since = start;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.tick(connections);
            let now_seen = stats::totals(false).deliveries;
            if now_seen != seen {
                (seen, quiet_since) = (now_seen, Instant::now());
            }
            if quiet_since.elapsed() >= quiet {
                return true;
            }
            if start.elapsed() >= max {
                return false;
            }
        }
    }

    /// Ticks every 100 ms for `d`.
    async fn wait(&mut self, d: Duration, connections: u32) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(100).min(end - Instant::now())).await;
            self.tick(connections);
        }
    }
}

async fn drive(
    config: Config,
    sink: Option<Box<dyn EventSink>>,
    server_before: Option<ProcSample>,
    started_unix_secs: u64,
) -> anyhow::Result<RunReport> {
    let n = config.connections;
    let space = KeySpace::new(config.keys);
    let log = Arc::new(SentLog::new(config.keys));
    let progress = Arc::new(Progress::new());
    let shared = Arc::new(ClientShared {
        server: config.server,
        host: config.host.clone(),
        path: config.path.clone(),
        origin: config.origin.clone(),
        space,
        log: log.clone(),
        progress: progress.clone(),
        connect_timeout: config.connect_timeout,
        setup_slots: Arc::new(Semaphore::new(config.connect_concurrency as usize)),
    });
    let mut ticker = Ticker {
        progress: progress.clone(),
        server_pid: config.server_pid,
        server_peak_rss: server_before.map_or(0, |s| s.rss_bytes),
        last_tick: Instant::now(),
        last_sent: 0,
        last_deliveries: 0,
        last_server_cpu: server_before.map_or(0.0, |s| s.cpu_secs),
    };

    // Phase 0: the server must be consuming (Kafka offsets resolved) before
    // the first event, or early events are legitimately never seen.
    if sink.is_some() {
        wait_ready(config.server, &config.host, config.ready_timeout).await?;
    }

    // Phase 1: connect and subscribe.
    let sub_picker = picker(config.dist, config.keys, config.zipf_s);
    let mut rng = Rng::new(config.seed);
    let handles: Vec<_> = (0..n)
        .map(|id| {
            let plan = SubscriberPlan {
                id,
                source_ip: config.source_ips[(id / config.conns_per_source_ip) as usize],
                keys: sub_picker.pick_distinct(&mut rng, config.keys_per_sub, config.keys),
            };
            let audit = Arc::new(Mutex::new(SubscriberAudit::new(&plan.keys)));
            let task = client::run_subscriber(shared.clone(), plan, audit.clone());
            (tokio::spawn(task), audit)
        })
        .collect();
    while progress.acked.load(Relaxed) + progress.failed.load(Relaxed) < n as u64 {
        ticker.wait(Duration::from_millis(100), n).await;
    }
    let acked = progress.acked.load(Relaxed);
    let server_subscribed = sample_server(config.server_pid)?;
    eprintln!(
        "loadtest: {acked}/{n} subscribed in {:.2}s",
        progress.last_acked_at_nanos.load(Relaxed) as f64 / 1e9
    );

    // Phase 2: events (or hold, in idle mode), then drain.
    let own_cpu_start = procfs::own_cpu();
    let server_load_start = sample_server(config.server_pid)?;
    let broker_load_start = sample_pid("--broker-pid", config.broker_pid)?;
    let load_started = Instant::now();
    let produce_start_unix_nanos = stats::unix_nanos();
    let mut produce_result = None;
    if acked == 0 {
        eprintln!("loadtest: no subscriber got its ack; skipping the events");
    } else if let Some(mut sink) = sink {
        let plan = ProducePlan {
            topic: config.topic.clone(),
            rate: config.rate,
            duration: config.duration,
            events: config.events,
            seed: config.seed,
            space,
            picker: picker(config.event_dist, config.keys, config.zipf_s),
        };
        let (log2, progress2) = (log.clone(), progress.clone());
        let producer = tokio::task::spawn_blocking(move || produce::produce(&plan, sink.as_mut(), &log2, &progress2));
        tokio::pin!(producer);
        let summary = loop {
            tokio::select! {
                r = &mut producer => break r.context("producer thread panicked")?,
                _ = tokio::time::sleep(Duration::from_millis(100)) => ticker.tick(n),
            }
        };
        match summary {
            Ok(s) => produce_result = Some(s),
            Err(e) => eprintln!("loadtest: producer stopped: {e:#}"),
        }
        let drained = ticker.drain(config.drain, config.drain_max, n).await;
        if !drained {
            eprintln!(
                "loadtest: deliveries still arriving after --drain-max {:?}; auditing now",
                config.drain_max
            );
        }
    } else {
        ticker.wait(config.hold, n).await;
    }
    let own_cpu = (procfs::own_cpu() - own_cpu_start).as_secs_f64();
    let server_end = sample_server(config.server_pid)?;
    let broker_end = sample_pid("--broker-pid", config.broker_pid)?;
    let load_window_secs = load_started.elapsed().as_secs_f64();

    // Phase 3: stop subscribers (abort their tasks), collect their audits.
    for (h, _) in &handles {
        h.abort();
    }
    let mut tally = AuditTally::default();
    let mut failures: HashMap<String, u64> = HashMap::new();
    let mut closed: BTreeMap<u16, u64> = BTreeMap::new();
    for (h, audit) in handles {
        match h.await {
            Ok(Outcome::Failed(reason)) => {
                *failures.entry(reason).or_default() += 1;
                continue;
            }
            Ok(Outcome::Closed(code)) => *closed.entry(code).or_default() += 1,
            Err(e) if e.is_cancelled() => {}
            Err(e) => bail!("subscriber task panicked: {e}"),
        }
        tally.add(&audit.lock().expect("audit slot poisoned").finish(&log));
    }
    let failed = failures.values().sum::<u64>();
    if acked == 0 {
        let reasons: Vec<_> = failures.keys().take(3).cloned().collect();
        bail!("no subscriber could subscribe; e.g. {}", reasons.join("; "));
    }
    let mut failure_list: Vec<_> = failures.into_iter().collect();
    failure_list.sort_by_key(|f| std::cmp::Reverse(f.1));
    failure_list.truncate(5);

    let totals = stats::totals(true);
    let deliver_window_secs = totals.last_delivery_unix_nanos.saturating_sub(produce_start_unix_nanos) as f64 / 1e9;
    let deliveries = totals.deliveries;
    let per = |d: u64, secs: f64| if secs > 0.0 { d as f64 / secs } else { 0.0 };
    let connect_secs = progress.last_connected_at_nanos.load(Relaxed) as f64 / 1e9;
    let producer_failed = !config.idle() && produce_result.is_none();
    let passed = tally.is_exact() && failed == 0 && closed.is_empty() && !producer_failed;
    let server = match (config.server_pid, server_before, server_subscribed, server_end) {
        (Some(pid), Some(before), Some(subscribed), Some(end)) => {
            let load_cpu_secs = end.cpu_secs - server_load_start.map_or(0.0, |s| s.cpu_secs);
            let load_sys_secs = end.sys_secs - server_load_start.map_or(0.0, |s| s.sys_secs);
            Some(ServerReport {
                pid,
                before,
                subscribed,
                end,
                peak_rss_bytes: ticker.server_peak_rss.max(subscribed.rss_bytes).max(end.rss_bytes),
                rss_per_conn_bytes: (subscribed.rss_bytes as f64 - before.rss_bytes as f64) / acked as f64,
                load_cpu_secs,
                load_sys_secs,
                load_window_secs,
                deliveries_per_cpu_sec: per(deliveries, load_cpu_secs),
            })
        }
        _ => None,
    };
    Ok(RunReport {
        label: config.label.clone(),
        started_unix_secs,
        params: Params {
            target: match config.target {
                Target::Kafka { .. } => "kafka",
                Target::Publish { .. } => "publish",
            },
            connections: n,
            keys: config.keys,
            keys_per_sub: config.keys_per_sub,
            dist: config.dist,
            event_dist: config.event_dist,
            zipf_s: config.zipf_s,
            rate: config.rate,
            duration_secs: config.duration.as_secs_f64(),
            events: config.events,
            drain_secs: config.drain.as_secs_f64(),
            threads: config.threads,
            seed: config.seed,
        },
        connect: ConnectReport {
            connected: progress.connected.load(Relaxed),
            acked,
            failed,
            connect_secs,
            connect_rate: per(progress.connected.load(Relaxed), connect_secs),
            all_acked_secs: progress.last_acked_at_nanos.load(Relaxed) as f64 / 1e9,
            failure_reasons: failure_list.into_iter().collect(),
        },
        produce: produce_result,
        delivery: DeliveryReport {
            deliveries,
            deliveries_per_sec: per(deliveries, deliver_window_secs),
            latency: Latency::from_histogram(&totals.latency),
            other_messages: totals.other_messages,
        },
        audit: AuditReport {
            tally,
            failed_subscribers: failed,
            closed_by_server: closed,
            passed,
        },
        server,
        broker: match (config.broker_pid, broker_load_start, broker_end) {
            (Some(pid), Some(start), Some(end)) => Some(BrokerReport {
                pid,
                load_cpu_secs: end.cpu_secs - start.cpu_secs,
                load_sys_secs: end.sys_secs - start.sys_secs,
            }),
            _ => None,
        },
        client: ClientReport {
            load_cpu_secs: own_cpu,
            deliveries_per_cpu_sec: per(deliveries, own_cpu),
            peak_rss_bytes: procfs::sample(None).map_or(0, |s| s.rss_peak_bytes),
        },
    })
}

/// Polls `GET /readyz` until 200 (or 404: a server without the endpoint).
async fn wait_ready(server: SocketAddr, host: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match readyz_status(server, host).await {
            Ok(200) | Ok(404) => return Ok(()),
            Ok(code) => format!("/readyz answered {code}"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("server at {server} not ready after {timeout:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn readyz_status(server: SocketAddr, host: &str) -> anyhow::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(server).await?;
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf[len..]))
            .await
            .context("reading /readyz timed out")??;
        if n == 0 {
            break;
        }
        len += n;
    }
    let head = std::str::from_utf8(&buf[..len]).unwrap_or_default();
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad /readyz answer {head:?}"))
}
