//! Verifies that every client error of SPEC §4 is answered with its code,
//! changes nothing, and leaves the connection open; and that the limits on
//! what a client controls, and frames that break RFC 6455 (bad close
//! frames, text that is not UTF-8), close with the specified codes.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Received, TestEngine, booking};
use serde_json::json;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader};

fn error_code(reply: &serde_json::Value) -> &str {
    assert_eq!(reply["type"], "error", "{reply}");
    assert!(reply["message"].is_string(), "{reply}");
    reply["code"].as_str().expect("code is a string")
}

/// Sends `pieces` as the fragments of one text message, bytes as they are.
fn send_text_fragments(client: &mut Client, pieces: &[&[u8]]) {
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = if i == 0 { Data::Text } else { Data::Continue };
        let last = i + 1 == pieces.len();
        // The server may close before the last piece; the close is checked.
        let _ = client.ws.write(Message::Frame(Frame::message(
            piece.to_vec(),
            OpCode::Data(opcode),
            last,
        )));
    }
    let _ = client.ws.flush();
}

#[test]
fn malformed_messages_get_invalid_format_and_the_connection_survives() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    for text in [
        "not json",
        "[1,2]",
        r#"{"type":"dance"}"#,
        r#"{"no_type":1}"#,
        r#"{"type":"subscribe"}"#,
        r#"{"type":"subscribe","scope":"everything"}"#,
        r#"{"type":"subscribe","filters":"C1"}"#,
        r#"{"type":"unsubscribe","topic":5}"#,
    ] {
        client.send_text(text);
        let reply = client.recv_json();
        assert_eq!(error_code(&reply), "invalid_format", "{text} -> {reply}");
    }
    client.send_text("nope");
    assert_eq!(client.recv_json()["message"], "Invalid format");
    client.ws.send(Message::binary(vec![1u8, 2, 3])).expect("send binary");
    assert_eq!(error_code(&client.recv_json()), "invalid_format");
    client.send_json(json!({"type": "ping"}));
    let pong = client.recv_json();
    assert_eq!(pong["type"], "pong");
    assert!(pong["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{pong}");
}

#[test]
fn invalid_filters_are_rejected_whole() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    for filters in [
        json!({"teacher_id": "T"}),
        json!({"course_id": ""}),
        json!({"course_id": 7}),
        json!({"course_id": ["C2", 3]}),
        json!({"course_id": "C2", "room_id": {"x": 1}}),
    ] {
        client.send_json(json!({"type": "subscribe", "filters": filters}));
        assert_eq!(error_code(&client.recv_json()), "invalid_filter", "{filters}");
    }
    // Nothing of the rejected messages was applied (no partial subscribe).
    let reply = client.subscribe(json!({"session_id": "S"}));
    assert_eq!(reply["filters"], json!({"course_id": ["C1"], "session_id": ["S"]}));
    engine.produce_json("booking.created", &booking("C2", 1));
    engine.produce_json("booking.created", &booking("C1", 2));
    assert_eq!(client.recv_json()["slots_remaining"], 2);
}

#[test]
fn public_scope_all_is_forbidden() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    client.watch_sentinel();
    client.send_json(json!({"type": "subscribe", "scope": "all"}));
    assert_eq!(error_code(&client.recv_json()), "forbidden");
    client.send_json(json!({"type": "subscribe", "scope": "all", "filters": {"course_id": "C1"}}));
    assert_eq!(error_code(&client.recv_json()), "forbidden");
    // Neither the scope nor the filters of the rejected messages were
    // applied: a C1 event and a key-less one (scope all gets those) reach
    // nobody here.
    engine.produce_json("booking.created", &booking("C1", 1));
    engine.produce_json("booking.created", &json!({"payload": {"data": {"slots_remaining": 2}}}));
    let sentinel = engine.produce_sentinel();
    client.expect_sentinel(sentinel);
}

