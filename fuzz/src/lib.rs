//! What fuzzing checks: one function per parser that reads bytes from
//! outside, each panicking when the parser panics or breaks an invariant
//! its callers rely on.
//!
//! Two drivers run these functions: the libFuzzer targets in
//! `fuzz/fuzz_targets/` (nightly, `cargo +nightly fuzz run <target>`) and,
//! on stable in the normal test suite, `tests/fuzz_smoke.rs` (proptest, plus
//! every file under `fuzz/seeds/`). Everything here is pure: no runtime, no
//! sockets, no clock beyond `Stamp::now()` for the decoder's argument.

use std::cell::RefCell;

use fanout::clock::Stamp;
use fanout::ingest::decode::{DecodeError, Decoder};
use fanout::protocol::frame::{self, Kind, Parsed};
use fanout::protocol::http::{self, Head};
use fanout::protocol::{self, ClientMessage, Limits, Topic};

/// Splits off a fuzzer-chosen limit (2 bytes, little endian) from the input.
fn limit_and_rest(data: &[u8]) -> (usize, &[u8]) {
    match data {
        [low, high, rest @ ..] => (usize::from(u16::from_le_bytes([*low, *high])), rest),
        _ => (0, data),
    }
}

/// Client frames (`frame::parse`): `data` is a 2-byte payload limit, a byte
/// that picks where text is split, then the bytes a client sent. Every
/// frame parsed from them must lie inside the input, be unmasked exactly
/// (RFC 6455 §5.3), respect the limit and the control-frame rules (§5.5);
/// any proper prefix of it must ask for more bytes; its text must pass the
/// incremental UTF-8 check exactly when it is UTF-8, however it is split;
/// its close body must give a code a peer may send, or fail.
pub fn frame(data: &[u8]) {
    let (max, rest) = limit_and_rest(data);
    let Some((&split, wire)) = rest.split_first() else {
        return;
    };
    let mut buf = wire.to_vec();
    // One buffer for every prefix parsed (allocations dominate the run time
    // of an input of many small frames under AddressSanitizer).
    let mut scratch = Vec::with_capacity(wire.len());
    let mut used = 0;
    loop {
        match frame::parse(&mut buf[used..], max) {
            Ok(Some(parsed)) => {
                check_frame(&wire[used..], &buf[used..], &parsed, max, &mut scratch);
                let payload = &buf[used + parsed.payload.start..used + parsed.payload.end];
                match parsed.kind {
                    Kind::Text | Kind::Continuation => check_text(payload, usize::from(split)),
                    Kind::Close => check_close(payload),
                    _ => {}
                }
                used += parsed.consumed;
            }
            Ok(None) => return,
            Err(err) => {
                assert!(matches!(err.code(), 1002 | 1009), "{err:?}");
                return;
            }
        }
    }
}

fn check_frame(wire: &[u8], unmasked: &[u8], parsed: &Parsed, max: usize, scratch: &mut Vec<u8>) {
    let payload = parsed.payload.clone();
    assert!(payload.start <= payload.end && payload.end == parsed.consumed);
    assert!(parsed.consumed <= wire.len());
    assert!(payload.len() <= max, "payload {} over the limit {max}", payload.len());
    if matches!(parsed.kind, Kind::Close | Kind::Ping | Kind::Pong) {
        assert!(payload.len() <= 125 && parsed.is_final, "bad control frame passed");
    }
    // The masking key is the 4 bytes before the payload (§5.2), and the
    // payload is XORed with it cyclically (§5.3); nothing else changes.
    assert!(payload.start >= 6, "no room for a header with a mask");
    let mask = &wire[payload.start - 4..payload.start];
    assert_eq!(wire[..payload.start], unmasked[..payload.start]);
    for (i, (masked, plain)) in wire[payload.clone()].iter().zip(&unmasked[payload.clone()]).enumerate() {
        assert_eq!(masked ^ mask[i % 4], *plain, "payload byte {i}");
    }
    // A frame that arrives in pieces is not judged before it is whole: the
    // shard keeps the bytes and parses again after the next read.
    for cut in [0, 1, payload.start - 1, payload.start, parsed.consumed - 1] {
        if cut < parsed.consumed {
            scratch.clear();
            scratch.extend_from_slice(&wire[..cut]);
            assert_eq!(frame::parse(scratch, max), Ok(None), "prefix of {cut} bytes");
        }
    }
}

