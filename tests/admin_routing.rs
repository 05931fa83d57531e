//! Verifies what admin connections receive (SPEC §4, §6): every default
//! topic in the full admin shape while public clients get only the public
//! derivative with no personal field, topics added with `--topics` reach
//! admins only, filtered admins get only matching events, scope all with
//! filters delivers each event once, unsubscribing `scope:all` (or
//! everything) leaves only the filters, and the record's topic decides the
//! shape. "Nothing else arrives" is checked with a sentinel event.

mod common;

use std::collections::BTreeMap;

use common::Client;
use common::admin::{TIMESTAMP, envelope, start_with_admin, subscribe_all};
use serde_json::{Value, json};

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

#[test]
fn every_default_topic_reaches_scope_all_admins_in_full_and_public_clients_without_personal_fields() {
    let (_redis, engine, mut admin) = start_with_admin(&[]);
    subscribe_all(&mut admin);
    let mut public = engine.public_client();
    public.subscribe(json!({"course_id": "C1"}));
    public.watch_sentinel();

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
    let sentinel = engine.produce_sentinel();
    admin.expect_sentinel(sentinel);

    // Collect everything the public client got before judging any of it.
    let public_got = public.recv_until_sentinel(sentinel);
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
    let (_redis, engine, mut admin) = start_with_admin(&["--topics", "booking.created,audit.log"]);
    subscribe_all(&mut admin);
    let mut public = engine.public_client();
    public.subscribe(json!({"course_id": "C1"}));
    public.watch_sentinel();

    let body = personal_body("C1");
    engine.produce_json("audit.log", &envelope("audit.log", &body));
    assert_eq!(
        admin.recv_json(),
        json!({"type": "audit.log", "event": body, "timestamp": TIMESTAMP})
    );
    let sentinel = engine.produce_sentinel();
    public.expect_sentinel(sentinel);
}

#[test]
fn filtered_admin_receives_only_matching_events_in_full() {
    let (_redis, engine, mut admin) = start_with_admin(&[]);
    assert_eq!(
        admin.subscribe(json!({"course_id": "C1"})),
        json!({"type": "subscribed", "filters": {"course_id": ["C1"]}})
    );
    admin.watch_sentinel();

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
    let sentinel = engine.produce_sentinel();
    admin.expect_sentinel(sentinel);
}

#[test]
fn admin_with_scope_all_and_filters_receives_each_event_once() {
    let (_redis, engine, mut admin) = start_with_admin(&[]);
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
    let sentinel = engine.produce_sentinel();
    admin.expect_sentinel(sentinel);
}

#[test]
fn unsubscribing_scope_all_leaves_only_the_filters() {
    let (_redis, engine, mut admin) = start_with_admin(&[]);
    admin.send_json(json!({"type": "subscribe", "scope": "all", "filters": {"course_id": "C1"}}));
    assert_eq!(
        admin.recv_json(),
        json!({"type": "subscribed", "filters": {"course_id": ["C1"]}, "scope": "all"})
    );
    // SPEC §4: `"topic":"scope:all"` drops the all scope and nothing else.
    admin.send_json(json!({"type": "unsubscribe", "topic": "scope:all"}));
    assert_eq!(
        admin.recv_json(),
        json!({"type": "unsubscribed", "topic": "scope:all", "filters": {"course_id": ["C1"]}})
    );
    admin.watch_sentinel();

    // Only the scope matched these; the filter still matches the last one.
    engine.produce_json("booking.created", &envelope("booking.created", &personal_body("C2")));
    engine.produce_json(
        "admin.notifications",
        &envelope("admin.notifications", &json!({"text": "to everyone"})),
    );
    engine.produce_json("booking.created", &envelope("booking.created", &personal_body("C1")));
    let sentinel = engine.produce_sentinel();
    let got = admin.recv_until_sentinel(sentinel);
    assert_eq!(
        got,
        [json!({"type": "booking.created", "booking": personal_body("C1"), "timestamp": TIMESTAMP})]
    );
}

#[test]
fn unsubscribing_everything_drops_scope_all_too() {
    let (_redis, engine, mut admin) = start_with_admin(&[]);
    admin.send_json(json!({"type": "subscribe", "scope": "all", "filters": {"room_id": "R1"}}));
    assert_eq!(admin.recv_json()["scope"], "all");
    admin.send_json(json!({"type": "unsubscribe"}));
    assert_eq!(admin.recv_json(), json!({"type": "unsubscribed", "filters": {}}));
    admin.watch_sentinel();

    engine.produce_json(
        "admin.notifications",
        &envelope("admin.notifications", &json!({"room_id": "R1", "text": "hi"})),
    );
    let sentinel = engine.produce_sentinel();
    admin.expect_sentinel(sentinel);
}

#[test]
fn the_record_topic_decides_the_admin_shape_over_the_envelope_topic() {
    // SPEC §5: the Kafka record's topic is authoritative when the envelope's
    // `topic` differs.
    let (_redis, engine, mut admin) = start_with_admin(&[]);
    subscribe_all(&mut admin);
    let body = json!({"course_id": "C1", "slots_remaining": 2, "text": "note"});
    engine.produce_json("admin.notifications", &envelope("booking.created", &body));
    assert_eq!(
        admin.recv_json(),
        json!({"type": "admin.notifications", "notification": body, "timestamp": TIMESTAMP})
    );
    engine.produce_json(
        "schedule.updated",
        &json!({"topic": "no.such.topic", "payload": {"data": body}}),
    );
    assert_eq!(admin.recv_json()["type"], "schedule.updated");
}
