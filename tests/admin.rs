//! Verifies that admin connections on `/ws` are authenticated against a real
//! `redis-server` (SPEC §2: Origin 403, session 401, Redis down 503), get the
//! full admin shape of every topic while public clients get only the public
//! derivative (§6), may subscribe with scope all (§4), and are closed with
//! 4001 when their session is revoked but kept open while Redis is down
//! (§3.4).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::{Client, Received, TestEngine};
use serde_json::{Value, json};

/// `--session-recheck-interval` of the engines that test re-checks.
const RECHECK: &str = "300ms";
const RECHECK_INTERVAL: Duration = Duration::from_millis(300);
/// How late past one re-check interval a revoked admin may still be open.
const REVOKE_SLACK: Duration = Duration::from_secs(2);
/// How long "nothing else arrives" is watched.
const QUIET: Duration = Duration::from_millis(300);
/// SPEC §3.4: the close code of a revoked session.
const SESSION_REVOKED: u16 = 4001;

const ADMIN_SESSION: &str = r#"{"user_id":"u-1","role":"admin"}"#;
const TIMESTAMP: &str = "2026-11-23T10:00:00Z";

/// The seven topics consumed by default (SPEC §5).
const DEFAULT_TOPICS: [&str; 7] = [
    "booking.created",
    "booking.cancelled",
    "booking.confirmed",
    "schedule.updated",
    "schedule.deleted",
    "admin.notifications",
    "assessment.submitted",
];

/// Field names that must never reach a public client.
const PERSONAL_FIELDS: [&str; 6] = ["student_id", "email", "score", "text", "teacher_email", "contact"];
/// Values of those fields, looked for anywhere in public messages.
const PERSONAL_VALUES: [&str; 5] = ["st-9", "st9@example.com", "private note", "t@example.com", "555-0100"];

/// SPEC §6: the allowlist of public fields, plus the message's own keys.
const PUBLIC_KEYS: [&str; 14] = [
    "type",
    "timestamp",
    "summary",
    "id",
    "booking_id",
    "course_id",
    "room_id",
    "schedule_id",
    "session_id",
    "slots_remaining",
    "action",
    "status",
    "start_time",
    "end_time",
];

/// A Redis server and an engine pointed at it, re-checking every 300 ms.
fn start_with_redis(args: &[&str]) -> (RedisServer, TestEngine) {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut argv = vec!["--redis-url", &url, "--session-recheck-interval", RECHECK];
    argv.extend_from_slice(args);
    let engine = TestEngine::start(&argv);
    (redis, engine)
}

/// Stores `value` as session `id`.
fn store_session(redis: &RedisServer, id: &str, value: &str) {
    redis.set(&format!("session:{id}"), value);
}

/// Tries an admin upgrade with `session_id=<id>` and extra headers.
fn connect_admin(engine: &TestEngine, id: &str, headers: &[(&str, &str)]) -> Result<Client, u16> {
    let cookie = format!("session_id={id}");
    let mut all = vec![("Cookie", cookie.as_str())];
    all.extend_from_slice(headers);
    engine.connect("/ws", &all)
}

/// An upgraded admin past its `connected` message.
fn admin_client(engine: &TestEngine, id: &str) -> Client {
    let mut client = connect_admin(engine, id, &[]).expect("admin upgrade succeeds");
    let hello = client.recv_json();
    assert_eq!(hello["type"], "connected", "{hello}");
    assert_eq!(hello["role"], "admin", "{hello}");
    client
}

/// Sends `subscribe` with scope all and checks the reply.
fn subscribe_all(client: &mut Client) {
    client.send_json(json!({"type": "subscribe", "scope": "all"}));
    assert_eq!(client.recv_json(), json!({"type": "subscribed", "scope": "all"}));
}

/// The body of an event full of personal data, routed by `course`.
fn personal_body(course: &str) -> Value {
    json!({
        "booking_id": "bk-1", "course_id": course, "schedule_id": "sch-1",
        "slots_remaining": 4, "status": "open",
        "student_id": "st-9", "email": "st9@example.com", "score": 97,
        "text": "private note", "teacher_email": "t@example.com",
        "contact": {"phone": "555-0100"}
    })
}

/// An envelope of `topic` around `body` (as `payload.data`).
fn envelope(topic: &str, body: &Value) -> Value {
    json!({"topic": topic, "timestamp": TIMESTAMP, "event_type": topic, "payload": {"data": body}})
}

/// Receives `count` messages and returns them keyed and sorted by `type`
/// (events of different topics may come from different partitions, so their
/// relative order is not fixed).
fn recv_by_type(client: &mut Client, count: usize) -> BTreeMap<String, Vec<Value>> {
    let mut by_type: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for _ in 0..count {
        let message = client.recv_json();
        let kind = message["type"].as_str().expect("every message has a type").to_string();
        by_type.entry(kind).or_default().push(message);
    }
    by_type
}

