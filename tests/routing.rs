//! Verifies that Kafka records reach exactly the public subscribers whose
//! filters match (SPEC §5, §6): by each key, OR across keys, at most once,
//! in order, with keys found at every envelope level.

mod common;

use std::time::Duration;

use common::{TestEngine, booking};
use serde_json::json;

const QUIET: Duration = Duration::from_millis(300);

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

    unrelated.expect_silence(QUIET);
    by_course.expect_silence(QUIET);
}

#[test]
fn an_event_matching_several_keys_arrives_once() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": "C1", "room_id": ["R1", "R2"]}));
    engine.produce_json(
        "schedule.updated",
        &json!({"payload": {"data": {"course_id": "C1", "room_id": ["R1", "R2"], "schedule_id": "s"}}}),
    );
    assert_eq!(client.recv_json()["type"], "availability.changed");
    client.expect_silence(QUIET);
}

#[test]
fn or_across_keys_and_values() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": ["C1", "C2"], "room_id": "R9"}));
    engine.produce_json("booking.created", &booking("C2", 1));
    engine.produce_json(
        "schedule.updated",
        &json!({"payload": {"data": {"room_id": "R9", "course_id": "other"}}}),
    );
    engine.produce_json("booking.created", &booking("C3", 1));
    assert_eq!(client.recv_json()["course_id"], "C2");
    assert_eq!(client.recv_json()["summary"]["room_id"], "R9");
    client.expect_silence(QUIET);
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
    let got = client.recv_json();
    assert_eq!(got["slots_remaining"], 7);
    assert!(got.get("student_id").is_none());
    client.expect_silence(QUIET);
}

#[test]
fn unsubscribe_forms_stop_delivery() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": ["C1", "C2", "C3"], "room_id": "R1"}));

    client.send_json(json!({"type": "unsubscribe", "topic": "course_id:C1"}));
    let reply = client.recv_json();
    assert_eq!(
        reply,
        json!({"type":"unsubscribed","topic":"course_id:C1","filters":{"course_id":["C2","C3"],"room_id":["R1"]}})
    );
    client.send_json(json!({"type": "unsubscribe", "filters": {"course_id": "C2", "room_id": ["R1"]}}));
    assert_eq!(
        client.recv_json(),
        json!({"type":"unsubscribed","filters":{"course_id":["C3"]}})
    );

    engine.produce_json("booking.created", &booking("C1", 1));
    engine.produce_json("booking.created", &booking("C2", 2));
    engine.produce_json("booking.created", &booking("C3", 3));
    assert_eq!(client.recv_json()["slots_remaining"], 3);
    client.expect_silence(QUIET);

    client.send_json(json!({"type": "unsubscribe"}));
    assert_eq!(client.recv_json(), json!({"type":"unsubscribed","filters":{}}));
    engine.produce_json("booking.created", &booking("C3", 4));
    client.expect_silence(QUIET);
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
