//! `fanout-echo`: the engine with an echo handler, for RFC 6455 conformance
//! runs (Autobahn's fuzzingclient, `scripts/autobahn.sh`) and nothing else.
//!
//! It starts the real engine (`Engine::start`: listener, HTTP upgrade,
//! frame parsing, the connection task, close handshake) with
//! `ShardConfig::conformance_echo` set, so every complete message goes back
//! as it came instead of into the subscribe protocol, and no `connected`
//! greeting is sent. Built only with `--features conformance`; the `fanout`
//! binary of a default build has no echo path at all.
//!
//! Limits are raised to what the Autobahn cases need (9.*: messages up to
//! 16 MiB, a thousand messages in a burst) and the heartbeat is pushed out
//! of the way; events come from the embedded broker and are never produced.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fanout::{Cli, Config, Engine};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Largest message echoed: Autobahn 9.1.6 and 9.2.6 send 16 MiB.
const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Queued bytes per connection: a 16 MiB echo, or 9.7/9.8's bursts of a
/// thousand messages, waiting for a client that reads slowly.
const MAX_PENDING_BYTES: usize = 64 << 20;

/// fanout-echo: the fanout engine echoing every WebSocket message (RFC 6455
/// conformance testing only).
#[derive(Debug, Parser)]
#[command(name = "fanout-echo", version, about)]
struct EchoCli {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    listen: IpAddr,
    /// TCP port (0 picks a free port).
    #[arg(long, default_value_t = 9001)]
    port: u16,
    /// Number of shards.
    #[arg(long, default_value_t = 1)]
    shards: u16,
}

fn main() -> ExitCode {
    let echo = EchoCli::parse();
    let config = match config(&echo) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("fanout-echo: {err}");
            return ExitCode::from(2);
        }
    };
    fanout::app::init_logging(config.log_format);
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("fanout-echo: installing signal handlers: {err}");
            return ExitCode::FAILURE;
        }
    };
    let engine = match Engine::start(config) {
        Ok(engine) => engine,
        Err(err) => {
            eprintln!("fanout-echo: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("fanout-echo listening on {}", engine.local_addr());
    while signals.pending().next().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    match engine.shutdown() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fanout-echo: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The engine's configuration with the echo handler and the limits above.
fn config(echo: &EchoCli) -> Result<Config, String> {
    let listen = echo.listen.to_string();
    let port = echo.port.to_string();
    let shards = echo.shards.to_string();
    let max_message_bytes = MAX_MESSAGE_BYTES.to_string();
    let max_pending_bytes = MAX_PENDING_BYTES.to_string();
    let argv = [
        "fanout-echo",
        "--kafka-brokers",
        "embedded",
        "--no-pin",
        "--listen",
        &listen,
        "--port",
        &port,
        "--shards",
        &shards,
        "--max-message-bytes",
        &max_message_bytes,
        "--max-pending-bytes",
        &max_pending_bytes,
        "--max-client-msgs-per-sec",
        "1000000",
        // Server pings would be extra frames in Autobahn's transcripts.
        "--ping-interval",
        "24h",
        "--pong-timeout",
        "24h",
    ];
    let cli = Cli::try_parse_from(argv).map_err(|err| err.to_string())?;
    let mut config = Config::from_cli(cli).map_err(|err| err.to_string())?;
    config.shard.conformance_echo = true;
    Ok(config)
}
