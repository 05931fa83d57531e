//! Verifies that Kafka records reach exactly the public subscribers whose
//! filters match (SPEC §5, §6): by each key, OR across keys, at most once,
//! in order, with keys found at every envelope level and the record's topic
//! deciding the shape. "Nothing else arrives" is checked with a sentinel
//! event, never by waiting.

mod common;

use common::{TestEngine, booking};
use serde_json::json;

#[test]
fn routes_by_each_key_and_only_to_matching_clients() {
    let engine = TestEngine::start(&[]);
    let mut by_course = engine.public_client();
    by_course.subscribe(json!({"course_id": "PIANO-101"}));
    let mut by_room = engine.public_client();
    by_room.subscribe(json!({"room_id": "R1"}));
    let mut by_session = engine.public_client();
    by_session.subscribe(json!({"session_id": ["S9"]}));
    let mut unrelated = engine.public_client();
    unrelated.subscribe(json!({"course_id": "GUITAR-1"}));
    for client in [&mut by_course, &mut by_room, &mut by_session, &mut unrelated] {
        client.watch_sentinel();
    }

    engine.produce_json("booking.created", &booking("PIANO-101", 4));
    let got = by_course.recv_json();
    assert_eq!(
        got,
        json!({"type":"availability.updated","course_id":"PIANO-101","schedule_id":"sch-1",
            "slots_remaining":4,"timestamp":"2026-11-23T10:00:00Z"})
    );

    engine.produce_json(
        "schedule.updated",
        &json!({"payload": {"data": {"room_id": "R1", "schedule_id": "s1", "teacher_email": "t@x"}}}),
    );
    let got = by_room.recv_json();
    assert_eq!(got["type"], "availability.changed");
    assert_eq!(got["summary"], json!({"room_id": "R1", "schedule_id": "s1"}));

    engine.produce_json(
        "booking.cancelled",
        &json!({"payload": {"data": {"session_id": "S9", "slots_remaining": 2}}}),
    );
    assert_eq!(by_session.recv_json()["slots_remaining"], 2);

    let sentinel = engine.produce_sentinel();
    for client in [&mut by_course, &mut by_room, &mut by_session, &mut unrelated] {
        client.expect_sentinel(sentinel);
    }
}

#[test]
fn an_event_matching_several_keys_arrives_once() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": "C1", "room_id": ["R1", "R2"]}));
    client.watch_sentinel();
    engine.produce_json(
        "schedule.updated",
        &json!({"payload": {"data": {"course_id": "C1", "room_id": ["R1", "R2"], "schedule_id": "s"}}}),
    );
    assert_eq!(client.recv_json()["type"], "availability.changed");
    let sentinel = engine.produce_sentinel();
    client.expect_sentinel(sentinel);
}

#[test]
fn or_across_keys_and_values() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": ["C1", "C2"], "room_id": "R9"}));
    client.watch_sentinel();
    engine.produce_json("booking.created", &booking("C2", 1));
    engine.produce_json(
        "schedule.updated",
        &json!({"payload": {"data": {"room_id": "R9", "course_id": "other"}}}),
    );
    engine.produce_json("booking.created", &booking("C3", 1));
    let sentinel = engine.produce_sentinel();
    // Different topics may sit in different partitions: compare as a set.
    let mut got: Vec<String> = client
        .recv_until_sentinel(sentinel)
        .iter()
        .map(|message| {
            let key = message.get("course_id").unwrap_or(&message["summary"]["room_id"]);
            format!("{} {key}", message["type"].as_str().unwrap_or("?"))
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [r#"availability.changed "R9""#, r#"availability.updated "C2""#],
        "C2 by course, R9 by room, nothing for C3"
    );
}

#[test]
fn events_arrive_in_consumed_order() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    // One key -> one partition -> one order.
    for slots in 0..50 {
        let value = booking("C1", slots).to_string();
        engine.produce_keyed("booking.created", Some("C1"), value.as_bytes());
    }
    for slots in 0..50 {
        assert_eq!(client.recv_json()["slots_remaining"], slots);
    }
}

#[test]
fn routing_keys_are_found_at_every_envelope_level() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": ["DATA", "PAYLOAD", "TOP"]}));
    engine.produce_json(
        "booking.created",
        &json!({"payload": {"data": {"course_id": "DATA", "slots_remaining": 1}}}),
    );
    engine.produce_json(
        "booking.created",
        &json!({"payload": {"course_id": "PAYLOAD", "slots_remaining": 2}}),
    );
    engine.produce_json(
        "booking.created",
        &json!({"course_id": "TOP", "slots_remaining": 3, "payload": {}}),
    );
    let mut seen: Vec<_> = (0..3)
        .map(|_| client.recv_json()["course_id"].as_str().unwrap().to_string())
        .collect();
    seen.sort();
    assert_eq!(seen, ["DATA", "PAYLOAD", "TOP"]);
}

