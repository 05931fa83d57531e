//! The `fanout` binary: parse, check, run until SIGINT/SIGTERM, drain, stop.
//!
//! Exit codes: 0 after a graceful stop; 1 when start-up fails (with what to
//! do) or a part of the running engine dies; 2 for a configuration error.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use fanout::{Cli, Config, Engine};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Events are decoded on the ingest thread and freed on the shards, the
/// pattern glibc's per-thread caches serve worst: with its allocator, 23% of
/// a saturated fanout's CPU went to `malloc`/`free` (`_int_malloc` on ingest,
/// `_int_free` and `unlink_chunk` on the shard). mimalloc frees a block
/// from another thread onto its page's own list, without a shared lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often the main thread looks at signals and the engine's health.
const WATCH_INTERVAL: Duration = Duration::from_millis(20);

fn main() -> ExitCode {
    let config = match Config::from_cli(Cli::parse()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("fanout: {err}");
            return ExitCode::from(2);
        }
    };
    fanout::app::init_logging(config.log_format);
    let drain_grace = config.drain_grace;
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("fanout: installing signal handlers: {err}");
            return ExitCode::FAILURE;
        }
    };
    let engine = match Engine::start(config) {
        Ok(engine) => engine,
        Err(err) => {
            eprintln!("fanout: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    if engine.is_embedded() {
        println!("embedded Kafka broker: produce to {}", engine.kafka_bootstrap());
    }
    println!("fanout listening on {}", engine.local_addr());

    let mut failed = match watch(&engine, &mut signals, None) {
        Woke::Failure(what) => Some(what),
        Woke::Signal | Woke::Elapsed => None,
    };
    if failed.is_none() {
        // SPEC §10: /readyz 503 at once, keep serving for the grace, then
        // stop. A second signal ends the grace early.
        engine.start_draining();
        if let Woke::Failure(what) = watch(&engine, &mut signals, Some(drain_grace)) {
            failed = Some(what);
        }
    }
    if let Some(what) = failed {
        eprintln!("fanout: {what}; shutting down");
    }
    match engine.shutdown() {
        Ok(()) if failed.is_none() => ExitCode::SUCCESS,
        Ok(()) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("fanout: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// What ended a [`watch`].
enum Woke {
    Signal,
    Failure(&'static str),
    Elapsed,
}

/// Waits for a stop signal, a part of the engine dying, or `limit` passing.
fn watch(engine: &Engine, signals: &mut Signals, limit: Option<Duration>) -> Woke {
    let started = Instant::now();
    loop {
        if signals.pending().next().is_some() {
            return Woke::Signal;
        }
        if let Some(what) = engine.failure() {
            return Woke::Failure(what);
        }
        if limit.is_some_and(|limit| started.elapsed() >= limit) {
            return Woke::Elapsed;
        }
        std::thread::sleep(WATCH_INTERVAL);
    }
}
