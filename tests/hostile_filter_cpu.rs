//! Verifies that a subscribe naming thousands of filter values costs the
//! server time linear in its size (SPEC §4, §7): values are deduplicated
//! with a hash set and the message is refused at the first value past
//! `--max-filters`, before the rest is built or compared. See: #8.

mod common;

use common::process::FanoutProcess;
use serde_json::json;

/// Distinct short values per message: 9,000 ids of 1 to 3 characters make
/// ~58 KB, under `--max-message-bytes` (64 KiB).
const VALUES: usize = 9_000;
/// Messages sent, within the rate limit's burst (50).
const MESSAGES: usize = 20;

fn base36(mut n: usize) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[n % 36]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    String::from_utf8(out).expect("ascii")
}

#[test]
fn subscribes_of_thousands_of_values_cost_linear_time() {
    let server = FanoutProcess::start_embedded(&[]);
    let mut client = server.public_client();
    let ids: Vec<String> = (0..VALUES).map(base36).collect();
    let message = json!({"type": "subscribe", "filters": {"course_id": ids}}).to_string();
    assert!(
        message.len() > 50_000 && message.len() < 64 * 1024,
        "{} bytes",
        message.len()
    );

    let before = server.usage();
    for _ in 0..MESSAGES {
        client.send_text(&message);
    }
    for _ in 0..MESSAGES {
        let reply = client.recv_json();
        assert_eq!(reply["code"], "too_many_filters", "{reply}");
    }
    let cpu = server.usage().cpu - before.cpu;
    eprintln!("{MESSAGES} subscribes of {VALUES} values: server CPU {cpu:?}");
    // Quadratic dedup did 40 M string comparisons per message (seconds each
    // in a debug build); linear parsing is milliseconds.
    assert!(cpu.as_secs_f64() < 1.0, "server CPU {cpu:?} for {MESSAGES} messages");

    // Within the limit the same client still subscribes.
    let reply = client.subscribe(json!({"course_id": ids[..256]}));
    assert_eq!(reply["filters"]["course_id"].as_array().map(Vec::len), Some(256));
}
