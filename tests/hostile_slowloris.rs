//! Verifies that a slowloris at the HTTP stage costs the server bounded
//! resources (SPEC §2, §7): many connections each dribbling header bytes are
//! cut off at `--handshake-timeout`, cost little memory and CPU while they
//! last, and a head sent one byte at a time is parsed in linear time (the
//! listener parses only when a read may end the head). See: #8.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::process::{FanoutProcess, MIB};
use common::raw;

/// Concurrent dribbling connections.
const DRIBBLERS: usize = 1_000;

#[test]
fn dribbling_heads_are_cut_off_at_the_handshake_timeout() {
    let server = FanoutProcess::start_embedded(&["--handshake-timeout", "2s"]);
    let before = server.usage();
    server.reset_peak();
    let mut open: Vec<TcpStream> = (0..DRIBBLERS)
        .map(|_| {
            let mut stream = TcpStream::connect(server.addr).expect("connect");
            stream
                .write_all(b"GET /ws/availability HTTP/1.1\r\nHost: t\r\n")
                .expect("start a head");
            stream.set_nonblocking(true).expect("nonblocking");
            stream
        })
        .collect();
    // One more header byte per connection every 50 ms, never the end of the
    // head, until the server has closed every one (EOF or reset).
    let started = Instant::now();
    let mut bytes_sent = 0;
    while !open.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} dribblers still open after {:?}",
            open.len(),
            started.elapsed()
        );
        open.retain_mut(|stream| {
            let mut byte = [0u8; 1];
            match stream.read(&mut byte) {
                Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                _ => return false, // EOF, reset, or a response: done
            }
            bytes_sent += 1;
            stream.write_all(b"x").is_ok()
        });
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = server.usage();
    let grown = after.peak_rss_bytes.saturating_sub(before.rss_bytes);
    let cpu = after.cpu - before.cpu;
    eprintln!(
        "{DRIBBLERS} dribblers, {bytes_sent} header bytes: all cut off after {:?}; peak RSS +{} KiB, server CPU {cpu:?}",
        started.elapsed(),
        grown / 1024
    );
    assert!(grown < 32 * MIB, "peak RSS grew by {} MiB", grown / MIB);
    assert!(cpu.as_secs_f64() < 3.0, "server CPU {cpu:?}");
    // The server still serves.
    drop(server.public_client());
}

#[test]
fn a_full_size_head_sent_byte_by_byte_still_upgrades() {
    let server = FanoutProcess::start_embedded(&[]);
    // Just under --max-header-bytes (8 KiB), in one-byte writes.
    let padding = format!("X-Pad: {}\r\n", "a".repeat(7_600));
    let head = raw::upgrade_request(raw::PUBLIC_PATH, &padding).into_bytes();
    assert!(head.len() < 8 * 1024);
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let before = server.usage();
    for byte in &head {
        stream.write_all(std::slice::from_ref(byte)).expect("write a byte");
    }
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut response = [0u8; 12];
    stream.read_exact(&mut response).expect("a response");
    assert_eq!(&response, b"HTTP/1.1 101");
    let cpu = server.usage().cpu - before.cpu;
    eprintln!("{} head bytes one at a time: server CPU {cpu:?}", head.len());
    assert!(cpu.as_secs_f64() < 1.0, "server CPU {cpu:?}");
}
