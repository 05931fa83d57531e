//! The result of a run: one `RunReport`, written as JSON (`--out`), as a
//! Markdown table row (stdout) and as a readable summary (stderr).
//!
//! Built once by `run` after the audit; nothing here measures.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::audit::AuditTally;
use crate::config::Dist;
use crate::procfs::ProcSample;
use crate::produce::ProduceSummary;
use crate::stats::{human_bytes, quantile_micros};

/// Everything a run measured.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// Name of the run (`--label`).
    pub label: String,
    /// Start time, Unix seconds.
    pub started_unix_secs: u64,
    /// What was asked for.
    pub params: Params,
    /// Connection phase.
    pub connect: ConnectReport,
    /// Producer; `None` in idle mode.
    pub produce: Option<ProduceSummary>,
    /// Deliveries seen by the subscribers.
    pub delivery: DeliveryReport,
    /// Exact-delivery audit.
    pub audit: AuditReport,
    /// Server process, with `--server-pid`.
    pub server: Option<ServerReport>,
    /// Broker process, with `--broker-pid`.
    pub broker: Option<BrokerReport>,
    /// This process.
    pub client: ClientReport,
}

/// The run's parameters.
#[derive(Debug, Serialize)]
pub struct Params {
    /// `kafka` or `publish`.
    pub target: &'static str,
    /// N.
    pub connections: u32,
    /// K.
    pub keys: u32,
    /// Keys per subscriber.
    pub keys_per_sub: u32,
    /// Subscriber key distribution.
    pub dist: Dist,
    /// Event key distribution.
    pub event_dist: Dist,
    /// Zipf exponent (used by either distribution set to zipf).
    pub zipf_s: f64,
    /// Requested events/s, 0 = flat out.
    pub rate: u64,
    /// Production time limit, seconds.
    pub duration_secs: f64,
    /// Production count limit.
    pub events: Option<u64>,
    /// Straggler wait, seconds.
    pub drain_secs: f64,
    /// Runtime worker threads.
    pub threads: usize,
    /// RNG seed.
    pub seed: u64,
}

/// Connection phase numbers.
#[derive(Debug, Serialize)]
pub struct ConnectReport {
    /// Upgrades completed.
    pub connected: u64,
    /// Subscribe acks received.
    pub acked: u64,
    /// Subscribers that failed before their ack.
    pub failed: u64,
    /// Time from the first connect to the last completed upgrade, seconds.
    pub connect_secs: f64,
    /// Upgrades per second over `connect_secs`.
    pub connect_rate: f64,
    /// Time from the first connect to the last ack, seconds.
    pub all_acked_secs: f64,
    /// Up to five distinct failure reasons with their counts.
    pub failure_reasons: BTreeMap<String, u64>,
}

/// Latency quantiles in microseconds.
#[derive(Debug, Serialize, Default)]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Maximum.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl Latency {
    /// Quantiles of a histogram of nanoseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50_us: quantile_micros(h, 0.5),
            p99_us: quantile_micros(h, 0.99),
            p999_us: quantile_micros(h, 0.999),
            max_us: h.max() as f64 / 1_000.0,
            mean_us: h.mean() / 1_000.0,
        }
    }
}

/// Delivery numbers.
#[derive(Debug, Serialize)]
pub struct DeliveryReport {
    /// `availability.updated` messages received (duplicates included).
    pub deliveries: u64,
    /// Deliveries per second, from the first send to the last receipt.
    pub deliveries_per_sec: f64,
    /// End-to-end latency: receipt minus the producer's send time.
    pub latency: Latency,
    /// Messages of other types after the ack (pong, error, ...).
    pub other_messages: u64,
}

/// Audit outcome.
#[derive(Debug, Serialize)]
pub struct AuditReport {
    /// Summed over subscribers that got their ack.
    #[serde(flatten)]
    pub tally: AuditTally,
    /// Subscribers that never got their ack.
    pub failed_subscribers: u64,
    /// Subscribers the server closed during the run, by close code.
    pub closed_by_server: BTreeMap<u16, u64>,
    /// True when the audit found nothing wrong.
    pub passed: bool,
}

/// Broker process numbers, over the same window as the server's load CPU.
#[derive(Debug, Serialize)]
pub struct BrokerReport {
    /// The observed PID.
    pub pid: u32,
    /// CPU seconds from the first event to the end of the drain.
    pub load_cpu_secs: f64,
    /// Of `load_cpu_secs`, seconds in the kernel.
    pub load_sys_secs: f64,
}

