//! The client protocol of SPEC §4: what clients send, what we answer.
//!
//! [`parse`] turns one text message into a [`ClientMessage`] or a
//! [`ProtocolError`] (which the connection answers and survives). A
//! connection's subscriptions are [`Filters`]; replies are encoded by
//! [`Reply`]; framing is [`frame`]'s. Runs on the shard that owns the
//! connection.

mod filters;
pub mod frame;
pub mod http;
mod reply;

use simd_json::BorrowedValue as Value;
use simd_json::prelude::*;

pub use self::filters::Filters;
pub use self::reply::Reply;
use crate::event::Field;

/// One parsed client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// Add filters and/or the admin "all" scope.
    Subscribe {
        /// Filters to add (may be empty when only `scope` was given).
        filters: Filters,
        /// `scope: "all"` was asked for.
        scope_all: bool,
    },
    /// Remove one `field:value` topic.
    UnsubscribeTopic {
        /// The topic as the client wrote it (echoed back).
        topic: String,
        /// What it names.
        target: Topic,
    },
    /// Remove these filters.
    UnsubscribeFilters(Filters),
    /// Remove every filter and the "all" scope.
    UnsubscribeAll,
    /// Application-level ping.
    Ping,
}

/// What an unsubscribe `topic` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    /// `course_id:X`, `room_id:X`, `session_id:X`.
    Filter(Field, String),
    /// `scope:all`.
    ScopeAll,
}

/// A message the connection answers with an error and survives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Not JSON, not an object, unknown type, wrong field types.
    #[error("Invalid format")]
    InvalidFormat,
    /// A filter key or value that cannot be subscribed.
    #[error("{0}")]
    InvalidFilter(String),
    /// Admin-only request from a public connection.
    #[error("scope \"all\" is for admin connections only")]
    Forbidden,
    /// Over `--max-filters`.
    #[error("a connection may hold at most {0} filters")]
    TooManyFilters(usize),
    /// Over `--max-client-msgs-per-sec`.
    #[error("too many messages: at most {0} per second")]
    RateLimited(u32),
    /// A binary message.
    #[error("Invalid format: binary messages are not supported")]
    Binary,
}

impl ProtocolError {
    /// The `code` of the error message.
    pub fn code(&self) -> &'static str {
        match self {
            ProtocolError::InvalidFormat | ProtocolError::Binary => "invalid_format",
            ProtocolError::InvalidFilter(_) => "invalid_filter",
            ProtocolError::Forbidden => "forbidden",
            ProtocolError::TooManyFilters(_) => "too_many_filters",
            ProtocolError::RateLimited(_) => "rate_limited",
        }
    }
}

/// Parses one text message, in place (simd-json rewrites `text`).
pub fn parse(text: &mut [u8]) -> Result<ClientMessage, ProtocolError> {
    let value = simd_json::to_borrowed_value(text).map_err(|_| ProtocolError::InvalidFormat)?;
    let object = value.as_object().ok_or(ProtocolError::InvalidFormat)?;
    let kind = object
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or(ProtocolError::InvalidFormat)?;
    match kind {
        "subscribe" => {
            let scope_all = match object.get("scope") {
                None => false,
                Some(scope) if scope.as_str() == Some("all") => true,
                Some(_) => return Err(ProtocolError::InvalidFormat),
            };
            let filters = match object.get("filters") {
                None if !scope_all => return Err(ProtocolError::InvalidFormat),
                None => Filters::default(),
                Some(filters) => parse_filters(filters)?,
            };
            Ok(ClientMessage::Subscribe { filters, scope_all })
        }
        "unsubscribe" => match (object.get("topic"), object.get("filters")) {
            (Some(_), Some(_)) => Err(ProtocolError::InvalidFormat),
            (Some(topic), None) => {
                let topic = topic.as_str().ok_or(ProtocolError::InvalidFormat)?;
                Ok(ClientMessage::UnsubscribeTopic {
                    topic: topic.to_string(),
                    target: parse_topic(topic)?,
                })
            }
            (None, Some(filters)) => Ok(ClientMessage::UnsubscribeFilters(parse_filters(filters)?)),
            (None, None) => Ok(ClientMessage::UnsubscribeAll),
        },
        "ping" => Ok(ClientMessage::Ping),
        _ => Err(ProtocolError::InvalidFormat),
    }
}

fn parse_filters(filters: &Value<'_>) -> Result<Filters, ProtocolError> {
    let object = filters.as_object().ok_or(ProtocolError::InvalidFormat)?;
    let mut out = Filters::default();
    for (key, value) in object.iter() {
        let field =
            Field::from_name(key).ok_or_else(|| ProtocolError::InvalidFilter(format!("unknown filter key {key:?}")))?;
        let mut add = |item: &Value<'_>| match item.as_str() {
            Some("") => Err(ProtocolError::InvalidFilter(format!("{key} must not be empty"))),
            Some(s) => {
                out.insert(field, s);
                Ok(())
            }
            None => Err(ProtocolError::InvalidFilter(format!("{key} values must be strings"))),
        };
        match value {
            Value::Array(items) => items.iter().try_for_each(&mut add)?,
            other => add(other)?,
        }
    }
    Ok(out)
}

fn parse_topic(topic: &str) -> Result<Topic, ProtocolError> {
    if topic == "scope:all" {
        return Ok(Topic::ScopeAll);
    }
    let invalid = || ProtocolError::InvalidFilter(format!("topic {topic:?} is not field:value"));
    let (name, value) = topic.split_once(':').ok_or_else(invalid)?;
    let field = Field::from_name(name).ok_or_else(invalid)?;
    if value.is_empty() {
        return Err(invalid());
    }
    Ok(Topic::Filter(field, value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<ClientMessage, ProtocolError> {
        parse(&mut text.as_bytes().to_vec())
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

    proptest::proptest! {
        #[test]
        fn parse_never_panics(mut bytes: Vec<u8>) {
            let _ = parse(&mut bytes);
        }
    }
}
