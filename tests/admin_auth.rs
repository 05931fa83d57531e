//! Verifies that the upgrade of an admin connection on `/ws` is decided
//! against a real `redis-server` (SPEC §2): Origin first (403), then the
//! connection limit (503), then the session cookie (401 when missing,
//! unknown, malformed, not an admin or not a string key), 503 while Redis is
//! down or unconfigured, the admin `connected` message on success, and
//! upgrades working again once Redis restarts.

mod common;

use common::TestEngine;
use common::admin::{ADMIN_SESSION, admin_client, assert_open, connect_admin, rpush, start_with_redis, store_session};

#[test]
fn admin_upgrade_from_a_foreign_origin_is_forbidden() {
    let (redis, engine) = start_with_redis(&["--allowed-origins", "https://app.example"]);
    store_session(&redis, "good", ADMIN_SESSION);
    // A valid session does not help a cross-site page (CSWSH).
    let refused = connect_admin(&engine, "good", &[("Origin", "https://evil.example")]);
    assert_eq!(refused.err(), Some(403));
    // Origin is checked before the session: no cookie is still 403, not 401.
    let refused = engine.connect("/ws", &[("Origin", "https://evil.example")]);
    assert_eq!(refused.err(), Some(403));
}

#[test]
fn admin_upgrade_from_an_allowed_origin_succeeds() {
    let (redis, engine) = start_with_redis(&["--allowed-origins", "https://other.example,https://app.example"]);
    store_session(&redis, "good", ADMIN_SESSION);
    let mut client =
        connect_admin(&engine, "good", &[("Origin", "https://app.example")]).expect("allowed origin upgrades");
    assert_eq!(client.recv_json()["role"], "admin");
}

#[test]
fn require_origin_refuses_an_admin_upgrade_without_origin() {
    let (redis, engine) = start_with_redis(&["--allowed-origins", "https://app.example", "--require-origin"]);
    store_session(&redis, "good", ADMIN_SESSION);
    assert_eq!(connect_admin(&engine, "good", &[]).err(), Some(403));
    assert!(connect_admin(&engine, "good", &[("Origin", "https://app.example")]).is_ok());
}

#[test]
fn the_connection_limit_answers_503_before_the_session_is_judged() {
    // SPEC §2: path, Origin (403), connection limit (503), session (401).
    let (redis, engine) = start_with_redis(&["--max-connections", "1"]);
    store_session(&redis, "good", ADMIN_SESSION);
    let public = engine.public_client();
    let gets_before = redis.calls("get");
    assert_eq!(connect_admin(&engine, "nope", &[]).err(), Some(503), "a bad session");
    assert_eq!(engine.connect("/ws", &[]).err(), Some(503), "no cookie");
    assert_eq!(connect_admin(&engine, "good", &[]).err(), Some(503), "a good session");
    assert_eq!(redis.calls("get"), gets_before, "no session was looked up");

    // Below the limit again, the session decides.
    drop(public);
    engine.wait_metric("fanout_connections", |v| v == 0.0);
    assert_eq!(connect_admin(&engine, "nope", &[]).err(), Some(401));
    let mut admin = admin_client(&engine, "good");
    assert_open(&mut admin);
}

#[test]
fn missing_session_cookie_is_401() {
    let (_redis, engine) = start_with_redis(&[]);
    assert_eq!(engine.connect("/ws", &[]).err(), Some(401));
    assert_eq!(
        engine.connect("/ws", &[("Cookie", "theme=dark; other=1")]).err(),
        Some(401)
    );
    assert_eq!(engine.connect("/ws", &[("Cookie", "session_id=")]).err(), Some(401));
}

#[test]
fn unknown_session_is_401() {
    let (redis, engine) = start_with_redis(&[]);
    store_session(&redis, "someone-else", ADMIN_SESSION);
    assert_eq!(connect_admin(&engine, "nope", &[]).err(), Some(401));
}

#[test]
fn malformed_session_is_401() {
    let (redis, engine) = start_with_redis(&[]);
    for (id, stored) in [
        ("not-json", "not json at all"),
        ("array", r#"["admin"]"#),
        ("no-user", r#"{"role":"admin"}"#),
        ("no-role", r#"{"user_id":"u-1"}"#),
        ("number-user", r#"{"user_id":7,"role":"admin"}"#),
    ] {
        store_session(&redis, id, stored);
        assert_eq!(connect_admin(&engine, id, &[]).err(), Some(401), "session {stored:?}");
    }
}

#[test]
fn session_whose_role_is_not_admin_is_401() {
    let (redis, engine) = start_with_redis(&[]);
    store_session(&redis, "student", r#"{"user_id":"u-2","role":"student"}"#);
    assert_eq!(connect_admin(&engine, "student", &[]).err(), Some(401));
}

#[test]
fn session_key_of_another_redis_type_is_401() {
    // `GET` of a list answers WRONGTYPE: Redis answered, and what it holds is
    // not a session, so the client must log in again (401), not retry (503).
    let (redis, engine) = start_with_redis(&[]);
    rpush(&redis, "session:listy", "admin");
    assert_eq!(connect_admin(&engine, "listy", &[]).err(), Some(401));
}

#[test]
fn admin_upgrade_while_redis_is_down_is_503() {
    // A refused connection is an answer at once: with a Redis timeout far
    // beyond the client's patience (5 s), a 503 at all shows nobody waited
    // the timeout out.
    let (mut redis, engine) = start_with_redis(&["--redis-timeout", "1h"]);
    store_session(&redis, "good", ADMIN_SESSION);
    redis.stop();
    assert_eq!(connect_admin(&engine, "good", &[]).err(), Some(503));
    // Public clients do not need Redis.
    engine.public_client();
}

#[test]
fn admin_upgrade_without_redis_url_is_503() {
    let engine = TestEngine::start(&[]);
    assert_eq!(engine.connect("/ws", &[("Cookie", "session_id=good")]).err(), Some(503));
    engine.public_client();
}

#[test]
fn admin_with_a_valid_session_gets_the_admin_connected_message() {
    let (redis, engine) = start_with_redis(&[]);
    store_session(&redis, "good", ADMIN_SESSION);
    // The session cookie may sit among others, and in its own header.
    let mut client = engine
        .connect("/ws", &[("Cookie", "theme=dark; session_id=good; lang=id")])
        .expect("admin upgrade succeeds");
    let hello = client.recv_json();
    let fields = hello.as_object().expect("connected is an object");
    assert_eq!(fields.len(), 3, "{hello}");
    assert_eq!(hello["type"], "connected");
    assert_eq!(hello["role"], "admin");
    assert!(!hello["clientId"].as_str().expect("clientId is a string").is_empty());

    let mut second = admin_client(&engine, "good");
    assert_open(&mut second);
    assert_open(&mut client);
}

#[test]
fn admin_upgrades_work_again_after_redis_restarts() {
    let (mut redis, engine) = start_with_redis(&[]);
    store_session(&redis, "good", ADMIN_SESSION);
    redis.stop();
    assert_eq!(connect_admin(&engine, "good", &[]).err(), Some(503));

    redis.start_again();
    // The restarted server is empty: the old session is now unknown.
    assert_eq!(connect_admin(&engine, "good", &[]).err(), Some(401));
    store_session(&redis, "good", ADMIN_SESSION);
    let mut admin = admin_client(&engine, "good");
    assert_open(&mut admin);
}