/// Server process numbers.
#[derive(Debug, Serialize)]
pub struct ServerReport {
    /// The observed PID.
    pub pid: u32,
    /// Before any connection.
    pub before: ProcSample,
    /// After every subscriber got its ack.
    pub subscribed: ProcSample,
    /// At the end of the run.
    pub end: ProcSample,
    /// Highest RSS sampled (once a second), bytes.
    pub peak_rss_bytes: u64,
    /// (subscribed RSS - before RSS) / acked subscribers, bytes.
    pub rss_per_conn_bytes: f64,
    /// CPU seconds spent from the first event to the end of the drain (idle
    /// mode: over the hold).
    pub load_cpu_secs: f64,
    /// Of `load_cpu_secs`, seconds in the kernel (`stime`).
    pub load_sys_secs: f64,
    /// Wall time over which `load_cpu_secs` was taken, seconds.
    pub load_window_secs: f64,
    /// Deliveries per server CPU-second.
    pub deliveries_per_cpu_sec: f64,
}

/// This process's numbers.
#[derive(Debug, Serialize)]
pub struct ClientReport {
    /// CPU seconds spent from the first event to the end of the drain.
    pub load_cpu_secs: f64,
    /// Deliveries per client CPU-second.
    pub deliveries_per_cpu_sec: f64,
    /// Highest RSS of this process, bytes.
    pub peak_rss_bytes: u64,
}

impl RunReport {
    /// True when the run is clean: every subscriber subscribed, none closed,
    /// and the audit found no fault.
    pub fn passed(&self) -> bool {
        self.audit.passed
    }

    /// Writes the JSON result file.
    pub fn write_json(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self).expect("report serializes");
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// Header and separator lines of the Markdown table.
    pub fn markdown_header() -> String {
        "| run | conns | keys | keys/sub | dist | events | rate ev/s | deliveries/s | \
         p50 µs | p99 µs | p99.9 µs | max µs | server RSS/conn | deliveries/server CPU-s | \
         client CPU s | audit |\n\
         |---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
            .to_owned()
    }

