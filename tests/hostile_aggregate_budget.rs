//! Verifies the process-wide budget of SPEC §7 (`--max-total-pending-bytes`):
//! many clients that each stay under the per-connection bound but together
//! hold more than the budget are closed with 1013, those holding the most
//! first, and counted in `fanout_budget_disconnects_total`; a client that
//! reads keeps every event. See: #8.

mod common;

use std::io::Read;
use std::time::Duration;

use common::TestEngine;
use common::raw;
use serde_json::json;

/// Stalled subscribers, each allowed 256 KiB, together 4 MiB: four times
/// the 1 MiB budget.
const STALLED: usize = 16;

#[test]
fn clients_under_their_own_bound_are_closed_when_together_over_the_budget() {
    let engine = TestEngine::start(&[
        "--shards",
        "2",
        "--max-pending-bytes",
        "262144",
        "--max-total-pending-bytes",
        "1048576",
    ]);
    let subscribe = raw::text_frame(r#"{"type":"subscribe","filters":{"course_id":"C1"}}"#);
    let mut stalled: Vec<_> = (0..STALLED)
        .map(|_| {
            let mut stream = raw::public_connection(engine.addr, Some(4096));
            std::io::Write::write_all(&mut stream, &subscribe).expect("subscribe");
            stream
        })
        .collect();
    let mut reader = engine.public_client();
    reader.subscribe(json!({"course_id": "C1"}));
    engine.wait_metric("fanout_subscription_entries", |n| n == (STALLED + 1) as f64);

    // ~16 KiB events until every stalled client is gone: far more than the
    // kernel's socket buffers and the budget hold.
    let padding = "x".repeat(16_000);
    let mut seq = 0;
    while engine.metric("fanout_subscription_entries") > 1.0 {
        assert!(seq < 1_500, "stalled clients still subscribed after {seq} events");
        let event = json!({"payload": {"data": {"course_id": "C1", "slots_remaining": seq, "schedule_id": padding}}});
        engine.produce_json("booking.created", &event);
        assert_eq!(
            reader.recv_json()["slots_remaining"],
            seq,
            "the reader gets every event"
        );
        // The process never holds much more than the budget.
        let held = engine.metric("fanout_pending_bytes");
        assert!(held <= (1_048_576 + 262_144) as f64, "{held} bytes held");
        seq += 1;
    }

    // At most 4 clients fit the budget at their full 256 KiB: the budget,
    // not the per-connection bound, closed most of them.
    let by_budget = engine.metric("fanout_budget_disconnects_total");
    let by_bound = engine.metric("fanout_slow_consumer_disconnects_total");
    eprintln!("{seq} events: {by_budget} closed by the budget, {by_bound} by their own bound");
    assert!(by_budget >= 8.0, "{by_budget} closed by the budget");
    assert_eq!(by_budget + by_bound, STALLED as f64);
    assert_eq!(engine.metric("fanout_closes_total{code=\"1013\"}"), STALLED as f64);
    // Each was dropped: its close frame got a second to pass the full
    // socket, then the connection ended (EOF or reset, not a timeout).
    for stream in &mut stalled {
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut seen = Vec::new();
        if let Err(err) = stream.read_to_end(&mut seen) {
            assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
        }
    }
    // Published after each batch and each tick (at most a second apart).
    engine.wait_metric("fanout_pending_bytes", |held| held == 0.0);
}