#[test]
fn too_many_filters_is_refused_without_partial_apply() {
    let engine = TestEngine::start(&["--max-filters", "3"]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": ["A", "B"]}));
    client.send_json(json!({"type": "subscribe", "filters": {"room_id": ["R1", "R2"]}}));
    assert_eq!(error_code(&client.recv_json()), "too_many_filters");
    // Re-subscribing what is there adds nothing, so it is within the limit.
    let reply = client.subscribe(json!({"course_id": ["A", "B"], "room_id": "R1"}));
    assert_eq!(reply["filters"], json!({"course_id": ["A", "B"], "room_id": ["R1"]}));
}

#[test]
fn a_flood_is_rate_limited_then_closed_with_1008() {
    let engine = TestEngine::start(&["--max-client-msgs-per-sec", "5"]);
    let mut client = engine.public_client();
    let mut pongs = 0;
    let mut warnings = 0;
    let mut closed = None;
    let started = Instant::now();
    // Up to 4 s of flooding at ~100 msg/s: 5 a second are served, the rest
    // dropped.
    'flood: for _ in 0..400 {
        if client.ws.send(Message::text(r#"{"type":"ping"}"#)).is_err() {
            break;
        }
        loop {
            match client.recv_within(Duration::from_millis(10)) {
                Received::Json(reply) if reply["type"] == "pong" => pongs += 1,
                Received::Json(reply) => {
                    assert_eq!(error_code(&reply), "rate_limited");
                    warnings += 1;
                }
                Received::Closed(code) => {
                    closed = Some(code);
                    break 'flood;
                }
                Received::Nothing => break,
            }
        }
    }
    let closed = closed.or_else(|| Some(client.expect_close()));
    let flooded_secs = started.elapsed().as_secs_f64().ceil() as u32;
    assert_eq!(closed, Some(Some(1008)), "pongs {pongs}, warnings {warnings}");
    assert_eq!(warnings, 3, "one warning a second, three before the close");
    // The bucket: a burst of 5, then 5 a second for as long as the flood
    // lasted (however slow this machine made it).
    let most = 5 + 5 * flooded_secs;
    assert!((5..=most).contains(&pongs), "served {pongs} in {flooded_secs} s");
}

#[test]
fn an_oversized_message_closes_with_1009() {
    let engine = TestEngine::start(&["--max-message-bytes", "1024"]);
    let mut client = engine.public_client();
    let big = format!(
        r#"{{"type":"subscribe","filters":{{"course_id":"{}"}}}}"#,
        "x".repeat(2000)
    );
    client.send_text(&big);
    assert_eq!(client.expect_close(), Some(1009));
}

#[test]
fn a_fragmented_message_is_reassembled_and_bounded() {
    let engine = TestEngine::start(&["--max-message-bytes", "1024"]);
    let mut client = engine.public_client();
    let text = br#"{"type":"subscribe","filters":{"course_id":"FRAG"}}"#;
    let (head, tail) = text.split_at(10);
    send_text_fragments(&mut client, &[head, tail]);
    assert_eq!(client.recv_json()["filters"]["course_id"][0], "FRAG");
    // Fragments adding up past the limit close with 1009 as well.
    let part = [b' '; 500];
    send_text_fragments(&mut client, &[&part, &part, &part]);
    assert_eq!(client.expect_close(), Some(1009));
}

#[test]
fn a_client_close_is_answered_with_the_same_code() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    client.subscribe(json!({"course_id": "C1"}));
    client
        .ws
        .close(Some(tungstenite::protocol::CloseFrame {
            code: 1000.into(),
            reason: "bye".into(),
        }))
        .expect("close");
    assert_eq!(client.expect_close(), Some(1000));
    engine.wait_metric("fanout_subscription_keys", |v| v == 0.0);
    engine.wait_metric("fanout_connections", |v| v == 0.0);
}

/// Sends one raw frame (tungstenite masks it), bypassing the client's checks.
fn send_frame(client: &mut common::Client, opcode: OpCode, fin: bool, payload: &[u8]) {
    let header = FrameHeader {
        is_final: fin,
        opcode,
        ..FrameHeader::default()
    };
    // The server may close before the frame is flushed; its close code is
    // what the tests check.
    let frame = Frame::from_payload(header, payload.to_vec().into());
    let _ = client.ws.write(Message::Frame(frame));
    let _ = client.ws.flush();
}

