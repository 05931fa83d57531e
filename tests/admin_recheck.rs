//! Verifies that admin sessions are re-checked against a real
//! `redis-server` (SPEC §3.4): a revoked session (deleted, no longer admin,
//! malformed or of another Redis type) closes its admins with 4001 at the
//! next re-check, admins with valid sessions stay open and served, and
//! while Redis is down admins are kept open and re-checks resume once it
//! restarts. Re-checks are counted at Redis (its `MGET` calls), so no
//! assertion depends on how fast the machine is.

mod common;

use common::Client;
use common::admin::{
    ADMIN_SESSION, SESSION_REVOKED, TIMESTAMP, admin_client, assert_open, envelope, expect_close_code, rpush,
    start_with_admin, start_with_redis, store_session, subscribe_all, wait_rechecks,
};
use common::redis_server::RedisServer;
use serde_json::json;

/// Connects an admin, lets a few re-checks pass, revokes its session with
/// `revoke`, and asserts a 4001 close once Redis has answered a re-check
/// since.
fn assert_revocation_closes_with_4001(revoke: impl FnOnce(&RedisServer)) {
    let (redis, engine) = start_with_redis(&[]);
    store_session(&redis, "doomed", ADMIN_SESSION);
    let mut admin = admin_client(&engine, "doomed");
    subscribe_all(&mut admin);
    // Survives re-checks while the session is valid.
    wait_rechecks(&redis, 3);
    assert_open(&mut admin);

    revoke(&redis);
    // Every re-check Redis answers from here on sees the revocation.
    wait_rechecks(&redis, 1);
    assert_eq!(expect_close_code(&mut admin), Some(SESSION_REVOKED));
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
        assert_eq!(expect_close_code(client), Some(SESSION_REVOKED));
    }
    // Several more re-checks pass; the valid admins stay and are still served.
    wait_rechecks(&redis, 4);
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
    let (mut redis, engine, mut admin) = start_with_admin(&[]);
    subscribe_all(&mut admin);
    let mut public = engine.public_client();
    public.subscribe(json!({"course_id": "C1"}));

    redis.stop();
    // Re-checks fail (and are counted) for several intervals...
    engine.wait_metric("fanout_session_recheck_failures_total", |n| n >= 2.0);
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
    let (mut redis, engine, mut admin) = start_with_admin(&[]);

    redis.stop();
    engine.wait_metric("fanout_session_recheck_failures_total", |n| n >= 1.0);
    assert_open(&mut admin);
    // The restarted server is empty, so it definitely answers "no such
    // session": the next re-check reconnects and closes the admin.
    redis.start_again();
    wait_rechecks(&redis, 1);
    assert_eq!(expect_close_code(&mut admin), Some(SESSION_REVOKED));
}