/// `frame::check_utf8` against the standard library: one piece, and split
/// at every point (short text: every cut through every character) or at
/// `split` (longer text; the fuzzer picks where).
fn check_text(text: &[u8], split: usize) {
    let valid = std::str::from_utf8(text).is_ok();
    assert_eq!(frame::check_utf8(text, 0, true).is_ok(), valid);
    let splits = if text.len() <= 16 {
        0..text.len() + 1
    } else {
        let at = split * text.len() / 255;
        at..at + 1
    };
    for at in splits {
        let head = &text[..at];
        // Fail fast, never early: a piece fails exactly when no bytes after
        // it can make it UTF-8.
        let can_complete = match std::str::from_utf8(head) {
            Ok(_) => true,
            Err(err) => err.error_len().is_none(),
        };
        assert_eq!(frame::check_utf8(head, 0, false).is_ok(), can_complete, "split at {at}");
        if can_complete {
            assert_eq!(frame::check_utf8(text, at, true).is_ok(), valid, "rest after {at}");
        }
    }
}

fn check_close(body: &[u8]) {
    match frame::close_reply(body) {
        Ok(code) if body.is_empty() => assert_eq!(code, 1000),
        Ok(code) => {
            assert_eq!(code, u16::from_be_bytes([body[0], body[1]]));
            assert!(matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999), "{code}");
            assert!(std::str::from_utf8(&body[2..]).is_ok(), "reason not UTF-8");
        }
        Err(err) => assert!(matches!(err.code(), 1002 | 1007), "{err:?}"),
    }
}

/// The HTTP request head (`http::parse_head`): `data` is a 2-byte size
/// limit, then the bytes a client sent. A complete head lies inside the
/// input and the limit, ends with an empty line (the listener only re-parses
/// after a read that may end one), parses the same without the bytes after
/// it, and every proper prefix of it is `Partial`, so a head that arrives in
/// pieces is never refused.
pub fn http_head(data: &[u8]) {
    let (max, input) = limit_and_rest(data);
    match http::parse_head(input, max) {
        Head::Complete(request, len) => {
            assert!(
                len <= input.len() && len <= max,
                "len {len}, input {}, max {max}",
                input.len()
            );
            let head = &input[..len];
            assert!(head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"), "{head:?}");
            assert_eq!(http::parse_head(head, max), Head::Complete(request, len));
            for cut in [0, len / 2, len - 1] {
                assert_eq!(http::parse_head(&head[..cut], max), Head::Partial, "prefix of {cut}");
            }
        }
        Head::Partial => assert!(input.len() <= max),
        Head::TooLarge | Head::Malformed => {}
    }
}

/// Limits far below the defaults, so short inputs reach them.
const TIGHT: Limits = Limits {
    max_filters: 3,
    max_filter_value_bytes: 8,
};

/// A client message (`protocol::parse`, simd-json in place): never panics,
/// accepts only UTF-8, and what it accepts names real filters with non-empty
/// values within the limits it was parsed against (a subscribe's count, every
/// value's bytes): the defaults, and [`TIGHT`], which accepts the same
/// message exactly when it fits.
pub fn client_message(data: &[u8]) {
    let mut text = data.to_vec();
    let Ok(message) = protocol::parse(&mut text, Limits::default()) else {
        let mut text = data.to_vec();
        assert!(
            protocol::parse(&mut text, TIGHT).is_err(),
            "tighter limits accepted more"
        );
        return;
    };
    assert!(std::str::from_utf8(data).is_ok(), "accepted bytes that are not UTF-8");
    let mut text = data.to_vec();
    let tight = protocol::parse(&mut text, TIGHT);
    assert!(fits(&message, Limits::default()), "{message:?}");
    match tight {
        Ok(tight) => {
            assert!(fits(&tight, TIGHT), "{tight:?}");
            assert_eq!(
                canonical(&tight),
                canonical(&message),
                "tight limits changed the message"
            );
        }
        Err(_) => assert!(
            !fits(&message, TIGHT),
            "tight limits refused what fits them: {message:?}"
        ),
    }
    match message {
        ClientMessage::Subscribe { filters, .. } | ClientMessage::UnsubscribeFilters(filters) => {
            assert!(filters.iter().all(|(_, value)| !value.is_empty()));
        }
        ClientMessage::UnsubscribeTopic { topic, target } => match target {
            Topic::ScopeAll => assert_eq!(topic, "scope:all"),
            Topic::Filter(field, value) => assert_eq!(topic, format!("{}:{value}", field.name())),
        },
        ClientMessage::UnsubscribeAll | ClientMessage::Ping => {}
    }
}

/// Whether `message` keeps within `limits`: a subscribe's distinct values
/// (an unsubscribe may name any number), and the bytes of every value.
fn fits(message: &ClientMessage, limits: Limits) -> bool {
    let short = |value: &str| value.len() <= limits.max_filter_value_bytes;
    match message {
        ClientMessage::Subscribe { filters, .. } => {
            filters.len() <= limits.max_filters && filters.iter().all(|(_, value)| short(value))
        }
        ClientMessage::UnsubscribeFilters(filters) => filters.iter().all(|(_, value)| short(value)),
        ClientMessage::UnsubscribeTopic {
            target: Topic::Filter(_, value),
            ..
        } => short(value),
        _ => true,
    }
}

/// A message with its filters in a fixed order: the order of an object's
/// keys is not part of it (simd-json iterates an object of over 32 members
/// in hash order).
fn canonical(message: &ClientMessage) -> String {
    match message {
        ClientMessage::Subscribe { filters, scope_all } => format!("subscribe {scope_all} {:?}", sorted(filters)),
        ClientMessage::UnsubscribeFilters(filters) => format!("unsubscribe {:?}", sorted(filters)),
        other => format!("{other:?}"),
    }
}

fn sorted(filters: &protocol::Filters) -> Vec<(&'static str, &str)> {
    let mut values: Vec<_> = filters.iter().map(|(field, value)| (field.name(), value)).collect();
    values.sort();
    values
}

/// The topic a record came from, picked by a byte: each topic of SPEC §5
/// (one route each, §6), or one no route knows.
fn topic_of(pick: u8) -> &'static str {
    let known = &fanout::config::DEFAULT_TOPICS;
    let at = usize::from(pick) % (known.len() + 1);
    known.get(at).copied().unwrap_or("custom.topic")
}

