//! Admin-connection helpers shared by the `admin_*` tests: a real
//! `redis-server` with an engine pointed at it, session seeding, admin
//! upgrades and the envelopes they receive.
//!
//! Each test owns its `RedisServer` and `TestEngine`; nothing here is shared
//! between tests. Invariant: `RECHECK` and `RECHECK_INTERVAL` name the same
//! duration.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

use super::redis_server::RedisServer;
use super::{Client, TestEngine};

/// `--session-recheck-interval` of the engines that test re-checks.
pub const RECHECK: &str = "300ms";
/// [`RECHECK`] as a `Duration`.
pub const RECHECK_INTERVAL: Duration = Duration::from_millis(300);

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
