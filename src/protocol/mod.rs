//! The client protocol of SPEC §4: what clients send, what we answer.
//!
//! [`parse`] turns one text message into a [`ClientMessage`] or a
//! [`ProtocolError`] (which the connection answers and survives). Replies are
//! encoded by [`Reply`]; framing is [`frame`]'s. Runs on the shard that owns
//! the connection.

pub mod frame;

use simd_json::BorrowedValue as Value;
use simd_json::prelude::*;

use crate::event::Field;

/// A filter set: (field, value) pairs in the order first subscribed, no
/// duplicates. One vector, not one per field: a connection at rest holds a
/// single small allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    entries: Vec<(Field, Box<str>)>,
}

impl Filters {
    /// Values subscribed for `field`, in subscription order.
    pub fn values(&self, field: Field) -> impl Iterator<Item = &str> {
        self.entries.iter().filter(move |(f, _)| *f == field).map(|(_, v)| &**v)
    }

    /// Total number of values over all fields.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No value at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `field` has `value`.
    pub fn contains(&self, field: Field, value: &str) -> bool {
        self.entries.iter().any(|(f, v)| *f == field && &**v == value)
    }

    /// Adds `value` unless present; true when added.
    pub fn insert(&mut self, field: Field, value: &str) -> bool {
        if self.contains(field, value) {
            return false;
        }
        // Exact growth: most connections hold one or two filters, and the
        // default growth would reserve four slots for the first.
        self.entries.reserve_exact(1);
        self.entries.push((field, Box::from(value)));
        true
    }

    /// Removes `value`; true when it was present.
    pub fn remove(&mut self, field: Field, value: &str) -> bool {
        let at = self.entries.iter().position(|(f, v)| *f == field && &**v == value);
        match at {
            Some(at) => {
                self.entries.remove(at);
                true
            }
            None => false,
        }
    }

    /// Every (field, value).
    pub fn iter(&self) -> impl Iterator<Item = (Field, &str)> {
        self.entries.iter().map(|(f, v)| (*f, &**v))
    }

    /// How many of `other`'s values are not in `self` yet.
    pub fn count_new(&self, other: &Filters) -> usize {
        other.iter().filter(|(f, v)| !self.contains(*f, v)).count()
    }

    /// Releases all memory (connections at rest should hold none).
    pub fn clear(&mut self) {
        self.entries = Vec::new();
    }
}

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

/// Server messages that answer a client, encoded as JSON.
pub enum Reply<'a> {
    /// After the upgrade.
    Connected {
        /// Process-unique client id.
        client_id: &'a str,
        /// Admin connections say so.
        admin: bool,
    },
    /// After a subscribe.
    Subscribed {
        /// Whole filter set after the change.
        filters: &'a Filters,
        /// Connection has scope all.
        scope_all: bool,
        /// Leave out an empty `filters` (a scope-only subscribe).
        omit_empty_filters: bool,
    },
    /// After an unsubscribe.
    Unsubscribed {
        /// Echoed topic, for the topic form.
        topic: Option<&'a str>,
        /// Remaining filters.
        filters: &'a Filters,
        /// Connection still has scope all.
        scope_all: bool,
    },
    /// Answer to `{"type":"ping"}`.
    Pong,
    /// An error the connection survives.
    Error(&'a ProtocolError),
}

impl Reply<'_> {
    /// The JSON text of the reply.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        match self {
            Reply::Connected { client_id, admin } => {
                out.extend_from_slice(b"{\"type\":\"connected\",\"clientId\":");
                write_str(&mut out, client_id);
                if *admin {
                    out.extend_from_slice(b",\"role\":\"admin\"");
                }
            }
            Reply::Subscribed {
                filters,
                scope_all,
                omit_empty_filters,
            } => {
                out.extend_from_slice(b"{\"type\":\"subscribed\"");
                if !(*omit_empty_filters && filters.is_empty()) {
                    write_filters(&mut out, filters);
                }
                write_scope(&mut out, *scope_all);
            }
            Reply::Unsubscribed {
                topic,
                filters,
                scope_all,
            } => {
                out.extend_from_slice(b"{\"type\":\"unsubscribed\"");
                if let Some(topic) = topic {
                    out.extend_from_slice(b",\"topic\":");
                    write_str(&mut out, topic);
                }
                write_filters(&mut out, filters);
                write_scope(&mut out, *scope_all);
            }
            Reply::Pong => {
                out.extend_from_slice(b"{\"type\":\"pong\",\"timestamp\":");
                write_str(&mut out, &crate::ingest::decode::iso_now());
            }
            Reply::Error(error) => {
                out.extend_from_slice(b"{\"type\":\"error\",\"code\":");
                write_str(&mut out, error.code());
                out.extend_from_slice(b",\"message\":");
                write_str(&mut out, &error.to_string());
            }
        }
        out.push(b'}');
        out
    }
}

fn write_filters(out: &mut Vec<u8>, filters: &Filters) {
    out.extend_from_slice(b",\"filters\":{");
    let mut first_field = true;
    for field in Field::ALL {
        let mut values = filters.values(field).peekable();
        if values.peek().is_none() {
            continue;
        }
        if !first_field {
            out.push(b',');
        }
        first_field = false;
        write_str(out, field.name());
        out.extend_from_slice(b":[");
        for (i, value) in values.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, value);
        }
        out.push(b']');
    }
    out.push(b'}');
}

fn write_scope(out: &mut Vec<u8>, scope_all: bool) {
    if scope_all {
        out.extend_from_slice(b",\"scope\":\"all\"");
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    Value::from(s).write(out).expect("writing to a Vec cannot fail");
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

    #[test]
    fn replies_echo_the_whole_set() {
        let f = filters(&[(Field::Course, "C1"), (Field::Room, "R\"1")]);
        let reply = Reply::Subscribed {
            filters: &f,
            scope_all: true,
            omit_empty_filters: false,
        }
        .encode();
        assert_eq!(
            String::from_utf8(reply).expect("utf8"),
            r#"{"type":"subscribed","filters":{"course_id":["C1"],"room_id":["R\"1"]},"scope":"all"}"#
        );
        let empty = Filters::default();
        let reply = Reply::Unsubscribed {
            topic: None,
            filters: &empty,
            scope_all: false,
        }
        .encode();
        assert_eq!(reply, br#"{"type":"unsubscribed","filters":{}}"#);
        let reply = Reply::Subscribed {
            filters: &empty,
            scope_all: true,
            omit_empty_filters: true,
        }
        .encode();
        assert_eq!(reply, br#"{"type":"subscribed","scope":"all"}"#);
    }

    #[test]
    fn error_reply_shape() {
        let reply = Reply::Error(&ProtocolError::InvalidFormat).encode();
        assert_eq!(
            reply,
            br#"{"type":"error","code":"invalid_format","message":"Invalid format"}"#
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(mut bytes: Vec<u8>) {
            let _ = parse(&mut bytes);
        }
    }
}
