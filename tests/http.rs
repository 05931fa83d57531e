//! Verifies the HTTP surface of SPEC §2: ops endpoints, statuses for
//! everything that is not an upgrade, the Origin rules, the connection
//! limit, and the bounds on request heads (size and time).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::raw::{read_to_close, upgrade_request};
use common::{TestEngine, http_request};

#[test]
fn ops_endpoints_and_plain_statuses() {
    let engine = TestEngine::start(&[]);
    assert_eq!(engine.http_get("/healthz").0, 200);
    assert_eq!(engine.http_get("/readyz").0, 200);
    let (status, body) = engine.http_get("/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE fanout_events_consumed_total counter"), "{body}");
    assert_eq!(engine.http_get("/nope").0, 404);
    assert_eq!(
        http_request(
            engine.addr,
            "POST /ws/availability HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
        )
        .0,
        405
    );
    assert_eq!(
        http_request(engine.addr, "DELETE /healthz HTTP/1.1\r\nHost: t\r\n\r\n").0,
        405
    );
    assert_eq!(http_request(engine.addr, "\x01\x02 garbage\r\n\r\n").0, 400);
    // A WebSocket path without the upgrade headers is a bad request.
    assert_eq!(engine.http_get("/ws/availability").0, 400);
    let (status, _) = http_request(engine.addr, &upgrade_request("/ws/availability?x=1", ""));
    assert_eq!(status, 101);
}

#[test]
fn origin_rules_apply() {
    let engine = TestEngine::start(&["--allowed-origins", "https://app.example,https://admin.example"]);
    assert_eq!(
        engine
            .connect("/ws/availability", &[("Origin", "https://evil.example")])
            .err(),
        Some(403)
    );
    assert!(
        engine
            .connect("/ws/availability", &[("Origin", "https://app.example")])
            .is_ok()
    );
    assert!(
        engine.connect("/ws/availability", &[]).is_ok(),
        "no Origin: a non-browser client"
    );
    assert_eq!(engine.metric("fanout_rejected_upgrades_total{status=\"403\"}"), 1.0);

    let strict = TestEngine::start(&["--allowed-origins", "https://app.example", "--require-origin"]);
    assert_eq!(strict.connect("/ws/availability", &[]).err(), Some(403));
    assert!(
        strict
            .connect("/ws/availability", &[("Origin", "https://app.example")])
            .is_ok()
    );
}

#[test]
fn connection_limit_answers_503_before_upgrade() {
    let engine = TestEngine::start(&["--max-connections", "2"]);
    let _a = engine.public_client();
    let b = engine.public_client();
    assert_eq!(engine.connect("/ws/availability", &[]).err(), Some(503));
    drop(b);
    engine.wait_metric("fanout_connections", |v| v == 1.0);
    assert!(engine.connect("/ws/availability", &[]).is_ok());
}

#[test]
fn oversized_request_head_gets_431() {
    let engine = TestEngine::start(&["--max-header-bytes", "1024"]);
    let big = upgrade_request("/ws/availability", &format!("X-Pad: {}\r\n", "a".repeat(4000)));
    assert_eq!(http_request(engine.addr, &big).0, 431);
}

#[test]
fn an_unfinished_handshake_is_dropped_after_the_timeout() {
    // 300 ms instead of the default 10 s: the drop must come from the flag.
    let engine = TestEngine::start(&["--handshake-timeout", "300ms"]);
    let mut stream = TcpStream::connect(engine.addr).expect("connect");
    stream
        .write_all(b"GET /ws/availability HTTP/1.1\r\nHost: t\r\n")
        .expect("write half a head");
    let started = Instant::now();
    let answer = read_to_close(&mut stream);
    assert!(answer.is_empty(), "closed without a response: {answer:?}");
    // Not before the timeout (a slow machine only makes this longer).
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "dropped after {waited:?}");
}

#[test]
fn the_admin_endpoint_without_redis_is_503() {
    let engine = TestEngine::start(&[]);
    assert_eq!(engine.connect("/ws", &[("Cookie", "session_id=abc")]).err(), Some(503));
}
