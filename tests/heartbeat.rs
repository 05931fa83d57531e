//! Verifies that the heartbeat of SPEC §3.2 drops a client that never
//! answers pings, keeps one that does, that the sweep (at a custom
//! `--sweep-interval`) leaves live clients alone, and that every index entry
//! of a departed client is removed. Time is counted in pings, not read off a
//! clock.

mod common;

use common::raw::{close_frame, read_to_close, upgraded};
use common::{TestEngine, booking};
use serde_json::json;

#[test]
fn a_client_that_never_answers_pings_is_closed() {
    // A pong timeout long enough for a loaded machine to answer in time.
    let engine = TestEngine::start(&["--ping-interval", "100ms", "--pong-timeout", "1s"]);
    // Upgrades, then never reads or answers anything.
    let mut mute = upgraded(engine.addr, "/ws/availability", None);
    let mut polite = engine.public_client();
    engine.wait_metric("fanout_connections", |v| v == 2.0);

    // The polite client answers every ping while the mute one times out
    // (one ping interval and one pong timeout: about eleven pings).
    let mut pings = 0;
    while engine.metric("fanout_heartbeat_timeouts_total") < 1.0 {
        assert!(pings < 60, "mute client still open after {pings} pings");
        polite.expect_ping();
        pings += 1;
    }
    // A ping is sent only once the one before was answered: three more
    // pings are three more answered in time.
    for _ in 0..3 {
        polite.expect_ping();
    }
    assert_eq!(
        engine.metric("fanout_heartbeat_timeouts_total"),
        1.0,
        "only the mute client"
    );
    assert_eq!(engine.metric("fanout_connections"), 1.0);

    // The mute client saw: 101, connected, ping(s), then close 1001 and EOF.
    let seen = read_to_close(&mut mute);
    assert!(
        seen.windows(4).any(|w| w == close_frame(1001)),
        "no close 1001 in {} bytes",
        seen.len()
    );

    polite.subscribe(json!({"course_id": "C1"}));
    polite.send_json(json!({"type": "ping"}));
    assert_eq!(polite.recv_json()["type"], "pong");
    engine.produce_json("booking.created", &booking("C1", 3));
    assert_eq!(polite.recv_json()["slots_remaining"], 3);
}

#[test]
fn a_frequent_sweep_leaves_live_clients_open_indexed_and_served() {
    // SPEC §3.2: the sweep removes what the heartbeat missed, and closes
    // clients silent for 2 x (ping interval + pong timeout), 2.1 s here. It
    // runs on the heartbeat's ticker (every 12.5 ms here), at most once a
    // tick: with a 10 ms --sweep-interval, on every tick, four times between
    // two pings. A client that only answers pings (a quiet browser tab)
    // must survive it, and so must its subscriptions.
    let engine = TestEngine::start(&[
        "--ping-interval",
        "50ms",
        "--pong-timeout",
        "1s",
        "--sweep-interval",
        "10ms",
    ]);
    let mut quiet = engine.public_client();
    quiet.subscribe(json!({"course_id": ["C1", "C2"]}));
    // Sixty pings (3 s at least) outlast the silence limit, with a couple of
    // hundred sweeps in between.
    for _ in 0..60 {
        quiet.expect_ping();
    }
    assert_eq!(engine.metric("fanout_heartbeat_timeouts_total"), 0.0);
    assert_eq!(engine.metric("fanout_sweep_removed_total"), 0.0);
    assert_eq!(engine.metric("fanout_subscription_entries"), 2.0);
    engine.produce_json("booking.created", &booking("C2", 4));
    assert_eq!(quiet.recv_json()["slots_remaining"], 4);
}

#[test]
fn departed_clients_leave_no_index_entries() {
    let engine = TestEngine::start(&[]);
    let mut a = engine.public_client();
    a.subscribe(json!({"course_id": ["C1", "C2"], "room_id": "R1"}));
    let mut b = engine.public_client();
    b.subscribe(json!({"course_id": "C1"}));
    engine.wait_metric("fanout_subscription_keys", |v| v == 3.0);
    assert_eq!(engine.metric("fanout_subscription_entries"), 4.0);

    drop(a); // TCP close without a close frame
    engine.wait_metric("fanout_subscription_keys", |v| v == 1.0);
    assert_eq!(engine.metric("fanout_subscription_entries"), 1.0);
    drop(b);
    engine.wait_metric("fanout_subscription_keys", |v| v == 0.0);
    engine.wait_metric("fanout_connections", |v| v == 0.0);
}
