//! Verifies that filter values cannot make the server hold memory out of
//! proportion (SPEC §4, §7): a value over `--max-filter-value-bytes` is
//! refused (`invalid_filter`), and the `subscribed` echoes of a growing set
//! count against `--max-pending-bytes`, so a client that subscribes without
//! reading is closed with 1013 instead of queueing without limit. See: #8.

mod common;

use std::io::Write;
use std::time::Duration;

use common::process::{FanoutProcess, MIB};
use common::raw;

/// Messages per second allowed, so no message is dropped by the rate limit
/// and every one is parsed.
const RATE: &str = "10000";

#[test]
fn long_filter_values_are_refused_and_cost_nothing_held() {
    let server = FanoutProcess::start_embedded(&["--max-client-msgs-per-sec", RATE]);
    let mut stream = raw::public_connection(server.addr, None);
    let before = server.usage();
    server.reset_peak();
    let messages = 256;
    for i in 0..messages {
        let value = format!("{i}-{}", "v".repeat(60_000));
        let subscribe = format!(r#"{{"type":"subscribe","filters":{{"course_id":"{value}"}}}}"#);
        stream.write_all(&raw::text_frame(&subscribe)).expect("send");
    }
    for _ in 0..messages {
        let reply = raw::read_frame(&mut stream).expect("a reply");
        let reply = String::from_utf8_lossy(&reply.payload);
        assert!(reply.contains(r#""code":"invalid_filter""#), "{reply}");
    }
    let grown = server.usage().peak_rss_bytes.saturating_sub(before.rss_bytes);
    eprintln!(
        "{messages} subscribes of one 60 KB value: peak RSS +{} KiB",
        grown / 1024
    );
    assert!(grown < 16 * MIB, "peak RSS grew by {} MiB", grown / MIB);
}

#[test]
fn echoes_of_a_growing_set_never_read_close_with_1013() {
    let server = FanoutProcess::start_embedded(&["--max-client-msgs-per-sec", RATE]);
    let mut stream = raw::public_connection(server.addr, Some(4096));
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let before = server.usage();
    server.reset_peak();
    // 256 values of the largest size allowed, one new value per message,
    // made of control characters that the echo escapes as `\u0001` (6 bytes
    // each, the worst case): the echoes add up to ~25 MB, more than the
    // kernel's socket buffers take and far over the 1 MiB a connection may
    // queue.
    for i in 0..256 {
        let value = format!("{i:03}{}", r"\u0001".repeat(125));
        let subscribe = format!(r#"{{"type":"subscribe","filters":{{"course_id":"{value}"}}}}"#);
        if stream.write_all(&raw::text_frame(&subscribe)).is_err() {
            break; // closed already
        }
    }
    // Not reading until the server has given up on us.
    server.wait_metric_within("fanout_slow_consumer_disconnects_total", Duration::from_secs(30), |n| {
        n == 1.0
    });
    let mut replies = 0;
    let code = raw::read_until_close(&mut stream, |_| replies += 1);
    let grown = server.usage().peak_rss_bytes.saturating_sub(before.rss_bytes);
    eprintln!(
        "256 growing subscribes never read: {replies} replies, then close {code:?}; peak RSS +{} KiB",
        grown / 1024
    );
    assert_eq!(code, Some(1013), "closed as a slow consumer after {replies} replies");
    assert!(grown < 16 * MIB, "peak RSS grew by {} MiB", grown / MIB);
}
