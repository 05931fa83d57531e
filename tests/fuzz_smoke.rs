//! Verifies that every parser of bytes from outside (client frames, the HTTP
//! request head, client messages, Kafka record values) keeps the invariants
//! its fuzz target checks, on stable: the same checks (`fuzz/src/lib.rs`)
//! run on proptest inputs, from arbitrary bytes and from generators that
//! build mostly-valid input, and on every committed seed and regression
//! input under `fuzz/seeds/`. The long runs are `cargo +nightly fuzz run`.

#[path = "../fuzz/src/lib.rs"]
mod checks;
mod common;

use std::fs;
use std::path::Path;

use common::raw::masked_frame;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Every file under `fuzz/seeds/<target>/` through `check`.
fn run_seeds(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|err| panic!("reading {}: {err}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let data = fs::read(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
        check(&data);
        count += 1;
    }
    count
}

#[test]
fn committed_seeds_and_regressions_pass() {
    for (target, check) in [
        ("frame", checks::frame as fn(&[u8])),
        ("http_head", checks::http_head),
        ("client_message", checks::client_message),
        ("decode", checks::decode_record),
    ] {
        assert!(run_seeds(target, check) > 0, "no seeds for {target}");
    }
}

/// Payloads that exercise the UTF-8 and close rules: text, text cut inside
/// a character, bytes that are never UTF-8, close bodies, and noise.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        ".{0,40}".prop_map(String::into_bytes),
        ".{1,20}".prop_map(|s| {
            let mut bytes = s.into_bytes();
            bytes.pop();
            bytes
        }),
        (any::<u16>(), ".{0,20}").prop_map(|(code, reason)| {
            let mut body = code.to_be_bytes().to_vec();
            body.extend_from_slice(reason.as_bytes());
            body
        }),
        prop::collection::vec(
            prop::sample::select(vec![0x80u8, 0xbf, 0xc0, 0xed, 0xa0, 0xf4, 0x90, 0xff, b'a']),
            0..12
        ),
        prop::collection::vec(any::<u8>(), 0..300),
    ]
}

/// A run of frames, mostly valid: any opcode (reserved ones too), FIN, and
/// now and then an RSV bit.
fn frames() -> impl Strategy<Value = Vec<u8>> {
    let one = (
        prop::sample::select(vec![0x0u8, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0xB]),
        any::<bool>(),
        prop::sample::select(vec![0u8, 0, 0, 0, 0x40, 0x20, 0x10]),
        any::<[u8; 4]>(),
        payload(),
        any::<bool>(),
    )
        .prop_map(|(opcode, fin, rsv, mask, payload, wide)| {
            masked_frame(opcode | rsv | if fin { 0x80 } else { 0 }, mask, &payload, wide)
        });
    (
        any::<u16>(),
        any::<u8>(),
        prop::collection::vec(one, 1..6),
        any::<usize>(),
    )
        .prop_map(|(max, split, frames, cut)| {
            let mut data = max.to_le_bytes().to_vec();
            data.push(split);
            let wire: Vec<u8> = frames.concat();
            // Sometimes the last frame is still arriving.
            let keep = if cut % 3 == 0 {
                cut % (wire.len() + 1)
            } else {
                wire.len()
            };
            data.extend_from_slice(&wire[..keep]);
            data
        })
}

