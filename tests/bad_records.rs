//! Verifies that Kafka records that are not JSON objects are skipped and
//! counted by reason while the records after them still flow (SPEC §5).

mod common;

use common::{TestEngine, booking};
use serde_json::json;

#[test]
fn malformed_and_non_object_records_are_skipped_and_later_ones_flow() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": "C1"}));

    engine.produce("booking.created", "{not json");
    engine.produce("booking.created", "[1,2,3]");
    engine.produce("booking.created", "\"just a string\"");
    engine.produce_keyed("booking.created", None, &[0xff, 0xfe, 0x00]);
    engine.produce_json("booking.created", &booking("C1", 9));

    assert_eq!(client.recv_json()["slots_remaining"], 9);
    engine.wait_metric("fanout_events_consumed_total", |v| v == 5.0);
    assert_eq!(
        engine.metric("fanout_events_skipped_total{reason=\"invalid_json\"}"),
        2.0
    );
    assert_eq!(engine.metric("fanout_events_skipped_total{reason=\"not_object\"}"), 2.0);
}

#[test]
fn a_record_without_routing_keys_reaches_nobody_public() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    client.watch_sentinel();
    engine.produce_json("booking.created", &json!({"payload": {"data": {"slots_remaining": 1}}}));
    engine.produce_json("booking.created", &booking("C1", 2));
    let sentinel = engine.produce_sentinel();
    let got = client.recv_until_sentinel(sentinel);
    assert_eq!(got.len(), 1, "only the keyed record: {got:?}");
    assert_eq!(got[0]["slots_remaining"], 2);
    assert_eq!(engine.metric("fanout_events_skipped_total"), 0.0);
}
