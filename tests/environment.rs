//! Verifies the environment fallbacks of SPEC §8 on the real binary:
//! without their flags, `KAFKA_BROKERS` names the broker it consumes from,
//! `WS_PORT` the port it listens on and `REDIS_URL` the Redis that decides
//! admin sessions; a flag wins over its variable.

mod common;

use common::admin::ADMIN_SESSION;
use common::process::FanoutProcess;
use common::producer::Producer;
use common::redis_server::RedisServer;
use common::{booking, connect, free_port, own_broker, public_client_at};
use serde_json::json;

/// Flags every process here gets besides the harness's: none of the three
/// under test.
const FLAGS: [&str; 2] = ["--shards", "1"];

#[test]
fn brokers_port_and_redis_come_from_the_environment() {
    let (broker, kafka_args) = own_broker(1, "environment", &[]);
    let redis = RedisServer::start();
    redis.set("session:good", ADMIN_SESSION);
    let port = free_port().to_string();
    let mut args = FLAGS.to_vec();
    args.extend(kafka_args);
    let process = FanoutProcess::start_with_env(
        &args,
        &[
            ("KAFKA_BROKERS", broker.bootstrap()),
            ("WS_PORT", &port),
            ("REDIS_URL", &redis.url()),
        ],
    );
    assert_eq!(process.addr.port().to_string(), port, "WS_PORT");
    assert_eq!(process.embedded_bootstrap, None, "no embedded broker");
    // Ready: partitions assigned on that broker, and that Redis answers.
    process.wait_ready();

    // REDIS_URL: the session stored in that Redis makes an admin.
    let mut admin = connect(process.addr, "/ws", &[("Cookie", "session_id=good")]).expect("admin upgrade");
    assert_eq!(admin.recv_json()["role"], "admin");
    assert_eq!(
        connect(process.addr, "/ws", &[("Cookie", "session_id=nope")]).err(),
        Some(401)
    );

    // KAFKA_BROKERS: a record produced to that broker reaches a client.
    let mut client = public_client_at(process.addr);
    client.subscribe(json!({"course_id": "C1"}));
    Producer::new(broker.bootstrap()).produce_json("booking.created", &booking("C1", 7));
    assert_eq!(client.recv_json()["slots_remaining"], 7);
}

#[test]
fn flags_win_over_the_environment() {
    let redis = RedisServer::start();
    redis.set("session:good", ADMIN_SESSION);
    let port = free_port().to_string();
    let mut args = FLAGS.to_vec();
    args.extend(["--kafka-brokers", "embedded", "--port", &port, "--redis-url"]);
    let url = redis.url();
    args.push(&url);
    // Every variable points somewhere useless.
    let process = FanoutProcess::start_with_env(
        &args,
        &[
            ("KAFKA_BROKERS", "127.0.0.1:1"),
            ("WS_PORT", "1"),
            ("REDIS_URL", "redis://127.0.0.1:1"),
        ],
    );
    assert_eq!(process.addr.port().to_string(), port);
    assert!(process.embedded_bootstrap.is_some(), "--kafka-brokers embedded");
    process.wait_ready();
    let mut admin = connect(process.addr, "/ws", &[("Cookie", "session_id=good")]).expect("admin upgrade");
    assert_eq!(admin.recv_json()["role"], "admin");
}
