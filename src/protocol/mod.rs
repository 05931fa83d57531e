//! The client protocol of SPEC §4: what clients send, what we answer.
//!
//! [`parse`] turns one text message into a [`ClientMessage`] or a
//! [`ProtocolError`] (which the connection answers and survives). A
//! connection's subscriptions are [`Filters`]; replies are encoded by
//! [`Reply`]; framing is [`frame`]'s. Runs on the shard that owns the
//! connection.
//!
//! Parsing is linear in the message: the JSON parse is, and the filter
//! values are checked against [`Limits`] as they are read (a hash set
//! dedups them; a subscribe stops at the first value over `--max-filters`),
//! so no message builds more than the limits allow.

mod filters;
pub mod frame;
pub mod http;
mod reply;
#[cfg(test)]
mod tests;

use ahash::AHashSet;
use simd_json::BorrowedValue as Value;
use simd_json::prelude::*;

pub use self::filters::{Filters, OverLimit};
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

/// The bounds of SPEC §4 a message is parsed against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Distinct filter values a subscribe may name (`--max-filters`).
    pub max_filters: usize,
    /// Bytes of one filter value (`--max-filter-value-bytes`).
    pub max_filter_value_bytes: usize,
}

impl Default for Limits {
    /// The flags' defaults: 256 filters of at most 128 bytes.
    fn default() -> Self {
        Limits {
            max_filters: 256,
            max_filter_value_bytes: 128,
        }
    }
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

/// Parses one text message, in place (simd-json rewrites `text`), within
/// `limits`. Linear in the length of `text`.
pub fn parse(text: &mut [u8], limits: Limits) -> Result<ClientMessage, ProtocolError> {
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
                // A subscribe over the limit on its own is refused before
                // more is built (the connection's own count is checked when
                // it is applied).
                Some(filters) => parse_filters(filters, limits, Some(limits.max_filters))?,
            };
            Ok(ClientMessage::Subscribe { filters, scope_all })
        }
        "unsubscribe" => match (object.get("topic"), object.get("filters")) {
            (Some(_), Some(_)) => Err(ProtocolError::InvalidFormat),
            (Some(topic), None) => {
                let topic = topic.as_str().ok_or(ProtocolError::InvalidFormat)?;
                Ok(ClientMessage::UnsubscribeTopic {
                    target: parse_topic(topic, limits)?,
                    topic: topic.to_string(),
                })
            }
            // Unsubscribing costs O(set + message) whatever the count: no cap.
            (None, Some(filters)) => Ok(ClientMessage::UnsubscribeFilters(parse_filters(filters, limits, None)?)),
            (None, None) => Ok(ClientMessage::UnsubscribeAll),
        },
        "ping" => Ok(ClientMessage::Ping),
        _ => Err(ProtocolError::InvalidFormat),
    }
}

/// Reads a `filters` object: distinct values in message order. With
/// `max_count`, stops with `too_many_filters` at the first distinct value
/// past it.
fn parse_filters<'v>(
    filters: &'v Value<'_>,
    limits: Limits,
    max_count: Option<usize>,
) -> Result<Filters, ProtocolError> {
    let object = filters.as_object().ok_or(ProtocolError::InvalidFormat)?;
    let mut out = Filters::default();
    // Dedup in O(1) per value; borrowed from the message, so no copies.
    let mut seen: AHashSet<(Field, &'v str)> = AHashSet::new();
    for (key, value) in object.iter() {
        let field = Field::from_name(key)
            .ok_or_else(|| ProtocolError::InvalidFilter(format!("unknown filter key {:?}", excerpt(key))))?;
        let mut add = |item: &'v Value<'_>| -> Result<(), ProtocolError> {
            let value = check_value(field, item.as_str(), limits)?;
            if seen.insert((field, value)) {
                if max_count.is_some_and(|max| seen.len() > max) {
                    return Err(ProtocolError::TooManyFilters(limits.max_filters));
                }
                out.push_distinct(field, value);
            }
            Ok(())
        };
        match value {
            Value::Array(items) => items.iter().try_for_each(&mut add)?,
            other => add(other)?,
        }
    }
    Ok(out)
}

/// A filter value as SPEC §4 allows it: a non-empty string of at most
/// `--max-filter-value-bytes`.
fn check_value(field: Field, value: Option<&str>, limits: Limits) -> Result<&str, ProtocolError> {
    let key = field.name();
    match value {
        Some("") => Err(ProtocolError::InvalidFilter(format!("{key} must not be empty"))),
        Some(value) if value.len() > limits.max_filter_value_bytes => Err(ProtocolError::InvalidFilter(format!(
            "{key} values are at most {} bytes",
            limits.max_filter_value_bytes
        ))),
        Some(value) => Ok(value),
        None => Err(ProtocolError::InvalidFilter(format!("{key} values must be strings"))),
    }
}

/// Bytes of client text an error message quotes, at most: the reply to a
/// bad key stays small whatever the key's size.
const EXCERPT_BYTES: usize = 64;

/// The start of `text`, at most [`EXCERPT_BYTES`], cut at a char boundary.
fn excerpt(text: &str) -> &str {
    if text.len() <= EXCERPT_BYTES {
        return text;
    }
    let end = (0..=EXCERPT_BYTES)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    &text[..end]
}

fn parse_topic(topic: &str, limits: Limits) -> Result<Topic, ProtocolError> {
    if topic == "scope:all" {
        return Ok(Topic::ScopeAll);
    }
    let invalid = || ProtocolError::InvalidFilter(format!("topic {:?} is not field:value", excerpt(topic)));
    let (name, value) = topic.split_once(':').ok_or_else(invalid)?;
    let field = Field::from_name(name).ok_or_else(invalid)?;
    if value.is_empty() {
        return Err(invalid());
    }
    let value = check_value(field, Some(value), limits)?;
    Ok(Topic::Filter(field, value.to_string()))
}
