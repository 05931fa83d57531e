//! Verifies that a ping flood from a client that never reads costs the
//! server bounded memory (SPEC §7): while the socket is full, each new ping
//! replaces the pong still queued (RFC 6455 §5.5.3 allows answering only the
//! latest ping), so half a million pings leave one pong queued, not half a
//! million. See: #8.

mod common;

use std::io::Write;
use std::time::Duration;

use common::process::{FanoutProcess, MIB};
use common::raw::{self, opcode};

/// Pings per write, and writes: 512k pings with 125-byte payloads (67 MB).
const PINGS_PER_WRITE: usize = 8_000;
const WRITES: usize = 64;

#[test]
fn a_ping_flood_never_read_holds_one_pong_per_connection() {
    let server = FanoutProcess::start_embedded(&[]);
    // A small receive buffer: the kernel holds little, the server the rest.
    let mut stream = raw::public_connection(server.addr, Some(4096));
    stream
        .set_write_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let before = server.usage();
    server.reset_peak();

    let batch = raw::client_frame(opcode::PING, true, &[b'p'; 125]).repeat(PINGS_PER_WRITE);
    for _ in 0..WRITES {
        stream.write_all(&batch).expect("the server keeps reading");
    }
    // An application ping: its JSON pong comes after the answer to every
    // ping before it, so seeing it means the server handled them all.
    stream
        .write_all(&raw::text_frame(r#"{"type":"ping"}"#))
        .expect("sentinel");
    let mut pongs = 0;
    loop {
        let raw::ServerFrame { opcode: op, payload } = raw::read_frame(&mut stream).expect("the connection stays open");
        match op {
            opcode::PONG => pongs += 1,
            opcode::TEXT if payload.starts_with(br#"{"type":"pong""#) => break,
            _ => {}
        }
    }
    let after = server.usage();

    let pings = PINGS_PER_WRITE * WRITES;
    let grown = after.peak_rss_bytes.saturating_sub(before.rss_bytes);
    eprintln!(
        "{pings} pings: peak RSS +{} KiB, {pongs} pongs, server CPU {:?}",
        grown / 1024,
        after.cpu - before.cpu
    );
    assert!(
        grown < 32 * MIB,
        "{pings} unread pings grew the server's RSS by {} MiB",
        grown / MIB
    );
    // What the kernel buffers took while the client was not reading is
    // answered in full; everything after that shares one queued pong.
    assert!(pongs < pings / 4, "{pongs} pongs for {pings} pings: not coalesced");
    assert!(pongs > 0, "pings are answered");
}