#[test]
fn public_clients_never_get_admin_only_topics_or_personal_fields() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    client.watch_sentinel();
    engine.produce_json(
        "admin.notifications",
        &json!({"payload": {"data": {"course_id": "C1", "text": "hi"}}}),
    );
    engine.produce_json(
        "assessment.submitted",
        &json!({"payload": {"data": {"course_id": "C1", "score": 9}}}),
    );
    engine.produce_json(
        "booking.created",
        &json!({"payload": {"data": {"course_id": "C1", "student_id": "st"}}}),
    );
    engine.produce_json("booking.created", &booking("C1", 7));
    let sentinel = engine.produce_sentinel();
    let got = client.recv_until_sentinel(sentinel);
    assert_eq!(
        got,
        [
            json!({"type": "availability.updated", "course_id": "C1", "schedule_id": "sch-1",
            "slots_remaining": 7, "timestamp": "2026-11-23T10:00:00Z"})
        ],
        "only the booking with slots, and no personal field"
    );
}

#[test]
fn unsubscribe_forms_stop_delivery() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": ["C1", "C2", "C3"], "room_id": "R1"}));
    client.watch_sentinel();

    client.send_json(json!({"type": "unsubscribe", "topic": "course_id:C1"}));
    let reply = client.recv_json();
    assert_eq!(
        reply,
        json!({"type":"unsubscribed","topic":"course_id:C1",
            "filters":{"course_id":["C2","C3","SENTINEL"],"room_id":["R1"]}})
    );
    client.send_json(json!({"type": "unsubscribe", "filters": {"course_id": "C2", "room_id": ["R1"]}}));
    assert_eq!(
        client.recv_json(),
        json!({"type":"unsubscribed","filters":{"course_id":["C3","SENTINEL"]}})
    );

    engine.produce_json("booking.created", &booking("C1", 1));
    engine.produce_json("booking.created", &booking("C2", 2));
    engine.produce_json("booking.created", &booking("C3", 3));
    engine.produce_json(
        "schedule.updated",
        &json!({"payload": {"data": {"room_id": "R1", "schedule_id": "s"}}}),
    );
    let sentinel = engine.produce_sentinel();
    let got = client.recv_until_sentinel(sentinel);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["slots_remaining"], 3);

    client.send_json(json!({"type": "unsubscribe"}));
    assert_eq!(client.recv_json(), json!({"type":"unsubscribed","filters":{}}));
    client.watch_sentinel();
    engine.produce_json("booking.created", &booking("C3", 4));
    let sentinel = engine.produce_sentinel();
    client.expect_sentinel(sentinel);
}

#[test]
fn filters_accumulate_and_replies_echo_the_whole_set() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    let reply = client.subscribe(json!({"course_id": ["C2", "C1"], "session_id": "S"}));
    assert_eq!(
        reply,
        json!({"type":"subscribed","filters":{"course_id":["C1","C2"],"session_id":["S"]}})
    );
}

#[test]
fn clients_on_several_shards_all_receive() {
    let engine = TestEngine::start(&["--shards", "2"]);
    let mut clients: Vec<_> = (0..8).map(|_| engine.public_client()).collect();
    for client in &mut clients {
        client.subscribe(json!({"course_id": "C1"}));
    }
    engine.produce_json("booking.created", &booking("C1", 5));
    for client in &mut clients {
        assert_eq!(client.recv_json()["slots_remaining"], 5);
    }
}

#[test]
fn the_record_topic_wins_over_the_envelope_topic() {
    // SPEC §5: the Kafka record's topic is authoritative when the envelope's
    // `topic` is missing or differs.
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    client.watch_sentinel();
    let envelope = |topic: &str, slots: u32| {
        json!({"topic": topic, "event_type": topic, "timestamp": "2026-11-23T10:00:00Z",
            "payload": {"data": {"course_id": "C1", "slots_remaining": slots}}})
    };
    // An admin-only record dressed as a booking: nothing public.
    engine.produce_json("admin.notifications", &envelope("booking.created", 1));
    // A booking record dressed as admin-only: the public derivative.
    engine.produce_json("booking.created", &envelope("admin.notifications", 2));
    let sentinel = engine.produce_sentinel();
    let got = client.recv_until_sentinel(sentinel);
    assert_eq!(
        got,
        [
            json!({"type": "availability.updated", "course_id": "C1", "slots_remaining": 2,
            "timestamp": "2026-11-23T10:00:00Z"})
        ]
    );
}