#[test]
fn a_close_frame_that_breaks_rfc_6455_closes_with_1002() {
    let engine = TestEngine::start(&[]);
    // RFC 6455 §5.5.1: a body of 1 byte (Autobahn 7.3.2); §7.4: codes no
    // peer may send (Autobahn 7.9.*, 7.13.*).
    let bodies: [&[u8]; 5] = [&[3], &[0, 0], &[3, 237], &[3, 246], &[19, 136]];
    for body in bodies {
        let mut client = engine.public_client();
        send_frame(&mut client, OpCode::Control(Control::Close), true, body);
        assert_eq!(client.expect_close(), Some(1002), "close body {body:?}");
    }
    engine.wait_metric("fanout_connections", |v| v == 0.0);
}

#[test]
fn a_close_reason_that_is_not_utf8_closes_with_1007() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    // Code 1000, then a reason with a surrogate (ED A0 80; Autobahn 7.5.1).
    send_frame(
        &mut client,
        OpCode::Control(Control::Close),
        true,
        b"\x03\xe8ok\xed\xa0\x80",
    );
    assert_eq!(client.expect_close(), Some(1007));
}

#[test]
fn fragmented_text_closes_with_1007_at_the_first_fragment_that_cannot_be_utf8() {
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    // A character cut between fragments is fine ...
    let text = "{\"type\":\"subscribe\",\"filters\":{\"course_id\":\"κόσμε\"}}".as_bytes();
    let (head, tail) = text.split_at(text.iter().position(|&b| b >= 0x80).expect("non-ASCII") + 1);
    send_frame(&mut client, OpCode::Data(Data::Text), false, head);
    send_frame(&mut client, OpCode::Data(Data::Continue), true, tail);
    assert_eq!(client.recv_json()["filters"]["course_id"][0], "κόσμε");
    // ... but a fragment no continuation can make UTF-8 (\xf4\x90 is past
    // U+10FFFF) fails at once, before the message ends (Autobahn 6.4.1).
    send_frame(&mut client, OpCode::Data(Data::Text), false, b"{\"a\":\"\xce\xba");
    send_frame(&mut client, OpCode::Data(Data::Continue), false, b"\xf4\x90");
    assert_eq!(client.expect_close(), Some(1007));
}

#[test]
fn text_that_is_not_utf8_closes_with_1007() {
    // RFC 6455 §8.1; SPEC README close codes: 1007.
    let engine = TestEngine::start(&[]);
    let cases: [&[&[u8]]; 5] = [
        &[b"{\"type\":\"ping\",\"x\":\"\xff\"}"],
        // An overlong '/', a UTF-16 surrogate, a sequence cut short.
        &[b"\xc0\xaf"],
        &[b"\xed\xa0\x80"],
        &[b"{\"type\":\"ping\"}\xe2\x82"],
        // Valid pieces that are not UTF-8 once joined.
        &[b"{\"type\":\"ping\",\"x\":\"\xe2", b"\x28\xa1\"}"],
    ];
    for (i, pieces) in cases.iter().enumerate() {
        let mut client = engine.public_client();
        send_text_fragments(&mut client, pieces);
        assert_eq!(client.expect_close(), Some(1007), "case {i}: {pieces:?}");
    }
    engine.wait_metric("fanout_closes_total{code=\"1007\"}", |v| v == cases.len() as f64);
}

#[test]
fn a_character_split_across_fragments_is_text() {
    // Validity is judged on the whole message, not on each fragment.
    let engine = TestEngine::start(&[]);
    let mut client = engine.public_client();
    let text = r#"{"type":"subscribe","filters":{"course_id":"CAFÉ"}}"#.as_bytes();
    let split = text.iter().position(|&b| b == 0xC3).expect("É starts with 0xC3") + 1;
    send_text_fragments(&mut client, &[&text[..split], &text[split..]]);
    assert_eq!(
        client.recv_json(),
        json!({"type": "subscribed", "filters": {"course_id": ["CAFÉ"]}})
    );
}