/// A request head, mostly valid: the upgrade headers, others, odd spacing,
/// bare `\n` line ends, and bytes after the head.
fn http_heads() -> impl Strategy<Value = Vec<u8>> {
    let header = prop_oneof![
        Just("Host: 127.0.0.1:3009".to_string()),
        Just("Upgrade: websocket".to_string()),
        Just("Connection: keep-alive, Upgrade".to_string()),
        Just("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".to_string()),
        Just("Sec-WebSocket-Version: 13".to_string()),
        Just("Origin: https://app.example.com".to_string()),
        "Cookie: [a-z]{1,8}=[a-zA-Z0-9]{0,20}",
        "[A-Za-z-]{1,12}:[ \t]{0,2}[ -~]{0,30}",
        "[ -~]{0,20}",
    ];
    (
        any::<u16>(),
        prop::sample::select(vec!["GET", "POST", "get", "", "GET GET"]),
        "/[a-z/?=&%]{0,20}",
        prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/1.1 "]),
        prop::collection::vec(header, 0..12),
        prop::sample::select(vec!["\r\n", "\n"]),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(max, method, path, version, headers, eol, after)| {
            let mut data = max.to_le_bytes().to_vec();
            let mut head = format!("{method} {path} {version}{eol}");
            for header in headers {
                head.push_str(&header);
                head.push_str(eol);
            }
            head.push_str(eol);
            data.extend_from_slice(head.as_bytes());
            data.extend_from_slice(&after);
            data
        })
}

/// JSON-ish values built from the protocol's own words, so most generated
/// messages get deep into the parser.
fn json_value() -> impl Strategy<Value = Value> {
    let word = prop::sample::select(vec![
        "type",
        "subscribe",
        "unsubscribe",
        "ping",
        "filters",
        "scope",
        "all",
        "topic",
        "course_id",
        "room_id",
        "session_id",
        "scope:all",
        "course_id:C1",
        "room_id:",
        "",
        "C1",
        "é\u{0}\"\\",
    ])
    .prop_map(str::to_string);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        word.clone().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::vec((word.clone(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// A message or record as text, now and then cut short or with one byte
/// changed, so nearly-valid JSON is covered too.
fn json_text(value: impl Strategy<Value = Value>) -> impl Strategy<Value = Vec<u8>> {
    (value, any::<usize>(), any::<u8>(), 0u8..4).prop_map(|(value, at, byte, how)| {
        let mut text = value.to_string().into_bytes();
        let at = at % (text.len() + 1);
        match how {
            0 => text.truncate(at),
            1 if at < text.len() => text[at] = byte,
            _ => {}
        }
        text
    })
}

fn client_messages() -> impl Strategy<Value = Vec<u8>> {
    let message = (
        prop::sample::select(vec!["subscribe", "unsubscribe", "ping", "other"]),
        json_value(),
        json_value(),
    )
        .prop_map(
            |(kind, filters, extra)| json!({"type": kind, "filters": filters, "scope": extra, "topic": "course_id:C1"}),
        );
    json_text(prop_oneof![message, json_value()])
}

fn records() -> impl Strategy<Value = Vec<u8>> {
    let envelope = (json_value(), json_value(), json_value(), any::<i64>(), any::<f64>()).prop_map(
        |(data, payload_extra, top_extra, int, float)| {
            json!({
                "topic": "booking.created",
                "timestamp": top_extra,
                "course_id": ["C1", int, ""],
                "payload": {"data": data, "extra": payload_extra, "room_id": float, "session_id": "S\u{2028}"},
            })
        },
    );
    (any::<u8>(), json_text(prop_oneof![envelope, json_value()])).prop_map(|(topic, text)| {
        let mut data = vec![topic];
        data.extend_from_slice(&text);
        data
    })
}

proptest! {
    #[test]
    fn frame_checks_hold(data in prop_oneof![frames(), prop::collection::vec(any::<u8>(), 0..200)]) {
        checks::frame(&data);
    }

    #[test]
    fn http_head_checks_hold(data in prop_oneof![http_heads(), prop::collection::vec(any::<u8>(), 0..200)]) {
        checks::http_head(&data);
    }

    #[test]
    fn client_message_checks_hold(data in prop_oneof![client_messages(), prop::collection::vec(any::<u8>(), 0..200)]) {
        checks::client_message(&data);
    }

    #[test]
    fn decode_checks_hold(data in prop_oneof![records(), prop::collection::vec(any::<u8>(), 0..200)]) {
        checks::decode_record(&data);
    }
}