/// Every message that arrives until `QUIET` passes without one.
fn drain(client: &mut Client) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        match client.recv_within(QUIET) {
            Received::Json(message) => got.push(message),
            Received::Nothing => return got,
            Received::Closed(code) => panic!("closed ({code:?}) while draining; got {got:?}"),
        }
    }
}

/// Every object key anywhere in `value`.
fn keys_of(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                out.push(key.clone());
                keys_of(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| keys_of(item, out)),
        _ => {}
    }
}

/// Waits for the server's close and returns its code; fails the test if
/// the connection is still open after `limit`.
fn close_code_within(client: &mut Client, limit: Duration) -> Option<u16> {
    match client.recv_within(limit) {
        Received::Closed(code) => code,
        Received::Json(message) => panic!("expected a close, got {message}"),
        Received::Nothing => panic!("connection still open {limit:?} after revocation"),
    }
}

/// Asserts the client is still open and served: it answers a ping.
fn assert_open(client: &mut Client) {
    client.send_json(json!({"type": "ping"}));
    let reply = client.recv_json();
    assert_eq!(reply["type"], "pong", "{reply}");
}

/// `RPUSH key value` over raw RESP: the harness only speaks `SET`/`GET`/`DEL`.
fn rpush(redis: &RedisServer, key: &str, value: &str) {
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

// --- SPEC §2: who may upgrade ---

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
    let (mut redis, engine) = start_with_redis(&[]);
    store_session(&redis, "good", ADMIN_SESSION);
    redis.stop();
    let started = Instant::now();
    assert_eq!(connect_admin(&engine, "good", &[]).err(), Some(503));
    // Default --redis-timeout is 1 s; a refused connect must not wait longer.
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
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

// --- SPEC §4, §6: what admins and the public receive ---

#[test]
fn every_default_topic_reaches_scope_all_admins_in_full_and_public_clients_without_personal_fields() {
    let (redis, engine) = start_with_redis(&[]);
    store_session(&redis, "good", ADMIN_SESSION);
    let mut admin = admin_client(&engine, "good");
    subscribe_all(&mut admin);
    let mut public = engine.public_client();
    public.subscribe(json!({"course_id": "C1"}));

    let body = personal_body("C1");
    for topic in DEFAULT_TOPICS {
        engine.produce_json(topic, &envelope(topic, &body));
    }

    let admin_got = recv_by_type(&mut admin, DEFAULT_TOPICS.len());
    for topic in DEFAULT_TOPICS {
        let body_key = match topic {
            "booking.created" | "booking.cancelled" | "booking.confirmed" => "booking",
            "schedule.updated" | "schedule.deleted" => "full_details",
            "admin.notifications" => "notification",
            _ => "assessment",
        };
        assert_eq!(
            admin_got.get(topic).map(Vec::as_slice),
            Some(&[json!({"type": topic, body_key: body, "timestamp": TIMESTAMP})][..]),
            "admin message of {topic}"
        );
    }
    admin.expect_silence(QUIET);

    // Collect everything the public client got before judging any of it.
    let public_got = drain(&mut public);
    for message in &public_got {
        let mut keys = Vec::new();
        keys_of(message, &mut keys);
        for key in &keys {
            assert!(
                PUBLIC_KEYS.contains(&key.as_str()),
                "public message has {key:?}: {message}"
            );
        }
        for field in PERSONAL_FIELDS {
            assert!(
                !keys.iter().any(|k| k == field),
                "public message has {field}: {message}"
            );
        }
        let text = message.to_string();
        for value in PERSONAL_VALUES {
            assert!(!text.contains(value), "public message leaks {value:?}: {text}");
        }
    }
    let mut by_type: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for message in &public_got {
        by_type
            .entry(message["type"].as_str().unwrap())
            .or_default()
            .push(message);
    }
    let updated = json!({"type": "availability.updated", "course_id": "C1", "schedule_id": "sch-1",
        "slots_remaining": 4, "timestamp": TIMESTAMP});
    let changed = json!({"type": "availability.changed", "summary": {"booking_id": "bk-1", "course_id": "C1",
        "schedule_id": "sch-1", "slots_remaining": 4, "status": "open"}, "timestamp": TIMESTAMP});
    // Three booking topics, two schedule topics; nothing for the admin-only two.
    assert_eq!(
        by_type.get("availability.updated"),
        Some(&vec![&updated; 3]),
        "{public_got:?}"
    );
    assert_eq!(
        by_type.get("availability.changed"),
        Some(&vec![&changed; 2]),
        "{public_got:?}"
    );
    assert_eq!(public_got.len(), 5, "{public_got:?}");
}

#[test]
fn a_topic_added_with_topics_reaches_admins_as_event_and_public_clients_not_at_all() {
    let (redis, engine) = start_with_redis(&["--topics", "booking.created,audit.log"]);
    store_session(&redis, "good", ADMIN_SESSION);
    let mut admin = admin_client(&engine, "good");
    subscribe_all(&mut admin);
    let mut public = engine.public_client();
    public.subscribe(json!({"course_id": "C1"}));

    let body = personal_body("C1");
    engine.produce_json("audit.log", &envelope("audit.log", &body));
    assert_eq!(
        admin.recv_json(),
        json!({"type": "audit.log", "event": body, "timestamp": TIMESTAMP})
    );
    public.expect_silence(QUIET);
}

#[test]
fn filtered_admin_receives_only_matching_events_in_full() {
    let (redis, engine) = start_with_redis(&[]);
    store_session(&redis, "good", ADMIN_SESSION);
    let mut admin = admin_client(&engine, "good");
    assert_eq!(
        admin.subscribe(json!({"course_id": "C1"})),
        json!({"type": "subscribed", "filters": {"course_id": ["C1"]}})
    );

    // Not for this admin: another course, another key, no routing key at all.
    engine.produce_json("booking.created", &envelope("booking.created", &personal_body("C2")));
    engine.produce_json(
        "schedule.updated",
        &envelope(
            "schedule.updated",
            &json!({"room_id": "R1", "teacher_email": "t@example.com"}),
        ),
    );
    engine.produce_json(
        "assessment.submitted",
        &envelope("assessment.submitted", &json!({"student_id": "st-9", "score": 97})),
    );
    // For it, in the admin shape even where the public one would be empty.
    let body = personal_body("C1");
    engine.produce_json("admin.notifications", &envelope("admin.notifications", &body));
    engine.produce_json("booking.confirmed", &envelope("booking.confirmed", &body));

    let got = recv_by_type(&mut admin, 2);
    assert_eq!(
        got.get("admin.notifications").map(Vec::as_slice),
        Some(&[json!({"type": "admin.notifications", "notification": body, "timestamp": TIMESTAMP})][..]),
        "{got:?}"
    );
    assert_eq!(
        got.get("booking.confirmed").map(Vec::as_slice),
        Some(&[json!({"type": "booking.confirmed", "booking": body, "timestamp": TIMESTAMP})][..]),
        "{got:?}"
    );
    admin.expect_silence(QUIET);
}

#[test]
fn admin_with_scope_all_and_filters_receives_each_event_once() {
    let (redis, engine) = start_with_redis(&[]);
    store_session(&redis, "good", ADMIN_SESSION);
    let mut admin = admin_client(&engine, "good");
    admin.send_json(json!({"type": "subscribe", "scope": "all",
        "filters": {"course_id": "C1", "room_id": ["R1", "R2"]}}));
    assert_eq!(
        admin.recv_json(),
        json!({"type": "subscribed", "filters": {"course_id": ["C1"], "room_id": ["R1", "R2"]}, "scope": "all"})
    );

    // Matches the scope and three filter values; matches the scope only.
    let both = json!({"course_id": "C1", "room_id": ["R1", "R2"], "slots_remaining": 1});
    let scope_only = json!({"course_id": "C9", "slots_remaining": 2});
    engine.produce_json("booking.created", &envelope("booking.created", &both));
    engine.produce_json("booking.created", &envelope("booking.created", &scope_only));

    // Same topic and no key: one partition per test engine is not promised,
    // so compare as a set.
    let mut slots: Vec<i64> = (0..2)
        .map(|_| {
            admin.recv_json()["booking"]["slots_remaining"]
                .as_i64()
                .expect("full body")
        })
        .collect();
    slots.sort_unstable();
    assert_eq!(slots, [1, 2]);
    admin.expect_silence(QUIET);
}

#[test]
fn public_clients_are_forbidden_scope_all() {
    let engine = TestEngine::start(&[]);
    let mut public = engine.public_client();
    public.send_json(json!({"type": "subscribe", "scope": "all"}));
    let reply = public.recv_json();
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "forbidden", "{reply}");

    // Combined with filters, the whole message is refused: no partial subscribe.
    public.send_json(json!({"type": "subscribe", "scope": "all", "filters": {"course_id": "C1"}}));
    assert_eq!(public.recv_json()["code"], "forbidden");

    engine.produce_json("booking.created", &common::booking("C1", 3));
    public.expect_silence(QUIET);
    assert_open(&mut public);
}

// --- SPEC §3.4: session re-checks ---

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
