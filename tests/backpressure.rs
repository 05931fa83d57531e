//! Verifies SPEC §7: a client that stops reading is closed with 1013 once its
//! queue passes `--max-pending-bytes`, while another client on the same shard
//! keeps receiving every event, in order, before and after that close; and a
//! full inbox makes ingest wait rather than drop.

mod common;

use std::io::Write;

use common::TestEngine;
use common::raw::{close_frame, read_to_close, text_frame, upgraded};
use serde_json::json;

#[test]
fn a_stalled_client_is_closed_with_1013_while_another_receives_every_event() {
    let engine = TestEngine::start(&["--max-pending-bytes", "65536"]);
    // A subscriber that never reads; its small receive buffer makes the
    // server's queue fill fast.
    let mut stalled = upgraded(engine.addr, "/ws/availability", Some(4096));
    stalled
        .write_all(&text_frame(br#"{"type":"subscribe","filters":{"course_id":"C1"}}"#))
        .expect("subscribe");
    let mut fast = engine.public_client();
    fast.subscribe(json!({"course_id": "C1"}));
    engine.wait_metric("fanout_subscription_entries", |v| v == 2.0);

    // ~8 KiB events, each received before the next is produced: the shard
    // never waits on the stalled socket. 3 MiB in all overflow the kernel
    // buffers and the 64 KiB bound.
    let padding = "x".repeat(8000);
    let event = |seq: usize| {
        json!({"payload": {"data": {"course_id": "C1", "slots_remaining": seq,
        "schedule_id": padding}}})
    };
    let events = 400;
    for seq in 0..events {
        engine.produce_json("booking.created", &event(seq));
        assert_eq!(
            fast.recv_json()["slots_remaining"],
            seq,
            "the fast client gets every event, in order"
        );
    }
    assert_eq!(
        engine.wait_metric("fanout_slow_consumer_disconnects_total", |v| v >= 1.0),
        1.0
    );
    // The stalled client left the index; the fast one is still served.
    assert_eq!(engine.metric("fanout_subscription_entries"), 1.0);
    engine.produce_json("booking.created", &event(events));
    assert_eq!(fast.recv_json()["slots_remaining"], events);

    // Reading now drains what the kernel held, then the close frame 1013.
    let seen = read_to_close(&mut stalled);
    assert!(
        seen.ends_with(&close_frame(1013)),
        "stream ends with close 1013 ({} bytes read)",
        seen.len()
    );
    assert_eq!(engine.metric("fanout_closes_total{code=\"1013\"}"), 1.0);
}

#[test]
fn a_reading_client_sent_a_burst_over_the_bound_is_not_closed() {
    // The bound is on what waits for a client that does not read. One
    // fetched batch can hold more for one client than the bound (here 16
    // events of 6 KB against 64 KiB); the shard writes such a client ahead
    // of its flush rather than closing it as slow.
    let engine = TestEngine::start(&["--max-pending-bytes", "65536"]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    let padding = "x".repeat(6000);
    let events: Vec<String> = (0..16)
        .map(|seq| {
            json!({"payload": {"data": {"course_id": "C1", "slots_remaining": seq,
            "schedule_id": padding}}})
            .to_string()
        })
        .collect();
    engine.produce_burst("booking.created", 0, &events);
    for seq in 0..events.len() {
        assert_eq!(client.recv_json()["slots_remaining"], seq, "every event, in order");
    }
    assert_eq!(engine.metric("fanout_slow_consumer_disconnects_total"), 0.0);
}

#[test]
fn a_full_inbox_makes_ingest_wait_instead_of_dropping() {
    // A one-event inbox: ingest must wait for the shard and lose nothing.
    let engine = TestEngine::start(&["--inbox-capacity", "1"]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    let events = 300;
    for seq in 0..events {
        let value = json!({"payload": {"data": {"course_id": "C1", "slots_remaining": seq}}}).to_string();
        engine.produce_keyed("booking.created", Some("C1"), value.as_bytes());
    }
    for seq in 0..events {
        assert_eq!(client.recv_json()["slots_remaining"], seq);
    }
    assert_eq!(engine.metric("fanout_messages_delivered_total"), events as f64);
}
