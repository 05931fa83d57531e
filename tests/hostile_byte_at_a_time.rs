//! Verifies that input arriving in the smallest pieces costs the server
//! time linear in its size (SPEC §7): a frame sent one byte at a time is
//! appended to once per read, never re-copied whole, and a message split
//! into one-byte fragments is assembled in place. See: #8.

mod common;

use std::io::Write;

use common::process::{FanoutProcess, MIB};
use common::raw::{self, opcode};

/// A 32 KiB subscribe: the filters, then padding the parser skips.
fn big_subscribe() -> String {
    let text = format!(
        r#"{{"type":"subscribe","filters":{{"course_id":"C1"}},"pad":"{}"}}"#,
        "p".repeat(32 * 1024)
    );
    assert!(text.len() < 64 * 1024, "under --max-message-bytes");
    text
}

fn expect_subscribed(stream: &mut std::net::TcpStream) {
    let raw::ServerFrame {
        opcode: op,
        payload: reply,
    } = raw::read_frame(stream).expect("a reply");
    assert_eq!(op, opcode::TEXT);
    assert!(
        reply.starts_with(br#"{"type":"subscribed","filters":{"course_id":["C1"]}"#),
        "{}",
        String::from_utf8_lossy(&reply)
    );
}

#[test]
fn a_frame_sent_one_byte_at_a_time_costs_linear_time() {
    let server = FanoutProcess::start_embedded(&[]);
    let mut stream = raw::public_connection(server.addr, None);
    let frame = raw::text_frame(big_subscribe());
    let before = server.usage();
    server.reset_peak();
    for byte in &frame {
        stream.write_all(std::slice::from_ref(byte)).expect("write a byte");
    }
    expect_subscribed(&mut stream);
    let after = server.usage();
    let cpu = after.cpu - before.cpu;
    let grown = after.peak_rss_bytes.saturating_sub(before.rss_bytes);
    eprintln!(
        "{} frame bytes one at a time: server CPU {cpu:?}, peak RSS +{} KiB",
        frame.len(),
        grown / 1024
    );
    assert!(cpu.as_secs_f64() < 2.0, "server CPU {cpu:?}");
    assert!(grown < 8 * MIB, "peak RSS grew by {} MiB", grown / MIB);
}

#[test]
fn a_message_in_one_byte_fragments_costs_linear_time() {
    let server = FanoutProcess::start_embedded(&[]);
    let mut stream = raw::public_connection(server.addr, None);
    let text = big_subscribe();
    let bytes = text.as_bytes();
    let mut frames = raw::client_frame(opcode::TEXT, false, &bytes[..1]);
    for (i, byte) in bytes.iter().enumerate().skip(1) {
        let last = i == bytes.len() - 1;
        frames.extend(raw::client_frame(
            opcode::CONTINUATION,
            last,
            std::slice::from_ref(byte),
        ));
    }
    let before = server.usage();
    server.reset_peak();
    // Whole frames, a few hundred per write: the server sees many
    // fragments per read, and frames cut at read boundaries.
    for chunk in frames.chunks(1_001) {
        stream.write_all(chunk).expect("write fragments");
    }
    expect_subscribed(&mut stream);
    let after = server.usage();
    let cpu = after.cpu - before.cpu;
    let grown = after.peak_rss_bytes.saturating_sub(before.rss_bytes);
    eprintln!(
        "{} one-byte fragments: server CPU {cpu:?}, peak RSS +{} KiB",
        bytes.len(),
        grown / 1024
    );
    assert!(cpu.as_secs_f64() < 2.0, "server CPU {cpu:?}");
    assert!(grown < 8 * MIB, "peak RSS grew by {} MiB", grown / MIB);
}
