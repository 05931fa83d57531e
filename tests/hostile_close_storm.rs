//! Verifies that thousands of connections subscribed to one key can leave
//! at once (a reconnect storm, a load balancer dropping them) at a cost
//! linear in their number (SPEC §3.3): each leaves the index in O(1), and
//! `fanout_subscription_entries` is back to 0 once they are gone. See: #8.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::process::{FanoutProcess, raise_fd_limit};
use common::raw;

#[test]
fn thousands_of_subscribers_of_one_key_leave_together() {
    // As many as the open-file limit allows (the server has its own), up
    // to 15,000; well over 1,000 on any machine the suite runs on.
    let count = (raise_fd_limit().saturating_sub(1_000) as usize).min(15_000);
    assert!(count >= 1_000, "open-file limit too low for this test");
    let server = FanoutProcess::start_embedded(&[]);
    // The upgrade and a subscribe in one write; nothing is read back (the
    // few hundred bytes of replies wait in each socket's buffer).
    let subscribe = raw::text_frame(r#"{"type":"subscribe","filters":{"course_id":"POPULAR"}}"#);
    let hello = [raw::upgrade_request(raw::PUBLIC_PATH, "").as_bytes(), &subscribe].concat();
    let clients: Vec<TcpStream> = (0..count)
        .map(|_| {
            let mut stream = TcpStream::connect(server.addr).expect("connect");
            stream.write_all(&hello).expect("upgrade and subscribe");
            stream
        })
        .collect();
    let patience = Duration::from_secs(120);
    server.wait_metric_within("fanout_subscription_entries", patience, |n| n == count as f64);
    assert_eq!(server.metric("fanout_subscription_keys"), 1.0);

    let before = server.usage();
    let started = Instant::now();
    drop(clients);
    server.wait_metric_within("fanout_subscription_entries", patience, |n| n == 0.0);
    server.wait_metric_within("fanout_connections", patience, |n| n == 0.0);
    let cpu = server.usage().cpu - before.cpu;
    eprintln!(
        "{count} subscribers of one key closed at once: cleaned up in {:?}, server CPU {cpu:?}",
        started.elapsed()
    );
    assert_eq!(server.metric("fanout_subscription_keys"), 0.0);
    // O(N) removal: tens of microseconds per connection in a debug build;
    // scanning the key's list per removal would cost N²/2 comparisons more.
    let per_connection = cpu / count as u32;
    assert!(
        per_connection < Duration::from_micros(300),
        "{per_connection:?} of server CPU per closed connection"
    );
}
