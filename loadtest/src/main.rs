//! `loadtest`: drives a running fanout server (or a peer server) through
//! real sockets on loopback and audits that every subscriber got exactly its
//! events.
//!
//! ```text
//! producer thread ── Kafka (or ws /publish) ──> server ──> N subscriber tasks
//!      │ records seq per key                                 │ audit + latency
//!      └──────────────────> SentLog <────────────────────────┘
//! ```
//!
//! Where things live: `config` (flags -> Config), `run` (phases),
//! `client` (one subscriber), `ws` (RFC 6455 framing), `scenario` (keys,
//! distributions, envelope), `produce` (paced producer loop), `sink` (Kafka
//! or WebSocket publish), `audit` (exact-delivery check), `stats` (counters,
//! latency histogram), `procfs` (RSS, CPU, limits), `report` (JSON,
//! Markdown).

mod audit;
mod client;
mod config;
mod procfs;
mod produce;
mod report;
mod run;
mod scenario;
mod sink;
mod stats;
mod ws;

use std::process::ExitCode;

use clap::Parser;

use crate::config::{Cli, Config};
use crate::report::RunReport;

fn main() -> ExitCode {
    let config = match Config::from_cli(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadtest: bad flags: {e:#}");
            return ExitCode::from(2);
        }
    };
    let (out, header) = (config.out.clone(), config.markdown_header);
    let report = match run::run(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadtest: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    eprint!("{}", report.summary());
    if let Some(path) = out {
        if let Err(e) = report.write_json(&path) {
            eprintln!("loadtest: error: {e:#}");
            return ExitCode::from(2);
        }
        eprintln!("loadtest: wrote {}", path.display());
    }
    if header {
        println!("{}", RunReport::markdown_header());
    }
    println!("{}", report.markdown_row());
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