/// A Kafka record's value (`Decoder::decode`): `data` is a byte that picks
/// the topic, then the value. Whatever the value, the messages built from it
/// are single text frames of valid JSON objects with a `type`, the routing
/// keys are non-empty, and a decoder that decoded other records before (one
/// per thread, kept across inputs, as the ingest thread keeps its own)
/// decodes exactly as a fresh one.
pub fn decode_record(data: &[u8]) {
    let Some((&pick, value)) = data.split_first() else {
        return;
    };
    let topic = topic_of(pick);
    let now = Stamp::now();
    let fresh = Decoder::default().decode(topic, Some(value), &now);
    let again = USED.with(|used| used.borrow_mut().decode(topic, Some(value), &now));
    match (fresh, again) {
        (Ok(fresh), Ok(again)) => {
            assert!(fresh.keys.iter().all(|(_, key)| !key.is_empty()), "empty routing key");
            assert_eq!(fresh.keys, again.keys);
            let admin = message_of(&fresh.admin_frame, topic);
            assert_eq!(admin["type"], topic);
            assert_eq!(untimed(&fresh.admin_frame, topic), untimed(&again.admin_frame, topic));
            match (&fresh.public_frame, &again.public_frame) {
                (Some(public), Some(public_again)) => {
                    message_of(public, topic);
                    assert_eq!(untimed(public, topic), untimed(public_again, topic));
                }
                (None, None) => {}
                _ => panic!("a used decoder disagrees on the public message"),
            }
        }
        (Err(fresh), Err(again)) => {
            assert_eq!(fresh, again);
            assert_eq!(fresh == DecodeError::Empty, value.is_empty());
        }
        (fresh, again) => panic!(
            "a used decoder differs: fresh {:?}, used {:?}",
            fresh.err(),
            again.err()
        ),
    }
}

thread_local! {
    /// The decoder kept across inputs (see [`decode_record`]).
    static USED: RefCell<Decoder> = RefCell::new(Decoder::default());
}

/// The JSON object a server frame carries; panics unless it is one.
fn message_of(frame_bytes: &[u8], topic: &str) -> serde_json::Value {
    assert_eq!(frame_bytes.first(), Some(&0x81), "not one final text frame");
    let payload = frame::payload_of(frame_bytes);
    let header_len = frame_bytes.len() - payload.len();
    assert!(header_len >= 2 && payload.len() + header_len == frame_bytes.len());
    let value: serde_json::Value = serde_json::from_slice(payload).unwrap_or_else(|err| {
        panic!(
            "{topic}: message is not JSON ({err}): {}",
            String::from_utf8_lossy(payload)
        )
    });
    assert!(value.is_object(), "every message is a JSON object");
    value
}

/// The message without its `timestamp` (ingest time when the record has
/// none, so it may differ between two decodes), as a JSON value: the order of an
/// object's fields is not part of it. (simd-json keeps an object of more than
/// 32 fields in a hash map whose order differs from map to map; a record
/// with 34 copies of 3 keys showed it.)
fn untimed(frame_bytes: &[u8], topic: &str) -> serde_json::Value {
    let mut value = message_of(frame_bytes, topic);
    value.as_object_mut().expect("an object").remove("timestamp");
    value
}
