//! Unit tests of client-message parsing (`parse`) and its limits.

use super::*;

fn parse_str(text: &str) -> Result<ClientMessage, ProtocolError> {
    parse(&mut text.as_bytes().to_vec(), Limits::default())
}

fn filters(pairs: &[(Field, &str)]) -> Filters {
    let mut f = Filters::default();
    for (field, value) in pairs {
        f.insert(*field, value);
    }
    f
}

#[test]
fn subscribe_accepts_strings_and_arrays() {
    let msg = parse_str(
        r#"{"type":"subscribe","filters":{"course_id":"PIANO-101","room_id":["R1","R2","R1"],"session_id":"S9"}}"#,
    );
    let expected = filters(&[
        (Field::Course, "PIANO-101"),
        (Field::Room, "R1"),
        (Field::Room, "R2"),
        (Field::Session, "S9"),
    ]);
    assert_eq!(
        msg,
        Ok(ClientMessage::Subscribe {
            filters: expected,
            scope_all: false
        })
    );
}

#[test]
fn subscribe_errors_have_spec_codes() {
    let code = |text: &str| parse_str(text).unwrap_err().code();
    assert_eq!(code(r#"{"type":"subscribe"}"#), "invalid_format");
    assert_eq!(code(r#"{"type":"subscribe","scope":"some"}"#), "invalid_format");
    assert_eq!(code(r#"{"type":"subscribe","filters":"x"}"#), "invalid_format");
    assert_eq!(
        code(r#"{"type":"subscribe","filters":{"teacher":"x"}}"#),
        "invalid_filter"
    );
    assert_eq!(
        code(r#"{"type":"subscribe","filters":{"course_id":""}}"#),
        "invalid_filter"
    );
    assert_eq!(
        code(r#"{"type":"subscribe","filters":{"course_id":[1]}}"#),
        "invalid_filter"
    );
    assert_eq!(
        code(r#"{"type":"subscribe","filters":{"course_id":null}}"#),
        "invalid_filter"
    );
    assert_eq!(code("not json"), "invalid_format");
    assert_eq!(code("[1]"), "invalid_format");
    assert_eq!(code(r#"{"type":"dance"}"#), "invalid_format");
    assert_eq!(code(r#"{"type":5}"#), "invalid_format");
    assert_eq!(parse_str("nope").unwrap_err().to_string(), "Invalid format");
}

#[test]
fn unsubscribe_forms() {
    assert_eq!(
        parse_str(r#"{"type":"unsubscribe","topic":"course_id:PIANO-101"}"#),
        Ok(ClientMessage::UnsubscribeTopic {
            topic: "course_id:PIANO-101".into(),
            target: Topic::Filter(Field::Course, "PIANO-101".into())
        })
    );
    assert!(matches!(
        parse_str(r#"{"type":"unsubscribe","topic":"scope:all"}"#),
        Ok(ClientMessage::UnsubscribeTopic {
            target: Topic::ScopeAll,
            ..
        })
    ));
    assert_eq!(
        parse_str(r#"{"type":"unsubscribe"}"#),
        Ok(ClientMessage::UnsubscribeAll)
    );
    assert_eq!(
        parse_str(r#"{"type":"unsubscribe","filters":{"room_id":"R1"}}"#),
        Ok(ClientMessage::UnsubscribeFilters(filters(&[(Field::Room, "R1")])))
    );
    assert_eq!(
        parse_str(r#"{"type":"unsubscribe","topic":"nope"}"#)
            .unwrap_err()
            .code(),
        "invalid_filter"
    );
}

#[test]
fn filter_values_are_bounded_in_bytes() {
    let limits = Limits {
        max_filters: 4,
        max_filter_value_bytes: 3,
    };
    let parse_with = |text: &str| parse(&mut text.as_bytes().to_vec(), limits);
    assert!(parse_with(r#"{"type":"subscribe","filters":{"course_id":"abc"}}"#).is_ok());
    let error = parse_with(r#"{"type":"subscribe","filters":{"course_id":"abcd"}}"#).unwrap_err();
    assert_eq!(error.code(), "invalid_filter");
    let error = parse_with(r#"{"type":"unsubscribe","topic":"course_id:abcd"}"#).unwrap_err();
    assert_eq!(error.code(), "invalid_filter");
}

#[test]
fn errors_quote_at_most_an_excerpt_of_client_text() {
    let key = "k".repeat(10_000);
    let text = format!(r#"{{"type":"subscribe","filters":{{"{key}":"x"}}}}"#);
    let error = parse_str(&text).unwrap_err();
    assert!(error.to_string().len() < 2 * EXCERPT_BYTES, "{error}");
    let topic = format!(r#"{{"type":"unsubscribe","topic":"é{key}"}}"#);
    let error = parse_str(&topic).unwrap_err();
    assert!(error.to_string().len() < 2 * EXCERPT_BYTES, "{error}");
}

#[test]
fn a_subscribe_stops_at_the_first_value_over_the_count() {
    let limits = Limits {
        max_filters: 3,
        max_filter_value_bytes: 128,
    };
    let parse_with = |text: &str| parse(&mut text.as_bytes().to_vec(), limits);
    // Duplicates are not counted twice.
    let ok = parse_with(r#"{"type":"subscribe","filters":{"room_id":["a","b","a","c","b"]}}"#);
    assert!(matches!(ok, Ok(ClientMessage::Subscribe { filters, .. }) if filters.len() == 3));
    // The 4th distinct value fails, even when a later value is invalid.
    let over = parse_with(r#"{"type":"subscribe","filters":{"room_id":["a","b","c","d",1]}}"#);
    assert_eq!(over.unwrap_err().code(), "too_many_filters");
    // Unsubscribing many is linear and not capped.
    let many = parse_with(r#"{"type":"unsubscribe","filters":{"room_id":["a","b","c","d","e"]}}"#);
    assert!(matches!(many, Ok(ClientMessage::UnsubscribeFilters(filters)) if filters.len() == 5));
}

proptest::proptest! {
    #[test]
    fn parse_never_panics(mut bytes: Vec<u8>) {
        let _ = parse(&mut bytes, Limits::default());
    }
}