    /// One Markdown table row.
    pub fn markdown_row(&self) -> String {
        let p = &self.params;
        let l = &self.delivery.latency;
        let dist = match p.dist {
            Dist::Uniform => "uniform".to_owned(),
            Dist::Zipf => format!("zipf {}", p.zipf_s),
        };
        let (events, rate) = match &self.produce {
            Some(s) => (s.events_sent.to_string(), format!("{:.0}", s.send_rate)),
            None => ("idle".to_owned(), "-".to_owned()),
        };
        let idle = self.produce.is_none();
        let num = |v: f64| {
            if idle { "-".to_owned() } else { format!("{v:.0}") }
        };
        let (rss, per_cpu) = match &self.server {
            Some(s) => (
                human_bytes(s.rss_per_conn_bytes.max(0.0) as u64),
                num(s.deliveries_per_cpu_sec),
            ),
            None => ("-".to_owned(), "-".to_owned()),
        };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} |",
            self.label,
            self.connect.acked,
            p.keys,
            p.keys_per_sub,
            dist,
            events,
            rate,
            num(self.delivery.deliveries_per_sec),
            num(l.p50_us),
            num(l.p99_us),
            num(l.p999_us),
            num(l.max_us),
            rss,
            per_cpu,
            self.client.load_cpu_secs,
            self.audit_verdict(),
        )
    }

    /// "exact" or the fault counts.
    pub fn audit_verdict(&self) -> String {
        if self.audit.passed {
            return "exact".to_owned();
        }
        let t = &self.audit.tally;
        let mut s = String::from("FAIL:");
        for (n, what) in [
            (t.missing, "missing"),
            (t.duplicate, "duplicate"),
            (t.out_of_order, "out-of-order"),
            (t.misrouted, "misrouted"),
            (t.malformed, "malformed"),
            (self.audit.failed_subscribers, "failed subs"),
            (self.audit.closed_by_server.values().sum(), "closed subs"),
        ] {
            if n > 0 {
                write!(s, " {n} {what}").expect("writing to a String");
            }
        }
        s
    }

    /// Multi-line human summary.
    pub fn summary(&self) -> String {
        let c = &self.connect;
        let d = &self.delivery;
        let t = &self.audit.tally;
        let mut s = String::new();
        let w = &mut s;
        let _ = writeln!(
            w,
            "connect: {} acked, {} failed; {:.0} conn/s over {:.2}s; all acked after {:.2}s",
            c.acked, c.failed, c.connect_rate, c.connect_secs, c.all_acked_secs
        );
        for (reason, n) in &c.failure_reasons {
            let _ = writeln!(w, "  failure x{n}: {reason}");
        }
        if let Some(p) = &self.produce {
            let _ = writeln!(
                w,
                "produce: {} events in {:.2}s ({:.0}/s), {} delivery errors",
                p.events_sent, p.produce_secs, p.send_rate, p.delivery_errors
            );
        }
        if self.produce.is_some() {
            let l = &d.latency;
            let _ = writeln!(
                w,
                "deliver: {} deliveries, {:.0}/s; latency p50 {:.0}µs p99 {:.0}µs \
                 p99.9 {:.0}µs max {:.0}µs",
                d.deliveries, d.deliveries_per_sec, l.p50_us, l.p99_us, l.p999_us, l.max_us
            );
        }
        let _ = writeln!(
            w,
            "audit: expected {} received {} missing {} duplicate {} out-of-order {} misrouted {} \
             malformed {}; closed by server {:?} -> {}",
            t.expected,
            t.received,
            t.missing,
            t.duplicate,
            t.out_of_order,
            t.misrouted,
            t.malformed,
            self.audit.closed_by_server,
            self.audit_verdict()
        );
        if let Some(sv) = &self.server {
            let _ = writeln!(
                w,
                "server: RSS {} -> {} subscribed (peak {}), {}/conn; {:.2} CPU-s under load \
                 ({:.0}% kernel, {:.0}% of a core over {:.1} s), {:.0} deliveries/CPU-s",
                human_bytes(sv.before.rss_bytes),
                human_bytes(sv.subscribed.rss_bytes),
                human_bytes(sv.peak_rss_bytes),
                human_bytes(sv.rss_per_conn_bytes.max(0.0) as u64),
                sv.load_cpu_secs,
                100.0 * sv.load_sys_secs / sv.load_cpu_secs.max(1e-9),
                100.0 * sv.load_cpu_secs / sv.load_window_secs.max(1e-9),
                sv.load_window_secs,
                sv.deliveries_per_cpu_sec
            );
        }
        let _ = writeln!(
            w,
            "client: {:.2} CPU-s under load, {:.0} deliveries/CPU-s, peak RSS {}",
            self.client.load_cpu_secs,
            self.client.deliveries_per_cpu_sec,
            human_bytes(self.client.peak_rss_bytes)
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(missing: u64) -> RunReport {
        let tally = AuditTally {
            expected: 10,
            received: 10 - missing,
            missing,
            ..AuditTally::default()
        };
        RunReport {
            label: "t".into(),
            started_unix_secs: 0,
            params: Params {
                target: "kafka",
                connections: 2,
                keys: 4,
                keys_per_sub: 1,
                dist: Dist::Zipf,
                event_dist: Dist::Uniform,
                zipf_s: 1.1,
                rate: 100,
                duration_secs: 1.0,
                events: Some(10),
                drain_secs: 2.0,
                threads: 1,
                seed: 1,
            },
            connect: ConnectReport {
                connected: 2,
                acked: 2,
                failed: 0,
                connect_secs: 0.1,
                connect_rate: 20.0,
                all_acked_secs: 0.1,
                failure_reasons: BTreeMap::new(),
            },
            produce: Some(ProduceSummary {
                events_sent: 10,
                produce_secs: 0.1,
                send_rate: 100.0,
                delivery_errors: 0,
            }),
            delivery: DeliveryReport {
                deliveries: 10 - missing,
                deliveries_per_sec: 100.0,
                latency: Latency::default(),
                other_messages: 0,
            },
            audit: AuditReport {
                tally,
                failed_subscribers: 0,
                closed_by_server: BTreeMap::new(),
                passed: tally.is_exact(),
            },
            server: None,
            broker: None,
            client: ClientReport {
                load_cpu_secs: 0.5,
                deliveries_per_cpu_sec: 20.0,
                peak_rss_bytes: 1 << 20,
            },
        }
    }

    #[test]
    fn markdown_row_has_one_cell_per_header_column() {
        let header = RunReport::markdown_header();
        let columns = header.lines().next().unwrap().matches('|').count();
        assert_eq!(report(0).markdown_row().matches('|').count(), columns);
        assert!(report(0).markdown_row().ends_with("| exact |"));
    }

    #[test]
    fn failed_audit_shows_in_the_row_and_the_json() {
        let r = report(3);
        assert!(!r.passed());
        assert!(r.markdown_row().contains("FAIL: 3 missing"), "{}", r.markdown_row());
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(json["audit"]["missing"], 3);
        assert_eq!(json["audit"]["passed"], false);
    }
}
