//! Verifies that the heartbeat of SPEC §3.2 drops a client that never
//! answers pings, keeps one that does, and that every index entry of a
//! departed client is removed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{TestEngine, booking};
use serde_json::json;

/// A raw upgrade over TCP that never reads or answers anything.
fn mute_client(engine: &TestEngine) -> TcpStream {
    let mut stream = TcpStream::connect(engine.addr).expect("connect");
    stream
        .write_all(
            b"GET /ws/availability HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .expect("write upgrade");
    stream
}

#[test]
fn a_client_that_never_answers_pings_is_closed() {
    let engine = TestEngine::start(&["--ping-interval", "200ms", "--pong-timeout", "300ms"]);
    let mut mute = mute_client(&engine);
    let mut polite = engine.public_client();
    engine.wait_metric("fanout_connections", |v| v == 2.0);

    // The polite client reads (tungstenite answers pings while reading).
    let started = Instant::now();
    while engine.metric("fanout_heartbeat_timeouts_total") < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "mute client never timed out"
        );
        polite.expect_silence(Duration::from_millis(50));
    }
    for _ in 0..20 {
        polite.expect_silence(Duration::from_millis(50));
    }
    assert_eq!(
        engine.metric("fanout_heartbeat_timeouts_total"),
        1.0,
        "only the mute client"
    );
    assert_eq!(engine.metric("fanout_connections"), 1.0);

    // The mute client saw: 101, connected, ping(s), then close 1001 and EOF.
    mute.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut seen = Vec::new();
    let _ = mute.read_to_end(&mut seen);
    let close_1001 = [0x88, 0x02, 0x03, 0xE9];
    assert!(
        seen.windows(4).any(|w| w == close_1001),
        "no close 1001 in {} bytes",
        seen.len()
    );

    polite.subscribe(json!({"course_id": "C1"}));
    polite.send_json(json!({"type": "ping"}));
    assert_eq!(polite.recv_json()["type"], "pong");
    engine.produce_json("booking.created", &booking("C1", 3));
    assert_eq!(polite.recv_json()["slots_remaining"], 3);
}

#[test]
fn departed_clients_leave_no_index_entries() {
    let engine = TestEngine::start(&[]);
    let mut a = engine.public_client();
    a.subscribe(json!({"course_id": ["C1", "C2"], "room_id": "R1"}));
    let mut b = engine.public_client();
    b.subscribe(json!({"course_id": "C1"}));
    engine.wait_metric("fanout_subscription_keys", |v| v == 3.0);
    assert_eq!(engine.metric("fanout_subscription_entries"), 4.0);

    drop(a); // TCP close without a close frame
    engine.wait_metric("fanout_subscription_keys", |v| v == 1.0);
    assert_eq!(engine.metric("fanout_subscription_entries"), 1.0);
    drop(b);
    engine.wait_metric("fanout_subscription_keys", |v| v == 0.0);
    engine.wait_metric("fanout_connections", |v| v == 0.0);
}
