//! Admin-connection helpers shared by the `admin_*` tests: a real
//! `redis-server` with an engine pointed at it, session seeding, admin
//! upgrades and the envelopes they receive.
//!
//! Each test owns its `RedisServer` and `TestEngine`; nothing here is shared
//! between tests. Re-checks are counted at Redis (`MGET`), not waited for by
//! the clock.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

use super::redis_server::RedisServer;
use super::{Client, Received, TestEngine};

/// `--session-recheck-interval` of the engines that test re-checks.
pub const RECHECK: &str = "300ms";
/// SPEC §3.4: the close code of a revoked session.
pub const SESSION_REVOKED: u16 = 4001;

/// A stored session of an admin.
pub const ADMIN_SESSION: &str = r#"{"user_id":"u-1","role":"admin"}"#;
/// The `timestamp` of every envelope [`envelope`] builds.
pub const TIMESTAMP: &str = "2026-11-23T10:00:00Z";

/// A Redis server and an engine pointed at it, re-checking every 300 ms.
pub fn start_with_redis(args: &[&str]) -> (RedisServer, TestEngine) {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut argv = vec!["--redis-url", &url, "--session-recheck-interval", RECHECK];
    argv.extend_from_slice(args);
    let engine = TestEngine::start(&argv);
    (redis, engine)
}

/// [`start_with_redis`], plus an admin connected with session `good`.
pub fn start_with_admin(args: &[&str]) -> (RedisServer, TestEngine, Client) {
    let (redis, engine) = start_with_redis(args);
    store_session(&redis, "good", ADMIN_SESSION);
    let admin = admin_client(&engine, "good");
    (redis, engine, admin)
}

/// Stores `value` as session `id`.
pub fn store_session(redis: &RedisServer, id: &str, value: &str) {
    redis.set(&format!("session:{id}"), value);
}

/// Tries an admin upgrade with `session_id=<id>` and extra headers.
pub fn connect_admin(engine: &TestEngine, id: &str, headers: &[(&str, &str)]) -> Result<Client, u16> {
    let cookie = format!("session_id={id}");
    let mut all = vec![("Cookie", cookie.as_str())];
    all.extend_from_slice(headers);
    engine.connect("/ws", &all)
}

/// An upgraded admin past its `connected` message.
pub fn admin_client(engine: &TestEngine, id: &str) -> Client {
    let mut client = connect_admin(engine, id, &[]).expect("admin upgrade succeeds");
    let hello = client.recv_json();
    assert_eq!(hello["type"], "connected", "{hello}");
    assert_eq!(hello["role"], "admin", "{hello}");
    client
}

/// Waits until Redis has answered `count` more session re-checks than
/// before the call (each shard with admins sends one `MGET` per
/// `--session-recheck-interval`).
pub fn wait_rechecks(redis: &RedisServer, count: u64) {
    let target = redis.calls("mget") + count;
    let deadline = std::time::Instant::now() + super::PATIENCE;
    while redis.calls("mget") < target {
        assert!(
            std::time::Instant::now() < deadline,
            "Redis answered fewer than {count} re-checks within {:?}",
            super::PATIENCE
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the server's close and returns its code; fails on a message
/// first, or if the connection is still open after [`super::PATIENCE`].
pub fn expect_close_code(client: &mut Client) -> Option<u16> {
    match client.recv_within(super::PATIENCE) {
        Received::Closed(code) => code,
        Received::Json(message) => panic!("expected a close, got {message}"),
        Received::Nothing => panic!("connection still open after {:?}", super::PATIENCE),
    }
}

/// Sends `subscribe` with scope all and checks the reply.
pub fn subscribe_all(client: &mut Client) {
    client.send_json(json!({"type": "subscribe", "scope": "all"}));
    assert_eq!(client.recv_json(), json!({"type": "subscribed", "scope": "all"}));
}

/// An envelope of `topic` around `body` (as `payload.data`).
pub fn envelope(topic: &str, body: &Value) -> Value {
    json!({"topic": topic, "timestamp": TIMESTAMP, "event_type": topic, "payload": {"data": body}})
}

/// Asserts the client is still open and served: it answers a ping.
pub fn assert_open(client: &mut Client) {
    client.send_json(json!({"type": "ping"}));
    let reply = client.recv_json();
    assert_eq!(reply["type"], "pong", "{reply}");
}

/// `RPUSH key value` over raw RESP: the harness only speaks `SET`/`GET`/`DEL`.
pub fn rpush(redis: &RedisServer, key: &str, value: &str) {
    let mut stream = TcpStream::connect(("127.0.0.1", redis.port())).expect("connect to redis");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let command = format!(
        "*3\r\n$5\r\nRPUSH\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
        key.len(),
        value.len()
    );
    stream.write_all(command.as_bytes()).expect("send RPUSH");
    let mut reply = [0u8; 64];
    let n = stream.read(&mut reply).expect("RPUSH reply");
    assert!(
        reply[..n].starts_with(b":"),
        "RPUSH answered {:?}",
        String::from_utf8_lossy(&reply[..n])
    );
}
