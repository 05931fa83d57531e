//! The `fanout` binary: parse, check, run until SIGINT/SIGTERM, stop.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fanout::{Cli, Config, Engine};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> ExitCode {
    let config = match Config::from_cli(Cli::parse()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("fanout: {err}");
            return ExitCode::from(2);
        }
    };
    fanout::app::init_logging(config.log_format);
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
    loop {
        if signals.pending().next().is_some() {
            break;
        }
        if !engine.is_running() {
            eprintln!("fanout: the ingest thread stopped; shutting down");
            let _ = engine.shutdown();
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match engine.shutdown() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fanout: {err:#}");
            ExitCode::FAILURE
        }
    }
}
