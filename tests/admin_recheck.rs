//! Verifies that admin sessions are re-checked against a real
//! `redis-server` (SPEC §3.4): a revoked session (deleted, no longer admin,
//! malformed or of another Redis type) closes its admins with 4001 within one
//! re-check interval, admins with valid sessions stay open and served, and
//! while Redis is down admins are kept open and re-checks resume once it
//! restarts.

mod common;

use std::time::Duration;

use common::admin::{
    ADMIN_SESSION, RECHECK_INTERVAL, TIMESTAMP, admin_client, assert_open, envelope, rpush, start_with_redis,
    store_session, subscribe_all,
};
use common::redis_server::RedisServer;
use common::{Client, Received};
use serde_json::json;

/// How late past one re-check interval a revoked admin may still be open.
const REVOKE_SLACK: Duration = Duration::from_secs(2);
/// SPEC §3.4: the close code of a revoked session.
const SESSION_REVOKED: u16 = 4001;

/// Waits for the server's close and returns its code; fails the test if
/// the connection is still open after `limit`.
fn close_code_within(client: &mut Client, limit: Duration) -> Option<u16> {
    match client.recv_within(limit) {
        Received::Closed(code) => code,
        Received::Json(message) => panic!("expected a close, got {message}"),
        Received::Nothing => panic!("connection still open {limit:?} after revocation"),
    }
}

/// Connects an admin, revokes its session with `revoke`, and asserts a 4001
/// close within one re-check interval plus slack.
fn assert_revocation_closes_with_4001(revoke: impl FnOnce(&RedisServer)) {
    let (redis, engine) = start_with_redis(&[]);
    store_session(&redis, "doomed", ADMIN_SESSION);
    let mut admin = admin_client(&engine, "doomed");
    subscribe_all(&mut admin);
    // Survives a few re-checks while the session is valid.
    admin.expect_silence(RECHECK_INTERVAL * 3);

    revoke(&redis);
    let limit = RECHECK_INTERVAL + REVOKE_SLACK;
    assert_eq!(close_code_within(&mut admin, limit), Some(SESSION_REVOKED));
}

#[test]
fn deleted_session_closes_the_admin_with_4001() {
    assert_revocation_closes_with_4001(|redis| redis.del("session:doomed"));
}

#[test]
fn session_that_loses_the_admin_role_closes_the_admin_with_4001() {
    assert_revocation_closes_with_4001(|redis| store_session(redis, "doomed", r#"{"user_id":"u-1","role":"student"}"#));
}

#[test]
fn session_that_becomes_malformed_closes_the_admin_with_4001() {
    assert_revocation_closes_with_4001(|redis| store_session(redis, "doomed", "{not json"));
}

#[test]
fn session_replaced_by_another_redis_type_closes_the_admin_with_4001() {
    assert_revocation_closes_with_4001(|redis| {
        redis.del("session:doomed");
        rpush(redis, "session:doomed", "admin");
    });
}

#[test]
fn revoking_one_session_leaves_other_admins_open() {
    // Two shards: each re-checks its own admins.
    let (redis, engine) = start_with_redis(&["--shards", "2"]);
    store_session(&redis, "doomed", ADMIN_SESSION);
    store_session(&redis, "valid", ADMIN_SESSION);
    let mut doomed: Vec<Client> = (0..4).map(|_| admin_client(&engine, "doomed")).collect();
    let mut valid: Vec<Client> = (0..4).map(|_| admin_client(&engine, "valid")).collect();
    for client in &mut valid {
        subscribe_all(client);
    }

    redis.del("session:doomed");
    for client in &mut doomed {
        assert_eq!(
            close_code_within(client, RECHECK_INTERVAL + REVOKE_SLACK),
            Some(SESSION_REVOKED)
        );
    }
    // Several more re-checks pass; the valid admins stay and are still served.
    for client in &mut valid {
        client.expect_silence(RECHECK_INTERVAL);
    }
    engine.produce_json(
        "admin.notifications",
        &envelope("admin.notifications", &json!({"text": "hi"})),
    );
    for client in &mut valid {
        assert_eq!(client.recv_json()["notification"]["text"], "hi");
    }
}

#[test]
fn redis_down_during_rechecks_keeps_admins_open_and_public_clients_served() {
    let (mut redis, engine) = start_with_redis(&[]);
    store_session(&redis, "good", ADMIN_SESSION);
    let mut admin = admin_client(&engine, "good");
    subscribe_all(&mut admin);
    let mut public = engine.public_client();
    public.subscribe(json!({"course_id": "C1"}));

    redis.stop();
    // Re-checks fail (and are counted) for several intervals...
    engine.wait_metric("fanout_session_recheck_failures_total", |n| n >= 2.0);
    admin.expect_silence(RECHECK_INTERVAL * 2);
    assert_open(&mut admin);

    // ...while events still flow to both audiences.
    engine.produce_json("booking.created", &common::booking("C1", 6));
    assert_eq!(admin.recv_json()["booking"]["slots_remaining"], 6);
    assert_eq!(
        public.recv_json(),
        json!({"type": "availability.updated", "course_id": "C1", "schedule_id": "sch-1",
            "slots_remaining": 6, "timestamp": TIMESTAMP})
    );
}

#[test]
fn rechecks_resume_after_redis_restarts() {
    let (mut redis, engine) = start_with_redis(&[]);
    store_session(&redis, "good", ADMIN_SESSION);
    let mut admin = admin_client(&engine, "good");

    redis.stop();
    engine.wait_metric("fanout_session_recheck_failures_total", |n| n >= 1.0);
    admin.expect_silence(RECHECK_INTERVAL);
    // The restarted server is empty, so it definitely answers "no such
    // session": the next re-check reconnects and closes the admin.
    redis.start_again();
    let limit = RECHECK_INTERVAL + REVOKE_SLACK;
    assert_eq!(close_code_within(&mut admin, limit), Some(SESSION_REVOKED));
}
